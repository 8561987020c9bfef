//! The [`TrafficRouter`] trait: how a rollout moves traffic.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    Granularity, HeaderRoute, Mirror, ProviderError, RevisionId, StickySession, TrafficSplit,
};

/// What a router can express. The engine checks a plan against this when the rollout is built,
/// so a plan the router cannot carry out fails before any traffic moves.
///
/// ```
/// use cutover_core::{Granularity, RouterCapabilities};
/// let istio_like = RouterCapabilities::new(Granularity::PERCENT)
///     .with_header_routes()
///     .with_cookie_routes()
///     .with_mirroring();
/// assert!(istio_like.header_routes && !istio_like.sticky_sessions);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RouterCapabilities {
    /// The finest weight step the router can set.
    pub granularity: Granularity,
    /// Header routes ([`TrafficRouter::set_header_route`] with header matches).
    pub header_routes: bool,
    /// Cookie routes ([`TrafficRouter::set_header_route`] with cookie matches).
    pub cookie_routes: bool,
    /// Mirroring ([`TrafficRouter::set_mirror`]).
    pub mirroring: bool,
    /// Sticky sessions ([`TrafficRouter::set_sticky_sessions`]).
    pub sticky_sessions: bool,
}

impl RouterCapabilities {
    /// Weighted splits at `granularity`, nothing optional.
    pub fn new(granularity: Granularity) -> Self {
        RouterCapabilities {
            granularity,
            header_routes: false,
            cookie_routes: false,
            mirroring: false,
            sticky_sessions: false,
        }
    }

    /// Adds header routes.
    pub fn with_header_routes(mut self) -> Self {
        self.header_routes = true;
        self
    }

    /// Adds cookie routes.
    pub fn with_cookie_routes(mut self) -> Self {
        self.cookie_routes = true;
        self
    }

    /// Adds mirroring.
    pub fn with_mirroring(mut self) -> Self {
        self.mirroring = true;
        self
    }

    /// Adds sticky sessions.
    pub fn with_sticky_sessions(mut self) -> Self {
        self.sticky_sessions = true;
        self
    }
}

/// Moves traffic between revisions: a mesh, a load balancer, a Service selector, a proxy.
///
/// Every method must be idempotent: the engine repeats a call after a transient error and after
/// a restart. `set_split` names every revision, so a router keeps no hidden state about which
/// revision is which. Optional capabilities (header routes, mirroring, sticky sessions) default
/// to [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported); a router that implements one
/// declares it in [`capabilities`](TrafficRouter::capabilities).
///
/// The shared contract suite in `cutover-test` (`router_contract`) checks an implementation.
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait TrafficRouter: Send + Sync + fmt::Debug {
    /// A short name for records and spans, like `istio/checkout` or `alb/listener-443`.
    fn name(&self) -> &str;

    /// What this router can express.
    fn capabilities(&self) -> RouterCapabilities;

    /// Sends traffic according to `split`. Weights are multiples of the declared granularity.
    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError>;

    /// The split the router applies now, or `None` if it cannot tell. The engine compares it
    /// with what it set after every change; a mismatch is an error, not a success.
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError>;

    /// Sends requests matching `route` to `revision`, ahead of the weights. Replaces a route of
    /// the same name.
    async fn set_header_route(
        &self,
        route: &HeaderRoute,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        let _ = (route, revision);
        Err(ProviderError::unsupported("header routing"))
    }

    /// Removes the header route called `name`; removing a route that does not exist succeeds.
    async fn remove_header_route(&self, name: &str) -> Result<(), ProviderError> {
        let _ = name;
        Err(ProviderError::unsupported("header routing"))
    }

    /// Copies a share of requests to `revision`. Replaces a mirror of the same name.
    async fn set_mirror(
        &self,
        mirror: &Mirror,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        let _ = (mirror, revision);
        Err(ProviderError::unsupported("mirroring"))
    }

    /// Removes the mirror called `name`; removing a mirror that does not exist succeeds.
    async fn remove_mirror(&self, name: &str) -> Result<(), ProviderError> {
        let _ = name;
        Err(ProviderError::unsupported("mirroring"))
    }

    /// Turns sticky sessions on (`Some`) or off (`None`).
    async fn set_sticky_sessions(
        &self,
        sticky: Option<StickySession>,
    ) -> Result<(), ProviderError> {
        let _ = sticky;
        Err(ProviderError::unsupported("sticky sessions"))
    }
}

#[async_trait]
impl<T: TrafficRouter + ?Sized> TrafficRouter for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> RouterCapabilities {
        (**self).capabilities()
    }
    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        (**self).set_split(split).await
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        (**self).current_split().await
    }
    async fn set_header_route(
        &self,
        route: &HeaderRoute,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        (**self).set_header_route(route, revision).await
    }
    async fn remove_header_route(&self, name: &str) -> Result<(), ProviderError> {
        (**self).remove_header_route(name).await
    }
    async fn set_mirror(
        &self,
        mirror: &Mirror,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        (**self).set_mirror(mirror, revision).await
    }
    async fn remove_mirror(&self, name: &str) -> Result<(), ProviderError> {
        (**self).remove_mirror(name).await
    }
    async fn set_sticky_sessions(
        &self,
        sticky: Option<StickySession>,
    ) -> Result<(), ProviderError> {
        (**self).set_sticky_sessions(sticky).await
    }
}
