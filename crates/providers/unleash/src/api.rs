//! The few Unleash admin API calls the router makes, and the one place where their failures
//! become [`ProviderError`] kinds.
//!
//! | failure | kind |
//! |---|---|
//! | HTTP 429 | `Throttled`, with `Retry-After` (seconds) when sent |
//! | 5xx, request timeout, refused or broken connection | `Transient` |
//! | 401 / 403 (bad token, missing permission, change requests required) | `Permanent` |
//! | 404 (no such project, flag or environment), 400 and other 4xx | `Permanent` |
//! | a 2xx body that is not the expected JSON | `Permanent` |

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use cutover_core::ProviderError;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::token::AdminToken;

/// A flag in one environment, as `GET .../features/{flag}/environments/{env}` returns it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FeatureEnvironment {
    pub(crate) enabled: bool,
    #[serde(default)]
    pub(crate) strategies: Vec<Strategy>,
}

/// One activation strategy of a flag in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Strategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) disabled: Option<bool>,
    #[serde(default)]
    pub(crate) parameters: BTreeMap<String, Value>,
    #[serde(default)]
    pub(crate) constraints: Vec<Value>,
    #[serde(default)]
    pub(crate) variants: Vec<Variant>,
}

/// A strategy variant: its share of the strategy's users is `weight` per mille.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Variant {
    pub(crate) name: String,
    pub(crate) weight: u32,
    #[serde(default)]
    pub(crate) weight_type: Option<String>,
    #[serde(default)]
    pub(crate) stickiness: Option<String>,
}

/// An error body of the admin API.
#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The admin API of one Unleash project.
#[derive(Clone)]
pub(crate) struct AdminApi {
    base: Url,
    project: String,
    token: AdminToken,
    http: reqwest::Client,
    timeout: Duration,
}

impl fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminApi")
            .field("url", &self.base.as_str())
            .field("project", &self.project)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    pub(crate) fn new(
        url: &str,
        project: String,
        token: AdminToken,
        timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let base = Url::parse(url)
            .map_err(|e| ProviderError::permanent(format!("invalid Unleash URL `{url}`: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ProviderError::permanent(format!(
                "Unleash URL `{url}` must be http or https"
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(ProviderError::permanent(
                "the Unleash URL must not carry credentials: pass the admin token instead",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() || base.cannot_be_a_base() {
            return Err(ProviderError::permanent(format!(
                "Unleash URL `{base}` must not have a query or fragment"
            )));
        }
        if token.header().is_none() {
            return Err(ProviderError::permanent(
                "the Unleash admin token is not a valid header value",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProviderError::permanent(format!("cannot build the HTTP client: {e}")))?;
        Ok(AdminApi {
            base,
            project,
            token,
            http,
            timeout,
        })
    }

    /// `/api/admin/projects/{project}/features/{flag}/environments/{env}` and `rest` after it.
    fn url(&self, flag: &str, env: &str, rest: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend([
                "api",
                "admin",
                "projects",
                &self.project,
                "features",
                flag,
                "environments",
                env,
            ]);
            segments.extend(rest);
        }
        url
    }

    /// The flag in environment `env`.
    pub(crate) async fn environment(
        &self,
        flag: &str,
        env: &str,
    ) -> Result<FeatureEnvironment, ProviderError> {
        let body = self
            .send(Method::GET, self.url(flag, env, &[]), None)
            .await?;
        parse(&body, "the flag's environment")
    }

    /// Adds `strategy` to the flag in `env`; the answer holds its id.
    pub(crate) async fn add_strategy(
        &self,
        flag: &str,
        env: &str,
        strategy: &Strategy,
    ) -> Result<Strategy, ProviderError> {
        let body = serde_json::to_value(strategy)
            .map_err(|e| ProviderError::permanent(format!("cannot encode the strategy: {e}")))?;
        let answer = self
            .send(
                Method::POST,
                self.url(flag, env, &["strategies"]),
                Some(body),
            )
            .await?;
        parse(&answer, "the new strategy")
    }

    /// Applies the JSON Patch `ops` to strategy `id`.
    pub(crate) async fn patch_strategy(
        &self,
        flag: &str,
        env: &str,
        id: &str,
        ops: Value,
    ) -> Result<(), ProviderError> {
        self.send(
            Method::PATCH,
            self.url(flag, env, &["strategies", id]),
            Some(ops),
        )
        .await
        .map(drop)
    }

    /// Turns the flag on or off in `env`.
    pub(crate) async fn set_enabled(
        &self,
        flag: &str,
        env: &str,
        on: bool,
    ) -> Result<(), ProviderError> {
        let rest = [if on { "on" } else { "off" }];
        self.send(Method::POST, self.url(flag, env, &rest), None)
            .await
            .map(drop)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Vec<u8>, ProviderError> {
        let what = format!("{method} {}", url.path());
        let mut request = self.http.request(method, url);
        if let Some(token) = self.token.header() {
            request = request.header(reqwest::header::AUTHORIZATION, token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        tracing::debug!(request = %what, "unleash admin api");
        let response = request.send().await.map_err(|e| self.transport(&what, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(&what, e))?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        Err(classify(&what, status, retry_after, &body))
    }

    fn transport(&self, what: &str, err: reqwest::Error) -> ProviderError {
        let base = if err.is_timeout() {
            ProviderError::transient(format!(
                "unleash {what} did not answer within {:?}",
                self.timeout
            ))
        } else if err.is_connect() {
            ProviderError::transient(format!("cannot connect to unleash at {}", self.base))
        } else {
            ProviderError::transient(format!("unleash {what} failed"))
        };
        base.with_source(err)
    }
}

fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::permanent(format!(
            "unleash answered {what} with JSON cutover cannot read: {e}"
        ))
    })
}

/// Classifies a non-2xx answer to `what` (`METHOD /path`, which never holds the token).
pub(crate) fn classify(
    what: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ProviderError {
    let detail = serde_json::from_slice::<ApiError>(body)
        .ok()
        .and_then(|e| match (e.name, e.message) {
            (Some(name), Some(message)) => Some(format!("{name}: {message}")),
            (name, message) => message.or(name),
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        429 => {
            let err =
                ProviderError::throttled(format!("unleash {what} asks us to slow down ({detail})"));
            match retry_after {
                Some(delay) => err.with_retry_after(delay),
                None => err,
            }
        }
        500..=599 => ProviderError::transient(format!("unleash {what} failed ({detail})")),
        401 | 403 => ProviderError::permanent(format!(
            "unleash {what} denied access (HTTP {status}, {detail}); check that the admin token \
             is valid and may change flags in this project and environment"
        )),
        404 => ProviderError::permanent(format!(
            "unleash {what}: not found ({detail}); check the project, flag and environment names"
        )),
        _ => ProviderError::permanent(format!(
            "unleash {what} refused the request (HTTP {status}, {detail})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use cutover_core::ErrorKind;

    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let body = br#"{"name":"NotFoundError","message":"Could not find f in production"}"#;
        let err = classify("GET /x", 404, None, body);
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(
            err.message()
                .contains("NotFoundError: Could not find f in production"),
            "{err}"
        );
        let err = classify("GET /x", 429, Some(Duration::from_secs(3)), b"");
        assert_eq!(err.kind(), ErrorKind::Throttled);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            classify("GET /x", 503, None, b"").kind(),
            ErrorKind::Transient
        );
        assert_eq!(
            classify("GET /x", 500, None, b"").kind(),
            ErrorKind::Transient
        );
        for status in [400, 401, 403, 409] {
            assert_eq!(
                classify("GET /x", status, None, b"").kind(),
                ErrorKind::Permanent,
                "{status}"
            );
        }
        assert!(
            classify("GET /x", 401, None, b"")
                .message()
                .contains("admin token")
        );
    }

    #[test]
    fn bad_urls_and_tokens_are_refused_and_the_token_never_shows() {
        let token = AdminToken::new("*:*.s3cr3t");
        let t = Duration::from_secs(1);
        for url in ["ftp://h/", "http://u:p@h/", "http://h/?q=1", "not a url"] {
            let err = AdminApi::new(url, "default".into(), token.clone(), t).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Permanent, "{url}");
            assert!(!err.to_string().contains("s3cr3t"));
        }
        let err = AdminApi::new("http://h/", "p".into(), AdminToken::new("a\nb"), t).unwrap_err();
        assert!(err.message().contains("not a valid header"), "{err}");
        let api = AdminApi::new("http://h/unleash/", "default".into(), token, t).unwrap();
        assert!(!format!("{api:?}").contains("s3cr3t"));
        assert_eq!(
            api.url("f.x", "prod", &["strategies", "id 1"]).as_str(),
            "http://h/unleash/api/admin/projects/default/features/f.x/environments/prod/strategies/id%201"
        );
    }
}
