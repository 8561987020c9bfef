//! Replication lag, on a primary (every replica it streams to) or on a replica (its own).

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::{Deserialize, Serialize};

use super::{Database, DatabaseParams};

/// Replicas are in sync: at most `max_lag` behind in time and `max_lag_bytes` behind in WAL,
/// and, on a primary, at least `min_replicas` (default 1) streaming.
///
/// Pointed at a **primary**, it reads `pg_stat_replication`: a replica's byte lag is how far
/// its replayed WAL is behind the primary's current WAL position, its time lag is
/// PostgreSQL's `replay_lag` (measured when the replica reports; empty, so 0, when it has
/// caught up and nothing is written). A replica that stopped replaying shows in bytes first:
/// set `max_lag_bytes` to catch it. Pointed at a **replica** (`pg_is_in_recovery()`), it
/// checks its own WAL receiver is streaming (unless `min_replicas` is 0), the WAL received but
/// not yet replayed (bytes), and the time since the last replayed transaction while anything
/// is left to replay.
///
/// ```yaml
/// postgres_replication_lag: { url_env: PRIMARY_URL, max_lag: 5s, max_lag_bytes: 16777216, min_replicas: 2 }
/// ```
#[derive(Debug, Clone)]
pub struct ReplicationCheck {
    db: Database,
    max_lag: Option<Duration>,
    max_lag_bytes: Option<u64>,
    min_replicas: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplicationParams {
    #[serde(flatten)]
    db: DatabaseParams,
    #[serde(default, deserialize_with = "crate::duration")]
    max_lag: Option<Duration>,
    #[serde(default)]
    max_lag_bytes: Option<u64>,
    #[serde(default)]
    min_replicas: Option<u32>,
}

impl ReplicationCheck {
    pub(crate) fn from_params(p: ReplicationParams) -> Result<Self, (String, String)> {
        let min_replicas = p.min_replicas.unwrap_or(1);
        if p.max_lag.is_none() && p.max_lag_bytes.is_none() && min_replicas == 0 {
            return Err((
                String::new(),
                "nothing to check: give `max_lag`, `max_lag_bytes` or a `min_replicas` above 0"
                    .into(),
            ));
        }
        Ok(ReplicationCheck {
            db: Database::from_params(p.db)?,
            max_lag: p.max_lag,
            max_lag_bytes: p.max_lag_bytes,
            min_replicas,
        })
    }

    /// What is over a limit, in words, for one lag measured in bytes and seconds.
    fn over(&self, who: &str, bytes: Option<i64>, seconds: Option<f64>) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(limit), Some(b)) = (self.max_lag_bytes, bytes)
            && u64::try_from(b).is_ok_and(|b| b > limit)
        {
            out.push(format!("{who} is {b} bytes of WAL behind (limit {limit})"));
        }
        if let (Some(limit), Some(s)) = (self.max_lag, seconds)
            && s > limit.as_secs_f64()
        {
            out.push(format!(
                "{who} is {s:.3}s behind (limit {})",
                humantime::format_duration(limit)
            ));
        }
        out
    }

    fn limits(&self) -> String {
        let mut out = String::new();
        if let Some(b) = self.max_lag_bytes {
            let _ = write!(out, ", at most {b} bytes");
        }
        if let Some(t) = self.max_lag {
            let _ = write!(out, ", at most {}", humantime::format_duration(t));
        }
        out
    }

    async fn on_primary(&self, client: &tokio_postgres::Client, target: &str) -> CheckResult {
        let sql = "
            SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, ''),
                   coalesce(host(client_addr), ''),
                   pg_wal_lsn_diff(pg_current_wal_lsn(), sent_lsn)::bigint,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), write_lsn)::bigint,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
                   extract(epoch FROM write_lag)::float8,
                   extract(epoch FROM flush_lag)::float8,
                   extract(epoch FROM replay_lag)::float8
              FROM pg_stat_replication
             ORDER BY application_name, pid";
        let rows = match client.query(sql, &[]).await {
            Ok(r) => r,
            Err(e) => return CheckResult::error(format!("{target}: {e}")),
        };
        let replicas: Vec<Replica> = rows
            .iter()
            .map(|r| Replica {
                application_name: r.get(0),
                state: r.get(1),
                sync_state: r.get(2),
                client_addr: r.get(3),
                sent_lag_bytes: r.get(4),
                write_lag_bytes: r.get(5),
                flush_lag_bytes: r.get(6),
                replay_lag_bytes: r.get(7),
                write_lag_seconds: r.get(8),
                flush_lag_seconds: r.get(9),
                // Empty once caught up with nothing new to replay.
                replay_lag_seconds: r.get::<_, Option<f64>>(10).or(Some(0.0)),
            })
            .collect();
        let streaming = replicas.iter().filter(|r| r.state == "streaming").count();
        let mut problems = Vec::new();
        let mut hints = Vec::new();
        if streaming < self.min_replicas as usize {
            let names: Vec<String> = replicas
                .iter()
                .map(|r| format!("{} ({})", r.application_name, r.state))
                .collect();
            problems.push(format!(
                "{streaming} of {} required replicas streaming{}",
                self.min_replicas,
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", names.join(", "))
                }
            ));
            hints.push("start the missing replicas, or check their primary_conninfo and the primary's pg_hba.conf replication entries and max_wal_senders: a failover now could lose writes");
        }
        let lagging: Vec<String> = replicas
            .iter()
            .flat_map(|r| {
                self.over(
                    &format!("replica {}", r.application_name),
                    r.replay_lag_bytes,
                    r.replay_lag_seconds,
                )
            })
            .collect();
        if !lagging.is_empty() {
            problems.extend(lagging);
            hints.push(LAG_HINT);
        }
        let result = if problems.is_empty() {
            CheckResult::pass(format!(
                "{target}: {streaming} replicas streaming (at least {} needed{})",
                self.min_replicas,
                self.limits()
            ))
        } else {
            CheckResult::fail(format!("{target}: {}", problems.join("; "))).hint(hints.join("; "))
        };
        result
            .evidence("database", target)
            .evidence("role", "primary")
            .evidence("streaming", streaming)
            .evidence("min_replicas", self.min_replicas)
            .evidence("replicas", replicas)
    }

    async fn on_replica(&self, client: &tokio_postgres::Client, target: &str) -> CheckResult {
        // Time lag: since the last replayed transaction, while WAL waits to be replayed
        // (an idle primary sends nothing, and a replica with nothing to replay is not behind).
        let sql = "
            SELECT (SELECT status FROM pg_stat_wal_receiver),
                   pg_is_wal_replay_paused(),
                   pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
                   CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                        THEN 0
                        ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                   END";
        let row = match client.query_one(sql, &[]).await {
            Ok(r) => r,
            Err(e) => return CheckResult::error(format!("{target}: {e}")),
        };
        let receiver: Option<String> = row.get(0);
        let paused: bool = row.get(1);
        let bytes: Option<i64> = row.get(2);
        let seconds: Option<f64> = row.get(3);
        let mut problems = Vec::new();
        let mut hints = Vec::new();
        if self.min_replicas > 0 && receiver.as_deref() != Some("streaming") {
            problems.push(format!(
                "this replica's WAL receiver is {}",
                receiver.as_deref().unwrap_or("not running")
            ));
            hints.push("check the replica's primary_conninfo and that the primary is up and lets it connect (pg_hba.conf replication entries, max_wal_senders)");
        }
        let lagging = self.over("this replica", bytes, seconds);
        if !lagging.is_empty() {
            problems.extend(lagging);
            if paused {
                problems.push("WAL replay is paused".to_owned());
                hints.push("resume WAL replay on the replica: SELECT pg_wal_replay_resume()");
            }
            hints.push(LAG_HINT);
        }
        let result = if problems.is_empty() {
            CheckResult::pass(format!(
                "{target}: replica {}{}",
                receiver.as_deref().unwrap_or("not receiving"),
                self.limits()
            ))
        } else {
            CheckResult::fail(format!("{target}: {}", problems.join("; "))).hint(hints.join("; "))
        };
        result
            .evidence("database", target)
            .evidence("role", "replica")
            .evidence("receiver", receiver)
            .evidence("replay_paused", paused)
            .evidence("replay_lag_bytes", bytes)
            .evidence("replay_lag_seconds", seconds)
    }
}

const LAG_HINT: &str = "wait for the replicas to catch up before migrating (a migration's writes add lag): look for a paused replay (pg_wal_replay_resume()), long queries on the replicas holding replay back (max_standby_streaming_delay), or a saturated disk or network";

/// What the primary reports of one replica.
#[derive(Debug, Serialize)]
struct Replica {
    application_name: String,
    state: String,
    sync_state: String,
    client_addr: String,
    sent_lag_bytes: Option<i64>,
    write_lag_bytes: Option<i64>,
    flush_lag_bytes: Option<i64>,
    replay_lag_bytes: Option<i64>,
    write_lag_seconds: Option<f64>,
    flush_lag_seconds: Option<f64>,
    replay_lag_seconds: Option<f64>,
}

#[async_trait]
impl Check for ReplicationCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let (client, target) = match self.db.connect().await {
            Ok(c) => c,
            Err(r) => return r,
        };
        match client.query_one("SELECT pg_is_in_recovery()", &[]).await {
            Ok(row) if row.get::<_, bool>(0) => self.on_replica(&client, &target).await,
            Ok(_) => self.on_primary(&client, &target).await,
            Err(e) => CheckResult::error(format!("{target}: {e}")),
        }
    }
}
