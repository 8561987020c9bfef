//! CloudEvents 1.0 over HTTP (structured mode), carrying CDEvents for what CDEvents names.

use std::time::Duration;

use async_trait::async_trait;
use cutover_core::Timestamp;
use serde_json::{Value, json};

use super::{DeliveryError, Poster, Sink, encode};
use crate::notice::{Notice, NoticeKind};
use crate::secret::ConfigError;

/// The CDEvents specification version the events follow.
pub const CDEVENTS_SPEC_VERSION: &str = "0.5.1";

/// The CDEvents type a notice kind is sent as, if CDEvents names one: `promoted` is
/// `dev.cdevents.service.deployed.0.3.0`; `rolled_back`, `aborted` and `failed` are
/// `dev.cdevents.service.rolledback.0.3.0` (traffic went back to the stable revision), and so
/// is a pipeline's `stage_rolled_back`; `rolling_back` is `dev.cdevents.incident.detected.0.3.0`.
pub fn cdevent_type(kind: NoticeKind) -> Option<&'static str> {
    Some(match kind {
        NoticeKind::Promoted => "dev.cdevents.service.deployed.0.3.0",
        NoticeKind::RolledBack
        | NoticeKind::Aborted
        | NoticeKind::Failed
        | NoticeKind::StageRolledBack => "dev.cdevents.service.rolledback.0.3.0",
        NoticeKind::RollingBack => "dev.cdevents.incident.detected.0.3.0",
        _ => return None,
    })
}

/// Posts each notice as a CloudEvents 1.0 event in structured mode
/// (`Content-Type: application/cloudevents+json`).
///
/// Notices CDEvents names (see [`cdevent_type`]) carry a CDEvent (spec 0.5.1) as `data`, its
/// context `id`, `source` and `type` copied to the CloudEvent as the CDEvents binding says.
/// Other notices go as `dev.cutover.rollout.<kind>` (`dev.cutover.pipeline.<kind>` for a
/// pipeline's) with the [`Notice`] as `data`. Event ids
/// are the notice ids, the same on every attempt.
#[derive(Debug, Clone)]
pub struct CloudEvents {
    poster: Poster,
    source: String,
}

impl CloudEvents {
    /// A sink posting to `url`; events say they come from `source` (a URI reference such as
    /// `/cutover/prod-eu`).
    pub fn new(url: &str, source: impl Into<String>) -> Result<Self, ConfigError> {
        Ok(CloudEvents {
            poster: Poster::new(url, "CloudEvents URL")?,
            source: source.into(),
        })
    }

    /// How long one attempt may take (10 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.poster = self.poster.with_timeout(timeout)?;
        Ok(self)
    }

    /// The CloudEvent sent for a notice.
    pub fn event(&self, notice: &Notice) -> Value {
        let service = &notice.rollout.service;
        let Some(kind) = cdevent_type(notice.kind) else {
            return json!({
                "specversion": "1.0",
                "id": notice.id,
                "source": self.source,
                "type": match notice.pipeline {
                    Some(_) => format!("dev.cutover.pipeline.{}", notice.kind),
                    None => format!("dev.cutover.rollout.{}", notice.kind),
                },
                "subject": service,
                "time": notice.at,
                "datacontenttype": "application/json",
                "data": notice,
            });
        };
        let environment = json!({
            "id": notice.rollout.environment.as_deref().unwrap_or("default"),
        });
        let artifact = notice.rollout.artifact.clone().unwrap_or_else(|| {
            format!(
                "pkg:generic/{service}@{}",
                notice.rollout.revisions.candidate
            )
        });
        let (subject_id, content) = if notice.kind == NoticeKind::RollingBack {
            let description = notice
                .reason
                .clone()
                .unwrap_or_else(|| notice.summary.clone());
            (
                notice.id.clone(),
                json!({
                    "description": description,
                    "environment": environment,
                    "service": { "id": service },
                    "artifactId": artifact,
                }),
            )
        } else {
            (
                service.clone(),
                json!({ "environment": environment, "artifactId": artifact }),
            )
        };
        let cdevent = json!({
            "context": {
                "specversion": CDEVENTS_SPEC_VERSION,
                "id": notice.id,
                "source": self.source,
                "type": kind,
                "timestamp": notice.at,
            },
            "subject": {
                "id": subject_id,
                "source": self.source,
                "content": content,
            },
        });
        json!({
            "specversion": "1.0",
            "id": notice.id,
            "source": self.source,
            "type": kind,
            "subject": subject_id,
            "time": notice.at,
            "datacontenttype": "application/json",
            "data": cdevent,
        })
    }
}

#[async_trait]
impl Sink for CloudEvents {
    fn kind(&self) -> &'static str {
        "cloudevents"
    }

    async fn deliver(&self, notice: &Notice, _now: Timestamp) -> Result<(), DeliveryError> {
        let body = encode(&self.event(notice))?;
        self.poster
            .post("application/cloudevents+json", &[], body)
            .await
    }
}
