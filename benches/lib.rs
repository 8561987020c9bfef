//! Shared setup for the benchmarks: a 10-step canary on in-memory providers.

use std::time::Duration;

use cutover::test::{FakeRouter, ScriptedAnalysis};
use cutover::{
    AnalysisRun, Canary, CanaryStep, Plan, RetryPolicy, Rollout, Timestamp, TokioClock, Verdict,
};

/// A canary of ten steps: five weights, each followed by a 5-minute analysis of 5 measurements.
pub fn ten_step_canary() -> Plan {
    let mut steps = Vec::new();
    for percent in [5, 10, 25, 50, 75] {
        steps.push(CanaryStep::set_weight(percent).expect("a valid weight"));
        steps.push(CanaryStep::Analysis(
            AnalysisRun::new("checks")
                .with_count(5)
                .with_interval(Duration::from_mins(1)),
        ));
    }
    Plan::new(Canary::new(steps)).with_retry(RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    })
}

/// A rollout of [`ten_step_canary`] called `id`, on a fresh fake router, with passing analysis.
pub fn rollout(id: &str) -> Rollout {
    Rollout::builder(id, ten_step_canary())
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .analysis("checks", ScriptedAnalysis::verdicts([Verdict::Pass]))
        .clock(TokioClock::starting_at(Timestamp::from_unix_millis(0)))
        .build()
        .expect("a valid rollout")
}

/// A current-thread runtime on paused time.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}
