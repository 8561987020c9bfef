//! Exit codes, and the failure every command returns when it cannot do its job.

use std::fmt;
use std::process::ExitCode;

/// What a command's exit code means. The numbers are documented in `--help` and docs/cli.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Success.
    Ok = 0,
    /// The rollout did not promote (rolled back, aborted), or the drill found a problem.
    NotPromoted = 1,
    /// Invalid input: a plan, a run file or an imported config.
    Invalid = 3,
    /// The store: unreachable, unknown rollout, finished, owned by another engine.
    Store = 4,
    /// The rollout failed: a provider error, or the plan could not be carried out.
    Failed = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Why a command stopped: a message for standard error and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(Exit::Invalid, message)
    }

    pub(crate) fn store(message: impl Into<String>) -> Self {
        Self::new(Exit::Store, message)
    }

    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A store error as a failure, with the exit code for the store.
pub(crate) fn store_error(err: &cutover::StoreError) -> Failure {
    Failure::store(chain(err))
}

/// An error and its sources on one line.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
