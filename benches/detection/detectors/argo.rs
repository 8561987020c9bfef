//! Argo Rollouts-style threshold analysis (ANALYSIS.md §4): every 60 s, the last 60 s of each
//! arm; the measurement fails when canary > 1.5 × baseline (error rate, or p99 latency); the run
//! fails when failed measurements exceed `failureLimit` (cutover's `Tally`, Argo's semantics).

use cutover_analysis::{Measurement, RunLimits, RunStatus, Tally, quantile_r7};

use super::{Detector, Metric};
use crate::traffic::{CANARY, CONTROL, Window};

/// Windows per measurement interval (60 s).
const INTERVAL_WINDOWS: usize = 6;
/// The relative threshold m.
const MULTIPLE: f64 = 1.5;

/// Threshold checks every 60 s with a failure limit.
pub(crate) struct Argo {
    metric: Metric,
    limits: RunLimits,
    tally: Tally,
    requests: [u64; 2],
    errors: [u64; 2],
    latency: [Vec<f64>; 2],
}

impl Argo {
    /// With `failureLimit = failure_limit`.
    pub(crate) fn new(metric: Metric, failure_limit: i32) -> Self {
        Argo {
            metric,
            limits: RunLimits {
                failure_limit,
                ..RunLimits::default()
            },
            tally: Tally::default(),
            requests: [0; 2],
            errors: [0; 2],
            latency: [Vec::new(), Vec::new()],
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn value(&self, arm: usize) -> Option<f64> {
        match self.metric {
            Metric::Errors => (self.requests[arm] > 0)
                .then(|| self.errors[arm] as f64 / self.requests[arm] as f64),
            Metric::Latency => quantile_r7(&self.latency[arm], 0.99),
        }
    }
}

impl Detector for Argo {
    fn check(&mut self, w: &Window) -> bool {
        for arm in [CONTROL, CANARY] {
            self.requests[arm] += w.requests[arm];
            self.errors[arm] += w.errors[arm];
            if self.metric == Metric::Latency {
                self.latency[arm].extend_from_slice(&w.latency[arm]);
            }
        }
        if !(w.index + 1).is_multiple_of(INTERVAL_WINDOWS) {
            return false;
        }
        let m = match (self.value(CONTROL), self.value(CANARY)) {
            (Some(base), Some(canary)) if canary > MULTIPLE * base => Measurement::Fail,
            (Some(_), Some(_)) => Measurement::Pass,
            _ => Measurement::Error,
        };
        self.tally.record(m);
        self.requests = [0; 2];
        self.errors = [0; 2];
        self.latency.iter_mut().for_each(Vec::clear);
        self.tally.status(&self.limits) == RunStatus::Failed
    }
}
