//! Order statistics for the end-to-end benches (`benches/failover_e2e`), which time a few
//! dozen events rather than millions of iterations, so criterion does not apply.

/// Order statistics of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    /// The middle value; the mean of the two middle values for an even count.
    pub median: f64,
    /// Nearest rank: the smallest value with at least 95 % of the sample at or below it
    /// (the maximum for fewer than 20 values).
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

/// `None` for an empty sample.
#[must_use]
pub fn summarize(values: &[u64]) -> Option<Summary> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    let (min, max) = (*v.first()?, *v.last()?);
    let median = if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    };
    let rank = (n * 95).div_ceil(100).max(1);
    Some(Summary {
        n,
        median,
        p95: v[rank - 1] as f64,
        min: min as f64,
        max: max as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn median_and_nearest_rank_p95() {
        let v: Vec<u64> = (1..=20).rev().collect();
        let x = summarize(&v).expect("non-empty");
        assert_eq!((x.median, x.p95, x.min, x.max), (10.5, 19.0, 1.0, 20.0));
        let x = summarize(&[3, 1, 2]).expect("non-empty");
        assert_eq!((x.median, x.p95), (2.0, 3.0));
        let x = summarize(&[7]).expect("non-empty");
        assert_eq!((x.median, x.p95, x.n), (7.0, 7.0, 1));
        assert!(summarize(&[]).is_none());
    }
}
