//! Anytime-valid sequential tests: check after every request, stop whenever, and the false
//! rollback rate stays at most α.
//!
//! Repeating a fixed-sample test at every check (Kayenta judged on a growing window, a
//! threshold every minute) inflates the false-rollback rate to 30-40 % over a 30-minute canary
//! (ANALYSIS.md §5.4). The tests here are built on nonnegative (super)martingales under the
//! null hypothesis (e-processes) or on time-uniform confidence bands, so by Ville's inequality
//! `P_H0(p ≤ α at any time) ≤ α` however often they are looked at.
//!
//! | test | data | effect (confidence sequence) | module docs |
//! |---|---|---|---|
//! | [`CountTest`] | event counts (errors), fixed split | per-request rate ratio canary / control | Dirichlet-multinomial e-process, two-sided \[V\] and one-sided \[D\] |
//! | [`ObservedShareCountTest`] | events and requests per window | per-request rate ratio | the same with the realised share per window \[D\] |
//! | [`StationaryCountTest`] | events and requests per window, stationary | canary's error rate / control's (no confidence sequence) | conformal ranks of error indicators + rate-ratio bets, with restarts \[D\] |
//! | [`DistributionTest`] | values (latency) or bucket counts | CDF gap `sup (F_control − F_canary)` | time-uniform CDF band \[U\]/\[D\] + tail exceedance e-process \[D\] |
//! | [`ExceedanceTest`] | values (latency), stationary | canary's exceedance rate of the running quantiles / level | conformal ranks + one-sided exceedance e-process, with restarts \[D\] |
//! | [`MeanTest`] | values, paired in arrival order | canary mean − control mean | mSPRT \[V\] with known or plug-in variance, scale-invariant t-mixture (default) \[D\], one-sided \[D\] |
//!
//! Tags: \[V\] checked against the cited source or oracle, \[D\] derived here (standard
//! reasoning, checked by simulation), \[U\] not verified from the primary text.
//!
//! Every test reports an [`Evidence`] (anytime-valid p-value, sticky rejection, log e-value,
//! estimate and confidence sequence), and [`Evidence::decide`] turns it into a [`Decision`]
//! against a tolerance. `Greater` always means "the canary's value is larger", i.e. worse for
//! errors and latency. All state is `Serialize + Deserialize`, deterministic and O(1) (counts,
//! means) or O(bins) (distribution) per check.
//!
//! ```
//! use cutover_analysis::Alternative;
//! use cutover_analysis::sequential::{CountSettings, CountTest, Decision};
//!
//! let settings = CountSettings { alternative: Alternative::Greater, ..CountSettings::default() };
//! let mut errors = CountTest::new(0.1, settings)?; // canary gets 10 % of the traffic
//! errors.observe(90, 9)?; // errors since the last check
//! assert_eq!(errors.evidence().decide(1.0), Decision::Undecided);
//! errors.observe(90, 60)?;
//! assert_eq!(errors.evidence().decide(1.0), Decision::Reject);
//! # Ok::<(), cutover_analysis::AnalysisError>(())
//! ```

mod buckets;
mod counts;
mod distribution;
mod durations;
mod evidence;
mod exceedance;
mod means;
mod mixture;
mod observed_share;
mod restarts;
mod stationary_counts;

pub use self::buckets::default_edges;
pub use self::counts::{
    CountSettings, CountTest, DEFAULT_PRIOR_STRENGTH, log_bayes_factor, log_bayes_factor_greater,
};
pub use self::distribution::{
    Arm, BAND_SHARE, DEFAULT_TAIL_PRIOR_STRENGTH, DEFAULT_TAIL_QUANTILES, DistributionSettings,
    DistributionTest, band_epsilon,
};
pub use self::durations::{Durations, Model, Traffic, durations};
pub use self::evidence::{Decision, Effect, Evidence};
pub use self::exceedance::{
    DEFAULT_EXCEEDANCE_PRIOR_STRENGTH, DEFAULT_EXCEEDANCE_QUANTILES, ExceedanceSettings,
    ExceedanceTest, RESTART_SPACING, SHIFT_PRIOR_SCALE, TAIL_SHARES, TAIL_SHIFTS,
};
pub use self::means::{
    DEFAULT_STANDARDIZED_TAU, MeanSettings, MeanTest, PLUG_IN_MIN_PAIRS, Variance,
    msprt_log_lambda, msprt_log_lambda_greater, t_mixture_log_bf,
};
pub use self::observed_share::ObservedShareCountTest;
pub use self::restarts::{BASE_WEIGHT, HORIZON, MAX_LIVE};
pub use self::stationary_counts::{
    DEFAULT_LEVEL_COUNT, DEFAULT_RATIOS, StationaryCountSettings, StationaryCountTest,
    default_levels,
};
