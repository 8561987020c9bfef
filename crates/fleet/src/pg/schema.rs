//! The schema, created and upgraded by versioned migrations embedded in the crate.
//!
//! Each migration runs once, in order, inside one transaction that holds an advisory lock, so
//! that workers starting together neither race nor half-apply a version. The versions applied
//! are kept in `cutover_schema_migrations`. A database whose schema is newer than this release
//! knows is refused, never written to.

use deadpool_postgres::Object;

use crate::error::ConnectError;
use crate::pg::sql::Detail;

/// One version of the schema.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "state store: rollouts, decision log, inbox",
        sql: include_str!("migrations/0001_store.sql"),
    },
    Migration {
        version: 2,
        name: "fleet: submitted rollouts, workers, claims",
        sql: include_str!("migrations/0002_fleet.sql"),
    },
];

/// The schema version this release writes.
pub const SCHEMA_VERSION: i32 = 2;

/// Key of the advisory lock that serializes migrations ("cutover" in ASCII).
const LOCK_KEY: i64 = 0x0063_7574_6f76_6572;

/// Brings the schema to [`SCHEMA_VERSION`]; returns the versions it applied.
pub(crate) async fn migrate(conn: &mut Object, target: &str) -> Result<Vec<i32>, ConnectError> {
    migrate_to(conn, target, SCHEMA_VERSION).await
}

/// Brings the schema to `version` (at most [`SCHEMA_VERSION`]); returns the versions it
/// applied. Tests use it to make a database of an older release.
pub(crate) async fn migrate_to(
    conn: &mut tokio_postgres::Client,
    target: &str,
    version: i32,
) -> Result<Vec<i32>, ConnectError> {
    let failed = |step: &'static str| {
        let target = target.to_owned();
        move |e: tokio_postgres::Error| ConnectError::Schema {
            target: target.clone(),
            step,
            source: Detail(e.to_string()),
        }
    };
    let tx = conn
        .transaction()
        .await
        .map_err(failed("begin a transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(failed("take the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS cutover_schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(failed("create cutover_schema_migrations"))?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM cutover_schema_migrations",
            &[],
        )
        .await
        .map_err(failed("read the schema version"))?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(ConnectError::SchemaTooNew {
            target: target.to_owned(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= version)
    {
        tx.batch_execute(migration.sql)
            .await
            .map_err(|e| ConnectError::Migration {
                target: target.to_owned(),
                version: migration.version,
                name: migration.name,
                source: Detail(e.to_string()),
            })?;
        tx.execute(
            "INSERT INTO cutover_schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(failed("record the schema version"))?;
        applied.push(migration.version);
    }
    tx.commit().await.map_err(failed("commit the migrations"))?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rise_by_one_up_to_the_schema_version() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<i32> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
    }
}
