//! The [`HealthProbe`] trait: is a revision ready to take traffic?

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ProviderError, RevisionId};

/// The health of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Health {
    /// Ready for traffic.
    Ready,
    /// Not ready yet, and not known to have failed: starting, scaling, warming up.
    Progressing {
        /// What it is waiting for, e.g. "2/3 pods ready".
        detail: String,
    },
    /// Failed and not expected to recover by waiting: crash loop, image pull error.
    Failed {
        /// Why, e.g. "pod web-7d9 in CrashLoopBackOff".
        reason: String,
    },
}

impl Health {
    /// A `Progressing` health with a detail.
    pub fn progressing(detail: impl Into<String>) -> Self {
        Health::Progressing {
            detail: detail.into(),
        }
    }

    /// A `Failed` health with a reason.
    pub fn failed(reason: impl Into<String>) -> Self {
        Health::Failed {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ready => f.write_str("ready"),
            Health::Progressing { detail } => write!(f, "progressing: {detail}"),
            Health::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// Tells whether a revision is healthy: pod readiness, target-group health, an HTTP check.
///
/// The engine checks the candidate after each change that gives it more traffic or replicas,
/// and waits (within the progress deadline) while it is `Progressing`. `Failed` rolls back.
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync + fmt::Debug {
    /// A short name for records and spans.
    fn name(&self) -> &str;

    /// The health of `revision` now.
    async fn check(&self, revision: &RevisionId) -> Result<Health, ProviderError>;
}

#[async_trait]
impl<T: HealthProbe + ?Sized> HealthProbe for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn check(&self, revision: &RevisionId) -> Result<Health, ProviderError> {
        (**self).check(revision).await
    }
}
