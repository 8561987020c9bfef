//! What a rollout ships: the service, the environment, the commit and when it was made. Kept as
//! a store [`Document`](cutover_core::Document) of kind `release` under the rollout's id, so
//! notifications and DORA figures can say which service a rollout changed and how long the
//! change took from commit to production.

use cutover_core::{RolloutId, StateStore, StoreError, Timestamp};
use serde::{Deserialize, Serialize};

/// The document kind releases are kept under.
pub const RELEASE_KIND: &str = "release";

/// What a rollout ships, written by whoever starts it (a CI job, a deploy tool).
///
/// Rollout ids are unique per rollout (`checkout-v42`), so the service they change is said
/// here; without a release the rollout id stands for the service.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_core::{MemoryStateStore, Timestamp};
/// use cutover_notify::Release;
/// let store = MemoryStateStore::new();
/// let id = "checkout-v42".parse()?;
/// Release::new("checkout")
///     .environment("production")
///     .commit("9f1c2ab", Timestamp::from_unix_millis(1_700_000_000_000))
///     .save(&store, &id)
///     .await?;
/// let release = Release::load(&store, &id).await?.expect("saved");
/// assert_eq!(release.service, "checkout");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The service the rollout changes.
    pub service: String,
    /// Where it runs (`production`); `None` when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The commit shipped (a SHA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When that commit was made: the start of DORA's lead time for changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<Timestamp>,
    /// The artifact shipped as a package URL (`pkg:oci/checkout@sha256%3A...`), for CDEvents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

impl Release {
    /// A release of `service` with nothing else known.
    pub fn new(service: impl Into<String>) -> Self {
        Release {
            service: service.into(),
            environment: None,
            commit: None,
            committed_at: None,
            artifact: None,
        }
    }

    /// Sets the environment.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Sets the commit and when it was made.
    pub fn commit(mut self, sha: impl Into<String>, committed_at: Timestamp) -> Self {
        self.commit = Some(sha.into());
        self.committed_at = Some(committed_at);
        self
    }

    /// Sets the artifact's package URL.
    pub fn artifact(mut self, purl: impl Into<String>) -> Self {
        self.artifact = Some(purl.into());
        self
    }

    /// Saves this release for rollout `id`, replacing any earlier one.
    pub async fn save(&self, store: &dyn StateStore, id: &RolloutId) -> Result<(), StoreError> {
        let body = serde_json::to_value(self).map_err(|source| StoreError::Corrupt {
            id: id.clone(),
            location: "release being saved".into(),
            source,
        })?;
        loop {
            let expected = store
                .load_document(RELEASE_KIND, id)
                .await?
                .map(|d| d.version);
            match store.save_document(RELEASE_KIND, id, &body, expected).await {
                Err(StoreError::Conflict { .. }) => {}
                other => return other.map(|_| ()),
            }
        }
    }

    /// The release of rollout `id`, if one was saved.
    pub async fn load(store: &dyn StateStore, id: &RolloutId) -> Result<Option<Self>, StoreError> {
        let Some(document) = store.load_document(RELEASE_KIND, id).await? else {
            return Ok(None);
        };
        serde_json::from_value(document.body)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                id: id.clone(),
                location: format!("`{RELEASE_KIND}` document"),
                source,
            })
    }

    /// The release of rollout `id`, or `None` when there is none or the store keeps no
    /// documents (an `Unsupported` error).
    pub(crate) async fn load_if_kept(
        store: &dyn StateStore,
        id: &RolloutId,
    ) -> Result<Option<Self>, StoreError> {
        match Self::load(store, id).await {
            Err(StoreError::Provider(e)) if e.kind() == cutover_core::ErrorKind::Unsupported => {
                Ok(None)
            }
            other => other,
        }
    }
}
