//! Engine and planner costs.
//!
//! - `planner/decide`: one decision in the middle of a canary.
//! - `engine/ten_step_canary`: a whole 10-step canary (25 virtual minutes) on in-memory
//!   providers: the engine's own overhead, as every provider answers at once.
//! - `engine/concurrent_rollouts/N`: N such canaries at once on one current-thread runtime.
//! - `state/encode/N`: serializing the state the engine saves before every effect, with N
//!   decision records in it.

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

fn state(c: &mut Criterion) {
    let state = finished_state();
    let mut group = c.benchmark_group("state/encode");
    for n in [10usize, 100, 1000] {
        let mut s = state.clone();
        let template = s.records.clone();
        s.records = template.iter().cycle().take(n).cloned().collect();
        let bytes = serde_json::to_vec(&s).expect("encodes").len();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &s, |b, s| {
            b.iter(|| serde_json::to_vec(black_box(s)));
        });
    }
    group.finish();
}

criterion_group!(benches, planner, engine, state);
criterion_main!(benches);
