//! Test support for cutover: fakes of every provider, scripted metrics, a state store that
//! simulates crashes, and the contract suites every [`TrafficRouter`](cutover_core::TrafficRouter)
//! and every [`StateStore`](cutover_core::StateStore) must pass.
//!
//! # Overview
//!
//! The fakes are for engine scenarios and for your own integration harnesses. Each is a cheap
//! handle on shared state (clones see the same world), so a test can hand one clone to a
//! rollout and keep another to script it and inspect what happened. Errors can be injected into
//! every operation.
//!
//! ```
//! use cutover_core::{Canary, CanaryStep, Outcome, Rollout, Weight};
//! use cutover_test::FakeRouter;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let router = FakeRouter::new("edge");
//! let rollout = Rollout::builder("demo", Canary::new([CanaryStep::set_weight(20)?]))
//!     .revisions("v1", "v2")
//!     .router(router.clone())
//!     .build()?;
//! assert_eq!(rollout.run().await?, Outcome::Promoted);
//! let v2 = "v2".parse()?;
//! let weights: Vec<u16> = router.splits().iter().map(|s| s.weight(&v2).basis_points()).collect();
//! assert_eq!(weights, [2000, 10_000]);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod analysis;
mod check;
mod contract;
mod faults;
mod gate;
mod metric;
mod migration;
mod probe;
mod promtool;
mod router;
mod store;
mod store_contract;
mod workload;

pub use self::analysis::ScriptedAnalysis;
pub use self::check::{ColdCache, FixedCheck};
pub use self::contract::{ContractReport, ContractViolation, router_contract};
pub use self::faults::Faults;
pub use self::gate::FakeGate;
pub use self::metric::ScriptedMetricSource;
pub use self::migration::FakeMigration;
pub use self::probe::FakeProbe;
pub use self::promtool::promtool_check_metrics;
pub use self::router::FakeRouter;
pub use self::store::{CrashMode, CrashingStore};
pub use self::store_contract::{StoreContractReport, StoreContractViolation, store_contract};
pub use self::workload::FakeWorkload;

/// Installs a tracing subscriber that writes to the test output, once per process. It reads
/// `RUST_LOG` as `target=level` directives (`info,cutover_core=debug`); default `info`. The
/// library never installs one itself.
pub fn trace_init() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(filter)
        .try_init();
}
