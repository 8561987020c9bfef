//! Zero-downtime schema migrations on PostgreSQL as cutover [`MigrationStep`]s, following the
//! expand/contract pattern of pgroll and reshape.
//!
//! A [`Migration`] is an [`Operation`] (add a column, rename one, build an index...) on a
//! [`Postgres`] database, in two halves a rollout runs at different times:
//!
//! * **expand** ([`Migration::expand`]) runs before the new version takes any traffic and keeps
//!   the old version working: new columns are nullable or defaulted, renames go through a new
//!   column kept in step by triggers, indexes are built concurrently, constraints start
//!   `NOT VALID`. An aborted rollout reverts expand steps in reverse order.
//! * **contract** ([`Migration::contract`]) runs only after promotion and the bake time and
//!   removes the old shape (the old column, the triggers). It is the point of no return and
//!   refuses to run while [`MigrationContext::promoted`](cutover_core::MigrationContext) is
//!   false, that is while any instance of the old version could still read the old shape.
//!
//! With [`Postgres::versioned_views`] each application version gets a schema of views
//! (`app_v41`, `app_v42`) showing the columns it expects under the names it expects; run each
//! version with `search_path = app_<revision>, public`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cutover_core::{Canary, CanaryStep, Plan, Rollout};
//! use cutover_postgres::{Operation, Postgres};
//! let db = Postgres::new("postgresql://app@127.0.0.1/shop")?.versioned_views("app");
//! let rename = db.migration("rename-name", Operation::rename_column("users", "name", "full_name"));
//! let plan = Plan::new(Canary::new([CanaryStep::set_weight(10)?]));
//! let rollout = Rollout::builder("checkout", plan)
//!     .revisions("v41", "v42")
//!     .migration(rename.expand())
//!     .migration(rename.contract());
//! # let _ = rollout; Ok(()) }
//! ```
//!
//! # Safety
//!
//! * Every step records its progress in `cutover.migrations` inside the database: its state and
//!   the backfill cursor, moved in the same transaction as each batch. Every part is idempotent,
//!   so a step repeated after a crash resumes: no batch is lost or applied twice.
//! * Every connection sets `lock_timeout`, and a statement that times out waiting for a lock is
//!   retried after a pause, so a migration never holds a queue of blocked queries behind it.
//! * Backfills walk the primary key in batches of a configurable size with a pause between them.
//! * `CREATE INDEX CONCURRENTLY` runs outside a transaction; an INVALID index left by a failed
//!   build is dropped before the next try.
//!
//! # Why tokio-postgres
//!
//! The steps run DDL and dynamic SQL built at run time, which sqlx's compile-time checked
//! macros cannot check anyway, and those macros need a database at build time. tokio-postgres
//! is the smaller build, speaks the simple-query protocol needed for multi-statement
//! transactions and `CREATE INDEX CONCURRENTLY`, and exposes SQLSTATE codes to tell a lock
//! timeout (retried) from a bad statement (permanent).
#![forbid(unsafe_code)]

mod backfill;
mod db;
mod operation;
mod progress;
mod sql;
mod step;

pub use self::db::{Batch, Postgres};
pub use self::operation::Operation;
pub use self::step::{Migration, PgStep};

#[doc(no_inline)]
pub use cutover_core::MigrationStep;
/// The PostgreSQL client this crate is built on ([`Postgres::from_config`] takes its
/// `Config`), so that your own queries use the same version.
pub use tokio_postgres;
