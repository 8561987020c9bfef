//! Header and cookie routes, mirroring and sticky sessions: optional router capabilities.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Weight;

/// Why a route was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The route has no name.
    #[error("route name must not be empty")]
    EmptyName,
    /// A header route with nothing to match.
    #[error("route `{0}` must match at least one header or cookie")]
    NoMatches(String),
    /// A header or cookie name that is empty or not an HTTP token.
    #[error("route `{route}`: `{name}` is not a valid {what} name")]
    InvalidName {
        /// The route.
        route: String,
        /// The rejected name.
        name: String,
        /// "header" or "cookie".
        what: &'static str,
    },
}

/// How a header or cookie value is compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StringMatch {
    /// The whole value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The value matches this regular expression (RE2 syntax, as Envoy and Istio use).
    Regex(String),
}

/// One condition of a header route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RouteMatch {
    /// An HTTP request header.
    Header {
        /// Header name, case-insensitive.
        name: String,
        /// How its value is compared.
        value: StringMatch,
    },
    /// A cookie in the `Cookie` header.
    Cookie {
        /// Cookie name, case-sensitive.
        name: String,
        /// How its value is compared.
        value: StringMatch,
    },
}

impl RouteMatch {
    /// A header that must equal `value`.
    pub fn header_exact(name: impl Into<String>, value: impl Into<String>) -> Self {
        RouteMatch::Header {
            name: name.into(),
            value: StringMatch::Exact(value.into()),
        }
    }

    /// A cookie that must equal `value`.
    pub fn cookie_exact(name: impl Into<String>, value: impl Into<String>) -> Self {
        RouteMatch::Cookie {
            name: name.into(),
            value: StringMatch::Exact(value.into()),
        }
    }

    /// Whether this matches on a cookie (routers declare cookie and header support apart).
    pub fn is_cookie(&self) -> bool {
        matches!(self, RouteMatch::Cookie { .. })
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Requests that match every condition go to one revision, whatever the weights say.
/// Used for A/B tests and to let testers reach a canary or a blue-green preview.
///
/// ```
/// use cutover_core::{HeaderRoute, RouteMatch};
/// let route = HeaderRoute::new("testers", [RouteMatch::header_exact("x-canary", "always")])?;
/// assert_eq!(route.name, "testers");
/// assert!(HeaderRoute::new("empty", []).is_err());
/// # Ok::<(), cutover_core::RouteError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRoute {
    /// A name for the route, unique within the rollout; routers use it to find and remove it.
    pub name: String,
    /// Conditions, all of which must hold.
    #[serde(rename = "match")]
    pub matches: Vec<RouteMatch>,
}

impl HeaderRoute {
    /// A checked route.
    pub fn new(
        name: impl Into<String>,
        matches: impl IntoIterator<Item = RouteMatch>,
    ) -> Result<Self, RouteError> {
        let route = HeaderRoute {
            name: name.into(),
            matches: matches.into_iter().collect(),
        };
        route.validate()?;
        Ok(route)
    }

    /// Checks the name and every condition.
    pub fn validate(&self) -> Result<(), RouteError> {
        if self.name.is_empty() {
            return Err(RouteError::EmptyName);
        }
        if self.matches.is_empty() {
            return Err(RouteError::NoMatches(self.name.clone()));
        }
        validate_matches(&self.name, &self.matches)
    }

    /// Whether any condition is on a cookie.
    pub fn uses_cookies(&self) -> bool {
        self.matches.iter().any(RouteMatch::is_cookie)
    }

    /// Whether any condition is on a header.
    pub fn uses_headers(&self) -> bool {
        self.matches.iter().any(|m| !m.is_cookie())
    }
}

fn validate_matches(route: &str, matches: &[RouteMatch]) -> Result<(), RouteError> {
    for m in matches {
        let (name, what) = match m {
            RouteMatch::Header { name, .. } => (name, "header"),
            RouteMatch::Cookie { name, .. } => (name, "cookie"),
        };
        if !is_token(name) {
            return Err(RouteError::InvalidName {
                route: route.to_owned(),
                name: name.clone(),
                what,
            });
        }
    }
    Ok(())
}

/// A copy of a share of requests sent to a revision; the copies' responses are discarded.
///
/// ```
/// use cutover_core::{Mirror, Weight};
/// let mirror = Mirror::new("shadow", Weight::from_percent(20)?, [])?;
/// assert_eq!(mirror.percentage.basis_points(), 2000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// A name for the mirror, unique within the rollout.
    pub name: String,
    /// Share of the (matching) requests that are copied.
    pub percentage: Weight,
    /// Only requests matching all of these are mirrored; empty mirrors every request.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
}

impl Mirror {
    /// A checked mirror.
    pub fn new(
        name: impl Into<String>,
        percentage: Weight,
        matches: impl IntoIterator<Item = RouteMatch>,
    ) -> Result<Self, RouteError> {
        let mirror = Mirror {
            name: name.into(),
            percentage,
            matches: matches.into_iter().collect(),
        };
        mirror.validate()?;
        Ok(mirror)
    }

    /// Checks the name and every condition.
    pub fn validate(&self) -> Result<(), RouteError> {
        if self.name.is_empty() {
            return Err(RouteError::EmptyName);
        }
        validate_matches(&self.name, &self.matches)
    }
}

/// Keep a client on the revision it first reached, by cookie.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickySession {
    /// The cookie that pins the client; `None` lets the router choose.
    #[serde(default)]
    pub cookie: Option<String>,
    /// How long a client stays pinned.
    #[serde(with = "crate::time::serde_duration")]
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_must_be_tokens() {
        let bad = HeaderRoute::new("r", [RouteMatch::header_exact("x canary", "1")]);
        assert_eq!(
            bad,
            Err(RouteError::InvalidName {
                route: "r".into(),
                name: "x canary".into(),
                what: "header"
            })
        );
        assert!(HeaderRoute::new("", [RouteMatch::header_exact("x", "1")]).is_err());
    }

    #[test]
    fn routes_deserialize_from_plan_syntax() {
        let route: HeaderRoute = serde_json::from_str(
            r#"{"name":"beta","match":[{"header":{"name":"x-beta","value":{"exact":"1"}}},{"cookie":{"name":"group","value":{"prefix":"b"}}}]}"#,
        )
        .unwrap();
        assert!(route.uses_cookies() && route.uses_headers());
        assert_eq!(
            route.matches[1],
            RouteMatch::Cookie {
                name: "group".into(),
                value: StringMatch::Prefix("b".into())
            }
        );
    }
}
