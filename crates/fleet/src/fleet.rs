//! [`Fleet`]: submit rollouts as data and see where each one stands.

use std::collections::BTreeSet;
use std::fmt;

use cutover_core::state::{Final, Phase};
use cutover_core::store::kit::{decode_state, encode};
use cutover_core::{RolloutId, StoreError};
use serde::Serialize;
use tokio_postgres::Row;

use crate::PgStateStore;
use crate::error::FleetError;
use crate::pg::sql::{RawJson, unbig};
use crate::spec::RolloutSpec;

/// The client side of a fleet: submits rollouts for the workers to run, and reports where
/// each one stands. Commands (pause, resume, promote, abort) and decision logs go through the
/// store like for any rollout: [`RolloutHandle::new`](cutover_core::RolloutHandle::new) on
/// the same [`PgStateStore`].
///
/// ```no_run
/// # async fn example(store: cutover_fleet::PgStateStore, yaml: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_fleet::{Fleet, RolloutSpec};
/// let fleet = Fleet::new(store);
/// let spec = RolloutSpec::from_yaml(yaml)?; // refused here if the plan or providers are wrong
/// fleet.submit(&spec).await?;
/// println!("{}", fleet.status(&spec.id).await?.expect("just submitted"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Fleet {
    store: PgStateStore,
}

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Submitted {
    /// Queued for the workers.
    Queued,
    /// The same spec was submitted before; nothing changed.
    AlreadyQueued,
}

/// Where a submitted rollout stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FleetStatus {
    /// Waiting for a worker.
    Queued {
        /// The providers it names that no live worker offers (when no single live worker
        /// offers them all but each is offered somewhere: all of them). Empty: a worker
        /// will claim it.
        unoffered: Vec<String>,
        /// Runs that ended in an error that may pass.
        attempts: u32,
        /// The latest such error.
        last_error: Option<String>,
    },
    /// A worker holds it.
    Running {
        /// The worker.
        owner: String,
        /// Its lease's epoch.
        epoch: u64,
        /// Where the rollout is.
        phase: Option<Phase>,
    },
    /// It ended.
    Finished {
        /// How.
        outcome: Option<Final>,
    },
    /// No worker will run it: its providers cannot carry it out.
    Halted {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for FleetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetStatus::Queued { unoffered, .. } if !unoffered.is_empty() => {
                write!(f, "queued: no live worker offers {}", unoffered.join(", "))
            }
            FleetStatus::Queued { attempts: 0, .. } => f.write_str("queued"),
            FleetStatus::Queued {
                attempts,
                last_error,
                ..
            } => write!(
                f,
                "queued for attempt {} after: {}",
                attempts + 1,
                last_error.as_deref().unwrap_or("an error")
            ),
            FleetStatus::Running {
                owner,
                epoch,
                phase,
            } => {
                write!(f, "running on {owner} (epoch {epoch})")?;
                match phase {
                    Some(phase) => write!(f, ", {phase}"),
                    None => Ok(()),
                }
            }
            FleetStatus::Finished {
                outcome: Some(Final::Outcome(outcome)),
            } => write!(f, "finished: {outcome}"),
            FleetStatus::Finished {
                outcome: Some(Final::Failed { error }),
            } => write!(f, "failed: {error}"),
            FleetStatus::Finished { outcome: None } => f.write_str("finished"),
            FleetStatus::Halted { reason } => write!(f, "halted: {reason}"),
        }
    }
}

/// How many submitted rollouts are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FleetCounts {
    /// Waiting for a worker (never claimed, put back, or their worker's lease ran out).
    pub queued: u64,
    /// Held by a worker with a live lease.
    pub running: u64,
    /// Ended.
    pub finished: u64,
    /// Halted: no worker will run them.
    pub halted: u64,
}

impl FleetCounts {
    /// Rollouts not finished nor halted.
    pub fn open(&self) -> u64 {
        self.queued + self.running
    }
}

/// The status query: the fleet row, the lease, the state, and which providers no live worker
/// offers.
const STATUS: &str = "\
    WITH live AS ( \
      SELECT providers FROM cutover_fleet_workers \
      WHERE NOT draining AND seen_at + ttl_ms * interval '1 millisecond' > now()) \
    SELECT f.id, f.open, f.halted, f.attempts, f.last_error, \
           r.lease_owner, r.lease_epoch, coalesce(r.lease_deadline > now(), false), r.state, \
           f.providers, \
           ARRAY(SELECT p FROM unnest(f.providers) AS p \
                 WHERE NOT EXISTS (SELECT 1 FROM live WHERE p = ANY (live.providers))), \
           EXISTS (SELECT 1 FROM live WHERE f.providers <@ live.providers) \
    FROM cutover_fleet_rollouts f JOIN cutover_rollouts r ON r.id = f.id";

impl Fleet {
    /// The fleet on `store`.
    pub fn new(store: PgStateStore) -> Self {
        Fleet { store }
    }

    /// The store.
    pub fn store(&self) -> &PgStateStore {
        &self.store
    }

    /// Checks a spec and queues it; a worker that offers its providers claims it. The same spec
    /// submitted again changes nothing; a different spec under the same id is refused.
    pub async fn submit(&self, spec: &RolloutSpec) -> Result<Submitted, FleetError> {
        Ok(self.submit_all(std::slice::from_ref(spec)).await?[0])
    }

    /// Checks and queues several specs in one statement (all or none of the new ones).
    pub async fn submit_all(&self, specs: &[RolloutSpec]) -> Result<Vec<Submitted>, FleetError> {
        let mut seen = BTreeSet::new();
        for spec in specs {
            spec.validate()?;
            if !seen.insert(&spec.id) {
                return Err(FleetError::Duplicate {
                    id: spec.id.clone(),
                });
            }
        }
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let encoded: Vec<Vec<u8>> =
            specs
                .iter()
                .map(encode)
                .collect::<Result<_, _>>()
                .map_err(|source| {
                    FleetError::Store(StoreError::Corrupt {
                        id: specs[0].id.clone(),
                        location: "spec being submitted".into(),
                        source,
                    })
                })?;
        let providers: Vec<Vec<u8>> = specs
            .iter()
            .map(|s| encode(&s.providers.required()))
            .collect::<Result<_, _>>()
            .map_err(|source| {
                FleetError::Store(StoreError::Corrupt {
                    id: specs[0].id.clone(),
                    location: "spec being submitted".into(),
                    source,
                })
            })?;
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        let spec_json: Vec<RawJson<'_>> = encoded.iter().map(|b| RawJson(b)).collect();
        let providers_json: Vec<RawJson<'_>> = providers.iter().map(|b| RawJson(b)).collect();
        let rows = self
            .store
            .db()
            .query(
                "submitting rollouts",
                "WITH input AS ( \
                   SELECT t.ord, t.id, t.spec, \
                          ARRAY(SELECT jsonb_array_elements_text(t.providers)) AS providers \
                   FROM unnest($1::text[], $2::jsonb[], $3::jsonb[]) \
                        WITH ORDINALITY AS t(id, spec, providers, ord)), \
                 added AS ( \
                   INSERT INTO cutover_fleet_rollouts (id, spec, providers) \
                   SELECT id, spec, providers FROM input ORDER BY ord \
                   ON CONFLICT (id) DO NOTHING RETURNING id), \
                 rows AS ( \
                   INSERT INTO cutover_rollouts (id) SELECT id FROM added \
                   ON CONFLICT (id) DO NOTHING), \
                 notified AS ( \
                   SELECT pg_notify('cutover_fleet', '') FROM (SELECT 1) AS one \
                   WHERE EXISTS (SELECT 1 FROM added)) \
                 SELECT i.id, a.id IS NOT NULL, e.spec = i.spec, \
                        (SELECT count(*) FROM notified) \
                 FROM input i LEFT JOIN added a ON a.id = i.id \
                 LEFT JOIN cutover_fleet_rollouts e ON e.id = i.id \
                 ORDER BY i.ord",
                &[&ids, &spec_json, &providers_json],
            )
            .await?;
        let mut out = Vec::with_capacity(specs.len());
        for (spec, row) in specs.iter().zip(&rows) {
            let added: bool = row.get(1);
            let same: Option<bool> = row.get(2);
            if added {
                out.push(Submitted::Queued);
            } else if same == Some(true) {
                out.push(Submitted::AlreadyQueued);
            } else {
                return Err(FleetError::AlreadySubmitted {
                    id: spec.id.clone(),
                });
            }
        }
        if out.contains(&Submitted::Queued) {
            self.store.listener().fleet_changed();
        }
        Ok(out)
    }

    /// How many submitted rollouts are queued, running, finished and halted.
    pub async fn counts(&self) -> Result<FleetCounts, FleetError> {
        let row = self
            .store
            .db()
            .query_opt(
                "counting rollouts",
                "SELECT count(*) FILTER (WHERE f.open AND f.halted IS NULL AND NOT held), \
                        count(*) FILTER (WHERE f.open AND f.halted IS NULL AND held), \
                        count(*) FILTER (WHERE NOT f.open AND f.halted IS NULL), \
                        count(*) FILTER (WHERE f.halted IS NOT NULL) \
                 FROM cutover_fleet_rollouts f JOIN ( \
                   SELECT id, coalesce(lease_owner IS NOT NULL AND lease_deadline > now(), false) \
                          AS held \
                   FROM cutover_rollouts) r ON r.id = f.id",
                &[],
            )
            .await?;
        let n = |i: usize| row.as_ref().map_or(0, |r| unbig(r.get(i)));
        Ok(FleetCounts {
            queued: n(0),
            running: n(1),
            finished: n(2),
            halted: n(3),
        })
    }

    /// Where a submitted rollout stands, or `None` if it was never submitted.
    pub async fn status(&self, id: &RolloutId) -> Result<Option<FleetStatus>, FleetError> {
        let row = self
            .store
            .db()
            .query_opt(
                "reading a rollout's status",
                &format!("{STATUS} WHERE f.id = $1"),
                &[&id.as_str()],
            )
            .await?;
        row.map(|row| status_of(&row))
            .transpose()
            .map(|s| s.map(|(_, s)| s))
    }

    /// The submitted rollouts no worker holds and that have not finished, with their status
    /// (which providers no live worker offers, how many attempts failed), in submission order.
    pub async fn queued(&self, limit: usize) -> Result<Vec<(RolloutId, FleetStatus)>, FleetError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .store
            .db()
            .query(
                "listing queued rollouts",
                &format!(
                    "{STATUS} WHERE f.open AND f.halted IS NULL \
                     AND (r.lease_owner IS NULL OR r.lease_deadline <= now()) \
                     ORDER BY f.submitted_at, f.id LIMIT $1"
                ),
                &[&limit],
            )
            .await?;
        rows.iter().map(status_of).collect()
    }
}

fn status_of(row: &Row) -> Result<(RolloutId, FleetStatus), FleetError> {
    let id = RolloutId::new(row.get::<_, String>(0)).map_err(|e| {
        FleetError::Store(StoreError::Provider(
            cutover_core::ProviderError::permanent(format!(
                "PostgreSQL: a stored rollout id is not valid: {e}"
            )),
        ))
    })?;
    let state = row
        .get::<_, Option<RawJson<'_>>>(8)
        .map(|s| decode_state(&id, s.0, &format!("cutover_rollouts row `{id}`")))
        .transpose()?;
    let open: bool = row.get(1);
    let halted: Option<String> = row.get(2);
    let owner: Option<String> = row.get(5);
    let live: bool = row.get(7);
    let status = if let Some(reason) = halted {
        FleetStatus::Halted { reason }
    } else if !open || state.as_ref().is_some_and(|s| s.outcome.is_some()) {
        FleetStatus::Finished {
            outcome: state.and_then(|s| s.outcome),
        }
    } else if let (Some(owner), true) = (owner, live) {
        FleetStatus::Running {
            owner,
            epoch: unbig(row.get(6)),
            phase: state.map(|s| s.phase),
        }
    } else {
        let runnable: bool = row.get(11);
        let mut unoffered: Vec<String> = row.get(10);
        if !runnable && unoffered.is_empty() {
            unoffered = row.get(9);
        }
        if runnable {
            unoffered.clear();
        }
        FleetStatus::Queued {
            unoffered,
            attempts: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
            last_error: row.get(4),
        }
    };
    Ok((id, status))
}
