//! Distributions (latency): a time-uniform CDF-band test of stochastic order / equality in
//! distribution, a tail exceedance e-process beside it, and time-uniform quantile bounds.
//!
//! # The band test \[U: that this is Lindon, Sanden & Shirikian's exact band\], \[D\]
//!
//! Howard & Ramdas (2022, Thm 2; `confseq`'s `empirical_process_lil_bound`) give a band that
//! holds for all sample sizes at once: `P(∃t: sup_x |F̂_t(x) − F(x)| > ε(t, a)) ≤ a` with
//! ([`band_epsilon`])
//!
//! ```text
//! ε(t, a) = 0.85·sqrt((ln ln(e·t) + 0.8·ln(1612/a)) / t)
//! ```
//!
//! With both bands at `a = α/2`, with probability `1 − α` both hold at every time. Under H0
//! "the canary is not stochastically larger" (`F_canary ≥ F_control` everywhere) that forces
//! `D⁺ = max_x (F̂_control − F̂_canary) ≤ ε(n_c, α/2) + ε(n_t, α/2)`; so rejecting when `D⁺`
//! exceeds that sum is a level-α test under continuous monitoring. `TwoSided` (equality in
//! distribution) uses `max(D⁺, D⁻)`, `Less` uses `D⁻`. The anytime-valid p-value is the
//! running minimum of the smallest α at which the rule rejects (solved for in closed form up
//! to a bisection on `ln α`).
//!
//! **Buckets.** Values are counted over fixed edges ([`default_edges`]: log-spaced, 1 %
//! relative width; or the caller's, e.g. Prometheus `le` buckets). `D` is evaluated only at the
//! edges, where the bands hold as everywhere else: `D` at the edges is at most the true `D`, so
//! the test can only become more conservative (still valid). Insert is O(log bins), a check
//! O(bins).
//!
//! # The tail exceedance e-process \[D\]
//!
//! The band needs `D⁺` above about `2ε`, which a tail-only regression (5 % of canary requests
//! 3× slower: `D⁺ ≈ 0.036`) reaches only after about 25 000 values per arm, more than 30 minutes
//! at 5 req/s. So the test also counts, in each check window, the values of each arm above a
//! threshold `h_t` and runs the observed-share counts e-process (see `observed_share`) on these
//! "slow" labels. `h_t` is the control's empirical `q`-quantile (at a bucket edge) over all
//! windows **before** the current one, so it is fixed before the window's values are seen
//! (predictable). Given `h_t` and the window's request counts, under H0 (both arms draw from the
//! same distribution in that window, which may drift over time) each arm's slow count is
//! Binomial(`n_arm`, `P(X > h_t)`) with a common probability, so exactly the argument of the
//! observed-share counts test applies: every mixture component is a supermartingale and the
//! e-process is valid whatever `h_t` is. One e-process per quantile in
//! [`DistributionSettings::tail_quantiles`] (default 0.9 and 0.99), averaged (an average of
//! e-processes is an e-process). For `Greater` the prior is on `δ > 0` (canary slower more
//! often): under "canary not stochastically larger" the canary's exceedance probability is at
//! most the control's, and the one-sided argument holds window by window.
//!
//! The two p-values are combined by Bonferroni: `p = min(1, 2·min(p_band, p_tail))`, each a
//! running minimum, so `P_H0(p ≤ α ever) ≤ α/2 + α/2`. With no tail quantiles, `p = p_band`.
//!
//! # Quantile bounds
//!
//! A time-uniform `(1 − α)` interval for an arm's `p`-quantile is `[X_(⌊t(p−ε)+1⌋),
//! X_(⌈t(p+ε)⌉)]` with `ε = ε(t, α)` (`confseq/demo/quantiles.py`), widened to the enclosing
//! bucket edges ([`DistributionTest::quantile_bounds`]).

use serde::{Deserialize, Serialize};

use super::buckets::{Histogram, check_edges, check_values, default_edges};
use super::counts::COUNT_SPACING;
use super::evidence::{Effect, Evidence, RunningP, check_alpha, check_share};
use super::exceedance::{ExceedanceSettings, ExceedanceTest};
use super::mixture::{LogRatioMixture, log_sum_exp};
use super::restarts::{Combine, Restarts, log_e_with};
use crate::{Alternative, AnalysisError};

/// `ε(t, a) = 0.85·sqrt((ln ln(e·t) + 0.8·ln(1612/a)) / t)`, the half-width of Howard &
/// Ramdas' time-uniform band on an empirical CDF after `t ≥ 1` values (infinite for `t < 1`).
///
/// ```
/// use cutover_analysis::sequential::band_epsilon;
/// assert!((band_epsilon(1000.0, 0.05) - 0.08657).abs() < 5e-6);
/// ```
pub fn band_epsilon(t: f64, a: f64) -> f64 {
    if t < 1.0 {
        return f64::INFINITY;
    }
    0.85 * ((t.ln().ln_1p() + 0.8 * (1612.0 / a).ln()) / t).sqrt()
}

/// Which arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// The stable version.
    Control,
    /// The new version.
    Canary,
}

/// Settings of the distribution test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionSettings {
    /// Significance level, in (0, 1). Default 0.05.
    pub alpha: f64,
    /// `Greater` (canary stochastically larger = worse), `Less`, or `TwoSided` (default:
    /// equality in distribution).
    pub alternative: Alternative,
    /// Bucket edges, finite and strictly increasing; empty (the default) means
    /// [`default_edges`].
    pub edges: Vec<f64>,
    /// Control quantiles whose exceedances feed the tail e-process, each in (0, 1). Default
    /// [`DEFAULT_TAIL_QUANTILES`]; empty turns the tail e-process off (band test only).
    pub tail_quantiles: Vec<f64>,
    /// Prior strength of the tail e-process's mixture over the exceedance rate ratio (as
    /// [`super::CountSettings::prior_strength`]). Default [`DEFAULT_TAIL_PRIOR_STRENGTH`].
    pub tail_prior_strength: f64,
    /// Also run tail e-processes restarted along the way, so a tail regression that begins
    /// late is not diluted by the data from before it (`restarts` module docs; default
    /// `true`). State saved without this field reads back with restarts off.
    #[serde(default)]
    pub restarts: bool,
    /// Also run the [`ExceedanceTest`] on the same values (default `false`). It finds tail
    /// regressions that begin late several times sooner, but it assumes the latency
    /// distribution does not drift over the canary (both arms alike): if it may (daily load, a
    /// shared dependency slowing down), leave this off. The alpha not given to the band is
    /// then split evenly between the tail e-process and the exceedance test (module docs).
    /// The exceedance test is one-sided (a slower canary tail), so `Less` ignores this.
    #[serde(default)]
    pub stationary: bool,
}

impl Default for DistributionSettings {
    fn default() -> Self {
        DistributionSettings {
            alpha: 0.05,
            alternative: Alternative::TwoSided,
            edges: Vec::new(),
            tail_quantiles: DEFAULT_TAIL_QUANTILES.to_vec(),
            tail_prior_strength: DEFAULT_TAIL_PRIOR_STRENGTH,
            restarts: true,
            stationary: false,
        }
    }
}

/// Default control quantiles of the tail e-process (module docs).
pub const DEFAULT_TAIL_QUANTILES: [f64; 3] = [0.95, 0.99, 0.999];

/// Default prior strength of the tail e-process: Beta(1, 1) on the canary's share of
/// exceedances, flat, because tail regressions move exceedance rates by large factors.
pub const DEFAULT_TAIL_PRIOR_STRENGTH: f64 = 2.0;

/// The band test's share of alpha when the tail e-process runs beside it; the tail gets the
/// rest (module docs).
pub const BAND_SHARE: f64 = 0.2;

/// One tail e-process: the exceedances of one control quantile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tail {
    quantile: f64,
    /// Edge index of the current threshold (none until the control has data).
    threshold: Option<usize>,
    mixture: LogRatioMixture,
    /// The restarted e-processes on the same labels (coarse grids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restarts: Option<Restarts<LogRatioMixture>>,
}

impl Tail {
    /// ln of this quantile's e-value: its own, or combined with its restarts.
    fn log_e(&self) -> f64 {
        log_e_with(self.restarts.as_ref(), self.mixture.log_e())
    }
}

/// The sequential distribution test (module docs). Feed each arm's new values with
/// [`observe_control`](Self::observe_control) / [`observe_canary`](Self::observe_canary) (or
/// bucket counts), then call [`check`](Self::check) once per check: the order of inserts within
/// a check does not matter. `Serialize` so it can be persisted and resumed exactly.
///
/// ```
/// use cutover_analysis::Alternative;
/// use cutover_analysis::sequential::{DistributionSettings, DistributionTest};
/// let settings = DistributionSettings { alternative: Alternative::Greater, ..Default::default() };
/// let mut test = DistributionTest::new(settings)?;
/// let control: Vec<f64> = (1..=500).map(|i| f64::from(i) / 1000.0).collect();
/// let canary: Vec<f64> = control.iter().map(|v| v + 0.25).collect();
/// test.observe_control(&control)?;
/// test.observe_canary(&canary)?;
/// let e = test.check();
/// assert!(e.rejected && e.lower > 0.2 && e.upper >= 0.5);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DistributionState", into = "DistributionState")]
pub struct DistributionTest {
    alpha: f64,
    alternative: Alternative,
    edges: Vec<f64>,
    /// The edges were the caller's (persisted) rather than [`default_edges`] (rebuilt).
    custom_edges: bool,
    control: Histogram,
    canary: Histogram,
    /// This window's values, not yet checked.
    window_control: Histogram,
    window_canary: Histogram,
    tails: Vec<Tail>,
    /// The exceedance test under a stationary null (`DistributionSettings::stationary`).
    exceedance: Option<Box<ExceedanceTest>>,
    band: RunningP,
    tail: RunningP,
    running: RunningP,
}

impl DistributionTest {
    /// A test with the given settings.
    pub fn new(settings: DistributionSettings) -> Result<Self, AnalysisError> {
        check_alpha(settings.alpha)?;
        let custom_edges = !settings.edges.is_empty();
        let edges = if custom_edges {
            settings.edges
        } else {
            default_edges()
        };
        check_edges(&edges)?;
        for &q in &settings.tail_quantiles {
            check_share("tail quantile", q)?;
        }
        let k = settings.tail_prior_strength;
        if !(k > 0.0 && k.is_finite()) {
            return Err(AnalysisError::Invalid(format!(
                "tail_prior_strength must be finite and above 0, got {k}"
            )));
        }
        let tails = settings
            .tail_quantiles
            .iter()
            .map(|&quantile| Tail {
                quantile,
                threshold: None,
                mixture: LogRatioMixture::new(k, 0.5, settings.alternative),
                restarts: settings
                    .restarts
                    .then(|| Restarts::new(Combine::Sum, COUNT_SPACING)),
            })
            .collect();
        // The exceedance test looks for a slower canary tail: no use for `Less`.
        let exceedance = if settings.stationary && settings.alternative != Alternative::Less {
            Some(Box::new(ExceedanceTest::new(ExceedanceSettings {
                alpha: settings.alpha,
                edges: if custom_edges {
                    edges.clone()
                } else {
                    Vec::new()
                },
                restarts: settings.restarts,
                ..ExceedanceSettings::default()
            })?))
        } else {
            None
        };
        Ok(DistributionTest {
            exceedance,
            alpha: settings.alpha,
            alternative: settings.alternative,
            control: Histogram::new(&edges),
            canary: Histogram::new(&edges),
            window_control: Histogram::new(&edges),
            window_canary: Histogram::new(&edges),
            edges,
            custom_edges,
            tails,
            band: RunningP::default(),
            tail: RunningP::default(),
            running: RunningP::default(),
        })
    }

    /// The bucket edges in use.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Adds new control values (nonnegative, not NaN; `+∞` counts above the last edge) to the
    /// current window. Fails, changing nothing, on a bad value.
    pub fn observe_control(&mut self, values: &[f64]) -> Result<(), AnalysisError> {
        check_values("control", values)?;
        for &v in values {
            self.window_control.insert(&self.edges, v);
        }
        if let Some(e) = &mut self.exceedance {
            e.observe_control(values)?;
        }
        Ok(())
    }

    /// Adds new canary values to the current window, as [`observe_control`](Self::observe_control).
    pub fn observe_canary(&mut self, values: &[f64]) -> Result<(), AnalysisError> {
        check_values("canary", values)?;
        for &v in values {
            self.window_canary.insert(&self.edges, v);
        }
        if let Some(e) = &mut self.exceedance {
            e.observe_canary(values)?;
        }
        Ok(())
    }

    /// Adds new values as bucket counts (increments, not cumulative): `counts[i]` values in
    /// `(edges[i−1], edges[i]]`, and `counts[edges.len()]` above the last edge, so
    /// `edges.len() + 1` entries. Cumulative Prometheus `le` buckets must be differenced first.
    pub fn observe_buckets(&mut self, arm: Arm, counts: &[u64]) -> Result<(), AnalysisError> {
        if counts.len() != self.edges.len() + 1 {
            return Err(AnalysisError::Invalid(format!(
                "expected {} bucket counts (edges + 1), got {}",
                self.edges.len() + 1,
                counts.len()
            )));
        }
        let window = match arm {
            Arm::Control => &mut self.window_control,
            Arm::Canary => &mut self.window_canary,
        };
        let sum = counts
            .iter()
            .try_fold(window.total, |s, &c| s.checked_add(c));
        if sum.is_none() {
            return Err(AnalysisError::Invalid("bucket counts overflow u64".into()));
        }
        window.add_counts(counts);
        if let Some(e) = &mut self.exceedance {
            e.observe_bucket_counts(arm == Arm::Canary, counts);
        }
        Ok(())
    }

    /// Closes the current window: the tail e-processes label its values against the thresholds
    /// fixed before it, the band is evaluated on all values so far, the p-value is updated,
    /// and the thresholds move to the control's quantiles including this window.
    #[allow(clippy::cast_precision_loss)]
    pub fn check(&mut self) -> Evidence {
        let (wc, wt) = (&self.window_control, &self.window_canary);
        let requests = wc.total + wt.total;
        let mut exceedances = vec![0u64; self.tails.len()];
        if requests > 0 {
            let rho = wt.total as f64 / requests as f64;
            for (tail, seen) in self.tails.iter_mut().zip(&mut exceedances) {
                if let Some(j) = tail.threshold {
                    let (c, t) = (wc.above(j), wt.above(j));
                    tail.mixture.observe(c, t, rho);
                    if let Some(restarts) = &mut tail.restarts {
                        for r in restarts.live_mut() {
                            r.component.observe(c, t, rho);
                            r.log_e = r.component.log_e();
                        }
                    }
                    *seen = c + t;
                }
            }
        }
        self.control.add_counts(&self.window_control.counts);
        self.canary.add_counts(&self.window_canary.counts);
        self.window_control.clear();
        self.window_canary.clear();
        for tail in &mut self.tails {
            tail.threshold = self.control.quantile_edge(tail.quantile);
        }
        let (d_plus, d_minus, _) = self.gaps();
        let d = match self.alternative {
            Alternative::Greater => d_plus,
            Alternative::Less => d_minus,
            Alternative::TwoSided => d_plus.max(d_minus),
        };
        let p_band = band_p_value(d, self.control.total as f64, self.canary.total as f64);
        self.band.update(p_band, self.alpha);
        let p_exceedance = self.exceedance.as_mut().map(|e| e.check().p_value);
        if self.tails.is_empty() && p_exceedance.is_none() {
            self.running.update(self.band.p_value, self.alpha);
        } else {
            if !self.tails.is_empty() {
                self.tail.update_log_e(self.tail_log_e(), self.alpha);
            }
            // The alpha beside the band: all to the tail e-process or the exceedance test when
            // only one runs, half each when both do.
            let others = usize::from(!self.tails.is_empty()) + usize::from(p_exceedance.is_some());
            #[allow(clippy::cast_precision_loss)]
            let share = (1.0 - BAND_SHARE) / others as f64;
            let mut p = self.band.p_value / BAND_SHARE;
            if !self.tails.is_empty() {
                p = p.min(self.tail.p_value / share);
            }
            if let Some(pe) = p_exceedance {
                p = p.min(pe / share);
            }
            self.running.update(p.min(1.0), self.alpha);
        }
        for (tail, seen) in self.tails.iter_mut().zip(exceedances) {
            let (k, alternative) = (tail.mixture.prior_strength(), self.alternative);
            if let Some(restarts) = &mut tail.restarts {
                #[allow(clippy::cast_precision_loss)]
                restarts.after_window(seen as f64, || LogRatioMixture::coarse(k, 0.5, alternative));
            }
        }
        self.evidence()
    }

    /// ln of the tail e-value (the average over the quantiles), 0 with none.
    #[allow(clippy::cast_precision_loss)]
    fn tail_log_e(&self) -> f64 {
        if self.tails.is_empty() {
            return 0.0;
        }
        log_sum_exp(self.tails.iter().map(Tail::log_e)) - (self.tails.len() as f64).ln()
    }

    /// `(D⁺, D⁻, upper)` at the edges over all checked values: `D⁺ = max (F̂_control −
    /// F̂_canary)`, `D⁻ = max (F̂_canary − F̂_control)`, and `upper` the largest value
    /// `sup_x (F̂_control − F̂_canary)` can take anywhere inside the buckets.
    #[allow(clippy::cast_precision_loss)]
    fn gaps(&self) -> (f64, f64, f64) {
        let (nc, nt) = (self.control.total as f64, self.canary.total as f64);
        if nc == 0.0 || nt == 0.0 {
            return (0.0, 0.0, 1.0);
        }
        let (mut cc, mut ct) = (0u64, 0u64);
        let (mut d_plus, mut d_minus, mut upper) = (0.0f64, 0.0f64, 0.0f64);
        let last = self.edges.len();
        for (i, (c, t)) in self
            .control
            .counts
            .iter()
            .zip(&self.canary.counts)
            .enumerate()
        {
            let canary_before = ct as f64 / nt;
            cc += c;
            ct += t;
            let (fc, ft) = (cc as f64 / nc, ct as f64 / nt);
            upper = upper.max(fc - canary_before);
            if i < last {
                d_plus = d_plus.max(fc - ft);
                d_minus = d_minus.max(ft - fc);
            }
        }
        (d_plus, d_minus, upper)
    }

    /// The current evidence (as of the last [`check`](Self::check)). The effect is the CDF gap
    /// `sup_x (F_control(x) − F_canary(x))`: the estimate is `D⁺` at the edges, the confidence
    /// sequence `D⁺ ± (ε(n_c, α/2) + ε(n_t, α/2))` (the upper end from the largest gap the
    /// buckets allow), clipped to [0, 1]. `control_n` / `canary_n` count checked values.
    #[allow(clippy::cast_precision_loss)]
    pub fn evidence(&self) -> Evidence {
        let (nc, nt) = (self.control.total as f64, self.canary.total as f64);
        let eps = band_epsilon(nc, self.alpha / 2.0) + band_epsilon(nt, self.alpha / 2.0);
        let (d_plus, _, upper) = self.gaps();
        let log_e_value = if self.tails.is_empty() {
            -self.running.p_value.ln()
        } else {
            self.tail_log_e()
        };
        Evidence {
            p_value: self.running.p_value,
            rejected: self.running.rejected,
            log_e_value,
            effect: Effect::CdfGap,
            estimate: if nc == 0.0 || nt == 0.0 {
                f64::NAN
            } else {
                d_plus
            },
            lower: (d_plus - eps).max(0.0),
            upper: (upper + eps).min(1.0),
            control_n: self.control.total,
            canary_n: self.canary.total,
        }
    }

    /// The band test's own running p-value (before the Bonferroni combination).
    pub fn band_p_value(&self) -> f64 {
        self.band.p_value
    }

    /// The tail e-process's own running p-value (1 when it is off).
    pub fn tail_p_value(&self) -> f64 {
        self.tail.p_value
    }

    /// The exceedance test's own running p-value (1 when it is off:
    /// [`DistributionSettings::stationary`]).
    pub fn exceedance_p_value(&self) -> f64 {
        self.exceedance.as_ref().map_or(1.0, |e| e.p_value())
    }

    /// A time-uniform `(1 − alpha)` confidence interval for the `p`-quantile of an arm's
    /// checked values, widened to bucket edges; an end is infinite when the data do not bound
    /// it yet.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn quantile_bounds(&self, arm: Arm, p: f64) -> Result<(f64, f64), AnalysisError> {
        check_share("quantile", p)?;
        let h = match arm {
            Arm::Control => &self.control,
            Arm::Canary => &self.canary,
        };
        let t = h.total as f64;
        let eps = band_epsilon(t, self.alpha);
        let lo_rank = (t * (p - eps)).floor() + 1.0;
        let hi_rank = (t * (p + eps)).ceil();
        let lower = if p - eps <= 0.0 || lo_rank < 1.0 {
            f64::NEG_INFINITY
        } else {
            let b = h.bucket_of_rank(lo_rank as u64);
            if b == 0 {
                f64::NEG_INFINITY
            } else {
                self.edges[b - 1]
            }
        };
        let upper = if hi_rank > t || p + eps >= 1.0 {
            f64::INFINITY
        } else {
            let b = h.bucket_of_rank(hi_rank.max(1.0) as u64);
            self.edges.get(b).copied().unwrap_or(f64::INFINITY)
        };
        Ok((lower, upper))
    }
}

/// The persisted form of a [`DistributionTest`]: default edges are not written out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DistributionState {
    alpha: f64,
    alternative: Alternative,
    /// `None` for [`default_edges`].
    edges: Option<Vec<f64>>,
    control: Histogram,
    canary: Histogram,
    window_control: Histogram,
    window_canary: Histogram,
    tails: Vec<Tail>,
    /// Absent in state saved before the exceedance test existed, or with it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exceedance: Option<Box<ExceedanceTest>>,
    band: RunningP,
    tail: RunningP,
    running: RunningP,
}

impl From<DistributionTest> for DistributionState {
    fn from(t: DistributionTest) -> Self {
        DistributionState {
            alpha: t.alpha,
            alternative: t.alternative,
            edges: t.custom_edges.then_some(t.edges),
            control: t.control,
            canary: t.canary,
            window_control: t.window_control,
            window_canary: t.window_canary,
            tails: t.tails,
            exceedance: t.exceedance,
            band: t.band,
            tail: t.tail,
            running: t.running,
        }
    }
}

impl TryFrom<DistributionState> for DistributionTest {
    type Error = String;

    fn try_from(s: DistributionState) -> Result<Self, String> {
        check_alpha(s.alpha).map_err(|e| e.to_string())?;
        let custom_edges = s.edges.is_some();
        let edges = s.edges.unwrap_or_else(default_edges);
        check_edges(&edges).map_err(|e| e.to_string())?;
        for h in [&s.control, &s.canary, &s.window_control, &s.window_canary] {
            if h.counts.len() != edges.len() + 1 {
                return Err("histogram length does not match the bucket edges".into());
            }
        }
        if s.tails
            .iter()
            .any(|t| t.threshold.is_some_and(|j| j >= edges.len()))
        {
            return Err("tail threshold outside the bucket edges".into());
        }
        if s.exceedance
            .as_ref()
            .is_some_and(|e| e.buckets() != edges.len() + 1)
        {
            return Err("exceedance test's buckets do not match the bucket edges".into());
        }
        Ok(DistributionTest {
            alpha: s.alpha,
            alternative: s.alternative,
            edges,
            custom_edges,
            control: s.control,
            canary: s.canary,
            window_control: s.window_control,
            window_canary: s.window_canary,
            tails: s.tails,
            exceedance: s.exceedance,
            band: s.band,
            tail: s.tail,
            running: s.running,
        })
    }
}

/// The smallest `α` at which `d > ε(n_c, α/2) + ε(n_t, α/2)`, or 1.
pub(crate) fn band_p_value(d: f64, nc: f64, nt: f64) -> f64 {
    if nc < 1.0 || nt < 1.0 || d <= 0.0 {
        return 1.0;
    }
    // With u = 0.8·ln(1612/a): width(u) = 0.85·(sqrt((L_c + u)/n_c) + sqrt((L_t + u)/n_t)),
    // increasing in u, i.e. decreasing in a.
    let (lc, lt) = (nc.ln().ln_1p(), nt.ln().ln_1p());
    let width = |u: f64| 0.85 * (((lc + u) / nc).sqrt() + ((lt + u) / nt).sqrt());
    let u_at = |a: f64| 0.8 * (1612.0 / a).ln();
    // a = 1/2 (α = 1) is the least demanding band.
    if width(u_at(0.5)) >= d {
        return 1.0;
    }
    let (mut lo, mut hi) = (u_at(0.5), u_at(0.5) + 1.0);
    while width(hi) < d {
        lo = hi;
        hi *= 2.0;
        if hi > 1e6 {
            return 0.0;
        }
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if width(mid) < d { lo = mid } else { hi = mid }
    }
    // Reject for every u below `hi`, i.e. every a above 1612·e^{−hi/0.8}; α = 2a.
    (2.0 * 1612.0 * (-hi / 0.8).exp()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_p_value_is_the_level_where_the_rule_flips() {
        for (d, nc, nt) in [(0.6, 100.0, 100.0), (0.2, 5000.0, 800.0), (0.05, 1e5, 2e4)] {
            let p = band_p_value(d, nc, nt);
            assert!(p > 0.0 && p < 1.0, "{p}");
            // At α = p each band has a = p/2 and the threshold equals d.
            let width = |alpha: f64| band_epsilon(nc, alpha / 2.0) + band_epsilon(nt, alpha / 2.0);
            assert!((width(p) - d).abs() < 1e-9, "{d}: {} at p = {p}", width(p));
            assert!(width(p * 1.001) < d && width(p * 0.999) > d);
        }
        assert_eq!(band_p_value(0.01, 100.0, 100.0), 1.0);
        assert_eq!(band_p_value(0.5, 0.0, 100.0), 1.0);
    }

    /// With `stationary`, a tail regression that begins after 10 minutes of stable data (5 % of
    /// requests 3× slower, 50 values per arm per check) is found sooner, the exceedance test's
    /// p-value is part of the decision, and the state reads back exactly.
    #[test]
    fn the_stationary_exceedance_test_runs_beside_band_and_tail() {
        let run = |stationary: bool| {
            let mut rng = crate::SplitMix64::new(9);
            let mut lat = |n: usize, tail: f64| -> Vec<f64> {
                (0..n)
                    .map(|_| {
                        let v = (0.1f64.ln() + 0.5 * rng.normal()).exp();
                        if rng.uniform() < tail { 3.0 * v } else { v }
                    })
                    .collect()
            };
            let settings = DistributionSettings {
                alternative: Alternative::Greater,
                stationary,
                ..DistributionSettings::default()
            };
            let mut t = DistributionTest::new(settings).unwrap();
            for check in 0..180 {
                t.observe_control(&lat(50, 0.0)).unwrap();
                t.observe_canary(&lat(50, if check < 60 { 0.0 } else { 0.05 }))
                    .unwrap();
                if t.check().rejected {
                    let json = serde_json::to_string(&t).unwrap();
                    assert_eq!(serde_json::from_str::<DistributionTest>(&json).unwrap(), t);
                    return (check, t.exceedance_p_value());
                }
            }
            (180, t.exceedance_p_value())
        };
        let (with, p_exceedance) = run(true);
        let (without, off) = run(false);
        assert!(with >= 60 && with < without, "{with} vs {without}");
        assert!(p_exceedance <= 0.02 && off == 1.0, "{p_exceedance} {off}");
    }

    #[test]
    fn gaps_at_edges_and_the_largest_gap_inside_buckets() {
        let settings = DistributionSettings {
            edges: vec![1.0, 2.0, 3.0],
            tail_quantiles: Vec::new(),
            ..DistributionSettings::default()
        };
        let mut t = DistributionTest::new(settings).unwrap();
        t.observe_control(&[0.5, 1.5, 2.5, 3.5]).unwrap();
        t.observe_canary(&[1.5, 1.6, 3.5, 3.6]).unwrap();
        t.check();
        let (d_plus, d_minus, upper) = t.gaps();
        // F_control at 1, 2, 3: 1/4, 2/4, 3/4; F_canary: 0, 2/4, 2/4.
        assert!((d_plus - 0.25).abs() < 1e-15 && d_minus == 0.0);
        // Inside (2, 3]: F_control can reach 3/4 while F_canary is still 2/4; inside (1, 2]
        // F_control can reach 2/4 with F_canary at 0.
        assert!((upper - 0.5).abs() < 1e-15, "{upper}");
    }
}
