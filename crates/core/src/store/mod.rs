//! The [`StateStore`] trait and the in-memory and file stores.

mod file;
mod memory;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

pub use self::file::FileStateStore;
pub use self::memory::MemoryStateStore;
use crate::state::{RolloutState, STATE_FORMAT};
use crate::{ProviderError, RolloutId};

/// A rollout's state as stored, with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Incremented by every save; the compare-and-swap key.
    pub version: u64,
    /// The state.
    pub state: RolloutState,
}

/// Why the state could not be loaded or saved.
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
    /// The stored state could not be parsed.
    #[error("stored state of rollout `{id}` cannot be read")]
    Corrupt {
        /// The rollout.
        id: RolloutId,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored state was written by a newer release.
    #[error(
        "stored state of rollout `{id}` has format {found}; this release reads up to format {STATE_FORMAT}"
    )]
    Format {
        /// The rollout.
        id: RolloutId,
        /// The format found.
        found: u32,
    },
    /// The state is too large for the store (a ConfigMap holds 1 MiB).
    #[error("state of rollout `{id}` is {size} bytes; the store holds at most {limit}")]
    TooLarge {
        /// The rollout.
        id: RolloutId,
        /// The serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The store's backend failed.
    #[error("state store failed")]
    Provider(#[from] ProviderError),
}

impl StoreError {
    /// Whether saving again later may succeed (the backend failed transiently).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Provider(e) if e.is_retryable())
    }
}

/// Keeps rollout state between engine runs, with compare-and-swap on a version.
///
/// `save(id, state, expected)` succeeds only if the stored version is `expected` (`None`: the
/// rollout is not stored yet) and returns the new version. The engine saves before every action,
/// so a rollout whose process dies resumes from the store; and an engine whose save conflicts
/// stops at once, so two engines never both act on the same rollout version.
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// A short name for records and spans.
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
}

/// Parses a stored state, checking its format.
pub(crate) fn decode(id: &RolloutId, bytes: &[u8]) -> Result<RolloutState, StoreError> {
    #[derive(serde::Deserialize)]
    struct Header {
        format: u32,
    }
    let header: Header = serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        source,
    })?;
    if header.format > STATE_FORMAT {
        return Err(StoreError::Format {
            id: id.clone(),
            found: header.format,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        source,
    })
}

/// Serializes a state for storage.
pub(crate) fn encode(id: &RolloutId, state: &RolloutState) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(state).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        source,
    })
}

/// The compare step of compare-and-swap.
pub(crate) fn check_version(
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
