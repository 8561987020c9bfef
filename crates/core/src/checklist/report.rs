//! A checklist run's report: a table for people, JSON for machines, a verdict for the gate.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CheckResult, CheckStatus, Exemption};
use crate::{GateVerdict, Timestamp};

/// One check's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRun {
    /// The check's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its category.
    pub category: String,
    /// Whether it is required.
    pub required: bool,
    /// How long it took (with its fix and re-run, if any).
    #[serde(with = "crate::time::serde_duration")]
    pub elapsed: Duration,
    /// What it found (after its fix, if one ran).
    pub result: CheckResult,
    /// The exemption that let a non-passing result through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempted: Option<Exemption>,
    /// The automatic fix that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixRecord>,
}

impl CheckRun {
    /// Whether this run stops the checklist: required, blocking and not exempted.
    pub fn blocks(&self) -> bool {
        self.required && self.result.status.blocks() && self.exempted.is_none()
    }

    /// The result column of the table: the status, `exempted` or `fixed`.
    pub fn verdict(&self) -> String {
        self.result.status.marked(
            self.required,
            self.exempted.is_some(),
            self.fix.as_ref().is_some_and(|f| f.applied),
        )
    }
}

/// An automatic fix that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixRecord {
    /// What the fix does.
    pub description: String,
    /// Whether it applied without error.
    pub applied: bool,
    /// What it said, or its error.
    pub message: String,
    /// The check's status before the fix.
    pub status_before: CheckStatus,
}

/// Everything a checklist run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecklistReport {
    /// The checklist's name.
    pub checklist: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
    /// Whether automatic fixes were allowed.
    pub fixes_allowed: bool,
    /// Every check, in checklist order, then the problems with exemptions.
    pub checks: Vec<CheckRun>,
    /// The exemptions that let a check through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemptions_used: Vec<Exemption>,
}

impl ChecklistReport {
    /// Whether nothing blocks: every required check passed, warned, or is exempted.
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(CheckRun::blocks)
    }

    /// The checks that block.
    pub fn blocking(&self) -> impl Iterator<Item = &CheckRun> {
        self.checks.iter().filter(|c| c.blocks())
    }

    /// The run with id `id`.
    pub fn get(&self, id: &str) -> Option<&CheckRun> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The answer as a gate: closed if a required check failed or erred (with each one and its
    /// hint), pending if only approvals are awaited, open otherwise.
    pub fn verdict(&self) -> GateVerdict {
        let blocking: Vec<&CheckRun> = self.blocking().collect();
        if blocking.is_empty() {
            return GateVerdict::Open;
        }
        let line = |c: &&CheckRun| {
            let mut s = format!("{} [{}]: {}", c.id, c.result.status, c.result.message);
            if let Some(hint) = &c.result.hint {
                let _ = write!(s, " (hint: {hint})");
            }
            s
        };
        if blocking
            .iter()
            .all(|c| c.result.status == CheckStatus::Pending)
        {
            return GateVerdict::Pending {
                detail: blocking.iter().map(line).collect::<Vec<_>>().join("; "),
            };
        }
        let failed: Vec<String> = blocking
            .iter()
            .filter(|c| c.result.status != CheckStatus::Pending)
            .map(line)
            .collect();
        GateVerdict::Closed {
            reason: format!(
                "{} required check{} did not pass: {}",
                failed.len(),
                if failed.len() == 1 { "" } else { "s" },
                failed.join("; ")
            ),
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // A report holds only strings, numbers and JSON values: it always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A table for people: category, check, result, message and hint, then the exemptions
    /// used and a one-line summary.
    pub fn table(&self) -> String {
        let headers = ["CATEGORY", "CHECK", "RESULT", "MESSAGE", "HINT"];
        let rows: Vec<[String; 5]> = self
            .checks
            .iter()
            .map(|c| {
                let mut message = c.result.message.clone();
                if let Some(f) = &c.fix {
                    let _ = write!(
                        message,
                        " [fix {}: {}]",
                        if f.applied { "applied" } else { "failed" },
                        f.message
                    );
                }
                if let Some(e) = &c.exempted {
                    let _ = write!(
                        message,
                        " [exempted by {} until {}: {}]",
                        e.by, e.expires, e.reason
                    );
                }
                [
                    c.category.clone(),
                    c.id.clone(),
                    c.verdict(),
                    message,
                    c.result.hint.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        // The last column is not padded.
        widths[4] = 0;
        let mut out = String::new();
        let mut line = |cells: [&str; 5]| {
            let mut l = String::new();
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(l, "{cell:<w$}  ");
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(headers);
        for row in &rows {
            line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
        }
        let count = |s: CheckStatus| self.checks.iter().filter(|c| c.result.status == s).count();
        let _ = writeln!(
            out,
            "{}: {} — {} pass, {} warn, {} fail, {} error, {} pending, {} exempted",
            self.checklist,
            if self.passed() {
                "PASSED"
            } else {
                "NOT PASSED"
            },
            count(CheckStatus::Pass),
            count(CheckStatus::Warn),
            count(CheckStatus::Fail),
            count(CheckStatus::Error),
            count(CheckStatus::Pending),
            self.exemptions_used.len(),
        );
        out
    }
}
