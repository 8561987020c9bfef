//! A fleet of cutover processes on PostgreSQL: rollouts submitted as data, run by any number of
//! stateless workers that may die at any time, seen and steered from anywhere that reaches the
//! database.
//!
//! # Overview
//!
//! - [`PgStateStore`]: the [`StateStore`](cutover_core::StateStore) contract on PostgreSQL
//!   (compare-and-swap saves, the decision log and the command inbox as tables, leases with
//!   epochs, the summary listing, LISTEN/NOTIFY behind [`Watch::Notified`](cutover_core::Watch)),
//!   its schema created and upgraded by embedded, versioned migrations.
//! - [`RolloutSpec`]: a rollout as data (id, revisions, plan, and the *names* of the providers
//!   it uses), checked when it is submitted through [`Fleet`].
//! - [`Worker`]: offers providers by name, claims runnable rollouts with
//!   `FOR UPDATE SKIP LOCKED` under leases, renews them, and carries a fencing token that every
//!   write and every provider call checks ([`fence`]); drains on SIGTERM; takes over a dead
//!   worker's rollouts once their lease expires.
//!
//! # Usage
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cutover_fleet::{DatabaseUrl, Fleet, PgStateStore, RolloutSpec, Worker};
//! # #[derive(Debug)] struct EdgeProxy;
//! # #[async_trait::async_trait]
//! # impl cutover_core::TrafficRouter for EdgeProxy {
//! #     fn name(&self) -> &str { "edge" }
//! #     fn capabilities(&self) -> cutover_core::RouterCapabilities { cutover_core::RouterCapabilities::new(cutover_core::Granularity::PERCENT) }
//! #     async fn set_split(&self, _: &cutover_core::TrafficSplit) -> Result<(), cutover_core::ProviderError> { Ok(()) }
//! #     async fn current_split(&self) -> Result<Option<cutover_core::TrafficSplit>, cutover_core::ProviderError> { Ok(None) }
//! # }
//!
//! let url = DatabaseUrl::from_env("DATABASE_URL")?.expect("DATABASE_URL is set");
//! let store = PgStateStore::connect(&url).await?; // creates or upgrades the schema
//!
//! // Anywhere: submit a rollout as data.
//! let spec = RolloutSpec::from_yaml(r#"
//! id: checkout-v42
//! revisions: { stable: v41, candidate: v42 }
//! plan: { strategy: { canary: { steps: [ { set_weight: 10 }, { pause: { duration: 1m } }, { set_weight: 50 } ] } } }
//! providers: { routers: [edge-proxy] }
//! "#)?;
//! Fleet::new(store.clone()).submit(&spec).await?;
//!
//! // In each replica: a worker that offers the providers it can build.
//! let worker = Worker::builder(store)
//!     .router("edge-proxy", |_ctx| Ok(Arc::new(EdgeProxy)))
//!     .build()?;
//! worker.run_until_signal().await?;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `testing`: the `testing` module, a PostgreSQL server for tests, the chaos harness
//!   and the fleet benchmark (`scripts/bench-fleet`).
//!
//! # MSRV
//!
//! Rust 1.94.
#![forbid(unsafe_code)]

mod error;
pub mod fence;
pub mod fenced;
mod fleet;
mod pg;
mod registry;
mod spec;
#[cfg(feature = "testing")]
pub mod testing;
mod url;
mod worker;

pub use self::error::{ConnectError, Detail, FleetError, SpecError, WorkerError, chain};
pub use self::fence::{Fence, FenceLost, FenceToken, FencedStore};
pub use self::fleet::{Fleet, FleetCounts, FleetStatus, Submitted};
pub use self::pg::schema::SCHEMA_VERSION;
pub use self::pg::{PgOptions, PgStateStore};
pub use self::registry::{Factory, ProviderContext};
pub use self::spec::{ProviderKind, ProviderNames, RolloutSpec};
pub use self::url::DatabaseUrl;
pub use self::worker::{
    DEFAULT_WORKER_LEASE_TTL, Drainer, Worker, WorkerBuilder, WorkerReport, shutdown_signal,
};
