//! Error rates under a stationary null: a sequential test on the ranks of the canary's error
//! indicators among all requests seen so far, so that a regression that begins late is
//! compared with the error rate of everything before it, not only with the same window's
//! control requests.
//!
//! # Why beside the counts tests
//!
//! The counts tests ([`super::CountTest`], [`super::ObservedShareCountTest`]) look at which
//! arm each error came from, window by window. That stays valid when both arms' error rate
//! moves together (a dependency fails, traffic shifts), but the control's errors in the window
//! are as noisy as the canary's: at a doubled rate each error carries about 0.057 nats, and a
//! regression that begins after 10 minutes gains nothing from the 10 minutes of data before
//! it. When the error rate does not drift, the requests before the onset pin the rate down,
//! and each canary request is compared with a known rate: at 1 % → 2 % that is
//! `KL(Bern(0.02) ‖ Bern(0.01))` = 0.0039 nats per canary request, about twice what the
//! two-arm comparison gets. In the detection benchmark, error regressions that begin at
//! minute 10 or 20 are caught in 1.3-2.4x the time of the likelihood-ratio test that knows
//! the onset at 20 and 100 requests/s per arm, against 2.3-3.5x for the counts tests; at 5
//! requests/s it is slower than they are (the cost of its bets and restarts is paid before the
//! few errors arrive). docs/benchmarks.md has the tables.
//!
//! # Construction \[D\]
//!
//! **Null hypothesis.** The outcomes (error or not) of all requests of both arms, in the order
//! the test takes them, are exchangeable: the same error probability for both arms and over
//! time (independent requests with one error rate are enough). The test takes each window's
//! control requests first, then its canary requests; within the canary's requests it places
//! the window's errors in a uniformly random order, drawn from a fixed pseudo-random sequence
//! (SplitMix64), since counts carry no order. Neither order depends on the outcomes, so the
//! sequence stays exchangeable under the null.
//!
//! **Sequential ranks.** With errors ranked above successes, the `i`-th request (from 1, both
//! arms) has the smoothed conformal p-value `p_i = U_i·E_i/i` if it is an error and
//! `p_i = (E_{i−1} + U_i·(i − E_{i−1}))/i` if not, where `E_i` counts the errors among the
//! first `i` requests and `U_i` is a uniform fixed by `i` alone. Under exchangeability the
//! `p_i` are independent and uniform on (0, 1) (Vovk, Gammerman & Shafer, "Algorithmic
//! learning in a random world"), as in [`super::ExceedanceTest`]. "`p_i ≤ a`" with `a` near the
//! error rate so far says "request `i` failed".
//!
//! **Bets.** For each level `a` ([`StationaryCountSettings::levels`], a log-spaced grid of
//! error rates from 0.01 % to 30 % by default) and each rate ratio `r`
//! ([`StationaryCountSettings::ratios`]) with `θ = r·a < 1`, every canary request multiplies
//! the component by `(θ/a)^{[p_i ≤ a]} ((1 − θ)/(1 − a))^{[p_i > a]}` (control requests by 1).
//! Each factor is nonnegative, fixed before `p_i` is drawn and integrates to 1 over `p_i`, so
//! each component is a nonnegative martingale in the filtration of the p-values; the e-value
//! is the average over all `(a, r)` (components with `θ ≥ 1` are left out, which only lowers
//! it). The component whose `a` is closest to the pooled error rate and whose `r` is closest
//! to the canary's ratio grows like the likelihood ratio of the canary's rate against a known
//! stable rate; the grid costs `ln` of its size once, not per request.
//!
//! **Late onsets.** Restarted copies of the whole average start after every window with
//! canary requests, with the fixed weights of the counts tests' restarts (module `restarts`).
//! Starting at every window depends on the request counts only, never on outcomes, so every
//! copy lives in the same filtration and the weighted sum is a nonnegative supermartingale:
//! by Ville's inequality `P_H0(e-value ≥ 1/α ever) ≤ α`.
//!
//! **What it does not cover.** If both arms' error rate rises together during the canary, the
//! null above is false and the test may roll back: when both arms' error rate doubles over 30
//! minutes, in 93 % of runs at 100 requests/s per arm (20 % at 20 requests/s; growing by half,
//! 5-10 %). Use it beside a counts test, each at `α/2`, rolling back when either rejects, as a
//! plan's `stationary: true` on a counts analysis does; not instead of it. It gives no
//! confidence sequence (bounds 0 and `+∞`); the estimate is the canary's error rate over the
//! control's.

use serde::{Deserialize, Serialize};

use super::evidence::{Effect, Evidence, RunningP, check_alpha, check_share};
use super::mixture::log_sum_exp;
use super::restarts::{Combine, Restarts, log_e_with};
use crate::AnalysisError;

/// Number of levels in [`default_levels`].
pub const DEFAULT_LEVEL_COUNT: usize = 20;

/// Default rate ratios bet on: powers of 1.5 from 1.5 to 7.6.
pub const DEFAULT_RATIOS: [f64; 5] = [1.5, 2.25, 3.375, 5.0625, 7.593_75];

/// The default levels: [`DEFAULT_LEVEL_COUNT`] error rates spaced evenly on a log scale from
/// 0.01 % to 30 % (each about 1.5 times the one before).
#[allow(clippy::cast_precision_loss)]
pub fn default_levels() -> Vec<f64> {
    let (lo, hi) = (1e-4_f64.ln(), 0.3_f64.ln());
    let steps = (DEFAULT_LEVEL_COUNT - 1) as f64;
    (0..DEFAULT_LEVEL_COUNT)
        .map(|i| (lo + (hi - lo) * i as f64 / steps).exp())
        .collect()
}

/// Settings of the stationary counts test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationaryCountSettings {
    /// Significance level, in (0, 1). Default 0.05.
    pub alpha: f64,
    /// Levels `a`: error rates near which the bets look (module docs), each in (0, 1), at
    /// least one. Default [`default_levels`].
    pub levels: Vec<f64>,
    /// Rate ratios `r > 1` of the canary's error rate over the pooled one that are bet on, at
    /// least one. Default [`DEFAULT_RATIOS`].
    pub ratios: Vec<f64>,
    /// Run restarted copies for late onsets, one after every window (default `true`).
    pub restarts: bool,
}

impl Default for StationaryCountSettings {
    fn default() -> Self {
        StationaryCountSettings {
            alpha: 0.05,
            levels: default_levels(),
            ratios: DEFAULT_RATIOS.to_vec(),
            restarts: true,
        }
    }
}

/// Seed of the uniforms that break ties between equal outcomes.
const TIE_SEED: u64 = 0xE44_0A7E_5EED;
/// Seed of the uniforms that place a window's canary errors among its canary requests.
const ORDER_SEED: u64 = 0x0DE4_5EED_CAFE;

/// A uniform on (0, 1) fixed by `seed` and `index` alone.
#[allow(clippy::cast_precision_loss)]
fn uniform(seed: u64, index: u64) -> f64 {
    let bits = crate::SplitMix64::new(seed ^ index).next_u64() >> 11;
    (bits as f64 + 0.5) / (1u64 << 53) as f64
}

/// The canary's exceedances of each level and its requests, counted from some start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tally {
    exceedances: Vec<u64>,
    requests: u64,
}

/// The stationary counts test (module docs). Feed it one window at a time with
/// [`observe_window`](Self::observe_window). One-sided: it looks for a canary that fails more
/// often.
///
/// ```
/// use cutover_analysis::sequential::{StationaryCountSettings, StationaryCountTest};
/// let mut test = StationaryCountTest::new(StationaryCountSettings::default())?;
/// // Ten minutes at 1 % errors on both arms, 100 requests per second each ...
/// for _ in 0..60 {
///     test.observe_window(10, 1000, 10, 1000)?;
/// }
/// assert!(!test.evidence().rejected);
/// // ... then the canary fails twice as often.
/// for _ in 0..6 {
///     test.observe_window(10, 1000, 20, 1000)?;
/// }
/// assert!(test.evidence().rejected);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationaryCountTest {
    alpha: f64,
    levels: Vec<f64>,
    ratios: Vec<f64>,
    /// Requests and errors of both arms so far.
    pooled_requests: u64,
    pooled_errors: u64,
    control_requests: u64,
    control_errors: u64,
    canary_errors: u64,
    /// The canary's exceedances since the start.
    tally: Tally,
    /// Restarted copies, each holding the tally at its start.
    restarts: Option<Restarts<Tally>>,
    running: RunningP,
}

impl StationaryCountTest {
    /// A test with the given settings. Fails on an alpha outside (0, 1), no levels or ratios,
    /// a level outside (0, 1), a ratio not above 1, or no level and ratio whose product is
    /// below 1.
    pub fn new(settings: StationaryCountSettings) -> Result<Self, AnalysisError> {
        check_alpha(settings.alpha)?;
        if settings.levels.is_empty() || settings.ratios.is_empty() {
            return Err(AnalysisError::Invalid(
                "the stationary counts test needs at least one level and one ratio".into(),
            ));
        }
        for &a in &settings.levels {
            check_share("stationary counts level", a)?;
        }
        if let Some(r) = settings
            .ratios
            .iter()
            .find(|r| !(**r > 1.0 && r.is_finite()))
        {
            return Err(AnalysisError::Invalid(format!(
                "stationary counts ratios must be finite and above 1, got {r}"
            )));
        }
        let (lowest, smallest) = (
            settings
                .levels
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min),
            settings
                .ratios
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min),
        );
        if lowest * smallest >= 1.0 {
            return Err(AnalysisError::Invalid(format!(
                "no bet is possible: the lowest level {lowest} times the smallest ratio \
                 {smallest} is not below 1"
            )));
        }
        let mut levels = settings.levels;
        levels.sort_by(f64::total_cmp);
        levels.dedup();
        Ok(StationaryCountTest {
            alpha: settings.alpha,
            tally: Tally {
                exceedances: vec![0; levels.len()],
                requests: 0,
            },
            levels,
            ratios: settings.ratios,
            pooled_requests: 0,
            pooled_errors: 0,
            control_requests: 0,
            control_errors: 0,
            canary_errors: 0,
            restarts: settings.restarts.then(|| Restarts::new(Combine::Sum, 1.0)),
            running: RunningP::default(),
        })
    }

    /// Adds one window: errors and requests of each arm since the last call (increments, not
    /// totals), then updates the e-value and the p-value. O(canary requests + levels ×
    /// ratios × live restarts): each canary request is ranked, about 11 ns apiece in a release
    /// build (0.1 s for 10^7 canary requests in one window). Fails, changing nothing, when
    /// errors exceed requests or a total would overflow.
    pub fn observe_window(
        &mut self,
        control_errors: u64,
        control_requests: u64,
        canary_errors: u64,
        canary_requests: u64,
    ) -> Result<(), AnalysisError> {
        if control_errors > control_requests || canary_errors > canary_requests {
            return Err(AnalysisError::Invalid(format!(
                "errors exceed requests: control {control_errors} of {control_requests}, \
                 canary {canary_errors} of {canary_requests}"
            )));
        }
        let overflow = || AnalysisError::Invalid("request count overflows u64".into());
        let pooled = control_requests
            .checked_add(canary_requests)
            .and_then(|n| self.pooled_requests.checked_add(n))
            .ok_or_else(overflow)?;
        self.tally
            .requests
            .checked_add(canary_requests)
            .ok_or_else(overflow)?;
        self.control_requests += control_requests;
        self.control_errors += control_errors;
        self.canary_errors += canary_errors;
        self.pooled_requests += control_requests;
        self.pooled_errors += control_errors;
        let window = self.rank_canary(canary_errors, canary_requests);
        debug_assert_eq!(self.pooled_requests, pooled);
        add(&mut self.tally, &window);
        if let Some(restarts) = &mut self.restarts {
            for r in restarts.live_mut() {
                add(&mut r.component, &window);
                r.log_e = log_e(&self.levels, &self.ratios, &r.component);
            }
        }
        self.running.update_log_e(self.log_e(), self.alpha);
        if let Some(restarts) = &mut self.restarts {
            let levels = self.levels.len();
            let data = if canary_requests > 0 { 1.0 } else { 0.0 };
            restarts.after_window(data, || Tally {
                exceedances: vec![0; levels],
                requests: 0,
            });
        }
        Ok(())
    }

    /// Ranks the window's canary requests, in the order of the module docs, against all
    /// requests before them; they join the pool. Returns their exceedances of each level.
    #[allow(clippy::cast_precision_loss)]
    fn rank_canary(&mut self, errors: u64, requests: u64) -> Tally {
        let mut first_level = vec![0u64; self.levels.len() + 1];
        let top = self.levels.last().copied().unwrap_or(0.0);
        let mut errors_left = errors;
        for left in (1..=requests).rev() {
            let index = self.pooled_requests;
            let i = (index + 1) as f64;
            let error =
                uniform(ORDER_SEED, index) * left as f64 <= errors_left as f64 && errors_left > 0;
            let u = uniform(TIE_SEED, index);
            let p = if error {
                errors_left -= 1;
                self.pooled_errors += 1;
                u * self.pooled_errors as f64 / i
            } else {
                let below = self.pooled_errors as f64;
                (below + u * (i - below)) / i
            };
            self.pooled_requests += 1;
            if p <= top {
                first_level[self.levels.partition_point(|&a| a < p)] += 1;
            }
        }
        let mut exceedances = Vec::with_capacity(self.levels.len());
        let mut running = 0;
        for count in &first_level[..self.levels.len()] {
            running += count;
            exceedances.push(running);
        }
        Tally {
            exceedances,
            requests,
        }
    }

    /// ln of the combined e-value.
    fn log_e(&self) -> f64 {
        log_e_with(
            self.restarts.as_ref(),
            log_e(&self.levels, &self.ratios, &self.tally),
        )
    }

    /// The current evidence: p-value, log e-value, the canary's error rate over the control's
    /// as the estimate, and bounds 0 and `+∞` (no confidence sequence, module docs).
    #[allow(clippy::cast_precision_loss)]
    pub fn evidence(&self) -> Evidence {
        let canary = self.canary_errors as f64 / self.tally.requests as f64;
        let control = self.control_errors as f64 / self.control_requests as f64;
        Evidence {
            p_value: self.running.p_value,
            rejected: self.running.rejected,
            log_e_value: self.log_e(),
            effect: Effect::RateRatio,
            estimate: canary / control,
            lower: 0.0,
            upper: f64::INFINITY,
            control_n: self.control_requests,
            canary_n: self.tally.requests,
        }
    }
}

/// Adds a window's tally to a running one.
fn add(total: &mut Tally, window: &Tally) {
    for (t, w) in total.exceedances.iter_mut().zip(&window.exceedances) {
        *t += w;
    }
    total.requests += window.requests;
}

/// ln of the average over levels and ratios of the bets' products for a tally (module docs).
#[allow(clippy::cast_precision_loss)]
fn log_e(levels: &[f64], ratios: &[f64], tally: &Tally) -> f64 {
    let n = tally.requests as f64;
    let components = (levels.len() * ratios.len()) as f64;
    let terms = levels.iter().zip(&tally.exceedances).flat_map(|(&a, &x)| {
        let x = x as f64;
        ratios.iter().filter_map(move |&r| {
            let theta = r * a;
            (theta < 1.0).then(|| x * (theta / a).ln() + (n - x) * ((1.0 - theta) / (1.0 - a)).ln())
        })
    });
    log_sum_exp(terms) - components.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test() -> StationaryCountTest {
        StationaryCountTest::new(StationaryCountSettings::default()).expect("valid settings")
    }

    /// The one-sided counts test the stationary one is compared with.
    fn counts_test() -> super::super::CountTest {
        super::super::CountTest::new(
            0.5,
            super::super::CountSettings {
                alternative: crate::Alternative::Greater,
                ..Default::default()
            },
        )
        .expect("valid settings")
    }

    #[test]
    fn the_default_levels_span_the_documented_range() {
        let levels = default_levels();
        assert_eq!(levels.len(), DEFAULT_LEVEL_COUNT);
        assert!((levels[0] - 1e-4).abs() < 1e-12 && (levels[19] - 0.3).abs() < 1e-12);
        assert!(levels.windows(2).all(|w| (w[1] / w[0] - 1.52).abs() < 0.01));
    }

    #[test]
    fn bad_settings_and_inputs_are_refused_without_a_change() {
        for settings in [
            StationaryCountSettings {
                alpha: 1.0,
                ..Default::default()
            },
            StationaryCountSettings {
                levels: vec![],
                ..Default::default()
            },
            StationaryCountSettings {
                levels: vec![0.0],
                ..Default::default()
            },
            StationaryCountSettings {
                ratios: vec![1.0],
                ..Default::default()
            },
            StationaryCountSettings {
                levels: vec![0.5],
                ratios: vec![2.0],
                ..Default::default()
            },
        ] {
            assert!(StationaryCountTest::new(settings).is_err());
        }
        let mut t = test();
        t.observe_window(1, 100, 1, 100).expect("valid window");
        let before = t.clone();
        assert!(t.observe_window(5, 4, 0, 10).is_err());
        assert!(t.observe_window(0, 10, 11, 10).is_err());
        assert!(t.observe_window(0, u64::MAX, 0, 1).is_err());
        assert_eq!(t, before);
    }

    /// A window places exactly its errors among the canary's requests, and every canary
    /// error's p-value is below a level far above the error rate.
    #[test]
    fn a_window_places_exactly_its_errors() {
        let mut t = StationaryCountTest::new(StationaryCountSettings {
            levels: vec![0.5],
            ..Default::default()
        })
        .expect("valid settings");
        t.observe_window(3, 50, 7, 40).expect("valid window");
        assert_eq!(t.pooled_errors, 10);
        assert_eq!(t.pooled_requests, 90);
        assert_eq!(t.tally.requests, 40);
        let x = t.tally.exceedances[0];
        assert!((7..40).contains(&x), "{:?}", t.tally);
    }

    /// The p-values of canary requests are uniform when nothing differs: over many windows
    /// of a fixed pooled rate, the share of canary requests under each level is that level
    /// (within sampling error), so the bets have mean 1.
    #[test]
    #[allow(clippy::cast_precision_loss)]
    fn canary_p_values_are_uniform_under_the_null() {
        let mut t = StationaryCountTest::new(StationaryCountSettings {
            levels: vec![0.005, 0.01, 0.02, 0.5],
            restarts: false,
            ..Default::default()
        })
        .expect("valid settings");
        let mut rng = crate::SplitMix64::new(11);
        let draw = |rng: &mut crate::SplitMix64, n: u64| {
            (0..n).filter(|_| rng.uniform() <= 0.01).count() as u64
        };
        for _ in 0..400 {
            let (c, x) = (draw(&mut rng, 1000), draw(&mut rng, 1000));
            t.observe_window(c, 1000, x, 1000).expect("valid window");
        }
        let n = t.tally.requests as f64;
        for (a, &x) in t.levels.iter().zip(&t.tally.exceedances) {
            let share = x as f64 / n;
            let sd = (a * (1.0 - a) / n).sqrt();
            assert!((share - a).abs() < 5.0 * sd, "level {a}: share {share}");
        }
        assert!(!t.evidence().rejected);
    }

    /// A late regression is caught from the pooled rate: after 60 windows of 0.1 % errors on
    /// both arms (200 requests per window each), a canary at 0.5 % is rejected in a median of
    /// at most 90 % of the windows the counts test needs on the same data (20 seeded runs).
    #[test]
    #[allow(clippy::cast_precision_loss)]
    fn a_late_doubling_is_caught_sooner_than_by_the_counts_test() {
        let mut rng = crate::SplitMix64::new(2024);
        let mut draw = |n: u64, p: f64| (0..n).filter(|_| rng.uniform() <= p).count() as u64;
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..20 {
            let mut stationary = test();
            let mut counts = counts_test();
            let mut caught = [None, None];
            for w in 0..180 {
                let (c, x) = (
                    draw(200, 0.001),
                    draw(200, if w < 60 { 0.001 } else { 0.005 }),
                );
                stationary.observe_window(c, 200, x, 200).expect("window");
                counts.observe(c, x).expect("window");
                let rejected = [stationary.evidence().rejected, counts.evidence().rejected];
                for (slot, rejected) in caught.iter_mut().zip(rejected) {
                    if rejected && slot.is_none() {
                        *slot = Some(w);
                    }
                }
            }
            for (times, at) in times.iter_mut().zip(caught) {
                times.push(at.unwrap_or(180));
            }
        }
        let [mut fast, mut slow] = times;
        fast.sort_unstable();
        slow.sort_unstable();
        let (fast, slow) = (fast[10], slow[10]);
        assert!(
            fast >= 60,
            "no rejection before the onset in the median run"
        );
        assert!(
            (fast - 60) * 10 <= (slow - 60) * 9,
            "stationary {fast}, counts {slow} (windows)"
        );
    }

    /// The documented limitation: when both arms' error rate doubles over 30 minutes (1 % to
    /// 2 %, 100 requests/s per arm), the null of this test is false and it rolls back most of
    /// the time, while the counts test, which compares the arms within each window, does not.
    /// (100 replications in release: 93 % against 0 %; at 20 requests/s 20 % against 3 %;
    /// growing by half instead, 10 % and 5 % against 0-2 %.)
    #[test]
    #[allow(clippy::cast_precision_loss)]
    fn a_drift_common_to_both_arms_breaks_the_stationary_null_but_not_the_counts_test() {
        let (mut stationary, mut counts, reps) = (0, 0, 10);
        for r in 0..reps {
            let mut rng = crate::SplitMix64::new(1000 + r);
            let mut draw = |n: u64, p: f64| (0..n).filter(|_| rng.uniform() <= p).count() as u64;
            let mut s = test();
            let mut c = counts_test();
            for check in 0..180 {
                let p = 0.01 * (1.0 + f64::from(check) / 180.0);
                let (a, b) = (draw(1000, p), draw(1000, p));
                s.observe_window(a, 1000, b, 1000).expect("window");
                c.observe(a, b).expect("window");
            }
            stationary += usize::from(s.evidence().rejected);
            counts += usize::from(c.evidence().rejected);
        }
        assert!(stationary >= 7, "{stationary} of {reps}");
        assert!(counts <= 1, "{counts} of {reps}");
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut t = test();
        for w in 0..30 {
            t.observe_window(w % 3, 500, w % 5, 500).expect("window");
        }
        let json = serde_json::to_string(&t).expect("serialize");
        let mut back: StationaryCountTest = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, t);
        t.observe_window(4, 500, 9, 500).expect("window");
        back.observe_window(4, 500, 9, 500).expect("window");
        assert_eq!(back, t);
    }
}
