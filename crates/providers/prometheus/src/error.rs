//! The one place where HTTP and Prometheus API failures become [`ProviderError`] kinds.
//!
//! | failure | kind |
//! |---|---|
//! | HTTP 429 | `Throttled`, with `Retry-After` (seconds) when sent |
//! | HTTP 503 with `Retry-After` | `Throttled` |
//! | `errorType` `bad_data` (a query Prometheus cannot parse), `execution`, `not_found` | `Permanent` |
//! | `errorType` `timeout`, `canceled`, `internal`, `unavailable` | `Transient` |
//! | other 5xx, request timeout, refused or broken connection | `Transient` |
//! | 401 / 403, 404, other 4xx, a 2xx that is not Prometheus JSON, a failed TLS verification | `Permanent` |

use std::time::Duration;

use cutover_core::ProviderError;

use crate::response::{Envelope, QueryData};

/// Classifies an answer from `endpoint` to `promql`.
pub(crate) fn classify_response(
    endpoint: &str,
    promql: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<QueryData, ProviderError> {
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    let api_error = envelope.as_ref().and_then(|e| {
        (e.status == "error").then(|| {
            format!(
                "{}: {}",
                e.error_type.as_deref().unwrap_or("error"),
                e.error.as_deref().unwrap_or("(no message)")
            )
        })
    });
    let detail = api_error
        .clone()
        .unwrap_or_else(|| format!("HTTP {status}"));
    let throttled = |message: String| {
        let err = ProviderError::throttled(message);
        match retry_after {
            Some(delay) => err.with_retry_after(delay),
            None => err,
        }
    };
    if status == 429 {
        return Err(throttled(format!(
            "prometheus {endpoint} asks us to slow down ({detail})"
        )));
    }
    if let Some(envelope) = envelope {
        if envelope.status == "success" && (200..300).contains(&status) {
            let data = envelope.data.ok_or_else(|| {
                ProviderError::permanent(format!(
                    "prometheus {endpoint} answered success without data"
                ))
            })?;
            return data.parse().map_err(|e| {
                ProviderError::permanent(format!(
                    "prometheus {endpoint} answered a value that is not a number: {e}"
                ))
            });
        }
        match envelope.error_type.as_deref() {
            Some("bad_data") => {
                return Err(ProviderError::permanent(format!(
                    "prometheus {endpoint} rejected the query ({detail}): {promql}"
                )));
            }
            Some("execution" | "not_found") => {
                return Err(ProviderError::permanent(format!(
                    "prometheus {endpoint} could not evaluate the query ({detail}): {promql}"
                )));
            }
            Some("timeout" | "canceled" | "internal" | "unavailable") if retry_after.is_none() => {
                return Err(ProviderError::transient(format!(
                    "prometheus {endpoint} failed to answer ({detail})"
                )));
            }
            _ => {}
        }
    }
    Err(match status {
        503 if retry_after.is_some() => {
            throttled(format!("prometheus {endpoint} is unavailable ({detail})"))
        }
        500..=599 => ProviderError::transient(format!("prometheus {endpoint} failed ({detail})")),
        401 | 403 => ProviderError::permanent(format!(
            "prometheus {endpoint} denied access ({detail}); check the token or credentials"
        )),
        404 => ProviderError::permanent(format!(
            "no Prometheus query API at {endpoint} ({detail}); check the base URL"
        )),
        400..=499 => ProviderError::permanent(format!(
            "prometheus {endpoint} refused the query ({detail})"
        )),
        _ => ProviderError::permanent(format!(
            "prometheus {endpoint} answered HTTP {status} with no Prometheus API response"
        )),
    })
}

/// Classifies a request to `endpoint` that got no answer.
pub(crate) fn classify_transport(
    endpoint: &str,
    timeout: Duration,
    err: reqwest::Error,
) -> ProviderError {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push_str(&e.to_string().to_lowercase());
        chain.push(' ');
        source = e.source();
    }
    let base = if err.is_timeout() {
        ProviderError::transient(format!(
            "prometheus {endpoint} did not answer within {timeout:?}"
        ))
    } else if chain.contains("certificate") || chain.contains("invalid peer") {
        ProviderError::permanent(format!(
            "prometheus {endpoint}: TLS verification failed; add the server's CA with root_certificate_pem"
        ))
    } else if err.is_builder() {
        ProviderError::permanent(format!("prometheus {endpoint}: invalid request"))
    } else if err.is_connect() {
        ProviderError::transient(format!("cannot connect to prometheus {endpoint}"))
    } else {
        ProviderError::transient(format!("request to prometheus {endpoint} failed"))
    };
    base.with_source(err)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Prometheus and is ignored).
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::ErrorKind;

    const EP: &str = "http://p/api/v1/query";

    fn kind(status: u16, retry: Option<u64>, body: &str) -> ProviderError {
        classify_response(
            EP,
            "up",
            status,
            retry.map(Duration::from_secs),
            body.as_bytes(),
        )
        .unwrap_err()
    }

    #[test]
    fn api_error_types_map_to_kinds() {
        let bad = kind(
            400,
            None,
            r#"{"status":"error","errorType":"bad_data","error":"1:3: parse error"}"#,
        );
        assert_eq!(bad.kind(), ErrorKind::Permanent);
        assert!(
            bad.message().contains("bad_data: 1:3: parse error"),
            "{bad}"
        );
        assert!(bad.message().ends_with(": up"));
        let exec = kind(
            422,
            None,
            r#"{"status":"error","errorType":"execution","error":"x"}"#,
        );
        assert_eq!(exec.kind(), ErrorKind::Permanent);
        for t in ["timeout", "canceled", "internal", "unavailable"] {
            let body = format!(r#"{{"status":"error","errorType":"{t}","error":"x"}}"#);
            assert_eq!(kind(503, None, &body).kind(), ErrorKind::Transient, "{t}");
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        let slow = kind(429, Some(7), "too many");
        assert_eq!(slow.kind(), ErrorKind::Throttled);
        assert_eq!(slow.retry_after(), Some(Duration::from_secs(7)));
        let busy = kind(
            503,
            Some(3),
            r#"{"status":"error","errorType":"unavailable","error":"x"}"#,
        );
        assert_eq!(busy.kind(), ErrorKind::Throttled);
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(kind(503, None, "").kind(), ErrorKind::Transient);
        assert_eq!(kind(502, None, "<html>").kind(), ErrorKind::Transient);
        assert_eq!(kind(401, None, "").kind(), ErrorKind::Permanent);
        assert_eq!(kind(404, None, "").kind(), ErrorKind::Permanent);
        assert_eq!(kind(200, None, "<html>").kind(), ErrorKind::Permanent);
        assert_eq!(
            kind(200, None, r#"{"status":"success"}"#).kind(),
            ErrorKind::Permanent
        );
    }

    #[test]
    fn retry_after_reads_seconds() {
        assert_eq!(retry_after(Some(" 12 ")), Some(Duration::from_secs(12)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }
}
