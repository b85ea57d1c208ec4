//! Human-readable numbers: counts (k, M, G), bytes (KiB, MiB, GiB) and durations (µs, ms, s).

/// What a metric counts, which decides how it is printed and named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Nanoseconds,
}

pub fn format(value: u64, unit: Unit) -> String {
    match unit {
        Unit::Count => count(value),
        Unit::Bytes => bytes(value),
        Unit::Nanoseconds => duration_ns(value),
    }
}

/// `count` and `word`, pluralised in English by adding `s` ("1 error", "2 errors").
pub fn plural(count: usize, word: &str) -> String {
    format!("{count} {word}{}", if count == 1 { "" } else { "s" })
}

pub fn count(n: u64) -> String {
    scaled(n as f64, 1000.0, &["", "k", "M", "G", "T"], "")
}

pub fn bytes(n: u64) -> String {
    scaled(n as f64, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"], " ")
}

pub fn duration_ns(ns: u64) -> String {
    if ns < 1000 {
        return format!("{ns} ns");
    }
    let ns = ns as f64;
    let (value, unit) = if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", three_digits(value))
}

fn scaled(mut value: f64, step: f64, units: &[&str], sep: &str) -> String {
    let mut unit = 0;
    while value >= step && unit + 1 < units.len() {
        value /= step;
        unit += 1;
    }
    if unit == 0 {
        format!("{}{sep}{}", value as u64, units[0]).trim_end().to_string()
    } else {
        format!("{}{sep}{}", three_digits(value), units[unit])
    }
}

/// About three significant digits: 1.23, 12.3, 123.
fn three_digits(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        assert_eq!(plural(0, "error"), "0 errors");
        assert_eq!(plural(1, "error"), "1 error");
        assert_eq!(plural(2, "derivation"), "2 derivations");
    }

    #[test]
    fn humanized() {
        assert_eq!(count(999), "999");
        assert_eq!(count(1973), "1.97k");
        assert_eq!(count(12_345_678), "12.3M");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(300 * 1024 * 1024), "300 MiB");
        assert_eq!(duration_ns(950), "950 ns");
        assert_eq!(duration_ns(0), "0 ns");
        assert_eq!(duration_ns(1_500_000), "1.50 ms");
        assert_eq!(duration_ns(42_000_000_000), "42.0 s");
    }
}
