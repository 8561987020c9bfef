//! A reference Kubernetes operator for cutover: a `Rollout` custom resource (group
//! `cutover.dev`) whose plan the cutover engine carries out against the Rollout's
//! Deployments, Service, HTTPRoute or Istio VirtualService.
//!
//! - [`crd`]: the custom resource; `deploy/crd.yaml` is generated from it
//!   (`cutover-operator crd`), and a test fails when the two drift apart.
//! - [`spec`]: checks a Rollout's spec (errors name the field) and builds the cutover rollout
//!   with the Kubernetes providers.
//! - [`reconcile`](mod@reconcile): the kube-rs `Controller` loop. For each Rollout it hands the
//!   `cutover.dev/command` annotation to the store's command inbox, keeps one engine running
//!   on this replica, and writes `status` (phase, step, candidate weight, owner, latest
//!   decision, what became of the last command) from the store.
//! - [`status`]: the status of a Rollout, read from the store.
//!
//! State, decision log, command inbox and owner lease live in the ConfigMap store of
//! `cutover-kubernetes` (prefix [`STATE_PREFIX`]), the one `cutover --store
//! kubernetes:NAMESPACE` reads: the command line sees and steers the operator's rollouts
//! (the id is in `status.rolloutId`). See docs/operator.md.
//!
//! Not done in this reference: a finalizer (delete a Rollout only once it has ended, or
//! abort it first), a new rollout when `spec.candidate` changes while one runs (the
//! running one finishes first), leader election beyond the store's per-rollout owner lease.
#![forbid(unsafe_code)]

pub mod command;
pub mod crd;
pub mod reconcile;
pub mod spec;
pub mod status;

use std::sync::Arc;

use thiserror::Error;

pub use self::crd::{Rollout, RolloutSpec, RolloutStatus};
pub use self::reconcile::{Context, error_policy, reconcile, run};

/// The prefix of the names of the store's ConfigMaps and owner Leases, the one
/// `cutover --store kubernetes:NAMESPACE` uses.
pub const STATE_PREFIX: &str = "cutover-state-";

/// The field manager of the operator's writes.
pub const MANAGER: &str = "cutover-operator";

/// Why a reconcile failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec is invalid; the message names the field.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// An object the Rollout names does not exist.
    #[error("{0}")]
    Missing(String),
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed")]
    Kube(#[source] Arc<kube::Error>),
    /// The state store failed.
    #[error("state store failed: {0}")]
    Store(String),
    /// The Rollout has no namespace (the CRD is namespaced; this is a malformed object).
    #[error("the Rollout has no namespace")]
    NoNamespace,
}
