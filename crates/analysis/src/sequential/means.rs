//! Means: the mixture SPRT (mSPRT) of Johari, Pekelis & Walsh on canary/control pairs.
//!
//! # Statistic \[V\] (`erik-stenberg/mixtureSPRT`)
//!
//! Values are paired in arrival order: the i-th canary value with the i-th control value,
//! `Z_i = canary_i − control_i`, `Var Z = σ_Z²` (`2σ²` for a common per-arm variance). With the
//! mixture N(0, τ²) over the mean difference θ:
//!
//! ```text
//! Λ_n = sqrt(σ_Z² / (σ_Z² + nτ²)) · exp( n²τ² Z̄_n² / (2σ_Z²(σ_Z² + nτ²)) )
//! p_n = min(p_{n−1}, 1/Λ_n); reject when Λ_n ≥ 1/α
//! CS: |Z̄_n − θ| < sqrt( σ_Z²(σ_Z² + nτ²)/(n²τ²) · ln((σ_Z² + nτ²)/(σ_Z² α²)) )   [D, algebra]
//! ```
//!
//! With a known `σ_Z²` (normal differences) `Λ_n` is a martingale with mean 1 under θ = 0 and
//! the guarantee is exact. With [`Variance::PlugIn`] the running sample variance of the `Z_i`
//! replaces `σ_Z²` (as the reference implementation does for Bernoulli data); the guarantee is
//! then asymptotic \[D\], and evidence starts after [`PLUG_IN_MIN_PAIRS`] pairs so that an early,
//! too small variance estimate cannot reject.
//!
//! # One-sided \[D\]
//!
//! `Greater` truncates the mixture to θ > 0 (density `2φ(θ/τ)/τ`):
//! `Λ⁺_n = Λ_n · 2Φ(m/s)`, with the posterior `m = nτ²Z̄/(σ_Z² + nτ²)`,
//! `s² = τ²σ_Z²/(σ_Z² + nτ²)`. For a normal `Z` with mean θ₀ ≤ 0, each component θ > 0 has
//! `E exp(θΣZ/σ_Z² − nθ²/(2σ_Z²)) = exp(nθθ₀/σ_Z²) ≤ 1`: a supermartingale under the whole
//! one-sided null. `Less` is the mirror image.
//!
//! # Mixture width (tuning)
//!
//! τ should be near the smallest effect worth detecting, in the metric's units. The default,
//! `ln 1.1 ≈ 0.0953`, is for log latencies (feed `ln(latency)`): it targets a 10 % slowdown.
//! For log-normal latencies with `s = 0.5` (σ_Z² = 0.5) a 10 % slowdown is detected after about
//! 450 pairs in expectation, against the 330 pairs of the two-sample SPRT that knows the effect.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use statrs::function::erf::erfc;

use super::evidence::{Effect, Evidence, RunningP, check_alpha};
use crate::{Alternative, AnalysisError};

/// Pairs needed before a plug-in variance is trusted.
pub const PLUG_IN_MIN_PAIRS: u64 = 20;

/// How the variance of the pair differences `σ_Z²` is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variance {
    /// The variance of one difference `Z = canary − control` (for a common per-arm variance
    /// σ², pass `2σ²`). Must be finite and above 0.
    KnownDifference(f64),
    /// The running sample variance of the differences (default).
    PlugIn,
}

/// Settings of the means test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSettings {
    /// Significance level, in (0, 1). Default 0.05.
    pub alpha: f64,
    /// Mixture standard deviation τ > 0, in the metric's units. Default `ln 1.1` (for log
    /// latencies; module docs).
    pub tau: f64,
    /// Known or plug-in variance. Default plug-in.
    pub variance: Variance,
    /// `TwoSided` (default), `Greater` (canary mean larger = worse) or `Less`.
    pub alternative: Alternative,
}

impl Default for MeanSettings {
    fn default() -> Self {
        MeanSettings {
            alpha: 0.05,
            tau: 1.1f64.ln(),
            variance: Variance::PlugIn,
            alternative: Alternative::TwoSided,
        }
    }
}

impl MeanSettings {
    /// Checks alpha, τ and a known variance.
    pub fn validate(&self) -> Result<(), AnalysisError> {
        check_alpha(self.alpha)?;
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            return Err(AnalysisError::Invalid(format!(
                "tau must be finite and above 0, got {}",
                self.tau
            )));
        }
        if let Variance::KnownDifference(v) = self.variance
            && !(v > 0.0 && v.is_finite())
        {
            return Err(AnalysisError::Invalid(format!(
                "the known variance must be finite and above 0, got {v}"
            )));
        }
        Ok(())
    }
}

/// `ln Λ_n` of the two-sided mSPRT for the mean difference `mean_difference` (`Z̄_n`) of `n`
/// pairs, mixture width `tau`, difference variance `variance` (`σ_Z²`).
///
/// ```
/// use cutover_analysis::sequential::msprt_log_lambda;
/// assert!((msprt_log_lambda(0.3, 100.0, 1.0, 2.0).exp() - 1.271_210_424).abs() < 1e-9);
/// ```
pub fn msprt_log_lambda(mean_difference: f64, n: f64, tau: f64, variance: f64) -> f64 {
    let t2 = tau * tau;
    let s = variance + n * t2;
    0.5 * (variance / s).ln()
        + n * n * t2 * mean_difference * mean_difference / (2.0 * variance * s)
}

/// `ln Λ⁺_n`, the one-sided (`Greater`) mSPRT (module docs).
pub fn msprt_log_lambda_greater(mean_difference: f64, n: f64, tau: f64, variance: f64) -> f64 {
    let t2 = tau * tau;
    let s = variance + n * t2;
    // m / s_post = nτ Z̄ / (σ sqrt(σ² + nτ²)); ln 2Φ(x) = ln erfc(−x/√2).
    let x = n * tau * mean_difference / (variance.sqrt() * s.sqrt());
    msprt_log_lambda(mean_difference, n, tau, variance) + erfc(-x / std::f64::consts::SQRT_2).ln()
}

/// The mSPRT on pairs in arrival order (module docs). Unpaired values wait in a queue per arm.
/// O(1) per pair; `Serialize` so it can be persisted and resumed exactly.
///
/// ```
/// use cutover_analysis::sequential::{MeanSettings, MeanTest, Variance};
/// let settings = MeanSettings { tau: 1.0, variance: Variance::KnownDifference(2.0), ..Default::default() };
/// let mut test = MeanTest::new(settings)?;
/// test.observe_control(&[0.0; 100])?;
/// test.observe_canary(&[0.3; 100])?;
/// let e = test.evidence();
/// assert!((e.log_e_value.exp() - 1.271_210_424).abs() < 1e-9);
/// assert_eq!((e.control_n, e.canary_n), (100, 100));
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanTest {
    settings: MeanSettings,
    control_queue: VecDeque<f64>,
    canary_queue: VecDeque<f64>,
    pairs: u64,
    /// Welford's running mean and sum of squared deviations of the differences.
    mean: f64,
    m2: f64,
    running: RunningP,
}

impl MeanTest {
    /// A test with the given settings.
    pub fn new(settings: MeanSettings) -> Result<Self, AnalysisError> {
        settings.validate()?;
        Ok(MeanTest {
            settings,
            control_queue: VecDeque::new(),
            canary_queue: VecDeque::new(),
            pairs: 0,
            mean: 0.0,
            m2: 0.0,
            running: RunningP::default(),
        })
    }

    /// The settings the test was built with.
    pub fn settings(&self) -> MeanSettings {
        self.settings
    }

    /// Adds control values (finite) in arrival order. Fails, changing nothing, on a NaN or
    /// infinite value.
    pub fn observe_control(&mut self, values: &[f64]) -> Result<(), AnalysisError> {
        check_finite("control", values)?;
        for &v in values {
            match self.canary_queue.pop_front() {
                Some(c) => self.add_pair(c - v),
                None => self.control_queue.push_back(v),
            }
        }
        Ok(())
    }

    /// Adds canary values (finite) in arrival order, as [`observe_control`](Self::observe_control).
    pub fn observe_canary(&mut self, values: &[f64]) -> Result<(), AnalysisError> {
        check_finite("canary", values)?;
        for &v in values {
            match self.control_queue.pop_front() {
                Some(c) => self.add_pair(v - c),
                None => self.canary_queue.push_back(v),
            }
        }
        Ok(())
    }

    /// The variance in use, if there is one yet.
    #[allow(clippy::cast_precision_loss)]
    fn variance(&self) -> Option<f64> {
        match self.settings.variance {
            Variance::KnownDifference(v) => Some(v),
            Variance::PlugIn => {
                let v = self.m2 / (self.pairs as f64 - 1.0);
                (self.pairs >= PLUG_IN_MIN_PAIRS && v > 0.0 && v.is_finite()).then_some(v)
            }
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn log_lambda(&self) -> f64 {
        let Some(var) = self.variance() else {
            return 0.0;
        };
        let (n, tau) = (self.pairs as f64, self.settings.tau);
        match self.settings.alternative {
            Alternative::TwoSided => msprt_log_lambda(self.mean, n, tau, var),
            Alternative::Greater => msprt_log_lambda_greater(self.mean, n, tau, var),
            Alternative::Less => msprt_log_lambda_greater(-self.mean, n, tau, var),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn add_pair(&mut self, z: f64) {
        self.pairs += 1;
        let delta = z - self.mean;
        self.mean += delta / self.pairs as f64;
        self.m2 += delta * (z - self.mean);
        self.running
            .update_log_e(self.log_lambda(), self.settings.alpha);
    }

    /// The current evidence: the effect is canary mean − control mean over the pairs so far;
    /// `control_n` and `canary_n` count values received (paired or waiting).
    #[allow(clippy::cast_precision_loss)]
    pub fn evidence(&self) -> Evidence {
        let waiting = |q: &VecDeque<f64>| q.len() as u64;
        let (estimate, lower, upper) = match self.variance() {
            Some(var) if self.pairs > 0 => {
                let (n, t2) = (self.pairs as f64, self.settings.tau * self.settings.tau);
                let s = var + n * t2;
                let a = self.settings.alpha;
                let half = (var * s / (n * n * t2) * (s / (var * a * a)).ln()).sqrt();
                (self.mean, self.mean - half, self.mean + half)
            }
            _ if self.pairs > 0 => (self.mean, f64::NEG_INFINITY, f64::INFINITY),
            _ => (f64::NAN, f64::NEG_INFINITY, f64::INFINITY),
        };
        Evidence {
            p_value: self.running.p_value,
            rejected: self.running.rejected,
            log_e_value: self.log_lambda(),
            effect: Effect::MeanDifference,
            estimate,
            lower,
            upper,
            control_n: self.pairs + waiting(&self.control_queue),
            canary_n: self.pairs + waiting(&self.canary_queue),
        }
    }
}

fn check_finite(group: &'static str, values: &[f64]) -> Result<(), AnalysisError> {
    if values.iter().any(|v| v.is_nan()) {
        return Err(AnalysisError::NotANumber { group });
    }
    if values.iter().any(|v| v.is_infinite()) {
        return Err(AnalysisError::Infinite { group });
    }
    Ok(())
}
