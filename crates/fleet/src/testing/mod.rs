//! Test support: a PostgreSQL server started from Debian's packages, the chaos harness and
//! the fleet benchmark. Used by this crate's tests and by `scripts/bench-fleet`.

mod bench;
mod chaos;
mod postgres;
mod process;
mod script;

pub use self::bench::{ThroughputRow, bench_specs, fleet_throughput, memory_throughput};
pub use self::chaos::{ChaosConfig, ChaosReport, Fault, Spawner, run_chaos};
pub use self::postgres::{PgServer, ServerError};
pub use self::process::{ProcessReport, WORKER_ENV, WorkerArgs, worker_main_from_env};
pub use self::script::{
    CALLS_TABLE, Call, MemoryRouters, RecordingRouter, SCRIPTED, ScriptedVerdicts, scripted_spec,
    ten_step_plan,
};
