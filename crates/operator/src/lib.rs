//! A reference Kubernetes operator for cutover: a `Rollout` custom resource (group
//! `cutover.dev`) whose plan the cutover engine carries out against the Rollout's
//! Deployments, Service, HTTPRoute or Istio VirtualService.
//!
//! - [`crd`]: the custom resource; `deploy/crd.yaml` is generated from it.
//! - [`reconcile`] returns [`Action`](kube::runtime::controller::Action)s: it checks the
//!   spec (errors go to the `Ready` condition and a Warning event), keeps one engine per
//!   Rollout running somewhere, and writes nothing else.
//! - [`worker`]: the engine of one Rollout on this replica. It waits for the Rollout's
//!   `LeaseLock` (so several replicas can run, one engine per Rollout), keeps state, decision
//!   log and command inbox in the ConfigMap store, and writes the status conditions and
//!   Kubernetes events as the rollout goes.
//! - A finalizer returns traffic to stable when a Rollout is deleted mid-rollout: it sends an
//!   abort through the store and lets the Rollout go once the rollout has ended.
//!
//! Commands from people go through the same store: `cutover --store kubernetes:NAMESPACE
//! pause ROLLOUT-ID --reason ...` (the id is in `status.rolloutId`). See docs/operator.md.
#![forbid(unsafe_code)]

pub mod crd;
pub mod reconcile;
pub mod spec;
pub mod status;
pub mod worker;

use std::sync::Arc;

use thiserror::Error;

pub use self::crd::{Rollout, RolloutSpec, RolloutStatus};
pub use self::reconcile::{Context, FINALIZER, error_policy, reconcile, run};

/// The prefix of the names of the store's ConfigMaps and owner Leases, the one
/// `cutover --store kubernetes:NAMESPACE` uses.
pub const STATE_PREFIX: &str = "cutover-state-";

/// The field manager and event reporter of the operator.
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
    /// Adding or removing the finalizer failed.
    #[error("finalizer")]
    Finalizer(#[source] Arc<dyn std::error::Error + Send + Sync>),
}
