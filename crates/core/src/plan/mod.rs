//! Plans: a strategy with its analyses and timing, built in Rust or read from YAML or JSON.

mod analysis;
mod strategy;
mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use self::analysis::{
    AfterExtensions, Aggregate, AnalysisRun, AnalysisTemplate, ConditionMetric, ConditionsTemplate,
    JudgeQuery, JudgeTemplate, OnInconclusive, ProportionsTemplate, SequentialKind,
    SequentialTemplate, Target, ThresholdMetric, ThresholdTemplate,
};
pub use self::strategy::{
    AbTest, AutoPromotion, BackgroundAnalysis, BlueGreen, Canary, CanaryStep, Pause, Quantity,
    Rolling, Scale, Strategy,
};
use crate::RetryPolicy;
use crate::time::serde_duration;

fn ten_minutes() -> Duration {
    Duration::from_mins(10)
}
fn five_seconds() -> Duration {
    Duration::from_secs(5)
}
fn five_minutes() -> Duration {
    Duration::from_mins(5)
}

/// Why a plan was rejected. Every variant names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The text is not valid YAML or JSON.
    #[error("plan is not valid {format}: {message}")]
    Syntax {
        /// "YAML" or "JSON".
        format: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field has the wrong type, an unknown name, or a value out of range.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where, like `strategy.canary.steps[2].set_weight`.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl PlanError {
    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        PlanError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The path of the field at fault, if the error is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            PlanError::Invalid { path, .. } => Some(path),
            PlanError::Syntax { .. } => None,
        }
    }
}

/// Everything a rollout needs to know that is not a provider: the strategy, the analyses it
/// refers to, deadlines and retries.
///
/// ```
/// use cutover_core::Plan;
///
/// let plan = Plan::from_yaml(r#"
/// strategy:
///   canary:
///     steps:
///       - set_weight: 10
///       - pause: { duration: 5m }
///       - set_weight: 50
///       - analysis: { name: error-rate, count: 3, interval: 1m }
/// analyses:
///   error-rate:
///     threshold:
///       metrics:
///         - { name: errors, source: proxy, query: error_ratio, max: 0.01 }
/// progress_deadline: 10m
/// "#)?;
/// assert_eq!(plan.strategy.kind(), "canary");
///
/// let err = Plan::from_yaml("strategy: { canary: { steps: [ { set_weight: 150 } ] } }").unwrap_err();
/// assert_eq!(err.path(), Some("strategy.canary.steps[0].set_weight"));
/// # Ok::<(), cutover_core::PlanError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// How traffic or replicas move.
    pub strategy: Strategy,
    /// Analyses defined in the plan, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub analyses: BTreeMap<String, AnalysisTemplate>,
    /// The longest a step may wait on the world (a split to apply, replicas to become ready, a
    /// health check to pass) before the rollout is rolled back. Pauses and analysis have their
    /// own durations and are not subject to it.
    #[serde(default = "ten_minutes", with = "serde_duration")]
    pub progress_deadline: Duration,
    /// How often health and replicas are checked while waiting for them.
    #[serde(default = "five_seconds", with = "serde_duration")]
    pub poll_interval: Duration,
    /// How long after promotion contract migrations wait before they run.
    #[serde(default = "five_minutes", with = "serde_duration")]
    pub bake_time: Duration,
    /// Retries of provider calls.
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl Plan {
    /// A plan for `strategy` with default timing and no analyses.
    pub fn new(strategy: impl Into<Strategy>) -> Self {
        Plan {
            strategy: strategy.into(),
            analyses: BTreeMap::new(),
            progress_deadline: ten_minutes(),
            poll_interval: five_seconds(),
            bake_time: five_minutes(),
            retry: RetryPolicy::default(),
        }
    }

    /// Adds an analysis template.
    pub fn with_analysis(mut self, name: impl Into<String>, template: AnalysisTemplate) -> Self {
        self.analyses.insert(name.into(), template);
        self
    }

    /// Sets the progress deadline.
    pub fn with_progress_deadline(mut self, deadline: Duration) -> Self {
        self.progress_deadline = deadline;
        self
    }

    /// Sets the bake time before contract migrations.
    pub fn with_bake_time(mut self, bake_time: Duration) -> Self {
        self.bake_time = bake_time;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Reads and checks a plan written in YAML.
    pub fn from_yaml(text: &str) -> Result<Self, PlanError> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| PlanError::Syntax {
                format: "YAML",
                message: e.to_string(),
            })?;
        Self::from_value(value)
    }

    /// Reads and checks a plan written in JSON.
    pub fn from_json(text: &str) -> Result<Self, PlanError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let plan: Plan = serde_path_to_error::deserialize(&mut de).map_err(|e| path_error(&e))?;
        de.end().map_err(|e| PlanError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?;
        plan.validate()?;
        Ok(plan)
    }

    fn from_value(value: serde_json::Value) -> Result<Self, PlanError> {
        let plan: Plan = serde_path_to_error::deserialize(value).map_err(|e| path_error(&e))?;
        plan.validate()?;
        Ok(plan)
    }

    /// The plan as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks everything that can be checked without the providers: ranges, references
    /// between steps, analysis templates. [`Rollout::builder`](crate::Rollout::builder) runs it
    /// again together with the provider checks.
    pub fn validate(&self) -> Result<(), PlanError> {
        validate::plan(self)
    }

    /// Every problem [`validate`](Self::validate) finds, not only the first: at most one per
    /// field, step, metric or analysis template, in the order `validate` checks them. Empty
    /// when the plan is valid. For linters.
    ///
    /// ```
    /// use cutover_core::Plan;
    /// let plan = Plan::from_json(r#"{"strategy":{"rolling":{"replicas":3}}}"#)?;
    /// assert!(plan.problems().is_empty());
    /// # Ok::<(), cutover_core::PlanError>(())
    /// ```
    pub fn problems(&self) -> Vec<PlanError> {
        validate::problems(self)
    }
}

impl From<Strategy> for Plan {
    fn from(strategy: Strategy) -> Self {
        Plan::new(strategy)
    }
}

impl From<Canary> for Plan {
    fn from(canary: Canary) -> Self {
        Plan::new(canary)
    }
}

impl From<BlueGreen> for Plan {
    fn from(bg: BlueGreen) -> Self {
        Plan::new(bg)
    }
}

impl From<Rolling> for Plan {
    fn from(rolling: Rolling) -> Self {
        Plan::new(rolling)
    }
}

impl From<AbTest> for Plan {
    fn from(ab: AbTest) -> Self {
        Plan::new(ab)
    }
}

fn path_error<E: std::fmt::Display>(err: &serde_path_to_error::Error<E>) -> PlanError {
    let path = err.path().to_string();
    let path = if path == "." { "plan".to_owned() } else { path };
    PlanError::invalid(path, err.inner().to_string())
}
