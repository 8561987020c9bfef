//! Latency under a stationary null: a sequential test on the ranks of the canary's values among
//! all values seen so far, betting on exceedances of high quantiles (a canary whose slowest
//! requests got slower while its typical ones did not) and on a shift of the whole
//! distribution.
//!
//! # Why beside the distribution test
//!
//! The distribution test's tail e-process ([`super::DistributionTest`]) compares, window by
//! window, how many of each arm's values exceed the control's running quantile. That is valid
//! even when the latency of both arms drifts together over time, but it pays for it: the
//! control's exceedances in the window are as noisy as the canary's, so with equal traffic it
//! gets about 40 % of the information per request that a test knowing the stable exceedance rate
//! would get (a tail of 5 % of requests 3× slower, threshold at the 99th percentile), and a
//! regression that begins late gains nothing from the stable data before it. This test assumes
//! more and needs less: when the latency distribution does not drift, every value before the
//! onset pins down the stable quantiles, and the canary's exceedances are compared with a
//! known rate.
//!
//! # Construction \[D\]
//!
//! **Null hypothesis.** All values of both arms, in the order the test takes them, are
//! exchangeable: the same distribution for both arms and over time (i.i.d. is enough). The test
//! takes each check's control values first, then its canary values; the order depends only on
//! the arm and the window, not on the values.
//!
//! **Sequential ranks.** For the `i`-th value `z_i` (both arms), the smoothed conformal p-value
//! `p_i = (#{j < i: z_j > z_i} + U_i·(#{j < i: z_j = z_i} + 1)) / i` with `U_i` uniform is,
//! under exchangeability, uniform on (0, 1) and independent of `p_1, …, p_{i−1}` (Vovk,
//! Gammerman & Shafer, "Algorithmic learning in a random world": smoothed conformal p-values
//! are independent and uniform). "`p_i ≤ a`" says that `z_i` lies among the top `a` of all
//! values so far: it exceeds their `(1 − a)`-quantile. Values are counted over bucket edges
//! ([`super::default_edges`], 1 % relative width, or the caller's), and values in one bucket
//! are ties. `U_i` comes from a fixed pseudo-random sequence indexed by `i` (SplitMix64), so the
//! test is deterministic and its state persists exactly; its validity is that of the randomised
//! test, the uniforms being chosen before any data.
//!
//! Every bet below is a product of factors `f_i(p_i)` with `f_i ≥ 0` fixed before `p_i` is
//! seen and `∫₀¹ f_i = 1`, so it has conditional mean 1: a nonnegative martingale in the
//! filtration of the p-values. All of them live in that one filtration, so weighted sums with
//! weights summing to 1 are martingales too, and by Ville's inequality
//! `P_H0(e-value ≥ 1/α ever) ≤ α`.
//!
//! **Tail bets.** For each level `a = 1 − q` ([`ExceedanceSettings::quantiles`], default the
//! 99th and 99.9th percentiles) and each exceedance probability `θ > a`, canary values get
//! `(θ/a)^{[p_i ≤ a]} ((1 − θ)/(1 − a))^{[p_i > a]}` (control values 1). The test mixes `θ`
//! over the one-sided Beta(`k·a`, `k·(1 − a)`) prior truncated to `θ > a` (the grid of the
//! counts tests, with the canary values as events and the exceedances as the canary's label).
//!
//! **Shift bet** ([`ExceedanceSettings::shift`]). With the normal score `s_i = Φ⁻¹(1 − p_i)`
//! (standard normal under the null), canary values get `exp(δ s_i − δ²/2)` for a shift `δ > 0`
//! and control values `exp(−δ' s_i − δ'²/2)`, `δ' ≥ 0`: the likelihood ratio of a normal shift,
//! which integrates to 1 over `p`. The product depends on the sums of scores only, and the
//! mixture over a half-normal prior of scale `τ` = [`SHIFT_PRIOR_SCALE`] has the closed form
//! `ln 2 − ln τ − ½ ln v + S²/(2v) + ln Φ(S/√v)`, `v = n + 1/τ²`. The control's mixture puts
//! half its weight on `δ' = 0`, so it costs at most `ln 2` when the stable values seen before
//! make the canary's shift the whole signal (a late onset), and adds the control's evidence when
//! the canary's own values fill the pool (an onset at the start).
//!
//! **Tail mixture** ([`ExceedanceSettings::tail_mixture`]). A regression of a few requests
//! (a share `s` of the canary's values slower by a factor) moves the normal scores of those
//! values only; the shift bet averages it away and one exceedance level sees only part of it.
//! For each share `s` in [`TAIL_SHARES`] and shift `d` in [`TAIL_SHIFTS`], canary values get
//! `(1 − s) + s·exp(d s_i − d²/2)`: the likelihood ratio of "a share `s` of the values has its
//! normal score shifted by `d`" against the null, which integrates to 1 over `p`. The family is
//! the average over the grid, with restarts like the other bets. For a tail of 5 % of requests
//! 3 times slower (log-spread 0.5) the best grid point gets 1.7 times the information per canary
//! value of the better exceedance level (0.027 against 0.015 nats), for 1 % 5 times slower 1.9
//! times (0.013 against 0.0067).
//!
//! **Late onsets.** Each bet runs restarted copies beside the one that starts with the data
//! (`restarts`: weights summing to 1 in all, one new start every [`RESTART_SPACING`] canary
//! values), so a late onset is not diluted by the values before it. The e-value is the average
//! over the bets (levels, shift and tail mixture).
//!
//! **What it does not cover.** If both arms slow down together over the canary (daily load,
//! a shared dependency), the null above is false and the test may roll back: use the
//! distribution test there, which only compares the arms within each check window. The
//! estimate is the deciding level's observed exceedance rate of the canary divided by `a`; the
//! test gives no confidence sequence (its bounds are 0 and `+∞`).

use serde::{Deserialize, Serialize};

use super::buckets::{Histogram, check_edges, check_values, default_edges};
use super::evidence::{Effect, Evidence, RunningP, check_alpha, check_share};
use super::mixture::{LogRatioMixture, log_sum_exp};
use super::restarts::{Combine, Restarts, log_e_with};
use crate::{Alternative, AnalysisError};

/// Default quantiles whose exceedances are bet on (levels `a` = 1 % and 0.1 %). The 95th
/// percentile carried about half the information of these for the tails of the detection
/// benchmark and cost a third of the weight.
pub const DEFAULT_EXCEEDANCE_QUANTILES: [f64; 2] = [0.99, 0.999];

/// Default prior strength: Beta(`2a`, `2(1 − a)`) on the exceedance probability, close to
/// log-uniform on the ratio `θ/a` from 1 to `1/a`, because tail regressions move exceedance
/// rates by large factors.
pub const DEFAULT_EXCEEDANCE_PRIOR_STRENGTH: f64 = 2.0;

/// Canary values between two restarts (one a minute at 5 requests/s).
pub const RESTART_SPACING: f64 = 300.0;

/// Settings of the exceedance test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceedanceSettings {
    /// Significance level, in (0, 1). Default 0.05.
    pub alpha: f64,
    /// Quantiles `q` whose exceedances are bet on, each in (0, 1), at least one. Default
    /// [`DEFAULT_EXCEEDANCE_QUANTILES`].
    pub quantiles: Vec<f64>,
    /// Prior strength `k` of the mixture over the exceedance probability. Default
    /// [`DEFAULT_EXCEEDANCE_PRIOR_STRENGTH`].
    pub prior_strength: f64,
    /// Bucket edges, finite and strictly increasing; empty (the default) means
    /// [`super::default_edges`].
    pub edges: Vec<f64>,
    /// Run restarted e-processes for late onsets (default `true`).
    pub restarts: bool,
    /// Also bet on a shift of the whole distribution, on the canary's normal scores (module
    /// docs; default `true`).
    pub shift: bool,
    /// Also bet on a slow tail, on the canary's normal scores: a share `s` of the canary's
    /// values shifted by `d` standard scores, over the grid [`TAIL_SHARES`] ×
    /// [`TAIL_SHIFTS`] (module docs; default `true`; state and settings saved without it read
    /// back with it off).
    #[serde(default)]
    pub tail_mixture: bool,
}

impl Default for ExceedanceSettings {
    fn default() -> Self {
        ExceedanceSettings {
            alpha: 0.05,
            quantiles: DEFAULT_EXCEEDANCE_QUANTILES.to_vec(),
            prior_strength: DEFAULT_EXCEEDANCE_PRIOR_STRENGTH,
            edges: Vec::new(),
            restarts: true,
            shift: true,
            tail_mixture: true,
        }
    }
}

/// Shares `s` of the canary's values in a slow tail that the tail mixture bets on.
pub const TAIL_SHARES: [f64; 3] = [0.01, 0.05, 0.2];

/// Shifts `d` of the slow tail, in standard normal scores (at a log-latency spread of 0.5,
/// 1.5 / 2.5 / 3.5 scores are 2.1 / 3.5 / 5.8 times slower).
pub const TAIL_SHIFTS: [f64; 3] = [1.5, 2.5, 3.5];

/// `ln` of the tail bet `(1 − s) + s·exp(d·z − d²/2)` of one normal score `z` for every
/// `(s, d)` of the grid, in the order of [`TAIL_SHARES`] then [`TAIL_SHIFTS`]. Each shift's
/// likelihood ratio is computed once and shared by the shares (3 `exp` per value, not 9).
fn tail_bets(z: f64) -> impl Iterator<Item = f64> {
    let ratios = TAIL_SHIFTS.map(|d| (d * z - 0.5 * d * d).exp());
    TAIL_SHARES
        .into_iter()
        .flat_map(move |s| ratios.into_iter().map(move |lr| (s * (lr - 1.0)).ln_1p()))
}

/// The tail mixture's running sums of `ln` bets, one per `(s, d)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TailSums(Vec<f64>);

impl TailSums {
    fn new() -> Self {
        TailSums(vec![0.0; TAIL_SHARES.len() * TAIL_SHIFTS.len()])
    }

    fn add(&mut self, other: &TailSums) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// `ln` of the average over the grid of the products since `start` (`None`: since the
    /// beginning).
    #[allow(clippy::cast_precision_loss)]
    fn log_e_since(&self, start: Option<&TailSums>) -> f64 {
        let sum = match start {
            Some(start) => log_sum_exp(self.0.iter().zip(&start.0).map(|(a, b)| a - b)),
            None => log_sum_exp(self.0.iter().copied()),
        };
        sum - (self.0.len() as f64).ln()
    }
}

/// The tail mixture and its restarts (each restart holds the sums at its start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TailMixture {
    sums: TailSums,
    restarts: Option<Restarts<TailSums>>,
}

impl TailMixture {
    fn log_e(&self) -> f64 {
        log_e_with(self.restarts.as_ref(), self.sums.log_e_since(None))
    }
}

/// Scale `τ` of the half-normal prior on the shift `δ` of the normal scores, in standard
/// deviations: a tenth of a standard deviation is a 5 % slowdown at a log-sd of 0.5.
pub const SHIFT_PRIOR_SCALE: f64 = 0.2;

/// `ln Φ(x)`, also far in the lower tail.
fn ln_phi(x: f64) -> f64 {
    if x > -30.0 {
        (0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)).ln()
    } else {
        -0.5 * x * x - (-x).ln() - 0.5 * std::f64::consts::TAU.ln()
    }
}

/// `ln ∫₀^∞ exp(δS − nδ²/2) dπ(δ)` with `π` half-normal of scale `τ` (module docs):
/// `ln 2 − ln τ − ½ ln v + S²/(2v) + ln Φ(S/√v)`, `v = n + 1/τ²`.
fn log_half_normal_mixture(sum: f64, n: f64, tau: f64) -> f64 {
    let v = n + 1.0 / (tau * tau);
    std::f64::consts::LN_2 - tau.ln() - 0.5 * v.ln()
        + sum * sum / (2.0 * v)
        + ln_phi(sum / v.sqrt())
}

/// The shift e-process's sufficient statistics: sums of normal scores and counts per arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Scores {
    canary_sum: f64,
    canary_n: f64,
    control_sum: f64,
    control_n: f64,
}

impl Scores {
    fn add(&mut self, other: &Scores) {
        self.canary_sum += other.canary_sum;
        self.canary_n += other.canary_n;
        self.control_sum += other.control_sum;
        self.control_n += other.control_n;
    }

    /// ln of the product of the canary's mixture (`δ > 0`) and the control's (half at
    /// `δ = 0`, half over `δ > 0` on the negated scores).
    fn log_e(&self) -> f64 {
        let canary = log_half_normal_mixture(self.canary_sum, self.canary_n, SHIFT_PRIOR_SCALE);
        let control = log_half_normal_mixture(-self.control_sum, self.control_n, SHIFT_PRIOR_SCALE);
        let control = log_sum_exp([0.0, control].into_iter()) - std::f64::consts::LN_2;
        canary + control
    }
}

/// The shift e-process and its restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shift {
    scores: Scores,
    restarts: Option<Restarts<Scores>>,
}

impl Shift {
    fn log_e(&self) -> f64 {
        log_e_with(self.restarts.as_ref(), self.scores.log_e())
    }
}

/// The smoothed conformal p-value of the value numbered `index` (from 0) that has `greater`
/// values above it and `equal` in its bucket before it: `(G + U·(E + 1))/(index + 1)` with `U`
/// a pseudo-random uniform on (0, 1) fixed by the index alone (module docs).
#[allow(clippy::cast_precision_loss)]
fn smoothed_p(index: u64, greater: u64, equal: u64) -> f64 {
    let bits = crate::SplitMix64::new(TIE_SEED ^ index).next_u64() >> 11;
    let u = (bits as f64 + 0.5) / (1u64 << 53) as f64;
    (greater as f64 + u * (equal as f64 + 1.0)) / (index as f64 + 1.0)
}

/// Seed of the tie-breaking uniforms.
const TIE_SEED: u64 = 0x5EED_0FC0_FFEE;

/// Bucket counts of all values so far as a Fenwick tree, for the number of values at or
/// above a bucket in O(log bins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pool {
    tree: Vec<u64>,
    total: u64,
}

impl Pool {
    fn new(buckets: usize) -> Self {
        Pool {
            tree: vec![0; buckets + 1],
            total: 0,
        }
    }

    fn add(&mut self, bucket: usize) {
        let mut i = bucket + 1;
        while i < self.tree.len() {
            self.tree[i] += 1;
            i += i & i.wrapping_neg();
        }
        self.total += 1;
    }

    /// Values in buckets `0..bucket`.
    fn below(&self, bucket: usize) -> u64 {
        let (mut i, mut sum) = (bucket, 0);
        while i > 0 {
            sum += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

/// One level's e-process and its restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Level {
    /// `a = 1 − q`.
    rate: f64,
    mixture: LogRatioMixture,
    restarts: Option<Restarts<LogRatioMixture>>,
    /// Canary exceedances and canary values seen, for the estimate.
    exceedances: u64,
    values: u64,
}

impl Level {
    fn log_e(&self) -> f64 {
        log_e_with(self.restarts.as_ref(), self.mixture.log_e())
    }
}

/// The sequential exceedance test (module docs). Feed each arm's new values with
/// [`observe_control`](Self::observe_control) / [`observe_canary`](Self::observe_canary), then
/// call [`check`](Self::check) once per check. One-sided: it looks for a canary that is slower
/// in the tail.
///
/// ```
/// use cutover_analysis::sequential::{ExceedanceSettings, ExceedanceTest};
/// let mut test = ExceedanceTest::new(ExceedanceSettings::default())?;
/// let stable: Vec<f64> = (1..=2000).map(|i| f64::from(i) / 1000.0).collect();
/// test.observe_control(&stable)?;
/// test.observe_canary(&stable[..1000])?;
/// assert!(!test.check().rejected);
/// // Then a tenth of the canary's requests take longer than anything seen.
/// let slow: Vec<f64> = (0..500).map(|i| if i % 10 == 0 { 5.0 } else { 0.5 }).collect();
/// test.observe_canary(&slow)?;
/// assert!(test.check().rejected);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ExceedanceState", into = "ExceedanceState")]
pub struct ExceedanceTest {
    alpha: f64,
    edges: Vec<f64>,
    custom_edges: bool,
    pool: Pool,
    /// This window's values (bucket indices), not yet checked.
    window_control: Vec<usize>,
    window_canary: Vec<usize>,
    levels: Vec<Level>,
    shift: Option<Shift>,
    tails: Option<TailMixture>,
    control_n: u64,
    canary_n: u64,
    running: RunningP,
}

impl ExceedanceTest {
    /// A test with the given settings.
    pub fn new(settings: ExceedanceSettings) -> Result<Self, AnalysisError> {
        check_alpha(settings.alpha)?;
        let custom_edges = !settings.edges.is_empty();
        let edges = if custom_edges {
            settings.edges
        } else {
            default_edges()
        };
        check_edges(&edges)?;
        if settings.quantiles.is_empty() && !settings.shift && !settings.tail_mixture {
            return Err(AnalysisError::Invalid(
                "the exceedance test needs quantiles, the shift bet or the tail mixture".into(),
            ));
        }
        for &q in &settings.quantiles {
            check_share("exceedance quantile", q)?;
        }
        let k = settings.prior_strength;
        if !(k > 0.0 && k.is_finite()) {
            return Err(AnalysisError::Invalid(format!(
                "prior_strength must be finite and above 0, got {k}"
            )));
        }
        let levels = settings
            .quantiles
            .iter()
            .map(|&q| Level {
                rate: 1.0 - q,
                mixture: LogRatioMixture::new(k, 1.0 - q, Alternative::Greater),
                restarts: settings
                    .restarts
                    .then(|| Restarts::new(Combine::Sum, RESTART_SPACING)),
                exceedances: 0,
                values: 0,
            })
            .collect();
        let shift = settings.shift.then(|| Shift {
            scores: Scores::default(),
            restarts: settings
                .restarts
                .then(|| Restarts::new(Combine::Sum, RESTART_SPACING)),
        });
        let tails = settings.tail_mixture.then(|| TailMixture {
            sums: TailSums::new(),
            restarts: settings
                .restarts
                .then(|| Restarts::new(Combine::Sum, RESTART_SPACING)),
        });
        Ok(ExceedanceTest {
            alpha: settings.alpha,
            shift,
            tails,
            pool: Pool::new(edges.len() + 1),
            edges,
            custom_edges,
            window_control: Vec::new(),
            window_canary: Vec::new(),
            levels,
            control_n: 0,
            canary_n: 0,
            running: RunningP::default(),
        })
    }

    /// Adds new control values (nonnegative, not NaN) to the current window. Fails, changing
    /// nothing, on a bad value.
    pub fn observe_control(&mut self, values: &[f64]) -> Result<(), AnalysisError> {
        check_values("control", values)?;
        let edges = &self.edges;
        self.window_control
            .extend(values.iter().map(|&v| Histogram::bucket(edges, v)));
        Ok(())
    }

    /// Adds new canary values to the current window, as [`observe_control`](Self::observe_control).
    pub fn observe_canary(&mut self, values: &[f64]) -> Result<(), AnalysisError> {
        check_values("canary", values)?;
        let edges = &self.edges;
        self.window_canary
            .extend(values.iter().map(|&v| Histogram::bucket(edges, v)));
        Ok(())
    }

    /// Adds values already bucketed over this test's edges: `counts[i]` values in bucket `i`
    /// (as [`super::DistributionTest::observe_buckets`], whose caller checked the length).
    pub(crate) fn observe_bucket_counts(&mut self, canary: bool, counts: &[u64]) {
        let window = if canary {
            &mut self.window_canary
        } else {
            &mut self.window_control
        };
        for (b, &c) in counts.iter().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            window.extend(std::iter::repeat_n(b, c as usize));
        }
    }

    /// The number of buckets (edges + 1) this test counts over.
    pub(crate) fn buckets(&self) -> usize {
        self.edges.len() + 1
    }

    /// The running anytime-valid p-value.
    pub(crate) fn p_value(&self) -> f64 {
        self.running.p_value
    }

    /// Closes the current window: its control values join the pool, then each canary value is
    /// ranked against everything before it and joins the pool; the e-processes take the
    /// window's exceedances and the p-value is updated.
    #[allow(clippy::cast_precision_loss)]
    pub fn check(&mut self) -> Evidence {
        let mut window = Scores::default();
        let mut window_tails = TailSums::new();
        let mut exceed = vec![0u64; self.levels.len()];
        let normal = statrs::distribution::Normal::standard();
        let score = |p: f64| {
            use statrs::distribution::ContinuousCDF;
            normal.inverse_cdf(1.0 - p)
        };
        for (canary, values) in [(false, &self.window_control), (true, &self.window_canary)] {
            for &b in values {
                let index = self.pool.total;
                let below = self.pool.below(b);
                let through = self.pool.below(b + 1);
                let p = smoothed_p(index, index - through, through - below);
                if canary {
                    for (level, x) in self.levels.iter().zip(&mut exceed) {
                        *x += u64::from(p <= level.rate);
                    }
                }
                if self.shift.is_some() || (canary && self.tails.is_some()) {
                    let z = score(p);
                    if canary {
                        window.canary_sum += z;
                        window.canary_n += 1.0;
                        if self.tails.is_some() {
                            for (sum, bet) in window_tails.0.iter_mut().zip(tail_bets(z)) {
                                *sum += bet;
                            }
                        }
                    } else {
                        window.control_sum += z;
                        window.control_n += 1.0;
                    }
                }
                self.pool.add(b);
            }
        }
        let n = self.window_canary.len() as u64;
        self.control_n += self.window_control.len() as u64;
        self.canary_n += n;
        self.window_control.clear();
        self.window_canary.clear();
        for (level, &x) in self.levels.iter_mut().zip(&exceed) {
            let a = level.rate;
            level.mixture.observe(n - x, x, a);
            level.exceedances += x;
            level.values += n;
            if let Some(restarts) = &mut level.restarts {
                for r in restarts.live_mut() {
                    r.component.observe(n - x, x, a);
                    r.log_e = r.component.log_e();
                }
            }
        }
        if let Some(shift) = &mut self.shift {
            shift.scores.add(&window);
            if let Some(restarts) = &mut shift.restarts {
                for r in restarts.live_mut() {
                    r.component.add(&window);
                    r.log_e = r.component.log_e();
                }
            }
        }
        if let Some(tails) = &mut self.tails {
            tails.sums.add(&window_tails);
            if let Some(restarts) = &mut tails.restarts {
                for r in restarts.live_mut() {
                    r.log_e = tails.sums.log_e_since(Some(&r.component));
                }
            }
        }
        self.running.update_log_e(self.log_e(), self.alpha);
        for level in &mut self.levels {
            let (k, a) = (level.mixture.prior_strength(), level.rate);
            if let Some(restarts) = &mut level.restarts {
                restarts.after_window(n as f64, || {
                    LogRatioMixture::coarse(k, a, Alternative::Greater)
                });
            }
        }
        if let Some(restarts) = self.shift.as_mut().and_then(|s| s.restarts.as_mut()) {
            restarts.after_window(n as f64, Scores::default);
        }
        if let Some(TailMixture {
            sums,
            restarts: Some(restarts),
        }) = &mut self.tails
        {
            restarts.after_window(n as f64, || sums.clone());
        }
        self.evidence()
    }

    /// ln of the e-value: the average over the levels, the shift bet and the tail mixture.
    #[allow(clippy::cast_precision_loss)]
    fn log_e(&self) -> f64 {
        let families = self.levels.len()
            + usize::from(self.shift.is_some())
            + usize::from(self.tails.is_some());
        let all = self
            .levels
            .iter()
            .map(Level::log_e)
            .chain(self.shift.iter().map(Shift::log_e))
            .chain(self.tails.iter().map(TailMixture::log_e));
        log_sum_exp(all) - (families as f64).ln()
    }

    /// The current evidence (as of the last [`check`](Self::check)). The effect is a
    /// [`Effect::RateRatio`]: the canary's exceedance rate of the level with the largest
    /// e-value, divided by that level; `lower` is 0 and `upper` `+∞` (no confidence
    /// sequence, module docs).
    #[allow(clippy::cast_precision_loss)]
    pub fn evidence(&self) -> Evidence {
        let deciding = self
            .levels
            .iter()
            .max_by(|a, b| a.log_e().total_cmp(&b.log_e()));
        let estimate = deciding.map_or(f64::NAN, |l| {
            if l.values == 0 {
                f64::NAN
            } else {
                l.exceedances as f64 / (l.values as f64 * l.rate)
            }
        });
        Evidence {
            p_value: self.running.p_value,
            rejected: self.running.rejected,
            log_e_value: self.log_e(),
            effect: Effect::RateRatio,
            estimate,
            lower: 0.0,
            upper: f64::INFINITY,
            control_n: self.control_n,
            canary_n: self.canary_n,
        }
    }
}

/// The persisted form of an [`ExceedanceTest`]: default edges are not written out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ExceedanceState {
    alpha: f64,
    /// `None` for [`default_edges`].
    edges: Option<Vec<f64>>,
    pool: Pool,
    window_control: Vec<usize>,
    window_canary: Vec<usize>,
    levels: Vec<Level>,
    shift: Option<Shift>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tails: Option<TailMixture>,
    control_n: u64,
    canary_n: u64,
    running: RunningP,
}

impl From<ExceedanceTest> for ExceedanceState {
    fn from(t: ExceedanceTest) -> Self {
        ExceedanceState {
            alpha: t.alpha,
            edges: t.custom_edges.then_some(t.edges),
            pool: t.pool,
            window_control: t.window_control,
            window_canary: t.window_canary,
            levels: t.levels,
            shift: t.shift,
            tails: t.tails,
            control_n: t.control_n,
            canary_n: t.canary_n,
            running: t.running,
        }
    }
}

impl TryFrom<ExceedanceState> for ExceedanceTest {
    type Error = String;

    fn try_from(s: ExceedanceState) -> Result<Self, String> {
        check_alpha(s.alpha).map_err(|e| e.to_string())?;
        let custom_edges = s.edges.is_some();
        let edges = s.edges.unwrap_or_else(default_edges);
        check_edges(&edges).map_err(|e| e.to_string())?;
        let buckets = edges.len() + 1;
        if s.pool.tree.len() != buckets + 1 {
            return Err("exceedance pool does not match the bucket edges".into());
        }
        if s.window_control
            .iter()
            .chain(&s.window_canary)
            .any(|&b| b >= buckets)
        {
            return Err("window value outside the bucket edges".into());
        }
        let grid = TAIL_SHARES.len() * TAIL_SHIFTS.len();
        if s.tails.as_ref().is_some_and(|t| t.sums.0.len() != grid) {
            return Err("exceedance tail mixture does not match its grid".into());
        }
        if (s.levels.is_empty() && s.shift.is_none() && s.tails.is_none())
            || s.levels.iter().any(|l| !(l.rate > 0.0 && l.rate < 1.0))
        {
            return Err("exceedance levels must be in (0, 1), with at least one bet".into());
        }
        Ok(ExceedanceTest {
            alpha: s.alpha,
            edges,
            custom_edges,
            pool: s.pool,
            window_control: s.window_control,
            window_canary: s.window_canary,
            levels: s.levels,
            shift: s.shift,
            tails: s.tails,
            control_n: s.control_n,
            canary_n: s.canary_n,
            running: s.running,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn the_pool_counts_values_below_a_bucket() {
        let mut p = Pool::new(10);
        for b in [0, 3, 3, 7, 9] {
            p.add(b);
        }
        assert_eq!(p.below(0), 0);
        assert_eq!(p.below(3), 1);
        assert_eq!(p.below(4), 3);
        assert_eq!(p.below(8), 4);
        assert_eq!(p.below(10), 5);
        assert_eq!(p.total, 5);
    }

    /// Log-normal latencies (median 0.1 s, log sd 0.5), a share `tail` of the canary's `factor`
    /// times slower.
    fn latencies(rng: &mut SplitMix64, n: usize, tail: f64, factor: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let v = (0.1f64.ln() + 0.5 * rng.normal()).exp();
                if rng.uniform() < tail { v * factor } else { v }
            })
            .collect()
    }

    /// Under H0 (both arms i.i.d. from one distribution) the mean over replications of the
    /// e-value at every check stays at most 1 (a supermartingale has `E[E_n] ≤ E[E_0] = 1`),
    /// for one level without restarts (an exact martingale but for ties) and for the default
    /// test. The mean is estimated from 400 replications of 60 checks; the bound allows four
    /// standard errors.
    #[test]
    #[allow(clippy::cast_precision_loss)]
    fn the_e_value_under_h0_is_a_supermartingale_in_expectation() {
        let (reps, checks, per_window) = (400usize, 60usize, 20usize);
        for settings in [
            ExceedanceSettings {
                quantiles: vec![0.9],
                restarts: false,
                shift: false,
                ..ExceedanceSettings::default()
            },
            ExceedanceSettings {
                quantiles: Vec::new(),
                restarts: false,
                ..ExceedanceSettings::default()
            },
            ExceedanceSettings::default(),
        ] {
            let mut e = vec![Vec::with_capacity(reps); checks];
            let mut rejected = 0;
            for r in 0..reps {
                let mut rng = SplitMix64::new(7 + r as u64);
                let mut test = ExceedanceTest::new(settings.clone()).unwrap();
                for row in &mut e {
                    test.observe_control(&latencies(&mut rng, per_window, 0.0, 1.0))
                        .unwrap();
                    test.observe_canary(&latencies(&mut rng, per_window, 0.0, 1.0))
                        .unwrap();
                    row.push(test.check().log_e_value.exp());
                }
                rejected += usize::from(test.evidence().rejected);
            }
            for (n, row) in e.iter().enumerate() {
                let mean = row.iter().sum::<f64>() / reps as f64;
                let var = row.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (reps - 1) as f64;
                let se = (var / reps as f64).sqrt();
                assert!(
                    mean <= 1.0 + 4.0 * se + 1e-9,
                    "{settings:?}: check {n}: mean e-value {mean} (se {se})"
                );
            }
            // Ville: at most alpha = 5 % reject; 400 replications, so allow up to 9 %.
            assert!(
                rejected <= 36,
                "{settings:?}: {rejected} of {reps} rejected"
            );
        }
    }

    /// The e-value of a one-level test without restarts on a fixed sequence is the
    /// Beta-mixture likelihood ratio of the canary's exceedances: so the mean above is about
    /// the right quantity. And a canary whose tail is slower is rejected within a few thousand
    /// values, while the same canary without the tail is not.
    #[test]
    fn a_slower_tail_is_found_and_a_stable_one_is_not() {
        let mut found = None;
        let mut rng = SplitMix64::new(11);
        let mut slow = ExceedanceTest::new(ExceedanceSettings::default()).unwrap();
        let mut same = ExceedanceTest::new(ExceedanceSettings::default()).unwrap();
        for check in 0..100 {
            let control = latencies(&mut rng, 50, 0.0, 1.0);
            let canary = latencies(&mut rng, 50, 0.0, 1.0);
            let tail = latencies(&mut rng, 50, 0.05, 3.0);
            same.observe_control(&control).unwrap();
            same.observe_canary(&canary).unwrap();
            slow.observe_control(&control).unwrap();
            slow.observe_canary(if check < 40 { &canary } else { &tail })
                .unwrap();
            assert!(!same.check().rejected, "check {check}");
            if slow.check().rejected && found.is_none() {
                found = Some(check);
            }
        }
        let found = found.expect("the slower tail was found");
        assert!(found >= 40, "rejected before the onset, at {found}");
        let e = slow.evidence();
        assert!(e.estimate > 1.5 && e.canary_n == 5000, "{e:?}");
    }

    /// A canary 25 % slower from check 30 on (all of it, not a tail): the shift bet finds it
    /// within a few checks, the exceedance levels alone take longer; before the onset nothing
    /// rejects.
    #[test]
    fn a_late_shift_is_found_by_the_shift_bet() {
        let first = |shift: bool| {
            let mut rng = SplitMix64::new(5);
            let settings = ExceedanceSettings {
                shift,
                tail_mixture: false,
                ..ExceedanceSettings::default()
            };
            let mut t = ExceedanceTest::new(settings).unwrap();
            for check in 0..120 {
                t.observe_control(&latencies(&mut rng, 50, 0.0, 1.0))
                    .unwrap();
                let factor = if check < 30 { 1.0 } else { 1.25 };
                let canary: Vec<f64> = latencies(&mut rng, 50, 0.0, 1.0)
                    .iter()
                    .map(|v| v * factor)
                    .collect();
                t.observe_canary(&canary).unwrap();
                if t.check().rejected {
                    return Some(check);
                }
            }
            None
        };
        let with = first(true).expect("found with the shift bet");
        assert!((30..=40).contains(&with), "{with}");
        assert!(first(false).is_none_or(|without| without > with));
    }

    #[test]
    fn state_reads_back_exactly_and_bad_settings_fail() {
        let mut rng = SplitMix64::new(3);
        let mut t = ExceedanceTest::new(ExceedanceSettings::default()).unwrap();
        for _ in 0..5 {
            t.observe_control(&latencies(&mut rng, 400, 0.0, 1.0))
                .unwrap();
            t.observe_canary(&latencies(&mut rng, 400, 0.1, 4.0))
                .unwrap();
            t.check();
        }
        t.observe_canary(&[0.2]).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.len() < 200_000, "{}", json.len());
        let back: ExceedanceTest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        for bad in [
            ExceedanceSettings {
                quantiles: Vec::new(),
                shift: false,
                tail_mixture: false,
                ..ExceedanceSettings::default()
            },
            ExceedanceSettings {
                quantiles: vec![1.0],
                ..ExceedanceSettings::default()
            },
            ExceedanceSettings {
                prior_strength: 0.0,
                ..ExceedanceSettings::default()
            },
            ExceedanceSettings {
                alpha: 1.5,
                ..ExceedanceSettings::default()
            },
        ] {
            assert!(ExceedanceTest::new(bad).is_err());
        }
        assert!(t.observe_canary(&[f64::NAN]).is_err());
        assert!(t.observe_control(&[-1.0]).is_err());
        // State saved before the tail mixture existed reads back with it off.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("tails");
        let old: ExceedanceTest = serde_json::from_value(old).unwrap();
        assert!(old.tails.is_none() && back.tails.is_some());
        let mut bad: serde_json::Value = serde_json::from_str(&json).unwrap();
        bad["tails"]["sums"] = serde_json::json!([0.0]);
        assert!(serde_json::from_value::<ExceedanceTest>(bad).is_err());
    }

    /// Each tail bet is `ln((1 − s) + s·exp(d·z − d²/2))` in grid order, and its factor has
    /// mean 1 over a standard normal score (a fair bet under the null).
    #[test]
    fn tail_bets_are_fair_likelihood_ratios_in_grid_order() {
        for z in [-3.0, -0.5, 0.0, 1.2, 4.0] {
            let want = TAIL_SHARES.iter().flat_map(|&s| {
                TAIL_SHIFTS
                    .iter()
                    .map(move |&d| ((1.0 - s) + s * (d * z - d * d / 2.0).exp()).ln())
            });
            for (have, want) in tail_bets(z).zip(want) {
                assert!((have - want).abs() < 1e-12, "z {z}: {have} against {want}");
            }
            assert_eq!(tail_bets(z).count(), TAIL_SHARES.len() * TAIL_SHIFTS.len());
        }
        // E[exp(bet)] over z ~ N(0, 1), by the midpoint rule on [−12, 12].
        let step = 1e-3;
        let mut means = [0.0; 9];
        for i in 0..24_000 {
            let z = -12.0 + (f64::from(i) + 0.5) * step;
            let density = (-z * z / 2.0).exp() / std::f64::consts::TAU.sqrt();
            for (m, bet) in means.iter_mut().zip(tail_bets(z)) {
                *m += bet.exp() * density * step;
            }
        }
        for m in means {
            assert!((m - 1.0).abs() < 1e-9, "{m}");
        }
    }

    /// A slow tail from check 60 on (5 % of the canary's values 3 times slower, 10 values per
    /// check per arm): with the tail mixture the test rejects sooner than with the exceedance
    /// levels and the shift bet alone, and not before the onset (20 seeded runs, medians).
    #[test]
    fn the_tail_mixture_finds_a_late_slow_tail_sooner() {
        let first = |tail_mixture: bool, seed: u64| {
            let mut rng = SplitMix64::new(seed);
            let mut t = ExceedanceTest::new(ExceedanceSettings {
                tail_mixture,
                ..ExceedanceSettings::default()
            })
            .unwrap();
            for check in 0..180 {
                t.observe_control(&latencies(&mut rng, 10, 0.0, 1.0))
                    .unwrap();
                let tail = if check < 60 { 0.0 } else { 0.05 };
                t.observe_canary(&latencies(&mut rng, 10, tail, 3.0))
                    .unwrap();
                if t.check().rejected {
                    return check;
                }
            }
            180
        };
        let median = |tail_mixture: bool| {
            let mut at: Vec<usize> = (0..20).map(|seed| first(tail_mixture, seed)).collect();
            at.sort_unstable();
            at[10]
        };
        let (with, without) = (median(true), median(false));
        assert!(with >= 60, "rejected before the onset: {with}");
        assert!(with < without, "with {with}, without {without}");
    }

    /// The documented limitation: when both arms slow down together (10 % over 30 minutes,
    /// 10 values per second per arm), the null of this test is false and it rolls back most of
    /// the time, while the distribution test, which compares the arms within each window, stays
    /// near alpha. (100 replications in release: 99 % against 2 %; 43 % against 3 % at 5 %.)
    #[test]
    fn a_drift_common_to_both_arms_breaks_the_stationary_null_but_not_the_window_test() {
        use crate::sequential::{DistributionSettings, DistributionTest};
        let (mut exceedance, mut distribution, reps) = (0, 0, 20);
        for r in 0..reps {
            let mut rng = SplitMix64::new(100 + r);
            let mut e = ExceedanceTest::new(ExceedanceSettings::default()).unwrap();
            let mut d = DistributionTest::new(DistributionSettings {
                alternative: Alternative::Greater,
                ..DistributionSettings::default()
            })
            .unwrap();
            for check in 0..180 {
                let f = 1.0 + 0.1 * f64::from(check) / 180.0;
                let c: Vec<f64> = latencies(&mut rng, 100, 0.0, 1.0)
                    .iter()
                    .map(|v| v * f)
                    .collect();
                let t: Vec<f64> = latencies(&mut rng, 100, 0.0, 1.0)
                    .iter()
                    .map(|v| v * f)
                    .collect();
                e.observe_control(&c).unwrap();
                e.observe_canary(&t).unwrap();
                d.observe_control(&c).unwrap();
                d.observe_canary(&t).unwrap();
                e.check();
                d.check();
            }
            exceedance += usize::from(e.evidence().rejected);
            distribution += usize::from(d.evidence().rejected);
        }
        assert!(exceedance >= 15, "{exceedance} of {reps}");
        assert!(distribution <= 3, "{distribution} of {reps}");
    }
}
