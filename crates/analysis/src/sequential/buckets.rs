//! Per-arm counts over fixed bucket edges, as Prometheus `le` histograms keep them.
//!
//! Bucket `i` holds the values in `(e_{i−1}, e_i]` (`e_{−1} = −∞`); the last bucket,
//! `edges.len()`, holds the values above the last edge. Insert is a binary search,
//! O(log bins); the CDF at every edge is a running sum, O(bins).

use serde::{Deserialize, Serialize};

use crate::AnalysisError;

/// Default edges: log-spaced, 1 % relative width, from 1e-6 to 1e6 (2778 edges). This covers
/// 1 µs to 11 days in seconds and 1 ns to 17 minutes in milliseconds.
pub fn default_edges() -> Vec<f64> {
    let ratio: f64 = 1.01;
    let mut edges = Vec::with_capacity(2800);
    let mut e: f64 = 1e-6;
    let mut i = 0;
    while e <= 1e6 * ratio.sqrt() {
        edges.push(e);
        i += 1;
        e = 1e-6 * ratio.powi(i);
    }
    edges
}

/// Checks edges are finite and strictly increasing, and there is at least one.
pub(crate) fn check_edges(edges: &[f64]) -> Result<(), AnalysisError> {
    if edges.is_empty() {
        return Err(AnalysisError::Invalid("bucket edges are empty".into()));
    }
    if edges.iter().any(|e| !e.is_finite()) {
        return Err(AnalysisError::Invalid("bucket edges must be finite".into()));
    }
    if edges.windows(2).any(|w| w[0] >= w[1]) {
        return Err(AnalysisError::Invalid(
            "bucket edges must be strictly increasing".into(),
        ));
    }
    Ok(())
}

/// Checks values a distribution test may take: not NaN, not negative.
pub(crate) fn check_values(group: &'static str, values: &[f64]) -> Result<(), AnalysisError> {
    if values.iter().any(|v| v.is_nan()) {
        return Err(AnalysisError::NotANumber { group });
    }
    if let Some(v) = values.iter().find(|v| **v < 0.0) {
        return Err(AnalysisError::Invalid(format!(
            "sample `{group}` contains the negative value {v}; the distribution test takes \
             nonnegative values (latencies, sizes)"
        )));
    }
    Ok(())
}

/// Bucket counts of one arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Histogram {
    pub(crate) counts: Vec<u64>,
    pub(crate) total: u64,
}

impl Histogram {
    pub(crate) fn new(edges: &[f64]) -> Self {
        Histogram {
            counts: vec![0; edges.len() + 1],
            total: 0,
        }
    }

    /// The bucket of a (checked) value.
    pub(crate) fn bucket(edges: &[f64], value: f64) -> usize {
        edges.partition_point(|&e| e < value)
    }

    pub(crate) fn insert(&mut self, edges: &[f64], value: f64) {
        self.counts[Self::bucket(edges, value)] += 1;
        self.total += 1;
    }

    pub(crate) fn add_counts(&mut self, counts: &[u64]) {
        for (c, n) in self.counts.iter_mut().zip(counts) {
            *c += n;
        }
        self.total += counts.iter().sum::<u64>();
    }

    pub(crate) fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
    }

    /// Values strictly above edge `j` (`j = edges.len()` means none).
    pub(crate) fn above(&self, j: usize) -> u64 {
        self.counts[j + 1..].iter().sum()
    }

    /// The smallest edge index `j` with `F̂(e_j) ≥ q`, if any edge qualifies.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn quantile_edge(&self, q: f64) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let need = q * self.total as f64;
        let mut cum = 0u64;
        for (j, c) in self.counts[..self.counts.len() - 1].iter().enumerate() {
            cum += c;
            if cum as f64 >= need {
                return Some(j);
            }
        }
        None
    }

    /// The bucket holding the value of rank `r` (1-based, `1 ≤ r ≤ total`).
    pub(crate) fn bucket_of_rank(&self, r: u64) -> usize {
        let mut cum = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= r {
                return i;
            }
        }
        self.counts.len() - 1
    }
}
