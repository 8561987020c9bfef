//! Built-in pre-flight checks for cutover [checklists](cutover_core::checklist), each tested
//! against the real thing it checks.
//!
//! | kind | checks |
//! |---|---|
//! | `http` | an HTTP(S) endpoint answers with the expected status, body and within a latency budget |
//! | `tcp` | a TCP address accepts connections |
//! | `tls` | a TLS server's certificate is trusted, valid for the host, and not close to expiry |
//! | `disk` | a path's file system has enough free space |
//! | `env` | environment variables are set (only names are ever reported) |
//! | `freeze` | now is outside every freeze window (calendar dates in a time zone) |
//! | `business_hours` | now is within business hours (days and hours in a time zone) |
//! | `webhook` | a Flagger-compatible webhook answers 2xx to a signed JSON call |
//! | `approval` | someone approved the checklist's gate through the rollout's store |
//! | `attestation` | a person confirmed a manual item (who, when) in the checklist itself |
//! | `prometheus_alerts` | no alert matching some labels is firing |
//! | `prometheus_query` | a PromQL query has data, each series within bounds ("monitoring active") |
//! | `postgres_connections` | PostgreSQL has enough free connections |
//! | `postgres_activity` | no long transaction or lock waiter on the tables a migration touches |
//! | `postgres_replication_lag` | replicas are streaming and within a lag limit (time and/or WAL bytes) |
//! | `postgres_migrations` | no cutover-postgres expand/contract migration is half-done or waiting for its contract |
//! | `burn_rate` | the SLO error-budget burn rate is not above a limit over both a short and a long window |
//! | `kubernetes_pdb` | a PodDisruptionBudget selects the Deployment's pods (feature `kubernetes`) |
//! | `kubernetes_resources` | every container of the Deployment sets CPU and memory requests and limits (feature `kubernetes`) |
//! | `kubernetes_hpa` | the Deployment's HorizontalPodAutoscaler is not at (or near) its maxReplicas (feature `kubernetes`) |
//! | `alb_healthy_targets` | an ALB target group (or a listener rule's stable group) has at least N healthy targets (feature `aws-alb`) |
//!
//! Fix kinds: `http` (an HTTP call, like `POST /admin/warm-cache`).
//!
//! [`registry`] knows them all; [`load_yaml`] reads a checklist with them:
//!
//! ```
//! let checklist = cutover_preflight::load_yaml(r#"
//! name: preflight
//! checks:
//!   - { id: api, category: infrastructure, http: { url: "http://127.0.0.1:8080/healthz" } }
//!   - { id: secrets, category: security, env: { names: [DATABASE_URL] } }
//! "#)?;
//! assert_eq!(checklist.items().len(), 2);
//! # Ok::<(), cutover_core::checklist::ChecklistError>(())
//! ```
//!
//! Secrets stay out of results, logs and records: URLs are shown without their user info and
//! query values, HMAC keys are read from an environment variable named in the checklist, and
//! environment checks report names only.
#![forbid(unsafe_code)]

#[cfg(feature = "aws-alb")]
mod alb;
mod approval;
mod calendar;
mod disk;
mod env;
mod http;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod postgres;
mod prometheus;
mod redact;
mod tcp;
mod tls;
mod webhook;

use cutover_core::Checklist;
use cutover_core::checklist::{ChecklistError, Registry};

#[cfg(feature = "aws-alb")]
pub use self::alb::AlbTargetsCheck;
pub use self::approval::{ApprovalCheck, AttestationCheck};
pub use self::calendar::{BusinessHoursCheck, FreezeCheck, FreezeWindow};
pub use self::disk::DiskCheck;
pub use self::env::EnvCheck;
pub use self::http::{HttpCheck, HttpFix};
#[cfg(feature = "kubernetes")]
pub use self::kubernetes::{HpaCheck, PdbCheck, ResourcesCheck};
pub use self::postgres::{ActivityCheck, ConnectionsCheck, MigrationsCheck, ReplicationCheck};
pub use self::prometheus::{AlertsCheck, BurnRateCheck, QueryCheck};
pub use self::redact::SecretUrl;
pub use self::tcp::TcpCheck;
pub use self::tls::TlsCheck;
pub use self::webhook::{SIGNATURE_HEADER, WebhookCheck};

/// Every built-in check and fix kind.
pub fn registry() -> Registry {
    let registry = Registry::new();
    // Kubernetes and AWS ALB (features `kubernetes`, `aws-alb`; without them, the kinds are
    // known but refused with the feature to enable).
    #[cfg(feature = "kubernetes")]
    let registry = registry
        .check("kubernetes_pdb", PdbCheck::from_params)
        .check("kubernetes_resources", ResourcesCheck::from_params)
        .check("kubernetes_hpa", HpaCheck::from_params);
    #[cfg(not(feature = "kubernetes"))]
    let registry = ["kubernetes_pdb", "kubernetes_resources", "kubernetes_hpa"]
        .into_iter()
        .fold(registry, |r, kind| r.check(kind, disabled("kubernetes")));
    #[cfg(feature = "aws-alb")]
    let registry = registry.check("alb_healthy_targets", AlbTargetsCheck::from_params);
    #[cfg(not(feature = "aws-alb"))]
    let registry = registry.check("alb_healthy_targets", disabled("aws-alb"));
    registry
        .check("http", HttpCheck::from_params)
        .check("tcp", TcpCheck::from_params)
        .check("tls", TlsCheck::from_params)
        .check("disk", DiskCheck::from_params)
        .check("env", EnvCheck::from_params)
        .check("freeze", FreezeCheck::from_params)
        .check("business_hours", BusinessHoursCheck::from_params)
        .check("webhook", WebhookCheck::from_params)
        .check("approval", ApprovalCheck::from_params)
        .check("attestation", AttestationCheck::from_params)
        .check("prometheus_alerts", AlertsCheck::from_params)
        .check("prometheus_query", QueryCheck::from_params)
        .check("burn_rate", BurnRateCheck::from_params)
        .check("postgres_connections", ConnectionsCheck::from_params)
        .check("postgres_activity", ActivityCheck::from_params)
        .check("postgres_replication_lag", ReplicationCheck::from_params)
        .check("postgres_migrations", MigrationsCheck::from_params)
        .fix("http", HttpFix::from_params)
}

/// A check kind this build leaves out: refused when a checklist uses it, naming the feature.
#[cfg(not(all(feature = "kubernetes", feature = "aws-alb")))]
fn disabled(
    feature: &'static str,
) -> impl Fn(serde_json::Value) -> Result<Disabled, (String, String)> + Send + Sync + 'static {
    move |_| {
        Err((
            String::new(),
            format!(
                "this build of cutover-preflight has no `{feature}` checks: enable its feature `{feature}` (in cutover: `{feature}` with `preflight`)"
            ),
        ))
    }
}

/// The check of a kind this build leaves out; never built.
#[cfg(not(all(feature = "kubernetes", feature = "aws-alb")))]
#[derive(Debug)]
enum Disabled {}

#[cfg(not(all(feature = "kubernetes", feature = "aws-alb")))]
#[async_trait::async_trait]
impl cutover_core::checklist::Check for Disabled {
    async fn run(
        &self,
        _ctx: &cutover_core::checklist::CheckContext,
    ) -> cutover_core::checklist::CheckResult {
        match *self {}
    }
}

/// Reads a checklist in YAML with the built-in kinds.
pub fn load_yaml(text: &str) -> Result<Checklist, ChecklistError> {
    registry().load_yaml(text)
}

/// The seed's 28-item pre-flight checklist (12 infrastructure, 8 security, 8 configuration), as
/// YAML to copy and edit: each item bound to a built-in check where one exists, otherwise a
/// manual attestation.
pub const TEMPLATE: &str = include_str!("../templates/seed-28.yaml");

/// An HTTP client without a timeout of its own (the checklist cuts checks off), with rustls.
fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("cutover-preflight/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Reads an optional duration written like `500ms`, `30s`, `5m`.
fn duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    use serde::Deserialize as _;
    Option::<String>::deserialize(d)?
        .map(|text| {
            humantime::parse_duration(text.trim()).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration `{text}`: {e} (write it like 500ms, 30s or 5m)"
                ))
            })
        })
        .transpose()
}
