//! Repeated measurements adding up to one result, with Argo Rollouts' analysis-run semantics.

use serde::{Deserialize, Serialize};

use crate::Verdict;

/// The result of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measurement {
    /// Measured and good.
    Pass,
    /// Measured and bad.
    Fail,
    /// Measured, but the value did not support a conclusion (for example no data).
    Inconclusive,
    /// Could not be measured: the metric source failed.
    Error,
}

impl From<Verdict> for Measurement {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Pass => Measurement::Pass,
            Verdict::Fail => Measurement::Fail,
            Verdict::Inconclusive => Measurement::Inconclusive,
        }
    }
}

/// How many measurements a run takes and how many bad ones it tolerates.
///
/// The defaults are Argo Rollouts' defaults: one measurement, no failure tolerated, no
/// inconclusive measurement tolerated, and up to four consecutive errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunLimits {
    /// Measurements after which the run succeeds. `None` runs until a limit is hit (used for
    /// background analysis).
    pub count: Option<u32>,
    /// The run fails when the number of failed measurements exceeds this. `-1` (any negative
    /// value) disables failing. `failure_limit: 2` fails on the third failed measurement.
    pub failure_limit: i32,
    /// The run is inconclusive when the number of inconclusive measurements exceeds this.
    pub inconclusive_limit: u32,
    /// The run ends in error when the number of consecutive errors exceeds this.
    pub consecutive_error_limit: u32,
    /// Argo's `consecutiveSuccessLimit`: the run succeeds as soon as this many measurements in
    /// a row passed. `0` (the default) turns it off. When it is on and `count` measurements are
    /// taken without such a streak, the run is `Inconclusive`, or `Failed` when failing is
    /// disabled (`failure_limit < 0`, Argo's "failureLimit not applicable").
    pub consecutive_success_limit: u32,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            count: Some(1),
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            consecutive_success_limit: 0,
        }
    }
}

/// Where a run stands after its latest measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// More measurements are needed.
    Running,
    /// Enough measurements passed.
    Successful,
    /// Too many measurements failed.
    Failed,
    /// Too many measurements were inconclusive.
    Inconclusive,
    /// Too many consecutive measurements could not be taken.
    Error,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

/// Counters of one run's measurements.
///
/// ```
/// use cutover_analysis::{Measurement, RunLimits, RunStatus, Tally};
///
/// let limits = RunLimits { count: Some(5), failure_limit: 2, ..RunLimits::default() };
/// let mut tally = Tally::default();
/// for m in [Measurement::Fail, Measurement::Pass, Measurement::Fail] {
///     tally.record(m);
/// }
/// assert_eq!(tally.status(&limits), RunStatus::Running); // 2 failures, limit 2
/// tally.record(Measurement::Fail);
/// assert_eq!(tally.status(&limits), RunStatus::Failed); // the third failure exceeds it
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tally {
    /// Measurements taken (passed, failed or inconclusive; errors are not counted).
    pub count: u32,
    /// Passed measurements.
    pub passed: u32,
    /// Failed measurements.
    pub failed: u32,
    /// Inconclusive measurements.
    pub inconclusive: u32,
    /// Measurements that could not be taken.
    pub errors: u32,
    /// Errors since the last measurement that was taken.
    pub consecutive_errors: u32,
    /// Passed measurements in a row (any other measurement, errors included, resets it).
    pub consecutive_successes: u32,
}

impl Tally {
    /// Adds one measurement.
    pub fn record(&mut self, measurement: Measurement) {
        match measurement {
            Measurement::Pass => {
                self.passed += 1;
                self.consecutive_successes += 1;
            }
            Measurement::Fail => {
                self.failed += 1;
                self.consecutive_successes = 0;
            }
            Measurement::Inconclusive => {
                self.inconclusive += 1;
                self.consecutive_successes = 0;
            }
            Measurement::Error => {
                self.errors += 1;
                self.consecutive_errors += 1;
                self.consecutive_successes = 0;
                return;
            }
        }
        self.count += 1;
        self.consecutive_errors = 0;
    }

    /// The run's status under `limits`.
    ///
    /// When several limits are exceeded at once, error wins over inconclusive, which wins over
    /// failed (the order in which Argo Rollouts applies them).
    pub fn status(&self, limits: &RunLimits) -> RunStatus {
        if self.consecutive_errors > limits.consecutive_error_limit {
            return RunStatus::Error;
        }
        if self.inconclusive > limits.inconclusive_limit {
            return RunStatus::Inconclusive;
        }
        if u32::try_from(limits.failure_limit).is_ok_and(|limit| self.failed > limit) {
            return RunStatus::Failed;
        }
        let streak = limits.consecutive_success_limit;
        if streak > 0 && self.consecutive_successes >= streak {
            return RunStatus::Successful;
        }
        match limits.count {
            Some(count) if self.count >= count => {
                if streak == 0 {
                    RunStatus::Successful
                } else if limits.failure_limit < 0 {
                    RunStatus::Failed
                } else {
                    RunStatus::Inconclusive
                }
            }
            _ => RunStatus::Running,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Measurement::{Error, Fail, Inconclusive, Pass};
    use super::*;

    fn run(limits: &RunLimits, measurements: &[Measurement]) -> RunStatus {
        let mut tally = Tally::default();
        for &m in measurements {
            tally.record(m);
        }
        tally.status(limits)
    }

    #[test]
    fn argo_failure_limit_counts_failures_beyond_the_limit() {
        // ANALYSIS.md §4: the test asserts Failed at Failed = 3 with limit 2.
        let limits = RunLimits {
            count: Some(10),
            failure_limit: 2,
            ..RunLimits::default()
        };
        assert_eq!(run(&limits, &[Fail, Fail]), RunStatus::Running);
        assert_eq!(run(&limits, &[Fail, Fail, Fail]), RunStatus::Failed);
    }

    #[test]
    fn negative_failure_limit_never_fails() {
        let limits = RunLimits {
            count: Some(3),
            failure_limit: -1,
            ..RunLimits::default()
        };
        assert_eq!(run(&limits, &[Fail, Fail]), RunStatus::Running);
        assert_eq!(run(&limits, &[Fail, Fail, Fail]), RunStatus::Successful);
    }

    #[test]
    fn errors_do_not_count_as_measurements_and_reset_on_success() {
        let limits = RunLimits {
            count: Some(2),
            consecutive_error_limit: 2,
            ..RunLimits::default()
        };
        assert_eq!(run(&limits, &[Error, Error, Pass]), RunStatus::Running);
        assert_eq!(
            run(&limits, &[Error, Error, Pass, Error, Error, Pass]),
            RunStatus::Successful
        );
        assert_eq!(run(&limits, &[Pass, Error, Error, Error]), RunStatus::Error);
    }

    #[test]
    fn error_wins_over_inconclusive_wins_over_failed() {
        let limits = RunLimits {
            count: Some(10),
            consecutive_error_limit: 0,
            ..RunLimits::default()
        };
        assert_eq!(run(&limits, &[Fail, Inconclusive]), RunStatus::Inconclusive);
        assert_eq!(run(&limits, &[Fail, Inconclusive, Error]), RunStatus::Error);
    }

    #[test]
    fn unbounded_runs_only_end_on_limits() {
        let limits = RunLimits {
            count: None,
            ..RunLimits::default()
        };
        assert_eq!(run(&limits, &[Measurement::Pass; 100]), RunStatus::Running);
    }

    #[test]
    fn consecutive_success_limit_needs_a_streak() {
        let limits = RunLimits {
            count: Some(5),
            failure_limit: 3,
            consecutive_success_limit: 2,
            ..RunLimits::default()
        };
        assert_eq!(run(&limits, &[Pass, Fail, Pass]), RunStatus::Running);
        assert_eq!(
            run(&limits, &[Pass, Fail, Pass, Pass]),
            RunStatus::Successful
        );
        // An error breaks the streak.
        assert_eq!(run(&limits, &[Pass, Error, Pass]), RunStatus::Running);
        // Count reached without a streak: inconclusive, or failed when failing is disabled.
        let alternating = [Pass, Fail, Pass, Inconclusive, Pass];
        let limits = RunLimits {
            inconclusive_limit: 5,
            ..limits
        };
        assert_eq!(run(&limits, &alternating), RunStatus::Inconclusive);
        let no_fail = RunLimits {
            failure_limit: -1,
            ..limits
        };
        assert_eq!(run(&no_fail, &alternating), RunStatus::Failed);
        // The failure limit still applies first.
        assert_eq!(run(&limits, &[Fail, Fail, Fail, Fail]), RunStatus::Failed);
    }

    fn measurement() -> impl Strategy<Value = Measurement> {
        prop_oneof![
            Just(Measurement::Pass),
            Just(Measurement::Fail),
            Just(Measurement::Inconclusive),
            Just(Measurement::Error),
        ]
    }

    proptest! {
        /// A run that never saw a failure or an inconclusive measurement cannot end failed or
        /// inconclusive, and a run with no passing measurement cannot succeed unless failures
        /// are tolerated.
        #[test]
        fn status_follows_from_counters(
            ms in proptest::collection::vec(measurement(), 0..40),
            count in 1u32..10,
            failure_limit in -1i32..4,
            inconclusive_limit in 0u32..4,
            consecutive_error_limit in 0u32..5,
        ) {
            let limits = RunLimits { count: Some(count), failure_limit, inconclusive_limit, consecutive_error_limit, consecutive_success_limit: 0 };
            let mut tally = Tally::default();
            for &m in &ms {
                tally.record(m);
            }
            let status = tally.status(&limits);
            prop_assert_eq!(tally.count, tally.passed + tally.failed + tally.inconclusive);
            prop_assert_eq!(tally.count + tally.errors, u32::try_from(ms.len()).unwrap());
            if tally.failed == 0 { prop_assert_ne!(status, RunStatus::Failed); }
            if tally.inconclusive == 0 { prop_assert_ne!(status, RunStatus::Inconclusive); }
            if status == RunStatus::Successful { prop_assert!(tally.count >= count); }
            if tally.consecutive_errors > consecutive_error_limit { prop_assert_eq!(status, RunStatus::Error); }
        }
    }
}
