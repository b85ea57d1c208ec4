//! Summary statistics of one metric over runs: n, min, median, mean, p95, max. Exact, from
//! all samples (order-independent: samples are sorted first).

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub min: u64,
    /// The middle sample; for an even n, the mean of the two middle ones (rounded down).
    pub median: u64,
    pub mean: f64,
    /// Nearest-rank 95th percentile: the ceil(0.95 n)-th smallest sample.
    pub p95: u64,
    pub max: u64,
}

/// Which statistic a table is ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Median,
    Mean,
    P95,
    Min,
    Max,
    N,
}

impl Stat {
    pub const ALL: [Stat; 6] = [Stat::Median, Stat::Mean, Stat::P95, Stat::Min, Stat::Max, Stat::N];

    /// The name users type and tables show.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Median => "median",
            Stat::Mean => "mean",
            Stat::P95 => "p95",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::N => "n",
        }
    }
}

impl Stats {
    /// Statistics of `samples` (reordered in place). Empty input gives all zeros.
    pub fn of(samples: &mut [u64]) -> Stats {
        let n = samples.len();
        if n == 0 {
            return Stats::default();
        }
        samples.sort_unstable();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            ((samples[n / 2 - 1] as u128 + samples[n / 2] as u128) / 2) as u64
        };
        let rank = (n * 95).div_ceil(100).max(1);
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Stats { n, min: samples[0], median, mean: sum as f64 / n as f64, p95: samples[rank - 1], max: samples[n - 1] }
    }

    /// The value of one statistic, as a number to rank by.
    pub fn get(&self, stat: Stat) -> f64 {
        match stat {
            Stat::Median => self.median as f64,
            Stat::Mean => self.mean,
            Stat::P95 => self.p95 as f64,
            Stat::Min => self.min as f64,
            Stat::Max => self.max as f64,
            Stat::N => self.n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let s = Stats::of(&mut [7, 1, 3]);
        assert_eq!((s.n, s.min, s.median, s.p95, s.max), (3, 1, 3, 7, 7));
        assert!((s.mean - 11.0 / 3.0).abs() < 1e-12);

        let s = Stats::of(&mut [4, 1, 3, 2]);
        assert_eq!((s.median, s.p95), (2, 4)); // (2+3)/2 rounded down; ceil(3.8) = 4th
        assert_eq!(s.mean, 2.5);

        // 20 samples 1..=20: p95 is the 19th smallest.
        let mut v: Vec<u64> = (1..=20).rev().collect();
        let s = Stats::of(&mut v);
        assert_eq!((s.median, s.p95, s.min, s.max), (10, 19, 1, 20));

        // 100 samples: p95 is the 95th.
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(Stats::of(&mut v).p95, 95);

        assert_eq!(Stats::of(&mut []), Stats::default());
        assert_eq!(Stats::of(&mut [u64::MAX, u64::MAX]).median, u64::MAX);
    }
}
