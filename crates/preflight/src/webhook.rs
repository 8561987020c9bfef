//! A webhook compatible with Flagger's: a JSON call, 2xx passes, signed with HMAC-SHA256.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use hmac::{KeyInit, Mac};
use serde::Deserialize;

use crate::SecretUrl;

/// The header carrying the body's signature: `sha256=<hex HMAC-SHA256 of the body>`, keyed
/// with the secret from the environment variable the check names.
pub const SIGNATURE_HEADER: &str = "X-Cutover-Signature";

/// Calls a webhook the way Flagger calls its pre-rollout webhooks: a POST with the JSON body
/// `{"name", "namespace", "phase", "checksum", "metadata"}`; any 2xx answer passes, anything
/// else fails with the answer's first line as the message. With `secret_env`, the body is
/// signed in the [`SIGNATURE_HEADER`] header with the key read from that environment variable
/// (the key never appears in the checklist).
///
/// ```yaml
/// webhook:
///   url: "https://hooks.internal/preflight?token=..."   # shown as ...?token=***
///   secret_env: PREFLIGHT_HMAC_KEY
///   metadata: { ticket: CHG-42 }
/// ```
#[derive(Debug, Clone)]
pub struct WebhookCheck {
    url: SecretUrl,
    secret_env: Option<String>,
    secret_file: Option<std::path::PathBuf>,
    namespace: String,
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookParams {
    url: SecretUrl,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<std::path::PathBuf>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

impl WebhookCheck {
    /// Calls `url`.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookCheck {
            url: SecretUrl::new(url),
            secret_env: None,
            secret_file: None,
            namespace: String::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// Signs the body with the key in environment variable `name`.
    pub fn secret_env(mut self, name: impl Into<String>) -> Self {
        self.secret_env = Some(name.into());
        self
    }

    /// Signs the body with the key in file `path` (a mounted secret; a trailing newline is
    /// ignored).
    pub fn secret_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.secret_file = Some(path.into());
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    pub(crate) fn from_params(p: WebhookParams) -> Result<Self, (String, String)> {
        if p.secret_env.is_some() && p.secret_file.is_some() {
            return Err((
                "secret_file".into(),
                "give `secret_env` or `secret_file`, not both".into(),
            ));
        }
        Ok(WebhookCheck {
            url: p.url,
            secret_env: p.secret_env,
            secret_file: p.secret_file,
            namespace: p.namespace,
            metadata: p.metadata,
        })
    }
}

impl WebhookCheck {
    /// The signing key, if the check has one.
    fn key(&self) -> Result<Option<Vec<u8>>, CheckResult> {
        if let Some(name) = &self.secret_env {
            return match std::env::var_os(name).filter(|k| !k.is_empty()) {
                Some(key) => Ok(Some(key.into_encoded_bytes())),
                None => Err(CheckResult::error(format!(
                    "the signing key variable `{name}` is not set"
                ))
                .hint(format!("set `{name}` to the webhook's shared secret"))),
            };
        }
        if let Some(path) = &self.secret_file {
            return match std::fs::read(path) {
                Ok(mut key) if !key.is_empty() => {
                    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        key.pop();
                    }
                    Ok(Some(key))
                }
                Ok(_) => Err(CheckResult::error(format!(
                    "the signing key file {} is empty",
                    path.display()
                ))),
                Err(e) => Err(CheckResult::error(format!(
                    "cannot read the signing key file {}: {e}",
                    path.display()
                ))
                .hint("mount the webhook's shared secret there")),
            };
        }
        Ok(None)
    }
}

/// `sha256=<hex>` of `body` keyed with `key`.
pub(crate) fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 2 * bytes.len());
    hex.push_str("sha256=");
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

#[async_trait]
impl Check for WebhookCheck {
    async fn run(&self, ctx: &CheckContext) -> CheckResult {
        let url = self.url.redacted();
        let body = serde_json::json!({
            "name": ctx.rollout.as_ref().map_or_else(|| ctx.checklist.clone(), ToString::to_string),
            "namespace": self.namespace,
            "phase": "Progressing",
            "checksum": ctx.revisions.as_ref().map(|r| r.candidate.to_string()).unwrap_or_default(),
            "metadata": self.metadata,
        });
        let body = body.to_string();
        let client = match crate::client() {
            Ok(c) => c,
            Err(e) => return CheckResult::error(e),
        };
        let mut request = client
            .post(self.url.expose())
            .header("content-type", "application/json");
        match self.key() {
            Ok(Some(key)) => {
                request = request.header(SIGNATURE_HEADER, signature(&key, body.as_bytes()));
            }
            Ok(None) => {}
            Err(e) => return e.evidence("url", &url),
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                return CheckResult::error(format!("POST {url}: {}", e.without_url()))
                    .hint("check that the webhook's service is up and reachable")
                    .evidence("url", &url);
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>();
        if status.is_success() {
            CheckResult::pass(format!("webhook answered {}", status.as_u16()))
                .evidence("url", &url)
                .evidence("status", status.as_u16())
        } else {
            CheckResult::fail(format!("webhook answered {}: {first}", status.as_u16()))
                .hint("the webhook's owner said no: read its answer, fix the cause, run again")
                .evidence("url", &url)
                .evidence("status", status.as_u16())
        }
    }
}
