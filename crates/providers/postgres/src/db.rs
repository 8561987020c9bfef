//! The database handle: connection settings, lock timeouts with retries, error mapping.

use std::fmt;
use std::time::Duration;

use cutover_core::ProviderError;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};
use tracing::{debug, warn};

/// How backfills walk a table: rows per batch and the pause between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Rows updated per transaction.
    pub size: u32,
    /// Pause after each batch, leaving room for the application's own writes.
    pub pause: Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            size: 1000,
            pause: Duration::from_millis(10),
        }
    }
}

/// A PostgreSQL database that migration steps change.
///
/// Every step opens its own connection (named `cutover` in `pg_stat_activity`), sets
/// `lock_timeout` on it and retries a statement that timed out waiting for a lock, so a
/// migration never queues behind a long transaction while blocking everyone queued behind it.
///
/// ```
/// use std::time::Duration;
/// use cutover_postgres::{Batch, Postgres};
/// let db = Postgres::new("host=127.0.0.1 user=app dbname=shop")
///     .unwrap()
///     .lock_timeout(Duration::from_millis(500))
///     .batch(Batch { size: 500, pause: Duration::from_millis(20) })
///     .versioned_views("app");
/// assert_eq!(db.view_schema("v42"), Some("app_v42".to_owned()));
/// ```
#[derive(Clone)]
pub struct Postgres {
    config: Config,
    pub(crate) schema: String,
    pub(crate) lock_timeout: Duration,
    pub(crate) lock_retries: u32,
    pub(crate) retry_pause: Duration,
    pub(crate) batch: Batch,
    pub(crate) view_prefix: Option<String>,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config holds the password: show where, not how.
        f.debug_struct("Postgres")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("schema", &self.schema)
            .field("lock_timeout", &self.lock_timeout)
            .field("batch", &self.batch)
            .field("view_prefix", &self.view_prefix)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// A database from a libpq-style connection string (`host=... user=... dbname=...`) or a
    /// `postgresql://` URL. Tables live in schema `public` unless [`schema`](Self::schema) says
    /// otherwise. Defaults: connect timeout 10 s (unless the string sets one), lock timeout 2 s,
    /// 10 retries 200 ms apart, batches of 1000 rows with a 10 ms pause, no versioned views.
    /// Sessions are named `cutover` (`application_name`).
    pub fn new(connection: &str) -> Result<Self, ProviderError> {
        let mut config: Config = connection.parse().map_err(|e| {
            ProviderError::permanent("invalid PostgreSQL connection string").with_source(e)
        })?;
        config.application_name("cutover");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        Ok(Self::from_config(config))
    }

    /// A database from a `tokio_postgres` config.
    pub fn from_config(config: Config) -> Self {
        Postgres {
            config,
            schema: "public".to_owned(),
            lock_timeout: Duration::from_secs(2),
            lock_retries: 10,
            retry_pause: Duration::from_millis(200),
            batch: Batch::default(),
            view_prefix: None,
        }
    }

    /// The schema that holds the tables (default `public`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How long a statement waits for a lock before it gives up and is retried (default 2 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How often a statement that hit the lock timeout is retried, and the pause between
    /// tries (default 10 times, 200 ms).
    pub fn lock_retries(mut self, retries: u32, pause: Duration) -> Self {
        self.lock_retries = retries;
        self.retry_pause = pause;
        self
    }

    /// The size of backfill batches and the pause between them.
    pub fn batch(mut self, batch: Batch) -> Self {
        self.batch = batch;
        self
    }

    /// Keeps a schema of views per application version, named `{prefix}_{revision}`
    /// (`app_v41`, `app_v42`), as pgroll does: each version's views show the columns that
    /// version expects, under the names it expects. An application version runs with
    /// `search_path = {prefix}_{revision}, <schema>` so tables no migration touches are found
    /// in the base schema.
    pub fn versioned_views(mut self, prefix: impl Into<String>) -> Self {
        self.view_prefix = Some(prefix.into());
        self
    }

    /// The view schema of `revision`, if versioned views are on.
    pub fn view_schema(&self, revision: &str) -> Option<String> {
        self.view_prefix
            .as_ref()
            .map(|prefix| format!("{prefix}_{revision}"))
    }

    /// Connects, with `lock_timeout` set on the session.
    pub(crate) async fn connect(&self) -> Result<Client, ProviderError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(&e, "connecting to PostgreSQL"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        let timeout = self.lock_timeout.as_millis().max(1);
        client
            .batch_execute(&format!("SET lock_timeout = '{timeout}ms'"))
            .await
            .map_err(|e| pg_error(&e, "setting lock_timeout"))?;
        Ok(client)
    }

    /// Runs `sql` (several statements) in one transaction, retrying it when it times out
    /// waiting for a lock. `what` names the work in errors.
    pub(crate) async fn transaction(
        &self,
        client: &Client,
        sql: &str,
        what: &str,
    ) -> Result<(), ProviderError> {
        let sql = format!("BEGIN;\n{sql};\nCOMMIT;");
        self.retrying(what, || async {
            let result = client.batch_execute(&sql).await;
            if result.is_err() {
                // After an error inside the batch the transaction is still open, aborted.
                // Best effort: a broken connection has nothing left to roll back.
                let _ = client.batch_execute("ROLLBACK").await;
            }
            result
        })
        .await
    }

    /// Runs `sql` outside a transaction (for `CREATE INDEX CONCURRENTLY`), with retries.
    pub(crate) async fn outside_transaction(
        &self,
        client: &Client,
        sql: &str,
        what: &str,
    ) -> Result<(), ProviderError> {
        self.retrying(what, || client.batch_execute(sql)).await
    }

    /// Calls `f` until it succeeds or fails with anything but a lock timeout (or deadlock),
    /// at most `1 + lock_retries` times.
    pub(crate) async fn retrying<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Ok(value) => return Ok(value),
                Err(e) if is_lock_conflict(&e) && attempt < self.lock_retries => {
                    attempt += 1;
                    warn!(what, attempt, error = %e, "lock not available; retrying");
                    tokio::time::sleep(self.retry_pause).await;
                }
                Err(e) => return Err(pg_error(&e, what)),
            }
        }
    }
}

fn is_lock_conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// Maps a PostgreSQL error to a provider error kind, naming `what` failed.
pub(crate) fn pg_error(e: &tokio_postgres::Error, what: &str) -> ProviderError {
    let detail = e.as_db_error().map_or_else(
        || e.to_string(),
        |db| format!("{}: {}", db.code().code(), db.message()),
    );
    let message = format!("{what}: {detail}");
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or was closed.
        return ProviderError::transient(message);
    };
    let transient = [
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::QUERY_CANCELED,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
    ];
    if code.code().starts_with("08") || transient.contains(code) {
        ProviderError::transient(message)
    } else if *code == SqlState::TOO_MANY_CONNECTIONS {
        ProviderError::throttled(message)
    } else {
        ProviderError::permanent(message)
    }
}
