//! Engine and planner costs.
//!
//! - `planner/decide`: one decision in the middle of a canary.
//! - `engine/ten_step_canary`: a whole 10-step canary (25 virtual minutes) on in-memory
//!   providers: the engine's own overhead, as every provider answers at once.
//! - `engine/concurrent_rollouts/N`: N such canaries at once on one current-thread runtime.
//! - `state/save/N`: saving the state of a rollout that has made N decision records, to a
//!   memory store (the records themselves are in the log, so the cost does not grow with N).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cutover::planner::{Observation, decide};
use cutover::{MemoryStateStore, RolloutId, StateStore as _};
use cutover_benches::{paused_runtime, rollout};

/// The stored state of a finished ten-step canary.
fn finished_state() -> cutover::RolloutState {
    let runtime = paused_runtime();
    runtime.block_on(async {
        let store = MemoryStateStore::new();
        let r = cutover::Rollout::builder("bench", cutover_benches::ten_step_canary())
            .revisions("v1", "v2")
            .router(cutover::test::FakeRouter::new("mesh"))
            .analysis(
                "checks",
                cutover::test::ScriptedAnalysis::verdicts([cutover::Verdict::Pass]),
            )
            .state_store(store.clone())
            .build()
            .expect("a valid rollout");
        r.run().await.expect("promoted");
        store
            .load(&RolloutId::new("bench").expect("valid"))
            .await
            .expect("loads")
            .expect("stored")
            .state
    })
}

fn planner(c: &mut Criterion) {
    let state = finished_state();
    // Rewind to step 5 (an analysis) with a few measurements, as mid-rollout.
    let mut mid = state.clone();
    mid.phase = cutover::state::Phase::Progressing;
    mid.outcome = None;
    mid.step = 5;
    let setup = mid.setup.clone();
    let observation = Observation {
        now: mid.step_started_at + std::time::Duration::from_secs(90),
    };
    c.bench_function("planner/decide", |b| {
        b.iter(|| decide(black_box(&setup), black_box(&mid), black_box(&observation)));
    });
}

fn engine(c: &mut Criterion) {
    let runtime = paused_runtime();
    c.bench_function("engine/ten_step_canary", |b| {
        b.iter(|| runtime.block_on(async { rollout("one").run().await.expect("promoted") }));
    });
    let mut group = c.benchmark_group("engine/concurrent_rollouts");
    group.sample_size(10);
    for n in [100u64, 1000] {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..n)
                        .map(|i| tokio::spawn(rollout(&format!("r{i}")).run()))
                        .collect();
                    for task in tasks {
                        task.await.expect("joins").expect("promoted");
                    }
                });
            });
        });
    }
    group.finish();
}

/// The stored state of a canary with one analysis step of `measurements` measurements, taken
/// once it has written at least `records` decision records.
fn state_after(records: u64) -> cutover::RolloutState {
    let runtime = paused_runtime();
    runtime.block_on(async {
        // After one record: the state the claim saved, the first write.
        let crash_at = if records == 1 { 1 } else { u64::MAX };
        let store =
            cutover::test::CrashingStore::new(crash_at, cutover::test::CrashMode::AfterWrite);
        let plan = cutover::Plan::new(cutover::Canary::new([
            cutover::CanaryStep::set_weight(10).expect("a valid weight"),
            cutover::CanaryStep::Analysis(
                cutover::AnalysisRun::new("checks")
                    .with_count(u32::try_from(records).expect("small"))
                    .with_interval(std::time::Duration::from_secs(1)),
            ),
        ]));
        let r = cutover::Rollout::builder("bench", plan)
            .revisions("v1", "v2")
            .router(cutover::test::FakeRouter::new("mesh"))
            .analysis(
                "checks",
                cutover::test::ScriptedAnalysis::verdicts([cutover::Verdict::Pass]),
            )
            .state_store(store.clone())
            .build()
            .expect("a valid rollout");
        let id = RolloutId::new("bench").expect("valid");
        let inner = store.inner();
        let mut run = Box::pin(r.run());
        // Step the rollout until its state holds enough records.
        loop {
            tokio::select! {
                biased;
                done = &mut run => { done.expect("promoted"); }
                () = store.crashed() => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
            let state = inner.load(&id).await.expect("loads").expect("stored").state;
            if state.last_seq >= records || state.outcome.is_some() {
                return state;
            }
        }
    })
}

fn state(c: &mut Criterion) {
    let runtime = paused_runtime();
    let mut group = c.benchmark_group("state/save");
    for n in [1u64, 10, 100, 1000] {
        let state = state_after(n);
        let bytes = serde_json::to_vec(&state).expect("encodes").len();
        group.throughput(Throughput::Bytes(bytes as u64));
        let store = MemoryStateStore::new();
        let id = RolloutId::new("bench").expect("valid");
        let mut version = runtime
            .block_on(store.save(&id, &state, None))
            .expect("saves");
        group.bench_with_input(
            BenchmarkId::from_parameter(state.last_seq),
            &state,
            |b, s| {
                b.iter(|| {
                    version = runtime
                        .block_on(store.save(&id, black_box(s), Some(version)))
                        .expect("saves");
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, planner, engine, state);
criterion_main!(benches);
