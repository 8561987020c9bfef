//! Providers behind a fence: every call waits until the worker's lease on the rollout is live
//! (renewing it if it is due), and is never made once the lease is lost.
//!
//! A call refused by a lost fence does not fail: failing would make the engine roll back, and
//! a worker that lost its lease must not decide anything more. It waits instead, and the
//! worker, which sees the same fence lost, drops the rollout's engine (and with it the call).

use std::sync::Arc;

use async_trait::async_trait;
use cutover_core::{
    Analysis, AnalysisContext, AnalysisResult, HeaderRoute, Health, HealthProbe, MetricQuery,
    MetricSource, Mirror, ProviderError, ReplicaStatus, RevisionId, RouterCapabilities, Samples,
    StickySession, TrafficRouter, TrafficSplit, Workload,
};

use crate::fence::Fence;

/// A provider of type `T` whose calls go through a [`Fence`].
#[derive(Debug)]
pub struct Fenced<T: ?Sized> {
    fence: Arc<Fence>,
    inner: Arc<T>,
}

impl<T: ?Sized> Fenced<T> {
    /// `inner`, fenced by `fence`.
    pub fn new(inner: Arc<T>, fence: Arc<Fence>) -> Self {
        Fenced { fence, inner }
    }

    /// Returns while the lease is live; never returns once it is lost.
    async fn guard(&self) {
        if self.fence.check().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl<T: TrafficRouter + ?Sized> TrafficRouter for Fenced<T> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> RouterCapabilities {
        self.inner.capabilities()
    }
    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        self.guard().await;
        self.inner.set_split(split).await
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        self.guard().await;
        self.inner.current_split().await
    }
    async fn set_header_route(
        &self,
        route: &HeaderRoute,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        self.guard().await;
        self.inner.set_header_route(route, revision).await
    }
    async fn remove_header_route(&self, name: &str) -> Result<(), ProviderError> {
        self.guard().await;
        self.inner.remove_header_route(name).await
    }
    async fn set_mirror(
        &self,
        mirror: &Mirror,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        self.guard().await;
        self.inner.set_mirror(mirror, revision).await
    }
    async fn remove_mirror(&self, name: &str) -> Result<(), ProviderError> {
        self.guard().await;
        self.inner.remove_mirror(name).await
    }
    async fn set_sticky_sessions(
        &self,
        sticky: Option<StickySession>,
    ) -> Result<(), ProviderError> {
        self.guard().await;
        self.inner.set_sticky_sessions(sticky).await
    }
}

#[async_trait]
impl<T: HealthProbe + ?Sized> HealthProbe for Fenced<T> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn check(&self, revision: &RevisionId) -> Result<Health, ProviderError> {
        self.guard().await;
        self.inner.check(revision).await
    }
}

#[async_trait]
impl<T: Workload + ?Sized> Workload for Fenced<T> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn scale(&self, revision: &RevisionId, replicas: u32) -> Result<(), ProviderError> {
        self.guard().await;
        self.inner.scale(revision, replicas).await
    }
    async fn status(&self, revision: &RevisionId) -> Result<ReplicaStatus, ProviderError> {
        self.guard().await;
        self.inner.status(revision).await
    }
}

#[async_trait]
impl<T: MetricSource + ?Sized> MetricSource for Fenced<T> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError> {
        self.guard().await;
        self.inner.query(query).await
    }
}

#[async_trait]
impl<T: Analysis + ?Sized> Analysis for Fenced<T> {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        self.guard().await;
        self.inner.evaluate(ctx).await
    }
}
