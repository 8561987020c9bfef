//! Istio provider for cutover.
//!
//! - [`IstioRouter`]: a [`TrafficRouter`](cutover_core::TrafficRouter) on one named HTTP route
//!   of a `networking.istio.io/v1` `VirtualService`: weights in whole percent, header and
//!   cookie routes before the weighted route, `mirror` with `mirrorPercentage`, sticky sessions
//!   through a `DestinationRule` cookie hash ([`sticky`]), subset-based or host-based
//!   [`Destination`]s, and read-back. Every route and field it does not manage is kept as read.
//! - [`DestinationRuleSubsets`]: creates or updates the subsets that map revisions to pod
//!   labels, leaving other subsets and traffic policies alone.
//! - Istio's standard metrics (success rate, error rate, request rate, latency quantiles per
//!   revision) are read through the Prometheus metric source: the PromQL templates live in
//!   `cutover-prometheus` (`cutover_prometheus::templates::istio`), which also escapes the
//!   names it fills in.
//! - [`VirtualService`], [`DestinationRule`]: the two resources, with the spec kept as JSON.
//! - [`cluster::cluster_with_istio`]: finds a real cluster with Istio, for examples and opt-in
//!   tests. The `kube` crate is re-exported so that callers build clients of the same version.
//!
//! Errors are classified by `cutover-kube`, as for the Kubernetes provider (403 names the
//! missing RBAC verb, 409 and 5xx are transient, 429 is throttled); a VirtualService, route or
//! DestinationRule that does not exist is a permanent error naming it.
//!
//! # RBAC
//!
//! Everything in this crate needs only this Role, in the namespace of the VirtualService and
//! DestinationRule (drop `create` if the DestinationRule exists before the rollout):
//!
//! ```yaml
//! apiVersion: rbac.authorization.k8s.io/v1
//! kind: Role
//! metadata:
//!   name: cutover-istio
//! rules:
//!   # IstioRouter
//!   - apiGroups: ["networking.istio.io"]
//!     resources: ["virtualservices"]
//!     verbs: ["get", "patch"]
//!   # DestinationRuleSubsets, IstioRouter::sticky_sessions_on
//!   - apiGroups: ["networking.istio.io"]
//!     resources: ["destinationrules"]
//!     verbs: ["get", "create", "patch"]
//! ```
//!
//! [`cluster::cluster_with_istio`] checks for Istio through discovery, which needs no Role.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use cutover_core::{Plan, Rollout};
//! use cutover_istio::{Destination, DestinationRuleSubsets, IstioRouter};
//!
//! let client = kube::Client::try_default().await?;
//! DestinationRuleSubsets::new(client.clone(), "prod", "reviews", "reviews")
//!     .subset("v1".parse()?, "v1", [("version", "v1")])
//!     .subset("v2".parse()?, "v2", [("version", "v2")])
//!     .ensure()
//!     .await?;
//! let router = IstioRouter::new(client, "prod", "reviews", "primary")
//!     .destination("v1".parse()?, Destination::subset("reviews", "v1"))
//!     .destination("v2".parse()?, Destination::subset("reviews", "v2"));
//! let plan = Plan::from_yaml("strategy: { canary: { steps: [ {set_weight: 10}, {pause: {duration: 5m}} ] } }")?;
//! let outcome = Rollout::builder("reviews", plan)
//!     .revisions("v1", "v2")
//!     .router(router)
//!     .build()?
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod cluster;
mod matches;
mod object;
mod resources;
mod router;
pub mod sticky;
mod subsets;

pub use kube;
pub use resources::{DestinationRule, GROUP, VERSION, VirtualService};
pub use router::{Destination, IstioRouter};
pub use subsets::DestinationRuleSubsets;
