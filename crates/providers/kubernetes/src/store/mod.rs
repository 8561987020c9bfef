//! [`ConfigMapStateStore`]: each rollout's state, decision log, inbox and owner lease in
//! ConfigMaps and a Lease, none of them ever near the 1 MiB object limit.

mod journal;
mod owner;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::store::DEFAULT_POLL_INTERVAL;
use cutover_core::store::kit::{check_command, find_duplicate, new_records};
use cutover_core::{
    Acquired, Claim, CommandRequest, DecisionRecord, Lease, ListFilter, ProviderError,
    QueuedCommand, RolloutId, RolloutState, StateStore, StoreError, Stored, Summary, Timestamp,
    Watch,
};
use cutover_kube::{Target, classify};
use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use parking_lot::Mutex;

use self::journal::{Journal, Known, Part, Placed};
use crate::names::{MAX_LABEL_VALUE, MAX_NAME, object_name_within};

const CONFIGMAPS: &str = "configmaps";
const LEASES: &str = "leases.coordination.k8s.io";

/// The annotation of a rollout's state ConfigMap holding the state's version (the
/// compare-and-swap key of [`StateStore::save`]).
pub const VERSION_ANNOTATION: &str = "cutover.dev/state-version";
/// The label on every object of a rollout (state, log and inbox chunks, owner Lease): the
/// value of [`ConfigMapStateStore::rollout_label`], so that
/// `kubectl get configmaps,leases -l cutover.dev/rollout=<value>` shows them all.
pub const ROLLOUT_LABEL: &str = "cutover.dev/rollout";
/// The label saying what an object of a rollout holds: `state`, `log`, `inbox` or `owner`.
pub const PART_LABEL: &str = "cutover.dev/part";
/// The label on a state ConfigMap holding the rollout's phase (`progressing`, `done`...), so
/// that listings filter by phase on the API server.
pub const PHASE_LABEL: &str = "cutover.dev/phase";
/// The annotation on every object of a rollout holding its id as given (object names and
/// label values may have had to change it).
pub const ROLLOUT_ID_ANNOTATION: &str = "cutover.dev/rollout-id";
/// The annotation of a state ConfigMap holding the rollout's [`Summary`] as JSON, written with
/// every save, so that listings read metadata only.
pub const SUMMARY_ANNOTATION: &str = "cutover.dev/summary";
/// The key of a state ConfigMap holding the state as JSON.
pub const STATE_KEY: &str = "state.json";
/// Kubernetes rejects a ConfigMap whose data exceeds 1 MiB.
pub const CONFIGMAP_DATA_LIMIT: usize = 1024 * 1024;
/// The default byte budget of one log or inbox chunk: see
/// [`ConfigMapStateStore::with_chunk_budget`].
pub const DEFAULT_CHUNK_BUDGET: usize = 256 * 1024;

/// How many times a write that lost a race (409) is tried again from a new read.
const WRITE_ATTEMPTS: u32 = 5;
/// Room left in object names for the suffixes `-log-<n>`, `-inbox-<n>` and `-owner`.
const SUFFIX_ROOM: usize = 17;
/// Rollouts whose chunk positions a store remembers before it forgets them all.
const KNOWN_ROLLOUTS: usize = 8192;
/// Objects per page when listing.
const LIST_PAGE: u32 = 500;

/// A [`StateStore`] on Kubernetes objects in one namespace: a rollout's state in a ConfigMap,
/// its decision log and command inbox in chunk ConfigMaps, and its owner lease in a
/// `coordination.k8s.io/v1` Lease. Everything the contract asks of a store
/// (`cutover_test::store_contract`), across processes and replicas: any client with the Role of
/// the [crate docs](crate#rbac) can list rollouts, read their logs and send them commands.
///
/// # Objects
///
/// For a rollout with id `<id>`, `<name>` is `<prefix><id>` when that is a valid object name
/// that does not end like the names below (`-log-<n>`, `-inbox-<n>`, `-owner`); otherwise the
/// id made lower case and valid, with a hash of it appended
/// ([`configmap_name`](Self::configmap_name)), so that no two rollouts' objects share a name:
///
/// | object | holds | written by |
/// |---|---|---|
/// | ConfigMap `<name>` | key `state.json`: the state (small and of constant size); annotations: its version (`cutover.dev/state-version`), its [`Summary`] (`cutover.dev/summary`); label `cutover.dev/phase` | `save`, replaced under the `resourceVersion` read |
/// | ConfigMaps `<name>-log-0`, `<name>-log-1`... | the decision log: one key per record, the record's `seq` (`"42"`), holding the record as JSON; annotations `cutover.dev/first-seq`, `cutover.dev/last-seq`, `cutover.dev/bytes`, and `cutover.dev/sealed` once full | `append` |
/// | ConfigMaps `<name>-inbox-0`... | the command inbox, kept like the log: one key per command | `send` |
/// | Lease `<name>-owner` | the owner lease: `holderIdentity` the owning engine, `renewTime` + `leaseDurationSeconds` its expiry, `leaseTransitions` its epoch | `acquire`, `renew`, `release` |
///
/// All carry the labels `cutover.dev/rollout` ([`rollout_label`](Self::rollout_label)) and
/// `cutover.dev/part` (`state`, `log`, `inbox`, `owner`), and the annotation
/// `cutover.dev/rollout-id`. Deleting a rollout is deleting them:
/// `kubectl delete configmaps,leases -l cutover.dev/rollout=<label>`. A rollout whose state
/// ConfigMap is gone but whose log or inbox is not is refused at its first save
/// ([`StoreError::Corrupt`] naming what is left), rather than started again over the old log.
///
/// # How the log is kept
///
/// The log is a chain of chunk ConfigMaps, each at most the chunk budget (256 KiB of data by
/// default, [`with_chunk_budget`](Self::with_chunk_budget)); a record larger than the budget
/// gets a chunk of its own, and one larger than the 1 MiB limit is refused with
/// [`StoreError::TooLarge`]. However long a rollout runs, no object grows past its chunk: a
/// full chunk is *sealed* (annotated) and the next one created, so a chunk's records never
/// change once sealed.
///
/// An append adds the new records' keys to the last chunk with a JSON patch that carries the
/// chunk's `resourceVersion`, so two writers never both add to one chunk: the loser gets a
/// 409, reads the chunk's annotations again and skips the records that are already there
/// (appends are idempotent by `seq`; a gap is refused). Only the new records travel, and the
/// answer is the chunk's metadata alone. A store remembers where each rollout's log ends, so
/// an engine's append is one request; another process finds the end by reading chunk metadata
/// from the start. Sealing a chunk changes its `resourceVersion`, so a writer that still
/// thinks it the last one is refused too.
///
/// `records(after, limit)` reads the chunk holding `after + 1` (found through the chunks'
/// `first-seq` and `last-seq` annotations, and remembered) and the ones after it until it has
/// `limit` records.
///
/// # Saves never conflict with the log, the inbox or the lease
///
/// Appends, commands and lease renewals write other objects than the state ConfigMap, so the
/// compare-and-swap of `save` only fails when another save came in between. If anything else
/// changed the state ConfigMap (a label set with `kubectl`), the save reads it again and
/// writes again as long as the version is still the one expected.
///
/// # Commands and leases
///
/// The owning engine finds new commands by reading the inbox every
/// [poll interval](Self::with_poll_interval) (1 s by default): [`Watch::Poll`]. The owner
/// lease expires by the engines' clocks, which must roughly agree (the time an engine passes
/// in its [`Claim`] is written as `renewTime`); its time-to-live is rounded up to whole
/// seconds (`leaseDurationSeconds`). Use [`LeasedStateStore`](crate::LeasedStateStore) for a
/// lock that needs no synchronized clocks.
///
/// # Listing
///
/// [`list`](StateStore::list) reads the metadata of the state ConfigMaps (label
/// `cutover.dev/part=state`, and `cutover.dev/phase in (...)` for a phase filter), whose
/// summary annotation says everything a [`Summary`] holds, and the owner Leases; it never
/// reads a state or a log.
///
/// # Earlier format
///
/// A rollout saved by cutover 0.1 (one ConfigMap whose key, named like the ConfigMap, holds a
/// format 1 state with the decision records inside) is refused with [`StoreError::Format`]
/// naming the ConfigMap, never misread. Finish it with the release that started it. Such
/// ConfigMaps are not listed.
///
/// ```no_run
/// # fn f(client: kube::Client) {
/// use std::time::Duration;
/// use cutover_kubernetes::ConfigMapStateStore;
/// let store = ConfigMapStateStore::new(client, "cutover-system", "rollout-")
///     .with_poll_interval(Duration::from_millis(500));
/// # }
/// ```
#[derive(Clone)]
pub struct ConfigMapStateStore {
    configmaps: Api<ConfigMap>,
    leases: Api<LeaseObject>,
    namespace: String,
    prefix: String,
    limit: usize,
    chunk_budget: usize,
    poll: Duration,
    name: String,
    /// Where each rollout's journals end, and where their chunks start.
    known: Arc<Mutex<HashMap<String, Known>>>,
}

impl fmt::Debug for ConfigMapStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigMapStateStore")
            .field("namespace", &self.namespace)
            .field("prefix", &self.prefix)
            .field("limit", &self.limit)
            .field("chunk_budget", &self.chunk_budget)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// The names of one rollout's objects.
#[derive(Debug, Clone)]
struct Objects {
    id: RolloutId,
    /// The state ConfigMap, and the stem of the other names.
    state: String,
    /// The value of [`ROLLOUT_LABEL`].
    label: String,
    /// The owner Lease.
    owner: String,
}

impl ConfigMapStateStore {
    /// A store keeping the objects of rollout `<id>` under the names `<prefix><id>...` in
    /// `namespace`.
    pub fn new(client: Client, namespace: &str, prefix: &str) -> Self {
        ConfigMapStateStore {
            configmaps: Api::namespaced(client.clone(), namespace),
            leases: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            prefix: prefix.to_owned(),
            limit: CONFIGMAP_DATA_LIMIT,
            chunk_budget: DEFAULT_CHUNK_BUDGET,
            poll: DEFAULT_POLL_INTERVAL,
            name: format!("kubernetes/configmaps/{namespace}"),
            known: Arc::default(),
        }
    }

    /// Lowers the size limit of one ConfigMap's data (bytes of keys and values), to leave room
    /// or to test the limit. A state, or a single record or command, over it is refused with
    /// [`StoreError::TooLarge`] before anything is written.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.min(CONFIGMAP_DATA_LIMIT);
        self
    }

    /// The byte budget of one log or inbox chunk (keys and values): a chunk takes records
    /// while they fit, then the next chunk starts. Default 256 KiB; at most the
    /// [limit](Self::with_limit). A smaller budget makes appends cheaper for the API server
    /// (it stores the whole chunk again with every append) and makes more objects.
    pub fn with_chunk_budget(mut self, bytes: usize) -> Self {
        self.chunk_budget = bytes.max(1);
        self
    }

    /// How often an engine reads the inbox for new commands (default 1 s, at least 10 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll = interval.max(Duration::from_millis(10));
        self
    }

    /// The name of a rollout's state ConfigMap; its other objects' names start with it.
    pub fn configmap_name(&self, id: &RolloutId) -> String {
        self.objects(id).state
    }

    /// The value of the [`ROLLOUT_LABEL`] on every object of a rollout.
    pub fn rollout_label(&self, id: &RolloutId) -> String {
        self.objects(id).label
    }

    fn objects(&self, id: &RolloutId) -> Objects {
        let state = object_name_within(&self.prefix, id.as_str(), MAX_NAME - SUFFIX_ROOM);
        Objects {
            id: id.clone(),
            label: object_name_within(&self.prefix, id.as_str(), MAX_LABEL_VALUE),
            owner: format!("{state}-owner"),
            state,
        }
    }

    fn journal<'a>(&'a self, objects: &'a Objects, part: Part) -> Journal<'a> {
        Journal::new(self, objects, part)
    }

    /// The labels every object of a rollout carries.
    fn labels(objects: &Objects, part: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (ROLLOUT_LABEL.to_owned(), objects.label.clone()),
            (PART_LABEL.to_owned(), part.to_owned()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "cutover".to_owned(),
            ),
        ])
    }

    /// New object metadata for one of a rollout's objects.
    fn metadata(objects: &Objects, name: &str, part: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(Self::labels(objects, part)),
            annotations: Some(BTreeMap::from([(
                ROLLOUT_ID_ANNOTATION.to_owned(),
                objects.id.to_string(),
            )])),
            ..ObjectMeta::default()
        }
    }

    fn params() -> PostParams {
        PostParams {
            field_manager: Some(cutover_kube::FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        }
    }

    /// A kube error on `name`, classified, as a store error.
    fn failed(
        &self,
        error: kube::Error,
        verb: &'static str,
        resource: &str,
        name: &str,
    ) -> StoreError {
        StoreError::Provider(classify(
            error,
            &Target::new(verb, resource, &self.namespace, name),
        ))
    }

    /// `ConfigMap <namespace>/<name>`, for error locations.
    fn describe(&self, kind: &str, name: &str) -> String {
        format!("{kind} {}/{name}", self.namespace)
    }

    /// A write kept losing races.
    fn busy(&self, id: &RolloutId, what: &str) -> StoreError {
        StoreError::Provider(ProviderError::transient(format!(
            "{what} of rollout `{id}` in namespace `{}` changed {WRITE_ATTEMPTS} times while \
             being written; try again",
            self.namespace
        )))
    }

    /// The chunk budget in force.
    fn budget(&self) -> usize {
        self.chunk_budget.min(self.limit)
    }

    /// Serializes the entries of a journal, refusing one over the limit.
    fn encode<T: serde::Serialize>(
        &self,
        id: &RolloutId,
        entries: impl IntoIterator<Item = (u64, T)>,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        entries
            .into_iter()
            .map(|(seq, entry)| {
                let json = serde_json::to_string(&entry).map_err(|source| StoreError::Corrupt {
                    id: id.clone(),
                    location: format!("entry {seq} being written"),
                    source,
                })?;
                let size = journal::entry_size(seq, &json);
                if size > self.limit {
                    return Err(StoreError::TooLarge {
                        id: id.clone(),
                        size,
                        limit: self.limit,
                    });
                }
                Ok((seq, json))
            })
            .collect()
    }
}

/// A [`StoreError::Corrupt`] for data that parsed but makes no sense.
fn corrupt(id: &RolloutId, location: String, message: impl fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.clone(),
        location,
        source: <serde_json::Error as serde::de::Error>::custom(message),
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

#[async_trait]
impl StateStore for ConfigMapStateStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        self.load_state(&self.objects(id)).await
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.save_state(&self.objects(id), state, expected).await
    }

    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let objects = self.objects(id);
        let log = self.journal(&objects, Part::Log);
        let entries = self.encode(id, records.iter().map(|r| (r.seq, r)))?;
        let mut cached = log.cached_tail();
        for _ in 0..WRITE_ATTEMPTS {
            let from_cache = cached.is_some();
            let tail = match cached.take() {
                Some(tail) => Some(tail),
                None => log.probe().await?,
            };
            let last = tail.as_ref().map_or(0, |t| t.last);
            let fresh = match new_records(id, last, records) {
                Ok(fresh) if !fresh.is_empty() => fresh.len(),
                // Nothing new, or a gap, by what this store remembers, which may be out of
                // date: make sure from the chunks.
                _ if from_cache => continue,
                Ok(_) => return Ok(()),
                Err(e) => return Err(e),
            };
            if log.place(tail, &entries[records.len() - fresh..]).await? == Placed::Done {
                return Ok(());
            }
        }
        Err(self.busy(id, "the decision log"))
    }

    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let objects = self.objects(id);
        self.journal(&objects, Part::Log).read(after, limit).await
    }

    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        let objects = self.objects(id);
        let stored = self.load_state(&objects).await?;
        check_command(id, self.name(), stored.as_ref().map(|s| &s.state), request)?;
        let inbox = self.journal(&objects, Part::Inbox);
        for _ in 0..WRITE_ATTEMPTS {
            let (queued, tail) = inbox.read_all::<QueuedCommand>().await?;
            if let Some(existing) = find_duplicate(id, &queued, request)? {
                return Ok(existing);
            }
            let command = QueuedCommand {
                seq: tail.as_ref().map_or(0, |t| t.last) + 1,
                sent_at: now,
                request: request.clone(),
            };
            let entries = self.encode(id, [(command.seq, &command)])?;
            if inbox.place(tail, &entries).await? == Placed::Done {
                return Ok(command);
            }
        }
        Err(self.busy(id, "the inbox"))
    }

    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        let objects = self.objects(id);
        self.journal(&objects, Part::Inbox)
            .read(after, usize::MAX)
            .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        let mut summaries = self.list_states(filter).await?;
        if summaries.is_empty() {
            return Ok(summaries);
        }
        let leases = self.owner_leases().await?;
        for summary in &mut summaries {
            summary.lease = leases.get(&self.objects(&summary.id).owner).cloned();
        }
        Ok(summaries)
    }

    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        self.acquire_owner(&self.objects(id), claim).await
    }

    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        self.renew_owner(&self.objects(id), lease, now).await
    }

    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        self.owner_of(&self.objects(id)).await
    }

    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        self.release_owner(&self.objects(id), lease).await
    }

    fn watch(&self, _id: &RolloutId) -> Watch {
        Watch::Poll(self.poll)
    }
}
