//! The classified error every provider returns at the trait boundary.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A boxed error from a provider's own client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How the engine should treat a [`ProviderError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Worth retrying: a timeout, a refused connection, a 5xx, a write conflict.
    Transient,
    /// The provider asked us to slow down (HTTP 429, AWS throttling). Retried, honouring
    /// [`ProviderError::retry_after`] when given.
    Throttled,
    /// Retrying will not help: bad input, missing object, denied access.
    Permanent,
    /// The provider does not implement this operation.
    Unsupported,
}

impl ErrorKind {
    /// Whether the engine retries errors of this kind.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Throttled)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Unsupported => "unsupported",
        })
    }
}

/// An error from a provider (router, probe, metric source, workload, gate, store, migration),
/// classified so that the engine knows whether to retry it.
///
/// Each provider turns its client's errors into `ProviderError` in exactly one place. `Display`
/// shows the message and the kind; the client's error is the [`source`](std::error::Error::source).
///
/// ```
/// use cutover_core::{ErrorKind, ProviderError};
///
/// let err = ProviderError::throttled("rate exceeded")
///     .with_retry_after(std::time::Duration::from_secs(2));
/// assert_eq!(err.kind(), ErrorKind::Throttled);
/// assert!(err.is_retryable());
/// assert_eq!(err.to_string(), "rate exceeded (throttled)");
/// ```
#[derive(Debug)]
pub struct ProviderError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

impl ProviderError {
    /// An error of `kind` with a message that says what failed.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// A [`ErrorKind::Transient`] error.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// A [`ErrorKind::Throttled`] error.
    pub fn throttled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Throttled, message)
    }

    /// A [`ErrorKind::Permanent`] error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// An [`ErrorKind::Unsupported`] error naming the operation.
    pub fn unsupported(operation: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("{operation} is not supported by this provider"),
        )
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches the delay the provider asked for before the next attempt.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The classification.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The delay the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the engine retries this error.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The message followed by every source in the chain, for records and logs.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            text.push_str(": ");
            text.push_str(&err.to_string());
            source = err.source();
        }
        text
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl std::error::Error for ProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_sources_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = ProviderError::transient("could not reach router").with_source(io);
        assert_eq!(err.to_string(), "could not reach router (transient)");
        assert_eq!(err.chain(), "could not reach router (transient): refused");
    }

    #[test]
    fn only_transient_and_throttled_are_retried() {
        assert!(ErrorKind::Transient.is_retryable());
        assert!(ErrorKind::Throttled.is_retryable());
        assert!(!ErrorKind::Permanent.is_retryable());
        assert!(!ErrorKind::Unsupported.is_retryable());
    }
}
