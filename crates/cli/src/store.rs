//! `--store`: which state store holds the rollouts, and opening it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use cutover::{FileStateStore, StateStore};

use crate::exit::Failure;

/// The prefix of the ConfigMaps and Leases of a rollout in the Kubernetes store, the one the
/// reference operator uses.
#[cfg(feature = "kubernetes")]
pub(crate) const KUBERNETES_PREFIX: &str = "cutover-state-";

/// Where rollouts are kept, as written after `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    /// `file:DIR`: a directory per rollout.
    File(PathBuf),
    /// `kubernetes:NAMESPACE`: ConfigMaps and Leases in a namespace, through the kubeconfig.
    Kubernetes(String),
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text.split_once(':').unwrap_or(("file", text));
        match scheme {
            "file" => {
                let dir = rest.strip_prefix("//").unwrap_or(rest);
                if dir.is_empty() {
                    return Err("`file:` needs a directory, like file:./.cutover".into());
                }
                Ok(StoreUrl::File(PathBuf::from(dir)))
            }
            "kubernetes" | "k8s" => {
                if rest.is_empty() {
                    return Err("`kubernetes:` needs a namespace, like kubernetes:shop".into());
                }
                Ok(StoreUrl::Kubernetes(rest.to_owned()))
            }
            "postgres" | "postgresql" => Err(
                "the PostgreSQL store comes with cutover-fleet, which this build does not include \
                 yet; use file:DIR or kubernetes:NAMESPACE"
                    .into(),
            ),
            other => Err(format!(
                "unknown store `{other}:`; use file:DIR or kubernetes:NAMESPACE"
            )),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::File(dir) => write!(f, "file:{}", dir.display()),
            StoreUrl::Kubernetes(namespace) => write!(f, "kubernetes:{namespace}"),
        }
    }
}

impl StoreUrl {
    /// Opens the store.
    pub(crate) async fn open(&self) -> Result<Arc<dyn StateStore>, Failure> {
        match self {
            StoreUrl::File(dir) => {
                let store = FileStateStore::new(dir).map_err(|e| {
                    Failure::store(format!("cannot open the store {self}: {}", chain(&e)))
                })?;
                Ok(Arc::new(store))
            }
            StoreUrl::Kubernetes(namespace) => kubernetes(self, namespace).await,
        }
    }
}

#[cfg(feature = "kubernetes")]
async fn kubernetes(url: &StoreUrl, namespace: &str) -> Result<Arc<dyn StateStore>, Failure> {
    use cutover::kubernetes::{ConfigMapStateStore, kube};
    let client = kube::Client::try_default().await.map_err(|e| {
        Failure::store(format!(
            "the store {url} needs a Kubernetes client (KUBECONFIG or in-cluster): {}",
            chain(&e)
        ))
    })?;
    Ok(Arc::new(ConfigMapStateStore::new(
        client,
        namespace,
        KUBERNETES_PREFIX,
    )))
}

#[cfg(not(feature = "kubernetes"))]
async fn kubernetes(url: &StoreUrl, _namespace: &str) -> Result<Arc<dyn StateStore>, Failure> {
    Err(Failure::store(format!(
        "the store {url} needs the `kubernetes` feature, which this build of cutover lacks"
    )))
}

/// An error and its sources on one line.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse() {
        assert_eq!(
            "file:./.cutover".parse::<StoreUrl>(),
            Ok(StoreUrl::File(PathBuf::from("./.cutover")))
        );
        assert_eq!(
            "file:///var/lib/cutover".parse::<StoreUrl>(),
            Ok(StoreUrl::File(PathBuf::from("/var/lib/cutover")))
        );
        assert_eq!(
            "/tmp/x".parse::<StoreUrl>(),
            Ok(StoreUrl::File(PathBuf::from("/tmp/x")))
        );
        assert_eq!(
            "kubernetes:shop".parse::<StoreUrl>(),
            Ok(StoreUrl::Kubernetes("shop".into()))
        );
        let postgres = "postgres://db/cutover".parse::<StoreUrl>().unwrap_err();
        assert!(postgres.contains("cutover-fleet"), "{postgres}");
        assert!(
            "s3:bucket"
                .parse::<StoreUrl>()
                .unwrap_err()
                .contains("unknown store")
        );
        assert!("file:".parse::<StoreUrl>().is_err());
    }
}
