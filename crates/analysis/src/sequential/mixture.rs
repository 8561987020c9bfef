//! A discrete mixture over the log rate ratio `δ`, for the event-label likelihood with a
//! share that changes from window to window (used by the observed-share counts test and the
//! tail exceedance test).
//!
//! The grid `δ_j` and weights `w_j` (summing to 1) discretise the prior that Beta(`k·ρ₀`,
//! `k·(1 − ρ₀)`) on `θ` induces on `δ = logit θ − logit ρ₀`. The grid is `δ_j = S·sinh(u_j)`
//! with `u` uniform: fine near δ = 0 (0.2 % steps in the ratio, 0.8 % at a ratio of 1.5, 2 % at
//! 3, 4 % at 7), where the confidence bounds of
//! a canary that is about as good as the control lie, and coarser for large effects. Because the weights sum to 1 the
//! mixture `Σ_j w_j Π_t LR_t(δ_j)` is itself an exact mixture of (super)martingales: the
//! quadrature changes power a little, never validity.

use serde::{Deserialize, Serialize};

use crate::Alternative;

/// Grid points (odd, so that δ = 0 is one of them).
const POINTS: usize = 601;

/// Grid points of a coarse mixture: the restarted e-processes of the late-onset detector
/// (`restarts`), which only test and need no fine confidence bounds. The grid step near a
/// ratio of 2.7 is then about 0.19 in `δ`, which costs at most about `n·I·0.1²/2` nats against
/// the nearest grid point (a few tenths for a hundred events).
const COARSE_POINTS: usize = 61;

/// Scale of the sinh grid: the step near δ = 0 is about this times `2·asinh(half/S)/400`.
const SINH_SCALE: f64 = 0.1;

/// `ln σ(u)`, stable for both signs.
pub(crate) fn ln_sigmoid(u: f64) -> f64 {
    if u >= 0.0 {
        -(-u).exp().ln_1p()
    } else {
        u - u.exp().ln_1p()
    }
}

/// `ln Σ exp(v)` over the values, `−∞` for none.
pub(crate) fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY || max.is_nan() {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// Per-window log likelihood ratio of `δ` against `δ = 0` for `x_t` canary and `n − x_t`
/// control events when the canary has share `rho` of the exposure:
/// `x_t·δ − n·ln(1 + ρ(e^δ − 1))`.
fn window_llr(delta_expm1: f64, delta: f64, x_t: f64, n: f64, rho: f64) -> f64 {
    x_t * delta - n * (rho * delta_expm1).ln_1p()
}

/// What is persisted: the prior's parameters and the accumulated log likelihoods (the grid and
/// weights are rebuilt from the parameters, deterministically).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MixtureState {
    prior_strength: f64,
    share: f64,
    alternative: Alternative,
    log_lik: Vec<f64>,
}

impl TryFrom<MixtureState> for LogRatioMixture {
    type Error = String;

    fn try_from(state: MixtureState) -> Result<Self, String> {
        let (k, rho) = (state.prior_strength, state.share);
        if !(k > 0.0 && k.is_finite() && rho > 0.0 && rho < 1.0) {
            return Err(format!("invalid mixture prior: strength {k}, share {rho}"));
        }
        let points = state.log_lik.len();
        if points != POINTS && points != COARSE_POINTS {
            return Err(format!(
                "mixture state has {points} grid points, expected {POINTS} or {COARSE_POINTS}"
            ));
        }
        let mut mixture = LogRatioMixture::with_points(k, rho, state.alternative, points);
        mixture.log_lik = state.log_lik;
        mixture.log_e = mixture.compute_log_e();
        Ok(mixture)
    }
}

impl From<LogRatioMixture> for MixtureState {
    fn from(m: LogRatioMixture) -> Self {
        MixtureState {
            prior_strength: m.prior_strength,
            share: m.share,
            alternative: m.alternative,
            log_lik: m.log_lik,
        }
    }
}

/// The mixture's state: the grid, the log prior weights and the accumulated log likelihoods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MixtureState", into = "MixtureState")]
pub(crate) struct LogRatioMixture {
    prior_strength: f64,
    share: f64,
    alternative: Alternative,
    delta: Vec<f64>,
    /// `e^{δ_j} − 1`, precomputed.
    delta_expm1: Vec<f64>,
    /// ln w_j of the full (two-sided) prior.
    log_w: Vec<f64>,
    /// ln w_j of the prior the test uses (truncated for one-sided alternatives).
    log_w_test: Vec<f64>,
    log_lik: Vec<f64>,
    /// ln of the test's mixture e-value, updated with every window.
    log_e: f64,
}

impl LogRatioMixture {
    /// The grid for prior strength `k` centred on share `rho0`.
    pub(crate) fn new(k: f64, rho0: f64, alternative: Alternative) -> Self {
        Self::with_points(k, rho0, alternative, POINTS)
    }

    /// The same prior on a coarse grid ([`COARSE_POINTS`]), for restarted e-processes.
    pub(crate) fn coarse(k: f64, rho0: f64, alternative: Alternative) -> Self {
        Self::with_points(k, rho0, alternative, COARSE_POINTS)
    }

    #[allow(clippy::cast_precision_loss)]
    fn with_points(k: f64, rho0: f64, alternative: Alternative, points: usize) -> Self {
        let (a, b) = (k * rho0, k * (1.0 - rho0));
        let c = (rho0 / (1.0 - rho0)).ln();
        // The logistic-beta density of η = logit θ is σ(η)^a σ(−η)^b / B(a, b); its tails fall
        // like e^{−a|η|}, e^{−b|η|}. Cover 40 nats below the mode on each side, at most ±20.
        // The mode of η is logit ρ₀ = c, i.e. δ = 0. The grid is δ_j = S·sinh(u_j) with u
        // uniform: steps of about S·Δu ≈ 0.2 % near δ = 0, where a passing canary's confidence
        // bounds lie, widening to 2 % at a ratio of 3 and 4 % at 7.
        let half = (40.0 / a.min(b) + 10.0 * (1.0 / a + 1.0 / b).sqrt()).min(20.0);
        let u_max = (half / SINH_SCALE).asinh();
        let du = 2.0 * u_max / (points - 1) as f64;
        let u: Vec<f64> = (0..points).map(|j| -u_max + du * j as f64).collect();
        let delta: Vec<f64> = u.iter().map(|u| SINH_SCALE * u.sinh()).collect();
        // Prior density of η at δ_j + c, times the grid's local width dδ/du (the quadrature).
        let raw: Vec<f64> = u
            .iter()
            .zip(&delta)
            .map(|(u, d)| {
                let e = d + c;
                a * ln_sigmoid(e) + b * ln_sigmoid(-e) + (SINH_SCALE * u.cosh()).ln()
            })
            .collect();
        let norm = log_sum_exp(raw.iter().copied());
        let log_w: Vec<f64> = raw.iter().map(|r| r - norm).collect();
        let keep = |d: f64| match alternative {
            Alternative::TwoSided => true,
            Alternative::Greater => d > 0.0,
            Alternative::Less => d < 0.0,
        };
        let kept = log_sum_exp(
            delta
                .iter()
                .zip(&log_w)
                .filter(|(d, _)| keep(**d))
                .map(|(_, w)| *w),
        );
        let log_w_test = delta
            .iter()
            .zip(&log_w)
            .map(|(d, w)| {
                if keep(*d) {
                    w - kept
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        LogRatioMixture {
            prior_strength: k,
            share: rho0,
            alternative,
            log_lik: vec![0.0; delta.len()],
            delta_expm1: delta.iter().map(|d| d.exp_m1()).collect(),
            delta,
            log_w,
            log_w_test,
            log_e: 0.0,
        }
    }

    /// Adds one window: `control` and `canary` events, canary share of exposure `rho` in [0, 1].
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn observe(&mut self, control: u64, canary: u64, rho: f64) {
        let (x_t, n) = (canary as f64, control as f64 + canary as f64);
        if n == 0.0 {
            return;
        }
        for ((l, &d), &m) in self
            .log_lik
            .iter_mut()
            .zip(&self.delta)
            .zip(&self.delta_expm1)
        {
            *l += window_llr(m, d, x_t, n, rho);
        }
        self.log_e = self.compute_log_e();
    }

    fn compute_log_e(&self) -> f64 {
        let max = self
            .log_w_test
            .iter()
            .zip(&self.log_lik)
            .fold(f64::NEG_INFINITY, |m, (w, l)| m.max(w + l));
        let mut sum = 0.0;
        for (w, l) in self.log_w_test.iter().zip(&self.log_lik) {
            sum += (w + l - max).exp();
        }
        max + sum.ln()
    }

    /// The prior strength `k`.
    pub(crate) fn prior_strength(&self) -> f64 {
        self.prior_strength
    }

    /// The share the prior is centred on.
    pub(crate) fn share(&self) -> f64 {
        self.share
    }

    /// ln of the mixture e-value of the test's alternative (O(1): kept up to date).
    pub(crate) fn log_e(&self) -> f64 {
        self.log_e
    }

    /// The grid point with the largest likelihood (the maximum-likelihood `δ` on the grid); it
    /// always lies inside [`delta_interval`](Self::delta_interval).
    pub(crate) fn mle_delta(&self) -> f64 {
        let mut best = 0;
        for (j, l) in self.log_lik.iter().enumerate() {
            if *l > self.log_lik[best] {
                best = j;
            }
        }
        self.delta[best]
    }

    /// The `(1 − alpha)` confidence sequence on `δ`, from the grid (each end widened to the
    /// next grid point outside, or unbounded at the grid's end).
    pub(crate) fn delta_interval(&self, alpha: f64) -> (f64, f64) {
        let total = log_sum_exp(self.log_w.iter().zip(&self.log_lik).map(|(w, l)| w + l));
        let inside = |j: usize| total - self.log_lik[j] < -alpha.ln();
        let first = (0..self.delta.len()).find(|&j| inside(j));
        let last = (0..self.delta.len()).rev().find(|&j| inside(j));
        match (first, last) {
            (Some(f), Some(l)) => (
                if f == 0 {
                    f64::NEG_INFINITY
                } else {
                    self.delta[f - 1]
                },
                if l + 1 == self.delta.len() {
                    f64::INFINITY
                } else {
                    self.delta[l + 1]
                },
            ),
            _ => (f64::NEG_INFINITY, f64::INFINITY),
        }
    }
}
