//! PostgreSQL: connection headroom, no long transactions or lock waiters on the tables a
//! migration touches, replication lag, and expand/contract migrations left pending.

mod migrations;
mod replication;

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::Deserialize;

pub use self::migrations::MigrationsCheck;
pub use self::replication::ReplicationCheck;

/// Where the connection string comes from: an environment variable (`url_env`, preferred: the
/// string holds a password) or the checklist (`url`). Only host, port, user and database are
/// ever shown.
#[derive(Clone)]
struct Database {
    source: Source,
}

#[derive(Clone)]
enum Source {
    Env(String),
    Inline(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Env(name) => write!(f, "Database(from ${name})"),
            Source::Inline(_) => f.write_str("Database(***)"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseParams {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
}

impl Database {
    fn from_params(p: DatabaseParams) -> Result<Self, (String, String)> {
        match (p.url, p.url_env) {
            (Some(url), None) => {
                tokio_postgres::Config::from_str(&url).map_err(|_| {
                    (
                        "url".to_owned(),
                        "not a PostgreSQL connection string".to_owned(),
                    )
                })?;
                Ok(Database {
                    source: Source::Inline(url),
                })
            }
            (None, Some(name)) => Ok(Database {
                source: Source::Env(name),
            }),
            _ => Err((
                String::new(),
                "give `url_env` (the variable holding the connection string) or `url`".into(),
            )),
        }
    }

    /// A connected client and the target shown to people (`user@host:port/db`).
    async fn connect(&self) -> Result<(tokio_postgres::Client, String), CheckResult> {
        let text = match &self.source {
            Source::Inline(url) => url.clone(),
            Source::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => v,
                _ => {
                    return Err(CheckResult::error(format!("`{name}` is not set"))
                        .hint(format!("set `{name}` to the database's connection string")));
                }
            },
        };
        let Ok(config) = tokio_postgres::Config::from_str(&text) else {
            return Err(CheckResult::error("the connection string does not parse"));
        };
        let host = config
            .get_hosts()
            .first()
            .map_or_else(String::new, |h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            });
        let target = format!(
            "{}@{host}:{}/{}",
            config.get_user().unwrap_or(""),
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_dbname().unwrap_or("")
        );
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok((client, target))
            }
            // The driver's errors name the host, never the password.
            Err(e) => Err(
                CheckResult::error(format!("cannot connect to {target}: {e}"))
                    .hint("check that the database is up and the credentials are right")
                    .evidence("database", &target),
            ),
        }
    }
}

/// At least `min_free_percent` of `max_connections` is free (superuser-reserved slots not
/// counted as free).
///
/// ```yaml
/// postgres_connections: { url_env: DATABASE_URL, min_free_percent: 20 }
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionsCheck {
    db: Database,
    min_free_percent: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectionsParams {
    #[serde(flatten)]
    db: DatabaseParams,
    min_free_percent: f64,
}

impl ConnectionsCheck {
    pub(crate) fn from_params(p: ConnectionsParams) -> Result<Self, (String, String)> {
        if !(0.0..=100.0).contains(&p.min_free_percent) {
            return Err((
                "min_free_percent".into(),
                "must be between 0 and 100".into(),
            ));
        }
        Ok(ConnectionsCheck {
            db: Database::from_params(p.db)?,
            min_free_percent: p.min_free_percent,
        })
    }
}

#[async_trait]
impl Check for ConnectionsCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let (client, target) = match self.db.connect().await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let row = match client
            .query_one(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
                        current_setting('max_connections')::bigint,
                        current_setting('superuser_reserved_connections')::bigint",
                &[],
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return CheckResult::error(format!("{target}: {e}")),
        };
        let (used, max, reserved): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let usable = (max - reserved).max(1);
        #[allow(clippy::cast_precision_loss)] // connection counts
        let free = ((usable - used).max(0) as f64) * 100.0 / usable as f64;
        let free = (free * 10.0).round() / 10.0;
        let result = if free < self.min_free_percent {
            CheckResult::fail(format!(
                "{target}: {used} of {usable} connections used, {free}% free, {}% needed",
                self.min_free_percent
            ))
            .hint("a rollout briefly doubles the pool: close idle connections, add a pooler, or raise max_connections")
        } else {
            CheckResult::pass(format!(
                "{target}: {used} of {usable} connections used ({free}% free)"
            ))
        };
        result
            .evidence("database", &target)
            .evidence("used", used)
            .evidence("usable", usable)
            .evidence("free_percent", free)
    }
}

/// No transaction has been open longer than `max_transaction_age`, and no session waits for a
/// lock, on the listed `tables` (or anywhere in the database when none are listed): a
/// migration would queue behind them and block everything after it.
///
/// ```yaml
/// postgres_activity: { url_env: DATABASE_URL, max_transaction_age: 5m, tables: [orders, customers] }
/// ```
#[derive(Debug, Clone)]
pub struct ActivityCheck {
    db: Database,
    max_age: Duration,
    tables: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivityParams {
    #[serde(flatten)]
    db: DatabaseParams,
    #[serde(deserialize_with = "crate::duration")]
    max_transaction_age: Option<Duration>,
    #[serde(default)]
    tables: Vec<String>,
}

impl ActivityCheck {
    pub(crate) fn from_params(p: ActivityParams) -> Result<Self, (String, String)> {
        Ok(ActivityCheck {
            db: Database::from_params(p.db)?,
            max_age: p
                .max_transaction_age
                .ok_or(("max_transaction_age".to_owned(), "missing".to_owned()))?,
            tables: p.tables,
        })
    }
}

#[async_trait]
impl Check for ActivityCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let (client, target) = match self.db.connect().await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let secs = self.max_age.as_secs_f64();
        // Sessions (other than this one) in a transaction older than the limit, or waiting
        // for a lock; with tables, only those holding or awaiting a lock on one of them.
        let sql = "
            SELECT a.pid, coalesce(a.usename, ''), a.state,
                   extract(epoch FROM now() - a.xact_start)::float8,
                   a.wait_event_type IS NOT DISTINCT FROM 'Lock',
                   coalesce(string_agg(DISTINCT c.relname, ',' ORDER BY c.relname), '')
              FROM pg_stat_activity a
              LEFT JOIN pg_locks l ON l.pid = a.pid AND l.relation IS NOT NULL
              LEFT JOIN pg_class c ON c.oid = l.relation
             WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
               AND a.backend_type = 'client backend'
               AND (now() - a.xact_start > make_interval(secs => $1)
                    OR a.wait_event_type IS NOT DISTINCT FROM 'Lock')
             GROUP BY a.pid, a.usename, a.state, a.xact_start, a.wait_event_type
            HAVING cardinality($2::text[]) = 0 OR bool_or(c.relname = ANY($2::text[]))
             ORDER BY a.xact_start";
        let rows = match client.query(sql, &[&secs, &self.tables]).await {
            Ok(r) => r,
            Err(e) => return CheckResult::error(format!("{target}: {e}")),
        };
        let found: Vec<String> = rows
            .iter()
            .map(|r| {
                let (pid, user, state): (i32, String, Option<String>) =
                    (r.get(0), r.get(1), r.get(2));
                let age: Option<f64> = r.get(3);
                let waiting: bool = r.get(4);
                let tables: String = r.get(5);
                format!(
                    "pid {pid} ({user}, {}{}) {}{}",
                    state.unwrap_or_default(),
                    if waiting { ", waiting for a lock" } else { "" },
                    age.map_or_else(String::new, |a| format!("in a transaction for {a:.0}s")),
                    if tables.is_empty() {
                        String::new()
                    } else {
                        format!(" on {tables}")
                    }
                )
            })
            .collect();
        let scope = if self.tables.is_empty() {
            "the database".to_owned()
        } else {
            self.tables.join(", ")
        };
        let result = if found.is_empty() {
            CheckResult::pass(format!(
                "{target}: no transaction older than {} and no lock waiters on {scope}",
                humantime::format_duration(self.max_age)
            ))
        } else {
            CheckResult::fail(format!("{target}: {}", found.join("; ")))
                .hint("wait for these to finish or end them (pg_cancel_backend) before migrating: a migration would queue behind them and block every query after it")
        };
        result
            .evidence("database", &target)
            .evidence("tables", &self.tables)
            .evidence("sessions", found)
    }
}
