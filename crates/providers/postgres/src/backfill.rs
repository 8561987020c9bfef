//! Batched backfills by primary key, resumable from the cursor saved with each batch.

use cutover_core::{MigrationPhase, ProviderError};
use tokio_postgres::Client;
use tracing::debug;

use crate::db::{Postgres, pg_error};
use crate::operation::Backfill;
use crate::progress::phase_name;
use crate::sql::ident;

/// Runs `backfill` from `cursor` (the last primary key done) to the end of the table. Each
/// batch updates at most `db.batch.size` rows and moves the cursor in the same transaction, so
/// a crash loses no batch and repeats none.
pub(crate) async fn run(
    db: &Postgres,
    client: &Client,
    migration: &str,
    backfill: &Backfill,
    mut cursor: Option<String>,
) -> Result<(), ProviderError> {
    let what = format!(
        "backfilling `{}.{}` for migration `{migration}`",
        backfill.table, backfill.column
    );
    let (key, key_type) = primary_key(client, &db.schema, &backfill.table, &what).await?;
    let table = format!("{}.{}", ident(&db.schema), ident(&backfill.table));
    let batch = format!(
        "WITH done AS (UPDATE {table} SET {column} = ({expr}) WHERE {key} IN \
           (SELECT {key} FROM {table} WHERE $1::text IS NULL OR {key} > $1::text::{key_type} \
            ORDER BY {key} LIMIT {size}) RETURNING {key}) \
         SELECT max({key})::text FROM done",
        column = ident(&backfill.column),
        expr = backfill.expr,
        key = ident(&key),
        size = db.batch.size.max(1),
    );
    let save = "UPDATE cutover.migrations SET cursor = $1, batches = batches + 1, updated_at = now() \
                WHERE migration = $2 AND phase = $3";
    let phase = phase_name(MigrationPhase::Expand);
    loop {
        let next = db
            .retrying(&what, || async {
                client.batch_execute("BEGIN").await?;
                let result = async {
                    let next: Option<String> = client.query_one(&batch, &[&cursor]).await?.get(0);
                    if next.is_some() {
                        client.execute(save, &[&next, &migration, &phase]).await?;
                    }
                    client.batch_execute("COMMIT").await?;
                    Ok(next)
                }
                .await;
                if result.is_err() {
                    // Best effort: a broken connection has no transaction left to roll back.
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                result
            })
            .await?;
        let Some(next) = next else {
            return Ok(());
        };
        debug!(migration, cursor = %next, "backfill batch done");
        cursor = Some(next);
        tokio::time::sleep(db.batch.pause).await;
    }
}

/// The single-column primary key of `schema.table` and its type.
async fn primary_key(
    client: &Client,
    schema: &str,
    table: &str,
    what: &str,
) -> Result<(String, String), ProviderError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = format('%I.%I', $1::text, $2::text)::regclass AND i.indisprimary",
            &[&schema, &table],
        )
        .await
        .map_err(|e| pg_error(&e, what))?;
    match rows.as_slice() {
        [row] => Ok((row.get(0), row.get(1))),
        _ => Err(ProviderError::permanent(format!(
            "{what}: table `{schema}.{table}` needs a single-column primary key to backfill by"
        ))),
    }
}
