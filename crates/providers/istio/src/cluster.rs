//! Finding a real cluster with Istio, for examples and opt-in tests: a client from the usual
//! configuration (`KUBECONFIG`, `~/.kube/config`, or the in-cluster service account), checked
//! to answer and to serve `networking.istio.io/v1` VirtualServices and DestinationRules.
//!
//! The check asks the API server's discovery endpoint, which every authenticated user may
//! read: it needs no RBAC beyond the namespaced Role of the crate docs (listing VirtualServices
//! in all namespaces would need a ClusterRole).

use std::time::Duration;

use thiserror::Error;

use crate::{GROUP, VERSION};

/// How long each check may take before the cluster counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The resources cutover uses, as discovery lists them.
const RESOURCES: [&str; 2] = ["virtualservices", "destinationrules"];

/// Why no usable cluster with Istio was found.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Nothing is configured: no `KUBECONFIG`, no `~/.kube/config`, not running in a pod.
    #[error(
        "no cluster configured: set KUBECONFIG (or create ~/.kube/config) for a cluster with \
         Istio installed"
    )]
    NotConfigured,
    /// The configuration exists but could not be loaded.
    #[error("the Kubernetes configuration could not be loaded")]
    Config(#[source] kube::config::InferConfigError),
    /// No client could be built from the configuration.
    #[error("a Kubernetes client could not be built")]
    Client(#[source] kube::Error),
    /// The API server did not answer within 10 s.
    #[error("the cluster did not answer within 10 s")]
    Timeout,
    /// The API server could not be reached, or refused the discovery request.
    #[error("the cluster could not be reached")]
    Unreachable(#[source] kube::Error),
    /// The cluster does not serve a resource cutover needs: Istio (1.22 or later, for
    /// `networking.istio.io/v1`) is not installed.
    #[error(
        "the cluster does not serve {resource}.{GROUP}/{VERSION}: install Istio 1.22 or later \
         (its CRDs)"
    )]
    NoIstio {
        /// The missing resource (`virtualservices`, `destinationrules`).
        resource: &'static str,
    },
}

/// A client for the configured cluster, checked with [`istio_served`].
///
/// Returns [`ClusterError::NotConfigured`] without touching the network when no configuration
/// exists at all.
pub async fn cluster_with_istio() -> Result<kube::Client, ClusterError> {
    let configured = std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::home_dir().is_some_and(|home| home.join(".kube/config").is_file());
    if !configured {
        return Err(ClusterError::NotConfigured);
    }
    let config = kube::Config::infer().await.map_err(ClusterError::Config)?;
    let client = kube::Client::try_from(config).map_err(ClusterError::Client)?;
    istio_served(&client).await?;
    Ok(client)
}

/// Checks that the API server answers and serves `networking.istio.io/v1` VirtualServices and
/// DestinationRules, through discovery (no RBAC needed beyond being authenticated).
pub async fn istio_served(client: &kube::Client) -> Result<(), ClusterError> {
    let api_version = format!("{GROUP}/{VERSION}");
    let found = tokio::time::timeout(CHECK_TIMEOUT, client.list_api_group_resources(&api_version))
        .await
        .map_err(|_| ClusterError::Timeout)?;
    let resources = match found {
        Ok(list) => list.resources,
        Err(e) if cutover_kube::is_not_found(&e) => Vec::new(),
        Err(e) => return Err(ClusterError::Unreachable(e)),
    };
    match RESOURCES
        .into_iter()
        .find(|wanted| !resources.iter().any(|r| r.name == *wanted))
    {
        Some(resource) => Err(ClusterError::NoIstio { resource }),
        None => Ok(()),
    }
}
