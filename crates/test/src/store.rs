use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use cutover_core::state::RolloutState;
use cutover_core::store::{Document, Watch};
use cutover_core::{
    Acquired, Claim, CommandRequest, DecisionRecord, Lease, ListFilter, MemoryStateStore,
    QueuedCommand, RolloutId, StateStore, StoreError, Stored, Summary, Timestamp,
};
use tokio::sync::Notify;

/// When a [`CrashingStore`] freezes its engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// The write is done, then the engine freezes: it dies right after persisting.
    AfterWrite,
    /// The engine freezes before the write is done: it dies with the write lost.
    BeforeWrite,
}

/// A [`MemoryStateStore`] that "kills" the engine at its `n`-th write (a state save, a
/// decision-log append or a document save, counted together): the write never returns, so the engine is frozen at
/// that exact point, and the test drops it. A fresh engine on [`inner`](Self::inner) then
/// resumes the rollout, as a restarted process would.
///
/// ```no_run
/// # async fn example(build: impl Fn(cutover_test::CrashingStore) -> cutover_core::Rollout) {
/// use cutover_test::{CrashMode, CrashingStore};
/// let store = CrashingStore::new(3, CrashMode::AfterWrite);
/// let rollout = build(store.clone());
/// tokio::select! {
///     _ = rollout.run() => {}            // finished before the 3rd save
///     () = store.crashed() => {}          // frozen at the 3rd save; dropped here
/// }
/// // resume: build a new rollout on store.inner()
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CrashingStore {
    inner: MemoryStateStore,
    crash_at: u64,
    mode: CrashMode,
    writes: Arc<AtomicU64>,
    crashed: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl CrashingStore {
    /// A store that freezes at write number `crash_at` (from 1).
    pub fn new(crash_at: u64, mode: CrashMode) -> Self {
        Self::wrapping(MemoryStateStore::new(), crash_at, mode)
    }

    /// The same, over an existing store.
    pub fn wrapping(inner: MemoryStateStore, crash_at: u64, mode: CrashMode) -> Self {
        CrashingStore {
            inner,
            crash_at,
            mode,
            writes: Arc::default(),
            crashed: Arc::default(),
            notify: Arc::default(),
        }
    }

    /// The store underneath, holding whatever was saved before the crash.
    pub fn inner(&self) -> MemoryStateStore {
        self.inner.clone()
    }

    /// Writes (saves and appends) attempted so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Whether the crash happened.
    pub fn has_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Completes once the crash has happened.
    pub async fn crashed(&self) {
        loop {
            let notified = self.notify.notified();
            if self.has_crashed() {
                return;
            }
            notified.await;
        }
    }

    async fn freeze(&self) -> ! {
        self.crashed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        std::future::pending::<()>().await;
        unreachable!("a pending future never completes")
    }
}

impl CrashingStore {
    /// Counts a write and does it, unless this is the write to crash at.
    async fn write<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n < self.crash_at {
            return write.await;
        }
        if n == self.crash_at && self.mode == CrashMode::AfterWrite {
            write.await?;
        }
        self.freeze().await
    }
}

#[async_trait]
impl StateStore for CrashingStore {
    fn name(&self) -> &'static str {
        "crashing-memory"
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        self.inner.load(id).await
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.write(self.inner.save(id, state, expected)).await
    }

    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        self.write(self.inner.append(id, records)).await
    }

    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        self.inner.records(id, after, limit).await
    }

    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        self.inner.send(id, request, now).await
    }

    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        self.inner.commands(id, after).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        self.inner.list(filter).await
    }

    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        self.inner.acquire(id, claim).await
    }

    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        self.inner.renew(id, lease, now).await
    }

    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        self.inner.lease(id).await
    }

    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        self.inner.release(id, lease).await
    }

    fn watch(&self, id: &RolloutId) -> Watch {
        self.inner.watch(id)
    }

    async fn load_document(
        &self,
        kind: &str,
        id: &RolloutId,
    ) -> Result<Option<Document>, StoreError> {
        self.inner.load_document(kind, id).await
    }

    /// Counted as a write, like a state save.
    async fn save_document(
        &self,
        kind: &str,
        id: &RolloutId,
        body: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.write(self.inner.save_document(kind, id, body, expected))
            .await
    }

    async fn list_documents(
        &self,
        kind: &str,
        after: Option<RolloutId>,
        limit: usize,
    ) -> Result<Vec<(RolloutId, Document)>, StoreError> {
        self.inner.list_documents(kind, after, limit).await
    }
}
