//! [`RollingUpdate`]: a rolling update of a single Deployment, followed like
//! `kubectl rollout status`, rolled back to the previous template on failure.

use std::fmt;
use std::time::Duration;

use cutover_core::ProviderError;
use cutover_kube::{Target, classify, is_conflict};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::time::Instant;

use crate::deployment::{DEPLOYMENTS, caught_up, get_deployment};

/// The field manager of `spec.strategy` and `spec.template`.
pub const ROLLOUT_FIELD_MANAGER: &str = "cutover-rollout";

/// How many times a write that met a concurrent change of the Deployment is tried again, each
/// time from a new read.
const CONFLICT_RETRIES: u32 = 4;

/// Where a Deployment's rollout stands, by the rules of `kubectl rollout status`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RolloutStatus {
    /// Every replica runs the new template and is available; no old replica is left.
    Complete,
    /// Still rolling; the message says what it waits for, as kubectl prints it.
    Waiting(String),
    /// The Deployment controller gave up (`ProgressDeadlineExceeded`).
    Failed(String),
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutStatus::Complete => f.write_str("successfully rolled out"),
            RolloutStatus::Waiting(m) => write!(f, "waiting: {m}"),
            RolloutStatus::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

/// Why a rolling update did not complete.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The update failed and the previous template was restored; the Deployment is rolling
    /// back (or has rolled back) to it.
    #[error(
        "rollout of deployment `{deployment}` failed ({reason}); rolled back to the previous template"
    )]
    RolledBack {
        /// The Deployment.
        deployment: String,
        /// Why: the progress deadline passed, or the controller reported failure.
        reason: String,
    },
    /// A request failed; the Deployment may be half updated.
    #[error("rolling update of deployment `{deployment}` failed")]
    Provider {
        /// The Deployment.
        deployment: String,
        /// The error.
        #[source]
        source: ProviderError,
    },
}

/// Rolls a single Deployment to a new pod template with `maxSurge` / `maxUnavailable`, follows
/// the rollout the way `kubectl rollout status` does, and restores the previous template if no
/// progress is made for `progress_deadline` (or the controller reports
/// `ProgressDeadlineExceeded`).
///
/// The template of a Deployment is set by whoever created it (kubectl, Helm, Argo CD), so a
/// server-side apply of a new template would always conflict with that manager. Like `kubectl
/// set image`, the update instead reads the Deployment and replaces `spec.template` and
/// `spec.strategy` with a JSON patch that carries the `resourceVersion` it read (field manager
/// `cutover-rollout`); a concurrent change (an autoscaler scaling it) is a conflict, and the
/// write is tried again from a new read, up to 4 times. The rollback replaces the template with
/// the one read before the update. Progress is polled every `poll_interval` on tokio time.
///
/// ```no_run
/// # async fn f(client: kube::Client, template: k8s_openapi::api::core::v1::PodTemplateSpec)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
/// use cutover_kubernetes::RollingUpdate;
/// RollingUpdate::new(client, "prod", "web")
///     .progress_deadline(Duration::from_secs(600))
///     .run(template, IntOrString::String("25%".into()), IntOrString::Int(0))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RollingUpdate {
    api: Api<Deployment>,
    namespace: String,
    deployment: String,
    progress_deadline: Duration,
    poll_interval: Duration,
}

impl RollingUpdate {
    /// A driver for the Deployment `deployment` in `namespace`: progress deadline 10 minutes,
    /// polled every 2 seconds.
    pub fn new(client: Client, namespace: &str, deployment: &str) -> Self {
        RollingUpdate {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            deployment: deployment.to_owned(),
            progress_deadline: Duration::from_mins(10),
            poll_interval: Duration::from_secs(2),
        }
    }

    /// How long the rollout may go without progress before it is rolled back.
    pub fn progress_deadline(mut self, deadline: Duration) -> Self {
        self.progress_deadline = deadline;
        self
    }

    /// How often the status is read.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    fn provider(&self, source: ProviderError) -> UpdateError {
        UpdateError::Provider {
            deployment: self.deployment.clone(),
            source,
        }
    }

    /// Where the rollout stands now.
    pub async fn status(&self) -> Result<RolloutStatus, ProviderError> {
        let deployment = get_deployment(&self.api, &self.namespace, &self.deployment).await?;
        Ok(rollout_status(&deployment))
    }

    /// Rolls the Deployment to `template` and follows it. On success returns once the rollout
    /// is complete; on failure restores the previous template, follows that rollback (within
    /// another progress deadline) and returns [`UpdateError::RolledBack`].
    pub async fn run(
        &self,
        template: PodTemplateSpec,
        max_surge: IntOrString,
        max_unavailable: IntOrString,
    ) -> Result<(), UpdateError> {
        let current = get_deployment(&self.api, &self.namespace, &self.deployment)
            .await
            .map_err(|e| self.provider(e))?;
        let previous = current.spec.map(|s| s.template).unwrap_or_default();
        let strategy = json!({
            "type": "RollingUpdate",
            "rollingUpdate": { "maxSurge": max_surge, "maxUnavailable": max_unavailable },
        });
        self.write(&template, &strategy).await?;
        let reason = match self.follow().await? {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        tracing::warn!(deployment = %self.deployment, %reason, "rolling back to the previous template");
        self.write(&previous, &strategy).await?;
        // Follow the rollback too, so the caller learns whether it is back where it was.
        let reason = match self.follow().await? {
            Ok(()) => reason,
            Err(again) => format!("{reason}; the rollback has not completed either: {again}"),
        };
        Err(UpdateError::RolledBack {
            deployment: self.deployment.clone(),
            reason,
        })
    }

    /// Replaces `spec.template` and `spec.strategy` under the `resourceVersion` just read,
    /// reading again after a conflict.
    async fn write(&self, template: &PodTemplateSpec, strategy: &Value) -> Result<(), UpdateError> {
        let target = Target::new("patch", DEPLOYMENTS, &self.namespace, &self.deployment);
        let params = PatchParams {
            field_manager: Some(ROLLOUT_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let mut conflicts = 0;
        loop {
            let current = get_deployment(&self.api, &self.namespace, &self.deployment)
                .await
                .map_err(|e| self.provider(e))?;
            let operations = json!([
                { "op": "add", "path": "/metadata/resourceVersion", "value": current.metadata.resource_version },
                { "op": "add", "path": "/spec/template", "value": template },
                { "op": "add", "path": "/spec/strategy", "value": strategy },
            ]);
            let patch: json_patch::Patch = serde_json::from_value(operations)
                .map_err(|e| self.provider(ProviderError::permanent(format!("{target}: {e}"))))?;
            match self
                .api
                .patch(&self.deployment, &params, &Patch::<()>::Json(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) && conflicts < CONFLICT_RETRIES => conflicts += 1,
                Err(e) => return Err(self.provider(classify(e, &target))),
            }
        }
    }

    /// Polls until complete (`Ok(Ok)`), failed or out of progress (`Ok(Err(reason))`).
    async fn follow(&self) -> Result<Result<(), String>, UpdateError> {
        let mut last = None;
        let mut progressed_at = Instant::now();
        loop {
            let deployment = get_deployment(&self.api, &self.namespace, &self.deployment)
                .await
                .map_err(|e| self.provider(e))?;
            match rollout_status(&deployment) {
                RolloutStatus::Complete => return Ok(Ok(())),
                RolloutStatus::Failed(reason) => return Ok(Err(reason)),
                RolloutStatus::Waiting(message) => {
                    let counts = progress_counts(&deployment);
                    if last != Some(counts) {
                        last = Some(counts);
                        progressed_at = Instant::now();
                    } else if progressed_at.elapsed() >= self.progress_deadline {
                        return Ok(Err(format!(
                            "no progress for {:?}: {message}",
                            self.progress_deadline
                        )));
                    }
                    tracing::debug!(deployment = %self.deployment, %message, "rolling");
                }
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }
}

/// The counts whose change is progress: observed generation, updated, ready, available, total.
fn progress_counts(d: &Deployment) -> [i64; 5] {
    let s = d.status.clone().unwrap_or_default();
    [
        s.observed_generation.unwrap_or(0),
        i64::from(s.updated_replicas.unwrap_or(0)),
        i64::from(s.ready_replicas.unwrap_or(0)),
        i64::from(s.available_replicas.unwrap_or(0)),
        i64::from(s.replicas.unwrap_or(0)),
    ]
}

/// `kubectl rollout status` for a Deployment.
pub(crate) fn rollout_status(d: &Deployment) -> RolloutStatus {
    if !caught_up(d) {
        return RolloutStatus::Waiting(
            "waiting for deployment spec update to be observed".to_owned(),
        );
    }
    let status = d.status.clone().unwrap_or_default();
    let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline_exceeded {
        return RolloutStatus::Failed(format!(
            "deployment {:?} exceeded its progress deadline",
            d.metadata.name.as_deref().unwrap_or("")
        ));
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        return RolloutStatus::Waiting(format!(
            "{updated} out of {desired} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return RolloutStatus::Waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutStatus::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    RolloutStatus::Complete
}
