//! What a guard keeps in its store: one document of kind `guard` holding its policy, its state,
//! the splits it set, open drift, its inbox of commands and its recent records.
//!
//! Everything is in one document so that one compare-and-swap saves a decision together with
//! the records that explain it. Anyone who reaches the store may read it ([`GuardHandle`]) and
//! queue a command in it; the guard applies queued commands in order and acknowledges them
//! with `last_command` in the same save as their effect.
//!
//! Every record also goes to the store's append-only decision log under
//! [`log_id`] (`guard.<id>`), the way the engine does it: records are saved in the document's
//! `unlogged` first, appended after the save (appending is idempotent by `seq`), and a
//! restarted guard appends what its document still holds. The document itself keeps only the
//! last [`LOG_KEEP`] records, for display.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::failover::{FailoverCommand, FailoverEvent, FailoverPolicy, FailoverState};
use crate::status::Phase;
use crate::{Clock, RevisionId, RolloutId, StateStore, StoreError, Timestamp, TokioClock};
use crate::{DecisionRecord, Entry, Inputs};
use crate::{TrafficSplit, Verdict, Weight};

/// The document kind guards are stored under.
pub const GUARD_KIND: &str = "guard";

/// How many recent records a guard's document keeps for display; all of them are in the
/// store's decision log under [`log_id`].
pub const LOG_KEEP: usize = 32;

/// What the id of a guard's decision log starts with.
const LOG_PREFIX: &str = "guard.";

/// The id a guard's records are logged under in its store: `guard.<id>`. Rollout ids share
/// this namespace; a guard refuses to start when a rollout is stored under its log id, and
/// rollouts should not be named `guard.…`.
pub fn log_id(id: &RolloutId) -> Result<RolloutId, crate::IdError> {
    RolloutId::new(format!("{LOG_PREFIX}{id}"))
}

/// How many times a save that conflicts with a command sent in between is tried again.
const SAVE_ATTEMPTS: usize = 8;

/// Why a guard stopped or a guard command failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GuardError {
    /// The store failed.
    #[error("guard `{id}`: state store failed")]
    Store {
        /// The guard.
        id: RolloutId,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The stored document cannot be read.
    #[error("guard `{id}`: stored document cannot be read")]
    Corrupt {
        /// The guard.
        id: RolloutId,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored guard has another policy.
    #[error(
        "guard `{id}` is stored with a different policy; delete its document or use another id"
    )]
    PolicyMismatch {
        /// The guard.
        id: RolloutId,
    },
    /// No guard with this id is stored.
    #[error("no guard `{id}` in {store}")]
    Unknown {
        /// The guard.
        id: RolloutId,
        /// The store's name.
        store: String,
    },
    /// Saves kept conflicting with other writers.
    #[error("guard `{id}`: {attempts} saves in a row conflicted with other writers")]
    Contended {
        /// The guard.
        id: RolloutId,
        /// Saves tried.
        attempts: usize,
    },
    /// Another process took the guard on (it saved records of its own since this one's last
    /// save); this one stops without acting further.
    #[error("guard `{id}` was taken on by another process; this one stops")]
    Superseded {
        /// The guard.
        id: RolloutId,
    },
    /// The guard's log id is taken by a rollout stored under it.
    #[error("guard `{id}`: a rollout is stored under its log id `{log}`; rename one of them")]
    LogTaken {
        /// The guard.
        id: RolloutId,
        /// Its log id.
        log: RolloutId,
    },
    /// The guard was built without something it needs.
    #[error("guard `{id}`: {problem}")]
    Build {
        /// The guard.
        id: RolloutId,
        /// What is missing or wrong.
        problem: String,
    },
}

/// A command queued in a guard's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardCommand {
    /// Its inbox position, from 1.
    pub seq: u64,
    /// When it was queued.
    pub sent_at: Timestamp,
    /// Who sent it.
    pub by: String,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What it asks for.
    pub command: FailoverCommand,
}

/// A split read back from a router that is not the one the guard set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftSeen {
    /// When it was first seen.
    pub since: Timestamp,
    /// What was found.
    pub found: TrafficSplit,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum GuardEntry {
    /// A guard process took the guard on.
    Started {
        /// The process's instance name.
        instance: String,
        /// Whether the guard was stored already.
        resumed: bool,
    },
    /// The failover planner changed a target.
    Failover {
        /// What happened.
        event: FailoverEvent,
    },
    /// A command from the inbox, and what it did.
    Command {
        /// The command.
        command: GuardCommand,
        /// Applied or refused.
        effect: FailoverEvent,
    },
    /// A split was set on a router (or failed to be).
    Split {
        /// The router.
        router: String,
        /// The split.
        split: TrafficSplit,
        /// Why the call failed, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Whether this repaired drift.
        #[serde(default)]
        repair: bool,
    },
    /// Targets out of service still carry traffic: the others are at capacity.
    CapacityShort {
        /// The targets and what they carry.
        shortfall: Vec<(RevisionId, Weight)>,
    },
    /// A router applies a split the guard did not set.
    Drift {
        /// The router.
        router: String,
        /// What the guard set.
        expected: TrafficSplit,
        /// What the router applies.
        found: TrafficSplit,
        /// Since when.
        since: Timestamp,
        /// Whether the guard repairs it (else it only reports).
        repair: bool,
    },
    /// A router applies the guard's split again.
    DriftCleared {
        /// The router.
        router: String,
    },
    /// A post-promotion bake.
    Bake {
        /// What happened.
        event: BakeEvent,
    },
}

/// One record of a guard's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// What.
    pub entry: GuardEntry,
}

impl GuardRecord {
    /// The record as it goes to the store's decision log: [`Entry::Guard`], phase `done` (a
    /// guard watches after rollouts), the guard's `split` as input, this record's line as
    /// summary.
    pub fn to_decision(
        &self,
        split: Option<TrafficSplit>,
    ) -> Result<DecisionRecord, serde_json::Error> {
        Ok(DecisionRecord {
            seq: self.seq,
            at: self.at,
            phase: Phase::Done,
            step: None,
            inputs: Inputs {
                split,
                step_elapsed: Duration::ZERO,
                analysis: None,
                background: None,
                health: None,
            },
            entry: Entry::Guard {
                record: serde_json::to_value(&self.entry)?,
            },
            summary: self.to_string(),
        })
    }

    /// The guard record a decision record holds; `None` for records of other kinds.
    pub fn from_decision(record: &DecisionRecord) -> Option<Result<Self, serde_json::Error>> {
        let Entry::Guard { record: entry } = &record.entry else {
            return None;
        };
        Some(GuardEntry::deserialize(entry).map(|entry| GuardRecord {
            seq: record.seq,
            at: record.at,
            entry,
        }))
    }
}

impl fmt::Display for GuardRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FailoverEvent as F;
        match &self.entry {
            GuardEntry::Started { instance, resumed } => write!(
                f,
                "{} by {instance}",
                if *resumed { "resumed" } else { "started" }
            ),
            GuardEntry::Failover { event } => match event {
                F::Drained {
                    target,
                    failures,
                    hold_out,
                    detail,
                } => write!(
                    f,
                    "drained {target} after {failures} failed check(s) ({detail}); held out {}",
                    humantime::format_duration(*hold_out)
                ),
                F::KeptLastInService { target, detail } => write!(
                    f,
                    "kept {target} although it fails ({detail}): last target in service"
                ),
                F::RestoreStep { target, level, of } => {
                    write!(f, "restoring {target}: step {level}/{of}")
                }
                F::Restored { target } => write!(f, "restored {target} in full"),
                F::Applied { command } | F::Refused { command, .. } => write!(f, "{command:?}"),
            },
            GuardEntry::Command { command, effect } => {
                write!(
                    f,
                    "command #{} {:?} by {}",
                    command.seq, command.command, command.by
                )?;
                match effect {
                    F::Refused { reason, .. } => write!(f, ": refused, {reason}"),
                    _ => write!(f, ": applied"),
                }
            }
            GuardEntry::Split {
                router,
                split,
                error,
                repair,
            } => {
                let what = if *repair { "repaired" } else { "set" };
                match error {
                    None => write!(f, "{what} {router} to {split}"),
                    Some(e) => write!(f, "failed to set {router} to {split}: {e}"),
                }
            }
            GuardEntry::CapacityShort { shortfall } => {
                write!(f, "capacity short: out-of-service targets still carry")?;
                for (t, w) in shortfall {
                    write!(f, " {t} {w}")?;
                }
                Ok(())
            }
            GuardEntry::Drift {
                router,
                expected,
                found,
                repair,
                ..
            } => write!(
                f,
                "drift on {router}: found {found}, expected {expected}{}",
                if *repair {
                    "; repairing"
                } else {
                    "; reported only"
                }
            ),
            GuardEntry::DriftCleared { router } => write!(f, "{router} in sync again"),
            GuardEntry::Bake { event } => write!(f, "{event}"),
        }
    }
}

/// A failover guard as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardDocument {
    /// The policy it runs.
    pub policy: FailoverPolicy,
    /// Its targets' state.
    pub state: FailoverState,
    /// The split the planner asks for.
    pub intent: TrafficSplit,
    /// Per router, the split the guard last set on it successfully.
    pub applied: BTreeMap<String, TrafficSplit>,
    /// Per router, drift seen and not yet cleared.
    #[serde(default)]
    pub drift: BTreeMap<String, DriftSeen>,
    /// Targets out of service that still carry traffic.
    #[serde(default)]
    pub shortfall: Vec<(RevisionId, Weight)>,
    /// Commands queued; those up to `last_command` are applied.
    #[serde(default)]
    pub inbox: Vec<GuardCommand>,
    /// The last command applied.
    #[serde(default)]
    pub last_command: u64,
    /// The most recent records (at most [`LOG_KEEP`]), for display; all are in the store's
    /// decision log ([`GuardHandle::records`]).
    #[serde(default)]
    pub log: Vec<GuardRecord>,
    /// Records saved with this document but not yet confirmed appended to the decision log;
    /// the guard appends them after the save, so a crash between the two loses nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlogged: Vec<GuardRecord>,
    /// The seq the next record gets.
    pub next_seq: u64,
}

impl GuardDocument {
    pub(crate) fn decode(id: &RolloutId, body: serde_json::Value) -> Result<Self, GuardError> {
        serde_json::from_value(body).map_err(|source| GuardError::Corrupt {
            id: id.clone(),
            source,
        })
    }

    pub(crate) fn encode(&self, id: &RolloutId) -> Result<serde_json::Value, GuardError> {
        serde_json::to_value(self).map_err(|source| GuardError::Corrupt {
            id: id.clone(),
            source,
        })
    }
}

pub(crate) fn store_error(id: &RolloutId) -> impl FnOnce(StoreError) -> GuardError + '_ {
    move |source| GuardError::Store {
        id: id.clone(),
        source,
    }
}

/// The stored document of guard `id`; [`GuardError::Unknown`] if there is none.
pub(crate) async fn load_existing(
    store: &dyn StateStore,
    id: &RolloutId,
) -> Result<crate::Document, GuardError> {
    store
        .load_document(GUARD_KIND, id)
        .await
        .map_err(store_error(id))?
        .ok_or_else(|| GuardError::Unknown {
            id: id.clone(),
            store: store.name().to_owned(),
        })
}

/// Reads and steers a guard through its store, from any process that reaches the store.
///
/// ```
/// # use cutover_core::guard::{GuardHandle, GuardError};
/// # use cutover_core::MemoryStateStore;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = std::sync::Arc::new(MemoryStateStore::new());
/// let handle = GuardHandle::new(store, "checkout-failover".parse().unwrap()).by("alice");
/// // No guard of that id runs on this store yet:
/// assert!(matches!(handle.pause("maintenance").await, Err(GuardError::Unknown { .. })));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GuardHandle {
    store: Arc<dyn StateStore>,
    id: RolloutId,
    by: String,
    clock: Arc<dyn Clock>,
}

impl GuardHandle {
    /// A handle on guard `id` in `store`, sending as `anonymous` until [`by`](Self::by).
    pub fn new(store: Arc<dyn StateStore>, id: RolloutId) -> Self {
        GuardHandle {
            store,
            id,
            by: "anonymous".into(),
            clock: Arc::new(TokioClock::new()),
        }
    }

    /// Who sends the commands.
    pub fn by(mut self, who: impl Into<String>) -> Self {
        self.by = who.into();
        self
    }

    /// The clock that stamps commands.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The guard as stored, or `None`.
    pub async fn document(&self) -> Result<Option<GuardDocument>, GuardError> {
        match self
            .store
            .load_document(GUARD_KIND, &self.id)
            .await
            .map_err(store_error(&self.id))?
        {
            Some(doc) => Ok(Some(GuardDocument::decode(&self.id, doc.body)?)),
            None => Ok(None),
        }
    }

    /// The id of the guard's decision log in the store (see [`log_id`]).
    pub fn log_id(&self) -> Result<RolloutId, GuardError> {
        log_id(&self.id).map_err(|e| GuardError::Build {
            id: self.id.clone(),
            problem: format!("its log id is not valid: {e}"),
        })
    }

    /// Up to `limit` records with `seq > after` from the store's decision log, in order: pass
    /// the last `seq` read as `after` to read on.
    pub async fn records_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<GuardRecord>, GuardError> {
        let log = self.log_id()?;
        let records = self
            .store
            .records(&log, after, limit)
            .await
            .map_err(store_error(&self.id))?;
        records
            .iter()
            .filter_map(GuardRecord::from_decision)
            .map(|r| {
                r.map_err(|source| GuardError::Corrupt {
                    id: self.id.clone(),
                    source,
                })
            })
            .collect()
    }

    /// Every record with `seq > after` in the store's decision log, in order.
    pub async fn records(&self, after: u64) -> Result<Vec<GuardRecord>, GuardError> {
        const PAGE: usize = 1000;
        let mut all = Vec::new();
        let mut after = after;
        loop {
            let page = self.records_page(after, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(all);
            };
            after = last.seq;
            let full = page.len() == PAGE;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// Queues `command`; the guard applies it at its next look at the inbox.
    pub async fn send(
        &self,
        command: FailoverCommand,
        reason: &str,
    ) -> Result<GuardCommand, GuardError> {
        for _ in 0..SAVE_ATTEMPTS {
            let stored = load_existing(&*self.store, &self.id).await?;
            let mut doc = GuardDocument::decode(&self.id, stored.body)?;
            let queued = GuardCommand {
                seq: doc.inbox.last().map_or(doc.last_command, |c| c.seq) + 1,
                sent_at: self.clock.now(),
                by: self.by.clone(),
                reason: reason.to_owned(),
                command: command.clone(),
            };
            doc.inbox.push(queued.clone());
            match self
                .store
                .save_document(
                    GUARD_KIND,
                    &self.id,
                    &doc.encode(&self.id)?,
                    Some(stored.version),
                )
                .await
            {
                Ok(_) => return Ok(queued),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(store_error(&self.id)(e)),
            }
        }
        Err(GuardError::Contended {
            id: self.id.clone(),
            attempts: SAVE_ATTEMPTS,
        })
    }

    /// Pauses the guard: probes are counted, nothing moves.
    pub async fn pause(&self, reason: &str) -> Result<GuardCommand, GuardError> {
        self.send(FailoverCommand::Pause, reason).await
    }

    /// Resumes a paused guard.
    pub async fn resume(&self, reason: &str) -> Result<GuardCommand, GuardError> {
        self.send(FailoverCommand::Resume, reason).await
    }

    /// Holds `target` out until unpinned (refused for the last target in service).
    pub async fn pin_out(
        &self,
        target: RevisionId,
        reason: &str,
    ) -> Result<GuardCommand, GuardError> {
        self.send(FailoverCommand::PinOut(target), reason).await
    }

    /// Lets a pinned target back in, step by step.
    pub async fn unpin(
        &self,
        target: RevisionId,
        reason: &str,
    ) -> Result<GuardCommand, GuardError> {
        self.send(FailoverCommand::Unpin(target), reason).await
    }

    /// Puts `target` back to its full weight now.
    pub async fn force_restore(
        &self,
        target: RevisionId,
        reason: &str,
    ) -> Result<GuardCommand, GuardError> {
        self.send(FailoverCommand::ForceRestore(target), reason)
            .await
    }
}

/// What happened during a bake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum BakeEvent {
    /// The bake began.
    Started {
        /// The promoted revision.
        revision: RevisionId,
        /// The revision before it.
        previous: RevisionId,
        /// How long it lasts.
        #[serde(with = "crate::time::serde_duration")]
        period: Duration,
    },
    /// An analysis was measured.
    Measured {
        /// The analysis.
        analysis: String,
        /// Its verdict.
        verdict: Verdict,
        /// Its summary.
        summary: String,
    },
    /// The bake period ended with no failure.
    Passed,
    /// An analysis failed and traffic went back to the previous revision.
    RolledBack {
        /// The previous revision.
        to: RevisionId,
        /// The failure.
        reason: String,
    },
    /// An analysis failed and the previous revision is gone: a person must act.
    Alert {
        /// The failure, and why no rollback.
        reason: String,
    },
}

impl fmt::Display for BakeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BakeEvent::Started {
                revision,
                previous,
                period,
            } => write!(
                f,
                "bake of {revision} for {} began (previous: {previous})",
                humantime::format_duration(*period)
            ),
            BakeEvent::Measured {
                analysis,
                verdict,
                summary,
            } => write!(f, "bake analysis {analysis}: {verdict:?}: {summary}"),
            BakeEvent::Passed => f.write_str("bake passed"),
            BakeEvent::RolledBack { to, reason } => {
                write!(f, "bake failed ({reason}); rolled back to {to}")
            }
            BakeEvent::Alert { reason } => {
                write!(f, "ALERT: bake failed and cannot roll back: {reason}")
            }
        }
    }
}
