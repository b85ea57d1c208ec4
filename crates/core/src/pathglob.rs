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

fn matches_from<S: AsRef<str>>(parts: &[Part], path: &[S]) -> bool {
    match parts.split_first() {
        None => path.is_empty(),
        Some((Part::AnyDepth, rest)) => (0..=path.len()).any(|skip| matches_from(rest, &path[skip..])),
        Some((Part::Name(p), rest)) => {
            !path.is_empty() && p.matches_with(path[0].as_ref(), OPTIONS) && matches_from(rest, &path[1..])
        }
    }
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
