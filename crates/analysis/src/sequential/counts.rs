//! Event counts (error rates): the Dirichlet-multinomial e-process of Lindon & Malek (NeurIPS
//! 2022) with a fixed traffic split, two-sided and one-sided.
//!
//! # Model and statistic \[V\]
//!
//! Each arm's events (errors) arrive as a Poisson process with intensity `ρ_i·e^{δ_i}·λ(t)`:
//! `ρ` is the known split, `λ(t)` an arbitrary common baseline, `e^{δ_i}` the arm's rate per
//! request. Given that an event occurs, it is the canary's with probability
//! `θ = ρ_T·r / (ρ_T·r + ρ_C)`, where `r = e^{δ_T − δ_C}` is the **per-request rate ratio
//! canary / control**. H0 (`r = 1`) is `θ = ρ_T`, and `λ(t)` drops out: only the two event
//! counts matter. With a Beta(`k·ρ_T`, `k·ρ_C`) prior on `θ` (`k` = [`CountSettings::prior_strength`]),
//! the Bayes factor after `x = (x_C, x_T)` events is (savvi, Netflix tech blog part 2):
//!
//! ```text
//! ln BF = ln B(a_C + x_C, a_T + x_T) − ln B(a_C, a_T) − x_C ln ρ_C − x_T ln ρ_T,   a = k·ρ
//! ```
//!
//! a nonnegative martingale with mean 1 under H0, so by Ville's inequality
//! `P_H0(∃n: BF_n ≥ 1/α) ≤ α`, under continuous monitoring and optional stopping.
//! `p_n = min(p_{n−1}, 1/BF_n)`.
//!
//! # One-sided (`Greater`: canary worse) \[D\]
//!
//! The same prior truncated to `θ > ρ_T`:
//! `BF⁺ = BF · (1 − I_{ρ_T}(a_T + x_T, a_C + x_C)) / (1 − I_{ρ_T}(a_T, a_C))`. Every mixture
//! component with `θ > ρ_T` has conditional mean `θ₀θ/ρ_T + (1−θ₀)(1−θ)/ρ_C ≤ 1` for any true
//! `θ₀ ≤ ρ_T`, so `BF⁺` is a supermartingale under the whole one-sided null `r ≤ 1`. `Less` is
//! the mirror image (arms swapped).
//!
//! # Confidence sequence \[V\]
//!
//! `{θ : x_C ln(1−θ) + x_T ln θ ≥ ln B(a + x) − ln B(a) + ln α}` (the untruncated mixture,
//! whatever the alternative), an interval found by Newton's method on the logit scale (from
//! outside, so it errs on the wide side) and mapped to the rate ratio with
//! `r = θ·ρ_C / ((1 − θ)·ρ_T)`, which is increasing in `θ`.
//!
//! # Prior strength (tuning)
//!
//! `k` trades early power against power for small effects. `k = 100` is savvi's and Netflix's
//! default; its Beta(50, 50) prior (at a 50/50 split) is so tight around `θ = 0.5` that a
//! doubled error rate (`θ = 2/3`) costs about 5.8 nats of prior penalty, so 1 %→2 % at 100 req/s
//! per arm needs about 180 error events (about 60 s, 3× the two-sample SPRT limit). The default
//! here is [`DEFAULT_PRIOR_STRENGTH`]; the false-rollback guarantee holds for every `k > 0`.

use serde::{Deserialize, Serialize};
use statrs::function::beta::{beta_reg, ln_beta};

use super::evidence::{Effect, Evidence, RunningP, check_alpha, check_share};
use super::mixture::ln_sigmoid;
use super::restarts::{Combine, Restarts};
use crate::{Alternative, AnalysisError};

/// Default Dirichlet prior strength `k` (see the module docs for the tuning and its trade-off).
pub const DEFAULT_PRIOR_STRENGTH: f64 = 10.0;

/// Settings shared by the counts tests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CountSettings {
    /// Significance level, in (0, 1). Default 0.05.
    pub alpha: f64,
    /// Dirichlet prior strength `k > 0`. Default [`DEFAULT_PRIOR_STRENGTH`].
    pub prior_strength: f64,
    /// `TwoSided` (default), `Greater` (canary's rate higher = worse) or `Less`.
    pub alternative: Alternative,
    /// Also run e-processes restarted along the way, so a regression that begins late is not
    /// diluted by the data from before it (`restarts` module docs; default `true`). Off, the
    /// test is the single e-process of the module docs. State saved without this field reads
    /// back with restarts off, as it ran.
    #[serde(default)]
    pub restarts: bool,
}

impl Default for CountSettings {
    fn default() -> Self {
        CountSettings {
            alpha: 0.05,
            prior_strength: DEFAULT_PRIOR_STRENGTH,
            alternative: Alternative::TwoSided,
            restarts: true,
        }
    }
}

/// Events (both arms) between two restarts of the counts tests.
pub(crate) const COUNT_SPACING: f64 = 15.0;

impl CountSettings {
    /// Checks alpha and the prior strength.
    pub fn validate(&self) -> Result<(), AnalysisError> {
        check_alpha(self.alpha)?;
        if !(self.prior_strength > 0.0 && self.prior_strength.is_finite()) {
            return Err(AnalysisError::Invalid(format!(
                "prior_strength must be finite and above 0, got {}",
                self.prior_strength
            )));
        }
        Ok(())
    }
}

/// `ln BF` of the two-sided Dirichlet-multinomial test after `control` and `canary` events,
/// with canary share `canary_share` and prior strength `k` (module docs).
///
/// ```
/// use cutover_analysis::sequential::log_bayes_factor;
/// // savvi's own test stops at (148, 62) with split (0.8, 0.2), k = 100.
/// let l = log_bayes_factor(148, 62, 0.2, 100.0)?;
/// assert!(((-l).exp() - 0.045_579_631_759_263_1).abs() < 1e-12);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn log_bayes_factor(
    control: u64,
    canary: u64,
    canary_share: f64,
    prior_strength: f64,
) -> Result<f64, AnalysisError> {
    check_inputs(canary_share, prior_strength)?;
    Ok(ln_bf(control, canary, canary_share, prior_strength))
}

/// `ln BF⁺` of the one-sided test "canary's per-request rate is higher" (module docs).
///
/// ```
/// use cutover_analysis::sequential::log_bayes_factor_greater;
/// let l = log_bayes_factor_greater(10, 25, 0.5, 100.0)?;
/// assert!((l - 1.281_238_239_8).abs() < 1e-9);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn log_bayes_factor_greater(
    control: u64,
    canary: u64,
    canary_share: f64,
    prior_strength: f64,
) -> Result<f64, AnalysisError> {
    check_inputs(canary_share, prior_strength)?;
    Ok(ln_bf_greater(control, canary, canary_share, prior_strength))
}

/// Checks the share and prior strength of the closed forms.
fn check_inputs(canary_share: f64, prior_strength: f64) -> Result<(), AnalysisError> {
    check_share("canary_share", canary_share)?;
    CountSettings {
        prior_strength,
        ..CountSettings::default()
    }
    .validate()
}

#[allow(clippy::cast_precision_loss)]
fn ln_bf(control: u64, canary: u64, rho_t: f64, k: f64) -> f64 {
    let (a_c, a_t) = (k * (1.0 - rho_t), k * rho_t);
    let (x_c, x_t) = (control as f64, canary as f64);
    ln_beta(a_c + x_c, a_t + x_t) - ln_beta(a_c, a_t) - x_c * (-rho_t).ln_1p() - x_t * rho_t.ln()
}

/// `ln (1 − I_x(a, b))`, computed as `ln I_{1−x}(b, a)` for precision.
fn ln_upper_tail(x: f64, a: f64, b: f64) -> f64 {
    beta_reg(b, a, 1.0 - x).ln()
}

#[allow(clippy::cast_precision_loss)]
fn ln_bf_greater(control: u64, canary: u64, rho_t: f64, k: f64) -> f64 {
    let (a_c, a_t) = (k * (1.0 - rho_t), k * rho_t);
    let (x_c, x_t) = (control as f64, canary as f64);
    ln_bf(control, canary, rho_t, k) + ln_upper_tail(rho_t, a_t + x_t, a_c + x_c)
        - ln_upper_tail(rho_t, a_t, a_c)
}

/// `ln e` of the counts test for an alternative.
fn ln_e(control: u64, canary: u64, rho_t: f64, k: f64, alternative: Alternative) -> f64 {
    match alternative {
        Alternative::TwoSided => ln_bf(control, canary, rho_t, k),
        Alternative::Greater => ln_bf_greater(control, canary, rho_t, k),
        Alternative::Less => ln_bf_greater(canary, control, 1.0 - rho_t, k),
    }
}

/// The confidence sequence on `θ` (the canary's share of events), as `(lower, upper)`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn theta_interval(
    control: u64,
    canary: u64,
    rho_t: f64,
    k: f64,
    alpha: f64,
) -> (f64, f64) {
    let (a_c, a_t) = (k * (1.0 - rho_t), k * rho_t);
    let (x_c, x_t) = (control as f64, canary as f64);
    let bound = ln_beta(a_c + x_c, a_t + x_t) - ln_beta(a_c, a_t) + alpha.ln();
    let n = x_c + x_t;
    if n == 0.0 {
        return (0.0, 1.0);
    }
    // In u = logit θ: h(u) = x_T ln σ(u) + x_C ln σ(−u) − bound ≥ 0 inside, concave, with
    // h'(u) = x_T − n·σ(u).
    let h = |u: f64| x_t * ln_sigmoid(u) + x_c * ln_sigmoid(-u) - bound;
    let dh = |u: f64| x_t - n * sigmoid(u);
    let inside = if x_t == 0.0 {
        -40.0
    } else if x_c == 0.0 {
        40.0
    } else {
        (x_t / x_c).ln()
    };
    let lower = if x_t == 0.0 {
        0.0
    } else {
        sigmoid(newton_boundary(&h, &dh, inside, -1.0))
    };
    let upper = if x_c == 0.0 {
        1.0
    } else {
        sigmoid(newton_boundary(&h, &dh, inside, 1.0))
    };
    (lower, upper)
}

/// `σ(u) = 1 / (1 + e^{−u})`.
fn sigmoid(u: f64) -> f64 {
    1.0 / (1.0 + (-u).exp())
}

/// The boundary of `{h ≥ 0}` on the side `direction` (±1) of `inside`, for a concave `h`:
/// step out until `h < 0`, then Newton from outside, which for a concave function approaches
/// the root monotonically from outside (the tangent lies above `h`), so the result errs on the
/// wide side.
fn newton_boundary(
    h: &impl Fn(f64) -> f64,
    dh: &impl Fn(f64) -> f64,
    inside: f64,
    direction: f64,
) -> f64 {
    let mut step = 1.0;
    let mut u = inside + direction * step;
    while h(u) >= 0.0 && step < 1e6 {
        step *= 2.0;
        u = inside + direction * step;
    }
    for _ in 0..100 {
        let (value, slope) = (h(u), dh(u));
        if value.is_nan() || value >= 0.0 || slope == 0.0 || !slope.is_finite() {
            break;
        }
        let next = u - value / slope;
        if (next - u).abs() <= 1e-12 * (1.0 + u.abs()) {
            break;
        }
        u = next;
    }
    u
}

/// `θ` (canary's share of events) → per-request rate ratio canary / control.
pub(crate) fn theta_to_ratio(theta: f64, rho_t: f64) -> f64 {
    if theta >= 1.0 {
        f64::INFINITY
    } else {
        theta * (1.0 - rho_t) / ((1.0 - theta) * rho_t)
    }
}

/// The Dirichlet-multinomial e-process on event counts with a fixed traffic split (module
/// docs). State is two counters and the running p-value: O(1) per update, `Serialize` so it can
/// be persisted and resumed exactly.
///
/// ```
/// use cutover_analysis::Alternative;
/// use cutover_analysis::sequential::{CountSettings, CountTest};
/// let settings = CountSettings { alternative: Alternative::Greater, ..CountSettings::default() };
/// let mut test = CountTest::new(0.5, settings)?;
/// test.observe(10, 10)?; // 10 control errors, 10 canary errors since the last check
/// assert!(!test.evidence().rejected);
/// test.observe(20, 60)?;
/// let e = test.evidence();
/// assert!(e.rejected && e.p_value <= 0.05 && e.lower > 1.0);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTest {
    canary_share: f64,
    settings: CountSettings,
    control: u64,
    canary: u64,
    running: RunningP,
    /// The restarted e-processes, each as the totals `[control, canary]` at its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restarts: Option<Restarts<[u64; 2]>>,
    /// ln of the combined e-value after the latest observation.
    #[serde(default, with = "super::evidence::non_finite")]
    log_e: f64,
}

impl CountTest {
    /// A test for a split that sends `canary_share` (in (0, 1)) of the requests to the canary.
    pub fn new(canary_share: f64, settings: CountSettings) -> Result<Self, AnalysisError> {
        check_share("canary_share", canary_share)?;
        settings.validate()?;
        Ok(CountTest {
            canary_share,
            settings,
            control: 0,
            canary: 0,
            running: RunningP::default(),
            restarts: settings
                .restarts
                .then(|| Restarts::new(Combine::Sum, COUNT_SPACING)),
            log_e: 0.0,
        })
    }

    /// The settings the test was built with.
    pub fn settings(&self) -> CountSettings {
        self.settings
    }

    /// The configured canary share.
    pub fn canary_share(&self) -> f64 {
        self.canary_share
    }

    /// Adds new events (increments since the last call, not totals) and updates the p-value:
    /// a few log-gamma evaluations, O(1). Fails, changing nothing, when a total would overflow.
    /// Read the result with [`evidence`](Self::evidence).
    pub fn observe(
        &mut self,
        control_events: u64,
        canary_events: u64,
    ) -> Result<(), AnalysisError> {
        let control = self.control.checked_add(control_events);
        let canary = self.canary.checked_add(canary_events);
        let (Some(control), Some(canary)) = (control, canary) else {
            return Err(AnalysisError::Invalid("event count overflows u64".into()));
        };
        self.control = control;
        self.canary = canary;
        let s = self.settings;
        let rho = self.canary_share;
        let base = ln_e(control, canary, rho, s.prior_strength, s.alternative);
        self.log_e = match &mut self.restarts {
            None => base,
            Some(restarts) => {
                for r in restarts.live_mut() {
                    let [c0, x0] = r.component;
                    r.log_e = ln_e(
                        control - c0,
                        canary - x0,
                        rho,
                        s.prior_strength,
                        s.alternative,
                    );
                }
                restarts.log_e(base)
            }
        };
        self.running.update_log_e(self.log_e, s.alpha);
        if let Some(restarts) = &mut self.restarts {
            #[allow(clippy::cast_precision_loss)]
            let events = (control_events + canary_events) as f64;
            restarts.after_window(events, || [control, canary]);
        }
        Ok(())
    }

    /// The current evidence: p-value, log e-value (the log BF, or with restarts the log of the
    /// combined e-value), the rate ratio's estimate and confidence sequence (from the
    /// e-process started with the data).
    #[allow(clippy::cast_precision_loss)]
    pub fn evidence(&self) -> Evidence {
        let s = self.settings;
        let rho = self.canary_share;
        let (lo, hi) = theta_interval(self.control, self.canary, rho, s.prior_strength, s.alpha);
        let estimate = (self.canary as f64 / rho) / (self.control as f64 / (1.0 - rho));
        Evidence {
            p_value: self.running.p_value,
            rejected: self.running.rejected,
            log_e_value: match self.restarts {
                Some(_) => self.log_e,
                None => ln_e(
                    self.control,
                    self.canary,
                    rho,
                    s.prior_strength,
                    s.alternative,
                ),
            },
            effect: Effect::RateRatio,
            estimate,
            lower: theta_to_ratio(lo, rho),
            upper: theta_to_ratio(hi, rho),
            control_n: self.control,
            canary_n: self.canary,
        }
    }
}
