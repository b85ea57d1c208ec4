//! Naming Nix 2.26's call-site frames after what they call.
//!
//! Nix 2.26's `trace-function-calls` gives only the call site's position (`FILE:LINE:COL`),
//! where a reader has to open the file to learn what ran; 2.30+ names the callee (`fib
//! FILE:4:13`, `primop lessThan`). The position of a call is where its applied expression
//! starts, so the source text there names the function: an identifier or attribute path
//! (`fib`, `lib.mapAttrs`, `pkgs.callPackage`), or an operator that calls a builtin (`n < 2` is
//! `primop lessThan`, as 2.30+ calls it). A call site with no name (`(x: x) 1`) is `«lambda»`,
//! as on 2.30+. The position is kept: `fib FILE:14:8`.

use std::collections::HashMap;

/// Renames every call-site frame `FILE:LINE:COL` to `NAME FILE:LINE:COL` (or `primop NAME`)
/// from the text `read` gives for FILE. Frames without a readable position stay as they are.
pub fn name_call_sites(frames: &mut [String], mut read: impl FnMut(&str) -> Option<String>) {
    let mut files: HashMap<String, Option<Source>> = HashMap::new();
    for frame in frames.iter_mut() {
        let Some((file, line, column)) = position(frame) else { continue };
        let source = files.entry(file.to_string()).or_insert_with(|| read(file).map(Source::new));
        let Some(text) = source.as_ref().and_then(|s| s.at(line, column)) else { continue };
        *frame = match callee(text) {
            Callee::Primop(name) => format!("primop {name}"),
            Callee::Named(name) => format!("{name} {frame}"),
            Callee::Anonymous => format!("«lambda» {frame}"),
        };
    }
}

/// `FILE:LINE:COL`, with 1-based line and column.
fn position(frame: &str) -> Option<(&str, usize, usize)> {
    if frame.starts_with('[') || frame.contains(' ') {
        return None; // [truncated], [folded …], or already named
    }
    let mut parts = frame.rsplitn(3, ':');
    let column = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?;
    (line > 0 && column > 0 && file.starts_with('/')).then_some((file, line, column))
}

/// A source file, with where each line starts.
struct Source {
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    fn new(text: String) -> Source {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Source { text, line_starts }
    }

    /// The text from 1-based `line` and `column` (Nix counts columns in bytes) to the line's end.
    fn at(&self, line: usize, column: usize) -> Option<&str> {
        let start = *self.line_starts.get(line - 1)?;
        let end = self.line_starts.get(line).map_or(self.text.len(), |next| next - 1);
        self.text.get(start..end)?.get(column - 1..)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Callee<'a> {
    Named(&'a str),
    Primop(&'a str),
    Anonymous,
}

/// What the call starting at `text` calls.
fn callee(text: &str) -> Callee<'_> {
    let name = attribute_path(text);
    if !name.is_empty() {
        return match name.strip_prefix("builtins.") {
            Some(builtin) if !builtin.contains('.') => Callee::Primop(builtin),
            _ => Callee::Named(name),
        };
    }
    // Binary operators that Nix evaluates by calling a builtin.
    const OPERATORS: [(&str, &str); 6] = [("<=", "lessThan"), (">=", "lessThan"), ("<", "lessThan"), (">", "lessThan"), ("-", "sub"), ("*", "mul")];
    for (operator, primop) in OPERATORS {
        if text.starts_with(operator) {
            return Callee::Primop(primop);
        }
    }
    if text.starts_with('/') && !text.starts_with("//") {
        return Callee::Primop("div");
    }
    Callee::Anonymous
}

/// The identifier or dotted attribute path at the start of `text` (`lib.mapAttrs`), empty if
/// none. Quoted or interpolated components end it.
fn attribute_path(text: &str) -> &str {
    let bytes = text.as_bytes();
    let is_start = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    let is_inner = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'\'' | b'-');
    let mut end = 0;
    let mut i = 0;
    loop {
        if !bytes.get(i).is_some_and(|&b| is_start(b)) {
            break;
        }
        i += 1;
        while bytes.get(i).is_some_and(|&b| is_inner(b)) {
            i += 1;
        }
        end = i;
        if bytes.get(i) != Some(&b'.') {
            break;
        }
        i += 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAKE: &str = "{\n  outputs = { self }:\n    let\n      fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2);\n    in { lib.x = lib.mapAttrs (x: x) { }; y = (x: x) 1; z = builtins.foldl' f 0 [ ]; q = a / b; r = a // b; };\n}\n";

    fn named(frames: &[&str]) -> Vec<String> {
        let mut frames: Vec<String> = frames.iter().map(|f| f.to_string()).collect();
        name_call_sites(&mut frames, |file| (file == "/nix/store/x-source/flake.nix").then(|| FLAKE.to_string()));
        frames
    }

    /// Columns counted by hand in FLAKE's line 4 (`      fib = n: if n < 2 …`) and line 5.
    #[test]
    fn call_sites_are_named_after_what_they_call() {
        let f = "/nix/store/x-source/flake.nix";
        let frames = named(&[
            &format!("{f}:4:21"), // `< 2`
            &format!("{f}:4:37"), // `fib (n - 1)`
            &format!("{f}:4:44"), // `- 1`
            &format!("{f}:5:18"), // `lib.mapAttrs (x: x) { }`
            &format!("{f}:5:47"), // `(x: x) 1`
            &format!("{f}:5:61"), // `builtins.foldl' f 0 [ ]`
        ]);
        assert_eq!(
            frames,
            [
                "primop lessThan".to_string(),
                format!("fib {f}:4:37"),
                "primop sub".to_string(),
                format!("lib.mapAttrs {f}:5:18"),
                format!("«lambda» {f}:5:47"),
                "primop foldl'".to_string(),
            ]
        );
    }

    #[test]
    fn frames_without_a_readable_position_stay() {
        let keep = ["[truncated]", "«string»:1:5", "/nix/store/gone/x.nix:1:1", "/nix/store/x-source/flake.nix:99:1", "/nix/store/x-source/flake.nix:1:500", "fib /nix/store/x-source/flake.nix:4:13"];
        assert_eq!(named(&keep), keep);
    }

    #[test]
    fn operators_and_paths() {
        assert_eq!(callee("a / b"), Callee::Named("a"));
        assert_eq!(callee("/ b"), Callee::Primop("div"));
        assert_eq!(callee("// b"), Callee::Anonymous);
        assert_eq!(callee(">= 3"), Callee::Primop("lessThan"));
        assert_eq!(callee("pkgs.callPackage ./x.nix { }"), Callee::Named("pkgs.callPackage"));
        assert_eq!(callee("x.\"quoted\" 1"), Callee::Named("x"));
        assert_eq!(callee("builtins.a.b 1"), Callee::Named("builtins.a.b"));
    }
}
