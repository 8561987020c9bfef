//! Bake: after a promotion, keep watching analyses for a while and undo the promotion when
//! they fail.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{RevisionId, Verdict};

/// What happened during a bake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum BakeEvent {
    /// The bake began.
    Started {
        /// The promoted revision.
        revision: RevisionId,
        /// The revision before it.
        previous: RevisionId,
        /// How long it lasts.
        #[serde(with = "crate::time::serde_duration")]
        period: Duration,
    },
    /// An analysis was measured.
    Measured {
        /// The analysis.
        analysis: String,
        /// Its verdict.
        verdict: Verdict,
        /// Its summary.
        summary: String,
    },
    /// The bake period ended with no failure.
    Passed,
    /// An analysis failed and traffic went back to the previous revision.
    RolledBack {
        /// The previous revision.
        to: RevisionId,
        /// The failure.
        reason: String,
    },
    /// An analysis failed and the previous revision is gone: a person must act.
    Alert {
        /// The failure, and why no rollback.
        reason: String,
    },
}

impl fmt::Display for BakeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BakeEvent::Started {
                revision,
                previous,
                period,
            } => write!(
                f,
                "bake of {revision} for {} began (previous: {previous})",
                humantime::format_duration(*period)
            ),
            BakeEvent::Measured {
                analysis,
                verdict,
                summary,
            } => write!(f, "bake analysis {analysis}: {verdict:?}: {summary}"),
            BakeEvent::Passed => f.write_str("bake passed"),
            BakeEvent::RolledBack { to, reason } => {
                write!(f, "bake failed ({reason}); rolled back to {to}")
            }
            BakeEvent::Alert { reason } => {
                write!(f, "ALERT: bake failed and cannot roll back: {reason}")
            }
        }
    }
}
