//! Installing CustomResourceDefinitions on the test control plane.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::control_plane::ControlPlane;
use super::eventually;

impl ControlPlane {
    /// Installs the CustomResourceDefinitions in `yaml` (one or more YAML documents, as
    /// upstream ships them; other documents are ignored) and waits until each is established
    /// and its API group serves it. A CRD already installed on this control plane is skipped,
    /// so every test can call this for what it needs.
    ///
    /// # Panics
    ///
    /// When `yaml` holds no CRD or the API server rejects one.
    pub async fn install_crds(&self, yaml: &str) {
        self.install(yaml, false).await;
    }

    /// [`install_crds`](Self::install_crds) with the CRDs' CEL validation rules
    /// (`x-kubernetes-validations`) removed first: Kubernetes 1.24 rejects some rules of
    /// recent CRDs (Gateway API's HTTPRoute) for their estimated cost.
    pub async fn install_crds_without_validation_rules(&self, yaml: &str) {
        self.install(yaml, true).await;
    }

    async fn install(&self, yaml: &str, strip_rules: bool) {
        let mut installed = self.crds.lock().await;
        let admin = self.admin();
        for crd in crds(yaml, strip_rules) {
            let name = crd["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !installed.contains(&name) {
                install(&admin, &crd).await;
                installed.insert(name);
            }
        }
    }
}

/// Installs the CustomResourceDefinitions in `yaml` on the cluster of `client` (which may
/// create them) and waits until each is established and served; with `strip_rules`, their CEL
/// validation rules are removed first. For the control plane of a test, prefer
/// [`ControlPlane::install_crds`], which installs each CRD once.
///
/// # Panics
///
/// When `yaml` holds no CRD or the API server rejects one.
pub async fn install_crds(client: &kube::Client, yaml: &str, strip_rules: bool) {
    for crd in crds(yaml, strip_rules) {
        install(client, &crd).await;
    }
}

/// The CRDs in `yaml`, without CEL rules if `strip_rules`.
fn crds(yaml: &str, strip_rules: bool) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("the CRDs are not valid YAML: {e}"));
    let mut crds: Vec<Value> = documents
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert!(!crds.is_empty(), "no CustomResourceDefinition in the YAML");
    if strip_rules {
        for crd in &mut crds {
            remove_key(crd, "x-kubernetes-validations");
        }
    }
    crds
}

/// Applies one CRD and waits until it is established and every served version lists it.
async fn install(client: &kube::Client, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let params = PatchParams::apply("cutover-test").force();
    api.patch(name, &params, &Patch::Apply(crd))
        .await
        .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
    eventually(&format!("CRD {name} to be established"), || async {
        let crd = api.get(name).await.ok()?;
        let established = crd
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
    for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
        if version["served"] != true {
            continue;
        }
        let api_version = format!("{group}/{}", version["name"].as_str().unwrap_or(""));
        eventually(&format!("{api_version} to serve {plural}"), || async {
            let resources = client.list_api_group_resources(&api_version).await.ok()?;
            resources
                .resources
                .iter()
                .any(|r| r.name == plural)
                .then_some(())
        })
        .await;
    }
}

/// Removes `key` from every object in `value`.
fn remove_key(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            map.remove(key);
            map.values_mut().for_each(|v| remove_key(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| remove_key(v, key)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn validation_rules_are_removed_everywhere() {
        let mut schema = json!({
            "x-kubernetes-validations": [{ "rule": "a" }],
            "properties": { "rules": { "items": [{ "x-kubernetes-validations": [], "type": "object" }] } },
        });
        remove_key(&mut schema, "x-kubernetes-validations");
        assert_eq!(
            schema,
            json!({ "properties": { "rules": { "items": [{ "type": "object" }] } } })
        );
    }
}
