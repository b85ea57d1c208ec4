//! Gates: rules that fail a comparison, such as `fncalls:+5%`, `alloc:+64MiB`,
//! `wall:+10%@p<0.05` or `packages.*.*:thunks:+1%`.
//!
//! `[PATH-GLOB:]METRIC:+LIMIT[@p<P]`: without a glob the rule judges the totals, with one every
//! output on both sides that matches it. LIMIT is a relative increase (`+5%`) or an absolute
//! one in the metric's unit (`+64MiB`, `+200ms`, `+10k`). `@p<P` (noisy metrics only) also asks
//! that the Mann-Whitney test find the shift significant.

use crate::compare::{is_noisy, Change, Comparison, Presence};
use crate::metric::{self, Metric};
use crate::pathglob::PathGlob;
use crate::units::Unit;

#[derive(Clone, Debug)]
pub struct Rule {
    /// As the user wrote it.
    pub text: String,
    pub glob: Option<PathGlob>,
    pub metric: &'static Metric,
    pub limit: Limit,
    /// Significance asked for, if any.
    pub p_below: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// A relative increase: 0.05 for `+5%`.
    Relative(f64),
    /// An absolute increase, in the metric's base unit (bytes, nanoseconds, count).
    Absolute(f64),
}

impl Rule {
    /// Parses one rule; the error quotes it and says what is wrong.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let bad = |why: String| format!("bad rule '{}': {why}", crate::attrpath::sanitize_text(text));
        // From the right: the limit, the metric, and the glob (which may itself contain ':').
        let mut parts = text.rsplitn(3, ':');
        let limit_text = parts.next().unwrap_or_default();
        let metric_text = parts.next().ok_or_else(|| bad("expected [PATH-GLOB:]METRIC:+LIMIT, e.g. fncalls:+5% or packages.*.*:wall:+10%@p<0.05".into()))?;
        let glob = parts.next().map(|g| PathGlob::parse(g).map_err(&bad)).transpose()?;
        let metric = metric::find(metric_text).map_err(&bad)?;
        let (limit_text, p_below) = match limit_text.split_once("@p<") {
            Some((l, p)) => (l, Some(parse_p(p).map_err(&bad)?)),
            None if limit_text.contains('@') => return Err(bad("a significance is written @p<P, e.g. @p<0.05".into())),
            None => (limit_text, None),
        };
        if p_below.is_some() && !is_noisy(metric) {
            return Err(bad(format!("{} is an exact counter: a significance (@p<…) applies to noisy metrics (wall, cpu, heap, rss, peak-rss)", metric.name)));
        }
        let limit = parse_limit(limit_text, metric.unit).map_err(&bad)?;
        Ok(Rule { text: text.to_string(), glob, metric, limit, p_below })
    }

    /// Whether `change` (of this rule's metric) breaks the rule.
    pub fn trips(&self, change: &Change) -> bool {
        let over = match self.limit {
            Limit::Absolute(limit) => change.delta > limit,
            Limit::Relative(limit) => match change.relative {
                Some(r) => r > limit,
                None => change.delta > 0.0, // from nothing to something
            },
        };
        let significant = match self.p_below {
            Some(p) => change.test.is_some_and(|t| t.p < p),
            None => true,
        };
        over && significant
    }
}

fn parse_p(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if p > 0.0 && p < 1.0 => Ok(p),
        _ => Err(format!("the significance level '{text}' is not a number between 0 and 1")),
    }
}

fn parse_limit(text: &str, unit: Unit) -> Result<Limit, String> {
    let Some(amount) = text.strip_prefix('+') else {
        return Err(format!("the limit '{text}' must be an increase, written +N% or +N with a unit"));
    };
    if let Some(pct) = amount.strip_suffix('%') {
        return number(pct).map(|v| Limit::Relative(v / 100.0));
    }
    let split = amount.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(amount.len());
    let (value, suffix) = amount.split_at(split);
    let factor = unit_factor(suffix, unit)?;
    Ok(Limit::Absolute(number(value)? * factor))
}

/// A quantity of a metric: `2GiB`, `500ms`, `1.5M`, a bare number in the metric's unit.
pub fn quantity(text: &str, unit: Unit) -> Result<f64, String> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (value, suffix) = text.split_at(split);
    let value = number(value)?;
    if value == 0.0 && suffix.is_empty() {
        return Ok(0.0); // nothing needs a unit
    }
    Ok(value * unit_factor(suffix, unit)?)
}

fn number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("'{text}' is not a number")),
    }
}

/// The base units a suffix stands for, for a metric of `unit`.
fn unit_factor(suffix: &str, unit: Unit) -> Result<f64, String> {
    let factor = match (unit, suffix) {
        (Unit::Bytes, "" | "B") => 1.0,
        (Unit::Bytes, "KiB") => 1024.0,
        (Unit::Bytes, "MiB") => 1024.0 * 1024.0,
        (Unit::Bytes, "GiB") => 1024.0 * 1024.0 * 1024.0,
        (Unit::Bytes, "kB" | "KB") => 1e3,
        (Unit::Bytes, "MB") => 1e6,
        (Unit::Bytes, "GB") => 1e9,
        (Unit::Nanoseconds, "ns") => 1.0,
        (Unit::Nanoseconds, "us" | "µs") => 1e3,
        (Unit::Nanoseconds, "ms") => 1e6,
        (Unit::Nanoseconds, "s") => 1e9,
        (Unit::Count, "") => 1.0,
        (Unit::Count, "k") => 1e3,
        (Unit::Count, "M") => 1e6,
        (Unit::Count, "G") => 1e9,
        _ => {
            let units = match unit {
                Unit::Bytes => "B, KiB, MiB, GiB, kB, MB, GB",
                Unit::Nanoseconds => "ns, us, ms, s",
                Unit::Count => "none, k, M, G",
            };
            return Err(format!("'{suffix}' is not a unit of this metric (use {units}, or a percentage)"));
        }
    };
    Ok(factor)
}

/// A rule broken by an output (or by the totals, `path: None`).
#[derive(Clone, Debug)]
pub struct Violation<'a> {
    pub rule: &'a Rule,
    pub path: Option<&'a [String]>,
    pub change: &'a Change,
}

/// Every rule broken in `comparison`, outputs first (in path order), then the totals.
/// A rule whose metric was not compared is a bug of the caller (it merges the rules' metrics).
pub fn violations<'a>(rules: &'a [Rule], comparison: &'a Comparison) -> Vec<Violation<'a>> {
    let index = |m: &Metric| comparison.metrics.iter().position(|c| c.name == m.name);
    let mut outputs = Vec::new();
    let mut totals = Vec::new();
    for rule in rules {
        let Some(i) = index(rule.metric) else { continue };
        match &rule.glob {
            None => {
                if rule.trips(&comparison.totals[i]) {
                    totals.push(Violation { rule, path: None, change: &comparison.totals[i] });
                }
            }
            Some(glob) => {
                for p in comparison.paths.iter().filter(|p| p.presence == Presence::Both && glob.matches(&p.path)) {
                    if rule.trips(&p.changes[i]) {
                        outputs.push(Violation { rule, path: Some(&p.path), change: &p.changes[i] });
                    }
                }
            }
        }
    }
    outputs.extend(totals);
    outputs
}

/// Rules with `@p<…` need at least two runs a side: say so rather than pass silently.
pub fn check_testable(rules: &[Rule], base_runs: usize, new_runs: usize) -> Result<(), String> {
    match rules.iter().find(|r| r.p_below.is_some()) {
        Some(rule) if base_runs < 2 || new_runs < 2 => Err(format!(
            "rule '{}' asks for a significance, which needs at least 2 runs a side (have {base_runs} and {new_runs}); profile more runs",
            crate::attrpath::sanitize_text(&rule.text)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranktest::RankTest;

    fn change(metric: &str, before: f64, after: f64, p: Option<f64>) -> Change {
        let delta = after - before;
        Change {
            metric: metric::find(metric).unwrap(),
            before,
            after,
            delta,
            relative: (before != 0.0).then(|| delta / before),
            test: p.map(|p| RankTest { u: 0.0, p, exact: true, shift: delta, shift_low: delta, shift_high: delta }),
            nondeterministic: (false, false),
        }
    }

    #[test]
    fn good_rules_parse() {
        let r = Rule::parse("fncalls:+5%").unwrap();
        assert!(r.glob.is_none() && r.metric.name == "fncalls" && r.limit == Limit::Relative(0.05) && r.p_below.is_none());
        assert_eq!(Rule::parse("alloc:+64MiB").unwrap().limit, Limit::Absolute(64.0 * 1024.0 * 1024.0));
        assert_eq!(Rule::parse("wall:+200ms").unwrap().limit, Limit::Absolute(2e8));
        assert_eq!(Rule::parse("thunks:+10k").unwrap().limit, Limit::Absolute(1e4));
        let r = Rule::parse("wall:+10%@p<0.05").unwrap();
        assert_eq!((r.limit, r.p_below), (Limit::Relative(0.1), Some(0.05)));
        let r = Rule::parse("packages.*.*:thunks:+1%").unwrap();
        assert!(r.glob.unwrap().matches(&["packages", "x86_64-linux", "hello"]));
        let r = Rule::parse(r#"lib."a:b":calls:+0"#).unwrap();
        assert!(r.glob.unwrap().matches(&["lib", "a:b"]), "a quoted name may hold ':'");
    }

    #[test]
    fn bad_rules_are_quoted_with_the_reason() {
        let cases = [
            ("fncalls", "expected [PATH-GLOB:]METRIC:+LIMIT"),
            ("speed:+5%", "unknown metric 'speed'"),
            ("fncalls:5%", "must be an increase"),
            ("fncalls:+x%", "'x' is not a number"),
            ("alloc:+64ms", "'ms' is not a unit of this metric"),
            ("thunks:+1%@p<0.05", "thunks is an exact counter"),
            ("wall:+1%@p<2", "not a number between 0 and 1"),
            ("wall:+1%@q<0.1", "written @p<P"),
            ("a..b:wall:+1%", "empty attribute name"),
        ];
        for (text, why) in cases {
            let err = Rule::parse(text).unwrap_err();
            assert!(err.starts_with(&format!("bad rule '{text}': ")) && err.contains(why), "{text}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn rules_trip_past_their_limit_only() {
        let five = Rule::parse("fncalls:+5%").unwrap();
        assert!(!five.trips(&change("fncalls", 100.0, 105.0, None)), "at the limit: not past it");
        assert!(five.trips(&change("fncalls", 100.0, 106.0, None)));
        assert!(!five.trips(&change("fncalls", 100.0, 90.0, None)));
        assert!(five.trips(&change("fncalls", 0.0, 1.0, None)), "from nothing to something");
        let abs = Rule::parse("alloc:+1KiB").unwrap();
        assert!(abs.trips(&change("alloc", 0.0, 1025.0, None)) && !abs.trips(&change("alloc", 0.0, 1024.0, None)));
        let significant = Rule::parse("wall:+10%@p<0.05").unwrap();
        assert!(significant.trips(&change("wall", 100.0, 150.0, Some(0.01))));
        assert!(!significant.trips(&change("wall", 100.0, 150.0, Some(0.2))), "not significant");
        assert!(!significant.trips(&change("wall", 100.0, 150.0, None)), "untested");
        assert!(check_testable(&[significant], 1, 5).unwrap_err().contains("at least 2 runs a side"));
    }
}
