//! [`DestinationRuleSubsets`]: the `DestinationRule` subsets that map revisions to pod labels.

use std::collections::BTreeMap;

use cutover_core::{ProviderError, RevisionId};
use serde_json::{Value, json};

use crate::object::Object;
use crate::resources::{DESTINATION_RULES, DestinationRule};

/// Creates or updates the subsets of a `DestinationRule` that subset-based
/// [`Destination`](crate::Destination)s name: one subset per revision, selecting that
/// revision's pods by label.
///
/// [`ensure`](Self::ensure) creates the DestinationRule (with `host` and the subsets) if it does
/// not exist. Otherwise it sets the `labels` of each of its subsets, adding those that are
/// missing, and leaves everything else as it was: other subsets, a subset's own
/// `trafficPolicy`, the rule's `trafficPolicy`, `exportTo`, `workloadSelector`. `subsets` is an
/// atomic list, so, like the router, it writes with a merge patch that carries the
/// `resourceVersion` it read (see [`IstioRouter`](crate::IstioRouter) for why not server-side
/// apply). A DestinationRule for another host is a permanent error.
///
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_istio::DestinationRuleSubsets;
/// DestinationRuleSubsets::new(client, "prod", "reviews", "reviews")
///     .subset("v1".parse()?, "v1", [("app", "reviews"), ("version", "v1")])
///     .subset("v2".parse()?, "v2", [("app", "reviews"), ("version", "v2")])
///     .ensure()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DestinationRuleSubsets {
    rule: Object<DestinationRule>,
    host: String,
    subsets: BTreeMap<RevisionId, (String, BTreeMap<String, String>)>,
}

impl DestinationRuleSubsets {
    /// The subsets of the DestinationRule `name` in `namespace`, for the Service `host`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, host: &str) -> Self {
        DestinationRuleSubsets {
            rule: Object::new(
                client,
                DESTINATION_RULES,
                "DestinationRule",
                namespace,
                name,
            ),
            host: host.to_owned(),
            subsets: BTreeMap::new(),
        }
    }

    /// `revision` is the subset `subset`: the pods with all of `labels`.
    pub fn subset<'a>(
        mut self,
        revision: RevisionId,
        subset: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self.subsets.insert(revision, (subset.to_owned(), labels));
        self
    }

    /// The subset name of `revision`, if configured.
    pub fn subset_of(&self, revision: &RevisionId) -> Option<&str> {
        self.subsets.get(revision).map(|(name, _)| name.as_str())
    }

    /// Creates or updates the subsets. Idempotent: nothing is written when they are already
    /// right.
    pub async fn ensure(&self) -> Result<(), ProviderError> {
        let Some(current) = self.rule.read_opt().await? else {
            let subsets: Vec<Value> = self
                .subsets
                .values()
                .map(|(name, labels)| json!({ "name": name, "labels": labels }))
                .collect();
            let spec = json!({ "host": self.host, "subsets": subsets });
            let rule =
                DestinationRule::new(&self.rule.target.namespace, &self.rule.target.name, spec);
            return self.rule.create(&rule).await;
        };
        let host = current.spec.get("host").and_then(Value::as_str);
        if host != Some(self.host.as_str()) {
            return Err(ProviderError::permanent(format!(
                "{} is for host {}, not `{}`",
                self.rule.label(),
                host.unwrap_or("(none)"),
                self.host
            )));
        }
        let before = current
            .spec
            .get("subsets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut after = before.clone();
        for (name, labels) in self.subsets.values() {
            match after
                .iter_mut()
                .find(|s| s["name"].as_str() == Some(name.as_str()))
            {
                Some(existing) => existing["labels"] = json!(labels),
                None => after.push(json!({ "name": name, "labels": labels })),
            }
        }
        if after == before {
            return Ok(());
        }
        self.rule
            .patch(
                current.metadata.resource_version,
                json!({}),
                json!({ "subsets": after }),
            )
            .await
    }
}
