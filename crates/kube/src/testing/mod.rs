//! Test support (feature `test-util`) for crates that talk to Kubernetes: this crate's
//! providers now, an operator later.
//!
//! - **A real control plane**: [`ControlPlane::shared`] starts etcd, kube-apiserver and
//!   kube-controller-manager (Kubernetes 1.24, RBAC enforced, no kubelet) once per test binary
//!   with the repository's `shared/tools/kube/start`, and stops them when the binary exits.
//!   Each test works in a namespace of its own ([`ControlPlane::namespace`]), as the admin or
//!   as a user bound to exactly the Role a crate documents ([`Caller`], [`role_from_docs`]).
//!   CRDs are installed once ([`ControlPlane::install_crds`]). [`FakeKubelet`] marks Pods ready
//!   through the status subresource. Such tests are
//!   `#[ignore = "needs etcd: scripts/test-deps"]`; CI runs them with `--include-ignored`.
//! - **kube-fake-client, closer to a real server**: [`atomic_fields`] models atomic maps and
//!   lists under server-side apply; [`failing`] answers chosen requests with an API-server
//!   error (403, 429) that the fake cannot produce. [`edited_before`] interleaves a concurrent
//!   edit before a write (on the fake and on a real server alike).
//!
//! ```no_run
//! # async fn f() {
//! use cutover_kube::testing::{Caller, ControlPlane, role_from_docs};
//! let plane = ControlPlane::shared().await;
//! let ns = plane.namespace("selector-switch").await;
//! let role = role_from_docs("//! ```yaml\n//! kind: Role\n//! ...\n//! ```");
//! let client = ns.client(&Caller::RestrictedTo(role)).await;
//! # }
//! ```

mod apply;
mod atomic;
mod control_plane;
mod crds;
mod failing;
mod interleave;
mod kubelet;
mod namespace;

use std::future::Future;
use std::time::Duration;

pub use self::apply::{SETUP_MANAGER, apply_yaml};
pub use self::atomic::{AtomicField, atomic_fields};
pub use self::control_plane::{ControlPlane, TOOLS_ENV, USER};
pub use self::crds::install_crds;
pub use self::failing::failing;
pub use self::interleave::{OTHER_WRITER, edited_before};
pub use self::kubelet::{FakeKubelet, mark_ready, mark_waiting};
pub use self::namespace::{Caller, TestNamespace, role_from_docs, role_from_markdown};

/// Runs each named test twice, as `<name>::as_admin` and `<name>::as_restricted_user`: each
/// calls the `async fn <name>(caller: Caller)` of the enclosing module with [`Caller::Admin`]
/// and with [`Caller::RestrictedTo`] the Role that `role()` (a function of the enclosing
/// module, usually [`role_from_docs`] on the crate's docs) returns. Both are
/// `#[ignore = "needs etcd: scripts/test-deps"]` tokio tests, so the calling crate needs tokio
/// with `macros` as a dev-dependency.
///
/// ```no_run
/// use cutover_kube::testing::{Caller, ControlPlane, role_from_docs};
///
/// fn role() -> serde_json::Value {
///     role_from_docs("```yaml\nkind: Role\nmetadata: { name: cutover }\n```")
/// }
///
/// async fn switch_keeps_other_keys(caller: Caller) {
///     let plane = ControlPlane::shared().await;
///     let (ns, client) = plane.namespace_for("switch", &caller).await;
///     // ... the code under test runs with `client` in `ns` ...
/// }
///
/// cutover_kube::as_admin_and_restricted_user!(role; switch_keeps_other_keys);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! as_admin_and_restricted_user {
    ($role:ident; $($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            #[ignore = "needs etcd: scripts/test-deps"]
            async fn as_admin() {
                super::$test($crate::testing::Caller::Admin).await;
            }

            #[tokio::test]
            #[ignore = "needs etcd: scripts/test-deps"]
            async fn as_restricted_user() {
                super::$test($crate::testing::Caller::RestrictedTo(super::$role())).await;
            }
        }
    )*};
}

/// How long [`eventually`] waits.
pub const DEADLINE: Duration = Duration::from_mins(1);

/// Calls `attempt` every 50 ms until it returns `Some`, for at most [`DEADLINE`]: readiness
/// polling against a real server, instead of sleeping.
///
/// # Panics
///
/// When the deadline passes, naming `what` was awaited.
pub async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {} s waiting for {what}",
            DEADLINE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
