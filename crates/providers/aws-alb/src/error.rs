//! Errors: [`AlbError`] for configuration mistakes found before any call, and the one place
//! ([`classify`]) where the SDK's errors become [`ProviderError`]s.

use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cutover_core::{ProviderError, RevisionId};

use crate::arn::ResourceKind;

/// A router, probe or workload that cannot be built as configured. Found before any call to
/// AWS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlbError {
    /// An ARN that is malformed or names the wrong kind of resource.
    #[error("`{arn}` is not a valid {kind} ARN: {reason}")]
    InvalidArn {
        /// The ARN as given.
        arn: String,
        /// The kind expected.
        kind: ResourceKind,
        /// What is wrong with it.
        reason: String,
    },
    /// Resources from different partitions, regions or accounts.
    #[error("{kind} `{arn}` is in another partition, region or account than `{anchor}`")]
    ForeignResource {
        /// The kind of the resource out of place.
        kind: ResourceKind,
        /// Its ARN.
        arn: String,
        /// The listener, rule or target group the others must share a scope with.
        anchor: String,
    },
    /// No listener or rule, or both.
    #[error("give exactly one of a listener (its default action) or a listener rule")]
    NoForwardTarget,
    /// Fewer target groups than needed.
    #[error("at least one revision needs a target group")]
    NoTargetGroups,
    /// A revision name that is not a valid [`RevisionId`].
    #[error("`{0}` is not a valid revision name: {1}")]
    InvalidRevision(String, String),
    /// A revision configured twice.
    #[error("revision `{0}` is given twice")]
    DuplicateRevision(RevisionId),
    /// A target group given for two revisions.
    #[error("target group `{0}` is given for two revisions")]
    DuplicateTargetGroup(String),
    /// More target groups than a forward action may hold.
    #[error("{0} target groups, but an ALB forward action holds at most 5")]
    TooManyTargetGroups(usize),
    /// A target (instance id, IP or Lambda ARN) that cannot be right.
    #[error("target `{0}` is invalid: {1}")]
    InvalidTarget(String, String),
}

/// AWS error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorityRequestNotSatisfied",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
];

/// Turns an SDK error into a [`ProviderError`], naming the operation and the resource.
///
/// - throttling (by error code, or HTTP 429) → [`Throttled`](cutover_core::ErrorKind::Throttled),
///   with `retry_after` from a `Retry-After` header in seconds when AWS sends one;
/// - HTTP 5xx, timeouts, connection failures, unreadable responses →
///   [`Transient`](cutover_core::ErrorKind::Transient);
/// - everything else the service answers (validation, access denied, not found) and requests
///   that could not be built → [`Permanent`](cutover_core::ErrorKind::Permanent).
///
/// The message holds the error code and AWS's message, never a request or credentials.
pub fn classify<E>(operation: &str, resource: &str, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let context = format!("{operation} on `{resource}`");
    let classified = match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("unknown error");
            let message = service.err().message().unwrap_or_default();
            let text = format!("{context} failed: {code} (HTTP {status}) {message}");
            let text = text.trim_end().to_owned();
            if status == 429 || THROTTLING_CODES.contains(&code) {
                let mut e = ProviderError::throttled(text);
                if let Some(delay) = retry_after(service.raw()) {
                    e = e.with_retry_after(delay);
                }
                e
            } else if status >= 500 {
                ProviderError::transient(text)
            } else {
                ProviderError::permanent(text)
            }
        }
        SdkError::TimeoutError(_) => ProviderError::transient(format!("{context} timed out")),
        SdkError::DispatchFailure(_) => {
            ProviderError::transient(format!("{context} could not reach AWS"))
        }
        SdkError::ResponseError(_) => {
            ProviderError::transient(format!("{context}: the response could not be read"))
        }
        SdkError::ConstructionFailure(_) => {
            ProviderError::permanent(format!("{context}: the request could not be built"))
        }
        _ => ProviderError::transient(format!("{context} failed")),
    };
    classified.with_source(err)
}

fn retry_after(response: &HttpResponse) -> Option<Duration> {
    let value = response.headers().get("retry-after")?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
