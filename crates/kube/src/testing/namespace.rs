//! A namespace of one test, and the callers a test runs as: the admin, or the restricted user
//! bound to exactly the Role a crate documents.

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use super::control_plane::{ControlPlane, USER, client};
use super::eventually;

/// Who a test's code under test runs as.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// The cluster admin.
    Admin,
    /// The user [`USER`] with exactly this Role (a `rbac.authorization.k8s.io/v1` Role, as
    /// JSON, e.g. from [`role_from_docs`]) bound in the test's namespace, and nothing else.
    RestrictedTo(Value),
}

impl Caller {
    /// `admin` or `restricted user`, for messages and names.
    pub fn label(&self) -> &'static str {
        match self {
            Caller::Admin => "admin",
            Caller::RestrictedTo(_) => "restricted user",
        }
    }
}

/// A namespace created for one test on the [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct TestNamespace {
    plane: &'static ControlPlane,
    name: String,
}

impl TestNamespace {
    pub(super) fn new(plane: &'static ControlPlane, name: String) -> Self {
        TestNamespace { plane, name }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The control plane it is on.
    pub fn plane(&self) -> &'static ControlPlane {
        self.plane
    }

    /// A cluster-admin client whose default namespace is this one, for setting a test up.
    pub fn admin(&self) -> kube::Client {
        client(self.plane.admin_config(), &self.name)
    }

    /// A client for the user [`USER`] without binding anything: every request it makes is
    /// forbidden (unless another test bound a Role in this namespace).
    pub fn unprivileged(&self) -> kube::Client {
        client(self.plane.user_config(), &self.name)
    }

    /// A client for `caller`: the admin, or the restricted user bound to its Role here.
    pub async fn client(&self, caller: &Caller) -> kube::Client {
        match caller {
            Caller::Admin => self.admin(),
            Caller::RestrictedTo(role) => self.user_bound_to(role).await,
        }
    }

    /// Creates `role` (a Role as JSON; its namespace is set to this one) and a RoleBinding of
    /// it to the user [`USER`], waits until the API server grants every verb on every
    /// resource of its rules to that user, and returns a client for the user.
    pub async fn user_bound_to(&self, role: &Value) -> kube::Client {
        let mut role = role.clone();
        role["metadata"]["namespace"] = json!(self.name);
        let role: Role = serde_json::from_value(role)
            .unwrap_or_else(|e| panic!("the Role to bind is not a Role: {e}"));
        let role_name = role.metadata.name.clone().unwrap_or_default();
        let admin = self.admin();
        let pp = PostParams::default();
        Api::<Role>::namespaced(admin.clone(), &self.name)
            .create(&pp, &role)
            .await
            .unwrap_or_else(|e| panic!("creating Role {}/{role_name}: {e}", self.name));
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": format!("{role_name}-{USER}"), "namespace": self.name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER }],
        }))
        .unwrap_or_else(|e| panic!("a RoleBinding: {e}"));
        Api::<RoleBinding>::namespaced(admin, &self.name)
            .create(&pp, &binding)
            .await
            .unwrap_or_else(|e| panic!("binding Role {}/{role_name}: {e}", self.name));
        let user = self.unprivileged();
        for (group, resource, verb) in grants(&role) {
            let what = format!(
                "RBAC to grant {USER} `{verb}` on `{resource}` (group `{group}`) in {}",
                self.name
            );
            eventually(&what, || {
                may(user.clone(), &self.name, &group, &resource, &verb)
            })
            .await;
        }
        user
    }
}

/// Every (API group, resource, verb) a Role's rules grant.
fn grants(role: &Role) -> Vec<(String, String, String)> {
    let mut grants = Vec::new();
    for rule in role.rules.iter().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    grants.push((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    grants
}

/// `Some(())` once the API server says the client's user may `verb` `resource` in `namespace`.
async fn may(
    user: kube::Client,
    namespace: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> Option<()> {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": { "resourceAttributes": {
            "namespace": namespace, "group": group, "resource": resource, "verb": verb,
        } },
    }))
    .ok()?;
    let answer = Api::<SelfSubjectAccessReview>::all(user)
        .create(&PostParams::default(), &review)
        .await
        .ok()?;
    answer.status.is_some_and(|s| s.allowed).then_some(())
}

/// The RBAC Role a crate documents: the first fenced `yaml` block holding `kind: Role` in
/// `source`, the text of a Rust file whose `//!` docs hold it (`include_str!("../src/lib.rs")`)
/// or of a Markdown file. Testing with exactly this Role keeps the docs honest.
///
/// # Panics
///
/// When there is no such block or it is not valid YAML.
pub fn role_from_docs(source: &str) -> Value {
    let lines: Vec<&str> = source
        .lines()
        .map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("//!").unwrap_or(line);
            line.strip_prefix(' ').unwrap_or(line)
        })
        .collect();
    let mut block: Option<Vec<&str>> = None;
    for line in lines {
        match &mut block {
            None if line.trim_end() == "```yaml" => block = Some(Vec::new()),
            None => {}
            Some(body) if line.trim_end() == "```" => {
                if body.iter().any(|l| l.trim_end() == "kind: Role") {
                    let text = body.join("\n");
                    return serde_saphyr::from_str(&text)
                        .unwrap_or_else(|e| panic!("the documented Role is not valid YAML: {e}"));
                }
                block = None;
            }
            Some(body) => body.push(line),
        }
    }
    panic!("no ```yaml block with `kind: Role` in the docs")
}

/// [`role_from_docs`] for a Markdown page (a guide): its lines read as doc-comment lines, so the
/// YAML keeps its indentation.
///
/// # Panics
///
/// As [`role_from_docs`].
pub fn role_from_markdown(markdown: &str) -> Value {
    let mut source = String::new();
    for line in markdown.lines() {
        source.push_str("//! ");
        source.push_str(line);
        source.push('\n');
    }
    role_from_docs(&source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_read_from_rust_docs() {
        let source = "//! # RBAC\n//!\n//! ```yaml\n//! apiVersion: v1\n//! kind: ConfigMap\n//! ```\n\
                      //!\n//! ```yaml\n//! apiVersion: rbac.authorization.k8s.io/v1\n//! kind: Role\n\
                      //! metadata:\n//!   name: cutover\n//! rules:\n//!   # Routers\n\
                      //!   - apiGroups: [\"\"]\n//!     resources: [\"services\"]\n\
                      //!     verbs: [\"get\", \"patch\"]\n//! ```\n";
        let role = role_from_docs(source);
        assert_eq!(role["metadata"]["name"], "cutover");
        let role: Role = serde_json::from_value(role).unwrap();
        assert_eq!(
            grants(&role),
            [
                (String::new(), "services".to_owned(), "get".to_owned()),
                (String::new(), "services".to_owned(), "patch".to_owned()),
            ]
        );
    }
}
