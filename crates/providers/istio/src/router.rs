//! [`IstioRouter`]: weights, header and cookie routes and mirroring on one HTTP route of a
//! `VirtualService`, and sticky sessions through a `DestinationRule`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cutover_core::{
    Granularity, HeaderRoute, Mirror, ProviderError, RevisionId, RouterCapabilities, StickySession,
    TrafficRouter, TrafficSplit,
};
use serde_json::{Map, Value, json};

use cutover_kube::split_from_weights;

use crate::matches::combined_matches;
use crate::object::Object;
use crate::resources::{DESTINATION_RULES, DestinationRule, VIRTUAL_SERVICES, VirtualService};
use crate::sticky;

/// Where a revision's traffic goes: an Istio `Destination` (`host`, optional `subset` and
/// `port`).
///
/// - Subset-based: one Service, revisions told apart by `DestinationRule` subsets
///   ([`Destination::subset`]).
/// - Host-based: one Service per revision ([`Destination::host`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    host: String,
    subset: Option<String>,
    port: Option<u32>,
}

impl Destination {
    /// The subset `subset` of the Service `host`.
    pub fn subset(host: impl Into<String>, subset: impl Into<String>) -> Self {
        Destination {
            host: host.into(),
            subset: Some(subset.into()),
            port: None,
        }
    }

    /// The whole Service `host` (one Service per revision).
    pub fn host(host: impl Into<String>) -> Self {
        Destination {
            host: host.into(),
            subset: None,
            port: None,
        }
    }

    /// Sends to `port` of the Service (needed when it exposes several ports).
    pub fn with_port(mut self, port: u32) -> Self {
        self.port = Some(port);
        self
    }

    /// The Istio `Destination` object.
    fn to_json(&self) -> Value {
        let mut d = Map::new();
        d.insert("host".into(), json!(self.host));
        if let Some(subset) = &self.subset {
            d.insert("subset".into(), json!(subset));
        }
        if let Some(port) = self.port {
            d.insert("port".into(), json!({ "number": port }));
        }
        Value::Object(d)
    }

    /// Whether an Istio `Destination` object names this destination (host and subset; the
    /// port is not compared).
    fn is(&self, destination: &Value) -> bool {
        destination["host"].as_str() == Some(self.host.as_str())
            && destination["subset"].as_str() == self.subset.as_deref()
    }
}

/// Router for one named HTTP route of an Istio `VirtualService` (`networking.istio.io/v1`).
///
/// - **Split**: sets the `weight` (whole percent, so granularity 1 %) of each revision's
///   [`Destination`] in the `route` list of the HTTP route named `route` (the *managed
///   route*). Other fields of an existing destination entry (response headers, port) are kept.
///   A destination of the managed route that is not a revision must be at weight 0, or the
///   router refuses to guess and reports it.
/// - **Header and cookie routes**: one HTTP route per [`HeaderRoute`], named
///   `cutover:<managed route>:<route name>`, placed before the managed route and its mirror
///   routes (Istio takes the first route that matches). It carries the managed route's settings (rewrite,
///   timeout, retries, headers...) and matches: each managed match with the conditions added
///   to its `headers`, so it only ever takes requests the managed route would have taken.
///   Cookies are matched with an anchored regex on the `cookie` header.
/// - **Mirroring**: `mirror` and `mirrorPercentage` on the managed route. Istio has one
///   mirror per route, so setting a mirror replaces the previous one. A [`Mirror`] with match
///   conditions gets its own route, `cutover-mirror:<managed route>:<mirror name>`: a copy of
///   the managed route (same weights, kept in step by every `set_split`) restricted to the
///   matching requests, carrying the mirror, placed directly before the managed route and
///   after the header routes. A mirror to a destination that is not a revision, or a `mirrors`
///   list, belongs to someone else and is reported, not overwritten.
/// - **Sticky sessions** (only with [`sticky_sessions_on`](Self::sticky_sessions_on)): a cookie
///   `consistentHash` load-balancing policy on a `DestinationRule`; see [`crate::sticky`] for
///   what it does and does not pin.
/// - **Everything else is kept**: other HTTP routes, TCP/TLS routes, hosts, gateways, and every
///   field of the managed route cutover does not set, exactly as read.
///
/// # How it writes, and why not server-side apply
///
/// `spec.http` is an *atomic* list in Istio's CRD (no list-map keys), so a server-side apply of
/// one route would have to send, and take ownership of, the whole list: it conflicts with
/// whatever created the VirtualService (kubectl, Helm, Argo CD own `spec.http`) unless forced,
/// and forcing would take the list from them. So the router reads the VirtualService, edits the
/// JSON of the routes it manages, and writes `spec.http` back with a JSON merge patch that
/// carries the `resourceVersion` it read (field manager `cutover`; the same precondition as
/// controller-runtime's `MergeFromWithOptimisticLock`). A change made by anyone in between
/// makes the API server answer 409, which is a transient error: the engine retries,
/// the router reads again, and nobody's edit is lost. A write that would change nothing is
/// skipped. RBAC: `get` and `patch` on `virtualservices.networking.istio.io`.
///
/// ```no_run
/// # fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_istio::{Destination, IstioRouter};
/// let router = IstioRouter::new(client, "prod", "reviews", "primary")
///     .destination("v1".parse()?, Destination::subset("reviews", "v1"))
///     .destination("v2".parse()?, Destination::subset("reviews", "v2"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct IstioRouter {
    virtual_service: Object<VirtualService>,
    route: String,
    destinations: BTreeMap<RevisionId, Destination>,
    sticky: Option<Object<DestinationRule>>,
    name: String,
}

impl IstioRouter {
    /// A router for the HTTP route named `route` of the VirtualService `virtual_service` in
    /// `namespace`. Add each revision's destination with [`destination`](Self::destination).
    pub fn new(client: kube::Client, namespace: &str, virtual_service: &str, route: &str) -> Self {
        IstioRouter {
            virtual_service: Object::new(
                client,
                VIRTUAL_SERVICES,
                "VirtualService",
                namespace,
                virtual_service,
            ),
            route: route.to_owned(),
            destinations: BTreeMap::new(),
            sticky: None,
            name: format!("istio/{namespace}/{virtual_service}/{route}"),
        }
    }

    /// Sends `revision`'s traffic to `destination`.
    pub fn destination(mut self, revision: RevisionId, destination: Destination) -> Self {
        self.destinations.insert(revision, destination);
        self
    }

    /// Turns on sticky sessions (declared in the capabilities) through the load-balancing
    /// policy of the DestinationRule `destination_rule`, in the VirtualService's namespace.
    pub fn sticky_sessions_on(mut self, destination_rule: &str) -> Self {
        let api = self.virtual_service.api.clone();
        let namespace = self.virtual_service.target.namespace.clone();
        self.sticky = Some(Object::new(
            api.into_client(),
            DESTINATION_RULES,
            "DestinationRule",
            &namespace,
            destination_rule,
        ));
        self
    }

    fn destination_of(&self, revision: &RevisionId) -> Result<&Destination, ProviderError> {
        self.destinations.get(revision).ok_or_else(|| {
            ProviderError::permanent(format!(
                "{}: no destination configured for revision `{revision}`",
                self.name
            ))
        })
    }

    /// The revision whose destination `destination` is, if any.
    fn revision_at(&self, destination: &Value) -> Option<&RevisionId> {
        self.destinations
            .iter()
            .find(|(_, d)| d.is(destination))
            .map(|(r, _)| r)
    }

    fn header_route_name(&self, name: &str) -> String {
        format!("cutover:{}:{name}", self.route)
    }

    /// The index of the managed route in `http`.
    fn managed(&self, http: &[Value]) -> Result<usize, ProviderError> {
        http.iter()
            .position(|r| r["name"].as_str() == Some(self.route.as_str()))
            .ok_or_else(|| {
                ProviderError::permanent(format!(
                    "{} has no HTTP route named `{}` (routes cutover manages must have a `name`)",
                    self.virtual_service.label(),
                    self.route
                ))
            })
    }

    /// Reads the VirtualService and its HTTP routes.
    async fn read(&self) -> Result<(VirtualService, Vec<Value>), ProviderError> {
        let vs = self.virtual_service.read().await?;
        let http = match vs.spec.get("http") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list.clone(),
            Some(_) => {
                return Err(ProviderError::permanent(format!(
                    "{}: spec.http is not a list",
                    self.virtual_service.label()
                )));
            }
        };
        Ok((vs, http))
    }

    /// Reads the HTTP routes, lets `change` edit them (given the managed route's index) and
    /// writes them back if they changed.
    async fn update(
        &self,
        change: impl FnOnce(&mut Vec<Value>, usize) -> Result<(), ProviderError> + Send,
    ) -> Result<(), ProviderError> {
        let (vs, http) = self.read().await?;
        let managed = self.managed(&http)?;
        let mut edited = http.clone();
        change(&mut edited, managed)?;
        if edited == http {
            return Ok(());
        }
        self.virtual_service
            .patch(
                vs.metadata.resource_version,
                json!({}),
                json!({ "http": edited }),
            )
            .await
    }

    /// Destinations of `rule` that are not revisions and get traffic.
    fn foreign(&self, rule: &Value) -> Vec<String> {
        let entries = route_entries(rule);
        entries
            .iter()
            .filter(|e| self.revision_at(&e["destination"]).is_none())
            .filter(|e| entry_weight(e, entries.len()) > 0)
            .map(|e| e["destination"].to_string())
            .collect()
    }

    fn refuse_foreign(&self, rule: &Value) -> Result<(), ProviderError> {
        let foreign = self.foreign(rule);
        if foreign.is_empty() {
            return Ok(());
        }
        Err(ProviderError::permanent(format!(
            "{}: route `{}` also sends traffic to destinations that are not revisions: {}",
            self.virtual_service.label(),
            self.route,
            foreign.join(", ")
        )))
    }
}

/// The destination entries (`route`) of an HTTP route.
fn route_entries(rule: &Value) -> &[Value] {
    rule["route"].as_array().map_or(&[], Vec::as_slice)
}

/// The weight of a route entry: its `weight`, or 100 if it is the only entry (Istio's rule).
fn entry_weight(entry: &Value, entries: usize) -> i64 {
    match entry["weight"].as_i64() {
        Some(w) => w.max(0),
        None if entries == 1 => 100,
        None => 0,
    }
}

#[async_trait]
impl TrafficRouter for IstioRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        let caps = RouterCapabilities::new(Granularity::PERCENT)
            .with_header_routes()
            .with_cookie_routes()
            .with_mirroring();
        if self.sticky.is_some() {
            caps.with_sticky_sessions()
        } else {
            caps
        }
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        let mut percents = BTreeMap::new();
        for (revision, weight) in split.iter() {
            let bp = weight.basis_points();
            if !bp.is_multiple_of(100) {
                return Err(ProviderError::permanent(format!(
                    "{}: Istio weights are whole percentages, {weight} for `{revision}` is not",
                    self.name
                )));
            }
            if bp > 0 {
                self.destination_of(revision)?;
            }
            percents.insert(revision.clone(), bp / 100);
        }
        self.update(|http, managed| {
            self.refuse_foreign(&http[managed])?;
            for (i, rule) in http.iter_mut().enumerate() {
                if i == managed || self.is_mirror_route(rule) {
                    self.reweight(rule, &percents);
                }
            }
            Ok(())
        })
        .await
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        let (_, http) = self.read().await?;
        let rule = &http[self.managed(&http)?];
        self.refuse_foreign(rule)?;
        let entries = route_entries(rule);
        let mut weights: BTreeMap<RevisionId, i64> = BTreeMap::new();
        for entry in entries {
            if let Some(revision) = self.revision_at(&entry["destination"]) {
                *weights.entry(revision.clone()).or_default() += entry_weight(entry, entries.len());
            }
        }
        let weights: Vec<_> = weights.into_iter().collect();
        split_from_weights(&weights).map(Some).ok_or_else(|| {
            ProviderError::permanent(format!(
                "{}: route `{}` sends no traffic to any revision",
                self.virtual_service.label(),
                self.route
            ))
        })
    }

    async fn set_header_route(
        &self,
        route: &HeaderRoute,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        route
            .validate()
            .map_err(|e| ProviderError::permanent(format!("{}: {e}", self.name)))?;
        let destination = self.destination_of(revision)?.clone();
        let name = self.header_route_name(&route.name);
        let what = format!("{}: header route `{}`", self.name, route.name);
        self.update(|http, _| {
            http.retain(|r| r["name"].as_str() != Some(name.as_str()));
            let position = self.managed(http)?;
            let managed = &http[position];
            let matches = combined_matches(managed.get("match"), &route.matches, &what)?;
            let mut entry = route_entries(managed)
                .iter()
                .find(|e| destination.is(&e["destination"]))
                .cloned()
                .unwrap_or_else(|| json!({ "destination": destination.to_json() }));
            if let Some(entry) = entry.as_object_mut() {
                entry.remove("weight");
            }
            let mut rule = Self::copy_of_managed(managed, &name, matches);
            rule.insert("route".into(), json!([entry]));
            let at = self.header_route_position(http, position);
            http.insert(at, Value::Object(rule));
            Ok(())
        })
        .await
    }

    async fn remove_header_route(&self, name: &str) -> Result<(), ProviderError> {
        let name = self.header_route_name(name);
        self.update(|http, _| {
            http.retain(|r| r["name"].as_str() != Some(name.as_str()));
            Ok(())
        })
        .await
    }

    async fn set_mirror(
        &self,
        mirror: &Mirror,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        let destination = self.destination_of(revision)?.clone();
        if !mirror.matches.is_empty() {
            return self.set_mirror_route(mirror, &destination).await;
        }
        self.update(|http, managed| {
            let rule = &mut http[managed];
            self.refuse_foreign_mirror(rule)?;
            rule["mirror"] = destination.to_json();
            rule["mirrorPercentage"] = json!({ "value": mirror.percentage.percent() });
            Ok(())
        })
        .await
    }

    async fn remove_mirror(&self, name: &str) -> Result<(), ProviderError> {
        let route_name = self.mirror_route_name(name);
        self.update(|http, managed| {
            if let Some(i) = http.iter().position(|r| r["name"] == route_name.as_str()) {
                http.remove(i);
                return Ok(());
            }
            let Some(rule) = http[managed].as_object_mut() else {
                return Ok(());
            };
            let ours = rule
                .get("mirror")
                .is_some_and(|m| self.revision_at(m).is_some());
            if ours {
                rule.remove("mirror");
                rule.remove("mirrorPercentage");
            }
            Ok(())
        })
        .await
    }

    async fn set_sticky_sessions(
        &self,
        sticky: Option<StickySession>,
    ) -> Result<(), ProviderError> {
        let Some(rule) = &self.sticky else {
            return Err(ProviderError::unsupported(
                "sticky sessions (configure a DestinationRule with `sticky_sessions_on`)",
            ));
        };
        sticky::set(rule, sticky.as_ref()).await
    }
}

impl IstioRouter {
    /// Sets the weights of the revisions' destinations in `rule` to `percents`.
    fn reweight(&self, rule: &mut Value, percents: &BTreeMap<RevisionId, u16>) {
        let entries = route_entries(rule).to_vec();
        let mut seen = Vec::new();
        let mut out = Vec::with_capacity(entries.len());
        for mut entry in entries {
            if let Some(revision) = self.revision_at(&entry["destination"]) {
                let percent = if seen.contains(revision) {
                    0
                } else {
                    percents.get(revision).copied().unwrap_or(0)
                };
                seen.push(revision.clone());
                entry["weight"] = json!(percent);
            }
            out.push(entry);
        }
        for (revision, destination) in &self.destinations {
            if !seen.contains(revision) {
                let percent = percents.get(revision).copied().unwrap_or(0);
                out.push(json!({ "destination": destination.to_json(), "weight": percent }));
            }
        }
        rule["route"] = Value::Array(out);
    }

    fn mirror_route_name(&self, name: &str) -> String {
        format!("{}{name}", self.mirror_route_prefix())
    }

    fn mirror_route_prefix(&self) -> String {
        format!("cutover-mirror:{}:", self.route)
    }

    /// Whether `rule` is one of the mirror routes of the managed route.
    fn is_mirror_route(&self, rule: &Value) -> bool {
        rule["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&self.mirror_route_prefix()))
    }

    /// Where a new header route goes: before the mirror routes, which are directly before
    /// the managed route, so that a tester's request is never taken by a mirror route.
    fn header_route_position(&self, http: &[Value], managed: usize) -> usize {
        http[..managed]
            .iter()
            .position(|r| self.is_mirror_route(r))
            .unwrap_or(managed)
    }

    /// A copy of the managed route for `name`: every setting of the managed route, without
    /// its name, matches and mirror.
    fn copy_of_managed(managed: &Value, name: &str, matches: Vec<Value>) -> Map<String, Value> {
        let mut rule = managed.as_object().cloned().unwrap_or_default();
        for key in [
            "name",
            "match",
            "mirror",
            "mirrors",
            "mirrorPercentage",
            "mirrorPercent",
            "mirror_percent",
        ] {
            rule.remove(key);
        }
        rule.insert("name".into(), json!(name));
        rule.insert("match".into(), Value::Array(matches));
        rule
    }

    /// A mirror of the requests matching `mirror.matches`: a copy of the managed route (same
    /// weights, kept in step by `set_split`) restricted to those requests, with the mirror, placed
    /// directly before the managed route.
    async fn set_mirror_route(
        &self,
        mirror: &Mirror,
        destination: &Destination,
    ) -> Result<(), ProviderError> {
        let name = self.mirror_route_name(&mirror.name);
        let what = format!("{}: mirror `{}`", self.name, mirror.name);
        self.update(|http, _| {
            http.retain(|r| r["name"].as_str() != Some(name.as_str()));
            let position = self.managed(http)?;
            let managed = &http[position];
            let matches = combined_matches(managed.get("match"), &mirror.matches, &what)?;
            let mut rule = Self::copy_of_managed(managed, &name, matches);
            rule.insert("mirror".into(), destination.to_json());
            rule.insert(
                "mirrorPercentage".into(),
                json!({ "value": mirror.percentage.percent() }),
            );
            http.insert(position, Value::Object(rule));
            Ok(())
        })
        .await
    }

    /// Refuses to replace a mirror cutover did not set.
    fn refuse_foreign_mirror(&self, rule: &Value) -> Result<(), ProviderError> {
        let label = self.virtual_service.label();
        if rule["mirrors"].as_array().is_some_and(|m| !m.is_empty()) {
            return Err(ProviderError::permanent(format!(
                "{label}: route `{}` has a `mirrors` list; cutover sets `mirror` and Istio \
                 accepts only one of the two",
                self.route
            )));
        }
        match rule.get("mirror") {
            Some(m) if !m.is_null() && self.revision_at(m).is_none() => {
                Err(ProviderError::permanent(format!(
                    "{label}: route `{}` already mirrors to {m}, which is not a revision; \
                     cutover will not replace it",
                    self.route
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_destination_without_weight_gets_everything() {
        let entry = json!({ "destination": { "host": "a" } });
        assert_eq!(entry_weight(&entry, 1), 100);
        assert_eq!(entry_weight(&entry, 2), 0);
    }

    #[test]
    fn destinations_compare_host_and_subset() {
        let d = Destination::subset("reviews", "v1").with_port(9080);
        assert!(d.is(&json!({ "host": "reviews", "subset": "v1" })));
        assert!(!d.is(&json!({ "host": "reviews" })));
        assert!(Destination::host("reviews-v1").is(&json!({ "host": "reviews-v1" })));
        assert_eq!(
            d.to_json(),
            json!({ "host": "reviews", "subset": "v1", "port": { "number": 9080 } })
        );
    }
}
