//! Secrets a sink holds: the URL it posts to and the key it signs with. Neither shows in
//! `Debug`, logs or errors.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

/// Why a sink could not be configured. The messages never repeat the secret.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL is not an absolute `http` or `https` URL.
    #[error("{field} is not an absolute http(s) URL: {reason}")]
    Url {
        /// Which setting (`webhook URL`, `Slack URL`, `CloudEvents URL`).
        field: &'static str,
        /// What is wrong with it, without the URL itself.
        reason: String,
    },
    /// The signing key is not `whsec_` followed by base64, or is too short.
    #[error("webhook signing key is invalid: {reason}")]
    Key {
        /// What is wrong with it, without the key itself.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client cannot be built: {0}")]
    Client(String),
}

/// A URL that is itself a credential (a Slack incoming webhook, a webhook with a token in its
/// path or query). `Debug` shows only its scheme and host.
///
/// ```
/// use cutover_notify::SecretUrl;
/// let url = SecretUrl::parse("https://hooks.slack.com/services/T0/B0/XYZ", "Slack URL").unwrap();
/// assert_eq!(format!("{url:?}"), "SecretUrl(https://hooks.slack.com/…)");
/// ```
#[derive(Clone)]
pub struct SecretUrl(reqwest::Url);

impl SecretUrl {
    /// Parses an absolute `http`/`https` URL; `field` names it in errors.
    pub fn parse(url: &str, field: &'static str) -> Result<Self, ConfigError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ConfigError::Url {
            field,
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ConfigError::Url {
                field,
                reason: "the scheme must be http or https, with a host".into(),
            });
        }
        Ok(SecretUrl(parsed))
    }

    /// Scheme, host and port only: what logs may show.
    pub fn redacted(&self) -> String {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port() {
            Some(port) => format!("{}://{host}:{port}/…", self.0.scheme()),
            None => format!("{}://{host}/…", self.0.scheme()),
        }
    }

    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// The key a [`Webhook`](crate::Webhook) signs with (HMAC-SHA256, the Standard Webhooks
/// scheme). Written as `whsec_` and the base64 of at least 24 random bytes; `Debug` hides it.
///
/// ```
/// use cutover_notify::SigningKey;
/// let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// assert_eq!(format!("{key:?}"), "SigningKey(…)");
/// assert!(SigningKey::parse("hunter2").is_err());
/// ```
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

/// The least key length accepted, in bytes (Standard Webhooks asks for 24 to 64).
pub const MIN_KEY_BYTES: usize = 24;

impl SigningKey {
    /// Reads `whsec_<base64>` (the prefix is optional).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let bytes = STANDARD.decode(encoded).map_err(|e| ConfigError::Key {
            reason: format!("not base64 after `whsec_`: {e}"),
        })?;
        Self::from_bytes(bytes)
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ConfigError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ConfigError::Key {
                reason: format!("{} bytes; at least {MIN_KEY_BYTES} are needed", bytes.len()),
            });
        }
        Ok(SigningKey(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_do_not_repeat_the_url() {
        let err = SecretUrl::parse("hooks.slack.com/services/T0/B0/SECRETPART", "Slack URL")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("Slack URL is not"), "{err}");
        assert!(!err.contains("SECRETPART"), "{err}");
        let err = SecretUrl::parse("ftp://x/SECRETPART", "webhook URL")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRETPART"), "{err}");
    }

    #[test]
    fn redaction_keeps_the_port() {
        let url = SecretUrl::parse("http://127.0.0.1:8080/hook?token=SECRETPART", "x").unwrap();
        assert_eq!(url.redacted(), "http://127.0.0.1:8080/…");
    }

    #[test]
    fn short_keys_are_refused() {
        let err = SigningKey::from_bytes(vec![1; 8]).unwrap_err().to_string();
        assert!(err.contains("8 bytes"), "{err}");
    }
}
