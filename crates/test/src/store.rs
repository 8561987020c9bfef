use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use cutover_core::state::RolloutState;
use cutover_core::{MemoryStateStore, RolloutId, StateStore, StoreError, Stored};
use tokio::sync::Notify;

/// When a [`CrashingStore`] freezes its engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// The save is written, then the engine freezes: it dies right after persisting.
    AfterSave,
    /// The engine freezes before the save is written: it dies with the save lost.
    BeforeSave,
}

/// A [`MemoryStateStore`] that "kills" the engine at its `n`-th save: the save never returns,
/// so the engine is frozen at that exact point, and the test drops it. A fresh engine on
/// [`inner`](Self::inner) then resumes the rollout, as a restarted process would.
///
/// ```no_run
/// # async fn example(build: impl Fn(cutover_test::CrashingStore) -> cutover_core::Rollout) {
/// use cutover_test::{CrashMode, CrashingStore};
/// let store = CrashingStore::new(3, CrashMode::AfterSave);
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
    saves: Arc<AtomicU64>,
    crashed: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl CrashingStore {
    /// A store that freezes at save number `crash_at` (from 1).
    pub fn new(crash_at: u64, mode: CrashMode) -> Self {
        Self::wrapping(MemoryStateStore::new(), crash_at, mode)
    }

    /// The same, over an existing store.
    pub fn wrapping(inner: MemoryStateStore, crash_at: u64, mode: CrashMode) -> Self {
        CrashingStore {
            inner,
            crash_at,
            mode,
            saves: Arc::default(),
            crashed: Arc::default(),
            notify: Arc::default(),
        }
    }

    /// The store underneath, holding whatever was saved before the crash.
    pub fn inner(&self) -> MemoryStateStore {
        self.inner.clone()
    }

    /// Saves attempted so far.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::SeqCst)
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
        let n = self.saves.fetch_add(1, Ordering::SeqCst) + 1;
        if n < self.crash_at {
            return self.inner.save(id, state, expected).await;
        }
        if n == self.crash_at && self.mode == CrashMode::AfterSave {
            self.inner.save(id, state, expected).await?;
        }
        self.freeze().await
    }
}
