//! Test support: a PostgreSQL server started from Debian's packages, the chaos harness and
//! the fleet benchmark. Used by this crate's tests and by `scripts/bench-fleet`.

mod postgres;
mod script;

pub use self::postgres::{PgServer, ServerError};
pub use self::script::{
    CALLS_TABLE, Call, MemoryRouters, RecordingRouter, SCRIPTED, ScriptedVerdicts, scripted_spec,
    ten_step_plan,
};
