//! Commands that steer a rollout from outside: what they are, who sent them and why, and what
//! they did.
//!
//! A command is sent to a rollout's inbox in its [`StateStore`](crate::StateStore) by anyone who
//! can reach the store (a [`RolloutHandle`](crate::RolloutHandle), a command line, a dashboard,
//! another replica). The engine that owns the rollout applies queued commands in order between
//! decisions, saves the inbox position with their effect (so each applies exactly once, across
//! crashes), and records each one with who sent it and why.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Timestamp;

/// What a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Hold the rollout where it is (background analysis keeps running and can still roll back).
    Pause,
    /// Lift a pause: a manual pause, a pause step, an inconclusive analysis (accepted as
    /// passed), or a blue-green waiting for promotion.
    Resume,
    /// Skip the current step.
    Promote,
    /// Skip every remaining step and promote. Promotion gates still apply.
    PromoteFull,
    /// Roll back now: all traffic to stable, reversible expand migrations reverted.
    Abort,
    /// Approve the gate named by the request's `subject` (an [`ApprovalGate`](crate::ApprovalGate)
    /// opens once approved).
    Approve,
    /// Reject the gate named by the request's `subject` (an approval gate then closes).
    Reject,
}

impl Command {
    /// Every command, for help texts and parsers.
    pub const ALL: [Command; 7] = [
        Command::Pause,
        Command::Resume,
        Command::Promote,
        Command::PromoteFull,
        Command::Abort,
        Command::Approve,
        Command::Reject,
    ];

    /// The command's name: `pause`, `resume`, `promote`, `promote-full`, `abort`, `approve`,
    /// `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::PromoteFull => "promote-full",
            Command::Abort => "abort",
            Command::Approve => "approve",
            Command::Reject => "reject",
        }
    }

    /// Whether the command is about something named in the request's `subject` (a gate).
    pub fn needs_subject(self) -> bool {
        matches!(self, Command::Approve | Command::Reject)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = CommandError;

    /// Parses a command's name (`promote-full` or `promote_full`).
    fn from_str(s: &str) -> Result<Self, CommandError> {
        Command::ALL
            .into_iter()
            .find(|c| c.as_str() == s || c.as_str().replace('-', "_") == s)
            .ok_or_else(|| CommandError::UnknownCommand(s.chars().take(40).collect()))
    }
}

/// Why a command request is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No command has this name.
    #[error(
        "unknown command `{0}`: expected pause, resume, promote, promote-full, abort, approve or reject"
    )]
    UnknownCommand(String),
    /// A field is empty, too long or holds control characters.
    #[error("command field `{field}` {problem}")]
    Invalid {
        /// `by`, `reason` or `key`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

const MAX_BY: usize = 253;
const MAX_REASON: usize = 2048;
const MAX_KEY: usize = 253;

/// A command as sent: what, by whom, why, and an optional idempotency key.
///
/// Sending the same key twice to one rollout queues the command once: the second send returns
/// the command already queued. Without a key every send queues a new command.
///
/// ```
/// use cutover_core::{Command, CommandRequest};
/// let request = CommandRequest::new(Command::Pause, "alice")
///     .reason("error budget alert on checkout")
///     .key("incident-4711-pause");
/// assert!(request.validate().is_ok());
/// assert!(CommandRequest::new(Command::Abort, "").validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// What to do.
    pub command: Command,
    /// Who asks: a person, a tool, another replica.
    pub by: String,
    /// Why, for the record (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What the command is about: the gate to approve or reject. Required for those two,
    /// refused for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl CommandRequest {
    /// A command sent by `by`, with no reason and no key.
    pub fn new(command: Command, by: impl Into<String>) -> Self {
        CommandRequest {
            command,
            by: by.into(),
            reason: String::new(),
            subject: None,
            key: None,
        }
    }

    /// Names what the command is about (the gate of an approval).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Sets the idempotency key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Checks the fields: `by` is 1 to 253 characters, `reason` at most 2048, `key` and
    /// `subject` 1 to 253, none with control characters (a reason may hold line breaks); a
    /// subject is given exactly for the commands that need one.
    pub fn validate(&self) -> Result<(), CommandError> {
        check("by", &self.by, MAX_BY, false)?;
        match (&self.subject, self.command.needs_subject()) {
            (Some(subject), true) => check("subject", subject, MAX_KEY, false)?,
            (None, true) => {
                return Err(CommandError::Invalid {
                    field: "subject",
                    problem: format!("must name the gate to {}", self.command),
                });
            }
            (Some(_), false) => {
                return Err(CommandError::Invalid {
                    field: "subject",
                    problem: format!("is not taken by {}", self.command),
                });
            }
            (None, false) => {}
        }
        if !self.reason.is_empty() {
            check("reason", &self.reason, MAX_REASON, true)?;
        }
        if let Some(key) = &self.key {
            check("key", key, MAX_KEY, false)?;
        }
        Ok(())
    }
}

fn check(field: &'static str, value: &str, max: usize, newlines: bool) -> Result<(), CommandError> {
    let invalid = |problem: String| Err(CommandError::Invalid { field, problem });
    if value.trim().is_empty() {
        return invalid("must not be empty".into());
    }
    let len = value.chars().count();
    if len > max {
        return invalid(format!("is {len} characters long; the limit is {max}"));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| c.is_control() && !(newlines && c == '\n'))
    {
        return invalid(format!("contains the control character {c:?}"));
    }
    Ok(())
}

/// A command in a rollout's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedCommand {
    /// Position in the rollout's inbox, from 1, gap-free.
    pub seq: u64,
    /// When the store queued it.
    pub sent_at: Timestamp,
    /// The command as sent.
    #[serde(flatten)]
    pub request: CommandRequest,
}

impl QueuedCommand {
    /// What it asks for.
    pub fn command(&self) -> Command {
        self.request.command
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEffect {
    /// Whether it changed anything.
    pub accepted: bool,
    /// What it did, or why it was refused.
    pub note: String,
}

impl CommandEffect {
    pub(crate) fn accepted(note: impl Into<String>) -> Self {
        CommandEffect {
            accepted: true,
            note: note.into(),
        }
    }

    pub(crate) fn refused(note: impl Into<String>) -> Self {
        CommandEffect {
            accepted: false,
            note: note.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Command::ALL {
            assert_eq!(c.as_str().parse::<Command>(), Ok(c));
        }
        assert_eq!("promote_full".parse::<Command>(), Ok(Command::PromoteFull));
        assert!("rollback".parse::<Command>().is_err());
    }

    #[test]
    fn requests_are_checked() {
        let ok = CommandRequest::new(Command::Pause, "alice").reason("line one\nline two");
        assert_eq!(ok.validate(), Ok(()));
        let approve = CommandRequest::new(Command::Approve, "alice").subject("change-ticket");
        assert_eq!(approve.validate(), Ok(()));
        for bad in [
            CommandRequest::new(Command::Pause, " "),
            CommandRequest::new(Command::Pause, "a".repeat(254)),
            CommandRequest::new(Command::Pause, "al\u{1b}ice"),
            CommandRequest::new(Command::Pause, "alice").reason("x".repeat(2049)),
            CommandRequest::new(Command::Pause, "alice").key(""),
            CommandRequest::new(Command::Pause, "alice").key("a\nb"),
            CommandRequest::new(Command::Approve, "alice"),
            CommandRequest::new(Command::Pause, "alice").subject("change-ticket"),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn queued_commands_serialize_flat() {
        let q = QueuedCommand {
            seq: 3,
            sent_at: Timestamp::from_unix_millis(0),
            request: CommandRequest::new(Command::PromoteFull, "ci").key("k"),
        };
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["command"], "promote_full");
        assert_eq!(json["by"], "ci");
        assert_eq!(json["key"], "k");
        assert_eq!(serde_json::from_value::<QueuedCommand>(json).unwrap(), q);
    }
}
