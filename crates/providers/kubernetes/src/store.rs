//! [`ConfigMapStateStore`]: rollout state in one ConfigMap per rollout.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cutover_core::{RolloutId, RolloutState, STATE_FORMAT, StateStore, StoreError, Stored};
use cutover_kube::{Target, classify, is_conflict, is_not_found};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::Client;
use kube::api::{ObjectMeta, PostParams};

use crate::names::object_name;

const CONFIGMAPS: &str = "configmaps";
/// The annotation holding the state's version (the compare-and-swap key of [`StateStore`]).
pub const VERSION_ANNOTATION: &str = "cutover.dev/state-version";
/// The label on every state ConfigMap, naming the rollout's object name.
pub const ROLLOUT_LABEL: &str = "cutover.dev/rollout";
/// Kubernetes rejects a ConfigMap whose data exceeds 1 MiB.
pub const CONFIGMAP_DATA_LIMIT: usize = 1024 * 1024;

/// A [`StateStore`] on ConfigMaps: one ConfigMap per rollout, named `<prefix><rollout id>`
/// (made a valid name if needed), whose single data key is the rollout's object name and holds
/// the state as JSON.
///
/// Compare-and-swap: the version `save` expects is kept in the annotation
/// `cutover.dev/state-version`; a save reads the ConfigMap, checks that version, and writes
/// with the `resourceVersion` it read, so a write by anyone in between makes the API server
/// answer 409 and the save a [`StoreError::Conflict`]. A rollout saved for the first time is
/// created; if someone created it first, that is a conflict too.
///
/// Size: decision records live in the state, so a long rollout grows it (about 370 bytes a
/// record: a ConfigMap fills at roughly 2,500 records). A state that would not fit is refused
/// before anything is written, with [`StoreError::TooLarge`] naming the rollout and the size.
///
/// ```no_run
/// # fn f(client: kube::Client) {
/// use cutover_kubernetes::ConfigMapStateStore;
/// let store = ConfigMapStateStore::new(client, "cutover-system", "rollout-");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConfigMapStateStore {
    api: Api<ConfigMap>,
    namespace: String,
    prefix: String,
    limit: usize,
    name: String,
}

impl ConfigMapStateStore {
    /// A store keeping ConfigMaps named `<prefix><rollout id>` in `namespace`.
    pub fn new(client: Client, namespace: &str, prefix: &str) -> Self {
        ConfigMapStateStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            prefix: prefix.to_owned(),
            limit: CONFIGMAP_DATA_LIMIT,
            name: format!("kubernetes/configmaps/{namespace}"),
        }
    }

    /// Lowers the size limit (bytes of data), to leave room or to test the limit.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.min(CONFIGMAP_DATA_LIMIT);
        self
    }

    /// The ConfigMap name of a rollout.
    pub fn configmap_name(&self, id: &RolloutId) -> String {
        object_name(&self.prefix, id.as_str())
    }

    async fn get(&self, id: &RolloutId) -> Result<Option<ConfigMap>, StoreError> {
        let name = self.configmap_name(id);
        match self.api.get(&name).await {
            Ok(cm) => Ok(Some(cm)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(StoreError::Provider(classify(
                e,
                &Target::new("get", CONFIGMAPS, &self.namespace, name),
            ))),
        }
    }
}

/// The version annotation of a state ConfigMap (a ConfigMap without one is version 0).
fn version_of(cm: &ConfigMap) -> u64 {
    cm.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(VERSION_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn decode(id: &RolloutId, json: &str) -> Result<RolloutState, StoreError> {
    #[derive(serde::Deserialize)]
    struct Header {
        format: u32,
    }
    let corrupt = |source| StoreError::Corrupt {
        id: id.clone(),
        source,
    };
    let header: Header = serde_json::from_str(json).map_err(corrupt)?;
    if header.format > STATE_FORMAT {
        return Err(StoreError::Format {
            id: id.clone(),
            found: header.format,
        });
    }
    serde_json::from_str(json).map_err(corrupt)
}

#[async_trait]
impl StateStore for ConfigMapStateStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        let Some(cm) = self.get(id).await? else {
            return Ok(None);
        };
        let key = self.configmap_name(id);
        let Some(json) = cm.data.as_ref().and_then(|d| d.get(&key)) else {
            return Ok(None);
        };
        Ok(Some(Stored {
            version: version_of(&cm),
            state: decode(id, json)?,
        }))
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let name = self.configmap_name(id);
        let json = serde_json::to_string(state).map_err(|source| StoreError::Corrupt {
            id: id.clone(),
            source,
        })?;
        let size = json.len() + name.len();
        if size > self.limit {
            return Err(StoreError::TooLarge {
                id: id.clone(),
                size,
                limit: self.limit,
            });
        }
        let existing = self.get(id).await?;
        let found = existing.as_ref().map(version_of);
        if found != expected {
            return Err(StoreError::Conflict {
                id: id.clone(),
                expected,
                found,
            });
        }
        let version = expected.map_or(1, |v| v + 1);
        let mut cm = existing.unwrap_or_else(|| ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(ROLLOUT_LABEL.to_owned(), name.clone())])),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        });
        cm.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(VERSION_ANNOTATION.to_owned(), version.to_string());
        cm.data = Some(BTreeMap::from([(name.clone(), json)]));
        let params = PostParams {
            field_manager: Some(cutover_kube::FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let result = if found.is_none() {
            self.api.create(&params, &cm).await
        } else {
            // `cm` carries the resourceVersion read above: a write in between is a 409.
            self.api.replace(&name, &params, &cm).await
        };
        match result {
            Ok(_) => Ok(version),
            Err(e) if is_conflict(&e) => {
                // Someone wrote in between: report the version now stored.
                let found = self.get(id).await.ok().flatten().as_ref().map(version_of);
                Err(StoreError::Conflict {
                    id: id.clone(),
                    expected,
                    found,
                })
            }
            Err(e) => {
                let verb = if found.is_none() { "create" } else { "update" };
                Err(StoreError::Provider(classify(
                    e,
                    &Target::new(verb, CONFIGMAPS, &self.namespace, name),
                )))
            }
        }
    }
}
