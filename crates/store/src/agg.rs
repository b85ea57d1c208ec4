//! Aggregates of one metric over many samples: exact count, sum, minimum and maximum, and a
//! DDSketch for percentiles (relative error at most 1%). Mergeable, so a day's aggregate is
//! kept in step with inserts and a year is 365 merges.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

#[derive(Clone, Serialize, Deserialize)]
pub struct Agg {
    pub n: i64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
    /// Samples from evaluations of this path that failed.
    pub errors: i64,
    /// How many evaluations the samples stand for: each passive report sampled at rate r
    /// counts 1/r (walks and unsampled reports count 1).
    #[serde(default)]
    pub estimated: f64,
    sketch: DDSketch,
}

impl std::fmt::Debug for Agg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Agg {{ n: {}, sum: {}, min: {}, max: {}, errors: {} }}", self.n, self.sum, self.min, self.max, self.errors)
    }
}

/// 1% relative accuracy (DDSketch's alpha).
const ALPHA: f64 = 0.01;

impl Default for Agg {
    fn default() -> Self {
        Agg { n: 0, sum: 0, min: i64::MAX, max: i64::MIN, errors: 0, estimated: 0.0, sketch: DDSketch::new(Config::new(ALPHA, 2048, 1.0)) }
    }
}

impl Agg {
    /// One sample, standing for `weight` evaluations (1 / the report's sample rate).
    pub fn add(&mut self, value: i64, error: bool, weight: f64) {
        self.n += 1;
        self.estimated += weight;
        self.sum = self.sum.saturating_add(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.errors += error as i64;
        self.sketch.add(value as f64);
    }

    pub fn merge(&mut self, other: &Agg) {
        if other.n == 0 {
            return;
        }
        self.n += other.n;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.errors += other.errors;
        self.estimated += other.estimated;
        self.sketch.merge(&other.sketch).expect("every Agg's sketch has the same configuration");
    }

    /// The `q` quantile (0..1), within 1% of the true one, clamped to [min, max].
    pub fn quantile(&self, q: f64) -> Option<i64> {
        if self.n == 0 {
            return None;
        }
        let v = self.sketch.quantile(q).ok().flatten()?;
        Some((v.round() as i64).clamp(self.min, self.max))
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum as f64 / self.n as f64)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an Agg serialises")
    }

    pub fn from_json(text: &str) -> Result<Agg, String> {
        serde_json::from_str(text).map_err(|e| format!("a stored aggregate is unreadable: {e}"))
    }

    /// What a recomputation must reproduce exactly (the sketch's float sum aside).
    /// `estimated` is a float sum, compared to 1/1000 of an evaluation.
    pub fn fingerprint(&self) -> (i64, i64, i64, i64, i64, i64, Vec<Option<i64>>) {
        let qs = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0].iter().map(|&q| self.quantile(q)).collect();
        (self.n, self.sum, self.min, self.max, self.errors, (self.estimated * 1000.0).round() as i64, qs)
    }
}

/// The nearest-rank `q` quantile of `samples` (sorted here): exact, for raw-data queries.
pub fn exact_quantile(samples: &mut [i64], q: f64) -> Option<i64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    Some(samples[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_equals_direct_and_quantiles_are_within_one_percent() {
        let (mut a, mut b, mut all) = (Agg::default(), Agg::default(), Agg::default());
        let mut samples: Vec<i64> = (1..=1000).map(|i| i * 1_000 + (i * 7919) % 997).collect();
        for (i, &v) in samples.iter().enumerate() {
            if i % 3 == 0 { a.add(v, i % 10 == 1, 1.0) } else { b.add(v, i % 10 == 1, 1.0) }
            all.add(v, i % 10 == 1, 1.0);
        }
        a.merge(&b);
        assert_eq!(a.fingerprint(), all.fingerprint());
        for q in [0.5, 0.95, 0.99] {
            let exact = exact_quantile(&mut samples, q).unwrap() as f64;
            let approx = all.quantile(q).unwrap() as f64;
            assert!((approx - exact).abs() <= 0.011 * exact, "q={q}: {approx} vs {exact}");
        }
        let back = Agg::from_json(&all.to_json()).unwrap();
        assert_eq!(back.fingerprint(), all.fingerprint());
    }

    #[test]
    fn nearest_rank() {
        let mut s = vec![5, 1, 4, 2, 3];
        assert_eq!(exact_quantile(&mut s, 0.5), Some(3));
        assert_eq!(exact_quantile(&mut s, 0.95), Some(5));
        assert_eq!(exact_quantile(&mut s, 0.0), Some(1));
        assert_eq!(exact_quantile(&mut [], 0.5), None);
    }
}
