//! Applying manifests to a cluster, for setting tests (and CI) up.

use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;

/// The field manager of [`apply_yaml`].
pub const SETUP_MANAGER: &str = "cutover-test";

/// Server-side applies every object in `yaml` (one or more YAML documents of any kind the API
/// server serves) as field manager [`SETUP_MANAGER`], forcing, in `namespace` for namespaced
/// kinds. Returns how many objects were applied.
///
/// # Panics
///
/// When the YAML is invalid, an object has no `apiVersion`, `kind` or `metadata.name`, its
/// kind is not served, or the API server rejects it.
pub async fn apply_yaml(client: &kube::Client, namespace: &str, yaml: &str) -> usize {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("the manifests are not valid YAML: {e}"));
    let objects: Vec<Value> = documents.into_iter().filter(Value::is_object).collect();
    for object in &objects {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            !api_version.is_empty() && !kind.is_empty() && !name.is_empty(),
            "an object without apiVersion, kind or metadata.name: {object}"
        );
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{api_version} {kind} is not served: {e}"));
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            name,
            &PatchParams::apply(SETUP_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }
    objects.len()
}
