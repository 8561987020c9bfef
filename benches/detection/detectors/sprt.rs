//! The physical limit: Wald's power-one SPRT (threshold ln 20) with the true parameters and the
//! onset known, on the same traffic and at the same 10 s cadence as every detector.
//! Errors: two-sample, the conditional binomial of error-event labels (θ₁ = p₁/(p₀ + p₁)).
//! Latency scale: two-sample, paired log-latency differences in arrival order, N(ln m, 2s²).
//! Tail-only: no two-sample form (ANALYSIS.md §6), so the one-sample oracle on canary
//! log-latencies with the mixture density known. Along a ramp it knows each window's
//! parameters.

use std::collections::VecDeque;

use super::Detector;
use crate::limits::{canary_event_share, llr_event_labels, llr_normal_sum, llr_tail};
use crate::traffic::{CANARY, CONTROL, Effect, LOG_SD, MEDIAN_LATENCY_S, Scenario, Window};

/// The limit SPRT.
pub(crate) struct Sprt {
    scenario: Scenario,
    threshold: f64,
    llr: f64,
    /// Log-latencies not yet paired, per arm; the canary's with the log scale of its window.
    pending_control: VecDeque<f64>,
    pending_canary: VecDeque<(f64, f64)>,
}

impl Sprt {
    /// For `scenario` at level α = 0.05.
    pub(crate) fn new(scenario: &Scenario) -> Self {
        Sprt {
            scenario: scenario.clone(),
            threshold: 20.0_f64.ln(),
            llr: 0.0,
            pending_control: VecDeque::new(),
            pending_canary: VecDeque::new(),
        }
    }
}

impl Detector for Sprt {
    fn check(&mut self, w: &Window) -> bool {
        if w.index < self.scenario.onset_window {
            return false;
        }
        // Along a ramp the limit knows each window's parameters.
        match self.scenario.effect_at(w.index) {
            Effect::None => return false,
            Effect::Errors { from, to } => {
                let theta = canary_event_share(from, to);
                self.llr += llr_event_labels(w.errors[CONTROL], w.errors[CANARY], theta);
            }
            Effect::Scale(m) => {
                self.pending_control
                    .extend(w.latency[CONTROL].iter().map(|v| v.ln()));
                self.pending_canary
                    .extend(w.latency[CANARY].iter().map(|v| (v.ln(), m.ln())));
                let var = 2.0 * LOG_SD * LOG_SD;
                while !self.pending_control.is_empty() && !self.pending_canary.is_empty() {
                    let c = self.pending_control.pop_front().unwrap_or_default();
                    let (t, delta) = self.pending_canary.pop_front().unwrap_or_default();
                    self.llr += llr_normal_sum(t - c, 1, delta, var);
                }
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
