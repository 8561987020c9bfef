//! The detectors: each one reads the same simulated windows and says when it would roll back.

pub(crate) mod argo;
pub(crate) mod cusum;
pub(crate) mod cutover;
pub(crate) mod group_sequential;
pub(crate) mod kayenta;
pub(crate) mod mann_whitney;
pub(crate) mod sprt;

use crate::traffic::Window;

/// A detector: sees the 10 s windows in order and says after each one whether it rolls back.
pub(crate) trait Detector: Send {
    /// Reads window `w`; true when the detector rolls back at the check after it.
    fn check(&mut self, w: &Window) -> bool;
}

/// Which metric a detector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    /// Error rate.
    Errors,
    /// Latency.
    Latency,
}

/// How a baseline consumes the data (ANALYSIS.md §6): per-10 s aggregate points, as
/// Prometheus-fed judges do in production, or the raw per-request values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// One point per arm per window: error rate, or mean latency.
    Points,
    /// Every request's value.
    Raw,
}

/// One point per arm for window `w`: the error rate or the mean latency (NaN without requests,
/// which Kayenta's default NaN strategy removes).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn point(w: &Window, arm: usize, metric: Metric) -> f64 {
    match metric {
        Metric::Errors if w.requests[arm] > 0 => w.errors[arm] as f64 / w.requests[arm] as f64,
        Metric::Latency if !w.latency[arm].is_empty() => {
            w.latency[arm].iter().sum::<f64>() / w.latency[arm].len() as f64
        }
        _ => f64::NAN,
    }
}

/// Growing per-arm samples in a view: what Kayenta and the naive Mann-Whitney judge.
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    metric: Metric,
    view: View,
    /// Control values so far.
    pub(crate) control: Vec<f64>,
    /// Canary values so far.
    pub(crate) canary: Vec<f64>,
}

impl Samples {
    /// Empty samples.
    pub(crate) fn new(metric: Metric, view: View) -> Self {
        Samples {
            metric,
            view,
            control: Vec::new(),
            canary: Vec::new(),
        }
    }

    /// Appends window `w`.
    pub(crate) fn push(&mut self, w: &Window) {
        use crate::traffic::{CANARY, CONTROL};
        match self.view {
            View::Points => {
                for (arm, v) in [(CONTROL, &mut self.control), (CANARY, &mut self.canary)] {
                    let p = point(w, arm, self.metric);
                    if !p.is_nan() {
                        v.push(p);
                    }
                }
            }
            View::Raw => match self.metric {
                Metric::Latency => {
                    self.control.extend_from_slice(&w.latency[CONTROL]);
                    self.canary.extend_from_slice(&w.latency[CANARY]);
                }
                Metric::Errors => {
                    for (arm, v) in [(CONTROL, &mut self.control), (CANARY, &mut self.canary)] {
                        let (n, e) = (w.requests[arm], w.errors[arm]);
                        v.extend((0..n).map(|i| if i < e { 1.0 } else { 0.0 }));
                    }
                }
            },
        }
    }
}
