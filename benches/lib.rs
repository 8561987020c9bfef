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

/// `n` log-normal values (μ 3, σ 0.5) times `scale`, from a fixed `seed`: latency-like data
/// for the statistics benchmarks, without a random-number dependency.
pub fn lognormal(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        // xorshift64*: plenty for benchmark data.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        #[allow(clippy::cast_precision_loss)]
        let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        u.max(f64::MIN_POSITIVE)
    };
    (0..n)
        .map(|_| {
            let z = (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
            (3.0 + 0.5 * z).exp() * scale
        })
        .collect()
}
