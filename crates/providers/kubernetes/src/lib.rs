//! Kubernetes provider for cutover: Deployments, Service-selector, Gateway API and
//! replica-ratio routers, a pod health probe, a ConfigMap state store and a Lease lock.
//!
//! | type | trait | what it does |
//! |---|---|---|
//! | [`DeploymentWorkload`] | `Workload` | scales the Deployment of each revision; status honours `observedGeneration` |
//! | [`ServiceSelectorRouter`] | `TrafficRouter` | blue-green: switches one selector label of a Service (100 % steps) |
//! | [`HttpRouteRouter`] | `TrafficRouter` | weights on a named `HTTPRoute` rule, header/cookie rules, request mirroring |
//! | [`ReplicaRatioRouter`] | `TrafficRouter` | canary without a mesh: replica counts of two Deployments behind one Service |
//! | [`PodProbe`] | `HealthProbe` | pod readiness by label selector; fails on crash loops, image pull errors, restarts |
//! | [`ConfigMapStateStore`] | `StateStore` | the whole store contract: state (compare-and-swap), decision log and command inbox in chunk ConfigMaps that never near 1 MiB, owner lease in a Lease, listing by labels |
//! | [`LeaseLock`], [`LeasedStateStore`] | `StateStore` | one owner per rollout without synchronized clocks; a lost Lease stops the engine |
//! | [`RollingUpdate`] | | rolling update of a single Deployment, followed like `kubectl rollout status` |
//!
//! Writes never force and never drop another writer's change:
//!
//! - A Deployment's `spec.replicas`, which cutover owns outright, is server-side applied as
//!   `cutover-replicas` ([`REPLICAS_FIELD_MANAGER`]). If another manager owns it (a manifest
//!   with `replicas:`, an HPA) the write is a permanent error naming the conflict, never an
//!   overwrite.
//! - Fields that the object's own manifest sets and cutover changes in part are read, changed
//!   and written back with a patch that carries the `resourceVersion` that was read: a
//!   Service's `spec.selector` (an atomic map: one key cannot be applied on its own), an
//!   HTTPRoute's `spec.rules` (an atomic list), both as `cutover` ([`FIELD_MANAGER`]), and a
//!   Deployment's template and strategy in a [`RollingUpdate`] (as `cutover-rollout`,
//!   [`ROLLOUT_FIELD_MANAGER`]). A concurrent change is a transient 409 and the next try reads
//!   again; every key and rule cutover does not set is written back as read. Afterwards cutover
//!   owns the field, so re-applying the manifest with other values conflicts with it rather
//!   than silently undoing a rollout.
//!
//! Errors are classified in one place, [`cutover_kube::classify`]: 409 transient (re-read and
//! retry), 429 throttled, 5xx transient, 403 permanent naming the missing RBAC verb and
//! resource, other 4xx permanent.
//!
//! Everything here is tested against a real API server (Kubernetes 1.24, `tests/cluster.rs`),
//! once as a cluster admin and once as a user bound to exactly the Role below.
//!
//! # RBAC
//!
//! The minimal Role for everything in this crate, in the namespace of the rollout's objects
//! (drop the rules of the types you do not use):
//!
//! ```yaml
//! apiVersion: rbac.authorization.k8s.io/v1
//! kind: Role
//! metadata:
//!   name: cutover
//! rules:
//!   # DeploymentWorkload, ReplicaRatioRouter, RollingUpdate
//!   - apiGroups: ["apps"]
//!     resources: ["deployments"]
//!     verbs: ["get", "patch"]
//!   # ServiceSelectorRouter
//!   - apiGroups: [""]
//!     resources: ["services"]
//!     verbs: ["get", "patch"]
//!   # HttpRouteRouter
//!   - apiGroups: ["gateway.networking.k8s.io"]
//!     resources: ["httproutes"]
//!     verbs: ["get", "patch"]
//!   # PodProbe
//!   - apiGroups: [""]
//!     resources: ["pods"]
//!     verbs: ["list"]
//!   # ConfigMapStateStore: state, decision log and inbox (list: listing rollouts)
//!   - apiGroups: [""]
//!     resources: ["configmaps"]
//!     verbs: ["get", "list", "create", "update", "patch"]
//!   # ConfigMapStateStore's owner leases (list: listing rollouts), LeaseLock
//!   - apiGroups: ["coordination.k8s.io"]
//!     resources: ["leases"]
//!     verbs: ["get", "list", "create", "update"]
//! ```
//!
//! A 403 names the verb and resource that are missing, e.g. `patch services prod/web:
//! forbidden; grant the RBAC verb `patch` on `services` in namespace `prod``.
//!
//! # What the Lease guarantees
//!
//! The lock follows client-go's leader election. A replica that does not hold the Lease takes
//! it over only after it has seen the same Lease record (same `resourceVersion`) unchanged for a
//! full `lease_duration` on its own clock, counted from *after* the read that returned it. The
//! holder counts its hold from *before* the request that renewed it, and calls the lock held
//! only until `renew_deadline` (shorter than `lease_duration`) has passed since. So, with clocks
//! that run at the same rate (no synchronized wall clocks needed), the holder stops calling the
//! lock held at least `lease_duration - renew_deadline` before any other replica can take over.
//!
//! The engine saves its state before every effect (split, route, mirror, scale, migration): it
//! marks the action pending, saves, then runs it; a pending action left by an earlier run is
//! carried out only after this engine's claim of the rollout was saved. [`LeasedStateStore`] checks the lock before and
//! after every save and append and fails them (a permanent store error, which stops the engine
//! at once) if the lock is not held; it also refuses to take or renew the store's own owner
//! lease without the lock, and with the lock takes that lease even from a live owner (an engine
//! that lost the lock). Therefore:
//!
//! - **An engine never starts an effect without holding the Lease**, and it starts each effect
//!   at least `lease_duration - renew_deadline` before another replica can take the Lease over.
//! - An effect that finishes within that margin (including the engine's retries of it) never
//!   overlaps with the next owner's actions. Choose `lease_duration - renew_deadline` larger
//!   than the longest effect with its retries; the defaults (15 s and 10 s) give 5 s.
//! - The state is never lost or forked: the next owner loads it and claims it with
//!   compare-and-swap, so a save of the old owner that lands late is refused as a conflict,
//!   and an intent it saved but did not carry out is carried out by the next owner.
//!
//! What it does not guarantee: an effect still running when the margin is over (a provider call
//! hanging for longer) may overlap with the next owner; and a replica whose clock runs slower
//! than the others' by more than the margin over one `lease_duration` breaks the bound.
#![forbid(unsafe_code)]

mod deployment;
mod httproute;
mod lease;
mod names;
mod probe;
mod replicas;
mod rolling;
mod service;
mod store;

pub use self::deployment::{DeploymentWorkload, REPLICAS_FIELD_MANAGER};
pub use self::httproute::{HttpRouteRouter, ROUTE_RULE_PREFIX};
pub use self::lease::{LeaseLock, LeaseTiming, LeasedStateStore, Renewal};
pub use self::probe::PodProbe;
pub use self::replicas::ReplicaRatioRouter;
pub use self::rolling::{ROLLOUT_FIELD_MANAGER, RollingUpdate, RolloutStatus, UpdateError};
pub use self::service::ServiceSelectorRouter;
pub use self::store::{
    CONFIGMAP_DATA_LIMIT, ConfigMapStateStore, DEFAULT_CHUNK_BUDGET, PART_LABEL, PHASE_LABEL,
    ROLLOUT_ID_ANNOTATION, ROLLOUT_LABEL, STATE_KEY, SUMMARY_ANNOTATION, VERSION_ANNOTATION,
};
pub use cutover_kube::{FIELD_MANAGER, Target, classify};
/// The Gateway API types this crate is built on.
pub use gateway_api;
/// The Kubernetes API types this crate is built on (feature `v1_35`).
pub use k8s_openapi;
/// The Kubernetes client this crate is built on.
pub use kube;
