//! A generic JSON webhook, signed the Standard Webhooks way.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cutover_core::Timestamp;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{DeliveryError, Poster, Sink, encode};
use crate::notice::Notice;
use crate::secret::{ConfigError, SigningKey};

/// Posts each notice as JSON, signed with HMAC-SHA256 as the
/// [Standard Webhooks](https://www.standardwebhooks.com/) specification says, so receivers can
/// verify it with any of its libraries.
///
/// The body is `{"type": "cutover.rollout.<kind>", "timestamp": ..., "data": <Notice>}`. The
/// headers are `webhook-id` (the notice id, the same on every attempt: deduplicate by it),
/// `webhook-timestamp` (Unix seconds of the attempt), `webhook-signature`
/// (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`) and `Idempotency-Key` (the id
/// again). Receivers should refuse timestamps more than five minutes away from their clock.
#[derive(Debug, Clone)]
pub struct Webhook {
    poster: Poster,
    key: SigningKey,
}

impl Webhook {
    /// A webhook posting to `url`, signing with `key`.
    pub fn new(url: &str, key: SigningKey) -> Result<Self, ConfigError> {
        Ok(Webhook {
            poster: Poster::new(url, "webhook URL")?,
            key,
        })
    }

    /// How long one attempt may take (10 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.poster = self.poster.with_timeout(timeout)?;
        Ok(self)
    }

    /// The signature header's value for a body sent with this id and timestamp.
    pub fn signature(&self, id: &str, unix_seconds: u64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.bytes())
            .expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(unix_seconds.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The JSON a [`Webhook`] posts for a notice.
pub(crate) fn body(notice: &Notice) -> serde_json::Value {
    json!({
        "type": format!("cutover.rollout.{}", notice.kind),
        "timestamp": notice.at,
        "data": notice,
    })
}

#[async_trait]
impl Sink for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn deliver(&self, notice: &Notice, now: Timestamp) -> Result<(), DeliveryError> {
        let body = encode(&body(notice))?;
        let seconds = now.unix_millis() / 1000;
        let signature = self.signature(&notice.id, seconds, &body);
        let headers = [
            ("webhook-id", notice.id.clone()),
            ("webhook-timestamp", seconds.to_string()),
            ("webhook-signature", signature),
            ("idempotency-key", notice.id.clone()),
        ];
        self.poster.post("application/json", &headers, body).await
    }
}
