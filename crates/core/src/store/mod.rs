//! The [`StateStore`] contract and the in-memory and file stores.
//!
//! A store keeps, for each rollout:
//!
//! - its **state** ([`RolloutState`], small and of constant size), saved with compare-and-swap
//!   on a version before every effect;
//! - its **decision log**, append-only and gap-free by `seq`, read back with a cursor;
//! - its **inbox** of [commands](crate::Command), which anyone who can reach the store may
//!   send to and the owning engine applies in order;
//! - its **owner lease**, so that only one engine drives it at a time;
//!
//! and it lists rollouts with a [`Summary`] each. A command line, a dashboard or another
//! replica reads and steers rollouts through the same calls the engine uses.
//!
//! `cutover-test`'s `store_contract` checks every rule of this contract against any store;
//! run it against your own.

mod file;
mod lease;
mod memory;
mod summary;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

pub use self::file::FileStateStore;
pub use self::lease::{Acquired, Claim, Lease, LeaseGuard, LeaseLiveness};
pub use self::memory::MemoryStateStore;
pub use self::summary::{ListFilter, Summary};
use crate::command::{CommandError, CommandRequest, QueuedCommand};
use crate::record::DecisionRecord;
use crate::state::{RolloutState, STATE_FORMAT};
use crate::{ProviderError, RolloutId, Timestamp};

/// A rollout's state as stored, with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Incremented by every save; the compare-and-swap key.
    pub version: u64,
    /// The state.
    pub state: RolloutState,
}

/// How often a reader of a store that cannot push looks again, unless the store says
/// otherwise.
pub const DEFAULT_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How a reader learns that a rollout may have changed (a command sent, the state saved, a
/// record appended), from [`StateStore::watch`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Watch {
    /// The store pushes: the value changes whenever the rollout does.
    Notified(tokio::sync::watch::Receiver<u64>),
    /// The store cannot push: look again after this interval.
    Poll(std::time::Duration),
}

/// Why a store call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stored version is not the one the save expected: another engine saved in between.
    #[error(
        "rollout `{id}` was saved by someone else: expected version {expected:?}, found {found:?}"
    )]
    Conflict {
        /// The rollout.
        id: RolloutId,
        /// The version the save expected (`None`: that the rollout did not exist).
        expected: Option<u64>,
        /// The version found (`None`: the rollout does not exist).
        found: Option<u64>,
    },
    /// Stored data could not be parsed.
    #[error("stored data of rollout `{id}` cannot be read: {location}")]
    Corrupt {
        /// The rollout.
        id: RolloutId,
        /// Where: a file and line, an object and key.
        location: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored data is in a format this release does not read.
    #[error("stored state of rollout `{id}` has format {found}: {detail}")]
    Format {
        /// The rollout.
        id: RolloutId,
        /// The format found.
        found: u32,
        /// What to do about it.
        detail: String,
    },
    /// The data is too large for the store (a ConfigMap holds 1 MiB).
    #[error("data of rollout `{id}` is {size} bytes; the store holds at most {limit}")]
    TooLarge {
        /// The rollout.
        id: RolloutId,
        /// The serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The store holds no rollout with this id.
    #[error("no rollout `{id}` in {store}")]
    UnknownRollout {
        /// The rollout.
        id: RolloutId,
        /// The store's name.
        store: String,
    },
    /// The rollout has finished: commands no longer apply.
    #[error("rollout `{id}` has finished ({outcome}); it takes no more commands")]
    Finished {
        /// The rollout.
        id: RolloutId,
        /// How it ended.
        outcome: String,
    },
    /// The command request is not valid.
    #[error("invalid command for rollout `{id}`")]
    InvalidCommand {
        /// The rollout.
        id: RolloutId,
        /// What is wrong.
        #[source]
        source: CommandError,
    },
    /// The idempotency key was used before for a different command.
    #[error(
        "idempotency key `{key}` of rollout `{id}` was already used for command #{seq} ({existing})"
    )]
    KeyReused {
        /// The rollout.
        id: RolloutId,
        /// The key.
        key: String,
        /// The inbox position of the command that has it.
        seq: u64,
        /// That command.
        existing: String,
    },
    /// Records appended out of order: the log would have a gap.
    #[error("decision log of rollout `{id}` ends at seq {last}; cannot append seq {found} (a gap)")]
    LogGap {
        /// The rollout.
        id: RolloutId,
        /// The last seq in the log.
        last: u64,
        /// The first seq offered after it.
        found: u64,
    },
    /// Another engine holds the rollout's lease.
    #[error("rollout `{id}` is owned by `{owner}`{}", until.map(|t| format!(" until {t}")).unwrap_or_default())]
    Owned {
        /// The rollout.
        id: RolloutId,
        /// The owner.
        owner: String,
        /// When its lease expires if not renewed (`None`: while its process lives).
        until: Option<Timestamp>,
    },
    /// The lease was lost: it expired and someone else took it, or it was taken by force.
    #[error("the lease of `{owner}` on rollout `{id}` is lost{}", now_held_by.as_ref().map(|o| format!(": now held by `{o}`")).unwrap_or_default())]
    LeaseLost {
        /// The rollout.
        id: RolloutId,
        /// The owner that lost it.
        owner: String,
        /// Who holds it now, if anyone.
        now_held_by: Option<String>,
    },
    /// The store's backend failed.
    #[error("state store failed")]
    Provider(#[from] ProviderError),
}

impl StoreError {
    /// Whether trying again later may succeed (the backend failed transiently).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Provider(e) if e.is_retryable())
    }
}

/// Keeps rollouts' state, decision logs, inboxes and owner leases.
///
/// # State
/// `save(id, state, expected)` succeeds only if the stored version is `expected` (`None`: the
/// rollout is not stored yet) and returns the new version. The engine saves before every
/// effect, so a rollout whose process dies resumes from the store; an engine whose save
/// conflicts stops at once, so two engines never both act on the same version.
///
/// # Decision log
/// `append` is idempotent by `seq`: records whose `seq` is already in the log are skipped
/// (the engine re-appends after a crash), and a record that would leave a gap is refused. The
/// log is never rewritten. `records(id, after, limit)` returns records with `seq > after`, in
/// order.
///
/// # Inbox
/// `send` queues a command at the next inbox position (`seq` from 1, gap-free), refusing
/// unknown and finished rollouts and invalid requests, and returning the command already
/// queued when its idempotency key was sent before. `commands(id, after)` returns commands
/// with `seq > after`, in order. Commands are never removed; the state's
/// [`last_command`](RolloutState::last_command) says which have been applied.
///
/// # Owner lease
/// `acquire` gives the lease to an engine if it is free, expired, or already its own, or if
/// the claim forces it; the epoch rises with every acquisition by another owner. Leases
/// either expire (`expires_at` is set: the owner must `renew` before then) or live as long as
/// the [`LeaseGuard`] they came with (in-process stores).
///
/// # Listing and watching
/// `list` returns a [`Summary`] per rollout in id order, a page at a time. `watch` says how
/// to learn of changes: pushed notifications or a poll interval.
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// A short name for records, errors and spans.
    fn name(&self) -> &str;

    /// The stored state, or `None` if the rollout was never saved.
    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError>;

    /// Saves `state` if the stored version is `expected`; returns the new version.
    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError>;

    /// Appends records to the decision log; records already in it (by `seq`) are skipped.
    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError>;

    /// Up to `limit` records with `seq > after`, in order.
    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError>;

    /// Queues a command for a stored, unfinished rollout.
    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError>;

    /// Commands with `seq > after`, in order.
    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError>;

    /// Summaries of stored rollouts, in id order: those the filter admits
    /// ([`ListFilter::admits_id`] and [`ListFilter::admits_phase`]), at most `filter.limit`.
    /// A store should match ids before it reads a state, so a search costs a walk over ids.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError>;

    /// Takes the rollout's owner lease.
    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError>;

    /// Extends a lease that expires; fails with [`StoreError::LeaseLost`] if it is no longer
    /// held.
    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError>;

    /// The rollout's lease as stored (check [`Lease::expires_at`]: an expired lease is free to
    /// take), or `None` when none is held.
    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError>;

    /// Gives a lease up (nothing happens if it is no longer held).
    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError>;

    /// How to learn that the rollout may have changed.
    fn watch(&self, id: &RolloutId) -> Watch;

    /// A document of `kind` (see [`Document`]), or `None` if it was never saved. Stores that
    /// keep no documents answer [`StoreError::Provider`] with an `Unsupported` error.
    async fn load_document(
        &self,
        kind: &str,
        id: &RolloutId,
    ) -> Result<Option<Document>, StoreError> {
        let _ = id;
        Err(no_documents(self.name(), kind))
    }

    /// Saves a document of `kind` if its stored version is `expected` (`None`: not saved yet);
    /// returns the new version.
    async fn save_document(
        &self,
        kind: &str,
        id: &RolloutId,
        body: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let _ = (id, body, expected);
        Err(no_documents(self.name(), kind))
    }

    /// Up to `limit` documents of `kind` whose id sorts after `after`, in id order.
    async fn list_documents(
        &self,
        kind: &str,
        after: Option<RolloutId>,
        limit: usize,
    ) -> Result<Vec<(RolloutId, Document)>, StoreError> {
        let _ = (after, limit);
        Err(no_documents(self.name(), kind))
    }
}

/// A JSON document a store keeps for something that is not a rollout (a pipeline, a guard),
/// with the same compare-and-swap as a rollout's state.
///
/// Documents are named by a kind (`pipeline`, `guard`: lowercase letters, digits and `-`) and
/// an id (the rules of [`RolloutId`]). Whoever reaches the store may change one: read it, edit
/// it, save it with the version read; a save that conflicts reads again and retries. The
/// process that drives what the document describes (a pipeline executor) reloads it when its
/// own save conflicts, so an approval written by a command line is never lost.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Incremented by every save; the compare-and-swap key.
    pub version: u64,
    /// The document.
    pub body: serde_json::Value,
}

fn no_documents(store: &str, kind: &str) -> StoreError {
    StoreError::Provider(ProviderError::unsupported(format!(
        "keeping `{kind}` documents in state store `{store}`"
    )))
}

#[async_trait]
impl<T: StateStore + ?Sized> StateStore for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        (**self).load(id).await
    }
    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        (**self).save(id, state, expected).await
    }
    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        (**self).append(id, records).await
    }
    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        (**self).records(id, after, limit).await
    }
    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        (**self).send(id, request, now).await
    }
    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        (**self).commands(id, after).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        (**self).list(filter).await
    }
    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        (**self).acquire(id, claim).await
    }
    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        (**self).renew(id, lease, now).await
    }
    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        (**self).lease(id).await
    }
    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        (**self).release(id, lease).await
    }
    fn watch(&self, id: &RolloutId) -> Watch {
        (**self).watch(id)
    }
    async fn load_document(
        &self,
        kind: &str,
        id: &RolloutId,
    ) -> Result<Option<Document>, StoreError> {
        (**self).load_document(kind, id).await
    }
    async fn save_document(
        &self,
        kind: &str,
        id: &RolloutId,
        body: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        (**self).save_document(kind, id, body, expected).await
    }
    async fn list_documents(
        &self,
        kind: &str,
        after: Option<RolloutId>,
        limit: usize,
    ) -> Result<Vec<(RolloutId, Document)>, StoreError> {
        (**self).list_documents(kind, after, limit).await
    }
}

/// Building blocks for implementing [`StateStore`]: the checks and encodings every store
/// shares, so that they all behave alike.
pub mod kit {
    pub use super::lease::{grant, renewed};
    use super::{
        CommandRequest, DecisionRecord, QueuedCommand, RolloutId, RolloutState, STATE_FORMAT,
        StoreError,
    };

    /// Parses a stored state, checking its format; `location` names where it was read (a file,
    /// an object) for the error.
    pub fn decode_state(
        id: &RolloutId,
        bytes: &[u8],
        location: &str,
    ) -> Result<RolloutState, StoreError> {
        #[derive(serde::Deserialize)]
        struct Header {
            format: u32,
        }
        let corrupt = |source| StoreError::Corrupt {
            id: id.clone(),
            location: location.to_owned(),
            source,
        };
        let header: Header = serde_json::from_slice(bytes).map_err(corrupt)?;
        check_format(id, header.format)?;
        serde_json::from_slice(bytes).map_err(corrupt)
    }

    /// Checks a document kind: 1 to 63 of `a-z 0-9 -`, starting with a letter.
    pub fn check_kind(kind: &str) -> Result<(), StoreError> {
        let ok = (1..=63).contains(&kind.len())
            && kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(())
        } else {
            Err(StoreError::Provider(crate::ProviderError::permanent(
                format!(
                    "document kind `{}` is not 1 to 63 of a-z 0-9 - starting with a letter",
                    kind.chars().take(70).collect::<String>()
                ),
            )))
        }
    }

    /// Refuses a state format this release does not read, saying what to do.
    pub fn check_format(id: &RolloutId, found: u32) -> Result<(), StoreError> {
        let detail = match found {
            STATE_FORMAT => return Ok(()),
            0 | 1 => format!(
                "written by cutover 0.1 with the decision records inside the state; this release \
                 reads format {STATE_FORMAT} only. Finish the rollout with the release that \
                 started it, or export its records and delete it"
            ),
            _ => {
                format!("written by a newer release; this release reads format {STATE_FORMAT} only")
            }
        };
        Err(StoreError::Format {
            id: id.clone(),
            found,
            detail,
        })
    }

    /// Serializes a state for storage, into exactly as many bytes as it takes.
    pub fn encode_state(id: &RolloutId, state: &RolloutState) -> Result<Vec<u8>, StoreError> {
        encode(state).map_err(|source| StoreError::Corrupt {
            id: id.clone(),
            location: "state being saved".into(),
            source,
        })
    }

    /// Serializes `value` as JSON through a buffer reused by the thread, then copies it into
    /// an allocation of the right size: one allocation per call, none to grow the buffer.
    pub fn encode(value: &impl serde::Serialize) -> Result<Vec<u8>, serde_json::Error> {
        with_encoded(value, <[u8]>::to_vec)
    }

    /// Serializes `value` as JSON into a buffer reused by the thread and hands `f` the bytes:
    /// no allocation at all once the buffer has grown.
    pub fn with_encoded<T>(
        value: &impl serde::Serialize,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, serde_json::Error> {
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            serde_json::to_writer(&mut *buffer, value)?;
            let out = f(&buffer);
            // Keep the buffer from holding on to a rare huge value.
            if buffer.capacity() > 1 << 20 {
                *buffer = Vec::new();
            }
            Ok(out)
        })
    }

    /// The compare step of compare-and-swap: the new version, or a conflict.
    pub fn check_version(
        id: &RolloutId,
        expected: Option<u64>,
        found: Option<u64>,
    ) -> Result<u64, StoreError> {
        if expected != found {
            return Err(StoreError::Conflict {
                id: id.clone(),
                expected,
                found,
            });
        }
        Ok(found.map_or(1, |v| v + 1))
    }

    /// The records of `records` that a log ending at `last` does not hold yet: those after it,
    /// which must continue it without a gap.
    pub fn new_records<'a>(
        id: &RolloutId,
        last: u64,
        records: &'a [DecisionRecord],
    ) -> Result<&'a [DecisionRecord], StoreError> {
        let start = records.partition_point(|r| r.seq <= last);
        let fresh = &records[start..];
        for (expected, record) in (last + 1..).zip(fresh) {
            if record.seq != expected {
                return Err(StoreError::LogGap {
                    id: id.clone(),
                    last: expected - 1,
                    found: record.seq,
                });
            }
        }
        Ok(fresh)
    }

    /// Checks a command before it is queued: the rollout exists and has not finished, and the
    /// request is valid. `state` is the stored state, if any; `store` names the store.
    pub fn check_command(
        id: &RolloutId,
        store: &str,
        state: Option<&RolloutState>,
        request: &CommandRequest,
    ) -> Result<(), StoreError> {
        request
            .validate()
            .map_err(|source| StoreError::InvalidCommand {
                id: id.clone(),
                source,
            })?;
        let Some(state) = state else {
            return Err(StoreError::UnknownRollout {
                id: id.clone(),
                store: store.to_owned(),
            });
        };
        if let Some(end) = &state.outcome {
            return Err(StoreError::Finished {
                id: id.clone(),
                outcome: match end {
                    crate::state::Final::Outcome(outcome) => outcome.to_string(),
                    crate::state::Final::Failed { error } => format!("failed: {error}"),
                },
            });
        }
        Ok(())
    }

    /// The command already queued under the request's idempotency key, if any; an error if the
    /// key was used for a different command.
    pub fn find_duplicate<'a>(
        id: &RolloutId,
        queued: impl IntoIterator<Item = &'a QueuedCommand>,
        request: &CommandRequest,
    ) -> Result<Option<QueuedCommand>, StoreError> {
        let Some(key) = &request.key else {
            return Ok(None);
        };
        let Some(existing) = queued
            .into_iter()
            .find(|q| q.request.key.as_ref() == Some(key))
        else {
            return Ok(None);
        };
        if existing.request.command != request.command || existing.request.by != request.by {
            return Err(StoreError::KeyReused {
                id: id.clone(),
                key: key.clone(),
                seq: existing.seq,
                existing: format!("{} by {}", existing.request.command, existing.request.by),
            });
        }
        Ok(Some(existing.clone()))
    }
}
