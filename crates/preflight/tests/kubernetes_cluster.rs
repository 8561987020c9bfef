//! The Kubernetes checks against a real API server: the control plane of
//! `shared/tools/kube/start` (Kubernetes 1.24: etcd, kube-apiserver, kube-controller-manager;
//! RBAC enforced; no kubelet), started once for this test binary by `cutover_kube::testing`.
//! Each test runs `as_admin` and `as_restricted_user`, a user bound to exactly the Role the
//! module docs of `src/kubernetes.rs` give, so the documented Role is shown to be enough.
//! `#[ignore = "needs etcd: scripts/test-deps"]`; CI runs them with `--include-ignored`.
#![cfg(feature = "kubernetes")]

mod common;

use common::run;
use cutover_core::checklist::CheckStatus;
use cutover_kube::testing::{Caller, ControlPlane, apply_yaml, role_from_docs};
use cutover_preflight::{HpaCheck, PdbCheck, ResourcesCheck};
use serde_json::Value;

fn role() -> Value {
    role_from_docs(include_str!("../src/kubernetes.rs"))
}

/// Deployment `web` (pods `app=web`): container `web` sets everything; `sidecar` sets only a
/// memory limit, which the API server copies into its pods' memory request (not into the
/// Deployment's template: the check reads the template and counts that request as set).
const WEB: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web, tier: api } }
    spec:
      containers:
        - name: web
          image: web:1
          resources:
            requests: { cpu: 100m, memory: 128Mi }
            limits: { cpu: 500m, memory: 256Mi }
        - name: sidecar
          image: sidecar:1
          resources:
            limits: { memory: 64Mi }
";

cutover_kube::as_admin_and_restricted_user!(role; checks_read_a_real_cluster);

async fn checks_read_a_real_cluster(caller: Caller) {
    let plane = ControlPlane::shared().await;
    let (ns, client) = plane.namespace_for("preflight-kube", &caller).await;
    let name = ns.name().to_owned();

    // Nothing yet: each check says the Deployment is missing.
    let missing = run(&PdbCheck::new(&name, "web").client(client.clone())).await;
    assert_eq!(missing.status, CheckStatus::Error, "{missing:?}");
    assert_eq!(missing.message, format!("Deployment {name}/web not found"));

    apply_yaml(&ns.admin(), &name, WEB).await;

    let pdb = PdbCheck::new(&name, "web").client(client.clone());
    let none = run(&pdb).await;
    assert_eq!(none.status, CheckStatus::Fail, "{none:?}");
    // The suggested budget, applied as is, makes the check pass.
    let mut suggested = none.evidence["suggested_pdb"].clone();
    suggested["metadata"]["namespace"] = name.clone().into();
    apply_yaml(&ns.admin(), &name, &suggested.to_string()).await;
    let covered = run(&pdb).await;
    assert_eq!(covered.status, CheckStatus::Pass, "{covered:?}");
    assert_eq!(covered.evidence["max_unavailable"], 1);

    let resources = run(&ResourcesCheck::new(&name, "web").client(client.clone())).await;
    assert_eq!(resources.status, CheckStatus::Fail, "{resources:?}");
    assert_eq!(
        resources.evidence["missing"],
        serde_json::json!({ "sidecar": ["requests.cpu", "limits.cpu"] }),
        "a memory limit gives the pods a memory request"
    );

    let hpa = run(&HpaCheck::new(&name, "web").client(client.clone())).await;
    assert_eq!(hpa.status, CheckStatus::Fail, "{hpa:?}");
    assert!(
        hpa.message
            .starts_with("no HorizontalPodAutoscaler targets"),
        "{hpa:?}"
    );

    // Without any Role, the error names the RBAC verb and resource to grant.
    let forbidden = run(&PdbCheck::new(&name, "web").client(ns.unprivileged())).await;
    if matches!(caller, Caller::Admin) {
        assert_eq!(forbidden.status, CheckStatus::Error, "{forbidden:?}");
        assert!(
            forbidden
                .message
                .contains("grant the RBAC verb `get` on `deployments.apps`"),
            "{}",
            forbidden.message
        );
    }
}
