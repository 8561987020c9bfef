//! A real Kubernetes control plane, started once per test binary with the repository's shared
//! script and stopped when the test binary exits.

use std::collections::BTreeSet;
use std::fmt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio::sync::{Mutex, OnceCell};

use super::{Caller, TestNamespace, eventually};

/// The environment variable that names the directory holding the control plane's `start` and
/// `stop` scripts, when they are not in `shared/tools/kube` beside the workspace (or one of
/// its parents).
pub const TOOLS_ENV: &str = "CUTOVER_KUBE_TOOLS";

/// The user of [`ControlPlane::user_config`]: no permissions but those a test binds to it.
pub const USER: &str = "tester";

/// The control plane shared by the tests of one test binary.
static SHARED: OnceCell<Result<ControlPlane, String>> = OnceCell::const_new();

/// A real Kubernetes control plane on loopback: etcd, kube-apiserver and
/// kube-controller-manager (Kubernetes 1.24), with RBAC enforced and no kubelet, started by
/// `shared/tools/kube/start` (see its README).
///
/// [`shared`](Self::shared) starts it once per test binary (about 8 s) and a watchdog process
/// stops it, and removes its directory, when the test binary exits. Tests share it and keep
/// apart by working in a namespace of their own ([`namespace`](Self::namespace)).
pub struct ControlPlane {
    dir: PathBuf,
    admin: kube::Config,
    user: kube::Config,
    /// The CRDs installed so far, by name.
    pub(super) crds: Mutex<BTreeSet<String>>,
    namespaces: AtomicU32,
    /// Stops the control plane when this process exits; never waited for.
    _watchdog: Child,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// The control plane of this test binary, started on first use.
    ///
    /// # Panics
    ///
    /// When it cannot be started, with what is missing: the scripts (not found beside the
    /// workspace; set [`TOOLS_ENV`]), etcd (run `scripts/test-deps`), or the script's own
    /// error. Every later call panics with the same message.
    pub async fn shared() -> &'static ControlPlane {
        match SHARED.get_or_init(start).await {
            Ok(plane) => plane,
            Err(why) => panic!("the test control plane is not available: {why}"),
        }
    }

    /// The directory of the control plane: its logs are in `logs/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration of a cluster admin (`system:masters`).
    pub fn admin_config(&self) -> &kube::Config {
        &self.admin
    }

    /// The configuration of the user [`USER`], who may do nothing but what a test grants.
    pub fn user_config(&self) -> &kube::Config {
        &self.user
    }

    /// A cluster-admin client whose default namespace is `default`.
    pub fn admin(&self) -> kube::Client {
        client(&self.admin, "default")
    }

    /// A new namespace for one test, named after `purpose` (a test name) and a counter; the
    /// namespace's `default` ServiceAccount exists when it returns, so Pods can be created.
    pub async fn namespace(&'static self, purpose: &str) -> TestNamespace {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let mut name: String = purpose
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '-',
            })
            .collect();
        name.truncate(50);
        let name = format!("{}-{n}", name.trim_matches('-'));
        let admin = self.admin();
        let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))
            .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let accounts = Api::<ServiceAccount>::namespaced(admin, &name);
        eventually(
            &format!("the `default` ServiceAccount of namespace {name}"),
            || async { accounts.get_opt("default").await.ok().flatten() },
        )
        .await;
        TestNamespace::new(self, name)
    }

    /// A new namespace for one test run as `caller` (named after `purpose` and the caller), and
    /// a client for `caller` in it.
    pub async fn namespace_for(
        &'static self,
        purpose: &str,
        caller: &Caller,
    ) -> (TestNamespace, kube::Client) {
        let ns = self
            .namespace(&format!("{purpose}-{}", caller.label()))
            .await;
        let client = ns.client(caller).await;
        (ns, client)
    }
}

/// A client for `config` whose default namespace is `namespace`.
pub(super) fn client(config: &kube::Config, namespace: &str) -> kube::Client {
    let mut config = config.clone();
    namespace.clone_into(&mut config.default_namespace);
    kube::Client::try_from(config)
        .unwrap_or_else(|e| panic!("a client for the test control plane: {e}"))
}

/// Starts the control plane and its watchdog.
async fn start() -> Result<ControlPlane, String> {
    let tools = tools_dir()?;
    let script = tools.join("start");
    let run = script.clone();
    let output =
        tokio::task::spawn_blocking(move || Command::new(&run).stdin(Stdio::null()).output())
            .await
            .map_err(|e| format!("running {}: {e}", script.display()))?
            .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}\n(scripts/test-deps installs etcd and what else it needs)",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let var = |name: &str| -> Result<PathBuf, String> {
        stdout
            .split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{} printed no {name}: {stdout}", script.display()))
    };
    let dir = var("KUBE_DIR")?;
    let watchdog = watchdog(&tools.join("stop"), &dir)?;
    let admin = load(&var("KUBECONFIG")?).await?;
    let user = load(&var("KUBE_USER_KUBECONFIG")?).await?;
    eprintln!("test control plane (Kubernetes 1.24) in {}", dir.display());
    Ok(ControlPlane {
        dir,
        admin,
        user,
        crds: Mutex::new(BTreeSet::new()),
        namespaces: AtomicU32::new(0),
        _watchdog: watchdog,
    })
}

/// The directory holding `start` and `stop`: [`TOOLS_ENV`], or `shared/tools/kube` in the
/// parent of the workspace root (CI checks the repository out at `/work/main`, beside
/// `/work/shared`) or in a parent further up.
fn tools_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(TOOLS_ENV) {
        let dir = PathBuf::from(dir);
        return if dir.join("start").is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "{TOOLS_ENV}={} holds no `start` script",
                dir.display()
            ))
        };
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir
        .ancestors()
        .nth(2)
        .ok_or_else(|| format!("{} has no workspace root", crate_dir.display()))?;
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/tools/kube"))
        .find(|dir| dir.join("start").is_file())
        .ok_or_else(|| {
            format!(
                "no shared/tools/kube/start beside the workspace root {} or any of its parents \
                 (the repository is checked out beside `shared`: /work/main and /work/shared); \
                 set {TOOLS_ENV} to the directory holding `start` and `stop`",
                root.display()
            )
        })
}

/// A process that runs `stop DIR` once this process has exited. It has a process group of its
/// own, so that an interrupt of the tests (Ctrl-C) does not end it before it has stopped the
/// control plane.
fn watchdog(stop: &Path, dir: &Path) -> Result<Child, String> {
    Command::new("sh")
        .arg("-c")
        .arg(r#"tail --pid="$1" -f /dev/null 2>/dev/null; exec "$2" "$3""#)
        .arg("cutover-kube-watchdog")
        .arg(std::process::id().to_string())
        .arg(stop)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the watchdog that stops the control plane: {e}"))
}

/// The client configuration in the kubeconfig file `path`.
async fn load(path: &Path) -> Result<kube::Config, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{}: {e}", path.display()))
}
