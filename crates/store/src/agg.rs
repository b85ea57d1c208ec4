//! Aggregates of one metric over many samples: exact count, sum, minimum and maximum, and a
//! sketch for percentiles (relative error at most 1%). Mergeable, so a day's aggregate is kept
//! in step with inserts and a year is 365 merges.
//!
//! The sketch is DDSketch's (Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable
//! quantile sketch with relative-error guarantees", VLDB 2019): a value v >= 1 counts in bucket
//! ceil(log_gamma v) with gamma = (1 + a) / (1 - a); 0 has its own count. Buckets are kept
//! sparse, and stored as `[[key, count], ...]`: a day of one output is a few dozen bytes, which
//! matters at 16 000 aggregates per flake and day (2000 outputs x 8 metrics). The
//! `sketches-ddsketch` crate keeps dense bins and serialises its whole configuration with each
//! sketch (about 600 bytes even when empty), which made the store 1.3 GB for 200 reports.

use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Agg {
    pub n: i64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
    /// Samples from evaluations of this path that failed.
    #[serde(rename = "err")]
    pub errors: i64,
    /// How many evaluations the samples stand for: each passive report sampled at rate r
    /// counts 1/r (walks and unsampled reports count 1).
    #[serde(rename = "est", default)]
    pub estimated: f64,
    /// Samples below 1 (counts and sizes are integers: these are the zeros).
    #[serde(rename = "z", default)]
    zeros: i64,
    /// (bucket key, samples) for samples >= 1, sorted by key. A sorted vector, not a map: most
    /// aggregates hold a few buckets, and ingest builds 16 000 of them per report.
    #[serde(rename = "b", default)]
    buckets: Vec<(i32, i64)>,
}

impl std::fmt::Debug for Agg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Agg {{ n: {}, sum: {}, min: {}, max: {}, errors: {} }}", self.n, self.sum, self.min, self.max, self.errors)
    }
}

/// 1% relative accuracy (DDSketch's alpha): gamma = 1.01 / 0.99.
const GAMMA: f64 = 1.01 / 0.99;

fn key(value: i64) -> i32 {
    ((value as f64).ln() / GAMMA.ln()).ceil() as i32
}

/// The value a bucket stands for: within 1% of every value in it.
fn representative(key: i32) -> f64 {
    2.0 * GAMMA.powi(key) / (GAMMA + 1.0)
}

/// Adds `count` samples to bucket `key` of the sorted `buckets`.
fn bump(buckets: &mut Vec<(i32, i64)>, key: i32, count: i64) {
    match buckets.binary_search_by_key(&key, |(k, _)| *k) {
        Ok(i) => buckets[i].1 += count,
        Err(i) => buckets.insert(i, (key, count)),
    }
}

impl Agg {
    /// One sample, standing for `weight` evaluations (1 / the report's sample rate).
    pub fn add(&mut self, value: i64, error: bool, weight: f64) {
        if self.n == 0 {
            (self.min, self.max) = (value, value);
        }
        self.n += 1;
        self.estimated += weight;
        self.sum = self.sum.saturating_add(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.errors += error as i64;
        if value < 1 {
            self.zeros += 1;
        } else {
            bump(&mut self.buckets, key(value), 1);
        }
    }

    pub fn merge(&mut self, other: &Agg) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            (self.min, self.max) = (other.min, other.max);
        }
        self.n += other.n;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.errors += other.errors;
        self.estimated += other.estimated;
        self.zeros += other.zeros;
        for &(k, c) in &other.buckets {
            bump(&mut self.buckets, k, c);
        }
    }

    /// The `q` quantile (0..1), within 1% of the true one, clamped to [min, max]. The rank is
    /// DDSketch's: the first bucket whose cumulative count exceeds q x (n - 1).
    pub fn quantile(&self, q: f64) -> Option<i64> {
        if self.n == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * (self.n - 1) as f64;
        let mut seen = self.zeros;
        let mut value = 0.0;
        if seen as f64 <= rank {
            for (k, c) in &self.buckets {
                seen += c;
                value = representative(*k);
                if seen as f64 > rank {
                    break;
                }
            }
        }
        Some((value.round() as i64).clamp(self.min, self.max))
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum as f64 / self.n as f64)
    }

    /// Appends the stored form: n, sum, min, max, errors, zeros and the bucket count as
    /// varints (signed ones zigzag), `estimated` as 8 bytes little-endian, then each bucket's
    /// key (the difference from the previous one) and count. A daily row holds eight of these;
    /// JSON took most of an ingest's merge time (measured).
    pub fn encode(&self, out: &mut Vec<u8>) {
        use crate::engine::packed::{put_signed, put_unsigned};
        for v in [self.n, self.sum, self.min, self.max, self.errors, self.zeros] {
            put_signed(out, v);
        }
        out.extend_from_slice(&self.estimated.to_le_bytes());
        put_unsigned(out, self.buckets.len() as u64);
        let mut previous = 0i64;
        for &(k, c) in &self.buckets {
            put_signed(out, i64::from(k) - previous);
            previous = i64::from(k);
            put_signed(out, c);
        }
    }

    /// One aggregate of `encode`'s form, from `r`.
    pub fn decode(r: &mut crate::engine::packed::Reader) -> Result<Agg, String> {
        let [n, sum, min, max, errors, zeros] = [r.signed()?, r.signed()?, r.signed()?, r.signed()?, r.signed()?, r.signed()?];
        let estimated = f64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes"));
        let count = r.unsigned()?;
        if count > r.remaining() as u64 {
            return Err(format!("a stored aggregate claims {count} buckets in {} bytes: it is damaged", r.remaining()));
        }
        let mut buckets = Vec::with_capacity(count as usize);
        let mut key = 0i64;
        for _ in 0..count {
            key += r.signed()?;
            let key = i32::try_from(key).map_err(|_| "a stored aggregate has a bucket key out of range: it is damaged".to_string())?;
            buckets.push((key, r.signed()?));
        }
        Ok(Agg { n, sum, min, max, errors, estimated, zeros, buckets })
    }

    /// What a recomputation must reproduce exactly.
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
        assert_eq!(round_trip(&all).fingerprint(), all.fingerprint());
    }

    #[test]
    fn aggregates_are_small_and_zeros_count() {
        let mut a = Agg::default();
        a.add(0, false, 1.0);
        a.add(0, false, 1.0);
        a.add(1 << 30, true, 2.0);
        let mut stored = Vec::new();
        a.encode(&mut stored);
        // n, min, errors, zeros: a byte each; sum and max (2^30): five each; the float; one
        // bucket (its count, a two-byte key, its count).
        assert_eq!(stored.len(), 4 + 10 + 8 + 1 + 2 + 1, "{stored:?}");
        assert_eq!((a.quantile(0.0), a.quantile(0.5), a.min, a.errors), (Some(0), Some(0), 0, 1));
        let top = a.quantile(1.0).unwrap() as f64;
        assert!((top - (1u64 << 30) as f64).abs() <= 0.01 * (1u64 << 30) as f64);
        assert_eq!(round_trip(&a).fingerprint(), a.fingerprint());
        assert!(Agg::decode(&mut crate::engine::packed::Reader::new(&stored[..stored.len() - 1])).is_err(), "a cut value");
        let mut huge = stored[..22].to_vec();
        huge.extend([0xff, 0xff, 0x03]);
        assert!(Agg::decode(&mut crate::engine::packed::Reader::new(&huge)).unwrap_err().contains("damaged"));
    }

    fn round_trip(a: &Agg) -> Agg {
        let mut stored = Vec::new();
        a.encode(&mut stored);
        let mut r = crate::engine::packed::Reader::new(&stored);
        let back = Agg::decode(&mut r).unwrap();
        assert_eq!(r.remaining(), 0);
        back
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
