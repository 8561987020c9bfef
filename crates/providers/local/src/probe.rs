//! [`HttpProbe`]: a revision is healthy when its URL answers as expected, a number of times in
//! a row.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{Health, HealthProbe, ProviderError, RevisionId};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Either, Full};
use parking_lot::Mutex;

use crate::client::{HttpClient, http_client};

/// An HTTP health check per revision: `GET url` within a timeout, with an expected status
/// (any 2xx by default) and optionally a string the body must contain.
///
/// Each [`check`](HealthProbe::check) makes one request. A revision is `Ready` after
/// `success_threshold` good answers in a row (default 1) and `Failed` after
/// `failure_threshold` bad ones in a row (default 3); in between it is `Progressing`, with the
/// last problem as the detail. A revision without a URL is a `Permanent` error.
///
/// ```
/// use cutover_local::HttpProbe;
/// use std::time::Duration;
/// let probe = HttpProbe::new("smoke")
///     .url("v2", "http://127.0.0.1:8082/healthz".parse().unwrap())
///     .timeout(Duration::from_secs(1))
///     .expect_status(200)
///     .body_contains("ok")
///     .thresholds(2, 3);
/// # let _ = probe;
/// ```
#[derive(Debug)]
pub struct HttpProbe {
    name: String,
    urls: Vec<(String, Uri)>,
    timeout: Duration,
    status: Option<StatusCode>,
    body: Option<String>,
    success_threshold: u32,
    failure_threshold: u32,
    streaks: Mutex<HashMap<RevisionId, Streak>>,
    client: HttpClient,
}

#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    successes: u32,
    failures: u32,
}

impl HttpProbe {
    /// A probe called `name` with no URLs yet, a 2 s timeout and thresholds 1 and 3.
    pub fn new(name: impl Into<String>) -> Self {
        HttpProbe {
            name: name.into(),
            urls: Vec::new(),
            timeout: Duration::from_secs(2),
            status: None,
            body: None,
            success_threshold: 1,
            failure_threshold: 3,
            streaks: Mutex::default(),
            // Short idle time: probes are rare, and a stale pooled connection is a false alarm.
            client: http_client(Duration::from_secs(5)),
        }
    }

    /// The URL that tells `revision`'s health (plain `http://`).
    pub fn url(mut self, revision: impl Into<String>, url: Uri) -> Self {
        self.urls.push((revision.into(), url));
        self
    }

    /// How long one check may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The status a healthy revision answers (default: any 2xx). An invalid code is ignored.
    pub fn expect_status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).ok();
        self
    }

    /// A string the body of a healthy answer contains.
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body = Some(text.into());
        self
    }

    /// Good answers in a row for `Ready`, bad answers in a row for `Failed` (each at least 1).
    pub fn thresholds(mut self, successes: u32, failures: u32) -> Self {
        self.success_threshold = successes.max(1);
        self.failure_threshold = failures.max(1);
        self
    }

    /// One request: `Ok(())` if the answer is healthy, else what was wrong.
    async fn once(&self, url: &Uri) -> Result<(), String> {
        let mut req = Request::new(Either::Right(Full::default()));
        *req.uri_mut() = url.clone();
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("GET {url}: reading the body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|_| format!("GET {url}: no answer within {:?}", self.timeout))?;
        let (status, body) = answer?;
        let status_ok = match self.status {
            Some(expected) => status == expected,
            None => status.is_success(),
        };
        if !status_ok {
            let expected = self
                .status
                .map_or_else(|| "2xx".to_owned(), |s| s.as_u16().to_string());
            return Err(format!(
                "GET {url}: status {}, expected {expected}",
                status.as_u16()
            ));
        }
        if let Some(text) = &self.body
            && !String::from_utf8_lossy(&body).contains(text.as_str())
        {
            return Err(format!("GET {url}: body does not contain `{text}`"));
        }
        Ok(())
    }
}

#[async_trait]
impl HealthProbe for HttpProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, revision: &RevisionId) -> Result<Health, ProviderError> {
        let Some((_, url)) = self.urls.iter().find(|(r, _)| r == revision.as_str()) else {
            return Err(ProviderError::permanent(format!(
                "probe `{}` has no URL for revision `{revision}`",
                self.name
            )));
        };
        let result = self.once(url).await;
        let mut streaks = self.streaks.lock();
        let streak = streaks.entry(revision.clone()).or_default();
        Ok(match result {
            Ok(()) => {
                *streak = Streak {
                    successes: streak.successes + 1,
                    failures: 0,
                };
                if streak.successes >= self.success_threshold {
                    Health::Ready
                } else {
                    Health::progressing(format!(
                        "{}/{} good answers in a row from {url}",
                        streak.successes, self.success_threshold
                    ))
                }
            }
            Err(problem) => {
                *streak = Streak {
                    successes: 0,
                    failures: streak.failures + 1,
                };
                if streak.failures >= self.failure_threshold {
                    Health::failed(format!("{problem} ({} times in a row)", streak.failures))
                } else {
                    Health::progressing(format!(
                        "{problem} ({}/{} failures)",
                        streak.failures, self.failure_threshold
                    ))
                }
            }
        })
    }
}
