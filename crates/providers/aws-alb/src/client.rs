//! Building the ELBv2 client: the standard AWS credential chain, and the SDK's own retries off.
//!
//! cutover's engine retries failed provider calls with backoff, records each attempt in the
//! `provider{name,op,attempt}` span, and honours `retry_after`. If the SDK retried as well, one
//! engine attempt would hide up to three SDK attempts, so every client built here has
//! [`RetryConfig::disabled`].

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::config::retry::RetryConfig;
use aws_sdk_elasticloadbalancingv2::config::timeout::TimeoutConfig;
use aws_sdk_elasticloadbalancingv2::config::{self, BehaviorVersion};

/// How long to wait for a connection to the ELBv2 endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take, end to end. A timeout is a transient error the engine retries.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Applies cutover's client settings to an ELBv2 config builder: retries off and the
/// timeouts above. Use it when building a client by hand (tests, custom endpoints).
///
/// ```
/// use aws_sdk_elasticloadbalancingv2::config::{BehaviorVersion, Builder, Region};
/// let config = cutover_aws_alb::configure(
///     Builder::new().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")),
/// )
/// .build();
/// assert_eq!(config.retry_config().map(|r| r.max_attempts()), Some(1));
/// ```
pub fn configure(builder: config::Builder) -> config::Builder {
    builder
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(CALL_TIMEOUT)
                .build(),
        )
}

/// An ELBv2 client from a shared AWS config, with [`configure`] applied.
pub fn client_from_config(sdk_config: &aws_config::SdkConfig) -> Client {
    Client::from_conf(configure(config::Builder::from(sdk_config)).build())
}

/// An ELBv2 client from the environment: the standard AWS credential and region chain
/// (environment variables, profiles, SSO, web identity, ECS and IMDS), and `AWS_ENDPOINT_URL`
/// when set (how the tests point it at moto). Nothing about the credentials is logged.
pub async fn client_from_env() -> Client {
    let sdk_config = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    client_from_config(&sdk_config)
}
