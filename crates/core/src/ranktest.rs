//! Rank statistics for noisy metrics (wall, cpu, rss) between two sets of runs: the
//! Mann-Whitney U test and the Hodges-Lehmann shift with its confidence interval.
//!
//! - U is computed from midranks (ties share their average rank).
//! - The two-sided p-value is exact (the null distribution of U, counted) when there are no
//!   ties and both samples are small, as scipy's `mannwhitneyu(method="auto")` does; otherwise
//!   the normal approximation with tie correction and continuity correction (scipy's
//!   `method="asymptotic", use_continuity=True`).
//! - The Hodges-Lehmann shift is the median of all differences `new - base`; its confidence
//!   interval takes the order statistics of those differences at the Mann-Whitney critical
//!   value (exact for small samples, normal beyond), as R's `wilcox.test(conf.int = TRUE)`.

/// Samples at most this size (each) get the exact null distribution (scipy: 8).
const EXACT_MAX: usize = 8;

/// The result of comparing `base` and `new` samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankTest {
    /// U of the `new` sample: how many (base, new) pairs have new > base (ties count 1/2).
    pub u: f64,
    /// Two-sided p-value of "no shift".
    pub p: f64,
    /// Whether `p` is exact (else the normal approximation).
    pub exact: bool,
    /// Hodges-Lehmann estimate of the shift `new - base`.
    pub shift: f64,
    /// Confidence interval of the shift, at the level asked.
    pub shift_low: f64,
    pub shift_high: f64,
}

/// Compares two samples; `None` when either has fewer than 2 runs (no test is possible).
pub fn compare(base: &[f64], new: &[f64], confidence: f64) -> Option<RankTest> {
    Tester::new(confidence).compare(base, new)
}

/// Compares many pairs of samples at one confidence level: the normal quantile and the exact
/// null distributions are computed once, not per pair (a comparison tests every output).
pub struct Tester {
    confidence: f64,
    z: f64,
    exact_counts: std::collections::HashMap<(usize, usize), Vec<f64>>,
}

impl Tester {
    pub fn new(confidence: f64) -> Tester {
        Tester { confidence, z: normal_quantile(1.0 - (1.0 - confidence) / 2.0), exact_counts: Default::default() }
    }

    /// Like [`compare`].
    pub fn compare(&mut self, base: &[f64], new: &[f64]) -> Option<RankTest> {
        if base.len() < 2 || new.len() < 2 {
            return None;
        }
        let (n1, n2) = (base.len(), new.len());
        let (u, tie_term) = u_statistic(base, new);
        let small = n1 <= EXACT_MAX && n2 <= EXACT_MAX;
        let exact = tie_term == 0.0 && small;
        let counts = small.then(|| &*self.exact_counts.entry((n1, n2)).or_insert_with(|| u_counts(n1, n2)));
        let p = match counts {
            Some(counts) if exact => exact_p(u, n1, n2, counts),
            _ => normal_p(u, n1, n2, tie_term),
        };
        let k = critical_rank(n1, n2, 1.0 - self.confidence, counts, self.z);
        let (shift, shift_low, shift_high) = hodges_lehmann(base, new, k);
        Some(RankTest { u, p, exact, shift, shift_low, shift_high })
    }
}

/// U of `new` (midranks), and Σ(t³ − t) over tie groups (0 without ties).
fn u_statistic(base: &[f64], new: &[f64]) -> (f64, f64) {
    let mut all: Vec<(f64, bool)> = base.iter().map(|&v| (v, false)).chain(new.iter().map(|&v| (v, true))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_new = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let midrank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_new += midrank * all[i..=j].iter().filter(|(_, is_new)| *is_new).count() as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let n2 = new.len() as f64;
    (rank_sum_new - n2 * (n2 + 1.0) / 2.0, tie_term)
}

/// Counts of U = 0..=n1·n2 over all arrangements of n1 and n2 distinct values.
fn u_counts(n1: usize, n2: usize) -> Vec<f64> {
    // counts[a][b] as a rolling table over b, for the recurrence
    // f(a, b, u) = f(a - 1, b, u - b) + f(a, b - 1, u).
    let max = n1 * n2;
    let mut table = vec![vec![vec![0.0f64; max + 1]; n2 + 1]; n1 + 1];
    for a in 0..=n1 {
        for b in 0..=n2 {
            if a == 0 || b == 0 {
                table[a][b][0] = 1.0;
                continue;
            }
            for u in 0..=a * b {
                let with_a_last = if u >= b { table[a - 1][b][u - b] } else { 0.0 };
                table[a][b][u] = with_a_last + table[a][b - 1][u];
            }
        }
    }
    table[n1][n2].clone()
}

fn exact_p(u: f64, n1: usize, n2: usize, counts: &[f64]) -> f64 {
    let total: f64 = counts.iter().sum();
    let big = u.max((n1 * n2) as f64 - u).round() as usize;
    let upper: f64 = counts[big..].iter().sum::<f64>() / total;
    (2.0 * upper).min(1.0)
}

fn normal_p(u: f64, n1: usize, n2: usize, tie_term: f64) -> f64 {
    let (a, b) = (n1 as f64, n2 as f64);
    let n = a + b;
    let mean = a * b / 2.0;
    let variance = a * b / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        return 1.0; // every value equal: nothing moved
    }
    let big = u.max(a * b - u);
    let z = (big - mean - 0.5) / variance.sqrt();
    (libm::erfc(z / std::f64::consts::SQRT_2)).min(1.0)
}

/// The Hodges-Lehmann shift of `new` over `base` and its confidence interval [d_(k), d_(m+1-k)].
fn hodges_lehmann(base: &[f64], new: &[f64], k: usize) -> (f64, f64, f64) {
    let mut diffs: Vec<f64> = new.iter().flat_map(|&y| base.iter().map(move |&x| y - x)).collect();
    diffs.sort_by(f64::total_cmp);
    let m = diffs.len();
    let median = if m % 2 == 1 { diffs[m / 2] } else { (diffs[m / 2 - 1] + diffs[m / 2]) / 2.0 };
    // k is 1-based: the interval is [d_(k), d_(m + 1 - k)], or all of it when samples are too
    // small for the level asked.
    let (low, high) = if k >= 1 && k <= m { (diffs[k - 1], diffs[m - k]) } else { (diffs[0], diffs[m - 1]) };
    (median, low, high)
}

/// The largest k with P(U < k) <= alpha / 2 (so the interval [d_(k), d_(m+1-k)] covers at least
/// 1 − alpha), from the exact distribution (`counts`) for small samples, else the normal
/// approximation with `z`, the normal quantile of 1 − alpha / 2.
fn critical_rank(n1: usize, n2: usize, alpha: f64, counts: Option<&Vec<f64>>, z: f64) -> usize {
    let m = (n1 * n2) as f64;
    if let Some(counts) = counts {
        let total: f64 = counts.iter().sum();
        let mut below = 0.0;
        let mut k = 0;
        for &count in counts {
            if (below + count) / total > alpha / 2.0 {
                break;
            }
            below += count;
            k += 1;
        }
        return k;
    }
    let sd = (m * (n1 + n2 + 1) as f64 / 12.0).sqrt();
    (m / 2.0 - z * sd).floor().max(0.0) as usize
}

/// The standard normal quantile, by bisection on erfc (precise to 1e-12; called once per test).
fn normal_quantile(p: f64) -> f64 {
    let (mut low, mut high) = (-10.0f64, 10.0f64);
    for _ in 0..200 {
        let mid = (low + high) / 2.0;
        let cdf = 0.5 * libm::erfc(-mid / std::f64::consts::SQRT_2);
        if cdf < p {
            low = mid;
        } else {
            high = mid;
        }
    }
    (low + high) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-12)
    }

    // Expected values: scipy 1.x, `scipy.stats.mannwhitneyu(new, base, alternative="two-sided")`
    // with method "exact" or "asymptotic" (use_continuity=True), as noted per case; its
    // statistic is U of the first argument, our `u`.

    #[test]
    fn exact_small_samples_match_scipy() {
        // scipy 1.17.1: mannwhitneyu(new, base, method="exact") → U 30.0, p 0.004329004329004329.
        // Hodges-Lehmann: numpy.median of the 30 differences, 0.8. Interval: the U distribution
        // enumerated with itertools.combinations over C(11, 5) = 462 placements gives k = 4, so
        // [d_(4), d_(27)] = [0.4, 1.3].
        let base = [12.1, 11.8, 12.5, 12.0, 11.9, 12.3];
        let new = [12.9, 13.4, 12.7, 13.1, 12.6];
        let t = compare(&base, &new, 0.95).unwrap();
        assert!(t.exact);
        assert_eq!(t.u, 30.0);
        assert!(close(t.p, 0.004329004329004329, 1e-9), "{}", t.p);
        assert!(close(t.shift, 0.8, 1e-9), "{}", t.shift);
        assert!(close(t.shift_low, 0.4, 1e-9) && close(t.shift_high, 1.3, 1e-9), "{t:?}");
    }

    #[test]
    fn ties_use_the_normal_approximation_with_tie_correction_as_scipy() {
        // scipy 1.17.1: mannwhitneyu(new, base, method="asymptotic") → U 93.0,
        // p 0.007558072068706671; numpy.median of the 110 differences: 2.0.
        let base = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 4.0, 5.0, 6.0];
        let new = [3.0, 4.0, 4.0, 5.0, 5.0, 5.0, 6.0, 6.0, 7.0, 8.0, 9.0];
        let t = compare(&base, &new, 0.95).unwrap();
        assert!(!t.exact);
        assert_eq!(t.u, 93.0);
        assert!(close(t.p, 0.007558072068706671, 1e-9), "{}", t.p);
        assert_eq!(t.shift, 2.0);
    }

    #[test]
    fn large_samples_use_the_normal_approximation_as_scipy() {
        // scipy 1.17.1: mannwhitneyu(new, base, method="asymptotic") → U 247.0,
        // p 0.20845355458876536. Interval: k = floor(m/2 − z·sqrt(m(n1+n2+1)/12)) with
        // z = scipy.stats.norm.ppf(0.975) = 1.959963984540054 gives k = 127: [d_(127), d_(274)]
        // = [−1.25, 6.75]; numpy.median of the differences: 2.75.
        let base: Vec<f64> = (0..20).map(|i| i as f64 + 0.5).collect();
        let new: Vec<f64> = (0..20).map(|i| i as f64 + 3.25).collect();
        let t = compare(&base, &new, 0.95).unwrap();
        assert!(!t.exact);
        assert_eq!(t.u, 247.0);
        assert!(close(t.p, 0.20845355458876536, 1e-9), "{}", t.p);
        assert_eq!((t.shift, t.shift_low, t.shift_high), (2.75, -1.25, 6.75));
        assert!(close(normal_quantile(0.975), 1.959963984540054, 1e-9));
    }

    #[test]
    fn exact_without_ties() {
        let base = [1.0, 2.0, 3.0, 4.0, 5.0];
        let new = [6.0, 7.0, 8.0, 9.0, 10.0];
        let t = compare(&base, &new, 0.95).unwrap();
        assert!(t.exact);
        assert_eq!(t.u, 25.0);
        // Exact: 2 / C(10, 5) = 2 / 252.
        assert!(close(t.p, 2.0 / 252.0, 1e-12), "{}", t.p);
        assert_eq!(t.shift, 5.0);
    }

    #[test]
    fn the_same_samples_have_p_one() {
        let a = [3.0, 1.0, 2.0];
        let t = compare(&a, &a, 0.95).unwrap();
        assert_eq!(t.u, 4.5);
        assert_eq!(t.p, 1.0);
        assert_eq!(t.shift, 0.0);
    }

    #[test]
    fn too_few_runs_give_no_test() {
        assert_eq!(compare(&[1.0], &[2.0, 3.0], 0.95), None);
        assert_eq!(compare(&[1.0, 2.0], &[], 0.95), None);
    }

    #[test]
    fn zero_variance_is_no_shift() {
        let t = compare(&[5.0; 12], &[5.0; 12], 0.95).unwrap();
        assert!(!t.exact);
        assert_eq!((t.p, t.shift, t.shift_low, t.shift_high), (1.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn exact_distribution_counts_every_arrangement() {
        // C(n1 + n2, n1) arrangements in all; symmetric about n1 n2 / 2.
        let c = u_counts(4, 6);
        assert_eq!(c.iter().sum::<f64>(), 210.0);
        assert_eq!(c.len(), 25);
        for u in 0..=24 {
            assert_eq!(c[u], c[24 - u]);
        }
        assert_eq!((c[0], c[1], c[2]), (1.0, 1.0, 2.0));
    }
}
