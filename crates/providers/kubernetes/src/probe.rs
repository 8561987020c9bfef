//! [`PodProbe`]: readiness of a revision's pods by label selector.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cutover_core::{Health, HealthProbe, ProviderError, RevisionId};
use cutover_kube::{Target, classify};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

/// Container waiting reasons that do not go away by waiting.
const FATAL_REASONS: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Health of a revision from its pods, found by a label selector per revision.
///
/// - `Ready` when there is at least one pod and every pod (not being deleted) is `Ready`;
/// - `Failed` naming the pod, container and reason when a container waits in
///   `CrashLoopBackOff`, `ImagePullBackOff`, `ErrImagePull`, `InvalidImageName` or
///   `CreateContainer(Config)Error`, has restarted at least `max_restarts` times (5 unless
///   changed), or the pod's phase is `Failed`;
/// - `Progressing` with "ready/total pods ready" otherwise.
///
/// ```no_run
/// # fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_kubernetes::PodProbe;
/// let probe = PodProbe::new(client, "prod")
///     .revision("v1".parse()?, "app=web,version=v1")
///     .revision("v2".parse()?, "app=web,version=v2");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PodProbe {
    api: Api<Pod>,
    namespace: String,
    selectors: BTreeMap<RevisionId, String>,
    max_restarts: i32,
    name: String,
}

impl PodProbe {
    /// A probe of pods in `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        PodProbe {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            selectors: BTreeMap::new(),
            max_restarts: 5,
            name: format!("kubernetes/pods/{namespace}"),
        }
    }

    /// The pods of `revision` are those matching the label selector `selector`
    /// (`app=web,version=v2`).
    pub fn revision(mut self, revision: RevisionId, selector: impl Into<String>) -> Self {
        self.selectors.insert(revision, selector.into());
        self
    }

    /// A container that restarted this many times fails the revision (default 5).
    pub fn max_restarts(mut self, restarts: u32) -> Self {
        self.max_restarts = i32::try_from(restarts).unwrap_or(i32::MAX);
        self
    }
}

/// Why a pod has failed for good, if it has.
fn failure(pod: &Pod, max_restarts: i32) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        let reason = status.reason.as_deref().unwrap_or("phase Failed");
        return Some(format!("pod {name} failed: {reason}"));
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in containers {
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        if let Some(reason) = waiting.and_then(|w| w.reason.as_deref())
            && FATAL_REASONS.contains(&reason)
        {
            let message = waiting
                .and_then(|w| w.message.as_deref())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Some(format!(
                "pod {name} container {} in {reason}{message}",
                c.name
            ));
        }
        if c.restart_count >= max_restarts {
            return Some(format!(
                "pod {name} container {} restarted {} times",
                c.name, c.restart_count
            ));
        }
    }
    None
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[async_trait]
impl HealthProbe for PodProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, revision: &RevisionId) -> Result<Health, ProviderError> {
        let selector = self.selectors.get(revision).ok_or_else(|| {
            ProviderError::permanent(format!(
                "{}: no pod selector configured for revision `{revision}`",
                self.name
            ))
        })?;
        let target = Target::new("list", "pods", &self.namespace, "");
        let pods = self
            .api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| classify(e, &target))?;
        let live: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if let Some(reason) = live.iter().find_map(|p| failure(p, self.max_restarts)) {
            return Ok(Health::failed(reason));
        }
        let ready = live.iter().filter(|p| is_ready(p)).count();
        if live.is_empty() {
            return Ok(Health::progressing(format!("no pods match `{selector}`")));
        }
        if ready == live.len() {
            Ok(Health::Ready)
        } else {
            Ok(Health::progressing(format!(
                "{ready}/{} pods ready",
                live.len()
            )))
        }
    }
}
