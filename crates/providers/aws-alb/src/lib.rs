//! AWS Application Load Balancer provider for cutover: weighted forward actions, target health,
//! target replacement.
//!
//! - [`AlbRouter`]: a [`TrafficRouter`](cutover_core::TrafficRouter) over the weights of a
//!   listener's default forward action or a listener rule's, with read-modify-write that keeps
//!   everything it does not manage, and read-back after every change.
//! - [`TargetHealthProbe`]: a [`HealthProbe`](cutover_core::HealthProbe) over
//!   `DescribeTargetHealth` of each revision's target group.
//! - [`TargetGroupWorkload`]: a [`Workload`](cutover_core::Workload) that registers and
//!   deregisters each revision's targets in a target group, for rolling updates.
//! - [`client_from_env`] / [`configure`]: ELBv2 clients with the SDK's retries off, so that the
//!   engine's retries are the only ones; [`classify`] maps SDK errors to
//!   [`ProviderError`](cutover_core::ProviderError) kinds.
//!
//! Weights are converted with an exact rule at a granularity of 0.1 %: see [`weights`].
#![forbid(unsafe_code)]

mod arn;
mod client;
mod error;
mod probe;
mod router;
pub mod weights;
mod workload;

/// The AWS SDK for ELBv2 this crate is built on, for building clients and targets.
pub use aws_sdk_elasticloadbalancingv2 as sdk;

pub use arn::{ElbArn, ResourceKind};
pub use client::{CALL_TIMEOUT, CONNECT_TIMEOUT, client_from_config, client_from_env, configure};
pub use error::{AlbError, classify};
pub use probe::TargetHealthProbe;
pub use router::{
    AlbRouter, AlbRouterBuilder, ForwardTarget, MAX_STICKINESS_SECS, MAX_TARGET_GROUPS,
};
pub use workload::{Target, TargetGroupWorkload};

#[cfg(feature = "moto")]
pub mod moto;
