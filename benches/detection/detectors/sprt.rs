//! The physical limit: Wald's power-one SPRT (threshold ln 20) with the true parameters and the
//! onset known, on the same traffic and at the same 10 s cadence as every detector.
//! Errors: two-sample, the conditional binomial of error-event labels (θ₁ = p₁/(p₀ + p₁)).
//! Latency scale: two-sample, paired log-latency differences in arrival order, N(ln m, 2s²).
//! Tail-only: no two-sample form (ANALYSIS.md §6), so the one-sample oracle on canary
//! log-latencies with the mixture density known.

use super::Detector;
use crate::limits::{canary_event_share, llr_event_labels, llr_normal_sum, llr_tail};
use crate::traffic::{CANARY, CONTROL, Effect, LOG_SD, MEDIAN_LATENCY_S, Scenario, Window};

/// The limit SPRT.
pub(crate) struct Sprt {
    effect: Effect,
    onset: usize,
    threshold: f64,
    llr: f64,
    /// Log-latencies not yet paired, per arm.
    pending: [Vec<f64>; 2],
    paired: usize,
    pair_sum: f64,
}

impl Sprt {
    /// For `scenario` at level α = 0.05.
    pub(crate) fn new(scenario: &Scenario) -> Self {
        Sprt {
            effect: scenario.effect,
            onset: scenario.onset_window,
            threshold: 20.0_f64.ln(),
            llr: 0.0,
            pending: [Vec::new(), Vec::new()],
            paired: 0,
            pair_sum: 0.0,
        }
    }
}

impl Detector for Sprt {
    fn check(&mut self, w: &Window) -> bool {
        if w.index < self.onset {
            return false;
        }
        match self.effect {
            Effect::None => return false,
            Effect::Errors { from, to } => {
                let theta = canary_event_share(from, to);
                self.llr += llr_event_labels(w.errors[CONTROL], w.errors[CANARY], theta);
            }
            Effect::Scale(m) => {
                for arm in [CONTROL, CANARY] {
                    self.pending[arm].extend(w.latency[arm].iter().map(|v| v.ln()));
                }
                let n = self.pending[CONTROL].len().min(self.pending[CANARY].len());
                let sum: f64 = self.pending[CANARY].drain(..n).sum::<f64>()
                    - self.pending[CONTROL].drain(..n).sum::<f64>();
                self.paired += n;
                self.pair_sum += sum;
                self.llr =
                    llr_normal_sum(self.pair_sum, self.paired, m.ln(), 2.0 * LOG_SD * LOG_SD);
            }
            Effect::Tail { share, factor } => {
                let mu = MEDIAN_LATENCY_S.ln();
                self.llr += w.latency[CANARY]
                    .iter()
                    .map(|v| llr_tail(v.ln(), mu, LOG_SD, share, factor))
                    .sum::<f64>();
            }
        }
        self.llr >= self.threshold
    }
}
