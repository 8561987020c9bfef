//! An O'Brien-Fleming group-sequential test with K = 180 looks (one per 10 s check): Lan-DeMets
//! OBF-type spending of α/2 = 0.025 per side, boundaries from `crate::gsd`, rejecting when
//! |z| crosses the look's boundary. z is the pooled two-proportion statistic for errors and the
//! Welch statistic of log-latency for latency, on all data so far.

use std::sync::OnceLock;

use super::{Detector, Metric};
use crate::gsd::{equally_spaced, obf_spending, spending_bounds};
use crate::traffic::{CANARY, CONTROL, WINDOWS, Window};

/// The 180 boundaries, computed once per process.
pub(crate) fn boundaries() -> &'static [f64] {
    static B: OnceLock<Vec<f64>> = OnceLock::new();
    B.get_or_init(|| spending_bounds(&equally_spaced(WINDOWS), obf_spending(0.025)))
}

/// Running sums of one arm.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: f64,
    errors: f64,
    sum: f64,
    sum_sq: f64,
}

/// The group-sequential test.
pub(crate) struct GroupSequential {
    metric: Metric,
    bounds: &'static [f64],
    arms: [Sums; 2],
}

impl GroupSequential {
    /// On `metric`.
    pub(crate) fn new(metric: Metric) -> Self {
        GroupSequential {
            metric,
            bounds: boundaries(),
            arms: [Sums::default(); 2],
        }
    }

    fn z(&self) -> f64 {
        let (c, t) = (self.arms[CONTROL], self.arms[CANARY]);
        if c.n < 2.0 || t.n < 2.0 {
            return 0.0;
        }
        match self.metric {
            Metric::Errors => {
                let p = (c.errors + t.errors) / (c.n + t.n);
                let se = (p * (1.0 - p) * (1.0 / c.n + 1.0 / t.n)).sqrt();
                if se > 0.0 {
                    (t.errors / t.n - c.errors / c.n) / se
                } else {
                    0.0
                }
            }
            Metric::Latency => {
                let var = |s: Sums| (s.sum_sq - s.sum * s.sum / s.n) / (s.n - 1.0);
                let se = (var(c) / c.n + var(t) / t.n).sqrt();
                if se > 0.0 {
                    (t.sum / t.n - c.sum / c.n) / se
                } else {
                    0.0
                }
            }
        }
    }
}

impl Detector for GroupSequential {
    #[allow(clippy::cast_precision_loss)]
    fn check(&mut self, w: &Window) -> bool {
        for arm in [CONTROL, CANARY] {
            let s = &mut self.arms[arm];
            s.n += w.requests[arm] as f64;
            s.errors += w.errors[arm] as f64;
            for &v in &w.latency[arm] {
                let l = v.ln();
                s.sum += l;
                s.sum_sq += l * l;
            }
        }
        self.bounds
            .get(w.index)
            .is_some_and(|&c| self.z().abs() >= c)
    }
}
