use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{StateStore, StoreError, Stored, check_version, decode, encode};
use crate::RolloutId;
use crate::state::RolloutState;

/// A [`StateStore`] in memory, shared by clones. The default store of a rollout.
///
/// States are kept serialized, exactly as a durable store keeps them, so a state that does not
/// survive serialization fails here first.
///
/// ```
/// use cutover_core::MemoryStateStore;
/// let store = MemoryStateStore::new();
/// let same = store.clone(); // shares the data
/// assert_eq!(store.len(), same.len());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStateStore {
    rollouts: Arc<Mutex<Entries>>,
}

/// Version and serialized state, by rollout.
type Entries = BTreeMap<RolloutId, (u64, Vec<u8>)>;

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rollouts stored.
    pub fn len(&self) -> usize {
        self.rollouts.lock().len()
    }

    /// Whether no rollout is stored.
    pub fn is_empty(&self) -> bool {
        self.rollouts.lock().is_empty()
    }

    /// The stored version of a rollout.
    pub fn version(&self, id: &RolloutId) -> Option<u64> {
        self.rollouts.lock().get(id).map(|(v, _)| *v)
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        let entry = self.rollouts.lock().get(id).cloned();
        entry
            .map(|(version, bytes)| {
                Ok(Stored {
                    version,
                    state: decode(id, &bytes)?,
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
        let bytes = encode(id, state)?;
        let mut rollouts = self.rollouts.lock();
        let version = check_version(id, expected, rollouts.get(id).map(|(v, _)| *v))?;
        rollouts.insert(id.clone(), (version, bytes));
        Ok(version)
    }
}
