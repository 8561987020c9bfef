//! What people and systems are told: a [`Notice`] made from one decision record, with its
//! [`NoticeKind`] and [`Severity`].

use std::fmt;
use std::str::FromStr;

use cutover_core::planner::{Action, ActionResult, Decision};
use cutover_core::state::{Final, Outcome, PauseReason, Phase};
use cutover_core::{
    DecisionRecord, Entry, Measurement, Revisions, RolloutId, StepRef, Summary, Timestamp,
    TrafficSplit,
};
use serde::{Deserialize, Serialize};

use crate::release::Release;

/// What is known of a rollout besides its records: who it is, what it ships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutInfo {
    /// The rollout.
    pub id: RolloutId,
    /// `canary`, `blue_green`, `rolling` or `ab_test`.
    pub strategy: String,
    /// Its revisions.
    pub revisions: Revisions,
    /// The service it changes: its [`Release`]'s, or the rollout id.
    pub service: String,
    /// Where it runs, when its release says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The commit it ships, when its release says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The artifact's package URL, when its release says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

impl RolloutInfo {
    /// A rollout known by its id, strategy and revisions; the service is the rollout id.
    pub fn new(id: RolloutId, strategy: impl Into<String>, revisions: Revisions) -> Self {
        RolloutInfo {
            service: id.as_str().to_owned(),
            id,
            strategy: strategy.into(),
            revisions,
            environment: None,
            commit: None,
            artifact: None,
        }
    }

    /// What a store's summary and the rollout's release say.
    pub fn of(summary: &Summary, release: Option<&Release>) -> Self {
        let info = RolloutInfo::new(
            summary.id.clone(),
            summary.strategy.clone(),
            summary.revisions.clone(),
        );
        match release {
            Some(release) => info.with_release(release),
            None => info,
        }
    }

    /// Takes the service, environment, commit and artifact from a release.
    pub fn with_release(mut self, release: &Release) -> Self {
        self.service.clone_from(&release.service);
        self.environment.clone_from(&release.environment);
        self.commit.clone_from(&release.commit);
        self.artifact.clone_from(&release.artifact);
        self
    }
}

/// How much a notice matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Progress: started, a step done, promoted.
    Info,
    /// Someone may want to look: paused on an inconclusive analysis, a failed measurement, an
    /// aborted rollout, a provider call that failed.
    Warning,
    /// Something went wrong: rolling back, rolled back, failed.
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! kinds {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// What happened. Records that are not worth telling anyone (waits, health checks,
        /// passing measurements) make no notice.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum NoticeKind {
            $($(#[doc = $doc])* $variant,)*
        }

        impl NoticeKind {
            /// Every kind.
            pub const ALL: &'static [NoticeKind] = &[$(NoticeKind::$variant,)*];

            /// The kind's name, as in JSON: `started`, `rolled_back`, ...
            pub fn as_str(self) -> &'static str {
                match self {
                    $(NoticeKind::$variant => $name,)*
                }
            }
        }
    };
}

kinds! {
    /// An engine started the rollout.
    Started => "started",
    /// An engine resumed a rollout another engine had started (after a crash or a takeover).
    EngineChanged => "engine_changed",
    /// The traffic split changed while progressing.
    WeightChanged => "weight_changed",
    /// A step of the strategy is done.
    StepCompleted => "step_completed",
    /// The rollout paused (a pause step, an inconclusive analysis, waiting for promotion).
    Paused => "paused",
    /// A command arrived (pause, resume, promote, abort, approve...), with who and why.
    Command => "command",
    /// A measurement failed its analysis.
    AnalysisFailed => "analysis_failed",
    /// An analysis could not measure.
    AnalysisError => "analysis_error",
    /// A provider call failed for good.
    ActionFailed => "action_failed",
    /// Promotion began.
    Promoting => "promoting",
    /// A rollback began.
    RollingBack => "rolling_back",
    /// The candidate is the new stable.
    Promoted => "promoted",
    /// Rolled back automatically.
    RolledBack => "rolled_back",
    /// Aborted by a command.
    Aborted => "aborted",
    /// An A/B test ended without promoting.
    Concluded => "concluded",
    /// A provider failed for good; traffic was returned to stable.
    Failed => "failed",
    /// A pre-flight gate (a checklist, an approval) refused the rollout before traffic moved.
    Refused => "refused",
    /// Pipeline: a stage's rollout promoted freight; the stage runs it.
    StagePromoted => "stage_promoted",
    /// Pipeline: the stage's environments verified the freight it runs.
    StageVerified => "stage_verified",
    /// Pipeline: a promotion waits for a person to approve it (a manual stage).
    AwaitingApproval => "awaiting_approval",
    /// Pipeline: a person rejected the promotion; the freight goes no further here.
    FreightBlocked => "freight_blocked",
    /// Pipeline: the freight failed in a stage (its rollout, its verification, or a person
    /// rolled it back); it is never promoted there or downstream again.
    FreightFailed => "freight_failed",
    /// Pipeline: a stage went back to its previous verified freight.
    StageRolledBack => "stage_rolled_back",
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NoticeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        NoticeKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = NoticeKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown notice kind `{}`; expected one of {}",
                    s.chars().take(40).collect::<String>(),
                    names.join(", ")
                )
            })
    }
}

impl NoticeKind {
    /// Whether the rollout ended with this notice.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            NoticeKind::Promoted
                | NoticeKind::RolledBack
                | NoticeKind::Aborted
                | NoticeKind::Concluded
                | NoticeKind::Failed
        )
    }
}

/// One thing worth telling about a rollout, made from one decision record. Its
/// [`id`](Notice::id) (`<rollout>/<seq>`) is the same on every delivery attempt and after a
/// restart: receivers deduplicate by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// `<rollout>/<seq>`: the idempotency key.
    pub id: String,
    /// What happened.
    pub kind: NoticeKind,
    /// How much it matters.
    pub severity: Severity,
    /// The rollout, its service and what it ships.
    pub rollout: RolloutInfo,
    /// The record's position in the rollout's decision log.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// The phase the rollout was in.
    pub phase: Phase,
    /// The step, while progressing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRef>,
    /// The split in effect (after the change, for `weight_changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<TrafficSplit>,
    /// The record's one line for people.
    pub summary: String,
    /// Why, when there is a reason: the rollback's cause, the pause's reason, a command's
    /// reason, the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who, for commands and takeovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A link to the rollout's page (the dashboard or a report), when the notifier knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// For pipeline notices: the pipeline, stage and freight. `rollout` is then the stage's
    /// rollout of that freight and `seq` the entry's position in the stage's history, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineRef>,
}

/// Where a pipeline notice happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRef {
    /// The pipeline's id (its `pipeline` document's id in the store).
    pub pipeline: String,
    /// The stage.
    pub stage: String,
    /// The freight's id.
    pub freight: String,
    /// The freight's name for people (`v2`).
    pub freight_name: String,
}

impl Notice {
    /// The notice a record makes, if it is worth one.
    pub fn from_record(rollout: &RolloutInfo, record: &DecisionRecord) -> Option<Notice> {
        let (kind, severity, reason, by) = classify(record)?;
        let split = match &record.entry {
            Entry::Decision {
                decision: Decision::Apply(Action::SetSplit { split }),
                ..
            } => Some(split.clone()),
            _ => record.inputs.split.clone(),
        };
        Some(Notice {
            id: format!("{}/{}", rollout.id, record.seq),
            kind,
            severity,
            rollout: rollout.clone(),
            seq: record.seq,
            at: record.at,
            phase: record.phase,
            step: record.step.clone(),
            split,
            summary: record.summary.clone(),
            reason,
            by,
            link: None,
            pipeline: None,
        })
    }

    /// One line: `checkout: rolled back`; for pipelines `shop prod v2: stage promoted`.
    pub fn headline(&self) -> String {
        match &self.pipeline {
            Some(p) => format!(
                "{} {} {}: {}",
                p.pipeline,
                p.stage,
                p.freight_name,
                self.kind_text()
            ),
            None => format!("{}: {}", self.rollout.service, self.kind_text()),
        }
    }

    /// The kind in words: `rolled back`, `weight changed`.
    pub fn kind_text(&self) -> String {
        self.kind.as_str().replace('_', " ")
    }

    /// The candidate's share of traffic in percent, when a split is known.
    pub fn candidate_percent(&self) -> Option<f64> {
        self.split
            .as_ref()
            .map(|s| s.weight(&self.rollout.revisions.candidate).percent())
    }
}

type Classified = (NoticeKind, Severity, Option<String>, Option<String>);

fn classify(record: &DecisionRecord) -> Option<Classified> {
    use NoticeKind as K;
    use Severity as S;
    Some(match &record.entry {
        Entry::Started {
            resumed: false,
            takeover: None,
            ..
        } => (K::Started, S::Info, None, None),
        Entry::Started {
            engine, takeover, ..
        } => match takeover {
            Some(t) => (
                K::EngineChanged,
                S::Warning,
                Some(format!("taken over from `{}`: {}", t.from, t.reason)),
                Some(t.by.clone()),
            ),
            None => (K::EngineChanged, S::Info, None, Some(engine.clone())),
        },
        Entry::Command { command, effect } => {
            let request = &command.request;
            let reason = (!request.reason.is_empty()).then(|| request.reason.clone());
            let severity = if effect.accepted { S::Info } else { S::Warning };
            (K::Command, severity, reason, Some(request.by.clone()))
        }
        Entry::Decision { decision, result } => {
            return classify_decision(record, decision, result.as_ref());
        }
        _ => return None,
    })
}

fn classify_decision(
    record: &DecisionRecord,
    decision: &Decision,
    result: Option<&ActionResult>,
) -> Option<Classified> {
    use NoticeKind as K;
    use Severity as S;
    Some(match decision {
        Decision::Apply(action) => match (action, result?) {
            (_, ActionResult::Failed { error, .. }) => {
                (K::ActionFailed, S::Warning, Some(error.clone()), None)
            }
            (Action::SetSplit { .. }, ActionResult::Done) if record.phase == Phase::Progressing => {
                (K::WeightChanged, S::Info, None, None)
            }
            (
                Action::Measure { .. },
                ActionResult::Measured {
                    measurement,
                    result,
                    error,
                },
            ) => match measurement {
                Measurement::Fail => (
                    K::AnalysisFailed,
                    S::Warning,
                    result.as_ref().map(|r| r.summary.clone()),
                    None,
                ),
                Measurement::Error => (K::AnalysisError, S::Warning, error.clone(), None),
                _ => return None,
            },
            _ => return None,
        },
        Decision::Advance if record.phase == Phase::Progressing => {
            (K::StepCompleted, S::Info, None, None)
        }
        Decision::Pause(reason) => {
            let severity = match reason {
                PauseReason::Inconclusive { .. } => S::Warning,
                _ => S::Info,
            };
            (K::Paused, severity, Some(reason.to_string()), None)
        }
        Decision::Promote => (K::Promoting, S::Info, None, None),
        Decision::Rollback(reason) => (K::RollingBack, S::Critical, Some(reason.to_string()), None),
        Decision::Complete(end) => match end {
            Final::Outcome(Outcome::Promoted) => (K::Promoted, S::Info, None, None),
            Final::Outcome(Outcome::RolledBack(reason)) => {
                (K::RolledBack, S::Critical, Some(reason.to_string()), None)
            }
            Final::Outcome(Outcome::Aborted { by, reason }) => (
                K::Aborted,
                S::Warning,
                (!reason.is_empty()).then(|| reason.clone()),
                Some(by.clone()),
            ),
            Final::Outcome(Outcome::Concluded { summary, .. }) => {
                (K::Concluded, S::Info, Some(summary.clone()), None)
            }
            Final::Outcome(Outcome::Refused { gate, reason }) => (
                K::Refused,
                S::Warning,
                Some(format!("refused by gate `{gate}`: {reason}")),
                None,
            ),
            Final::Failed { error } => (K::Failed, S::Critical, Some(error.clone()), None),
            Final::Outcome(_) => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in NoticeKind::ALL {
            assert_eq!(kind.as_str().parse::<NoticeKind>(), Ok(*kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().into())
            );
        }
        let err = "rollback".parse::<NoticeKind>().unwrap_err();
        assert!(err.contains("rolled_back"), "{err}");
    }

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }
}
