//! Reading and writing one Istio object: a clear error when it does not exist, and writes that
//! carry the `resourceVersion` that was read, so a concurrent change is a conflict (409,
//! transient: the engine re-reads and retries) rather than a lost update.

use std::fmt;

use cutover_core::ProviderError;
use cutover_kube::{FIELD_MANAGER, Target, classify, is_not_found, merge_patch};
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// One named object of kind `K`.
#[derive(Clone)]
pub(crate) struct Object<K> {
    pub(crate) api: Api<K>,
    /// `get <resource> <namespace>/<name>`.
    pub(crate) target: Target,
    /// `VirtualService` or `DestinationRule`, for messages.
    pub(crate) kind: &'static str,
}

impl<K> fmt::Debug for Object<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.kind, self.target.namespace, self.target.name
        )
    }
}

impl<K> Object<K>
where
    K: Clone
        + DeserializeOwned
        + Serialize
        + fmt::Debug
        + kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    pub(crate) fn new(
        client: kube::Client,
        resource: &str,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Object {
            api: Api::namespaced(client, namespace),
            target: Target::new("get", resource, namespace, name),
            kind,
        }
    }

    /// `VirtualService prod/web`.
    pub(crate) fn label(&self) -> String {
        format!(
            "{} {}/{}",
            self.kind, self.target.namespace, self.target.name
        )
    }

    /// Reads the object; a missing object is a permanent error naming it.
    pub(crate) async fn read(&self) -> Result<K, ProviderError> {
        self.api.get(&self.target.name).await.map_err(|error| {
            if is_not_found(&error) {
                ProviderError::permanent(format!("{} does not exist", self.label()))
                    .with_source(error)
            } else {
                classify(error, &self.target)
            }
        })
    }

    /// Reads the object, or `None` if it does not exist.
    pub(crate) async fn read_opt(&self) -> Result<Option<K>, ProviderError> {
        match self.api.get(&self.target.name).await {
            Ok(object) => Ok(Some(object)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(classify(error, &self.target)),
        }
    }

    /// Merge-patches `spec` (and `metadata`) of the object as field manager `cutover`, on the
    /// condition that it is still at `resource_version`.
    pub(crate) async fn patch(
        &self,
        resource_version: Option<String>,
        metadata: Value,
        spec: Value,
    ) -> Result<(), ProviderError> {
        let metadata = match metadata {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": metadata,
            "spec": spec,
        });
        let target = self.target.with_verb("patch");
        merge_patch(&self.api, &target, resource_version.as_deref(), body)
            .await
            .map(drop)
    }

    /// Creates `object` as field manager `cutover`.
    pub(crate) async fn create(&self, object: &K) -> Result<(), ProviderError> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        self.api
            .create(&params, object)
            .await
            .map(drop)
            .map_err(|error| classify(error, &self.target.with_verb("create")))
    }
}
