//! Pre-flight checklists: named checks in categories, run concurrently with timeouts, with
//! exemptions, optional automatic fixes, a human table and JSON, and a [`Gate`](crate::Gate)
//! that refuses a rollout before anything changed.
//!
//! The framework lives here so the engine and the decision record know it; the built-in checks
//! (HTTP, TLS, disk, freeze windows, webhooks...) are in the `cutover-preflight` crate.
//!
//! ```
//! use std::time::Duration;
//! use cutover_core::checklist::{Check, CheckContext, CheckResult, Checklist, ChecklistItem};
//!
//! #[derive(Debug)]
//! struct BackupFresh;
//!
//! #[async_trait::async_trait]
//! impl Check for BackupFresh {
//!     async fn run(&self, _ctx: &CheckContext) -> CheckResult {
//!         CheckResult::fail("last backup is 26 hours old")
//!             .hint("run `backup now` and try again")
//!             .evidence("age_hours", 26)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let checklist = Checklist::new("preflight")
//!     .item(ChecklistItem::new("backup-fresh", "infrastructure", BackupFresh))
//!     .timeout(Duration::from_secs(30));
//! let report = checklist.run(&CheckContext::default()).await;
//! assert!(!report.passed());
//! assert!(report.table().contains("run `backup now`"));
//! # }
//! ```

mod record;
mod report;
mod run;
mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Approval, ProviderError, Revisions, RolloutId, Timestamp};

pub use self::record::{CheckRecord, ChecklistRecord};
pub use self::report::{CheckRun, ChecklistReport, FixRecord};
pub use self::run::{AUDIT_KIND, Checklist};
pub use self::spec::{CheckFactory, ChecklistError, ChecklistSpec, ItemSpec, Registry};

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// All good.
    Pass,
    /// Worth a look, but not a reason to stop.
    Warn,
    /// Waiting for something outside (a person's approval): ask again later.
    Pending,
    /// The check ran and what it saw is not acceptable.
    Fail,
    /// The check could not tell (unreachable, timed out, bad answer).
    Error,
}

impl CheckStatus {
    /// `pass`, `warn`, `pending`, `fail` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Pending => "pending",
            CheckStatus::Fail => "fail",
            CheckStatus::Error => "error",
        }
    }

    /// This status as a table shows it: marked `(exempted)`, `(fixed)` (a fix applied and the
    /// check no longer blocks) or `(advisory)` (a blocking result of an advisory check).
    pub(crate) fn marked(self, required: bool, exempted: bool, fixed: bool) -> String {
        if exempted {
            format!("{self} (exempted)")
        } else if fixed && !self.blocks() {
            format!("{self} (fixed)")
        } else if !required && self.blocks() {
            format!("{self} (advisory)")
        } else {
            self.to_string()
        }
    }

    /// Whether this result stops a required check (fail, error or pending).
    pub fn blocks(self) -> bool {
        matches!(
            self,
            CheckStatus::Fail | CheckStatus::Error | CheckStatus::Pending
        )
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check's answer: a status, a message, a remediation hint and the values it saw.
///
/// Evidence never holds secrets: checks put names, redacted URLs and measured values there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The status.
    pub status: CheckStatus,
    /// What was found, in one line.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The values the check saw, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, serde_json::Value>,
}

impl CheckResult {
    /// A result with `status` and `message`.
    pub fn new(status: CheckStatus, message: impl Into<String>) -> Self {
        CheckResult {
            status,
            message: message.into(),
            hint: None,
            evidence: BTreeMap::new(),
        }
    }

    /// A pass.
    pub fn pass(message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Pass, message)
    }

    /// A warning.
    pub fn warn(message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Warn, message)
    }

    /// Waiting for something outside.
    pub fn pending(message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Pending, message)
    }

    /// A failure.
    pub fn fail(message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Fail, message)
    }

    /// The check could not tell.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Error, message)
    }

    /// With a remediation hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// With a value the check saw. A value that does not serialize is kept as its error text.
    pub fn evidence(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value)
            .unwrap_or_else(|e| serde_json::Value::String(format!("unserializable: {e}")));
        self.evidence.insert(name.into(), value);
        self
    }
}

/// What a check is told.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CheckContext {
    /// The rollout the checklist guards, when it runs as a gate.
    pub rollout: Option<RolloutId>,
    /// Its revisions.
    pub revisions: Option<Revisions>,
    /// Approvals people sent, by gate name (see [`ApprovalGate`](crate::ApprovalGate)).
    pub approvals: BTreeMap<String, Approval>,
    /// The time the checklist started, from its [`Clock`](crate::Clock). Set by the runner.
    pub now: Timestamp,
    /// The name of the checklist (and of its gate). Set by the runner.
    pub checklist: String,
}

impl CheckContext {
    /// A context for a rollout.
    pub fn for_rollout(rollout: RolloutId, revisions: Revisions) -> Self {
        CheckContext {
            rollout: Some(rollout),
            revisions: Some(revisions),
            ..CheckContext::default()
        }
    }

    /// The same context with these approvals.
    pub fn with_approvals(mut self, approvals: BTreeMap<String, Approval>) -> Self {
        self.approvals = approvals;
        self
    }
}

/// A check: looks at something and says pass, warn, fail or error.
///
/// A check does not enforce its own timeout: the checklist cuts it off at the item's timeout
/// and reports an error. Failures to reach what it checks are `Error` results, not panics.
#[async_trait]
pub trait Check: Send + Sync + fmt::Debug {
    /// Runs the check.
    async fn run(&self, ctx: &CheckContext) -> CheckResult;
}

#[async_trait]
impl<T: Check + ?Sized> Check for Arc<T> {
    async fn run(&self, ctx: &CheckContext) -> CheckResult {
        (**self).run(ctx).await
    }
}

/// An automatic fix for a failing check. It runs only when the checklist allows fixes, and
/// only after its check failed; the check then runs again. Every fix run is recorded.
#[async_trait]
pub trait Remediation: Send + Sync + fmt::Debug {
    /// What the fix does, in one line (shown as the hint and in the record).
    fn describe(&self) -> String;

    /// Applies the fix: what it did, or why it could not.
    async fn apply(&self, ctx: &CheckContext) -> Result<String, ProviderError>;
}

/// A check in a checklist: its id, title, category, whether it is required, its timeout and
/// an optional automatic fix.
#[derive(Debug, Clone)]
pub struct ChecklistItem {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) category: String,
    pub(crate) required: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) check: Arc<dyn Check>,
    pub(crate) fix: Option<Arc<dyn Remediation>>,
}

impl ChecklistItem {
    /// A required check `id` in `category`, titled by its id.
    pub fn new(
        id: impl Into<String>,
        category: impl Into<String>,
        check: impl Check + 'static,
    ) -> Self {
        let id = id.into();
        ChecklistItem {
            title: id.clone(),
            id,
            category: category.into(),
            required: true,
            timeout: None,
            check: Arc::new(check),
            fix: None,
        }
    }

    /// A title for people.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Advisory: its failure is shown but does not stop anything.
    pub fn advisory(mut self) -> Self {
        self.required = false;
        self
    }

    /// Required (the default) or advisory.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Cuts the check off after `timeout` (the checklist's default otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// An automatic fix, run only when the checklist allows fixes.
    pub fn fix(mut self, fix: impl Remediation + 'static) -> Self {
        self.fix = Some(Arc::new(fix));
        self
    }

    /// The check's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its category.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// Whether it is required.
    pub fn is_required(&self) -> bool {
        self.required
    }
}

/// Permission to go ahead although a check does not pass: who granted it, why, until when.
///
/// An exemption that names no check of the checklist, or that has expired, is itself an error
/// that stops the checklist. Every exemption used is kept in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exemption {
    /// The check's id.
    pub check: String,
    /// Why.
    pub reason: String,
    /// Who granted it.
    pub by: String,
    /// Until when it holds.
    pub expires: Timestamp,
}

impl Exemption {
    /// An exemption for `check` until `expires`.
    pub fn new(
        check: impl Into<String>,
        reason: impl Into<String>,
        by: impl Into<String>,
        expires: Timestamp,
    ) -> Self {
        Exemption {
            check: check.into(),
            reason: reason.into(),
            by: by.into(),
            expires,
        }
    }
}
