//! Providers that keep their world in files, so that it outlives a killed process: a router
//! whose split is a file and migrations whose effects are files, plus a store wrapper. Used by
//! the crash tests, whose rollouts run in child processes that are killed with SIGKILL.
//!
//! Each provider calls [`checkpoint`] right after its effect has reached the disk: in stepped
//! mode the child process then stops until its parent says to go on, so the parent can kill it
//! at exactly that point.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::io::BufRead as _;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use cutover::state::RolloutState;
use cutover::{
    Acquired, Claim, CommandRequest, DecisionRecord, FileStateStore, Granularity, Lease,
    ListFilter, MigrationContext, MigrationPhase, MigrationStep, ProviderError, QueuedCommand,
    RolloutId, RouterCapabilities, StateStore, StoreError, Stored, Summary, Timestamp,
    TrafficRouter, TrafficSplit, Watch, Weight,
};

static STEPPED: AtomicBool = AtomicBool::new(false);

/// Makes [`checkpoint`] stop at every point until a line arrives on stdin.
pub fn step_through_checkpoints() {
    STEPPED.store(true, Ordering::SeqCst);
}

/// Announces `label` on stdout; in stepped mode, waits for a line on stdin before going on. The
/// whole process stops here on purpose (this is a test child), so the parent can kill it at
/// exactly this point.
pub fn checkpoint(label: &str) {
    if !STEPPED.load(Ordering::SeqCst) {
        return;
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "point {label}");
    let _ = out.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
        // The parent closed stdin: run freely from here on.
        STEPPED.store(false, Ordering::SeqCst);
    }
}

/// A [`FileStateStore`] with a checkpoint after every save and every append to the log.
#[derive(Debug, Clone)]
pub struct CheckpointStore(pub FileStateStore);

#[async_trait]
impl StateStore for CheckpointStore {
    fn name(&self) -> &'static str {
        "file+checkpoints"
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        self.0.load(id).await
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let version = self.0.save(id, state, expected).await?;
        checkpoint(&format!("saved v{version}"));
        Ok(version)
    }

    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        self.0.append(id, records).await?;
        if let Some(last) = records.last() {
            checkpoint(&format!("appended to seq {}", last.seq));
        }
        Ok(())
    }

    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        self.0.records(id, after, limit).await
    }

    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        self.0.send(id, request, now).await
    }

    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        self.0.commands(id, after).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        self.0.list(filter).await
    }

    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        self.0.acquire(id, claim).await
    }

    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        self.0.renew(id, lease, now).await
    }

    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        self.0.lease(id).await
    }

    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        self.0.release(id, lease).await
    }

    fn watch(&self, id: &RolloutId) -> Watch {
        self.0.watch(id)
    }
}

fn io(what: &str, e: std::io::Error) -> ProviderError {
    ProviderError::transient(what.to_owned()).with_source(e)
}

/// Writes `contents` to `path` atomically (temporary file, sync, rename).
fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Appends a line and syncs it.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")?;
    file.sync_all()
}

/// A router whose split lives in `<dir>/split` as `v1=9000,v2=1000`; every split set is also
/// appended to `<dir>/splits.log`.
#[derive(Debug, Clone)]
pub struct FileRouter {
    dir: PathBuf,
}

impl FileRouter {
    /// A router keeping its state in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileRouter { dir: dir.into() }
    }

    /// The split in effect in `dir`, if one was set.
    pub fn current(dir: &Path) -> Option<TrafficSplit> {
        decode(&fs::read_to_string(dir.join("split")).ok()?)
    }
}

fn decode(text: &str) -> Option<TrafficSplit> {
    let entries = text
        .trim()
        .split(',')
        .map(|pair| {
            let (revision, bp) = pair.split_once('=')?;
            Some((
                revision.parse().ok()?,
                Weight::from_basis_points(bp.parse().ok()?).ok()?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    TrafficSplit::new(entries).ok()
}

fn encode(split: &TrafficSplit) -> String {
    split
        .iter()
        .map(|(r, w)| format!("{r}={}", w.basis_points()))
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait]
impl TrafficRouter for FileRouter {
    fn name(&self) -> &'static str {
        "file-router"
    }

    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::PERCENT)
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        let line = encode(split);
        append_line(&self.dir.join("splits.log"), &line)
            .map_err(|e| io("cannot log the split", e))?;
        write_atomic(&self.dir.join("split"), line.as_bytes())
            .map_err(|e| io("cannot write the split", e))?;
        checkpoint(&format!("split {line}"));
        Ok(())
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(Self::current(&self.dir))
    }
}

/// A reversible migration step whose effect is the file `<dir>/<id>.applied`; every call of
/// `apply` or `revert` is appended to `<dir>/<id>.log`, so a test can count them.
#[derive(Debug, Clone)]
pub struct FileMigration {
    dir: PathBuf,
    id: String,
    phase: MigrationPhase,
}

impl FileMigration {
    /// A step with its files in `dir`.
    pub fn new(dir: impl Into<PathBuf>, id: impl Into<String>, phase: MigrationPhase) -> Self {
        FileMigration {
            dir: dir.into(),
            id: id.into(),
            phase,
        }
    }

    fn flag(&self) -> PathBuf {
        self.dir.join(format!("{}.applied", self.id))
    }

    /// The calls logged for migration `id` in `dir`, in order.
    pub fn calls(dir: &Path, id: &str) -> Vec<String> {
        fs::read_to_string(dir.join(format!("{id}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[async_trait]
impl MigrationStep for FileMigration {
    fn id(&self) -> &str {
        &self.id
    }

    fn phase(&self) -> MigrationPhase {
        self.phase
    }

    fn reversible(&self) -> bool {
        true
    }

    async fn apply(&self, _ctx: &MigrationContext) -> Result<(), ProviderError> {
        append_line(&self.dir.join(format!("{}.log", self.id)), "apply")
            .map_err(|e| io("cannot log", e))?;
        write_atomic(&self.flag(), b"applied").map_err(|e| io("cannot apply", e))?;
        checkpoint(&format!("applied {}", self.id));
        Ok(())
    }

    async fn revert(&self, _ctx: &MigrationContext) -> Result<(), ProviderError> {
        append_line(&self.dir.join(format!("{}.log", self.id)), "revert")
            .map_err(|e| io("cannot log", e))?;
        match fs::remove_file(self.flag()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot revert", e)),
        }
        checkpoint(&format!("reverted {}", self.id));
        Ok(())
    }

    async fn is_applied(&self, _ctx: &MigrationContext) -> Result<Option<bool>, ProviderError> {
        Ok(Some(self.flag().exists()))
    }
}
