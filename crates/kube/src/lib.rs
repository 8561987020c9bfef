//! Kubernetes plumbing shared by cutover's Kubernetes providers (cutover-kubernetes and
//! cutover-istio): one place that classifies [`kube::Error`]s into [`ProviderError`] kinds, a
//! server-side-apply helper that writes with cutover's field manager and reports conflicts with
//! other managers instead of forcing, and a merge patch under a `resourceVersion` precondition
//! for fields cutover shares with other managers. With the feature `test-util`, `testing` holds
//! a real control plane for tests and a closer-to-real kube-fake-client.
//!
//! Providers never depend on each other; they depend on this crate instead. It is provider
//! neutral: it knows nothing about routers, workloads or state.
//!
//! ```
//! use cutover_core::ErrorKind;
//! use cutover_kube::{Target, classify};
//!
//! let status = kube::core::Status::failure("services \"web\" is forbidden", "Forbidden")
//!     .with_code(403);
//! let target = Target::new("patch", "services", "prod", "web");
//! let err = classify(kube::Error::Api(status.boxed()), &target);
//! assert_eq!(err.kind(), ErrorKind::Permanent);
//! assert!(err.message().contains("RBAC verb `patch` on `services`"));
//! ```
#![forbid(unsafe_code)]

#[cfg(feature = "test-util")]
pub mod testing;

use std::fmt;
use std::time::Duration;

use cutover_core::{ProviderError, RevisionId, TrafficSplit};
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The field manager every cutover write uses. Fields set by cutover are owned by this manager
/// in `metadata.managedFields`.
pub const FIELD_MANAGER: &str = "cutover";

/// What a request was doing, for error messages: the RBAC verb, the resource (plural, with its
/// API group for non-core resources, as RBAC names it), the namespace and the object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The RBAC verb: `get`, `list`, `create`, `update`, `patch`, `delete`.
    pub verb: &'static str,
    /// The resource as an RBAC rule names it: `services`, `deployments.apps`,
    /// `httproutes.gateway.networking.k8s.io`.
    pub resource: String,
    /// The namespace (empty for cluster-scoped resources and namespace-wide lists).
    pub namespace: String,
    /// The object name (empty for lists).
    pub name: String,
}

impl Target {
    /// A target.
    pub fn new(
        verb: &'static str,
        resource: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Target {
            verb,
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The same object with another verb.
    pub fn with_verb(&self, verb: &'static str) -> Self {
        Target {
            verb,
            ..self.clone()
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (true, true) => Ok(()),
            (true, false) => write!(f, " {}", self.name),
            (false, true) => write!(f, " in {}", self.namespace),
            (false, false) => write!(f, " {}/{}", self.namespace, self.name),
        }
    }
}

/// Classifies a kube error, in the one place every Kubernetes provider uses:
///
/// | error | kind |
/// |---|---|
/// | 409 Conflict (stale `resourceVersion`, already exists) | Transient: re-read and retry |
/// | 429 Too Many Requests | Throttled, with the server's `retryAfterSeconds` |
/// | 5xx, connection and transport errors | Transient |
/// | 403 Forbidden | Permanent, naming the RBAC verb and resource that are missing |
/// | other 4xx, bad responses, configuration errors | Permanent |
///
/// The message names the request ([`Target`]); the kube error, with the API server's own
/// message, is kept as the source (see [`ProviderError::chain`]).
pub fn classify(error: kube::Error, target: &Target) -> ProviderError {
    let err = match &error {
        kube::Error::Api(status) => {
            let code = status.code;
            match code {
                409 => ProviderError::transient(format!(
                    "{target}: conflict, the object changed meanwhile (re-read and retry)"
                )),
                429 => {
                    let err = ProviderError::throttled(format!(
                        "{target}: the API server asks to slow down"
                    ));
                    match status.details.as_ref().map(|d| d.retry_after_seconds) {
                        Some(s) if s > 0 => err.with_retry_after(Duration::from_secs(s.into())),
                        _ => err,
                    }
                }
                403 => ProviderError::permanent(format!(
                    "{target}: forbidden; grant the RBAC verb `{}` on `{}`{}",
                    target.verb,
                    target.resource,
                    if target.namespace.is_empty() {
                        String::new()
                    } else {
                        format!(" in namespace `{}`", target.namespace)
                    }
                )),
                500..=599 => ProviderError::transient(format!("{target}: API server error {code}")),
                _ => ProviderError::permanent(format!("{target}: rejected ({code})")),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            ProviderError::transient(format!("{target}: could not reach the API server"))
        }
        _ => ProviderError::permanent(format!("{target}: request failed")),
    };
    err.with_source(error)
}

/// Whether `error` is the API server's 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

/// Whether `error` is the API server's 409 (stale `resourceVersion`, already exists, or an
/// apply conflict).
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

/// Server-side applies `config` (a partial object: `apiVersion`, `kind`, `metadata.name` and
/// only the fields cutover owns) to the object `name`, as [`FIELD_MANAGER`], without forcing.
/// The same as [`apply_as`] with [`FIELD_MANAGER`].
pub async fn apply<K>(
    api: &Api<K>,
    target: &Target,
    config: &serde_json::Value,
) -> Result<K, ProviderError>
where
    K: Clone + DeserializeOwned + Serialize + fmt::Debug,
{
    apply_as(api, target, config, FIELD_MANAGER).await
}

/// Server-side applies `config` to the object `target.name` as field manager `manager`,
/// without forcing.
///
/// A field owned by another manager (`kubectl`, Helm, an operator) is never overwritten: the
/// API server's 409 becomes a [`Permanent`](cutover_core::ErrorKind::Permanent) error that
/// names the object and what to do about it; the API server's message, which names the
/// managers in conflict, is its source. Every other error is classified by [`classify`] with
/// the verb `patch`.
///
/// An apply also *removes* the fields the same manager applied before and leaves out now. Code
/// that writes different fields of one object at different times (`spec.replicas` now,
/// `spec.template` later) must use one manager per set of fields, e.g. `cutover-replicas` and
/// `cutover-rollout`, or every apply would delete the other's fields.
pub async fn apply_as<K>(
    api: &Api<K>,
    target: &Target,
    config: &serde_json::Value,
    manager: &str,
) -> Result<K, ProviderError>
where
    K: Clone + DeserializeOwned + Serialize + fmt::Debug,
{
    let params = PatchParams::apply(manager);
    api.patch(&target.name, &params, &Patch::Apply(config))
        .await
        .map_err(|error| apply_error(error, target, manager))
}

/// Merge-patches `body` (a JSON merge patch such as `{"spec": {"selector": {...}}}`) into the
/// object `target.name` as field manager [`FIELD_MANAGER`], on the condition that it is still
/// at `resource_version` (the one cutover read; `None` writes unconditionally).
///
/// This is how cutover writes a field that the API server treats as one value (an atomic map
/// such as a Service's `spec.selector`, an atomic list such as Istio's `spec.http`) while other
/// managers own parts of it: read the object, change only cutover's part, write the whole value
/// back under the `resourceVersion` precondition. A concurrent change makes the API server
/// answer 409, which [`classify`] reports as transient: the caller reads again and the other
/// change survives. Like `kubectl edit`, the write makes `cutover` the field's owner (an
/// `Update` in `managedFields`); it never forces a server-side apply.
pub async fn merge_patch<K>(
    api: &Api<K>,
    target: &Target,
    resource_version: Option<&str>,
    mut body: serde_json::Value,
) -> Result<K, ProviderError>
where
    K: Clone + DeserializeOwned + Serialize + fmt::Debug,
{
    if let Some(version) = resource_version {
        body["metadata"]["resourceVersion"] = serde_json::Value::from(version);
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&target.name, &params, &Patch::Merge(&body))
        .await
        .map_err(|error| classify(error, target))
}

/// Classifies an error of a server-side apply: 409 is a conflict with another field manager.
fn apply_error(error: kube::Error, target: &Target, manager: &str) -> ProviderError {
    match &error {
        kube::Error::Api(status) if status.code == 409 => {
            let message = format!(
                "{target}: fields cutover sets are owned by another field manager (named in the \
                 source) and cutover will not overwrite them; let field manager `{manager}` own \
                 them (remove them from the other manager's applied configuration) and try again"
            );
            ProviderError::permanent(message).with_source(error)
        }
        _ => classify(error, target),
    }
}

/// The traffic split that relative weights describe (Gateway API `backendRefs[].weight`, Istio
/// `route[].weight`, replica counts), rounded to basis points as
/// [`TrafficSplit::from_relative_weights`] does. Negative weights count as zero. `None` when no
/// revision gets any traffic.
pub fn split_from_weights(weights: &[(RevisionId, i64)]) -> Option<TrafficSplit> {
    TrafficSplit::from_relative_weights(
        weights
            .iter()
            .map(|(revision, w)| (revision.clone(), u64::try_from(*w).unwrap_or(0))),
    )
    .ok()
}

/// Escapes the characters RE2 (the regex dialect of Envoy, Istio and Gateway API
/// implementations) treats specially, so a header or cookie value matches literally.
pub fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use cutover_core::ErrorKind;
    use kube::core::{Status, response::StatusDetails};

    use super::*;

    #[test]
    fn relative_weights_and_negative_ones() {
        let rev = |s: &str| -> RevisionId { s.parse().unwrap() };
        let split = split_from_weights(&[(rev("a"), 1), (rev("b"), 2), (rev("c"), -5)]).unwrap();
        assert_eq!(split.weight(&rev("a")).basis_points(), 3333);
        assert_eq!(split.weight(&rev("b")).basis_points(), 6667);
        assert_eq!(split.weight(&rev("c")).basis_points(), 0);
        assert!(split_from_weights(&[(rev("a"), 0), (rev("b"), -1)]).is_none());
    }

    #[test]
    fn regex_metacharacters_are_escaped() {
        assert_eq!(escape_regex("a.b*c(d)|e"), "a\\.b\\*c\\(d\\)\\|e");
        assert_eq!(escape_regex("plain-text_1"), "plain-text_1");
    }

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            Status::failure("it went wrong", reason)
                .with_code(code)
                .boxed(),
        )
    }

    fn target() -> Target {
        Target::new("patch", "deployments.apps", "prod", "web")
    }

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            (409, ErrorKind::Transient),
            (429, ErrorKind::Throttled),
            (500, ErrorKind::Transient),
            (503, ErrorKind::Transient),
            (400, ErrorKind::Permanent),
            (404, ErrorKind::Permanent),
            (422, ErrorKind::Permanent),
            (403, ErrorKind::Permanent),
        ];
        for (code, kind) in cases {
            assert_eq!(classify(api(code, "X"), &target()).kind(), kind, "{code}");
        }
    }

    #[test]
    fn forbidden_names_verb_resource_and_namespace() {
        let err = classify(api(403, "Forbidden"), &target());
        assert!(
            err.message()
                .contains("grant the RBAC verb `patch` on `deployments.apps` in namespace `prod`"),
            "{err}"
        );
        assert!(err.message().starts_with("patch deployments.apps prod/web"));
    }

    #[test]
    fn throttling_keeps_retry_after() {
        let mut status = Status::failure("slow down", "TooManyRequests").with_code(429);
        status.details = Some(StatusDetails {
            name: "web".into(),
            group: "apps".into(),
            kind: "deployments".into(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds: 3,
        });
        let err = classify(kube::Error::Api(status.boxed()), &target());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn apply_conflicts_are_permanent_and_explained() {
        let err = apply_error(api(409, "Conflict"), &target(), FIELD_MANAGER);
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains("another field manager"), "{err}");
        assert!(err.message().contains("prod/web"), "{err}");
    }
}

/// The README's snippets, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
