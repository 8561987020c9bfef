//! What every statement goes through: a pooled connection, the statement cache, the count of
//! round trips, the JSON columns, and the one place PostgreSQL errors are classified.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};

use cutover_core::{ProviderError, StoreError};

pub(crate) use crate::error::Detail;
use deadpool_postgres::{Object, Pool, PoolError};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};

/// Parameters of a statement.
pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// The pool and the round-trip counter shared by every clone of a store.
#[derive(Debug)]
pub(crate) struct Db {
    pool: Pool,
    /// Statements sent (each one round trip), statements prepared (one more each), and
    /// transactions begun and ended (one each).
    trips: AtomicU64,
}

impl Db {
    pub(crate) fn new(pool: Pool) -> Self {
        Db {
            pool,
            trips: AtomicU64::new(0),
        }
    }

    /// Round trips to the database so far.
    pub(crate) fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self, trips: u64) {
        self.trips.fetch_add(trips, Ordering::Relaxed);
    }

    /// A connection from the pool.
    pub(crate) async fn conn(&self, what: &str) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| pool_error(what, e))
    }

    /// Runs one statement, prepared once per connection, and returns its rows.
    pub(crate) async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn(what).await?;
        self.query_on(&conn, what, sql, params).await
    }

    /// Runs one statement on `conn`.
    pub(crate) async fn query_on(
        &self,
        conn: &Object,
        what: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let cached = conn.statement_cache.size();
        let statement = conn
            .prepare_cached(sql)
            .await
            .map_err(|e| db_error(what, &e))?;
        let prepared = u64::from(conn.statement_cache.size() != cached);
        self.count(1 + prepared);
        conn.query(&statement, params)
            .await
            .map_err(|e| db_error(what, &e))
    }

    /// Runs one statement and returns its only row, if any.
    pub(crate) async fn query_opt(
        &self,
        what: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(what, sql, params).await?.into_iter().next())
    }
}

/// A JSON document already serialized, written to and read from `json`/`jsonb` columns as is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawJson<'a>(pub(crate) &'a [u8]);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // The binary jsonb format: a version byte, then the text.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for RawJson<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            return match raw.split_first() {
                Some((1, text)) => Ok(RawJson(text)),
                _ => Err("unsupported jsonb encoding version".into()),
            };
        }
        Ok(RawJson(raw))
    }

    accepts!(JSON, JSONB);
}

/// Classifies a PostgreSQL error: a lost or refused connection, a server shutting down or out
/// of resources, a serialization failure or a deadlock may pass (transient); anything else is
/// a bug or a broken schema (permanent). The message says what was being done; the source
/// carries the server's words, never the connection string.
pub(crate) fn db_error(what: &str, err: &tokio_postgres::Error) -> StoreError {
    let message = format!("PostgreSQL: {what} failed");
    let transient = match err.code() {
        Some(code) => {
            let code = code.code();
            // 08: connection exception; 40: transaction rollback (serialization, deadlock);
            // 53: insufficient resources; 57P: operator intervention (shutdown, restart).
            code.starts_with("08")
                || code.starts_with("40")
                || code.starts_with("53")
                || code.starts_with("57P")
        }
        // No SQLSTATE: the connection closed or could not be made, or an I/O error.
        None => err.is_closed() || has_io_source(err),
    };
    let error = if transient {
        ProviderError::transient(message)
    } else {
        ProviderError::permanent(message)
    };
    let text = match err.as_db_error() {
        Some(db) => db.to_string(),
        None => crate::error::chain(err),
    };
    StoreError::Provider(error.with_source(ServerError {
        code: err.code().map(|c| c.code().to_owned()),
        text,
    }))
}

/// What the server (or the connection) said, with its SQLSTATE when there is one.
#[derive(Debug)]
pub(crate) struct ServerError {
    pub(crate) code: Option<String>,
    text: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for ServerError {}

/// Whether a store error is the server's SQLSTATE `code`.
pub(crate) fn is_sqlstate(err: &StoreError, code: &str) -> bool {
    let StoreError::Provider(e) = err else {
        return false;
    };
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<ServerError>())
        .is_some_and(|s| s.code.as_deref() == Some(code))
}

/// The SQLSTATE of a unique violation: another writer was first.
pub(crate) const UNIQUE_VIOLATION: &str = "23505";

/// A phase as stored in the `phase` column: its serialized name (`rolling_back`).
pub(crate) fn phase_name(phase: cutover_core::state::Phase) -> &'static str {
    use cutover_core::state::Phase;
    match phase {
        Phase::PreFlight => "pre_flight",
        Phase::Expanding => "expanding",
        Phase::Progressing => "progressing",
        Phase::Promoting => "promoting",
        Phase::RollingBack => "rolling_back",
        Phase::Done => "done",
    }
}

fn has_io_source(err: &tokio_postgres::Error) -> bool {
    let mut source = err.source();
    while let Some(e) = source {
        if e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A pool failure: the database could not be reached in time (transient), or the pool is
/// misconfigured (permanent).
pub(crate) fn pool_error(what: &str, err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(e) => db_error(what, &e),
        PoolError::Timeout(kind) => StoreError::Provider(
            ProviderError::transient(format!(
                "PostgreSQL: {what} failed: no connection within the pool's {kind:?} timeout"
            ))
            .with_source(Detail(format!("{kind:?} timeout"))),
        ),
        other => StoreError::Provider(
            ProviderError::permanent(format!("PostgreSQL: {what} failed"))
                .with_source(Detail(other.to_string())),
        ),
    }
}

/// A `u64` as PostgreSQL's `bigint`; values past `i64::MAX` (never reached by versions,
/// sequence numbers or milliseconds since 1970) saturate.
pub(crate) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `bigint` read back as `u64`; negative values (never written) read as zero.
pub(crate) fn unbig(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Milliseconds of a duration as `bigint`.
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
