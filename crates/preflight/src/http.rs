//! HTTP smoke checks, and HTTP calls as fixes.

use std::time::Duration;

use async_trait::async_trait;
use cutover_core::ProviderError;
use cutover_core::checklist::{Check, CheckContext, CheckResult, Remediation};
use serde::Deserialize;

use crate::SecretUrl;

/// An HTTP(S) endpoint answers with the expected status (any 2xx by default), its body holds
/// an expected text, and it answers within a latency budget.
///
/// ```yaml
/// http: { url: "https://api.internal/healthz", status: 200, body_contains: ok, latency: 500ms }
/// ```
#[derive(Debug, Clone)]
pub struct HttpCheck {
    url: SecretUrl,
    method: reqwest::Method,
    status: Option<u16>,
    body_contains: Option<String>,
    latency: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpParams {
    url: SecretUrl,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    body_contains: Option<String>,
    #[serde(default, deserialize_with = "crate::duration")]
    latency: Option<Duration>,
}

fn method(
    text: Option<&str>,
    default: reqwest::Method,
) -> Result<reqwest::Method, (String, String)> {
    text.map_or(Ok(default), |m| {
        reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| ("method".into(), format!("`{m}` is not an HTTP method")))
    })
}

impl HttpCheck {
    /// A GET of `url` expecting any 2xx.
    pub fn new(url: impl Into<String>) -> Self {
        HttpCheck {
            url: SecretUrl::new(url),
            method: reqwest::Method::GET,
            status: None,
            body_contains: None,
            latency: None,
        }
    }

    /// Expects exactly this status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Expects the body to contain `text`.
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    /// Fails when the answer takes longer than `budget`.
    pub fn latency(mut self, budget: Duration) -> Self {
        self.latency = Some(budget);
        self
    }

    pub(crate) fn from_params(p: HttpParams) -> Result<Self, (String, String)> {
        Ok(HttpCheck {
            method: method(p.method.as_deref(), reqwest::Method::GET)?,
            url: p.url,
            status: p.status,
            body_contains: p.body_contains,
            latency: p.latency,
        })
    }
}

#[async_trait]
impl Check for HttpCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let url = self.url.redacted();
        let client = match crate::client() {
            Ok(c) => c,
            Err(e) => return CheckResult::error(e),
        };
        let start = tokio::time::Instant::now();
        let response = match client
            .request(self.method.clone(), self.url.expose())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return CheckResult::error(format!("{} {url}: {}", self.method, e.without_url()))
                    .hint("check that the service is running and reachable from here")
                    .evidence("url", &url);
            }
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let elapsed = start.elapsed();
        let base = |r: CheckResult| {
            r.evidence("url", &url).evidence("status", status).evidence(
                "latency_ms",
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            )
        };
        let status_ok = self
            .status
            .map_or((200..300).contains(&status), |s| s == status);
        if !status_ok {
            let expected = self
                .status
                .map_or_else(|| "2xx".to_owned(), |s| s.to_string());
            let snippet: String = body.chars().take(120).collect();
            return base(CheckResult::fail(format!(
                "{} {url} answered {status}, expected {expected}: {}",
                self.method,
                snippet.trim()
            )))
            .hint("look at the service's logs and health; it must answer before a rollout");
        }
        if let Some(text) = &self.body_contains
            && !body.contains(text.as_str())
        {
            return base(CheckResult::fail(format!(
                "{} {url} answered {status} but the body lacks `{text}`",
                self.method
            )))
            .hint(
                "the endpoint answers but not with what is expected: check its version and config",
            );
        }
        if let Some(budget) = self.latency
            && elapsed > budget
        {
            return base(CheckResult::fail(format!(
                "{} {url} took {} ms, over the {} budget",
                self.method,
                elapsed.as_millis(),
                humantime::format_duration(budget)
            )))
            .hint("the service is slow before any change: find out why before adding risk");
        }
        base(CheckResult::pass(format!(
            "{} {url} answered {status} in {} ms",
            self.method,
            elapsed.as_millis()
        )))
    }
}

/// A fix that makes an HTTP call (POST by default) and expects any 2xx, or `status`.
///
/// ```yaml
/// fix: { http: { url: "http://127.0.0.1:8080/admin/warm-cache", method: POST } }
/// ```
#[derive(Debug, Clone)]
pub struct HttpFix {
    url: SecretUrl,
    method: reqwest::Method,
    status: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpFixParams {
    url: SecretUrl,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    status: Option<u16>,
}

impl HttpFix {
    /// A POST to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        HttpFix {
            url: SecretUrl::new(url),
            method: reqwest::Method::POST,
            status: None,
        }
    }

    pub(crate) fn from_params(p: HttpFixParams) -> Result<Self, (String, String)> {
        Ok(HttpFix {
            method: method(p.method.as_deref(), reqwest::Method::POST)?,
            url: p.url,
            status: p.status,
        })
    }
}

#[async_trait]
impl Remediation for HttpFix {
    fn describe(&self) -> String {
        format!("{} {}", self.method, self.url.redacted())
    }

    async fn apply(&self, _ctx: &CheckContext) -> Result<String, ProviderError> {
        let client = crate::client().map_err(ProviderError::permanent)?;
        let response = client
            .request(self.method.clone(), self.url.expose())
            .send()
            .await
            .map_err(|e| {
                ProviderError::transient(format!("{}: {}", self.describe(), e.without_url()))
            })?;
        let status = response.status().as_u16();
        let ok = self
            .status
            .map_or((200..300).contains(&status), |s| s == status);
        if ok {
            Ok(format!("{} answered {status}", self.describe()))
        } else {
            Err(ProviderError::permanent(format!(
                "{} answered {status}",
                self.describe()
            )))
        }
    }
}
