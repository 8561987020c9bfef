//! Where notices go: the [`Sink`] trait and the HTTP sinks built on it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::Timestamp;
use thiserror::Error;

use crate::notice::Notice;
use crate::secret::{ConfigError, SecretUrl};

mod cloudevents;
mod slack;
mod webhook;

pub use self::cloudevents::{CDEVENTS_SPEC_VERSION, CloudEvents, cdevent_type};
pub use self::slack::Slack;
pub use self::webhook::Webhook;

/// Somewhere notices are delivered. A sink makes one attempt per call; the
/// [`Notifier`](crate::Notifier) retries, orders and remembers.
#[async_trait]
pub trait Sink: Send + Sync + fmt::Debug {
    /// What kind of sink this is, for logs and metrics: `webhook`, `slack`, `cloudevents`.
    fn kind(&self) -> &'static str;

    /// Delivers one notice; `now` is the wall time of this attempt. `Ok` means the receiver
    /// acknowledged it.
    async fn deliver(&self, notice: &Notice, now: Timestamp) -> Result<(), DeliveryError>;
}

/// Why one delivery attempt failed. Never carries the sink's URL or key.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The receiver answered with a status other than 2xx (redirects are not followed).
    #[error("the receiver answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// No answer in time.
    #[error("no answer within {}", humantime::format_duration(*after))]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The connection failed.
    #[error("cannot reach the receiver: {message}")]
    Transport {
        /// What went wrong, without the URL.
        message: String,
    },
    /// The notice could not be encoded.
    #[error("cannot encode the notice: {message}")]
    Encode {
        /// What went wrong.
        message: String,
    },
}

impl DeliveryError {
    /// Whether another attempt may succeed: timeouts, connection errors, 408, 429 and 5xx.
    /// Other answers (4xx, 3xx) go to the dead-letter list at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status { status } => *status == 408 || *status == 429 || *status >= 500,
            DeliveryError::Timeout { .. } | DeliveryError::Transport { .. } => true,
            DeliveryError::Encode { .. } => false,
        }
    }
}

/// The default time one attempt may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client that posts JSON to a secret URL: bounded in time, follows no redirects,
/// never reads the response body (a huge or endless answer costs nothing).
#[derive(Clone)]
pub(crate) struct Poster {
    client: reqwest::Client,
    url: SecretUrl,
    timeout: Duration,
}

impl fmt::Debug for Poster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poster")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Poster {
    pub(crate) fn new(url: &str, field: &'static str) -> Result<Self, ConfigError> {
        let url = SecretUrl::parse(url, field)?;
        Self::build(url, DEFAULT_TIMEOUT)
    }

    fn build(url: SecretUrl, timeout: Duration) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cutover-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.without_url().to_string()))?;
        Ok(Poster {
            client,
            url,
            timeout,
        })
    }

    pub(crate) fn with_timeout(self, timeout: Duration) -> Result<Self, ConfigError> {
        Self::build(self.url, timeout)
    }

    pub(crate) async fn post(
        &self,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(), DeliveryError> {
        let mut request = self
            .client
            .post(self.url.url().clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| self.error(e))?;
        let status = response.status();
        drop(response);
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status {
                status: status.as_u16(),
            })
        }
    }

    fn error(&self, e: reqwest::Error) -> DeliveryError {
        if e.is_timeout() {
            return DeliveryError::Timeout {
                after: self.timeout,
            };
        }
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        DeliveryError::Transport { message }
    }
}

pub(crate) fn encode(value: &serde_json::Value) -> Result<Vec<u8>, DeliveryError> {
    serde_json::to_vec(value).map_err(|e| DeliveryError::Encode {
        message: e.to_string(),
    })
}
