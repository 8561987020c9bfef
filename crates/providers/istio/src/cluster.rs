//! Finding a real cluster with Istio, for examples and opt-in tests: a client from the usual
//! configuration (`KUBECONFIG`, `~/.kube/config`, or the in-cluster service account), checked
//! to answer and to serve `networking.istio.io/v1` VirtualServices.

use std::time::Duration;

use kube::api::{Api, ListParams};

use crate::VirtualService;

/// How long each check may take before the cluster counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for the configured cluster, or what is missing, in a sentence meant for a person.
///
/// Returns `Err` without touching the network when no configuration exists at all: no
/// `KUBECONFIG`, no `~/.kube/config`, not running in a pod.
pub async fn cluster_with_istio() -> Result<kube::Client, String> {
    let configured = std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::home_dir().is_some_and(|home| home.join(".kube/config").is_file());
    if !configured {
        return Err(
            "no cluster configured: set KUBECONFIG (or create ~/.kube/config) for a \
                    cluster with Istio installed"
                .to_owned(),
        );
    }
    let config = kube::Config::infer()
        .await
        .map_err(|e| format!("the Kubernetes configuration could not be loaded: {e}"))?;
    let client = kube::Client::try_from(config)
        .map_err(|e| format!("a Kubernetes client could not be built: {e}"))?;
    let version = tokio::time::timeout(CHECK_TIMEOUT, client.apiserver_version()).await;
    match version {
        Err(_) => return Err("the cluster did not answer within 10 s".to_owned()),
        Ok(Err(e)) => return Err(format!("the cluster could not be reached: {e}")),
        Ok(Ok(_)) => {}
    }
    let api = Api::<VirtualService>::all(client.clone());
    let params = ListParams::default().limit(1);
    match tokio::time::timeout(CHECK_TIMEOUT, api.list(&params)).await {
        Err(_) => Err("the cluster did not answer within 10 s".to_owned()),
        Ok(Err(e)) if cutover_kube::is_not_found(&e) => Err(
            "the cluster does not serve networking.istio.io/v1 VirtualServices: install Istio \
             1.22 or later"
                .to_owned(),
        ),
        Ok(Err(e)) => Err(format!("VirtualServices could not be listed: {e}")),
        Ok(Ok(_)) => Ok(client),
    }
}
