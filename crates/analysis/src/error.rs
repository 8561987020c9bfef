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
    /// A sample held NaN where NaN has no meaning.
    #[error("sample `{group}` contains NaN")]
    NotANumber {
        /// Which sample.
        group: &'static str,
    },
    /// A sample held an infinite value where only finite values have a meaning.
    #[error("sample `{group}` contains an infinite value")]
    Infinite {
        /// Which sample.
        group: &'static str,
    },
    /// The exact distribution was asked for, but the samples have ties.
    #[error("the exact Mann-Whitney distribution assumes no ties; use the asymptotic method")]
    ExactWithTies,
    /// The exact distribution was asked for samples too large for it.
    #[error("the exact Mann-Whitney distribution is limited to m·n ≤ 10000 pairs, got {m}×{n}")]
    ExactTooLarge {
        /// Size of x.
        m: usize,
        /// Size of y.
        n: usize,
    },
    /// A confidence level outside the open interval (0, 1).
    #[error("the confidence level must lie strictly between 0 and 1, got {0}")]
    InvalidConfLevel(f64),
    /// Every observation is tied, so the rank statistic has no spread.
    #[error("cannot compute a confidence interval when all observations are tied")]
    AllTied,
    /// Any other argument out of its domain; the message names it.
    #[error("{0}")]
    Invalid(String),
}
