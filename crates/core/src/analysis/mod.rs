//! The [`Analysis`] trait through which every verdict enters a rollout, and the analyses
//! built from plan templates.

mod conditions;
mod judge;
mod proportions;
mod sequential;
mod threshold;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_analysis::Verdict;
use serde::{Deserialize, Serialize};

pub use self::conditions::ConditionsAnalysis;
pub use self::judge::JudgeAnalysis;
pub use self::proportions::ProportionsAnalysis;
pub(crate) use self::sequential::{SequentialAnalysis, SequentialInput};
pub use self::sequential::{SequentialState, SequentialTest};
pub use self::threshold::ThresholdAnalysis;
use crate::{MetricSource, ProviderError, RevisionId, Revisions, RolloutId};

/// What an analysis is told when asked for a measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnalysisContext {
    /// The rollout.
    pub rollout: RolloutId,
    /// Its revisions.
    pub revisions: Revisions,
    /// The analysis's name in the plan.
    pub analysis: String,
    /// Which measurement of the run this is, from 1.
    pub measurement: u32,
    /// Time since the run began (for A/B tests: since the test began).
    pub elapsed: Duration,
}

impl AnalysisContext {
    /// A context.
    pub fn new(
        rollout: RolloutId,
        revisions: Revisions,
        analysis: impl Into<String>,
        measurement: u32,
        elapsed: Duration,
    ) -> Self {
        AnalysisContext {
            rollout,
            revisions,
            analysis: analysis.into(),
            measurement,
            elapsed,
        }
    }
}

/// One measurement's verdict, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisResult {
    /// Pass, fail or inconclusive.
    pub verdict: Verdict,
    /// One line a person can read: which metric, which value, which bound.
    pub summary: String,
    /// Per-metric details.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricResult>,
    /// For analyses that compare the revisions (A/B tests): which one won and by how much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

impl AnalysisResult {
    /// A result with a verdict and a summary and nothing else.
    pub fn new(verdict: Verdict, summary: impl Into<String>) -> Self {
        AnalysisResult {
            verdict,
            summary: summary.into(),
            metrics: Vec::new(),
            comparison: None,
        }
    }
}

/// One metric's part in a measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// The value compared with the bounds, if there was one.
    pub value: Option<f64>,
    /// How many observations were behind it.
    pub samples: u64,
    /// Why the verdict, in words.
    pub detail: String,
}

/// The result of comparing the two revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The better revision, or `None` when the data does not show one.
    pub winner: Option<RevisionId>,
    /// The size of the difference (for rates: candidate minus stable).
    pub effect: f64,
    /// How sure the comparison is that there is a difference, 0 to 1 (`1 - p`).
    pub confidence: f64,
    /// Further numbers by name (rates, p-value, interval).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub numbers: BTreeMap<String, f64>,
}

/// Produces one measurement's verdict: threshold checks, a Kayenta-style judge, a sequential
/// test, a script in tests.
///
/// A verdict of `Inconclusive` means "could not tell" (no data, too little data). An `Err` means
/// "could not measure" (the metric source failed); the engine retries retryable errors and
/// counts the rest against the run's `consecutive_error_limit`. Neither ever passes a step.
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait Analysis: Send + Sync + fmt::Debug {
    /// Takes one measurement.
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError>;
}

#[async_trait]
impl<T: Analysis + ?Sized> Analysis for Arc<T> {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        (**self).evaluate(ctx).await
    }
}

/// Metric sources by the name plans use for them.
pub(crate) type Sources = BTreeMap<String, Arc<dyn MetricSource>>;

/// Queries `query` of metric `name` from the source named `source_name`, for the revision
/// `target` picks, over `window`.
pub(crate) async fn query_target(
    sources: &Sources,
    ctx: &AnalysisContext,
    name: &str,
    source_name: &str,
    query: &str,
    target: crate::plan::Target,
    window: Duration,
) -> Result<crate::Samples, ProviderError> {
    let revision = match target {
        crate::plan::Target::Candidate => &ctx.revisions.candidate,
        crate::plan::Target::Stable => &ctx.revisions.stable,
    };
    let query = crate::MetricQuery::new(name, query, revision.clone(), window);
    source(sources, source_name)?.query(&query).await
}

fn source<'a>(
    sources: &'a Sources,
    name: &str,
) -> Result<&'a Arc<dyn MetricSource>, ProviderError> {
    sources
        .get(name)
        .ok_or_else(|| ProviderError::permanent(format!("no metric source named `{name}`")))
}
