//! A reference that does not know the onset: Page's CUSUM on the limit's own log-likelihood
//! ratio increments (the full effect's parameters known, the onset and any ramp not), with its
//! threshold set so that it raises a false alarm in at most 5 % of 30-minute runs without an
//! effect, the false-rollback budget every cutover test is held to. The SPRT limit knows when
//! the effect starts; a test that must watch for it from the first check cannot, and this is
//! the best such a test can do with everything else known (CUSUM is optimal for a known
//! change, Lorden 1971, Moustakides 1986).

use super::Detector;
use super::sprt::{Pending, window_llr};
use crate::sim::replications;
use crate::traffic::{Effect, Scenario, Traffic, WINDOWS, Window};

/// Runs without an effect used to set the threshold.
pub(crate) const CALIBRATION_REPS: usize = 1000;

/// The share of effect-free runs in which the CUSUM may raise a false alarm.
const FALSE_ALARMS: f64 = 0.05;

/// Page's CUSUM: `S = max(0, S + llr)` after each window, alarm at `S ≥ threshold`.
pub(crate) struct Cusum {
    effect: Effect,
    threshold: f64,
    statistic: f64,
    pending: Pending,
}

impl Cusum {
    /// For the full `effect`, with a `threshold` from [`calibrate`].
    pub(crate) fn new(effect: Effect, threshold: f64) -> Self {
        Cusum {
            effect,
            threshold,
            statistic: 0.0,
            pending: Pending::default(),
        }
    }

    fn update(&mut self, w: &Window) -> f64 {
        self.statistic = (self.statistic + window_llr(self.effect, w, &mut self.pending)).max(0.0);
        self.statistic
    }
}

impl Detector for Cusum {
    fn check(&mut self, w: &Window) -> bool {
        self.update(w) >= self.threshold
    }
}

/// The threshold for `effect` at `rate`: the smallest value the CUSUM's largest statistic over
/// 30 minutes reaches in at most 5 % of `reps` effect-free runs (the same traffic model, the
/// effect never starting), on `threads` threads. Seeded apart from the benchmark's own runs.
pub(crate) fn calibrate(seed: u64, effect: Effect, rate: f64, reps: usize, threads: usize) -> f64 {
    threshold(&peaks(seed, effect, rate, reps, threads))
}

/// Just above the largest statistic of all but the highest `⌊5 % · n⌋` of `sorted` peaks.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]
fn threshold(sorted: &[f64]) -> f64 {
    let allowed = (FALSE_ALARMS * sorted.len() as f64).floor() as usize;
    let at = sorted.len().saturating_sub(allowed + 1);
    sorted.get(at).map_or(f64::INFINITY, |p| p.next_up())
}

/// The CUSUM's largest statistic over 30 minutes in each of `reps` effect-free runs, sorted.
fn peaks(seed: u64, effect: Effect, rate: f64, reps: usize, threads: usize) -> Vec<f64> {
    let null = Scenario {
        name: "calibration".into(),
        effect,
        onset_window: WINDOWS,
        ramp_windows: 0,
    };
    let mut peaks = replications(reps, threads, |rep| {
        let traffic = Traffic {
            seed: seed ^ 0xC05A_11B8_A7E5_0001,
            replication: u64::try_from(rep).unwrap_or(u64::MAX),
            rate,
            scenario: &null,
        };
        let mut cusum = Cusum::new(effect, f64::INFINITY);
        let mut w = Window::default();
        (0..WINDOWS).fold(0.0_f64, |peak, i| {
            traffic.window(i, &mut w);
            peak.max(cusum.update(&w))
        })
    });
    peaks.sort_by(f64::total_cmp);
    peaks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_keeps_false_alarms_at_five_percent_of_calibration_runs() {
        let effect = Effect::Errors {
            from: 0.01,
            to: 0.02,
        };
        let runs = peaks(7, effect, 5.0, 200, 2);
        let h = threshold(&runs);
        // ⌊5 % · 200⌋ = 10 of the runs reach it, and one more would reach anything lower.
        assert_eq!(runs.iter().filter(|&&p| p >= h).count(), 10);
        assert_eq!(runs.iter().filter(|&&p| p >= runs[189]).count(), 11);
        // Above the limit's ln 20: watching 180 windows for an onset costs more than one.
        assert!(h > 20.0_f64.ln(), "{h}");
        // The same runs whatever the thread count.
        assert_eq!(calibrate(7, effect, 5.0, 200, 1).to_bits(), h.to_bits());
    }

    #[test]
    fn the_statistic_restarts_at_zero_and_alarms_at_the_threshold() {
        let effect = Effect::Errors {
            from: 0.01,
            to: 0.02,
        };
        let mut c = Cusum::new(effect, 2.0);
        let w = |control, canary| Window {
            index: 0,
            requests: [100, 100],
            errors: [control, canary],
            latency: [Vec::new(), Vec::new()],
        };
        // Control errors push it below zero, where it stays at zero.
        assert!(!c.check(&w(5, 0)));
        assert!(c.statistic.abs() < f64::EPSILON);
        // Each canary error adds ln(4/3); seven of them pass 2.
        assert!(!c.check(&w(0, 6)));
        assert!(c.check(&w(0, 1)));
    }
}
