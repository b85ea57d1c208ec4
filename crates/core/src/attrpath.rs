//! Attribute paths as people read them: `packages.x86_64-linux.hello`, with components that are
//! not plain identifiers quoted Nix-style (`lib."a.b"`). Attribute names are data from the
//! flake: control characters are escaped, so a name can never move a terminal's cursor,
//! change its colours or start a new line.

/// Renders a path; the empty path (the outputs themselves) renders as `<outputs>`.
pub fn display_path(path: &[String]) -> String {
    if path.is_empty() {
        return "<outputs>".into();
    }
    let mut out = String::new();
    for (i, component) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_component(&mut out, component);
    }
    out
}

fn is_plain(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''))
}

fn push_component(out: &mut String, name: &str) {
    if is_plain(name) {
        out.push_str(name);
    } else {
        // The Nix literal is valid Nix; for the terminal, what it leaves raw is made visible.
        out.push_str(&sanitize_text(&nix_string(name)));
    }
}

/// A Nix string literal holding `s` verbatim: `"` `\` `${` and newlines escaped.
pub fn nix_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters that change how a terminal shows what follows: C0/C1 controls, DEL, and the
/// Unicode bidirectional overrides and isolates.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// Text inside a double-quoted string of a format whose only escapes are `\\`, `\"` and `\n`
/// (Graphviz DOT, Prometheus label values): controls made visible first, then those escapes.
pub fn escape_quoted(text: &str) -> String {
    sanitize_text(text).replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Replaces unsafe characters of free text (an error message) with `\u{..}` escapes.
pub fn sanitize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || c == '\t' || !is_unsafe_char(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(parts: &[&str]) -> String {
        display_path(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn plain_and_quoted_components() {
        assert_eq!(p(&["packages", "x86_64-linux", "hello"]), "packages.x86_64-linux.hello");
        assert_eq!(p(&["lib", "a.b"]), "lib.\"a.b\"");
        assert_eq!(p(&["x", "1abc"]), "x.\"1abc\"");
        assert_eq!(p(&[]), "<outputs>");
    }

    #[test]
    fn nix_strings_are_literal() {
        assert_eq!(nix_string("a\"b\\c${d}$e\n"), "\"a\\\"b\\\\c\\${d}$e\\n\"");
    }

    #[test]
    fn hostile_names_are_inert() {
        let s = p(&["a", "evil\"\n\x1b[31mred${x}\u{202e}"]);
        assert_eq!(s, "a.\"evil\\\"\\n\\u{1b}[31mred\\${x}\\u{202e}\"");
        assert!(!s.chars().any(is_unsafe_char));
    }
}
