//! How long a sequential test needs at a given traffic: to **pass** (rule out a degradation
//! above the tolerance when the candidate is as good as stable) and to **reject** (roll back
//! when the candidate is worse by a given true effect).
//!
//! A sequential test that stays "undecided, going on" for half an hour is honest, but only
//! useful if one can tell beforehand that it will: at a 1 % error rate, 2,000 requests per arm
//! per minute and a tolerance of 1.2, the counts test needs about half an hour to rule out a
//! 20 % higher error rate, because that takes a few thousand error events. [`durations`]
//! answers the question for one's own traffic, fast enough for a plan linter (a few dozen
//! evaluations of the test, microseconds each).
//!
//! # How it is computed: the expected path
//!
//! The test itself (its own code: the e-value, the confidence sequence and the decision rule)
//! is fed the data it sees **on average** after `t` checks, in one window: `t` times the
//! expected events and requests per interval (counts), or the expected sample moments (means).
//! The smallest `t` at which it decides is found by doubling and bisection. Restarted copies
//! (see `restarts`) have not begun on one window, so the e-value is the one started with the
//! data, with its weight: restarts can only make the real test faster.
//!
//! The time this gives is about the **median** of what one observes. Reading the test at the
//! expected data is reading it at the median data (the statistics are nearly symmetric around
//! their mean), and a test that rejects at the median path by check `t` rejects by then in
//! about half of the runs or more, as a test may reject early and then stays rejected.
//! A seeded simulation in this crate's tests (`tests/durations.rs`) feeds the real tests random
//! traffic window by window: their median times were 0.65 to 1.0 times these numbers, and one
//! run in ten took up to about twice as long.
//!
//! Two tests have parts this cannot model from a single number, and the numbers are bounds:
//!
//! - **Distribution**: the effect is a CDF gap `sup (F_control − F_canary)` (a shift of the
//!   whole distribution); the time to reject is the band test's alone, with the band's share of
//!   alpha ([`BAND_SHARE`](super::BAND_SHARE) when the tail e-process runs beside it). The tail
//!   e-process rejects tail-only regressions much sooner than the band does (detection
//!   benchmark), which is not modelled: the time is an upper bound for those. To pass, the
//!   band's confidence sequence must reach down to the tolerance: `D⁺ + ε(n_c, α/2) + ε(n_t,
//!   α/2)`, with `D⁺` at its median under no difference, `sqrt(ln 2 · (1/n_c + 1/n_t) / 2)`
//!   (the one-sided Kolmogorov-Smirnov asymptotics).
//! - **Means**: pairs are formed from as many values of each arm as the smaller arm has in
//!   each window (as the engine pairs them), and the difference of a pair has variance
//!   `2·std_dev²`.
//!
//! ```
//! use std::time::Duration;
//! use cutover_analysis::sequential::{durations, CountSettings, Model, Traffic};
//!
//! // 1 % errors, 2,000 requests per arm per minute: how long to rule out a 20 % higher error
//! // rate, and to roll back a doubled one?
//! let model = Model::Counts { settings: CountSettings::default(), base_rate: 0.01, observed_share: true };
//! let traffic = Traffic::per_arm(2000.0, Duration::from_secs(60));
//! let d = durations(&model, &traffic, 1.2, 2.0, Duration::from_secs(86_400))?;
//! let (pass, reject) = (d.pass.unwrap(), d.reject.unwrap());
//! assert!(pass > Duration::from_secs(20 * 60) && pass < Duration::from_secs(60 * 60));
//! assert!(reject <= Duration::from_secs(3 * 60));
//! # Ok::<(), cutover_analysis::AnalysisError>(())
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::counts::{CountSettings, CountTest};
use super::distribution::{BAND_SHARE, DistributionSettings, DistributionTest, band_epsilon};
use super::evidence::{Decision, Effect};
use super::means::{MeanSettings, MeanTest, Moments};
use super::observed_share::ObservedShareCountTest;
use crate::{Alternative, AnalysisError};

/// The traffic a test sees: requests per interval of each arm, and the interval between two
/// checks (an analysis run's `interval`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Requests the control (stable) serves per interval, above 0.
    pub control_requests: f64,
    /// Requests the canary serves per interval, above 0.
    pub canary_requests: f64,
    /// Time between two checks, above 0.
    pub interval: Duration,
}

impl Traffic {
    /// The same number of requests per interval for each arm.
    pub fn per_arm(requests: f64, interval: Duration) -> Self {
        Traffic {
            control_requests: requests,
            canary_requests: requests,
            interval,
        }
    }
}

/// A sequential test and what its data look like, for [`durations`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Model {
    /// A counts test on events per request (errors): `base_rate` is the control's events per
    /// request (0.01 for 1 % errors). `observed_share` picks [`ObservedShareCountTest`] (each
    /// window weighed by its realised split, the engine's default) over [`CountTest`] (a fixed
    /// split, `canary_requests / (control_requests + canary_requests)`). Tolerance and effect
    /// are rate ratios canary / control (1.2: 20 % more events per request).
    Counts {
        /// The test's settings.
        settings: CountSettings,
        /// The control's events per request, in (0, 1).
        base_rate: f64,
        /// The observed-share test (true) or the fixed-split one (false).
        observed_share: bool,
    },
    /// The distribution test on per-request values: tolerance and effect are CDF gaps
    /// `sup (F_control − F_canary)` in (0, 1) (module docs for what is and is not modelled).
    Distribution {
        /// The test's settings.
        settings: DistributionSettings,
    },
    /// The means test on per-request values with standard deviation `std_dev` in each arm:
    /// tolerance and effect are differences of the means in the values' unit.
    Mean {
        /// The test's settings.
        settings: MeanSettings,
        /// The standard deviation of one request's value, above 0.
        std_dev: f64,
    },
}

/// What [`durations`] finds: the time of the first check at which the test decides on its
/// expected data (about the median time, module docs); `None` when it does not within the
/// horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// Until the confidence sequence rules out an effect above the tolerance, when the
    /// candidate is exactly as good as stable. The engine passes a step at the first check
    /// after both this and the step's own time.
    pub pass: Option<Duration>,
    /// Until the test rejects (rolls back) when the true effect is the one asked about.
    pub reject: Option<Duration>,
}

/// How long the test of `model` needs at `traffic` to pass at `tolerance` and to reject a true
/// `effect`, both on the test's effect scale (a rate ratio, a CDF gap, a mean difference), as
/// a plan's `tolerance` is; looking no further than `horizon` (module docs).
///
/// Fails on settings a test refuses, non-positive traffic, interval or horizon, a tolerance at
/// or below the effect's null value (1 for a ratio, 0 else), a non-finite effect, an event rate
/// that the effect would push above 1, or a non-positive standard deviation.
pub fn durations(
    model: &Model,
    traffic: &Traffic,
    tolerance: f64,
    effect: f64,
    horizon: Duration,
) -> Result<Durations, AnalysisError> {
    check_traffic(traffic, horizon)?;
    let null = model.effect().null_value();
    if !(tolerance > null && tolerance.is_finite()) {
        return Err(AnalysisError::Invalid(format!(
            "tolerance must be finite and above {null} (no difference), got {tolerance}"
        )));
    }
    if !effect.is_finite() {
        return Err(AnalysisError::Invalid(format!(
            "effect must be finite, got {effect}"
        )));
    }
    let checks = horizon.as_secs_f64() / traffic.interval.as_secs_f64();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let max = checks.floor().min(1e12) as u64;
    let (pass, reject) = match model {
        Model::Counts {
            settings,
            base_rate,
            observed_share,
        } => {
            let counts = Counts::new(*settings, *base_rate, *observed_share, traffic, effect)?;
            (
                first(max, |t| counts.passes(t, tolerance)),
                first(max, |t| counts.rejects(t, effect)),
            )
        }
        Model::Distribution { settings } => {
            DistributionTest::new(settings.clone())?;
            let band = Band::new(settings, traffic);
            (
                first(max, |t| band.passes(t, tolerance)),
                first(max, |t| band.rejects(t, effect)),
            )
        }
        Model::Mean { settings, std_dev } => {
            settings.validate()?;
            if !(*std_dev > 0.0 && std_dev.is_finite()) {
                return Err(AnalysisError::Invalid(format!(
                    "std_dev must be finite and above 0, got {std_dev}"
                )));
            }
            let means = Means {
                settings: *settings,
                pairs: traffic.control_requests.min(traffic.canary_requests),
                variance: 2.0 * std_dev * std_dev,
            };
            (
                first(max, |t| means.passes(t, tolerance)),
                first(max, |t| means.rejects(t, effect)),
            )
        }
    };
    let at = |t: u64| {
        #[allow(clippy::cast_precision_loss)]
        Duration::from_secs_f64(traffic.interval.as_secs_f64() * t as f64)
    };
    Ok(Durations {
        pass: pass.map(at),
        reject: reject.map(at),
    })
}

impl Model {
    /// The effect the model's tolerance and effect are about.
    fn effect(&self) -> Effect {
        match self {
            Model::Counts { .. } => Effect::RateRatio,
            Model::Distribution { .. } => Effect::CdfGap,
            Model::Mean { .. } => Effect::MeanDifference,
        }
    }
}

fn check_traffic(traffic: &Traffic, horizon: Duration) -> Result<(), AnalysisError> {
    for (name, requests) in [
        ("control_requests", traffic.control_requests),
        ("canary_requests", traffic.canary_requests),
    ] {
        if !(requests > 0.0 && requests.is_finite()) {
            return Err(AnalysisError::Invalid(format!(
                "{name} must be finite and above 0, got {requests}"
            )));
        }
    }
    if traffic.interval.is_zero() {
        return Err(AnalysisError::Invalid("interval must be above 0".into()));
    }
    if horizon < traffic.interval {
        return Err(AnalysisError::Invalid(format!(
            "horizon ({horizon:?}) must be at least one interval ({:?})",
            traffic.interval
        )));
    }
    Ok(())
}

/// The first `t` in `1..=max` at which `decided` holds, by doubling then bisection (the
/// decisions on the expected path switch once, from undecided to decided).
fn first(max: u64, decided: impl Fn(u64) -> bool) -> Option<u64> {
    if max == 0 {
        return None;
    }
    let (mut lo, mut hi) = (0u64, 1u64);
    while !decided(hi) {
        if hi == max {
            return None;
        }
        lo = hi;
        hi = hi.saturating_mul(2).min(max);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if decided(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// `t` intervals of `per_interval`, rounded to a count.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn total(t: u64, per_interval: f64) -> u64 {
    (t as f64 * per_interval).round() as u64
}

/// The counts tests on their expected data.
struct Counts {
    settings: CountSettings,
    base_rate: f64,
    observed_share: bool,
    control: f64,
    canary: f64,
}

impl Counts {
    fn new(
        settings: CountSettings,
        base_rate: f64,
        observed_share: bool,
        traffic: &Traffic,
        effect: f64,
    ) -> Result<Self, AnalysisError> {
        settings.validate()?;
        if !(base_rate > 0.0 && base_rate < 1.0) {
            return Err(AnalysisError::Invalid(format!(
                "base_rate must lie strictly between 0 and 1, got {base_rate}"
            )));
        }
        if !(effect > 0.0 && base_rate * effect <= 1.0) {
            return Err(AnalysisError::Invalid(format!(
                "effect must be a rate ratio above 0 that keeps the canary's rate at most 1 \
                 (base_rate {base_rate}), got {effect}"
            )));
        }
        Ok(Counts {
            settings,
            base_rate,
            observed_share,
            control: traffic.control_requests,
            canary: traffic.canary_requests,
        })
    }

    /// The evidence after `t` checks of expected data with the canary's rate `ratio` times
    /// the control's.
    fn evidence(&self, t: u64, ratio: f64) -> Option<super::Evidence> {
        let p = self.base_rate;
        let (events_c, events_t) = (
            total(t, self.control * p),
            total(t, self.canary * p * ratio),
        );
        let share = self.canary / (self.control + self.canary);
        if self.observed_share {
            let mut test = ObservedShareCountTest::new(share, self.settings).ok()?;
            let (requests_c, requests_t) = (total(t, self.control), total(t, self.canary));
            test.observe_window(events_c, events_t, requests_c, requests_t)
                .ok()?;
            Some(test.evidence())
        } else {
            let mut test = CountTest::new(share, self.settings).ok()?;
            test.observe(events_c, events_t).ok()?;
            Some(test.evidence())
        }
    }

    fn passes(&self, t: u64, tolerance: f64) -> bool {
        self.evidence(t, 1.0)
            .is_some_and(|e| e.decide(tolerance - 1.0) == Decision::RuledOut)
    }

    fn rejects(&self, t: u64, effect: f64) -> bool {
        self.evidence(t, effect).is_some_and(|e| e.rejected)
    }
}

/// The distribution test's band on its expected data.
struct Band {
    alpha: f64,
    /// The band's share of alpha.
    rejects_at: f64,
    alternative: Alternative,
    control: f64,
    canary: f64,
}

impl Band {
    fn new(settings: &DistributionSettings, traffic: &Traffic) -> Self {
        let share = if settings.tail_quantiles.is_empty() {
            1.0
        } else {
            BAND_SHARE
        };
        Band {
            alpha: settings.alpha,
            rejects_at: settings.alpha * share,
            alternative: settings.alternative,
            control: traffic.control_requests,
            canary: traffic.canary_requests,
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn sizes(&self, t: u64) -> (f64, f64) {
        (total(t, self.control) as f64, total(t, self.canary) as f64)
    }

    fn passes(&self, t: u64, tolerance: f64) -> bool {
        let (nc, nt) = self.sizes(t);
        if nc < 1.0 || nt < 1.0 {
            return false;
        }
        let eps = band_epsilon(nc, self.alpha / 2.0) + band_epsilon(nt, self.alpha / 2.0);
        let typical_gap = (std::f64::consts::LN_2 * (1.0 / nc + 1.0 / nt) / 2.0).sqrt();
        typical_gap + eps <= tolerance
    }

    fn rejects(&self, t: u64, gap: f64) -> bool {
        let (nc, nt) = self.sizes(t);
        self.alternative != Alternative::Less
            && super::distribution::band_p_value(gap, nc, nt) <= self.rejects_at
    }
}

/// The means test on its expected moments.
struct Means {
    settings: MeanSettings,
    /// Pairs per interval.
    pairs: f64,
    /// Variance of one pair's difference.
    variance: f64,
}

impl Means {
    fn evidence(&self, t: u64, mean: f64) -> Option<super::Evidence> {
        let moments = Moments::summary(total(t, self.pairs), mean, self.variance);
        MeanTest::with_moments(self.settings, moments)
            .ok()
            .map(|test| test.evidence())
    }

    fn passes(&self, t: u64, tolerance: f64) -> bool {
        self.evidence(t, 0.0)
            .is_some_and(|e| e.decide(tolerance) == Decision::RuledOut)
    }

    fn rejects(&self, t: u64, effect: f64) -> bool {
        self.evidence(t, effect)
            .is_some_and(|e| e.log_e_value >= -self.settings.alpha.ln())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_finds_the_switch_and_respects_the_horizon() {
        for switch in [1u64, 2, 3, 7, 64, 65, 1000] {
            assert_eq!(first(5000, |t| t >= switch), Some(switch));
        }
        assert_eq!(first(999, |t| t >= 1000), None);
        assert_eq!(first(1000, |t| t >= 1000), Some(1000));
        assert_eq!(first(0, |_| true), None);
    }
}
