//! Drift alerts: rules of the form baseline ± delta (`above`, `below`, `outside`), against a
//! fixed value or a rolling window, and period-over-period shifts (`shifted`, Mann-Whitney).
//!
//! Rule syntax: `[GLOB:]METRIC KIND BASELINE DELTA` or `[GLOB:]METRIC shifted PERIOD [@p<ALPHA]`.
//! - `peak-rss above 2GiB +10%`: the latest evaluation's peak RSS above 2.2 GiB;
//! - `packages.**:fncalls outside median(14d) 5%`: an output's latest calls more than 5% from
//!   the median of its previous 14 days;
//! - `wall below p95(7d) 100ms`; `wall shifted 7d @p<0.01`: this week against the last.

use crate::calendar::parse_duration;
use crate::engine::Sample;
use crate::record::{history_metric, metric};
use nix_evalcost_core::gate::quantity;
use nix_evalcost_core::pathglob::PathGlob;
use nix_evalcost_core::ranktest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Above,
    Below,
    Outside,
    Shifted,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Baseline {
    Fixed(f64),
    /// A statistic (`median`, `mean`, `p95`, …) of the series before its latest evaluation.
    Rolling { stat: Stat, window: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    Median,
    Mean,
    Quantile(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Delta {
    Relative(f64),
    Absolute(f64),
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub text: String,
    pub glob: Option<PathGlob>,
    pub metric: usize,
    pub kind: Kind,
    pub baseline: Baseline,
    pub delta: Delta,
    /// `shifted`: the period compared with the one before it, and the significance level.
    pub period: i64,
    pub alpha: f64,
}

impl Rule {
    pub fn parse(text: &str) -> Result<Rule, String> {
        let fail = |why: String| format!("rule '{text}': {why}");
        let words: Vec<&str> = text.split_whitespace().collect();
        let (target, kind) = match words.as_slice() {
            [target, kind, ..] => (*target, *kind),
            _ => return Err(fail("expected '[GLOB:]METRIC above|below|outside BASELINE DELTA' or '[GLOB:]METRIC shifted PERIOD [@p<ALPHA]'".into())),
        };
        let (glob, metric_name) = match target.rsplit_once(':') {
            Some((g, m)) => (Some(PathGlob::parse(g).map_err(fail)?), m),
            None => (None, target),
        };
        let metric = history_metric(metric_name).map_err(fail)?;
        let unit = crate::record::metric(metric).unit;
        let kind = match kind {
            "above" => Kind::Above,
            "below" => Kind::Below,
            "outside" => Kind::Outside,
            "shifted" => Kind::Shifted,
            other => return Err(fail(format!("'{other}' is not a kind: use above, below, outside or shifted"))),
        };
        if kind == Kind::Shifted {
            let period = parse_duration(words.get(2).ok_or_else(|| fail("'shifted' needs a period, like 7d".into()))?).map_err(fail)?;
            let alpha = match words.get(3) {
                None => 0.05,
                Some(w) => match w.strip_prefix("@p<").and_then(|a| a.parse::<f64>().ok()) {
                    Some(a) if a > 0.0 && a < 1.0 => a,
                    _ => return Err(fail(format!("'{w}' is not a significance level like @p<0.01"))),
                },
            };
            if words.len() > 4 {
                return Err(fail("too many words".into()));
            }
            return Ok(Rule { text: text.into(), glob, metric, kind, baseline: Baseline::Fixed(0.0), delta: Delta::Absolute(0.0), period, alpha });
        }
        let [_, _, baseline, delta] = words.as_slice() else {
            return Err(fail("expected a baseline and a delta, like '2GiB +10%' or 'median(14d) 5%'".into()));
        };
        let baseline = parse_baseline(baseline, unit).map_err(fail)?;
        let delta = delta.trim_start_matches(['+', '±']);
        let delta = match delta.strip_suffix('%') {
            Some(p) => Delta::Relative(p.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| fail(format!("'{p}%' is not a percentage")))? / 100.0),
            None => Delta::Absolute(quantity(delta, unit).map_err(fail)?),
        };
        Ok(Rule { text: text.into(), glob, metric, kind, baseline, delta, period: 0, alpha: 0.0 })
    }

    /// How far back samples are needed to evaluate the rule at a time.
    pub fn lookback(&self) -> i64 {
        match (&self.baseline, self.kind) {
            (_, Kind::Shifted) => 2 * self.period,
            (Baseline::Rolling { window, .. }, _) => *window,
            (Baseline::Fixed(_), _) => 0,
        }
    }
}

fn parse_baseline(text: &str, unit: nix_evalcost_core::units::Unit) -> Result<Baseline, String> {
    let Some((stat, rest)) = text.split_once('(') else { return Ok(Baseline::Fixed(quantity(text, unit)?)) };
    let window = parse_duration(rest.strip_suffix(')').ok_or_else(|| format!("'{text}' lacks its ')'"))?)?;
    let stat = match stat {
        "median" => Stat::Median,
        "mean" => Stat::Mean,
        p if p.starts_with('p') => match p[1..].parse::<f64>() {
            Ok(q) if q > 0.0 && q < 100.0 => Stat::Quantile(q / 100.0),
            _ => return Err(format!("'{p}' is not a percentile like p95")),
        },
        other => return Err(format!("'{other}' is not a baseline statistic: use median, mean or pNN")),
    };
    Ok(Baseline::Rolling { stat, window })
}

/// An alert: a series out of its band (or shifted).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Alert {
    pub rule: String,
    pub kind: Kind,
    pub metric: String,
    pub flake: String,
    /// The output's path, or None for the whole evaluation.
    pub output: Option<String>,
    /// The latest evaluation's value (`shifted`: the median of the latest period).
    pub value: f64,
    pub baseline: f64,
    pub low: f64,
    pub high: f64,
    /// When the latest evaluation started (seconds since the epoch).
    pub at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
}

fn statistic(values: &mut [f64], stat: Stat) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(match stat {
        Stat::Mean => values.iter().sum::<f64>() / values.len() as f64,
        Stat::Median => {
            let n = values.len();
            if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
        }
        Stat::Quantile(q) => values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1],
    })
}

/// Evaluates `rule` on one series (its samples in time order, ending at `now`).
pub fn evaluate(rule: &Rule, flake: &str, output: Option<&str>, series: &[Sample], now: i64) -> Option<Alert> {
    let alert = |value, baseline, low, high, at, p| Alert {
        rule: rule.text.clone(),
        kind: rule.kind,
        metric: metric(rule.metric).name.to_string(),
        flake: flake.to_string(),
        output: output.map(str::to_string),
        value,
        baseline,
        low,
        high,
        at,
        p,
    };
    if rule.kind == Kind::Shifted {
        let this: Vec<f64> = series.iter().filter(|s| s.started_at > now - rule.period).map(|s| s.value as f64).collect();
        let last: Vec<f64> = series.iter().filter(|s| s.started_at > now - 2 * rule.period && s.started_at <= now - rule.period).map(|s| s.value as f64).collect();
        let test = ranktest::compare(&last, &this, 1.0 - rule.alpha)?;
        let (mut a, mut b) = (this.clone(), last.clone());
        let (now_median, base_median) = (statistic(&mut a, Stat::Median)?, statistic(&mut b, Stat::Median)?);
        return (test.p < rule.alpha).then(|| alert(now_median, base_median, test.shift_low, test.shift_high, series.last().map_or(now, |s| s.started_at), Some(test.p)));
    }
    let latest = series.last()?;
    let baseline = match &rule.baseline {
        Baseline::Fixed(v) => *v,
        Baseline::Rolling { stat, window } => {
            let mut before: Vec<f64> =
                series[..series.len() - 1].iter().filter(|s| s.started_at >= latest.started_at - window).map(|s| s.value as f64).collect();
            statistic(&mut before, *stat)?
        }
    };
    let delta = match rule.delta {
        Delta::Relative(r) => baseline * r,
        Delta::Absolute(a) => a,
    };
    let (low, high) = (baseline - delta, baseline + delta);
    let value = latest.value as f64;
    let out = match rule.kind {
        Kind::Above => value > high,
        Kind::Below => value < low,
        Kind::Outside => value > high || value < low,
        Kind::Shifted => unreachable!(),
    };
    out.then(|| alert(value, baseline, low, high, latest.started_at, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[i64]) -> Vec<Sample> {
        values.iter().enumerate().map(|(i, &v)| Sample { started_at: i as i64 * 3600, flake: "f".into(), path: String::new(), error: false, value: v, weight: 1.0 }).collect()
    }

    fn fires(rule: &str, values: &[i64]) -> bool {
        let rule = Rule::parse(rule).unwrap();
        evaluate(&rule, "f", None, &series(values), values.len() as i64 * 3600).is_some()
    }

    #[test]
    fn kinds_at_their_boundaries() {
        // Fixed 100 ± 10%: the band is [90, 110], inclusive.
        assert!(!fires("fncalls above 100 +10%", &[110]));
        assert!(fires("fncalls above 100 +10%", &[111]));
        assert!(!fires("fncalls below 100 10%", &[90]));
        assert!(fires("fncalls below 100 10%", &[89]));
        assert!(!fires("fncalls outside 100 10", &[90]) && !fires("fncalls outside 100 10", &[110]));
        assert!(fires("fncalls outside 100 10", &[89]) && fires("fncalls outside 100 10", &[111]));
        // Units.
        assert!(fires("peak-rss above 1GiB 0%", &[(1 << 30) + 1]));
        assert!(!fires("wall above 500ms 0", &[500_000_000]));
    }

    #[test]
    fn rolling_baselines_exclude_the_latest() {
        // median of [100, 100, 120] is 100; 111 > 110.
        assert!(fires("fncalls above median(1d) 10%", &[100, 120, 100, 111]));
        assert!(!fires("fncalls above median(1d) 10%", &[100, 120, 100, 110]));
        // Only the window counts: the 1000 is older than 2h before the latest.
        assert!(fires("fncalls below mean(2h) 0%", &[1000, 50, 50, 40]));
        // No history: no baseline, no alert.
        assert!(!fires("fncalls above median(1d) 0%", &[1_000_000]));
    }

    #[test]
    fn a_shift_between_periods_uses_mann_whitney() {
        // Four hours at ~100, then four at ~200 (period 4h): significant at 5%? 4 vs 4 exact:
        // the smallest two-sided p is 2/70 = 0.029.
        let values = [100, 101, 99, 102, 200, 201, 199, 202];
        let rule = Rule::parse("wall shifted 4h @p<0.05").unwrap();
        let alert = evaluate(&rule, "f", None, &series(&values), 7 * 3600).unwrap();
        assert!((alert.p.unwrap() - 2.0 / 70.0).abs() < 1e-9, "{alert:?}");
        assert!(!fires("wall shifted 4h @p<0.01", &values));
        assert!(!fires("wall shifted 4h", &[100, 101, 99, 102, 100, 101, 99, 102]));
    }

    #[test]
    fn bad_rules_say_why() {
        for (rule, says) in [
            ("rss above 1 1", "does not keep 'rss'"),
            ("wall sideways 1 1", "not a kind"),
            ("wall above median(7x) 1%", "not a duration"),
            ("wall above 1parsec 1%", "not a unit"),
            ("wall above 1s", "expected a baseline and a delta"),
            ("wall shifted 7d @q", "significance"),
        ] {
            let e = Rule::parse(rule).unwrap_err();
            assert!(e.contains(says) && e.starts_with(&format!("rule '{rule}'")), "{rule}: {e}");
        }
    }
}
