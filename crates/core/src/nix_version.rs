//! The one parser of Nix version strings (`2.26.3`, `2.34.8pre20250101_abcdef`, `2.35.2-dirty`).
//!
//! Self-contained (std only): the plugin's build.rs includes this file with `#[path]`, so the
//! version it compiles `cpp/compat.hh` for is parsed exactly as the CLI and the plugin parse it.

/// A Nix release: major, minor and patch (0 when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NixVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl NixVersion {
    /// Parses the leading `MAJOR.MINOR[.PATCH]` of a version; anything after it (a `pre…`
    /// suffix, `-dirty`) is ignored. `None` when there is no `MAJOR.MINOR`.
    pub fn parse(text: &str) -> Option<NixVersion> {
        let mut numbers = text.trim().split('.').map(leading_number);
        let major = numbers.next()??;
        let minor = numbers.next()??;
        let patch = numbers.next().flatten().unwrap_or(0);
        Some(NixVersion { major, minor, patch })
    }

    /// A plugin is linked against one Nix's libraries: it loads only into the same minor
    /// release (patch releases keep the ABI).
    pub fn same_minor(&self, other: &NixVersion) -> bool {
        (self.major, self.minor) == (other.major, other.minor)
    }

    /// `2.26`: the release series, as users name it.
    pub fn series(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// Whether this Nix is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for NixVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The digits a version component starts with (`8pre2025` → 8); `None` without any.
fn leading_number(part: &str) -> Option<u32> {
    let end = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
    part[..end].parse().ok()
}

/// Whether two version strings name the same minor release; false when either does not parse.
pub fn same_minor(a: &str, b: &str) -> bool {
    match (NixVersion::parse(a), NixVersion::parse(b)) {
        (Some(a), Some(b)) => a.same_minor(&b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases_and_development_versions() {
        let v = |major, minor, patch| Some(NixVersion { major, minor, patch });
        assert_eq!(NixVersion::parse("2.26.3"), v(2, 26, 3));
        assert_eq!(NixVersion::parse("2.26"), v(2, 26, 0));
        assert_eq!(NixVersion::parse("2.34.8pre20250101_abcdef"), v(2, 34, 8));
        assert_eq!(NixVersion::parse("2.35pre20251001_dirty"), v(2, 35, 0));
        assert_eq!(NixVersion::parse(" 2.35.2\n"), v(2, 35, 2));
        assert_eq!(NixVersion::parse("2.35.2-dirty"), v(2, 35, 2));
        for bad in ["", "2", "x.y", "nix (Nix) 2.26.3", ".26"] {
            assert_eq!(NixVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn compatibility_is_by_minor_release() {
        assert!(same_minor("2.26.3", "2.26.0"));
        assert!(same_minor("2.34.8pre1", "2.34.8"));
        assert!(!same_minor("2.26.3", "2.35.2"));
        assert!(!same_minor("2.26.3", "garbage"));
        let v = NixVersion::parse("2.32.1").unwrap();
        assert!(v.at_least(2, 32) && v.at_least(2, 30) && !v.at_least(2, 33));
        assert_eq!(v.series(), "2.32");
        assert_eq!(v.to_string(), "2.32.1");
    }
}
