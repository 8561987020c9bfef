//! A small client for the Prometheus HTTP API: instant and range queries.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover_core::ProviderError;
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};

use crate::error::{classify_response, classify_transport, retry_after};
use crate::response::QueryData;
use crate::template::promql_duration;

/// How requests prove who they are. The secret never appears in `Debug`, logs or errors.
#[derive(Clone)]
#[non_exhaustive]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic ...`.
    Basic {
        /// The user name (shown in `Debug`).
        username: String,
        /// The password (never shown).
        password: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Builds a [`PrometheusClient`].
///
/// ```
/// use std::time::Duration;
/// use cutover_prometheus::PrometheusClient;
///
/// let client = PrometheusClient::builder("https://prometheus.example.com/")
///     .timeout(Duration::from_secs(5))
///     .bearer_token("s3cr3t")
///     .header("X-Scope-OrgID", "team-a")
///     .build()?;
/// assert!(!format!("{client:?}").contains("s3cr3t"));
/// # Ok::<(), cutover_core::ProviderError>(())
/// ```
#[derive(Debug)]
pub struct PrometheusClientBuilder {
    url: String,
    timeout: Duration,
    auth: Option<Auth>,
    headers: Vec<(String, String)>,
    roots: Vec<Vec<u8>>,
}

impl PrometheusClientBuilder {
    /// The time one request may take, connection included (default 10 s). It is also sent as
    /// the query's `timeout` so that Prometheus stops evaluating when we stop waiting.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Bearer(token.into()));
        self
    }

    /// Sends HTTP basic authentication.
    pub fn basic_auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(Auth::Basic {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Sends `name: value` with every request (a tenant id like `X-Scope-OrgID`). Values are
    /// treated as secrets: never shown in `Debug`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Trusts the CA certificate(s) in `pem` besides the platform's roots (a private CA).
    /// TLS verification is always on.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(pem.into());
        self
    }

    /// The client. Fails (`Permanent`) on a URL that is not `http(s)`, carries credentials, a
    /// query or a fragment, on an invalid header, or on an unreadable certificate.
    pub fn build(self) -> Result<PrometheusClient, ProviderError> {
        let mut base = Url::parse(&self.url).map_err(|e| {
            ProviderError::permanent(format!("invalid Prometheus URL `{}`: {e}", self.url))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ProviderError::permanent(format!(
                "Prometheus URL `{}` must be http or https",
                self.url
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(ProviderError::permanent(
                "the Prometheus URL must not carry credentials: use basic_auth or bearer_token",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(ProviderError::permanent(format!(
                "Prometheus URL `{base}` must not have a query or fragment"
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ProviderError::permanent(format!("invalid header name `{name}`")))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                ProviderError::permanent(format!("invalid value for header `{name}`"))
            })?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let mut http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none());
        for pem in &self.roots {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ProviderError::permanent(format!("unreadable CA certificate: {e}")))?;
            http = http.tls_certs_merge(certs);
        }
        let http = http
            .build()
            .map_err(|e| ProviderError::permanent(format!("cannot build the HTTP client: {e}")))?;
        Ok(PrometheusClient {
            inner: Arc::new(Inner {
                base,
                http,
                timeout: self.timeout,
                auth: self.auth,
                headers,
            }),
        })
    }
}

/// A client for one Prometheus (or a compatible API: Thanos, Mimir, VictoriaMetrics).
/// Cheap to clone. TLS certificates are verified against the platform's roots.
#[derive(Clone)]
pub struct PrometheusClient {
    inner: Arc<Inner>,
}

struct Inner {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
    auth: Option<Auth>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .inner
            .headers
            .iter()
            .map(|(name, _)| format!("{name}: <redacted>"))
            .collect();
        f.debug_struct("PrometheusClient")
            .field("url", &self.inner.base.as_str())
            .field("timeout", &self.inner.timeout)
            .field("auth", &self.inner.auth)
            .field("headers", &headers)
            .finish()
    }
}

impl PrometheusClient {
    /// A builder for the Prometheus at `url` (like `http://127.0.0.1:9090`, or with a path
    /// prefix, `https://example.com/prometheus`).
    pub fn builder(url: impl Into<String>) -> PrometheusClientBuilder {
        PrometheusClientBuilder {
            url: url.into(),
            timeout: Duration::from_secs(10),
            auth: None,
            headers: Vec::new(),
            roots: Vec::new(),
        }
    }

    /// The base URL, always ending in `/`.
    pub fn url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// Evaluates `promql` at the server's current time (`/api/v1/query`).
    pub async fn query(&self, promql: &str) -> Result<QueryData, ProviderError> {
        self.post("api/v1/query", promql, &[]).await
    }

    /// Evaluates `promql` from `start` to `end` every `step` (`/api/v1/query_range`); the
    /// result is a matrix.
    pub async fn query_range(
        &self,
        promql: &str,
        start: SystemTime,
        end: SystemTime,
        step: Duration,
    ) -> Result<QueryData, ProviderError> {
        let step = promql_duration(step)?;
        self.post(
            "api/v1/query_range",
            promql,
            &[("start", unix(start)), ("end", unix(end)), ("step", step)],
        )
        .await
    }

    async fn post(
        &self,
        path: &str,
        promql: &str,
        extra: &[(&str, String)],
    ) -> Result<QueryData, ProviderError> {
        let inner = &*self.inner;
        let url = inner.base.join(path).map_err(|e| {
            ProviderError::permanent(format!("cannot build the URL for {path}: {e}"))
        })?;
        let endpoint = url.as_str().to_owned();
        let mut form = Url::parse("http://form.invalid/").expect("a valid URL");
        {
            let mut pairs = form.query_pairs_mut();
            pairs.append_pair("query", promql);
            if let Ok(timeout) = promql_duration(inner.timeout) {
                pairs.append_pair("timeout", &timeout);
            }
            for (k, v) in extra {
                pairs.append_pair(k, v);
            }
        }
        let body = form.query().unwrap_or_default().to_owned();
        let mut request = inner
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        match &inner.auth {
            Some(Auth::Bearer(token)) => request = request.bearer_auth(token),
            Some(Auth::Basic { username, password }) => {
                request = request.basic_auth(username, Some(password));
            }
            None => {}
        }
        for (name, value) in &inner.headers {
            request = request.header(name.clone(), value.clone());
        }
        tracing::debug!(endpoint = %endpoint, query = promql, "prometheus query");
        let response = request
            .send()
            .await
            .map_err(|e| classify_transport(&endpoint, inner.timeout, e))?;
        let status = response.status().as_u16();
        let retry = retry_after(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let body = response
            .bytes()
            .await
            .map_err(|e| classify_transport(&endpoint, inner.timeout, e))?;
        classify_response(&endpoint, promql, status, retry, &body)
    }
}

/// Unix time in seconds with millisecond precision, as the API takes it.
fn unix(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", since.as_secs(), since.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let client = PrometheusClient::builder("http://127.0.0.1:9/prom")
            .basic_auth("alice", "hunter2")
            .header("X-Scope-OrgID", "tenant-secret")
            .build()
            .unwrap();
        let debug = format!("{client:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("tenant-secret"),
            "{debug}"
        );
        assert!(
            debug.contains("alice") && debug.contains("x-scope-orgid"),
            "{debug}"
        );
        assert_eq!(client.url(), "http://127.0.0.1:9/prom/");
        let bearer = format!("{:?}", Auth::Bearer("tok".into()));
        assert_eq!(bearer, "Bearer(<redacted>)");
    }

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused() {
        for url in [
            "http://u:p@host/",
            "ftp://host/",
            "not a url",
            "http://host/?a=b",
        ] {
            let err = PrometheusClient::builder(url).build().unwrap_err();
            assert_eq!(err.kind(), cutover_core::ErrorKind::Permanent, "{url}");
            assert!(!err.to_string().contains(":p@"), "{err}");
        }
        let bad_header = PrometheusClient::builder("http://h/")
            .header("bad header", "x")
            .build();
        assert!(bad_header.is_err());
    }

    #[test]
    fn unix_time_has_millis() {
        assert_eq!(unix(UNIX_EPOCH + Duration::from_millis(1_500)), "1.500");
    }
}
