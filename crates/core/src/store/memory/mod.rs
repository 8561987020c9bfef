mod log;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::kit::{
    check_command, check_kind, check_version, decode_state, encode, find_duplicate, grant,
    new_records, renewed, with_encoded,
};
use super::{
    Acquired, Claim, Document, Lease, LeaseLiveness, ListFilter, StateStore, StoreError, Stored,
    Summary, Watch,
};
use crate::command::{CommandRequest, QueuedCommand};
use crate::record::DecisionRecord;
use crate::state::{Phase, RolloutState};
use crate::{RolloutId, Timestamp};

/// A [`StateStore`] in memory, shared by clones: the default store of a rollout, and the one
/// for tests and for processes that run many rollouts at once.
///
/// States and records are kept serialized, exactly as a durable store keeps them, so anything
/// that does not survive serialization fails here first. Commands wake the owning engine at
/// once ([`Watch::Notified`]). Leases do not expire by time: a lease lives as long as the
/// [`LeaseGuard`](super::LeaseGuard) its engine holds, so an engine whose task ends or is
/// dropped frees its rollout at once.
///
/// ```
/// use cutover_core::MemoryStateStore;
/// let store = MemoryStateStore::new();
/// let same = store.clone(); // shares the data
/// assert_eq!(store.len(), same.len());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStateStore {
    rollouts: Arc<Mutex<Rollouts>>,
}

/// The rollouts by id (hashed: every engine call looks one up), and their ids in order for
/// listings.
#[derive(Debug, Default)]
struct Rollouts {
    entries: HashMap<RolloutId, Entry>,
    order: BTreeSet<RolloutId>,
    /// Documents by kind, then id: version and JSON.
    documents: BTreeMap<String, BTreeMap<RolloutId, (u64, Vec<u8>)>>,
}

impl Rollouts {
    fn get(&self, id: &RolloutId) -> Option<&Entry> {
        self.entries.get(id)
    }

    fn values(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

#[derive(Debug)]
struct Entry {
    /// Version and serialized state, once saved. The buffer is reused by every save.
    state: Option<(u64, Vec<u8>)>,
    /// The phase of the saved state, to filter listings without decoding.
    phase: Phase,
    /// Serialized records, compressed a block at a time.
    log: log::Log,
    inbox: Vec<QueuedCommand>,
    lease: Option<(Lease, LeaseLiveness)>,
    changes: watch::Sender<u64>,
}

impl Entry {
    fn new() -> Self {
        Entry {
            state: None,
            phase: Phase::PreFlight,
            log: log::Log::default(),
            inbox: Vec::new(),
            lease: None,
            changes: watch::Sender::new(0),
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn live_lease(&self) -> Option<Lease> {
        self.lease
            .as_ref()
            .filter(|(_, alive)| alive.is_alive())
            .map(|(lease, _)| lease.clone())
    }
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rollouts stored.
    pub fn len(&self) -> usize {
        self.rollouts
            .lock()
            .values()
            .filter(|e| e.state.is_some())
            .count()
    }

    /// Whether no rollout is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored version of a rollout.
    pub fn version(&self, id: &RolloutId) -> Option<u64> {
        self.rollouts
            .lock()
            .get(id)
            .and_then(|e| e.state.as_ref().map(|(v, _)| *v))
    }

    /// Bytes held for rollouts' states, records and commands (not counting the map itself):
    /// what the store costs in memory.
    pub fn stored_bytes(&self) -> usize {
        self.rollouts
            .lock()
            .values()
            .map(|e| {
                e.state.as_ref().map_or(0, |(_, s)| s.len())
                    + e.log.bytes()
                    + e.inbox.len() * std::mem::size_of::<QueuedCommand>()
            })
            .sum()
    }

    fn with_entry<T>(&self, id: &RolloutId, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut rollouts = self.rollouts.lock();
        if let Some(entry) = rollouts.entries.get_mut(id) {
            return f(entry);
        }
        rollouts.order.insert(id.clone());
        f(rollouts
            .entries
            .entry(id.clone())
            .or_insert_with(Entry::new))
    }
}

fn document(
    id: &RolloutId,
    kind: &str,
    version: u64,
    bytes: &[u8],
) -> Result<Document, StoreError> {
    Ok(Document {
        version,
        body: serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            id: id.clone(),
            location: format!("{kind} document"),
            source,
        })?,
    })
}

fn decode_record(id: &RolloutId, seq: u64, bytes: &[u8]) -> Result<DecisionRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        location: format!("decision record {seq}"),
        source,
    })
}

#[async_trait]
impl StateStore for MemoryStateStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        let entry = self.rollouts.lock().get(id).and_then(|e| e.state.clone());
        entry
            .map(|(version, bytes)| {
                Ok(Stored {
                    version,
                    state: decode_state(id, &bytes, "memory")?,
                })
            })
            .transpose()
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        // Encoded straight into the stored buffer: a save allocates nothing once the
        // rollout's buffer has its size.
        with_encoded(state, |bytes| {
            self.with_entry(id, |entry| {
                let version = check_version(id, expected, entry.state.as_ref().map(|(v, _)| *v))?;
                let (stored_version, buffer) = entry.state.get_or_insert_with(Default::default);
                *stored_version = version;
                buffer.clear();
                buffer.extend_from_slice(bytes);
                entry.phase = state.phase;
                entry.changed();
                Ok(version)
            })
        })
        .map_err(|source| StoreError::Corrupt {
            id: id.clone(),
            location: "state being saved".into(),
            source,
        })?
    }

    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        // Encoded before taking the lock; normally every record is new.
        let encoded = records
            .iter()
            .map(|r| {
                encode(r).map_err(|source| StoreError::Corrupt {
                    id: id.clone(),
                    location: format!("decision record {} being appended", r.seq),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.with_entry(id, |entry| {
            let fresh = new_records(id, entry.log.len(), records)?;
            if fresh.is_empty() {
                return Ok(());
            }
            let skip = records.len() - fresh.len();
            for json in encoded.iter().skip(skip) {
                entry.log.push(json);
            }
            entry.changed();
            Ok(())
        })
    }

    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let rollouts = self.rollouts.lock();
        let Some(entry) = rollouts.get(id) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        entry.log.read::<StoreError>(after, limit, |seq, json| {
            out.push(decode_record(id, seq, json)?);
            Ok(())
        })?;
        Ok(out)
    }

    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        let stored = self.load(id).await?;
        check_command(id, self.name(), stored.as_ref().map(|s| &s.state), request)?;
        self.with_entry(id, |entry| {
            if let Some(existing) = find_duplicate(id, &entry.inbox, request)? {
                return Ok(existing);
            }
            let queued = QueuedCommand {
                seq: entry.inbox.len() as u64 + 1,
                sent_at: now,
                request: request.clone(),
            };
            entry.inbox.push(queued.clone());
            entry.changed();
            Ok(queued)
        })
    }

    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        let rollouts = self.rollouts.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(rollouts
            .get(id)
            .map(|e| e.inbox.iter().skip(start).cloned().collect())
            .unwrap_or_default())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        let page: Vec<(RolloutId, u64, Vec<u8>, Option<Lease>)> = {
            let rollouts = self.rollouts.lock();
            let range = match &filter.after {
                Some(after) => rollouts.order.range::<RolloutId, _>((
                    std::ops::Bound::Excluded(after),
                    std::ops::Bound::Unbounded,
                )),
                None => rollouts.order.range::<RolloutId, _>(..),
            };
            range
                .filter_map(|id| Some((id, rollouts.entries.get(id)?)))
                .filter(|(id, e)| {
                    e.state.is_some() && filter.admits_phase(e.phase) && filter.admits_id(id)
                })
                .take(filter.limit)
                .filter_map(|(id, e)| {
                    let (version, bytes) = e.state.clone()?;
                    Some((id.clone(), version, bytes, e.live_lease()))
                })
                .collect()
        };
        page.into_iter()
            .map(|(id, version, bytes, lease)| {
                let state = decode_state(&id, &bytes, "memory")?;
                Ok(Summary::of(&state, version, lease))
            })
            .collect()
    }

    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        self.with_entry(id, |entry| {
            let current = entry
                .lease
                .as_ref()
                .map(|(lease, alive)| (lease, alive.is_alive()));
            let (lease, previous) = grant(id, current, claim, false)?;
            let (acquired, liveness) = Acquired::guarded(lease.clone(), previous);
            entry.lease = Some((lease, liveness));
            entry.changed();
            Ok(acquired)
        })
    }

    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        self.with_entry(id, |entry| {
            let current = entry
                .lease
                .as_ref()
                .filter(|(_, alive)| alive.is_alive())
                .map(|(l, _)| l);
            renewed(id, current, lease, now)
        })
    }

    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        Ok(self.rollouts.lock().get(id).and_then(Entry::live_lease))
    }

    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        self.with_entry(id, |entry| {
            if entry
                .lease
                .as_ref()
                .is_some_and(|(l, _)| l.owner == lease.owner && l.epoch == lease.epoch)
            {
                entry.lease = None;
                entry.changed();
            }
        });
        Ok(())
    }

    fn watch(&self, id: &RolloutId) -> Watch {
        Watch::Notified(self.with_entry(id, |entry| entry.changes.subscribe()))
    }

    async fn load_document(
        &self,
        kind: &str,
        id: &RolloutId,
    ) -> Result<Option<Document>, StoreError> {
        check_kind(kind)?;
        let stored = self
            .rollouts
            .lock()
            .documents
            .get(kind)
            .and_then(|docs| docs.get(id))
            .cloned();
        stored
            .map(|(v, bytes)| document(id, kind, v, &bytes))
            .transpose()
    }

    async fn save_document(
        &self,
        kind: &str,
        id: &RolloutId,
        body: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        check_kind(kind)?;
        let bytes = encode(body).map_err(|source| StoreError::Corrupt {
            id: id.clone(),
            location: format!("{kind} document being saved"),
            source,
        })?;
        let mut rollouts = self.rollouts.lock();
        let docs = rollouts.documents.entry(kind.to_owned()).or_default();
        let version = check_version(id, expected, docs.get(id).map(|d| d.0))?;
        docs.insert(id.clone(), (version, bytes));
        Ok(version)
    }

    async fn list_documents(
        &self,
        kind: &str,
        after: Option<RolloutId>,
        limit: usize,
    ) -> Result<Vec<(RolloutId, Document)>, StoreError> {
        check_kind(kind)?;
        let page: Vec<(RolloutId, u64, Vec<u8>)> = self
            .rollouts
            .lock()
            .documents
            .get(kind)
            .map(|docs| {
                docs.iter()
                    .filter(|(id, _)| after.as_ref().is_none_or(|a| *id > a))
                    .take(limit)
                    .map(|(id, (v, bytes))| (id.clone(), *v, bytes.clone()))
                    .collect()
            })
            .unwrap_or_default();
        page.into_iter()
            .map(|(id, v, bytes)| Ok((id.clone(), document(&id, kind, v, &bytes)?)))
            .collect()
    }
}
