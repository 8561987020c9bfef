//! [`HttpRouteRouter`]: weighted `backendRefs`, header and cookie rules and request mirroring on
//! a Gateway API `HTTPRoute`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cutover_core::{
    Granularity, HeaderRoute, Mirror, ProviderError, RevisionId, RouteMatch, RouterCapabilities,
    StringMatch, TrafficRouter, TrafficSplit, Weight,
};
use cutover_kube::{Target, classify, escape_regex, merge_patch, split_from_weights};
use gateway_api::apis::standard::httproutes::{
    HttpRoute, HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteRulesFilters,
    HttpRouteRulesFiltersRequestMirror, HttpRouteRulesFiltersRequestMirrorBackendRef,
    HttpRouteRulesFiltersRequestMirrorFraction, HttpRouteRulesFiltersType, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeaders, HttpRouteRulesMatchesHeadersType,
};
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::names::object_name;

const HTTPROUTES: &str = "httproutes.gateway.networking.k8s.io";
/// Prefix of the names of the rules cutover adds for header and cookie routes.
pub const ROUTE_RULE_PREFIX: &str = "cutover-route-";

/// The Service (and port) that serves a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Backend {
    service: String,
    port: Option<i32>,
}

/// Router for a Gateway API `HTTPRoute`.
///
/// - **Split**: sets the `weight` of each revision's Service in the `backendRefs` of one named
///   rule (the *managed rule*), in basis points (granularity 0.01 %). The managed rule's
///   `backendRefs` are the revisions' Services, nothing else; fields of an existing backend
///   ref other than the weight are kept.
/// - **Header and cookie routes**: one extra rule per route, named
///   `cutover-route-<route name>`, with the managed rule's matches plus the route's header
///   matches, sending everything to the revision. Gateway API prefers the match with more
///   header matches, so the extra rule wins over the managed rule. Cookies are matched with a
///   `RegularExpression` match on the `Cookie` header (an implementation-specific feature of
///   Gateway API: check that your gateway supports it).
/// - **Mirroring**: a `RequestMirror` filter on the managed rule, with the share as a
///   `fraction` of 10 000. One mirror at a time: setting a mirror replaces the previous one and
///   removing any mirror removes it. A mirror restricted by `matches` is not supported.
/// - Rules cutover does not manage are written back unchanged. `spec.rules` is an atomic list
///   in the Gateway API schema, owned whole by whoever created the route (kubectl, Helm, Argo
///   CD), so a server-side apply of it would conflict with them (and, were the route created
///   by cutover's own field manager, an apply of the rules alone would delete its
///   `parentRefs`). The router instead reads the route, edits the rules it manages, and writes
///   the whole list back with a merge patch that carries the `resourceVersion` it read (field
///   manager `cutover`, see [`cutover_kube::merge_patch`]): a concurrent change is a transient
///   conflict and the next try reads again. A write that changes nothing is skipped. After a
///   write `cutover` owns `spec.rules`, so a later server-side apply of the route's manifest
///   with other rules conflicts with `cutover` instead of silently undoing the rollout.
/// - The rules are read through gateway-api's standard-channel types. A rule with a field
///   those types do not know (an experimental-channel field) would lose it on the way back, so
///   the router refuses to write such a route, with a permanent error naming the rule.
///
/// ```no_run
/// # fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_kubernetes::HttpRouteRouter;
/// let router = HttpRouteRouter::new(client, "prod", "web", "primary")
///     .backend("v1".parse()?, "web-v1", Some(8080))
///     .backend("v2".parse()?, "web-v2", Some(8080));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpRouteRouter {
    api: Api<HttpRoute>,
    /// The same route, untyped, to see fields the typed rules would drop.
    raw: Api<DynamicObject>,
    target: Target,
    rule: String,
    backends: BTreeMap<RevisionId, Backend>,
    name: String,
}

impl HttpRouteRouter {
    /// A router for the rule named `rule` of the `HTTPRoute` `route` in `namespace`. Add the
    /// Service of each revision with [`backend`](Self::backend).
    pub fn new(client: Client, namespace: &str, route: &str, rule: &str) -> Self {
        let resource = ApiResource::erase::<HttpRoute>(&());
        HttpRouteRouter {
            raw: Api::namespaced_with(client.clone(), namespace, &resource),
            api: Api::namespaced(client, namespace),
            target: Target::new("get", HTTPROUTES, namespace, route),
            rule: rule.to_owned(),
            backends: BTreeMap::new(),
            name: format!("kubernetes/httproute/{namespace}/{route}"),
        }
    }

    /// Serves `revision` from the Service `service` (on `port`).
    pub fn backend(mut self, revision: RevisionId, service: &str, port: Option<i32>) -> Self {
        self.backends.insert(
            revision,
            Backend {
                service: service.to_owned(),
                port,
            },
        );
        self
    }

    fn backend_of(&self, revision: &RevisionId) -> Result<&Backend, ProviderError> {
        self.backends.get(revision).ok_or_else(|| {
            ProviderError::permanent(format!(
                "{}: no backend Service configured for revision `{revision}`",
                self.name
            ))
        })
    }

    fn is_ours(&self, service: &str) -> bool {
        self.backends.values().any(|b| b.service == service)
    }

    /// Reads the route, checking that its rules survive a round trip through the typed rules
    /// (see the type's docs).
    async fn read(&self) -> Result<HttpRoute, ProviderError> {
        let raw = self
            .raw
            .get(&self.target.name)
            .await
            .map_err(|e| classify(e, &self.target))?;
        let raw = serde_json::to_value(&raw).map_err(|e| self.unreadable(&e))?;
        let route: HttpRoute =
            serde_json::from_value(raw.clone()).map_err(|e| self.unreadable(&e))?;
        let empty = Vec::new();
        let raw_rules = raw["spec"]["rules"].as_array().unwrap_or(&empty);
        for (raw_rule, rule) in raw_rules.iter().zip(route.spec.rules.iter().flatten()) {
            let typed = serde_json::to_value(rule).map_err(|e| self.unreadable(&e))?;
            if &typed != raw_rule {
                return Err(ProviderError::permanent(format!(
                    "{}: rule `{}` has fields this version of cutover does not know ({}); \
                     writing the rules back would drop them, so cutover does not write",
                    self.name,
                    rule.name.as_deref().unwrap_or("(unnamed)"),
                    unknown_fields(raw_rule, &typed).join(", ")
                )));
            }
        }
        Ok(route)
    }

    fn unreadable(&self, e: &serde_json::Error) -> ProviderError {
        ProviderError::permanent(format!("{}: the HTTPRoute cannot be read: {e}", self.name))
    }

    /// The index of the managed rule.
    fn managed(&self, rules: &[HttpRouteRules]) -> Result<usize, ProviderError> {
        rules
            .iter()
            .position(|r| r.name.as_deref() == Some(self.rule.as_str()))
            .ok_or_else(|| {
                ProviderError::permanent(format!(
                    "{}: the HTTPRoute has no rule named `{}`",
                    self.name, self.rule
                ))
            })
    }

    /// Reads the route, lets `change` edit its rules (given the managed rule's index), and
    /// writes the rules back under the `resourceVersion` read, unless nothing changed.
    async fn update(
        &self,
        change: impl FnOnce(&mut Vec<HttpRouteRules>, usize) -> Result<(), ProviderError> + Send,
    ) -> Result<(), ProviderError> {
        let route = self.read().await?;
        let before = route.spec.rules.unwrap_or_default();
        let mut rules = before.clone();
        let managed = self.managed(&rules)?;
        change(&mut rules, managed)?;
        if rules == before {
            return Ok(());
        }
        merge_patch(
            &self.api,
            &self.target.with_verb("patch"),
            route.metadata.resource_version.as_deref(),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "spec": { "rules": rules },
            }),
        )
        .await
        .map(drop)
    }

    fn backend_ref(
        existing: &[HttpRouteRulesBackendRefs],
        backend: &Backend,
        weight: i32,
    ) -> HttpRouteRulesBackendRefs {
        let mut backend_ref = existing
            .iter()
            .find(|b| b.name == backend.service)
            .cloned()
            .unwrap_or_else(|| HttpRouteRulesBackendRefs {
                name: backend.service.clone(),
                port: backend.port,
                ..HttpRouteRulesBackendRefs::default()
            });
        backend_ref.weight = Some(weight);
        backend_ref
    }
}

#[async_trait]
impl TrafficRouter for HttpRouteRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::BASIS_POINT)
            .with_header_routes()
            .with_cookie_routes()
            .with_mirroring()
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        for (revision, weight) in split.iter() {
            if weight.basis_points() > 0 {
                self.backend_of(revision)?;
            }
        }
        self.update(|rules, managed| {
            let rule = &mut rules[managed];
            let existing = rule.backend_refs.take().unwrap_or_default();
            let refs = self
                .backends
                .iter()
                .map(|(revision, backend)| {
                    let weight = i32::from(split.weight(revision).basis_points());
                    Self::backend_ref(&existing, backend, weight)
                })
                .collect();
            rule.backend_refs = Some(refs);
            Ok(())
        })
        .await
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        let route = self.read().await?;
        let rules = route.spec.rules.unwrap_or_default();
        let rule = &rules[self.managed(&rules)?];
        let refs = rule.backend_refs.clone().unwrap_or_default();
        let mut weights = Vec::new();
        for (revision, backend) in &self.backends {
            let weight: i64 = refs
                .iter()
                .filter(|b| b.name == backend.service)
                // Gateway API: an unset weight is 1.
                .map(|b| i64::from(b.weight.unwrap_or(1)))
                .sum();
            weights.push((revision.clone(), weight));
        }
        let foreign = refs
            .iter()
            .filter(|b| !self.is_ours(&b.name) && b.weight.unwrap_or(1) > 0)
            .map(|b| b.name.clone())
            .collect::<Vec<_>>();
        if !foreign.is_empty() {
            return Err(ProviderError::permanent(format!(
                "{}: rule `{}` also sends traffic to Services that are not revisions: {}",
                self.name,
                self.rule,
                foreign.join(", ")
            )));
        }
        split_from_weights(&weights).map(Some).ok_or_else(|| {
            ProviderError::permanent(format!(
                "{}: rule `{}` sends no traffic to any revision",
                self.name, self.rule
            ))
        })
    }

    async fn set_header_route(
        &self,
        route: &HeaderRoute,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        let backend = self.backend_of(revision)?.clone();
        let rule_name = object_name(ROUTE_RULE_PREFIX, &route.name);
        let headers: Vec<HttpRouteRulesMatchesHeaders> =
            route.matches.iter().map(header_match).collect();
        self.update(|rules, _| {
            rules.retain(|r| r.name.as_deref() != Some(rule_name.as_str()));
            let position = self.managed(rules)?;
            let managed_rule = &rules[position];
            let base = managed_rule
                .matches
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| vec![HttpRouteRulesMatches::default()]);
            let matches = base
                .into_iter()
                .map(|mut m| {
                    let mut all = m.headers.take().unwrap_or_default();
                    all.extend(headers.iter().cloned());
                    m.headers = Some(all);
                    m
                })
                .collect();
            let existing = managed_rule.backend_refs.clone().unwrap_or_default();
            let rule = HttpRouteRules {
                name: Some(rule_name.clone()),
                matches: Some(matches),
                backend_refs: Some(vec![Self::backend_ref(&existing, &backend, 1)]),
                ..HttpRouteRules::default()
            };
            rules.insert(position + 1, rule);
            Ok(())
        })
        .await
    }

    async fn remove_header_route(&self, name: &str) -> Result<(), ProviderError> {
        let rule_name = object_name(ROUTE_RULE_PREFIX, name);
        let route = self.read().await?;
        let present = route
            .spec
            .rules
            .iter()
            .flatten()
            .any(|r| r.name.as_deref() == Some(rule_name.as_str()));
        if !present {
            return Ok(());
        }
        self.update(|rules, _| {
            rules.retain(|r| r.name.as_deref() != Some(rule_name.as_str()));
            Ok(())
        })
        .await
    }

    async fn set_mirror(
        &self,
        mirror: &Mirror,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        if !mirror.matches.is_empty() {
            return Err(ProviderError::unsupported(
                "mirroring only the requests that match conditions (HTTPRoute mirrors a whole rule)",
            ));
        }
        let backend = self.backend_of(revision)?.clone();
        let filter = mirror_filter(&backend, mirror.percentage);
        self.update(|rules, managed| {
            let filters = rules[managed].filters.get_or_insert_with(Vec::new);
            filters.retain(|f| !self.is_our_mirror(f));
            filters.push(filter);
            Ok(())
        })
        .await
    }

    async fn remove_mirror(&self, _name: &str) -> Result<(), ProviderError> {
        let route = self.read().await?;
        let rules = route.spec.rules.unwrap_or_default();
        let present = rules[self.managed(&rules)?]
            .filters
            .iter()
            .flatten()
            .any(|f| self.is_our_mirror(f));
        if !present {
            return Ok(());
        }
        self.update(|rules, managed| {
            if let Some(filters) = rules[managed].filters.as_mut() {
                filters.retain(|f| !self.is_our_mirror(f));
                if filters.is_empty() {
                    rules[managed].filters = None;
                }
            }
            Ok(())
        })
        .await
    }
}

impl HttpRouteRouter {
    /// Whether `filter` mirrors to one of the revisions' Services.
    fn is_our_mirror(&self, filter: &HttpRouteRulesFilters) -> bool {
        filter.r#type == HttpRouteRulesFiltersType::RequestMirror
            && filter
                .request_mirror
                .as_ref()
                .is_some_and(|m| self.is_ours(&m.backend_ref.name))
    }
}

fn mirror_filter(backend: &Backend, share: Weight) -> HttpRouteRulesFilters {
    HttpRouteRulesFilters {
        r#type: HttpRouteRulesFiltersType::RequestMirror,
        request_mirror: Some(HttpRouteRulesFiltersRequestMirror {
            backend_ref: HttpRouteRulesFiltersRequestMirrorBackendRef {
                name: backend.service.clone(),
                port: backend.port,
                ..HttpRouteRulesFiltersRequestMirrorBackendRef::default()
            },
            fraction: Some(HttpRouteRulesFiltersRequestMirrorFraction {
                numerator: i32::from(share.basis_points()),
                denominator: Some(10_000),
            }),
            percent: None,
        }),
        ..HttpRouteRulesFilters::default()
    }
}

/// A Gateway API header match for a header or cookie condition.
fn header_match(condition: &RouteMatch) -> HttpRouteRulesMatchesHeaders {
    match condition {
        RouteMatch::Header { name, value } => {
            let (kind, value) = match value {
                StringMatch::Exact(v) => (HttpRouteRulesMatchesHeadersType::Exact, v.clone()),
                StringMatch::Prefix(v) => (
                    HttpRouteRulesMatchesHeadersType::RegularExpression,
                    format!("^{}.*", escape_regex(v)),
                ),
                StringMatch::Regex(v) => (
                    HttpRouteRulesMatchesHeadersType::RegularExpression,
                    v.clone(),
                ),
            };
            HttpRouteRulesMatchesHeaders {
                name: name.clone(),
                r#type: Some(kind),
                value,
            }
        }
        RouteMatch::Cookie { name, value } => {
            let value = match value {
                StringMatch::Exact(v) => escape_regex(v),
                StringMatch::Prefix(v) => format!("{}[^;]*", escape_regex(v)),
                StringMatch::Regex(v) => format!("(?:{v})"),
            };
            HttpRouteRulesMatchesHeaders {
                name: "Cookie".to_owned(),
                r#type: Some(HttpRouteRulesMatchesHeadersType::RegularExpression),
                value: format!("(^|;\\s*){}={value}(;|$)", escape_regex(name)),
            }
        }
    }
}

/// The paths of the fields in `raw` that `typed` lacks or holds differently (`filters[0].x`).
fn unknown_fields(raw: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", raw, typed, &mut out);
    out
}

fn diff(path: &str, raw: &Value, typed: &Value, out: &mut Vec<String>) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (key, value) in r {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match t.get(key) {
                    Some(other) => diff(&here, value, other, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(r), Value::Array(t)) if r.len() == t.len() => {
            for (i, (a, b)) in r.iter().zip(t).enumerate() {
                diff(&format!("{path}[{i}]"), a, b, out);
            }
        }
        _ if raw != typed => out.push(path.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_matches_become_anchored_regexes() {
        let m = header_match(&RouteMatch::cookie_exact("user.group", "beta"));
        assert_eq!(m.name, "Cookie");
        assert_eq!(m.value, "(^|;\\s*)user\\.group=beta(;|$)");
    }
}
