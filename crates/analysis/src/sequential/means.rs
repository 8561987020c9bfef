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
//! too small variance estimate cannot reject. In the detection benchmark's first A/A runs (300
//! replications, monitored after every pair for 30 minutes) the plug-in's false-rejection rate
//! came out at 0.033-0.053 for α = 0.05: too close to α to call it a guarantee, hence the default
//! below. (The running p-value is now updated once per `observe_*` call, i.e. at the
//! granularity the test is fed, which lowers every variant's rate.)
//!
//! # Unknown variance, exactly: the scale-invariant t-mixture (default) \[D\]
//!
//! [`Variance::Unknown`] puts the mixture on the **standardized** effect `δ = θ/σ_Z`,
//! `δ ~ N(0, g)` with `g = τ²` (so here τ is in units of the pair difference's standard
//! deviation: 0.1 is a tenth of `σ_Z`), and the right Haar prior `1/σ` on the unknown scale.
//! The Bayes factor then has the closed form of Rouder et al. (2009, eq. 1 at a fixed g), checked
//! here against numerical integration ([`t_mixture_log_bf`]):
//!
//! ```text
//! ln BF_n = −½ ln(1 + n·g) + (n/2)·[ln(1 + t²/ν) − ln(1 + t²/((1 + n·g)·ν))],
//! t = √n·Z̄_n / s_n, ν = n − 1
//! ```
//!
//! It depends on the data only through the scale-invariant `t`; a Bayes factor with the right
//! Haar prior on a group-invariant nuisance parameter is a nonnegative martingale with mean 1
//! under θ = 0 for every σ, in the filtration of the maximal invariant (Hendriksen, de Heide &
//! Grünwald 2021; Pérez-Ortiz, Lardy, de Heide & Grünwald, "E-statistics, group invariance and
//! anytime valid testing"), so Ville's inequality applies with no plug-in. For large n it tends
//! to the known-variance `Λ_n` with `τ² = g·σ_Z²`. Confidence sequence: `BF` is increasing in
//! `t²`, so `{θ : BF(t(θ)²) < 1/α}` is `Z̄ ± s·sqrt(ν·x/n)` with `x = (e^K − 1)/(1 − e^K/c)`,
//! `c = 1 + n·g`, `K = (2/n)(ln(1/α) + ½ ln c)`, unbounded while `e^K ≥ c`.
//!
//! One-sided (`Greater`): the e-value is `BF_n·1{Z̄_n > 0} ≤ BF_n`. Writing
//! `Z_i = σ(ε_i + δ)`, `t_n = √n(ε̄_n + δ)/s_n(ε)` is increasing in δ path by path, and the
//! rejection event `{∃n: t_n ≥ b_n}` (`b_n > 0`) is increasing in the path, so its probability
//! under any δ ≤ 0 is at most its probability at δ = 0, which is at most α. `Less` mirrors it.
//!
//! # One-sided mSPRT \[D\]
//!
//! `Greater` truncates the mixture to θ > 0 (density `2φ(θ/τ)/τ`):
//! `Λ⁺_n = Λ_n · 2Φ(m/s)`, with the posterior `m = nτ²Z̄/(σ_Z² + nτ²)`,
//! `s² = τ²σ_Z²/(σ_Z² + nτ²)`. For a normal `Z` with mean θ₀ ≤ 0, each component θ > 0 has
//! `E exp(θΣZ/σ_Z² − nθ²/(2σ_Z²)) = exp(nθθ₀/σ_Z²) ≤ 1`: a supermartingale under the whole
//! one-sided null. `Less` is the mirror image.
//!
//! # Mixture width (tuning)
//!
//! τ should be near the smallest effect worth detecting. With the default [`Variance::Unknown`]
//! it is standardized: the default [`DEFAULT_STANDARDIZED_TAU`] = 0.13 targets a 10 % slowdown
//! of log-normal latencies with `s = 0.5` fed as `ln(latency)` (`δ = ln 1.1 / sqrt(0.5) ≈
//! 0.135`). With a known or plug-in variance τ is in the metric's units (`ln 1.1` for the same
//! target). In a seeded simulation (checks every 10 s, 300 replications) a 10 % slowdown at
//! 5 req/s per arm was detected every time, median 100 s (about 500 pairs), against the 330
//! pairs (66 s) of the two-sample SPRT that knows the effect; τ from 0.1 to 0.2 made no
//! difference at that cadence. A/A false rejections at α = 0.05: 0.007-0.027.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use statrs::function::erf::erfc;

use super::distribution::Arm;
use super::evidence::{Effect, Evidence, RunningP, check_alpha};
use super::restarts::{Combine, Restarts};
use crate::{Alternative, AnalysisError};

/// Pairs needed before a plug-in variance is trusted.
pub const PLUG_IN_MIN_PAIRS: u64 = 20;

/// Default mixture width for [`Variance::Unknown`], in units of the pair difference's standard
/// deviation (module docs).
pub const DEFAULT_STANDARDIZED_TAU: f64 = 0.13;

/// How the variance of the pair differences `σ_Z²` is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variance {
    /// The variance of one difference `Z = canary − control` (for a common per-arm variance
    /// σ², pass `2σ²`). Must be finite and above 0.
    KnownDifference(f64),
    /// The running sample variance of the differences in the known-variance formula
    /// (`mixtureSPRT`'s plug-in): asymptotically valid only.
    PlugIn,
    /// Unknown: the scale-invariant t-mixture (default), exact for normal differences; `tau`
    /// is then standardized (in units of the differences' standard deviation).
    Unknown,
}

/// Settings of the means test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSettings {
    /// Significance level, in (0, 1). Default 0.05.
    pub alpha: f64,
    /// Mixture standard deviation τ > 0: standardized (units of the differences' standard
    /// deviation) with [`Variance::Unknown`], in the metric's units with a known or plug-in
    /// variance. Default [`DEFAULT_STANDARDIZED_TAU`] (module docs).
    pub tau: f64,
    /// Unknown (default, exact), plug-in or known variance.
    pub variance: Variance,
    /// `TwoSided` (default), `Greater` (canary mean larger = worse) or `Less`.
    pub alternative: Alternative,
    /// Also run tests restarted along the way, so a regression that begins late is not
    /// diluted by the pairs from before it (`restarts` module docs, combined by a union bound;
    /// default `true`). State saved without this field reads back with restarts off.
    #[serde(default)]
    pub restarts: bool,
}

impl Default for MeanSettings {
    fn default() -> Self {
        MeanSettings {
            alpha: 0.05,
            tau: DEFAULT_STANDARDIZED_TAU,
            variance: Variance::Unknown,
            alternative: Alternative::TwoSided,
            restarts: true,
        }
    }
}

/// Pairs between two restarts of the means test.
pub(crate) const MEAN_SPACING: f64 = 200.0;

/// Welford's running count, mean and sum of squared deviations of the pair differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Moments {
    pairs: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    /// The moments of `pairs` differences with this mean and sample variance (what the
    /// `durations` module feeds the test: the data it would see on average).
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn summary(pairs: u64, mean: f64, variance: f64) -> Self {
        Moments {
            pairs,
            mean,
            m2: variance * (pairs as f64 - 1.0).max(0.0),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn add(&mut self, z: f64) {
        self.pairs += 1;
        let delta = z - self.mean;
        self.mean += delta / self.pairs as f64;
        self.m2 += delta * (z - self.mean);
    }

    /// The sample variance of the differences, once there are two and they differ.
    #[allow(clippy::cast_precision_loss)]
    fn sample_variance(&self) -> Option<f64> {
        let v = self.m2 / (self.pairs as f64 - 1.0);
        (self.pairs >= 2 && v > 0.0 && v.is_finite()).then_some(v)
    }

    /// The variance the settings use, if there is one yet.
    fn variance(&self, settings: &MeanSettings) -> Option<f64> {
        match settings.variance {
            Variance::KnownDifference(v) => Some(v),
            Variance::PlugIn => self
                .sample_variance()
                .filter(|_| self.pairs >= PLUG_IN_MIN_PAIRS),
            Variance::Unknown => self.sample_variance(),
        }
    }

    /// `ln Λ` of these pairs under the settings (0 before there is a variance).
    #[allow(clippy::cast_precision_loss)]
    fn log_lambda(&self, settings: &MeanSettings) -> f64 {
        let Some(var) = self.variance(settings) else {
            return 0.0;
        };
        let (n, tau) = (self.pairs as f64, settings.tau);
        if settings.variance == Variance::Unknown {
            let t2 = n * self.mean * self.mean / var;
            let two_sided = t_mixture_log_bf(t2, n, tau * tau);
            let sign = match settings.alternative {
                Alternative::TwoSided => return two_sided,
                Alternative::Greater => self.mean,
                Alternative::Less => -self.mean,
            };
            return if sign > 0.0 {
                two_sided
            } else {
                f64::NEG_INFINITY
            };
        }
        match settings.alternative {
            Alternative::TwoSided => msprt_log_lambda(self.mean, n, tau, var),
            Alternative::Greater => msprt_log_lambda_greater(self.mean, n, tau, var),
            Alternative::Less => msprt_log_lambda_greater(-self.mean, n, tau, var),
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

/// `ln BF` of the scale-invariant t-mixture (module docs) for `t²` after `n ≥ 2` pairs with
/// standardized mixture variance `g` (`τ²`); 0 for `n < 2`.
///
/// ```
/// use cutover_analysis::sequential::t_mixture_log_bf;
/// // Z = (0.9, 1.7, 0.4, 1.1, 0.2, 1.5), g = 0.5: t² = 15.9886; numerical integration of the
/// // Bayes factor (SciPy quad over θ and σ) gives ln BF = 1.848067130.
/// let l = t_mixture_log_bf(15.988_593_155_893_534, 6.0, 0.5);
/// assert!((l - 1.848_067_130).abs() < 1e-8);
/// ```
pub fn t_mixture_log_bf(t_squared: f64, n: f64, g: f64) -> f64 {
    if n < 2.0 {
        return 0.0;
    }
    let (nu, c) = (n - 1.0, 1.0 + n * g);
    -0.5 * c.ln() + 0.5 * n * ((t_squared / nu).ln_1p() - (t_squared / (c * nu)).ln_1p())
}

/// Half-width of the t-mixture's confidence sequence (module docs); infinite while unbounded.
pub(crate) fn t_mixture_half_width(var: f64, n: f64, g: f64, alpha: f64) -> f64 {
    if n < 2.0 {
        return f64::INFINITY;
    }
    let c = 1.0 + n * g;
    let k = (2.0 / n) * (-alpha.ln() + 0.5 * c.ln());
    let ek = k.exp();
    if ek >= c {
        return f64::INFINITY;
    }
    let x = (ek - 1.0) / (1.0 - ek / c);
    (var * (n - 1.0) * x / n).sqrt()
}

/// The mSPRT on pairs in arrival order (module docs). Unpaired values wait in a queue per arm.
/// O(1) per pair; `Serialize` so it can be persisted and resumed exactly. The running p-value is
/// updated once per `observe_*` call that forms pairs: the test is monitored at the granularity
/// it is fed (per check when fed a check's values, per pair when fed one value at a time), and
/// valid either way.
///
/// ```
/// use cutover_analysis::sequential::{MeanSettings, MeanTest, Variance};
/// let settings = MeanSettings { tau: 1.0, variance: Variance::KnownDifference(2.0), ..Default::default() };
/// let single = MeanSettings { restarts: false, ..settings };
/// let (mut test, mut alone) = (MeanTest::new(settings)?, MeanTest::new(single)?);
/// for t in [&mut test, &mut alone] {
///     t.observe_control(&[0.0; 100])?;
///     t.observe_canary(&[0.3; 100])?;
/// }
/// // The mSPRT of ANALYSIS.md §5.4; with restarts (none begun yet) it weighs 0.7.
/// assert!((alone.evidence().log_e_value.exp() - 1.271_210_424).abs() < 1e-9);
/// let e = test.evidence();
/// assert!((e.log_e_value.exp() - 0.7 * 1.271_210_424).abs() < 1e-9);
/// assert_eq!((e.control_n, e.canary_n), (100, 100));
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanTest {
    settings: MeanSettings,
    control_queue: VecDeque<f64>,
    canary_queue: VecDeque<f64>,
    /// The pairs so far.
    #[serde(flatten)]
    moments: Moments,
    running: RunningP,
    /// The restarted tests, each with the moments of the pairs since its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restarts: Option<Restarts<Moments>>,
}

impl MeanTest {
    /// A test with the given settings.
    pub fn new(settings: MeanSettings) -> Result<Self, AnalysisError> {
        settings.validate()?;
        Ok(MeanTest {
            settings,
            control_queue: VecDeque::new(),
            canary_queue: VecDeque::new(),
            moments: Moments::default(),
            running: RunningP::default(),
            restarts: settings
                .restarts
                .then(|| Restarts::new(Combine::Max, MEAN_SPACING)),
        })
    }

    /// A test that has seen pairs with these moments, all in one window (the `durations`
    /// module's expected path).
    pub(crate) fn with_moments(
        settings: MeanSettings,
        moments: Moments,
    ) -> Result<Self, AnalysisError> {
        let mut test = MeanTest::new(settings)?;
        test.moments = moments;
        Ok(test)
    }

    /// The settings the test was built with.
    pub fn settings(&self) -> MeanSettings {
        self.settings
    }

    /// Adds control values (finite, at most 1e100 in magnitude) in arrival order. Fails,
    /// changing nothing, on a NaN, infinite or huge value.
    pub fn observe_control(&mut self, values: &[f64]) -> Result<(), AnalysisError> {
        self.observe(Arm::Control, values)
    }

    /// Adds canary values (finite) in arrival order, as [`observe_control`](Self::observe_control).
    pub fn observe_canary(&mut self, values: &[f64]) -> Result<(), AnalysisError> {
        self.observe(Arm::Canary, values)
    }

    /// Pairs each value with the oldest waiting value of the other arm, or queues it.
    fn observe(&mut self, arm: Arm, values: &[f64]) -> Result<(), AnalysisError> {
        let group = match arm {
            Arm::Control => "control",
            Arm::Canary => "canary",
        };
        check_finite(group, values)?;
        let before = self.moments.pairs;
        for &v in values {
            let (other, own) = match arm {
                Arm::Control => (&mut self.canary_queue, &mut self.control_queue),
                Arm::Canary => (&mut self.control_queue, &mut self.canary_queue),
            };
            match other.pop_front() {
                // z = canary − control
                Some(o) => self.add_pair(if arm == Arm::Canary { v - o } else { o - v }),
                None => own.push_back(v),
            }
        }
        self.update_p(before);
        Ok(())
    }

    /// ln of the e-value the p-value is built from: the test's own, or with restarts the
    /// largest weighted value (`restarts` module docs).
    fn log_e(&self) -> f64 {
        let base = self.moments.log_lambda(&self.settings);
        self.restarts.as_ref().map_or(base, |r| r.log_e(base))
    }

    fn add_pair(&mut self, z: f64) {
        self.moments.add(z);
        if let Some(restarts) = &mut self.restarts {
            for r in restarts.live_mut() {
                r.component.add(z);
            }
        }
    }

    /// Folds the current e-value into the running p-value if the call formed new pairs, then
    /// lets a restart begin.
    #[allow(clippy::cast_precision_loss)]
    fn update_p(&mut self, pairs_before: u64) {
        let new = self.moments.pairs - pairs_before;
        if new == 0 {
            return;
        }
        let settings = self.settings;
        if let Some(restarts) = &mut self.restarts {
            for r in restarts.live_mut() {
                r.log_e = r.component.log_lambda(&settings);
            }
        }
        self.running.update_log_e(self.log_e(), settings.alpha);
        if let Some(restarts) = &mut self.restarts {
            restarts.after_window(new as f64, Moments::default);
        }
    }

    /// The current evidence: the effect is canary mean − control mean over the pairs so far;
    /// `control_n` and `canary_n` count values received (paired or waiting).
    #[allow(clippy::cast_precision_loss)]
    pub fn evidence(&self) -> Evidence {
        let waiting = |q: &VecDeque<f64>| q.len() as u64;
        let m = &self.moments;
        let (estimate, lower, upper) = match m.variance(&self.settings) {
            Some(var) if m.pairs > 0 => {
                let (n, t2) = (m.pairs as f64, self.settings.tau * self.settings.tau);
                let a = self.settings.alpha;
                let half = if self.settings.variance == Variance::Unknown {
                    t_mixture_half_width(var, n, t2, a)
                } else {
                    let s = var + n * t2;
                    (var * s / (n * n * t2) * (s / (var * a * a)).ln()).sqrt()
                };
                (m.mean, m.mean - half, m.mean + half)
            }
            _ if m.pairs > 0 => (m.mean, f64::NEG_INFINITY, f64::INFINITY),
            _ => (f64::NAN, f64::NEG_INFINITY, f64::INFINITY),
        };
        Evidence {
            p_value: self.running.p_value,
            rejected: self.running.rejected,
            log_e_value: self.log_e(),
            effect: Effect::MeanDifference,
            estimate,
            lower,
            upper,
            control_n: m.pairs + waiting(&self.control_queue),
            canary_n: m.pairs + waiting(&self.canary_queue),
        }
    }
}

/// Values above this magnitude are refused: their differences and squares would overflow and
/// leave non-finite numbers in the persisted state.
pub(crate) const MAX_MAGNITUDE: f64 = 1e100;

fn check_finite(group: &'static str, values: &[f64]) -> Result<(), AnalysisError> {
    if values.iter().any(|v| v.is_nan()) {
        return Err(AnalysisError::NotANumber { group });
    }
    if values.iter().any(|v| v.is_infinite()) {
        return Err(AnalysisError::Infinite { group });
    }
    if let Some(v) = values.iter().find(|v| v.abs() > MAX_MAGNITUDE) {
        return Err(AnalysisError::Invalid(format!(
            "sample `{group}` contains {v}, beyond the ±1e100 the means test takes"
        )));
    }
    Ok(())
}
