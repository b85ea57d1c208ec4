//! Globs over attribute paths, component by component: `packages.*.*` matches
//! `packages.x86_64-linux.hello`; `*`, `?` and `[...]` match inside one attribute name, `**`
//! matches any number of whole names (`legacyPackages.**.python*`). A component containing dots
//! is quoted as in Nix: `lib."a.b"`.

use glob::{MatchOptions, Pattern};

#[derive(Debug, Clone)]
pub struct PathGlob {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    AnyDepth,
    Name(Pattern),
}

const OPTIONS: MatchOptions = MatchOptions { case_sensitive: true, require_literal_separator: false, require_literal_leading_dot: false };

impl PathGlob {
    pub fn parse(source: &str) -> Result<PathGlob, String> {
        let parts = split_components(source)?
            .into_iter()
            .map(|c| match c.as_str() {
                "**" => Ok(Part::AnyDepth),
                _ => Pattern::new(&c).map(Part::Name).map_err(|e| format!("bad glob {source:?}: {e}")),
            })
            .collect::<Result<_, _>>()?;
        Ok(PathGlob { source: source.to_string(), parts })
    }

    pub fn matches<S: AsRef<str>>(&self, path: &[S]) -> bool {
        matches_from(&self.parts, path)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Dynamic programming over (pattern part, path position): each name is matched against each
/// part at most once. (Trying every split for every `**` recursively is exponential in the
/// number of `**`: `**.**.**.**` against a deep path hung for more than 10 s, found by fuzzing.)
fn matches_from<S: AsRef<str>>(parts: &[Part], path: &[S]) -> bool {
    // reach[j]: the parts so far can consume exactly path[..j].
    let mut reach = vec![false; path.len() + 1];
    reach[0] = true;
    for part in parts {
        let mut next = vec![false; path.len() + 1];
        match part {
            Part::AnyDepth => {
                let mut reached = false;
                for (j, slot) in next.iter_mut().enumerate() {
                    reached |= reach[j];
                    *slot = reached;
                }
            }
            Part::Name(p) => {
                for (j, name) in path.iter().enumerate() {
                    next[j + 1] = reach[j] && p.matches_with(name.as_ref(), OPTIONS);
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        reach = next;
    }
    reach[path.len()]
}

/// Splits `a."b.c".d` into `a`, `b.c`, `d`.
fn split_components(source: &str) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => out.last_mut().unwrap().push(chars.next().unwrap_or('\\')),
            '.' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    if quoted {
        return Err(format!("bad glob {source:?}: unterminated quote"));
    }
    if out.iter().any(String::is_empty) {
        return Err(format!("bad glob {source:?}: empty attribute name"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_globstars_against_a_deep_path_are_fast() {
        let glob = PathGlob::parse("**.**.**.**.**.**.x.**.**.y").unwrap();
        let path: Vec<String> = (0..400).map(|i| format!("n{i}")).collect();
        let started = std::time::Instant::now();
        assert!(!glob.matches(&path));
        let mut hit = path.clone();
        hit[100] = "x".into();
        hit[399] = "y".into();
        assert!(glob.matches(&hit));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    }

    fn m(glob: &str, path: &str) -> bool {
        let path: Vec<&str> = path.split('.').collect();
        PathGlob::parse(glob).unwrap().matches(&path)
    }

    #[test]
    fn component_globs() {
        assert!(m("packages.*.*", "packages.x86_64-linux.hello"));
        assert!(!m("packages.*.*", "packages.x86_64-linux"));
        assert!(!m("packages.*", "packages.x86_64-linux.hello"));
        assert!(m("packages.*-linux.h?llo", "packages.x86_64-linux.hello"));
        assert!(m("**.hello", "legacyPackages.x.tools.hello"));
        assert!(m("legacyPackages.**", "legacyPackages"));
        assert!(!m("lib", "libx"));
    }

    #[test]
    fn quoted_components_and_errors() {
        let g = PathGlob::parse("lib.\"a.b\"").unwrap();
        assert!(g.matches(&["lib", "a.b"]));
        assert!(PathGlob::parse("a..b").is_err());
        assert!(PathGlob::parse("a.\"b").is_err());
        assert!(PathGlob::parse("a.[").is_err());
    }
}
