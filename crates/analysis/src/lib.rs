//! Pure, synchronous statistics for cutover.
//!
//! # Overview
//!
//! This crate holds the parts of canary analysis that need no I/O and no clock:
//!
//! - [`Verdict`]: the three-way answer of every analysis, `Pass | Fail | Inconclusive`.
//! - [`Tally`] and [`RunLimits`]: how repeated measurements add up to one result, with the
//!   semantics of Argo Rollouts' analysis runs (`count`, `failureLimit`, `inconclusiveLimit`,
//!   `consecutiveErrorLimit`). A measurement that could not be taken ([`Measurement::Error`]) is
//!   kept apart from one that was taken and was bad ([`Measurement::Fail`]).
//! - [`quantile_r7`]: sample quantiles as R and NumPy compute them by default.
//! - [`two_proportion_test`]: the comparison of two rates (error or conversion rates) that A/B
//!   tests report as a winner, an effect and a confidence.
//! - [`sequential`]: anytime-valid tests (counts, distributions, means) that can be checked
//!   after every request with a guaranteed false-rollback rate, and their [`Decision`].
//!
//! Everything here works on plain numbers (`&[f64]`, counts) and is deterministic, so it is easy
//! to check against reference implementations (R, SciPy).
//!
//! # Usage
//!
//! ```
//! use cutover_analysis::{Measurement, RunLimits, RunStatus, Tally};
//!
//! let limits = RunLimits { count: Some(3), ..RunLimits::default() };
//! let mut tally = Tally::default();
//! tally.record(Measurement::Pass);
//! assert_eq!(tally.status(&limits), RunStatus::Running);
//! tally.record(Measurement::Fail);
//! // failure_limit defaults to 0: the first failed measurement fails the run.
//! assert_eq!(tally.status(&limits), RunStatus::Failed);
//! ```
#![forbid(unsafe_code)]
// Ties are exact f64 equality by definition (R's `rank`, SciPy's `rankdata`), and the formulas
// keep the one-letter names of their sources (R's `zeroin.c` and `wilcox.test`, the papers).
#![allow(clippy::float_cmp, clippy::many_single_char_names)]

mod ab;
mod condition;
mod error;
pub mod harness;
pub mod kayenta;
mod mann_whitney;
mod proportions;
mod quantile;
mod rank;
mod rng;
pub mod sequential;
mod tally;
mod verdict;
mod zeroin;

pub use self::ab::{
    ChiSquare, FisherExact, PowerSettings, WelchTest, chi_square_2x2, cohens_h, fisher_exact,
    power_normal, power_two_means, power_two_proportions, sample_size_normal,
    sample_size_two_means, sample_size_two_proportions, welch_t_test,
};
pub use self::condition::{Condition, ConditionError, ConditionInput, assess};
pub use self::error::AnalysisError;
pub use self::mann_whitney::{
    Alternative, EXACT_MAX_PAIRS, MannWhitney, Method, ShiftInterval, hodges_lehmann, mann_whitney,
    shift_interval,
};
pub use self::proportions::{Proportion, ProportionTest, two_proportion_test};
pub use self::quantile::quantile_r7;
pub use self::rank::rank_average;
pub use self::rng::SplitMix64;
pub use self::sequential::{Decision, Evidence};
pub use self::tally::{Measurement, RunLimits, RunStatus, Tally};
pub use self::verdict::Verdict;
pub use self::zeroin::zeroin;
