//! [`ServiceSelectorRouter`]: blue-green by switching a Service's selector.

use async_trait::async_trait;
use cutover_core::{
    Granularity, ProviderError, RevisionId, RouterCapabilities, TrafficRouter, TrafficSplit,
};
use cutover_kube::{Target, apply, classify};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use serde_json::json;

const SERVICES: &str = "services";

/// Blue-green router: points a Service at one revision by setting one selector label,
/// `label_key = <revision id>`, so every pod labelled with the revision gets the traffic.
///
/// Granularity is 100 %: a split must send everything to one revision. Only the one selector
/// key is written (server-side apply, field manager `cutover`); every other field of the
/// Service, including the other selector keys, is left as it is. If another manager owns that
/// selector key, the write fails with a permanent error instead of overwriting it.
///
/// ```no_run
/// # fn f(client: kube::Client) {
/// use cutover_kubernetes::ServiceSelectorRouter;
/// // Service `web` selects `app=web` (owned by its manifest) and `cutover.dev/revision=<id>`.
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
        // Read first: an apply to a missing Service would try to create it.
        self.api
            .get(&self.target.name)
            .await
            .map_err(|e| classify(e, &self.target))?;
        let config = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": self.target.name },
            "spec": { "selector": { self.label_key.as_str(): revision.as_str() } },
        });
        apply(&self.api, &self.target.with_verb("patch"), &config)
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
