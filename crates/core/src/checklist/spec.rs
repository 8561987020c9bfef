//! Checklists written in YAML, and the registry of check kinds that builds them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Check, ChecklistItem, Exemption, Remediation};
use crate::Checklist;

/// A checklist that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChecklistError {
    /// The text is not valid YAML.
    #[error("checklist is not valid YAML: {message}")]
    Syntax {
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field is missing, unknown, of the wrong type, or names an unknown check kind.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where, like `checks[2].http.url`.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl ChecklistError {
    /// Where the error is, for [`ChecklistError::Invalid`].
    pub fn path(&self) -> Option<&str> {
        match self {
            ChecklistError::Invalid { path, .. } => Some(path),
            ChecklistError::Syntax { .. } => None,
        }
    }

    fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ChecklistError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// A checklist as written in YAML.
///
/// ```yaml
/// name: preflight
/// concurrency: 4          # checks at a time (default 4)
/// timeout: 10s            # per check, unless the check sets its own (default 30s)
/// allow_fixes: false      # run automatic fixes (default false)
/// checks:
///   - id: api-smoke
///     title: The API answers
///     category: infrastructure
///     required: true      # default true; false makes it advisory
///     timeout: 5s
///     http: { url: "http://127.0.0.1:8080/healthz", status: 200 }
///     fix: { http: { method: POST, url: "http://127.0.0.1:8080/admin/warm" } }
/// exemptions:
///   - { check: disk-space, reason: "cleanup CHG-7 scheduled", by: alice, expires: 2026-12-31T00:00:00Z }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistSpec {
    /// The checklist's name (and its gate's).
    pub name: String,
    /// Checks at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// The default per-check timeout.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::time::serde_duration::option"
    )]
    pub timeout: Option<Duration>,
    /// Whether automatic fixes run.
    #[serde(default)]
    pub allow_fixes: bool,
    /// The checks.
    pub checks: Vec<ItemSpec>,
    /// The exemptions.
    #[serde(default)]
    pub exemptions: Vec<Exemption>,
}

/// One check as written: the common fields and exactly one more key, the check's kind, whose
/// value holds the kind's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemSpec {
    /// The check's id, unique in the checklist.
    pub id: String,
    /// A title for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its category, like `infrastructure`, `security`, `configuration`.
    pub category: String,
    /// Required (default) or advisory.
    #[serde(default = "yes")]
    pub required: bool,
    /// Its timeout.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::time::serde_duration::option"
    )]
    pub timeout: Option<Duration>,
    /// An automatic fix: one key, the fix's kind, with its parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<BTreeMap<String, serde_json::Value>>,
    /// The kind and its parameters.
    #[serde(flatten)]
    pub kind: BTreeMap<String, serde_json::Value>,
}

impl ChecklistSpec {
    /// Reads a checklist spec from YAML (to edit before [`Registry::build`]). Errors name the
    /// field at fault, like `exemptions[0]: missing field `expires``.
    pub fn from_yaml(text: &str) -> Result<Self, ChecklistError> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| ChecklistError::Syntax {
                message: e.to_string(),
            })?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ChecklistError::invalid(
                if path == "." {
                    "checklist".to_owned()
                } else {
                    path
                },
                e.inner().to_string(),
            )
        })
    }
}

fn yes() -> bool {
    true
}

/// Builds a check (or a fix) of one kind from its parameters; the error is the path inside the
/// parameters (may be empty) and what is wrong there.
pub type CheckFactory<T> =
    Arc<dyn Fn(&serde_json::Value) -> Result<Arc<T>, (String, String)> + Send + Sync>;

/// The check and fix kinds a checklist may use, by name.
#[derive(Clone, Default)]
pub struct Registry {
    checks: BTreeMap<String, CheckFactory<dyn Check>>,
    fixes: BTreeMap<String, CheckFactory<dyn Remediation>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("checks", &self.checks.keys().collect::<Vec<_>>())
            .field("fixes", &self.fixes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers check kind `kind`, built from parameters of type `P`.
    pub fn check<P, C, F>(mut self, kind: &str, build: F) -> Self
    where
        P: DeserializeOwned,
        C: Check + 'static,
        F: Fn(P) -> Result<C, (String, String)> + Send + Sync + 'static,
    {
        self.checks.insert(
            kind.to_owned(),
            Arc::new(move |value| {
                let params = params::<P>(value)?;
                Ok(Arc::new(build(params)?) as Arc<dyn Check>)
            }),
        );
        self
    }

    /// Registers fix kind `kind`, built from parameters of type `P`.
    pub fn fix<P, R, F>(mut self, kind: &str, build: F) -> Self
    where
        P: DeserializeOwned,
        R: Remediation + 'static,
        F: Fn(P) -> Result<R, (String, String)> + Send + Sync + 'static,
    {
        self.fixes.insert(
            kind.to_owned(),
            Arc::new(move |value| {
                let params = params::<P>(value)?;
                Ok(Arc::new(build(params)?) as Arc<dyn Remediation>)
            }),
        );
        self
    }

    /// The check kinds, sorted.
    pub fn check_kinds(&self) -> impl Iterator<Item = &str> {
        self.checks.keys().map(String::as_str)
    }

    /// Reads a checklist from YAML and builds it.
    pub fn load_yaml(&self, text: &str) -> Result<Checklist, ChecklistError> {
        self.build(&ChecklistSpec::from_yaml(text)?)
    }

    /// Builds a checklist from its spec.
    pub fn build(&self, spec: &ChecklistSpec) -> Result<Checklist, ChecklistError> {
        let mut checklist = Checklist::new(&spec.name).allow_fixes(spec.allow_fixes);
        if let Some(n) = spec.concurrency {
            if n == 0 {
                return Err(ChecklistError::invalid("concurrency", "must be at least 1"));
            }
            checklist = checklist.concurrency(n);
        }
        if let Some(t) = spec.timeout {
            checklist = checklist.timeout(t);
        }
        let mut seen = BTreeMap::new();
        for (i, item) in spec.checks.iter().enumerate() {
            let at = format!("checks[{i}]");
            if let Some(first) = seen.insert(item.id.as_str(), i) {
                return Err(ChecklistError::invalid(
                    format!("{at}.id"),
                    format!("`{}` is already the id of checks[{first}]", item.id),
                ));
            }
            let check = one_kind(&at, &item.kind, &self.checks, "check")?;
            let mut built = ChecklistItem {
                id: item.id.clone(),
                title: item.title.clone().unwrap_or_else(|| item.id.clone()),
                category: item.category.clone(),
                required: item.required,
                timeout: item.timeout,
                check,
                fix: None,
            };
            if let Some(fix) = &item.fix {
                built.fix = Some(one_kind(&format!("{at}.fix"), fix, &self.fixes, "fix")?);
            }
            checklist = checklist.item(built);
        }
        for e in &spec.exemptions {
            checklist = checklist.exemption(e.clone());
        }
        Ok(checklist)
    }
}

/// The one kind key of `map`, built by its factory.
fn one_kind<T: ?Sized>(
    at: &str,
    map: &BTreeMap<String, serde_json::Value>,
    factories: &BTreeMap<String, CheckFactory<T>>,
    what: &str,
) -> Result<Arc<T>, ChecklistError> {
    let known = || factories.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut keys = map.keys();
    let (Some(kind), None) = (keys.next(), keys.next()) else {
        return Err(ChecklistError::invalid(
            at,
            if map.is_empty() {
                format!("no {what} kind given; one of: {}", known())
            } else {
                format!(
                    "more than one {what} kind or unknown field ({}); give exactly one of: {}",
                    map.keys().cloned().collect::<Vec<_>>().join(", "),
                    known()
                )
            },
        ));
    };
    let Some(factory) = factories.get(kind) else {
        return Err(ChecklistError::invalid(
            format!("{at}.{kind}"),
            format!("unknown {what} kind `{kind}`; known: {}", known()),
        ));
    };
    factory(&map[kind]).map_err(|(path, reason)| {
        let path = if path.is_empty() || path == "." {
            format!("{at}.{kind}")
        } else {
            format!("{at}.{kind}.{path}")
        };
        ChecklistError::invalid(path, reason)
    })
}

/// Deserializes a kind's parameters, with the path of the field at fault.
fn params<P: DeserializeOwned>(value: &serde_json::Value) -> Result<P, (String, String)> {
    // `null` (a kind written with no parameters, like `approval:`) reads as an empty map.
    let value = if value.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        value.clone()
    };
    serde_path_to_error::deserialize(value)
        .map_err(|e| (e.path().to_string(), e.inner().to_string()))
}
