//! Analysis as written in plans: runs (how often, how many, which limits) and templates (what
//! to measure).

use std::time::Duration;

use std::collections::BTreeMap;

use cutover_analysis::kayenta::{CanaryConfig, JudgeSettings, ScoreThresholds};
use cutover_analysis::{Alternative, Condition, RunLimits};
use serde::{Deserialize, Serialize};

use crate::time::serde_duration;

fn one_minute() -> Duration {
    Duration::from_mins(1)
}
fn five_minutes() -> Duration {
    Duration::from_mins(5)
}
fn four() -> u32 {
    4
}
fn one() -> u64 {
    1
}
fn alpha() -> f64 {
    0.05
}

/// One run of an analysis: which analysis, how often, how many measurements, and how many bad
/// ones are tolerated (Argo Rollouts semantics, see [`RunLimits`]).
///
/// ```yaml
/// { name: error-rate, interval: 1m, count: 5, failure_limit: 1, on_inconclusive: abort }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisRun {
    /// The analysis: a template in the plan's `analyses`, or one registered with
    /// [`RolloutBuilder::analysis`](crate::RolloutBuilder::analysis).
    pub name: String,
    /// Time between measurements.
    #[serde(default = "one_minute", with = "serde_duration")]
    pub interval: Duration,
    /// Time before the first measurement.
    #[serde(default, with = "serde_duration")]
    pub initial_delay: Duration,
    /// Measurements for the run to succeed. Defaults to 1 in steps; background analysis without
    /// a count runs until promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Failed measurements tolerated; the run fails on one more. `-1` never fails.
    #[serde(default)]
    pub failure_limit: i32,
    /// Inconclusive measurements tolerated; the run is inconclusive on one more.
    #[serde(default)]
    pub inconclusive_limit: u32,
    /// Consecutive measurement errors tolerated; the run ends in error on one more.
    #[serde(default = "four")]
    pub consecutive_error_limit: u32,
    /// Argo's `consecutiveSuccessLimit`: the run succeeds once this many measurements in a row
    /// passed; `0` (the default) turns it off. See
    /// [`RunLimits::consecutive_success_limit`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_success_limit: u32,
    /// What an inconclusive run does.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
    /// Sequential analyses only: the most measurements the run may take while its test stays
    /// undecided, `count` included. Default: twice `count`. Once they are used up, the run is
    /// inconclusive and `on_inconclusive` applies. See [`SequentialTemplate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
}

impl AnalysisRun {
    /// A run of `name` with Argo's defaults: one measurement a minute, no failure tolerated.
    pub fn new(name: impl Into<String>) -> Self {
        AnalysisRun {
            name: name.into(),
            interval: one_minute(),
            initial_delay: Duration::ZERO,
            count: None,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: four(),
            consecutive_success_limit: 0,
            on_inconclusive: OnInconclusive::default(),
            max_count: None,
        }
    }

    /// Sets the most measurements a sequential analysis may take (see
    /// [`max_count`](Self::max_count)).
    pub fn with_max_count(mut self, max_count: u32) -> Self {
        self.max_count = Some(max_count);
        self
    }

    /// Sets the number of measurements.
    pub fn with_count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// Sets the time between measurements.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets what an inconclusive run does.
    pub fn with_on_inconclusive(mut self, action: OnInconclusive) -> Self {
        self.on_inconclusive = action;
        self
    }

    /// Sets the failure limit.
    pub fn with_failure_limit(mut self, limit: i32) -> Self {
        self.failure_limit = limit;
        self
    }

    /// The limits of this run; `default_count` applies when no count is set.
    pub fn limits(&self, default_count: Option<u32>) -> RunLimits {
        RunLimits {
            count: self.count.or(default_count),
            failure_limit: self.failure_limit,
            inconclusive_limit: self.inconclusive_limit,
            consecutive_error_limit: self.consecutive_error_limit,
            consecutive_success_limit: self.consecutive_success_limit,
        }
    }

    /// Sets Argo's `consecutiveSuccessLimit`.
    pub fn with_consecutive_success_limit(mut self, limit: u32) -> Self {
        self.consecutive_success_limit = limit;
        self
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// What happens when an analysis run is inconclusive.
///
/// ```yaml
/// on_inconclusive: pause                                  # default: wait for a person
/// on_inconclusive: abort                                  # roll back
/// on_inconclusive: { extend: { times: 2, then: abort } }  # run again, up to twice
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OnInconclusive {
    /// Pause for a person: resume or promote accepts the step, abort rolls back.
    #[default]
    Pause,
    /// Roll back.
    Abort,
    /// Run the analysis again from scratch, up to `times` more times; then do `then`.
    Extend {
        /// Extra runs allowed.
        times: u32,
        /// What to do when the extra runs are used up and still inconclusive.
        then: AfterExtensions,
    },
}

/// What an inconclusive analysis does once its extensions are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterExtensions {
    /// Pause for a person.
    Pause,
    /// Roll back.
    Abort,
}

/// What an analysis measures, defined in the plan. Analyses can also be written in Rust and
/// registered with the builder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AnalysisTemplate {
    /// Bounds on metric values (Argo / Flagger style).
    Threshold(ThresholdTemplate),
    /// A comparison of two rates between stable and candidate (A/B tests).
    Proportions(ProportionsTemplate),
    /// A Kayenta-compatible canary judge: stable (control) against candidate (experiment).
    Judge(JudgeTemplate),
    /// Metrics with Argo Rollouts-style success and failure conditions.
    Conditions(ConditionsTemplate),
    /// An anytime-valid sequential test of candidate against stable: rolls back at the first
    /// rejection, passes only on enough data.
    Sequential(SequentialTemplate),
}

/// Bounds on metric values; every metric must be within its bounds for a measurement to pass.
///
/// ```yaml
/// threshold:
///   metrics:
///     - { name: error-rate, source: proxy, query: errors, max: 0.01, min_samples: 100 }
///     - { name: p99, source: prom, query: 'histogram_quantile(0.99, ...)', aggregate: max, max: 0.25 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdTemplate {
    /// The metrics, all of which must pass.
    pub metrics: Vec<ThresholdMetric>,
}

/// One bounded metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdMetric {
    /// The metric's name in records.
    pub name: String,
    /// The metric source, as registered with
    /// [`RolloutBuilder::metric_source`](crate::RolloutBuilder::metric_source).
    pub source: String,
    /// The source-specific query.
    pub query: String,
    /// Which revision's values are checked.
    #[serde(default)]
    pub revision: Target,
    /// The window the source aggregates over.
    #[serde(default = "five_minutes", with = "serde_duration")]
    pub window: Duration,
    /// How values are reduced to one number (counts always become events / total).
    #[serde(default)]
    pub aggregate: Aggregate,
    /// The value must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The value must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Fewer samples (values, or total count) than this is inconclusive, never a pass.
    #[serde(default = "one")]
    pub min_samples: u64,
}

impl ThresholdMetric {
    /// A metric from `source` with a maximum, checked on the candidate over 5 minutes.
    pub fn at_most(
        name: impl Into<String>,
        source: impl Into<String>,
        query: impl Into<String>,
        max: f64,
    ) -> Self {
        ThresholdMetric {
            name: name.into(),
            source: source.into(),
            query: query.into(),
            revision: Target::Candidate,
            window: five_minutes(),
            aggregate: Aggregate::Mean,
            min: None,
            max: Some(max),
            min_samples: one(),
        }
    }
}

/// Which revision a metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The revision being rolled out.
    #[default]
    Candidate,
    /// The current stable revision.
    Stable,
}

/// How a metric's values are reduced to one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Arithmetic mean.
    #[default]
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Last value.
    Last,
    /// Sum of values.
    Sum,
    /// Median (R-7 quantile).
    P50,
    /// 90th percentile (R-7).
    P90,
    /// 95th percentile (R-7).
    P95,
    /// 99th percentile (R-7).
    P99,
}

/// A comparison of the rate of an event (errors, conversions) between stable and candidate,
/// with a two-proportion z-test. The source must return counts.
///
/// ```yaml
/// proportions: { source: proxy, query: checkout_conversions, higher_is_better: true, alpha: 0.05 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProportionsTemplate {
    /// The metric source.
    pub source: String,
    /// The source-specific query; it must return [`Samples::Counts`](crate::Samples::Counts).
    pub query: String,
    /// The window the source counts over. Defaults to the time since the test began.
    #[serde(
        default,
        with = "serde_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// Whether a higher rate is better (conversions) or worse (errors, the default).
    #[serde(default)]
    pub higher_is_better: bool,
    /// Significance level: a winner is named when the p-value is below it.
    #[serde(default = "alpha")]
    pub alpha: f64,
    /// Fewer requests than this in either revision is inconclusive.
    #[serde(default = "one")]
    pub min_samples: u64,
}

/// A Kayenta-compatible judge (`NetflixACAJudge-v1.0`): each metric of a Kayenta canary config
/// is queried for stable (control) and candidate (experiment) over `window`, classified with the
/// Mann-Whitney interval and scored by group weight. Score ≥ pass is `Pass`, ≥ marginal is
/// `Inconclusive`, below is `Fail`. See [`cutover_analysis::kayenta`].
///
/// `config` is Kayenta's canary-config object as is (camelCase keys; JSON is valid YAML), and
/// `queries` says where each of its metrics comes from.
///
/// ```yaml
/// judge:
///   window: 10m
///   queries:
///     latency: { source: prom, query: 'histogram_quantile(0.99, ...)' }
///   config:
///     metrics:
///       - name: latency
///         groups: [perf]
///         analysisConfigurations: { canary: { direction: increase, critical: true } }
///     classifier: { groupWeights: { perf: 100 }, scoreThresholds: { pass: 95, marginal: 75 } }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeTemplate {
    /// The Kayenta canary config (metrics, their judge settings, group weights).
    pub config: CanaryConfig,
    /// Where each metric of `config` comes from, by metric name.
    pub queries: BTreeMap<String, JudgeQuery>,
    /// The window both revisions are queried over.
    #[serde(default = "five_minutes", with = "serde_duration")]
    pub window: Duration,
    /// Score thresholds; default: the config's `classifier.scoreThresholds`, else 95 / 75.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<ScoreThresholds>,
    /// Tolerance and confidence level; default Kayenta's hard-coded 0.25 and 0.98.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<JudgeSettings>,
}

impl JudgeTemplate {
    /// The thresholds that apply.
    pub fn effective_thresholds(&self) -> ScoreThresholds {
        self.thresholds
            .or(self.config.classifier.score_thresholds)
            .unwrap_or_default()
    }
}

/// Where a judged metric's values come from. The source must return values
/// ([`Samples::Values`](crate::Samples::Values)), one per observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeQuery {
    /// The metric source.
    pub source: String,
    /// The source-specific query.
    pub query: String,
}

/// Metrics checked with Argo Rollouts-style conditions. Each measurement's phase follows
/// Argo's rules: with both conditions, failure wins, then success, else inconclusive; with only
/// one, its opposite is the other outcome. See [`Condition`] for the expression language.
///
/// ```yaml
/// conditions:
///   metrics:
///     - name: error-rate
///       source: prom
///       query: 'sum(rate(errors[5m])) / sum(rate(requests[5m]))'
///       success_condition: 'result[0] < 0.01'
///       failure_condition: 'result[0] >= 0.05 || isNaN(result)'
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionsTemplate {
    /// The metrics; the measurement fails if any fails.
    pub metrics: Vec<ConditionMetric>,
}

/// One metric with conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionMetric {
    /// The metric's name in records.
    pub name: String,
    /// The metric source.
    pub source: String,
    /// The source-specific query.
    pub query: String,
    /// Which revision's values are checked.
    #[serde(default)]
    pub revision: Target,
    /// The window the source aggregates over.
    #[serde(default = "five_minutes", with = "serde_duration")]
    pub window: Duration,
    /// How values become `result` (counts always become events / total). `result[i]` and
    /// `len(result)` see the raw values.
    #[serde(default)]
    pub aggregate: Aggregate,
    /// The measurement passes when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<Condition>,
    /// The measurement fails when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<Condition>,
}

/// Which sequential test a [`SequentialTemplate`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequentialKind {
    /// Event rates (errors per request): the query returns
    /// [`Samples::Counts`](crate::Samples::Counts) per revision. Dirichlet-multinomial
    /// e-process on which arm each event came from; the effect is the per-request rate ratio
    /// canary / control.
    Counts,
    /// Distributions of per-request values (latencies): the query returns
    /// [`Samples::Values`](crate::Samples::Values), one per request. Time-uniform CDF-band test
    /// of stochastic order, which also catches tail-only regressions; the effect is the largest
    /// CDF gap `F_control(x) - F_canary(x)`.
    Distribution,
    /// Means of per-request values: the query returns values, one per request. mSPRT with a
    /// normal mixture; the effect is canary mean minus control mean.
    Mean,
}

impl SequentialKind {
    /// The name used in plans: `counts`, `distribution`, `mean`.
    pub fn name(self) -> &'static str {
        match self {
            SequentialKind::Counts => "counts",
            SequentialKind::Distribution => "distribution",
            SequentialKind::Mean => "mean",
        }
    }

    /// The effect the tolerance is about, in words.
    pub fn effect(self) -> &'static str {
        match self {
            SequentialKind::Counts => "rate ratio",
            SequentialKind::Distribution => "CDF gap",
            SequentialKind::Mean => "mean difference",
        }
    }
}

/// An anytime-valid sequential test of the candidate (canary) against stable (control),
/// checked after every measurement without inflating false rollbacks (see
/// [`cutover_analysis::sequential`]).
///
/// Each measurement queries both revisions for the data since the previous measurement (the
/// window is the time since then, never the whole run) and feeds it to the test. Then:
///
/// - **Fail** (roll back) at the first rejection: the anytime-valid p-value reached `alpha`.
/// - **Pass** only when the step's time is up (`count` × `interval` since the data began)
///   *and* the `1 - alpha` confidence sequence rules out a degradation larger than
///   `tolerance`.
/// - Otherwise **inconclusive, and the run goes on**, measurement by measurement, up to the
///   run's [`max_count`](AnalysisRun::max_count) (default: twice `count`); then the run is
///   inconclusive and its `on_inconclusive` applies (pause, abort, or extend: another
///   `max_count` measurements of the same test). A window without data is never a pass.
///
/// The run's `failure_limit`, `inconclusive_limit` and `consecutive_success_limit` do not
/// apply (they must be left at 0); `consecutive_error_limit` does. The first measurement is
/// one `interval` after the run's `initial_delay`, and data from before it is not used. The
/// test's state is saved with the rollout, so a resumed rollout carries on with the same test.
///
/// ```yaml
/// analyses:
///   errors:            # 5xx per request; rolled back when v2's rate is higher
///     sequential: { test: counts, source: proxy, query: error_rate, tolerance: 1.2 }
///   latency:           # per-request latencies; catches tail-only regressions too
///     sequential: { test: distribution, source: proxy, query: latency, tolerance: 0.05 }
///   latency-mean:      # per-request latencies; tolerance in the metric's unit (seconds)
///     sequential: { test: mean, source: proxy, query: latency, tolerance: 0.01, mixture_width: 0.2 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequentialTemplate {
    /// Which test.
    pub test: SequentialKind,
    /// The metric source.
    pub source: String,
    /// The source-specific query, asked for both revisions over the time since the previous
    /// measurement: counts for `counts`, one value per request otherwise.
    pub query: String,
    /// Significance level: the chance of rolling back a candidate that is no worse, however
    /// often it is checked. Also sets the confidence sequence's level, `1 - alpha`.
    #[serde(default = "alpha")]
    pub alpha: f64,
    /// Which difference rejects: `greater` (the default: the candidate's values or rates are
    /// larger, that is worse) or `two-sided` (a difference either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative: Option<Alternative>,
    /// The largest degradation that may pass, on the effect's own scale: a rate ratio for
    /// `counts` (above 1; default 1.2, at most 20 % more events per request), a CDF gap for
    /// `distribution` (between 0 and 1; default 0.05), a mean difference in the metric's unit
    /// for `mean` (above 0; required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// `counts` only: the Dirichlet prior's concentration (default: the statistics crate's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_strength: Option<f64>,
    /// `counts` only: the candidate's fixed share of requests (the configured split, between 0
    /// and 1). Unset (the default), each window uses the share of requests the candidate
    /// actually got in it, which stays valid when the split drifts or changes between steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_share: Option<f64>,
    /// `mean` only: the mixture width `tau` of the mSPRT, in standard deviations of the
    /// per-request difference (the test estimates the variance and is scale-free; default:
    /// the statistics crate's, 0.13). Choose it near the smallest difference worth detecting,
    /// relative to the spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixture_width: Option<f64>,
    /// Whether the test also runs copies of itself started later, so a regression that begins
    /// mid-step (a cache empties, a batch job starts) is not diluted by the data from before
    /// it: they roll back a late regression several times sooner at high traffic, and cost a
    /// regression present from the start about 15 % more time. Default `true`. The false
    /// rollback rate stays at most `alpha` either way (see
    /// [`cutover_analysis::sequential`], "restarts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<bool>,
    /// `distribution` and `counts`: also run a test that compares the candidate with all the
    /// data seen so far, not only with the same window's stable data, so a regression that
    /// begins late is caught sooner, but that assumes the metric does not drift for both arms
    /// during the canary. Default `false`; see docs/analysis.md.
    ///
    /// - `distribution`: the exceedance test
    ///   ([`cutover_analysis::sequential::ExceedanceTest`]): latency and tail regressions that
    ///   begin late are caught about twice as soon; a 5 % drift of both arms over 30 minutes
    ///   rolls back 43 % of healthy canaries.
    /// - `counts`: the stationary counts test
    ///   ([`cutover_analysis::sequential::StationaryCountTest`]) beside the counts test, each
    ///   at `alpha / 2` (rolled back when either rejects): error regressions that begin at
    ///   minute 10 or 20 are caught in 1.3-2.4x the time of the test that knows the onset at
    ///   20-100 requests/s per arm, against 2.3-3.5x. An error rate of both arms that grows by
    ///   half over 30 minutes rolls back 5-10 % of healthy canaries, one that doubles 20-93 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stationary: Option<bool>,
}

impl SequentialTemplate {
    fn new(test: SequentialKind, source: impl Into<String>, query: impl Into<String>) -> Self {
        SequentialTemplate {
            test,
            source: source.into(),
            query: query.into(),
            alpha: alpha(),
            alternative: None,
            tolerance: None,
            prior_strength: None,
            canary_share: None,
            mixture_width: None,
            restarts: None,
            stationary: None,
        }
    }

    /// A counts test (event rates, for example errors per request) of `query` from `source`.
    pub fn counts(source: impl Into<String>, query: impl Into<String>) -> Self {
        Self::new(SequentialKind::Counts, source, query)
    }

    /// A distribution test of per-request values (latencies) of `query` from `source`.
    pub fn distribution(source: impl Into<String>, query: impl Into<String>) -> Self {
        Self::new(SequentialKind::Distribution, source, query)
    }

    /// A mean test (mSPRT) of per-request values of `query` from `source`; a mean test needs
    /// a [`tolerance`](Self::with_tolerance).
    pub fn mean(source: impl Into<String>, query: impl Into<String>) -> Self {
        Self::new(SequentialKind::Mean, source, query)
    }

    /// Sets the significance level.
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets the alternative (`Greater`, the default, or `TwoSided`).
    pub fn with_alternative(mut self, alternative: Alternative) -> Self {
        self.alternative = Some(alternative);
        self
    }

    /// Sets the largest degradation that may pass, on the effect's scale.
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Sets the prior strength of a counts test.
    pub fn with_prior_strength(mut self, strength: f64) -> Self {
        self.prior_strength = Some(strength);
        self
    }

    /// Fixes the candidate's share of requests of a counts test (the configured split).
    pub fn with_canary_share(mut self, share: f64) -> Self {
        self.canary_share = Some(share);
        self
    }

    /// Sets the mixture width of a mean test.
    pub fn with_mixture_width(mut self, tau: f64) -> Self {
        self.mixture_width = Some(tau);
        self
    }

    /// Turns the restarted copies of the test for late regressions on or off (default on).
    pub fn with_restarts(mut self, restarts: bool) -> Self {
        self.restarts = Some(restarts);
        self
    }

    /// Turns the exceedance test of a distribution test, or the stationary counts test of a
    /// counts test, on or off (default off): only for metrics that do not drift during the
    /// canary (see [`Self::stationary`]).
    pub fn with_stationary(mut self, stationary: bool) -> Self {
        self.stationary = Some(stationary);
        self
    }

    /// The alternative that applies: the one set, else `Greater` (candidate worse only).
    pub fn effective_alternative(&self) -> Alternative {
        self.alternative.unwrap_or(Alternative::Greater)
    }

    /// The tolerance that applies: the one set, else 1.2 for counts and 0.05 for
    /// distributions. `None` for a mean test without one (the plan is then invalid).
    pub fn effective_tolerance(&self) -> Option<f64> {
        self.tolerance.or(match self.test {
            SequentialKind::Counts => Some(1.2),
            SequentialKind::Distribution => Some(0.05),
            SequentialKind::Mean => None,
        })
    }
}
