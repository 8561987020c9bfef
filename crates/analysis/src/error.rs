use thiserror::Error;

/// Input that a statistic cannot be computed from.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// A group had no observations at all.
    #[error("group `{group}` has no observations")]
    Empty {
        /// Which group was empty.
        group: &'static str,
    },
    /// More successes than trials were given.
    #[error("group `{group}` has {successes} successes out of only {trials} trials")]
    SuccessesExceedTrials {
        /// Which group was inconsistent.
        group: &'static str,
        /// The number of successes given.
        successes: u64,
        /// The number of trials given.
        trials: u64,
    },
    /// A significance level outside the open interval (0, 1).
    #[error("alpha must lie strictly between 0 and 1, got {0}")]
    InvalidAlpha(f64),
}
