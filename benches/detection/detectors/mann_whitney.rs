//! Naive peeking: the fixed-horizon two-sided Mann-Whitney test (asymptotic, continuity
//! correction) at p < 0.05, re-run on the growing window at every check.

use cutover_analysis::{Alternative, Method, mann_whitney};

use super::{Detector, Metric, Samples, View};
use crate::traffic::Window;

/// Repeated Mann-Whitney on growing samples.
pub(crate) struct NaiveMannWhitney {
    samples: Samples,
}

impl NaiveMannWhitney {
    /// On `metric` in `view`.
    pub(crate) fn new(metric: Metric, view: View) -> Self {
        NaiveMannWhitney {
            samples: Samples::new(metric, view),
        }
    }
}

impl Detector for NaiveMannWhitney {
    fn check(&mut self, w: &Window) -> bool {
        self.samples.push(w);
        let s = &self.samples;
        // Too little data (or all tied) is no rollback.
        mann_whitney(
            &s.canary,
            &s.control,
            Alternative::TwoSided,
            Method::Asymptotic,
            true,
        )
        .is_ok_and(|r| r.p_value < 0.05)
    }
}
