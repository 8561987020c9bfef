//! Test support: a PostgreSQL server started from Debian's packages, the chaos harness and
//! the fleet benchmark. Used by this crate's tests and by `scripts/bench-fleet`.

mod postgres;

pub use self::postgres::{PgServer, ServerError};
