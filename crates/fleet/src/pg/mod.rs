//! [`PgStateStore`]: the [`StateStore`] contract on PostgreSQL.

mod lease;
pub(crate) mod listen;
pub(crate) mod schema;
pub(crate) mod sql;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::store::kit::{
    check_command, decode_state, encode, encode_state, find_duplicate, new_records,
};
use cutover_core::{
    Acquired, Claim, CommandRequest, DecisionRecord, Lease, ListFilter, QueuedCommand, RolloutId,
    RolloutState, StateStore, StoreError, Stored, Summary, Timestamp, Watch,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use self::listen::Listener;
use self::sql::{Db, RawJson, UNIQUE_VIOLATION, big, is_sqlstate, phase_name, unbig};
use crate::DatabaseUrl;
use crate::error::ConnectError;
use crate::fence::FenceToken;
use crate::pg::sql::Detail;

/// How a [`PgStateStore`] connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgOptions {
    /// Connections in the pool (default 16). The LISTEN connection is one more.
    pub pool_size: usize,
    /// How long a caller waits for a free connection, or for a new one to open, before the
    /// call fails as transient (default 10 s).
    pub wait_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            wait_timeout: Duration::from_secs(10),
        }
    }
}

impl PgOptions {
    /// Sets the pool size (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets the wait for a connection.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }
}

/// A [`StateStore`] on PostgreSQL, shared by every process that reaches the database: the
/// store of a fleet of [workers](crate::Worker), and of command lines and dashboards that
/// watch and steer their rollouts.
///
/// - **State**: one row per rollout in `cutover_rollouts` (the state as `json`, its
///   version, phase and owner lease); a save is one `UPDATE ... WHERE version = $expected`.
/// - **Decision log** and **inbox**: the tables `cutover_log` and `cutover_inbox`, keyed by
///   rollout and `seq`; appends are idempotent by `seq`.
/// - **Leases** expire: `acquire` and `renew` follow the claimant's clock (as the file store
///   does); fenced writes and fleet claims follow the database's clock (`lease_deadline`).
///   The epoch rises with every new owner and survives a release: it is the fencing token.
/// - **Watching**: commands are pushed with LISTEN/NOTIFY ([`Watch::Notified`]), so a
///   command reaches its engine within milliseconds.
/// - **Schema**: created and upgraded when the store connects, by migrations embedded in the
///   crate ([`SCHEMA_VERSION`](crate::SCHEMA_VERSION)); a newer schema is refused.
///
/// Every query is parameterised. The connection string never appears in `Debug`, logs,
/// errors or records: only [where it points](DatabaseUrl::target).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_fleet::{DatabaseUrl, PgStateStore};
/// let url: DatabaseUrl = std::env::var("DATABASE_URL")?.parse()?;
/// let store = PgStateStore::connect(&url).await?;
/// let rollout = cutover_core::Rollout::builder("checkout", cutover_core::Canary::new([]))
///     .state_store(store.clone());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgStateStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    url: DatabaseUrl,
    listener: Arc<Listener>,
}

impl fmt::Debug for PgStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStateStore")
            .field("target", &self.inner.url.target())
            .finish_non_exhaustive()
    }
}

impl PgStateStore {
    /// Connects with the default options, and creates or upgrades the schema.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, ConnectError> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// Connects, and creates or upgrades the schema.
    pub async fn connect_with(url: &DatabaseUrl, options: PgOptions) -> Result<Self, ConnectError> {
        let target = url.target().to_owned();
        let manager = Manager::from_config(
            url.config().clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.wait_timeout))
            .build()
            .map_err(|e| ConnectError::Pool {
                target: target.clone(),
                source: Detail(e.to_string()),
            })?;
        let db = Db::new(pool);
        let mut conn = db
            .conn("connecting")
            .await
            .map_err(|source| ConnectError::Unreachable {
                target: target.clone(),
                source,
            })?;
        let applied = schema::migrate(&mut conn, &target).await?;
        if !applied.is_empty() {
            tracing::info!(target = %target, versions = ?applied, "cutover schema migrated");
        }
        drop(conn);
        let listener = Listener::start(url.config().clone());
        Ok(PgStateStore {
            inner: Arc::new(Inner {
                db,
                url: url.clone(),
                listener,
            }),
        })
    }

    /// Where the store points (`user@host:port/dbname`; never the password).
    pub fn target(&self) -> &str {
        self.inner.url.target()
    }

    /// Round trips this store (all its clones) made to the database so far: statements sent,
    /// statements prepared (once per pooled connection), transactions begun and ended. The
    /// LISTEN connection's traffic is not counted.
    pub fn round_trips(&self) -> u64 {
        self.inner.db.round_trips()
    }

    /// Whether the LISTEN connection is up (commands are pushed); while it is down, engines
    /// notice commands only at their next lease renewal.
    pub fn is_listening(&self) -> bool {
        self.inner.listener.is_listening()
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    pub(crate) fn listener(&self) -> &Listener {
        &self.inner.listener
    }

    /// The version found when a save did not apply, and who holds the lease.
    async fn diagnose(&self, id: &RolloutId) -> Result<Diagnosis, StoreError> {
        let row = self
            .db()
            .query_opt(
                "checking a conflicting save",
                "SELECT version, lease_owner, lease_epoch, lease_deadline > now() \
                 FROM cutover_rollouts WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        Ok(match row {
            Some(row) => Diagnosis {
                version: row.get::<_, Option<i64>>(0).map(unbig),
                owner: row.get(1),
                epoch: unbig(row.get(2)),
                live: row.get::<_, Option<bool>>(3).unwrap_or(false),
            },
            None => Diagnosis {
                version: None,
                owner: None,
                epoch: 0,
                live: false,
            },
        })
    }

    /// Saves with compare-and-swap and, when `fence` is given, only while its lease is held
    /// and live on the database's clock; the records the state carries are appended to the
    /// log in the same statement, and a final state closes the fleet's row of the rollout in
    /// it too (so a finished rollout never stays open, whatever happens to its worker next). Returns the new version and whether the log now holds every
    /// record the state carries.
    pub(crate) async fn save_fenced(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
        fence: &FenceToken,
    ) -> Result<(u64, bool), StoreError> {
        let bytes = encode_state(id, state)?;
        let records = encode_records(id, &state.unlogged)?;
        let seqs: Vec<i64> = state.unlogged.iter().map(|r| big(r.seq)).collect();
        let jsons: Vec<RawJson<'_>> = records.iter().map(|r| RawJson(r)).collect();
        let row = self
            .db()
            .query_opt(
                "saving state",
                "WITH saved AS ( \
                   UPDATE cutover_rollouts \
                   SET version = coalesce(version, 0) + 1, state = $2, phase = $3, updated_ms = $4 \
                   WHERE id = $1 AND version IS NOT DISTINCT FROM $5 \
                     AND lease_owner = $6 AND lease_epoch = $7 AND lease_deadline > now() \
                   RETURNING version), \
                 last AS (SELECT coalesce(max(seq), 0) AS n FROM cutover_log WHERE id = $1), \
                 logged AS ( \
                   INSERT INTO cutover_log (id, seq, epoch, record) \
                   SELECT $1, t.seq, $7, t.record \
                   FROM unnest($8::bigint[], $9::json[]) AS t(seq, record), last \
                   WHERE EXISTS (SELECT 1 FROM saved) AND t.seq > last.n \
                     AND $8[1] <= last.n + 1 \
                   ON CONFLICT (id, seq) DO NOTHING), \
                 closed AS ( \
                   UPDATE cutover_fleet_rollouts SET open = false, finished_at = now() \
                   WHERE id = $1 AND open AND $3 = 'done' AND EXISTS (SELECT 1 FROM saved)) \
                 SELECT (SELECT version FROM saved), \
                        coalesce($8[1] <= (SELECT n FROM last) + 1, true)",
                &[
                    &id.as_str(),
                    &RawJson(&bytes),
                    &phase_name(state.phase),
                    &big(state.updated_at.unix_millis()),
                    &expected.map(big),
                    &fence.owner,
                    &big(fence.epoch),
                    &seqs,
                    &jsons,
                ],
            )
            .await?;
        if let Some(version) = row.as_ref().and_then(|r| r.get::<_, Option<i64>>(0)) {
            let logged = row.is_some_and(|r| r.get::<_, bool>(1));
            return Ok((unbig(version), logged));
        }
        let found = self.diagnose(id).await?;
        if found.owner.as_deref() != Some(fence.owner.as_str())
            || found.epoch != fence.epoch
            || !found.live
        {
            return Err(StoreError::LeaseLost {
                id: id.clone(),
                owner: fence.owner.clone(),
                now_held_by: found.owner.filter(|o| found.live && *o != fence.owner),
            });
        }
        Err(StoreError::Conflict {
            id: id.clone(),
            expected,
            found: found.version,
        })
    }

    /// Appends records, only while `fence`'s lease is held and live (when given).
    pub(crate) async fn append_with(
        &self,
        id: &RolloutId,
        records: &[DecisionRecord],
        fence: Option<&FenceToken>,
    ) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        // The batch itself must run without a gap; where it meets the log is checked below.
        new_records(id, first.seq.saturating_sub(1), records)?;
        let encoded = encode_records(id, records)?;
        let seqs: Vec<i64> = records.iter().map(|r| big(r.seq)).collect();
        let jsons: Vec<RawJson<'_>> = encoded.iter().map(|r| RawJson(r)).collect();
        let row = self
            .db()
            .query_opt(
                "appending to the decision log",
                "WITH held AS ( \
                   SELECT 1 FROM cutover_rollouts \
                   WHERE id = $1 AND lease_owner = $4 AND lease_epoch = $5 \
                     AND lease_deadline > now() FOR SHARE), \
                 allowed AS (SELECT $4::text IS NULL OR EXISTS (SELECT 1 FROM held) AS ok), \
                 last AS (SELECT coalesce(max(seq), 0) AS n FROM cutover_log WHERE id = $1), \
                 ins AS ( \
                   INSERT INTO cutover_log (id, seq, epoch, record) \
                   SELECT $1, t.seq, $5, t.record \
                   FROM unnest($2::bigint[], $3::json[]) AS t(seq, record), last, allowed \
                   WHERE allowed.ok AND t.seq > last.n AND $2[1] <= last.n + 1 \
                   ON CONFLICT (id, seq) DO NOTHING) \
                 SELECT (SELECT n FROM last), (SELECT ok FROM allowed)",
                &[
                    &id.as_str(),
                    &seqs,
                    &jsons,
                    &fence.map(|f| f.owner.as_str()),
                    &fence.map(|f| big(f.epoch)),
                ],
            )
            .await?
            .ok_or_else(|| internal("the append statement returned no row"))?;
        let last = unbig(row.get(0));
        if !row.get::<_, bool>(1) {
            let found = self.diagnose(id).await?;
            let owner = fence.map(|f| f.owner.clone()).unwrap_or_default();
            return Err(StoreError::LeaseLost {
                id: id.clone(),
                now_held_by: found.owner.filter(|o| found.live && *o != owner),
                owner,
            });
        }
        if first.seq > last + 1 {
            return Err(StoreError::LogGap {
                id: id.clone(),
                last,
                found: first.seq,
            });
        }
        Ok(())
    }
}

struct Diagnosis {
    version: Option<u64>,
    owner: Option<String>,
    epoch: u64,
    live: bool,
}

fn encode_records(id: &RolloutId, records: &[DecisionRecord]) -> Result<Vec<Vec<u8>>, StoreError> {
    records
        .iter()
        .map(|r| {
            encode(r).map_err(|source| StoreError::Corrupt {
                id: id.clone(),
                location: format!("decision record {} being appended", r.seq),
                source,
            })
        })
        .collect()
}

fn internal(what: &str) -> StoreError {
    StoreError::Provider(cutover_core::ProviderError::permanent(format!(
        "PostgreSQL: {what}"
    )))
}

fn corrupt(id: &RolloutId, location: String, source: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        id: id.clone(),
        location,
        source,
    }
}

#[async_trait]
impl StateStore for PgStateStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        let row = self
            .db()
            .query_opt(
                "loading state",
                "SELECT version, state FROM cutover_rollouts \
                 WHERE id = $1 AND version IS NOT NULL",
                &[&id.as_str()],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: RawJson<'_> = row.get(1);
        Ok(Some(Stored {
            version: unbig(row.get(0)),
            state: decode_state(id, state.0, &format!("cutover_rollouts row `{id}`"))?,
        }))
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let bytes = encode_state(id, state)?;
        let phase = phase_name(state.phase);
        let updated = big(state.updated_at.unix_millis());
        let common: [&(dyn ToSql + Sync); 4] = [&id.as_str(), &RawJson(&bytes), &phase, &updated];
        let row = match expected {
            None => {
                self.db()
                    .query_opt(
                        "saving state",
                        "INSERT INTO cutover_rollouts AS r (id, version, state, phase, updated_ms) \
                         VALUES ($1, 1, $2, $3, $4) \
                         ON CONFLICT (id) DO UPDATE SET version = 1, state = EXCLUDED.state, \
                           phase = EXCLUDED.phase, updated_ms = EXCLUDED.updated_ms \
                         WHERE r.version IS NULL \
                         RETURNING version",
                        &common,
                    )
                    .await?
            }
            Some(v) => {
                let expected = big(v);
                self.db()
                    .query_opt(
                        "saving state",
                        "UPDATE cutover_rollouts \
                         SET version = version + 1, state = $2, phase = $3, updated_ms = $4 \
                         WHERE id = $1 AND version = $5 RETURNING version",
                        &[common[0], common[1], common[2], common[3], &expected],
                    )
                    .await?
            }
        };
        match row {
            Some(row) => Ok(unbig(row.get(0))),
            None => Err(StoreError::Conflict {
                id: id.clone(),
                expected,
                found: self.diagnose(id).await?.version,
            }),
        }
    }

    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        self.append_with(id, records, None).await
    }

    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db()
            .query(
                "reading the decision log",
                "SELECT seq, record FROM cutover_log WHERE id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
                &[&id.as_str(), &big(after), &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let seq = unbig(row.get(0));
                let record: RawJson<'_> = row.get(1);
                serde_json::from_slice(record.0)
                    .map_err(|source| corrupt(id, format!("cutover_log row ({id}, {seq})"), source))
            })
            .collect()
    }

    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        let request_json =
            encode(request).map_err(|source| corrupt(id, "command being queued".into(), source))?;
        // A concurrent sender may take the next seq (or the key) first: read again and retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let row = self
                .db()
                .query_opt(
                    "queuing a command",
                    "SELECT r.state, i.seq, i.sent_ms, i.request FROM cutover_rollouts r \
                     LEFT JOIN cutover_inbox i ON i.id = r.id AND i.key = $2 \
                     WHERE r.id = $1 AND r.version IS NOT NULL",
                    &[&id.as_str(), &request.key],
                )
                .await?;
            let state = row
                .as_ref()
                .map(|row| {
                    let state: RawJson<'_> = row.get(0);
                    decode_state(id, state.0, &format!("cutover_rollouts row `{id}`"))
                })
                .transpose()?;
            check_command(id, self.name(), state.as_ref(), request)?;
            let existing = row
                .as_ref()
                .filter(|row| row.get::<_, Option<i64>>(1).is_some())
                .map(|row| queued_command(id, row.get(1), row.get(2), row.get(3)))
                .transpose()?;
            if let Some(existing) = find_duplicate(id, existing.as_ref(), request)? {
                return Ok(existing);
            }
            let inserted = self
                .db()
                .query_opt(
                    "queuing a command",
                    "WITH ins AS ( \
                       INSERT INTO cutover_inbox (id, seq, key, sent_ms, request) \
                       SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4 \
                       FROM cutover_inbox WHERE id = $1 \
                       RETURNING seq) \
                     SELECT ins.seq FROM ins \
                     CROSS JOIN LATERAL (SELECT pg_notify('cutover_inbox', $1)) AS n",
                    &[
                        &id.as_str(),
                        &request.key,
                        &big(now.unix_millis()),
                        &RawJson(&request_json),
                    ],
                )
                .await;
            match inserted {
                Ok(Some(row)) => {
                    self.listener().inbox_changed(id);
                    return Ok(QueuedCommand {
                        seq: unbig(row.get(0)),
                        sent_at: now,
                        request: request.clone(),
                    });
                }
                Ok(None) => return Err(internal("queuing a command inserted nothing")),
                Err(e) if attempt < 5 && is_sqlstate(&e, UNIQUE_VIOLATION) => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        let rows = self
            .db()
            .query(
                "reading the inbox",
                "SELECT seq, sent_ms, request FROM cutover_inbox \
                 WHERE id = $1 AND seq > $2 ORDER BY seq",
                &[&id.as_str(), &big(after)],
            )
            .await?;
        rows.iter()
            .map(|row| queued_command(id, row.get(0), row.get(1), row.get(2)))
            .collect()
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        let phases: Vec<&str> = filter.phases.iter().map(|p| phase_name(*p)).collect();
        let after = filter.after.as_ref().map(RolloutId::as_str);
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        // Ids are ASCII, so `lower` folds exactly the ASCII case that `admits_id` ignores.
        let search = filter.id_contains.as_deref().filter(|t| !t.is_empty());
        let rows = self
            .db()
            .query(
                "listing rollouts",
                "SELECT id, version, state, lease_owner, lease_epoch, lease_ttl_ms, \
                        lease_expires_ms \
                 FROM cutover_rollouts \
                 WHERE version IS NOT NULL AND ($1::text IS NULL OR id > $1) \
                   AND (cardinality($2::text[]) = 0 OR phase = ANY($2)) \
                   AND ($4::text IS NULL OR strpos(lower(id), lower($4)) > 0) \
                 ORDER BY id LIMIT $3",
                &[&after, &phases, &limit, &search],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id = RolloutId::new(row.get::<_, String>(0))
                    .map_err(|e| internal(&format!("a stored rollout id is not valid: {e}")))?;
                let state: RawJson<'_> = row.get(2);
                let state = decode_state(&id, state.0, &format!("cutover_rollouts row `{id}`"))?;
                let lease = lease::from_columns(row.get(3), row.get(4), row.get(5), row.get(6));
                Ok(Summary::of(&state, unbig(row.get(1)), lease))
            })
            .collect()
    }

    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        lease::acquire(self, id, claim).await
    }

    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        lease::renew(self, id, lease, now).await
    }

    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        lease::current(self, id).await
    }

    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        lease::release(self, id, lease).await
    }

    fn watch(&self, id: &RolloutId) -> Watch {
        Watch::Notified(self.listener().watch(id))
    }
}

fn queued_command(
    id: &RolloutId,
    seq: i64,
    sent_ms: i64,
    request: RawJson<'_>,
) -> Result<QueuedCommand, StoreError> {
    let seq = unbig(seq);
    Ok(QueuedCommand {
        seq,
        sent_at: Timestamp::from_unix_millis(unbig(sent_ms)),
        request: serde_json::from_slice(request.0)
            .map_err(|source| corrupt(id, format!("cutover_inbox row ({id}, {seq})"), source))?,
    })
}
