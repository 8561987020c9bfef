//! Kubernetes events about Rollouts (`kubectl describe crollout`, `kubectl get events`),
//! published through kube-runtime's `Recorder` (`events.k8s.io/v1`): phase changes, commands
//! taken from annotations, invalid specs, engines that cannot start, deletions.
//!
//! An event that cannot be published is logged and otherwise ignored: events are for people,
//! the status and the store hold the truth.

use kube::Resource as _;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::MANAGER;
use crate::crd::Rollout;

/// The event reasons the operator publishes besides phase names.
pub mod reason {
    /// The spec is invalid (Warning; the note names the field).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A command from the annotation was queued.
    pub const COMMAND_QUEUED: &str = "CommandQueued";
    /// A command from the annotation was not queued (Warning; the note says why).
    pub const COMMAND_REFUSED: &str = "CommandRefused";
    /// The engine cannot start on this replica (Warning; the note says why).
    pub const NOT_RUNNING: &str = "NotRunning";
    /// The Rollout is being deleted while its rollout runs: abort sent.
    pub const ABORT_ON_DELETE: &str = "AbortOnDelete";
}

/// Publishes events about Rollouts as the operator replica `engine`.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Events reported by controller [`MANAGER`], instance `engine`.
    pub fn new(client: kube::Client, engine: &str) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_owned(),
            instance: Some(engine.to_owned()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes an event about `rollout`: `reason` (`PascalCase`), what the operator was
    /// doing (`action`), and a note for people.
    pub async fn publish(
        &self,
        rollout: &Rollout,
        warning: bool,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(truncate(note.into(), 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &rollout.object_ref(&()))
            .await
        {
            tracing::warn!(reason, error = %e, "cannot publish an event");
        }
    }

    /// Publishes that `rollout` entered `phase` (a Warning for phases that need someone).
    pub async fn phase(&self, rollout: &Rollout, phase: &str, message: Option<&str>) {
        let warning = matches!(phase, "RolledBack" | "Failed" | "Refused" | "Invalid");
        let note = match message {
            Some(m) if !m.is_empty() => format!("{phase}: {m}"),
            _ => phase.to_owned(),
        };
        self.publish(rollout, warning, phase, "Reconcile", note)
            .await;
    }
}

/// `note`, cut to at most `max` bytes on a character boundary (an event note holds 1 kB).
fn truncate(mut note: String, max: usize) -> String {
    if note.len() > max {
        let mut end = max;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    note
}
