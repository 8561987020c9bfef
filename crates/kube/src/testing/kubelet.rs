//! A fake kubelet: the test control plane runs no kubelet, so Pods stay `Pending`; this marks
//! them running and ready through the status subresource, as a kubelet would.

use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The field manager of the fake kubelet's status writes.
const MANAGER: &str = "cutover-test-kubelet";

/// Marks every Pod matching a label selector in one namespace ready, as soon as it appears,
/// until dropped. It lists and then watches the Pods (a real watch), so it keeps up with
/// ReplicaSets scaling up.
#[derive(Debug)]
pub struct FakeKubelet {
    task: JoinHandle<()>,
}

impl FakeKubelet {
    /// Starts marking the Pods in `namespace` that match `selector` (a label selector; empty
    /// for every Pod) ready, on the current tokio runtime. `client` needs `list`, `watch` and
    /// `patch` on `pods` and `pods/status`: use an admin client.
    pub fn start(client: kube::Client, namespace: &str, selector: &str) -> Self {
        let api = Api::<Pod>::namespaced(client, namespace);
        let selector = selector.to_owned();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = run(&api, &selector).await {
                    eprintln!("fake kubelet: {e}; listing again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        FakeKubelet { task }
    }

    /// Runs until the process ends (for a command-line tool).
    pub async fn run_forever(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lists the Pods, marks those not ready, then does the same for every Pod the watch reports,
/// until the watch ends.
async fn run(api: &Api<Pod>, selector: &str) -> Result<(), kube::Error> {
    let list = api.list(&ListParams::default().labels(selector)).await?;
    for pod in &list.items {
        mark_if_needed(api, pod).await?;
    }
    let version = list.metadata.resource_version.unwrap_or_default();
    let params = WatchParams::default().labels(selector).timeout(290);
    let mut events = api.watch(&params, &version).await?.boxed();
    while let Some(event) = events.next().await {
        match event? {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) => mark_if_needed(api, &pod).await?,
            WatchEvent::Error(status) => return Err(kube::Error::Api(status)),
            WatchEvent::Deleted(_) | WatchEvent::Bookmark(_) => {}
        }
    }
    Ok(())
}

/// Marks `pod` ready unless it already is, is being deleted, or is gone.
async fn mark_if_needed(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    if pod.metadata.deletion_timestamp.is_some() || is_ready(pod) {
        return Ok(());
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match mark_ready(api, name).await {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Sets the status of the Pod `name` to what a kubelet reports for a pod whose containers all
/// started and passed their readiness probes: phase `Running`, conditions `PodScheduled`,
/// `Initialized`, `ContainersReady` and `Ready` true, each container running and ready.
pub async fn mark_ready(api: &Api<Pod>, name: &str) -> Result<(), kube::Error> {
    let containers = container_statuses(api, name, |_| {
        json!({ "ready": true, "started": true, "restartCount": 0, "state": { "running": {} } })
    })
    .await?;
    let conditions = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
        .map(|kind| json!({ "type": kind, "status": "True" }));
    let status = json!({
        "phase": "Running",
        "conditions": conditions,
        "containerStatuses": containers,
    });
    set_status(api, name, status).await
}

/// Sets the status of the Pod `name` to that of a pod whose containers all wait with
/// `reason` (`CrashLoopBackOff`, `ImagePullBackOff`) after `restarts` restarts: phase
/// `Running` (`Pending` for image pulls), `Ready` false.
pub async fn mark_waiting(
    api: &Api<Pod>,
    name: &str,
    reason: &str,
    restarts: u32,
) -> Result<(), kube::Error> {
    let containers = container_statuses(api, name, |_| {
        json!({
            "ready": false, "started": false, "restartCount": restarts,
            "state": { "waiting": { "reason": reason, "message": format!("fake kubelet: {reason}") } },
        })
    })
    .await?;
    let phase = if reason.contains("Image") {
        "Pending"
    } else {
        "Running"
    };
    let status = json!({
        "phase": phase,
        "conditions": [
            { "type": "PodScheduled", "status": "True" },
            { "type": "Ready", "status": "False", "reason": "ContainersNotReady" },
        ],
        "containerStatuses": containers,
    });
    set_status(api, name, status).await
}

/// One status per container of the Pod `name`: `state(container)` with its name and image.
async fn container_statuses(
    api: &Api<Pod>,
    name: &str,
    state: impl Fn(&str) -> Value,
) -> Result<Vec<Value>, kube::Error> {
    let pod = api.get(name).await?;
    Ok(pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            let mut status = state(&c.name);
            status["name"] = json!(c.name);
            status["image"] = json!(c.image.clone().unwrap_or_default());
            status["imageID"] = json!("");
            status
        })
        .collect())
}

async fn set_status(api: &Api<Pod>, name: &str, status: Value) -> Result<(), kube::Error> {
    let params = PatchParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(name, &params, &Patch::Merge(json!({ "status": status })))
        .await
        .map(drop)
}
