//! The [`MetricSource`] trait: numbers about a revision over a time window.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ProviderError, RevisionId};

/// One question to a metric source: the value of `query` for `revision` over the trailing
/// `window`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricQuery {
    /// The metric's name in the plan, for records (`error-rate`).
    pub metric: String,
    /// The source-specific expression: PromQL, a proxy counter name, a CloudWatch metric...
    pub query: String,
    /// The revision the values are for.
    pub revision: RevisionId,
    /// How far back from now the values reach.
    #[serde(with = "crate::time::serde_duration")]
    pub window: Duration,
}

impl MetricQuery {
    /// A query.
    pub fn new(
        metric: impl Into<String>,
        query: impl Into<String>,
        revision: RevisionId,
        window: Duration,
    ) -> Self {
        MetricQuery {
            metric: metric.into(),
            query: query.into(),
            revision,
            window,
        }
    }
}

/// What a metric source returned for one revision.
///
/// No data is an empty sample set ([`Samples::is_empty`]), never an error and never zero: the
/// analysis treats it as inconclusive, never as a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Samples {
    /// Observations: a time series of a gauge, or one value per request (latencies).
    Values(Vec<f64>),
    /// Events out of a total: errors out of requests, conversions out of visits.
    Counts {
        /// Requests that had the event.
        events: u64,
        /// All requests.
        total: u64,
    },
}

impl Samples {
    /// No data.
    pub fn empty() -> Self {
        Samples::Values(Vec::new())
    }

    /// Whether there is no data: no values, or a total of zero.
    pub fn is_empty(&self) -> bool {
        match self {
            Samples::Values(values) => values.is_empty(),
            Samples::Counts { total, .. } => *total == 0,
        }
    }

    /// How many observations back these samples: values, or the total count.
    pub fn sample_size(&self) -> u64 {
        match self {
            Samples::Values(values) => values.len() as u64,
            Samples::Counts { total, .. } => *total,
        }
    }
}

/// Answers [`MetricQuery`]s: Prometheus, the local proxy's counters, a scripted source in tests.
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait MetricSource: Send + Sync + fmt::Debug {
    /// A short name for records and spans.
    fn name(&self) -> &str;

    /// The samples for `query`. No data is `Ok` with empty samples.
    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError>;
}

#[async_trait]
impl<T: MetricSource + ?Sized> MetricSource for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError> {
        (**self).query(query).await
    }
}
