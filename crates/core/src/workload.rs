//! The [`Workload`] trait: replicas of each revision.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ProviderError, RevisionId};

/// Replica counts of one revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas running the revision's current spec.
    pub updated: u32,
    /// Replicas passing readiness.
    pub ready: u32,
    /// Replicas ready for long enough to count as available.
    pub available: u32,
}

impl ReplicaStatus {
    /// Whether every desired replica is updated, ready and available.
    ///
    /// ```
    /// use cutover_core::ReplicaStatus;
    /// let s = ReplicaStatus { desired: 3, updated: 3, ready: 3, available: 2 };
    /// assert!(!s.is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        self.updated >= self.desired && self.ready >= self.desired && self.available >= self.desired
    }
}

/// Scales revisions and reports their replicas: Deployments, target groups, VM groups.
///
/// `status` must not report replicas as ready while the platform has not yet caught up with the
/// latest `scale` (Kubernetes: `observedGeneration` behind `generation`).
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait Workload: Send + Sync + fmt::Debug {
    /// A short name for records and spans.
    fn name(&self) -> &str;

    /// Asks for `replicas` replicas of `revision`. Idempotent.
    async fn scale(&self, revision: &RevisionId, replicas: u32) -> Result<(), ProviderError>;

    /// The replicas of `revision` now.
    async fn status(&self, revision: &RevisionId) -> Result<ReplicaStatus, ProviderError>;
}

#[async_trait]
impl<T: Workload + ?Sized> Workload for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn scale(&self, revision: &RevisionId, replicas: u32) -> Result<(), ProviderError> {
        (**self).scale(revision, replicas).await
    }
    async fn status(&self, revision: &RevisionId) -> Result<ReplicaStatus, ProviderError> {
        (**self).status(revision).await
    }
}
