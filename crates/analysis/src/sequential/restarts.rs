//! Late onsets: a fixed-weight mixture of e-processes started at different times (an
//! e-detector, Shin, Ramdas & Rinaldo 2023, "E-detectors: a nonparametric framework for
//! sequential change detection"), turned into a test.
//!
//! # Why
//!
//! An e-process started with the data weighs every observation since the start. When a
//! regression begins late (a cache empties, a batch job runs, traffic shifts), the data from
//! before the onset dilutes the effect: after `n₀` events of no difference and `n₁` of a rate
//! ratio `r`, the mixture sees an average effect of about `r^{n₁/(n₀+n₁)}`, and at 100 req/s
//! with an onset at minute 10 the test needed six times as long as the SPRT that knows the
//! onset. An e-process started at the onset sees no diluting data.
//!
//! # Construction \[D\]
//!
//! Beside the e-process `M⁽⁰⁾` that starts with the data (weight `w₀` = [`BASE_WEIGHT`]), a new
//! e-process `M⁽ʲ⁾` of the same kind starts after a check once enough data has come in since
//! the previous start ([`Restarts::after_window`]); `M⁽ʲ⁾` uses only the data after its start
//! and is 1 before it. Restart `j = 1, 2, …` has the weight fixed in advance
//!
//! ```text
//! w_j = (1 − w₀) · h / ((j − 1 + h)(j + h)),    Σ_{j≥1} w_j = 1 − w₀  (telescoping)
//! ```
//!
//! about `(1 − w₀)/h` each for the first `h` = [`HORIZON`] restarts, then falling like `h/j²`.
//!
//! - **Sum** (counts, observed share, tail exceedances): `E_n = w₀M⁽⁰⁾_n + Σ_{j started} w_j
//!   M⁽ʲ⁾_n`. Every `M⁽ʲ⁾` is a nonnegative supermartingale in the filtration of all the data
//!   (each window's labels are fair coins given the window's totals, whatever came before), so
//!   `E_n + Σ_{j not started} w_j` is one too, starting at most at 1; by Ville's inequality
//!   `P_H0(∃n: E_n ≥ 1/α) ≤ α`.
//! - **Max** (the scale-invariant t-mixture of the means test, a martingale only in the
//!   filtration of its own data's scale-free statistic): reject when some `w_j M⁽ʲ⁾_n ≥ 1/α`.
//!   Ville's inequality for each component on its own, `P_H0(∃n: M⁽ʲ⁾_n ≥ 1/(α w_j)) ≤ α w_j`,
//!   and a union bound over `j` give `α` in total, whatever the filtrations.
//!
//! Following every restart forever would cost memory and time without end, so at most
//! [`MAX_LIVE`] restarts are followed at once: beyond that, the one contributing least
//! (`w_j M⁽ʲ⁾`) is **frozen**. A frozen e-process is stopped at a stopping time (the decision
//! depends only on the data so far), and a stopped supermartingale is a supermartingale: under
//! Sum its last value stays in `E_n` as a constant, under Max it is dropped (its contribution
//! is already in the running p-value).
//!
//! The price: `ln(1/w₀) = ln 2` nats of evidence for a regression present from the start, and
//! `ln(1/w_j)` (about 5-7 nats for the 10th-100th restart) for one that begins later, instead
//! of the dilution, which grows with the traffic before the onset (about 70 nats for a doubled
//! error rate after 10 minutes at 100 req/s and 1 % errors). The confidence sequence stays the
//! one of `M⁽⁰⁾`, about the average effect since the start.

use serde::{Deserialize, Serialize};

use super::mixture::log_sum_exp;

/// The weight `w₀` of the e-process that starts with the data; the restarts share the rest.
pub const BASE_WEIGHT: f64 = 0.7;

/// The number `h` of restarts over which the restarts' weight is spread about evenly (module
/// docs): restart `j` has about `(1 − w₀)/h` for `j ≤ h`, and less after.
pub const HORIZON: f64 = 30.0;

/// The most restarts followed at once; beyond this the weakest is frozen (module docs).
pub const MAX_LIVE: usize = 24;

/// How the restarted e-processes add up (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Combine {
    /// The weighted sum, for e-processes in a common filtration.
    Sum,
    /// The largest weighted value (a union bound), for e-processes each in its own filtration.
    Max,
}

/// One restarted e-process: its number `j`, its current `ln M⁽ʲ⁾` (kept up to date by the
/// test that owns it) and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Started<C> {
    pub(crate) number: u64,
    #[serde(with = "super::evidence::non_finite")]
    pub(crate) log_e: f64,
    pub(crate) component: C,
}

/// The restarted e-processes of one test (module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Restarts<C> {
    combine: Combine,
    /// New data (events, exceedances, pairs) needed between two starts.
    spacing: f64,
    /// Data since the latest start.
    pending: f64,
    /// Restarts begun so far.
    starts: u64,
    live: Vec<Started<C>>,
    /// Sum: `ln Σ w_j M⁽ʲ⁾` of the frozen restarts at their freezing (`−∞` for none).
    #[serde(with = "super::evidence::non_finite")]
    frozen: f64,
}

/// `ln w_j` of restart `j ≥ 1` (module docs).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn log_weight(j: u64) -> f64 {
    let j = j as f64;
    ((1.0 - BASE_WEIGHT) * HORIZON).ln() - (j - 1.0 + HORIZON).ln() - (j + HORIZON).ln()
}

/// ln of an e-process's value `base` combined with its restarts, if it has any.
pub(crate) fn log_e_with<C>(restarts: Option<&Restarts<C>>, base: f64) -> f64 {
    restarts.map_or(base, |r| r.log_e(base))
}

impl<C> Restarts<C> {
    /// No restarts yet; one starts after every `spacing` data.
    pub(crate) fn new(combine: Combine, spacing: f64) -> Self {
        Restarts {
            combine,
            spacing,
            pending: 0.0,
            starts: 0,
            live: Vec::new(),
            frozen: f64::NEG_INFINITY,
        }
    }

    /// The restarts being followed, to feed them the latest window and update their `log_e`.
    pub(crate) fn live_mut(&mut self) -> impl Iterator<Item = &mut Started<C>> {
        self.live.iter_mut()
    }

    /// ln of the combined e-value, given `ln M⁽⁰⁾` of the e-process started with the data.
    pub(crate) fn log_e(&self, base: f64) -> f64 {
        let base = BASE_WEIGHT.ln() + base;
        let live = self.live.iter().map(|s| log_weight(s.number) + s.log_e);
        match self.combine {
            Combine::Sum => log_sum_exp(
                std::iter::once(base)
                    .chain(live)
                    .chain(std::iter::once(self.frozen)),
            ),
            Combine::Max => live.fold(base, f64::max),
        }
    }

    /// After a window has been fed to every live restart: counts `data` toward the next start,
    /// freezes the weakest restarts beyond [`MAX_LIVE`], and starts a new one (`make`, an
    /// e-process that has seen nothing) once [`spacing`](Self::new) data came in since the
    /// latest start. Call it after the window's e-value was folded into the p-value.
    pub(crate) fn after_window(&mut self, data: f64, make: impl FnOnce() -> C) {
        self.pending += data;
        if self.pending < self.spacing || data <= 0.0 {
            return;
        }
        self.pending = 0.0;
        self.starts += 1;
        self.live.push(Started {
            number: self.starts,
            log_e: 0.0,
            component: make(),
        });
        while self.live.len() > MAX_LIVE {
            let contribution = |s: &Started<C>| log_weight(s.number) + s.log_e;
            let weakest = (0..self.live.len())
                .min_by(|&a, &b| {
                    contribution(&self.live[a]).total_cmp(&contribution(&self.live[b]))
                })
                .unwrap_or(0);
            let frozen = self.live.swap_remove(weakest);
            if self.combine == Combine::Sum {
                self.frozen = log_sum_exp([self.frozen, contribution(&frozen)].into_iter());
            }
        }
        // Keep the live restarts in order of their start, so persisted state is canonical.
        self.live.sort_by_key(|s| s.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weights_sum_to_one_minus_the_base_weight() {
        let total: f64 = (1..2_000_000u64).map(|j| log_weight(j).exp()).sum();
        // The tail beyond 2e6 restarts holds h/(2e6 + h − 1) of the restarts' share.
        let tail = (1.0 - BASE_WEIGHT) * HORIZON / (2e6 + HORIZON - 1.0);
        assert!((total + tail - (1.0 - BASE_WEIGHT)).abs() < 1e-9, "{total}");
        assert!(log_weight(1) > log_weight(2) && log_weight(60) > log_weight(61));
    }

    #[test]
    fn sum_and_max_combine_as_documented() {
        let mut r: Restarts<()> = Restarts::new(Combine::Sum, 1.0);
        assert_eq!(r.log_e(0.0), BASE_WEIGHT.ln());
        r.after_window(0.5, || ());
        assert!(r.live.is_empty(), "not enough data for a start");
        r.after_window(0.5, || ());
        assert_eq!(r.live.len(), 1);
        r.live[0].log_e = 3.0;
        let want = (BASE_WEIGHT * 2.0 + (log_weight(1) + 3.0).exp()).ln();
        assert!((r.log_e(2f64.ln()) - want).abs() < 1e-12);
        let mut m: Restarts<()> = Restarts::new(Combine::Max, 1.0);
        m.after_window(1.0, || ());
        m.live[0].log_e = 40.0;
        assert_eq!(m.log_e(0.0), log_weight(1) + 40.0);
    }

    #[test]
    #[allow(clippy::cast_precision_loss)]
    fn freezing_keeps_the_sum_and_bounds_the_live_restarts() {
        let mut r: Restarts<u64> = Restarts::new(Combine::Sum, 1.0);
        for i in 0..100u64 {
            // Restart i's e-value: the older the lower, except restart 5, which grows.
            for s in r.live_mut() {
                s.log_e = if s.number == 5 {
                    10.0
                } else {
                    -0.1 * (i - s.number) as f64
                };
            }
            let before = r.log_e(0.0);
            r.after_window(1.0, || i);
            assert!(r.live.len() <= MAX_LIVE);
            // Freezing moves value, it never loses any; the new start adds its weight.
            let added = (log_weight(r.starts)).exp();
            let after = r.log_e(0.0).exp();
            assert!((after - before.exp() - added).abs() < 1e-12 * after, "{i}");
        }
        assert!(
            r.live.iter().any(|s| s.number == 5),
            "the strong one stays live"
        );
        assert!(r.live.windows(2).all(|w| w[0].number < w[1].number));
        assert_eq!(r.starts, 100);
    }
}
