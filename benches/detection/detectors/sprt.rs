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

/// The two-sample limit for tail-only effects: the SPRT on which arm each request came from,
/// given its value (Poisson arms of equal rate: a request with log-latency `y` is the canary's
/// with probability `r(y)/(1 + r(y))`, `r` the known density ratio canary / control). It uses
/// only what a two-sample test can see, the labels given the pooled values, and no onset
/// dilution (it starts at the onset). The one-sample oracle above also uses the values' own
/// distribution, which a two-sample test does not know.
pub(crate) struct TwoSampleTailSprt {
    scenario: Scenario,
    threshold: f64,
    llr: f64,
}

impl TwoSampleTailSprt {
    /// For a tail `scenario` at level α = 0.05.
    pub(crate) fn new(scenario: &Scenario) -> Self {
        TwoSampleTailSprt {
            scenario: scenario.clone(),
            threshold: 20.0_f64.ln(),
            llr: 0.0,
        }
    }
}

impl Detector for TwoSampleTailSprt {
    fn check(&mut self, w: &Window) -> bool {
        let Effect::Tail { share, factor } = self.scenario.effect_at(w.index) else {
            return false;
        };
        let mu = MEDIAN_LATENCY_S.ln();
        let ln2 = std::f64::consts::LN_2;
        for (arm, v) in [(CONTROL, &w.latency[CONTROL]), (CANARY, &w.latency[CANARY])] {
            for x in v {
                // ln r(y) = the one-sample tail LLR of y.
                let l = llr_tail(x.ln(), mu, LOG_SD, share, factor);
                // ln(1 + r), stable for large r.
                let ln_1p_r = l.max(0.0) + (-l.abs()).exp().ln_1p();
                self.llr += ln2 - ln_1p_r + if arm == CANARY { l } else { 0.0 };
            }
        }
        self.llr >= self.threshold
    }
}

/// Log-latencies not yet paired, per arm; the canary's with the log scale of its window.
#[derive(Default)]
pub(crate) struct Pending {
    control: VecDeque<f64>,
    canary: VecDeque<(f64, f64)>,
}

/// The limit's log-likelihood ratio increment for window `w` under `effect` (the effect in
/// force for that window; none before the onset): event labels for errors, paired
/// log-latency differences for a scale (pairs may span windows, hence `pending`), the
/// one-sample mixture density for a tail.
pub(crate) fn window_llr(effect: Effect, w: &Window, pending: &mut Pending) -> f64 {
    match effect {
        Effect::None => 0.0,
        Effect::Errors { from, to } => {
            let theta = canary_event_share(from, to);
            llr_event_labels(w.errors[CONTROL], w.errors[CANARY], theta)
        }
        Effect::Scale(m) => {
            pending
                .control
                .extend(w.latency[CONTROL].iter().map(|v| v.ln()));
            pending
                .canary
                .extend(w.latency[CANARY].iter().map(|v| (v.ln(), m.ln())));
            let var = 2.0 * LOG_SD * LOG_SD;
            let mut llr = 0.0;
            while !pending.control.is_empty() && !pending.canary.is_empty() {
                let c = pending.control.pop_front().unwrap_or_default();
                let (t, delta) = pending.canary.pop_front().unwrap_or_default();
                llr += llr_normal_sum(t - c, 1, delta, var);
            }
            llr
        }
        Effect::Tail { share, factor } => {
            let mu = MEDIAN_LATENCY_S.ln();
            w.latency[CANARY]
                .iter()
                .map(|v| llr_tail(v.ln(), mu, LOG_SD, share, factor))
                .sum::<f64>()
        }
    }
}

/// The limit SPRT.
pub(crate) struct Sprt {
    scenario: Scenario,
    threshold: f64,
    llr: f64,
    pending: Pending,
}

impl Sprt {
    /// For `scenario` at level α = 0.05.
    pub(crate) fn new(scenario: &Scenario) -> Self {
        Sprt {
            scenario: scenario.clone(),
            threshold: 20.0_f64.ln(),
            llr: 0.0,
            pending: Pending::default(),
        }
    }
}

impl Detector for Sprt {
    fn check(&mut self, w: &Window) -> bool {
        if w.index < self.scenario.onset_window {
            return false;
        }
        // Along a ramp the limit knows each window's parameters.
        self.llr += window_llr(self.scenario.effect_at(w.index), w, &mut self.pending);
        self.llr >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail() -> Scenario {
        Scenario {
            name: "t".into(),
            effect: Effect::Tail {
                share: 0.05,
                factor: 3.0,
            },
            onset_window: 0,
            ramp_windows: 0,
        }
    }

    fn window(control: Vec<f64>, canary: Vec<f64>) -> Window {
        Window {
            index: 0,
            requests: [control.len() as u64, canary.len() as u64],
            errors: [0, 0],
            latency: [control, canary],
        }
    }

    #[test]
    fn two_sample_tail_limit_weighs_labels_given_values() {
        // A slow request (3x the median, deep in the tail) is evidence when the canary served
        // it, against when the control did; a typical one is almost no evidence either way.
        let slow = 0.1 * 3.0 * 1.5;
        let mut d = TwoSampleTailSprt::new(&tail());
        d.check(&window(vec![], vec![slow]));
        let canary_slow = d.llr;
        let mut d = TwoSampleTailSprt::new(&tail());
        d.check(&window(vec![slow], vec![]));
        assert!(canary_slow > 0.4 && d.llr < -0.5, "{canary_slow} {}", d.llr);
        // The two labels' probabilities add up: e^{llr_canary}/2 + e^{llr_control}/2 = 1.
        assert!((f64::midpoint(canary_slow.exp(), d.llr.exp()) - 1.0).abs() < 1e-12);
        let mut d = TwoSampleTailSprt::new(&tail());
        d.check(&window(vec![0.1], vec![0.1]));
        assert!(d.llr.abs() < 0.05, "{}", d.llr);
    }
}
