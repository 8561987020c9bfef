//! `--store`: which state store holds the rollouts, and opening it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use cutover::{FileStateStore, StateStore};

use crate::exit::{Failure, chain};

/// The prefix of the ConfigMaps and Leases of a rollout in the Kubernetes store, the one the
/// reference operator uses.
#[cfg(feature = "kubernetes")]
pub(crate) const KUBERNETES_PREFIX: &str = "cutover-state-";

/// Where rollouts are kept, as written after `--store`.
///
/// `Debug` and `Display` never show a database password.
#[derive(Debug, Clone)]
pub(crate) enum StoreUrl {
    /// `file:DIR`: a directory per rollout.
    File(PathBuf),
    /// `kubernetes:NAMESPACE`: ConfigMaps and Leases in a namespace, through the kubeconfig.
    Kubernetes(String),
    /// `postgres://USER@HOST:PORT/DB`: the PostgreSQL store of cutover-fleet.
    #[cfg(feature = "fleet")]
    Postgres(Box<cutover::fleet::DatabaseUrl>),
}

impl PartialEq for StoreUrl {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StoreUrl::File(a), StoreUrl::File(b)) => a == b,
            (StoreUrl::Kubernetes(a), StoreUrl::Kubernetes(b)) => a == b,
            #[cfg(feature = "fleet")]
            (StoreUrl::Postgres(a), StoreUrl::Postgres(b)) => a.target() == b.target(),
            _ => false,
        }
    }
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
            "postgres" | "postgresql" => postgres(text),
            other => Err(format!(
                "unknown store `{other}:`; use file:DIR, kubernetes:NAMESPACE or \
                 postgres://USER@HOST/DB"
            )),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::File(dir) => write!(f, "file:{}", dir.display()),
            StoreUrl::Kubernetes(namespace) => write!(f, "kubernetes:{namespace}"),
            #[cfg(feature = "fleet")]
            StoreUrl::Postgres(url) => write!(f, "postgres://{url}"),
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
            #[cfg(feature = "fleet")]
            StoreUrl::Postgres(url) => {
                let store = cutover::fleet::PgStateStore::connect(url)
                    .await
                    .map_err(|e| {
                        Failure::store(format!("cannot open the store {self}: {}", chain(&e)))
                    })?;
                Ok(Arc::new(store))
            }
        }
    }
}

/// `postgres://...`: parsed by cutover-fleet; its errors never repeat the password.
#[cfg(feature = "fleet")]
fn postgres(text: &str) -> Result<StoreUrl, String> {
    cutover::fleet::DatabaseUrl::parse(text)
        .map(|url| StoreUrl::Postgres(Box::new(url)))
        .map_err(|e| format!("invalid PostgreSQL store URL: {}", chain(&e)))
}

#[cfg(not(feature = "fleet"))]
fn postgres(_text: &str) -> Result<StoreUrl, String> {
    Err("the PostgreSQL store needs the `fleet` feature, which this build of cutover lacks".into())
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
        let postgres = "postgres://alice:s3cret@db:5433/cutover"
            .parse::<StoreUrl>()
            .unwrap();
        assert_eq!(postgres.to_string(), "postgres://alice@db:5433/cutover");
        assert!(!format!("{postgres:?}").contains("s3cret"), "{postgres:?}");
        let bad = "postgres://alice:s3cret@db:notaport/x"
            .parse::<StoreUrl>()
            .unwrap_err();
        assert!(bad.starts_with("invalid PostgreSQL store URL"), "{bad}");
        assert!(!bad.contains("s3cret"), "{bad}");
        assert!(
            "s3:bucket"
                .parse::<StoreUrl>()
                .unwrap_err()
                .contains("unknown store")
        );
        assert!("file:".parse::<StoreUrl>().is_err());
    }
}
