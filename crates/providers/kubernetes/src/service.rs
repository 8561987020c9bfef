//! [`ServiceSelectorRouter`]: blue-green by switching a Service's selector.

use async_trait::async_trait;
use cutover_core::{
    Granularity, ProviderError, RevisionId, RouterCapabilities, TrafficRouter, TrafficSplit,
};
use cutover_kube::{Target, classify, merge_patch};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use serde_json::json;

const SERVICES: &str = "services";

/// Blue-green router: points a Service at one revision by setting one selector label,
/// `label_key = <revision id>`, so every pod labelled with the revision gets the traffic.
///
/// Granularity is 100 %: a split must send everything to one revision.
///
/// A Service's `spec.selector` is an atomic map: the API server treats it as one value with one
/// owner, so a server-side apply of one key would either conflict with the manager of the
/// Service's manifest or, if cutover owned the selector, replace it by that one key and drop
/// the others (`app`), selecting every pod of the revision in the namespace. So the router
/// reads the Service, sets `label_key` in the selector it read, keeping every other key, and
/// writes the whole selector back with a JSON merge patch that carries the `resourceVersion` it
/// read (field manager `cutover`; see [`cutover_kube::merge_patch`]). A concurrent change of the
/// Service is a 409, reported as a transient conflict: the engine retries, the router reads
/// again, the other change survives. Nothing is written when the selector already points at
/// the revision. It never forces a server-side apply.
///
/// After a switch `cutover` owns `spec.selector` (an `Update`, as `kubectl edit` would). A
/// later server-side apply of the Service's manifest with a different selector therefore
/// conflicts with `cutover` (and a client-side `kubectl apply` would set the selector back):
/// leave the revision key out of what your deployment tooling re-applies, or apply the
/// revision the Service points at.
///
/// A Service without a selector is a permanent error: cutover will not turn a Service with
/// hand-made endpoints into one that selects pods.
///
/// ```no_run
/// # fn f(client: kube::Client) {
/// use cutover_kubernetes::ServiceSelectorRouter;
/// // Service `web` selects `app=web` (from its manifest) and `cutover.dev/revision=<id>`.
/// let router = ServiceSelectorRouter::new(client, "prod", "web", "cutover.dev/revision");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceSelectorRouter {
    api: Api<Service>,
    target: Target,
    label_key: String,
    name: String,
}

impl ServiceSelectorRouter {
    /// A router for the Service `service` in `namespace`, switching the selector key
    /// `label_key`.
    pub fn new(client: Client, namespace: &str, service: &str, label_key: &str) -> Self {
        ServiceSelectorRouter {
            api: Api::namespaced(client, namespace),
            target: Target::new("get", SERVICES, namespace, service),
            label_key: label_key.to_owned(),
            name: format!("kubernetes/service/{namespace}/{service}"),
        }
    }
}

#[async_trait]
impl TrafficRouter for ServiceSelectorRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::ALL_OR_NOTHING)
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        let Some((revision, _)) = split.iter().find(|(_, w)| w.basis_points() == 10_000) else {
            return Err(ProviderError::permanent(format!(
                "{}: a Service selector sends all traffic to one revision; cannot apply {split}",
                self.name
            )));
        };
        let service = self
            .api
            .get(&self.target.name)
            .await
            .map_err(|e| classify(e, &self.target))?;
        let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
        if selector.is_empty() {
            return Err(ProviderError::permanent(format!(
                "{}: the Service has no selector; cutover switches one key of an existing \
                 selector and will not make a Service without one select pods (give it a \
                 selector with the application's labels)",
                self.name
            )));
        }
        if selector.get(&self.label_key).map(String::as_str) == Some(revision.as_str()) {
            return Ok(());
        }
        let mut selector = selector;
        selector.insert(self.label_key.clone(), revision.as_str().to_owned());
        let body =
            json!({ "apiVersion": "v1", "kind": "Service", "spec": { "selector": selector } });
        merge_patch(
            &self.api,
            &self.target.with_verb("patch"),
            service.metadata.resource_version.as_deref(),
            body,
        )
        .await
        .map(drop)
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        let service = self
            .api
            .get(&self.target.name)
            .await
            .map_err(|e| classify(e, &self.target))?;
        let value = service
            .spec
            .and_then(|s| s.selector)
            .and_then(|mut s| s.remove(&self.label_key));
        let Some(value) = value else {
            return Ok(None);
        };
        let revision = RevisionId::new(value.as_str()).map_err(|e| {
            ProviderError::permanent(format!(
                "{}: selector `{}={value}` is not a revision id: {e}",
                self.name, self.label_key
            ))
        })?;
        Ok(Some(TrafficSplit::all_to(&revision)))
    }
}
