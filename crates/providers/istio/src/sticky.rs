//! Sticky sessions through a `DestinationRule`: a cookie-based `consistentHash` in
//! `spec.trafficPolicy.loadBalancer`.
//!
//! **What it pins.** Envoy, which Istio programs, first picks the destination of a route by its
//! weights, for every request, and only then load-balances within that destination; the
//! cookie hash applies to that second choice. So this policy keeps a client on the same pod
//! *within* a revision (useful for caches and session state held in memory), but with a
//! weighted split across two subsets or two hosts a client can still move between revisions
//! from one request to the next. Pinning the revision itself needs cookie routes (see
//! [`TrafficRouter::set_header_route`](cutover_core::TrafficRouter::set_header_route)), which
//! this module does not set up.
//!
//! **What it leaves alone.** Only `loadBalancer.consistentHash` is written (other
//! `loadBalancer` fields such as `localityLbSetting` and `warmup`, and every other traffic
//! policy, are kept). A `loadBalancer.simple` policy, or a `consistentHash` cutover did not
//! set, is reported as a permanent error rather than replaced. cutover marks its policy with
//! the annotation [`STICKY_ANNOTATION`] (the cookie name), so turning sticky sessions off
//! removes only what it set. A subset with its own `trafficPolicy.loadBalancer` overrides this
//! policy for that subset (Istio's rule).

use cutover_core::{ProviderError, StickySession};
use serde_json::{Map, Value, json};

use crate::object::Object;
use crate::resources::DestinationRule;

/// Annotation on the DestinationRule that records the cookie of the policy cutover set.
pub const STICKY_ANNOTATION: &str = "cutover.dev/sticky-cookie";
/// The cookie name used when the plan does not choose one.
pub const DEFAULT_COOKIE: &str = "cutover-session";

/// An Istio duration for a cookie TTL: whole seconds where possible, else milliseconds.
fn ttl(sticky: &StickySession) -> Result<String, ProviderError> {
    let ms = sticky.duration.as_millis();
    if ms == 0 {
        return Err(ProviderError::permanent(
            "a sticky session must last at least 1 ms (Istio requires a cookie TTL of 1 ms or more)",
        ));
    }
    Ok(if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

/// Turns the cookie hash on (`Some`) or off (`None`) on `rule`.
pub(crate) async fn set(
    rule: &Object<DestinationRule>,
    sticky: Option<&StickySession>,
) -> Result<(), ProviderError> {
    let current = rule.read().await?;
    let ours = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STICKY_ANNOTATION))
        .cloned();
    let load_balancer = current
        .spec
        .get("trafficPolicy")
        .and_then(|t| t.get("loadBalancer"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let label = rule.label();
    let Some(sticky) = sticky else {
        let Some(cookie) = ours else {
            return Ok(());
        };
        let hash_is_ours = load_balancer
            .get("consistentHash")
            .is_some_and(|h| h["httpCookie"]["name"].as_str() == Some(cookie.as_str()));
        let spec = if hash_is_ours {
            removal(&current.spec, &load_balancer)
        } else {
            json!({})
        };
        let metadata = json!({ "annotations": { STICKY_ANNOTATION: null } });
        return rule
            .patch(current.metadata.resource_version, metadata, spec)
            .await;
    };
    if let Some(simple) = load_balancer.get("simple") {
        return Err(ProviderError::permanent(format!(
            "{label}: trafficPolicy.loadBalancer.simple is {simple}; cutover will not replace a \
             load-balancing policy it did not set (remove it to use sticky sessions)"
        )));
    }
    if load_balancer.contains_key("consistentHash") && ours.is_none() {
        return Err(ProviderError::permanent(format!(
            "{label}: trafficPolicy.loadBalancer.consistentHash was not set by cutover; \
             cutover will not replace it"
        )));
    }
    let cookie = sticky
        .cookie
        .clone()
        .unwrap_or_else(|| DEFAULT_COOKIE.to_owned());
    let hash = json!({ "httpCookie": { "name": cookie, "path": "/", "ttl": ttl(sticky)? } });
    if ours.as_deref() == Some(cookie.as_str())
        && load_balancer.get("consistentHash") == Some(&hash)
    {
        return Ok(());
    }
    // A previous cookie hash of ours has the same keys, so the merge replaces all of them.
    let spec = json!({ "trafficPolicy": { "loadBalancer": { "consistentHash": hash } } });
    let metadata = json!({ "annotations": { STICKY_ANNOTATION: cookie } });
    rule.patch(current.metadata.resource_version, metadata, spec)
        .await
}

/// The merge patch that removes the cookie hash, and `loadBalancer` / `trafficPolicy` if they
/// are left empty.
fn removal(spec: &Map<String, Value>, load_balancer: &Map<String, Value>) -> Value {
    if load_balancer.len() > 1 {
        return json!({ "trafficPolicy": { "loadBalancer": { "consistentHash": null } } });
    }
    let policy_fields = spec
        .get("trafficPolicy")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if policy_fields > 1 {
        json!({ "trafficPolicy": { "loadBalancer": null } })
    } else {
        json!({ "trafficPolicy": null })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ttl_is_an_istio_duration() {
        let s = |d| StickySession {
            cookie: None,
            duration: d,
        };
        assert_eq!(ttl(&s(Duration::from_mins(1))).unwrap(), "60s");
        assert_eq!(ttl(&s(Duration::from_millis(1500))).unwrap(), "1500ms");
        assert!(ttl(&s(Duration::ZERO)).is_err());
    }

    #[test]
    fn removal_prunes_only_what_becomes_empty() {
        let lb = |v: Value| v.as_object().unwrap().clone();
        let spec = lb(json!({ "trafficPolicy": { "loadBalancer": {}, "tls": {} } }));
        assert_eq!(
            removal(&spec, &lb(json!({ "consistentHash": {}, "warmup": {} }))),
            json!({ "trafficPolicy": { "loadBalancer": { "consistentHash": null } } })
        );
        assert_eq!(
            removal(&spec, &lb(json!({ "consistentHash": {} }))),
            json!({ "trafficPolicy": { "loadBalancer": null } })
        );
        let alone = lb(json!({ "trafficPolicy": { "loadBalancer": {} } }));
        assert_eq!(
            removal(&alone, &lb(json!({ "consistentHash": {} }))),
            json!({ "trafficPolicy": null })
        );
    }
}
