//! The `cutover` schema inside the database: step progress, hidden columns, the view builder.

use cutover_core::{MigrationPhase, ProviderError};
use tokio_postgres::Client;

use crate::db::pg_error;
use crate::sql::literal;

/// Creates the `cutover` schema and its tables and functions if they are missing.
///
/// * `cutover.migrations`: one row per migration and phase, with its state (`applying`,
///   `applied`, `reverting`, `reverted`) and the backfill cursor (the last primary key done,
///   as text), updated in the same transaction as each batch.
/// * `cutover.hidden`: the columns a version's views leave out, by the migration that hid them
///   (`column_name = ''` hides the whole table).
/// * `cutover.rebuild_view(base, table, version)`: drops and recreates `version.table` as a
///   view of the visible columns of `base.table`.
pub(crate) const SETUP: &str = r"
CREATE SCHEMA IF NOT EXISTS cutover;
CREATE TABLE IF NOT EXISTS cutover.migrations (
    migration   text NOT NULL,
    phase       text NOT NULL,
    rollout     text NOT NULL,
    state       text NOT NULL,
    cursor      text,
    batches     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, phase)
);
CREATE TABLE IF NOT EXISTS cutover.hidden (
    version_schema text NOT NULL,
    table_name     text NOT NULL,
    column_name    text NOT NULL,
    migration      text NOT NULL,
    PRIMARY KEY (version_schema, table_name, column_name, migration)
);
CREATE OR REPLACE FUNCTION cutover.rebuild_view(base text, tbl text, version text)
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    cols text;
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', version);
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', version, tbl);
    IF to_regclass(format('%I.%I', base, tbl)) IS NULL
       OR EXISTS (SELECT 1 FROM cutover.hidden h
                  WHERE h.version_schema = version AND h.table_name = tbl AND h.column_name = '')
    THEN
        RETURN;
    END IF;
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO cols
    FROM pg_attribute a
    WHERE a.attrelid = format('%I.%I', base, tbl)::regclass
      AND a.attnum > 0 AND NOT a.attisdropped
      AND NOT EXISTS (SELECT 1 FROM cutover.hidden h
                      WHERE h.version_schema = version AND h.table_name = tbl
                        AND h.column_name = a.attname);
    IF cols IS NOT NULL THEN
        EXECUTE format('CREATE VIEW %I.%I AS SELECT %s FROM %I.%I', version, tbl, cols, base, tbl);
    END IF;
END
$f$;
";

/// Where a migration phase stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Progress {
    /// `applying`, `applied`, `reverting` or `reverted`.
    pub(crate) state: String,
    /// The last primary key the backfill finished, as text.
    pub(crate) cursor: Option<String>,
}

pub(crate) fn phase_name(phase: MigrationPhase) -> &'static str {
    match phase {
        MigrationPhase::Expand => "expand",
        MigrationPhase::Contract => "contract",
    }
}

/// Reads the progress of `migration` in `phase`, `None` when it never ran (or the `cutover`
/// schema does not exist yet).
pub(crate) async fn read(
    client: &Client,
    migration: &str,
    phase: MigrationPhase,
) -> Result<Option<Progress>, ProviderError> {
    let what = format!("reading the progress of migration `{migration}`");
    let exists = client
        .query_one("SELECT to_regclass('cutover.migrations') IS NOT NULL", &[])
        .await
        .map_err(|e| pg_error(&e, &what))?;
    if !exists.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT state, cursor FROM cutover.migrations WHERE migration = $1 AND phase = $2",
            &[&migration, &phase_name(phase)],
        )
        .await
        .map_err(|e| pg_error(&e, &what))?;
    Ok(row.map(|r| Progress {
        state: r.get(0),
        cursor: r.get(1),
    }))
}

/// SQL that records `state` for `migration` in `phase` (and clears the cursor when `reset`).
pub(crate) fn set_state_sql(
    migration: &str,
    phase: MigrationPhase,
    rollout: &str,
    state: &str,
    reset: bool,
) -> String {
    let (m, p, r, s) = (
        literal(migration),
        literal(phase_name(phase)),
        literal(rollout),
        literal(state),
    );
    let cursor = if reset {
        ", cursor = NULL, batches = 0"
    } else {
        ""
    };
    format!(
        "INSERT INTO cutover.migrations (migration, phase, rollout, state) VALUES ({m}, {p}, {r}, {s}) \
         ON CONFLICT (migration, phase) DO UPDATE SET state = EXCLUDED.state, rollout = EXCLUDED.rollout, \
         updated_at = now(){cursor};"
    )
}
