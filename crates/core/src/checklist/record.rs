//! What a checklist gate leaves in the rollout's decision record: every check's result, every
//! exemption used and every fix run, without the evidence (that stays in the audit document).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::report::{CheckRun, ChecklistReport, FixRecord};
use super::{CheckStatus, Exemption};
use crate::Timestamp;

/// A checklist run as kept in a rollout's decision record (in
/// [`ActionResult::Checklist`](crate::planner::ActionResult::Checklist)).
///
/// It holds what people need to know why a rollout went ahead or was refused: each check's
/// status, message and hint, the exemptions that let a check through (who, why, until when)
/// and the automatic fixes that ran (what, with what outcome). The values the checks saw
/// (evidence) are left out to keep the log small; [`Checklist::audit_to`](super::Checklist::audit_to)
/// keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistRecord {
    /// The checklist's name.
    pub checklist: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
    /// Whether automatic fixes were allowed.
    #[serde(default)]
    pub fixes_allowed: bool,
    /// Every check, in checklist order, then the problems with exemptions.
    #[serde(default)]
    pub checks: Vec<CheckRecord>,
}

/// One check of a [`ChecklistRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The check's id.
    pub id: String,
    /// Its category.
    #[serde(default)]
    pub category: String,
    /// Whether it is required.
    #[serde(default = "required")]
    pub required: bool,
    /// What it found (after its fix, if one ran).
    pub status: CheckStatus,
    /// What it found, in one line.
    #[serde(default)]
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The exemption that let a non-passing result through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempted: Option<Exemption>,
    /// The automatic fix that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixRecord>,
}

fn required() -> bool {
    true
}

impl CheckRecord {
    /// Whether this check stopped the checklist: required, blocking and not exempted.
    pub fn blocks(&self) -> bool {
        self.required && self.status.blocks() && self.exempted.is_none()
    }

    /// The result as a table shows it: the status, marked `exempted`, `fixed` or `advisory`.
    pub fn verdict(&self) -> String {
        self.status.marked(
            self.required,
            self.exempted.is_some(),
            self.fix.as_ref().is_some_and(|f| f.applied),
        )
    }
}

impl From<&CheckRun> for CheckRecord {
    fn from(run: &CheckRun) -> Self {
        CheckRecord {
            id: run.id.clone(),
            category: run.category.clone(),
            required: run.required,
            status: run.result.status,
            message: run.result.message.clone(),
            hint: run.result.hint.clone(),
            exempted: run.exempted.clone(),
            fix: run.fix.clone(),
        }
    }
}

impl From<&ChecklistReport> for ChecklistRecord {
    fn from(report: &ChecklistReport) -> Self {
        ChecklistRecord {
            checklist: report.checklist.clone(),
            started_at: report.started_at,
            finished_at: report.finished_at,
            fixes_allowed: report.fixes_allowed,
            checks: report.checks.iter().map(CheckRecord::from).collect(),
        }
    }
}

impl ChecklistRecord {
    /// Whether nothing blocked: every required check passed, warned, or was exempted.
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(CheckRecord::blocks)
    }

    /// The exemptions used, with the check each one let through.
    pub fn exemptions_used(&self) -> impl Iterator<Item = &Exemption> {
        self.checks.iter().filter_map(|c| c.exempted.as_ref())
    }

    /// The fixes that ran, by check id.
    pub fn fixes(&self) -> impl Iterator<Item = (&str, &FixRecord)> {
        self.checks
            .iter()
            .filter_map(|c| c.fix.as_ref().map(|f| (c.id.as_str(), f)))
    }

    /// How many checks have `status`.
    pub fn count(&self, status: CheckStatus) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// One line: the counts, then each exemption used and each fix run.
    ///
    /// `5 checks: 3 pass, 1 fail, 1 error; exempted: env (by alice until ..., "CHG-1");
    /// fix applied to health: restarted`
    pub fn summary(&self) -> String {
        let mut line = format!("{} checks:", self.checks.len());
        let mut first = true;
        for status in [
            CheckStatus::Pass,
            CheckStatus::Warn,
            CheckStatus::Pending,
            CheckStatus::Fail,
            CheckStatus::Error,
        ] {
            let n = self.count(status);
            if n > 0 {
                let _ = write!(line, "{} {n} {status}", if first { "" } else { "," });
                first = false;
            }
        }
        let exempted: Vec<String> = self
            .checks
            .iter()
            .filter_map(|c| {
                c.exempted
                    .as_ref()
                    .map(|e| format!("{} (by {} until {}: {})", c.id, e.by, e.expires, e.reason))
            })
            .collect();
        if !exempted.is_empty() {
            let _ = write!(line, "; exempted: {}", exempted.join(", "));
        }
        for (id, fix) in self.fixes() {
            let _ = write!(
                line,
                "; fix {} on {id}: {}",
                if fix.applied { "applied" } else { "failed" },
                fix.message
            );
        }
        line
    }
}
