//! [`FileStateStore`]: one directory per rollout, plain JSON files.

mod jsonl;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::kit::{
    check_command, check_format, check_kind, check_version, decode_state, encode_state,
    find_duplicate, grant, new_records, renewed,
};
use super::{
    Acquired, Claim, DEFAULT_POLL_INTERVAL, Document, Lease, ListFilter, StateStore, StoreError,
    Stored, Summary, Watch,
};
use crate::command::{CommandRequest, QueuedCommand};
use crate::record::DecisionRecord;
use crate::state::RolloutState;
use crate::{ProviderError, RolloutId, Timestamp};

/// A [`StateStore`] of plain JSON files in a directory, one directory per rollout, so that
/// engines, command lines and dashboards in different processes on one machine (or sharing a
/// POSIX file system with working `flock`) see and steer the same rollouts.
///
/// ```text
/// <dir>/<rollout id>/state.json   {"version": 7, "state": {"format": 2, ...}}
///                   /log.jsonl    one decision record per line, line n holds seq n
///                   /inbox.jsonl  one command per line, line n holds seq n
///                   /lease.json   {"owner": "...", "epoch": 3, "expires_at": "...", "ttl": "15s"}
///                   /.lock        taken (flock) by every writer
/// <dir>/.documents/<kind>/<id>.json   {"version": 2, "body": {...}} (pipelines, guards)
/// ```
///
/// - **State** is replaced by writing a temporary file, syncing it, renaming it over
///   `state.json` and syncing the directory: after a crash at any moment the file holds either
///   the old or the new state, never a mix. The format version is inside the document.
/// - **Log and inbox** are appended to and synced; a last line without its newline (a write cut
///   short by a crash) is never read and is cut off by the next append. A line that does not
///   parse is reported with the file and line, and the lines after it still read.
/// - **Lease**: written by rename without a sync (a lease lost in a power cut only expires
///   early). Leases expire by the engines' wall clocks, which must roughly agree.
/// - **Commands** are found by polling: an engine looks at most every
///   [`poll interval`](Self::with_poll_interval) (1 s by default).
///
/// A directory written by cutover 0.1 (one `<id>.json` file per rollout, starting with a bare
/// version line) is refused with [`StoreError::Format`] saying so, never misread.
///
/// ```no_run
/// use cutover_core::FileStateStore;
/// let store = FileStateStore::new("/var/lib/my-deployer/rollouts")?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileStateStore {
    dir: PathBuf,
    poll: Duration,
}

/// The files of one rollout.
struct Files {
    dir: PathBuf,
    state: PathBuf,
    log: PathBuf,
    inbox: PathBuf,
    lease: PathBuf,
    lock: PathBuf,
    /// Where cutover 0.1 kept the rollout.
    legacy: PathBuf,
}

impl FileStateStore {
    /// A store in `dir`, which is created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(FileStateStore {
            dir,
            poll: DEFAULT_POLL_INTERVAL,
        })
    }

    /// How often an engine looks for new commands (at least 10 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll = interval.max(Duration::from_millis(10));
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of one rollout.
    pub fn rollout_dir(&self, id: &RolloutId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    fn document_path(&self, kind: &str, id: &RolloutId) -> PathBuf {
        self.dir
            .join(".documents")
            .join(kind)
            .join(format!("{id}.json"))
    }

    fn files(&self, id: &RolloutId) -> Files {
        let dir = self.rollout_dir(id);
        Files {
            state: dir.join("state.json"),
            log: dir.join("log.jsonl"),
            inbox: dir.join("inbox.jsonl"),
            lease: dir.join("lease.json"),
            lock: dir.join(".lock"),
            legacy: self.dir.join(format!("{id}.json")),
            dir,
        }
    }

    /// Runs blocking file work off the runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(work).await.map_err(|e| {
            StoreError::Provider(ProviderError::transient("file store task failed").with_source(e))
        })?
    }
}

pub(super) fn io_error(what: String, err: std::io::Error) -> StoreError {
    let kind = match err.kind() {
        IoErrorKind::Interrupted | IoErrorKind::WouldBlock | IoErrorKind::TimedOut => {
            ProviderError::transient(what)
        }
        _ => ProviderError::permanent(what),
    };
    StoreError::Provider(kind.with_source(err))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("cannot sync {}", dir.display()), e))
}

/// An exclusive lock on a rollout's directory, released when dropped. Creates the directory.
fn lock(files: &Files, top: &Path) -> Result<File, StoreError> {
    if !files.dir.exists() {
        fs::create_dir_all(&files.dir)
            .map_err(|e| io_error(format!("cannot create {}", files.dir.display()), e))?;
        sync_dir(top)?;
    }
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&files.lock)
        .map_err(|e| io_error(format!("cannot open {}", files.lock.display()), e))?;
    lock.lock()
        .map_err(|e| io_error(format!("cannot lock {}", files.lock.display()), e))?;
    Ok(lock)
}

/// `state.json`: the version, and the state as the engine wrote it.
#[derive(Deserialize)]
struct StateDocument<'a> {
    version: u64,
    #[serde(borrow)]
    state: &'a RawValue,
}

fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == IoErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(format!("cannot read {}", path.display()), e)),
    }
}

fn refuse_legacy(id: &RolloutId, files: &Files) -> Result<(), StoreError> {
    if files.legacy.exists() && !files.state.exists() {
        check_format(id, 1).map_err(|e| match e {
            StoreError::Format { id, found, detail } => StoreError::Format {
                id,
                found,
                detail: format!("{} {detail}", files.legacy.display()),
            },
            other => other,
        })?;
    }
    Ok(())
}

/// The stored version and state bytes.
fn read_document(id: &RolloutId, files: &Files) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    refuse_legacy(id, files)?;
    let Some(bytes) = read_bytes(&files.state)? else {
        return Ok(None);
    };
    let doc: StateDocument<'_> =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
            id: id.clone(),
            location: files.state.display().to_string(),
            source,
        })?;
    Ok(Some((doc.version, doc.state.get().as_bytes().to_vec())))
}

fn read_state(id: &RolloutId, files: &Files) -> Result<Option<Stored>, StoreError> {
    let Some((version, bytes)) = read_document(id, files)? else {
        return Ok(None);
    };
    Ok(Some(Stored {
        version,
        state: decode_state(id, &bytes, &files.state.display().to_string())?,
    }))
}

/// Replaces a file by writing a temporary one and renaming it, syncing both when `durable`.
fn replace(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file =
        File::create(&tmp).map_err(|e| io_error(format!("cannot create {}", tmp.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
        .map_err(|e| io_error(format!("cannot write {}", tmp.display()), e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| {
        io_error(
            format!("cannot rename {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

fn read_document_file(id: &RolloutId, path: &Path) -> Result<Option<Document>, StoreError> {
    #[derive(Deserialize)]
    struct Stored {
        version: u64,
        body: serde_json::Value,
    }
    let Some(bytes) = read_bytes(path)? else {
        return Ok(None);
    };
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        location: path.display().to_string(),
        source,
    })?;
    Ok(Some(Document {
        version: stored.version,
        body: stored.body,
    }))
}

fn read_lease(id: &RolloutId, files: &Files) -> Result<Option<Lease>, StoreError> {
    let Some(bytes) = read_bytes(&files.lease)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::Corrupt {
            id: id.clone(),
            location: files.lease.display().to_string(),
            source,
        })
}

fn write_lease(files: &Files, lease: &Lease) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(lease).map_err(|e| {
        io_error(
            format!("cannot encode {}", files.lease.display()),
            std::io::Error::other(e),
        )
    })?;
    replace(&files.lease, &bytes, false)
}

#[async_trait]
impl StateStore for FileStateStore {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        let (files, id) = (self.files(id), id.clone());
        self.blocking(move || read_state(&id, &files)).await
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let state = encode_state(id, state)?;
        let (files, id, top) = (self.files(id), id.clone(), self.dir.clone());
        self.blocking(move || {
            let _lock = lock(&files, &top)?;
            let found = read_document(&id, &files)?.map(|(v, _)| v);
            let version = check_version(&id, expected, found)?;
            let mut doc = format!("{{\"version\":{version},\"state\":").into_bytes();
            doc.extend_from_slice(&state);
            doc.extend_from_slice(b"}\n");
            replace(&files.state, &doc, true)?;
            Ok(version)
        })
        .await
    }

    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let (files, id, top) = (self.files(id), id.clone(), self.dir.clone());
        let records = records.to_vec();
        self.blocking(move || {
            let _lock = lock(&files, &top)?;
            let (last, keep) = jsonl::last_line::<DecisionRecord>(&id, &files.log)?;
            let fresh = new_records(&id, last, &records)?;
            if fresh.is_empty() {
                return Ok(());
            }
            jsonl::append(&files.log, keep, fresh)
        })
        .await
    }

    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let (files, id) = (self.files(id), id.clone());
        self.blocking(move || jsonl::read_after(&id, &files.log, after, limit))
            .await
    }

    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        let (files, id, top) = (self.files(id), id.clone(), self.dir.clone());
        let (request, store) = (request.clone(), self.name().to_owned());
        self.blocking(move || {
            let stored = read_state(&id, &files)?;
            check_command(&id, &store, stored.as_ref().map(|s| &s.state), &request)?;
            let _lock = lock(&files, &top)?;
            let queued: Vec<QueuedCommand> = jsonl::read_after(&id, &files.inbox, 0, usize::MAX)?;
            if let Some(existing) = find_duplicate(&id, &queued, &request)? {
                return Ok(existing);
            }
            let (last, keep) = jsonl::last_line::<QueuedCommand>(&id, &files.inbox)?;
            let command = QueuedCommand {
                seq: last + 1,
                sent_at: now,
                request,
            };
            jsonl::append(&files.inbox, keep, std::slice::from_ref(&command))?;
            Ok(command)
        })
        .await
    }

    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        let (files, id) = (self.files(id), id.clone());
        self.blocking(move || jsonl::read_after(&id, &files.inbox, after, usize::MAX))
            .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        let store = self.clone();
        let filter = filter.clone();
        self.blocking(move || {
            let entries = fs::read_dir(&store.dir)
                .map_err(|e| io_error(format!("cannot list {}", store.dir.display()), e))?;
            let mut ids = Vec::new();
            for entry in entries {
                let entry = entry
                    .map_err(|e| io_error(format!("cannot list {}", store.dir.display()), e))?;
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                match RolloutId::new(name) {
                    Ok(id) if is_dir && filter.admits_id(&id) => ids.push(id),
                    _ => {}
                }
            }
            ids.sort();
            let mut page = Vec::new();
            for id in ids {
                if page.len() >= filter.limit {
                    break;
                }
                let files = store.files(&id);
                let Some(stored) = read_state(&id, &files)? else {
                    continue;
                };
                if filter.admits_phase(stored.state.phase) {
                    let lease = read_lease(&id, &files)?;
                    page.push(Summary::of(&stored.state, stored.version, lease));
                }
            }
            Ok(page)
        })
        .await
    }

    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        let (files, id, top) = (self.files(id), id.clone(), self.dir.clone());
        let claim = claim.clone();
        self.blocking(move || {
            let _lock = lock(&files, &top)?;
            let current = read_lease(&id, &files)?;
            let now = claim.now;
            let (lease, previous) = grant(
                &id,
                current.as_ref().map(|l| (l, l.is_live_at(now))),
                &claim,
                true,
            )?;
            write_lease(&files, &lease)?;
            Ok(Acquired::new(lease, previous))
        })
        .await
    }

    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        let (files, id, top) = (self.files(id), id.clone(), self.dir.clone());
        let lease = lease.clone();
        self.blocking(move || {
            let _lock = lock(&files, &top)?;
            let current = read_lease(&id, &files)?;
            let renewed = renewed(&id, current.as_ref(), &lease, now)?;
            write_lease(&files, &renewed)?;
            Ok(renewed)
        })
        .await
    }

    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        let (files, id) = (self.files(id), id.clone());
        self.blocking(move || read_lease(&id, &files)).await
    }

    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        let (files, id, top) = (self.files(id), id.clone(), self.dir.clone());
        let lease = lease.clone();
        self.blocking(move || {
            let _lock = lock(&files, &top)?;
            if read_lease(&id, &files)?
                .is_some_and(|l| l.owner == lease.owner && l.epoch == lease.epoch)
            {
                fs::remove_file(&files.lease)
                    .map_err(|e| io_error(format!("cannot remove {}", files.lease.display()), e))?;
            }
            Ok(())
        })
        .await
    }

    fn watch(&self, _id: &RolloutId) -> Watch {
        Watch::Poll(self.poll)
    }

    async fn load_document(
        &self,
        kind: &str,
        id: &RolloutId,
    ) -> Result<Option<Document>, StoreError> {
        check_kind(kind)?;
        let path = self.document_path(kind, id);
        let id = id.clone();
        self.blocking(move || read_document_file(&id, &path)).await
    }

    async fn save_document(
        &self,
        kind: &str,
        id: &RolloutId,
        body: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        check_kind(kind)?;
        let path = self.document_path(kind, id);
        let (id, body) = (id.clone(), body.clone());
        self.blocking(move || {
            let dir = path.parent().unwrap_or(Path::new("."));
            if !dir.exists() {
                fs::create_dir_all(dir)
                    .map_err(|e| io_error(format!("cannot create {}", dir.display()), e))?;
            }
            let lock_path = dir.join(".lock");
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| io_error(format!("cannot open {}", lock_path.display()), e))?;
            lock.lock()
                .map_err(|e| io_error(format!("cannot lock {}", lock_path.display()), e))?;
            let found = read_document_file(&id, &path)?.map(|d| d.version);
            let version = check_version(&id, expected, found)?;
            let bytes =
                serde_json::to_vec(&serde_json::json!({ "version": version, "body": body }))
                    .map_err(|source| StoreError::Corrupt {
                        id: id.clone(),
                        location: path.display().to_string(),
                        source,
                    })?;
            replace(&path, &bytes, true)?;
            Ok(version)
        })
        .await
    }

    async fn list_documents(
        &self,
        kind: &str,
        after: Option<RolloutId>,
        limit: usize,
    ) -> Result<Vec<(RolloutId, Document)>, StoreError> {
        check_kind(kind)?;
        let dir = self.dir.join(".documents").join(kind);
        self.blocking(move || {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == IoErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error(format!("cannot list {}", dir.display()), e)),
            };
            let mut ids: Vec<RolloutId> = entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.strip_suffix(".json")?.to_owned();
                    RolloutId::new(name).ok()
                })
                .filter(|id| after.as_ref().is_none_or(|a| id > a))
                .collect();
            ids.sort();
            ids.truncate(limit);
            ids.into_iter()
                .filter_map(|id| {
                    let path = dir.join(format!("{id}.json"));
                    read_document_file(&id, &path)
                        .transpose()
                        .map(|d| d.map(|d| (id, d)))
                })
                .collect()
        })
        .await
    }
}
