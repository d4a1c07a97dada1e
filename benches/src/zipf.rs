//! Rank `i` (0-based) is drawn with probability proportional to
//! `1 / (i + 1)^s`: with `s = 1`, index 0 comes up twice as often as index 1,
//! three times as often as index 2, and so on — a few hot keys and a long
//! tail, as in real API traffic.

use rand::{Rng, SeedableRng};

/// `count` indices in `0..n`, Zipf-distributed with exponent `s` (index 0 the
/// most frequent), the same for the same `seed`.
///
/// Inverse CDF: the cumulative weights `Σ 1/(j+1)^s` are computed once
/// (`n` × 8 bytes), then each draw is a uniform number in `[0, total)` looked
/// up by binary search. Returns an empty vector when `n` or `count` is 0.
///
/// ```
/// use tollgate_benches::zipf::zipf_indices;
///
/// let idx = zipf_indices(1_000, 1.0, 10_000, 7);
/// assert_eq!(idx.len(), 10_000);
/// assert!(idx.iter().all(|&i| i < 1_000));
/// assert_eq!(idx, zipf_indices(1_000, 1.0, 10_000, 7));
/// ```
pub fn zipf_indices(n: usize, s: f64, count: usize, seed: u64) -> Vec<usize> {
    if n == 0 || count == 0 {
        return Vec::new();
    }
    let mut total = 0.0f64;
    let cumulative: Vec<f64> = (1..=n)
        .map(|rank| {
            total += (rank as f64).powf(-s);
            total
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let u = rng.random::<f64>() * total;
            // The first rank whose cumulative weight exceeds `u`; `min` guards
            // the last rank against rounding in `total`.
            cumulative.partition_point(|&c| c <= u).min(n - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_most_frequent_and_rank_ratio_is_two_for_s_one() {
        let n = 1_000;
        let idx = zipf_indices(n, 1.0, 2_000_000, 42);
        let mut freq = vec![0u64; n];
        for &i in &idx {
            freq[i] += 1;
        }
        let top = freq.iter().enumerate().max_by_key(|&(_, f)| *f).unwrap().0;
        assert_eq!(top, 0, "index 0 must be the most frequent");
        // P(0) / P(1) = 2^s = 2. With 2M draws and H(1000) ≈ 7.49, rank 1
        // gets ≈ 267 000 draws, rank 2 ≈ 133 500: the ratio's standard error
        // is ≈ 0.007, so 0.05 is about seven of them.
        let ratio = freq[0] as f64 / freq[1] as f64;
        assert!((ratio - 2.0).abs() < 0.05, "rank 1 / rank 2 = {ratio}");
        // And the tail behaves: P(0) / P(9) = 10.
        let ratio10 = freq[0] as f64 / freq[9] as f64;
        assert!((ratio10 - 10.0).abs() < 0.5, "rank 1 / rank 10 = {ratio10}");
    }

    #[test]
    fn deterministic_by_seed_and_in_range() {
        let a = zipf_indices(10, 1.0, 1_000, 1);
        assert_eq!(a, zipf_indices(10, 1.0, 1_000, 1));
        assert_ne!(a, zipf_indices(10, 1.0, 1_000, 2));
        assert!(a.iter().all(|&i| i < 10));
        assert!(zipf_indices(0, 1.0, 5, 1).is_empty());
        assert_eq!(zipf_indices(1, 1.0, 5, 1), [0; 5]);
        // s = 0 is uniform: every index turns up.
        let u = zipf_indices(4, 0.0, 4_000, 3);
        assert!((0..4).all(|i| u.contains(&i)));
    }
}
