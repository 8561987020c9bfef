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
//! - [`conditions`]: its `Ready`, `Progressing` and `Degraded` conditions.
//! - [`events`]: Kubernetes events about it (phase changes, commands, invalid specs).
//!
//! Every Rollout carries the finalizer [`reconcile::FINALIZER`]: a deleted Rollout whose
//! rollout still runs is aborted first, and goes once traffic is back on stable.
//!
//! State, decision log, command inbox and owner lease live in the ConfigMap store of
//! `cutover-kubernetes` (prefix [`STATE_PREFIX`]), the one `cutover --store
//! kubernetes:NAMESPACE` reads: the command line sees and steers the operator's rollouts
//! (the id is in `status.rolloutId`). See docs/operator.md.
//!
//! Not done in this reference: leader election beyond the store's per-rollout owner lease
//! (replicas hand a rollout over through that lease; see docs/operator.md).
#![forbid(unsafe_code)]

pub mod command;
pub mod conditions;
pub mod crd;
pub mod events;
pub mod reconcile;
pub mod spec;
pub mod status;

use std::sync::Arc;

use thiserror::Error;

pub use self::crd::{Rollout, RolloutSpec, RolloutStatus};
pub use self::reconcile::{Context, error_policy, reconcile, run, run_with};

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
    /// The Rollout is being deleted and its rollout still runs: its finalizer stays until the
    /// abort has returned traffic to stable. Not a failure; the reconcile is retried soon.
    #[error("deleting: {0}")]
    Deleting(String),
    /// The finalizer could not be handled (an unnamed object).
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// The error of a reconcile run through kube-runtime's finalizer helper.
    pub(crate) fn from_finalizer(error: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match error {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(Arc::new(e)),
            other => Error::Finalizer(other.to_string()),
        }
    }
}
