//! Summaries of measured distributions (nearest-rank percentiles).

use serde::{Deserialize, Serialize};

/// Percentiles of a set of measurements, in the unit the caller chose (milliseconds unless a
/// field name says otherwise).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    /// Number of measurements.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Dist {
    /// Summarizes `values` (any order; NaNs are dropped).
    pub fn of(values: &[f64]) -> Dist {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Dist::default();
        }
        let pct = |p: f64| {
            let rank = (p * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        Dist {
            n: v.len(),
            min: v[0],
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dist;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let d = Dist::of(&v);
        assert_eq!(
            (d.min, d.p50, d.p90, d.p99, d.max),
            (1.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Dist::of(&[]).n, 0);
    }
}
