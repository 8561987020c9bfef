//! Header and cookie conditions as Istio `HTTPMatchRequest.headers` entries.

use cutover_core::{ProviderError, RouteMatch, StringMatch};
use cutover_kube::escape_regex;
use serde_json::{Map, Value, json};

/// The header key and `StringMatch` Istio uses for a condition. Header names are lower-cased
/// (Istio requires lower-case keys); a cookie becomes an anchored RE2 regex on the `cookie`
/// header that matches the cookie wherever it appears in the header. Envoy matches header
/// regexes against the whole value.
pub(crate) fn header_entry(condition: &RouteMatch) -> (String, Value) {
    match condition {
        RouteMatch::Header { name, value } => {
            let value = match value {
                StringMatch::Exact(v) => json!({ "exact": v }),
                StringMatch::Prefix(v) => json!({ "prefix": v }),
                StringMatch::Regex(v) => json!({ "regex": v }),
            };
            (name.to_ascii_lowercase(), value)
        }
        RouteMatch::Cookie { name, value } => {
            let value = match value {
                StringMatch::Exact(v) => escape_regex(v),
                StringMatch::Prefix(v) => format!("{}[^;]*", escape_regex(v)),
                StringMatch::Regex(v) => format!("(?:{v})"),
            };
            let regex = format!("^(.*?;\\s*)?{}={value}(;.*)?$", escape_regex(name));
            ("cookie".to_owned(), json!({ "regex": regex }))
        }
    }
}

/// The `match` list of a route that sends requests matching `conditions` to one revision,
/// within the traffic of the managed route: every match of the managed route (all requests if
/// it has none) with the conditions added to its `headers`. A header the managed match already
/// tests, or two conditions on the same header (two cookies, for example), cannot be expressed
/// in one Istio match and are a permanent error.
pub(crate) fn combined_matches(
    managed: Option<&Value>,
    conditions: &[RouteMatch],
    what: &str,
) -> Result<Vec<Value>, ProviderError> {
    let base = match managed.and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list.clone(),
        _ => vec![json!({})],
    };
    base.into_iter()
        .map(|mut m| {
            let Some(object) = m.as_object_mut() else {
                return Err(ProviderError::permanent(format!(
                    "{what}: a match of the managed route is not an object"
                )));
            };
            let headers = object
                .entry("headers")
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(headers) = headers.as_object_mut() else {
                return Err(ProviderError::permanent(format!(
                    "{what}: `headers` of a match of the managed route is not an object"
                )));
            };
            for condition in conditions {
                let (key, value) = header_entry(condition);
                if headers.contains_key(&key) {
                    return Err(ProviderError::permanent(format!(
                        "{what}: header `{key}` is matched twice (by the managed route or by two \
                         conditions); an Istio match tests each header once"
                    )));
                }
                headers.insert(key, value);
            }
            Ok(m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_lower_cased_and_cookies_become_anchored_regexes() {
        let (key, value) = header_entry(&RouteMatch::header_exact("X-Canary", "1"));
        assert_eq!((key.as_str(), value), ("x-canary", json!({"exact": "1"})));
        let (key, value) = header_entry(&RouteMatch::cookie_exact("user.group", "beta"));
        assert_eq!(key, "cookie");
        assert_eq!(
            value,
            json!({"regex": "^(.*?;\\s*)?user\\.group=beta(;.*)?$"})
        );
    }

    #[test]
    fn managed_matches_are_kept_and_extended() {
        let managed = json!([{ "uri": { "prefix": "/api" } }, { "uri": { "prefix": "/v2" } }]);
        let out = combined_matches(
            Some(&managed),
            &[RouteMatch::header_exact("x-canary", "1")],
            "r",
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            json!({ "uri": { "prefix": "/v2" }, "headers": { "x-canary": { "exact": "1" } } })
        );
        let two_cookies = [
            RouteMatch::cookie_exact("a", "1"),
            RouteMatch::cookie_exact("b", "2"),
        ];
        let err = combined_matches(None, &two_cookies, "r").unwrap_err();
        assert!(err.message().contains("`cookie` is matched twice"), "{err}");
    }
}
