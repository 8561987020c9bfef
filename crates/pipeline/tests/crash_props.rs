//! Crash and resume over random pipelines: small graphs of stages (fan-out, fan-in, soak,
//! verification analyses), freight that fails a random stage's rollout, `Environment::verify`
//! or verification analysis, an executor stopped at a random write to the store, and a fresh
//! executor on what was saved. It must end where an executor that never crashed ends.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::{Env, PLAN, T0, events, v};
use cutover_core::{MemoryStateStore, StateStore, TokioClock};
use cutover_pipeline::{Executor, FreightId, Pipeline, PipelineHandle};
use cutover_test::{CrashMode, CrashingStore};
use proptest::prelude::*;
use std::sync::Arc;

/// Where v2 goes wrong in a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The stage rollout's analysis fails: it rolls back by itself.
    Rollout,
    /// `Environment::verify` fails after the rollout promoted.
    Verify,
    /// The stage's verification analysis fails after the rollout promoted.
    Analysis,
}

#[derive(Debug, Clone)]
struct StageGen {
    /// Indexes of earlier stages it takes freight from (none for the first).
    upstreams: Vec<usize>,
    one_of: bool,
    soak: bool,
    verification: bool,
    fault: Fault,
}

fn stage_gen(i: usize) -> impl Strategy<Value = StageGen> {
    (
        any::<u8>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            5 => Just(Fault::None),
            1 => Just(Fault::Rollout),
            1 => Just(Fault::Verify),
            1 => Just(Fault::Analysis),
        ],
    )
        .prop_map(move |(mask, one_of, soak, verification, fault)| {
            let mut upstreams: Vec<usize> = (0..i).filter(|j| mask & (1 << j) != 0).collect();
            if i > 0 && upstreams.is_empty() {
                upstreams.push(usize::from(mask) % i);
            }
            StageGen {
                upstreams,
                one_of,
                soak,
                verification: verification || fault == Fault::Analysis,
                fault,
            }
        })
}

/// Random graphs whose end does not depend on which of two concurrent stages gets there first.
///
/// A `one_of` stage with a faulty stage among its ancestors may take v2 from another upstream
/// before the faulty one fails it (then it keeps it), or after (then v2, "failed upstream",
/// never comes). Both are what the pipeline promises, crash or not, so there is no one right
/// end to compare with: such a stage takes its freight from all its upstreams instead.
fn dag() -> impl Strategy<Value = Vec<StageGen>> {
    (2usize..=5)
        .prop_flat_map(|n| (0..n).map(stage_gen).collect::<Vec<_>>())
        .prop_map(|mut gens| {
            let mut faulty_above: Vec<bool> = Vec::new();
            for i in 0..gens.len() {
                let above = gens[i]
                    .upstreams
                    .iter()
                    .any(|&u| faulty_above[u] || gens[u].fault != Fault::None);
                if above {
                    gens[i].one_of = false;
                }
                faulty_above.push(above);
            }
            gens
        })
}

fn pipeline(gens: &[StageGen]) -> Pipeline {
    let mut yaml = format!("name: crashy\n{PLAN}\nstages:\n");
    for (i, g) in gens.iter().enumerate() {
        let _ = write!(yaml, "  - {{ name: s{i}, providers: [s{i}]");
        if !g.upstreams.is_empty() {
            let ups: Vec<String> = g.upstreams.iter().map(|u| format!("s{u}")).collect();
            let _ = write!(yaml, ", upstreams: [{}]", ups.join(", "));
        }
        if g.one_of {
            yaml.push_str(", availability: one_of");
        }
        if g.soak {
            yaml.push_str(", soak: 10m");
        }
        if g.verification {
            yaml.push_str(", verification: { runs: [ { name: smoke, interval: 1m, count: 2 } ] }");
        }
        yaml.push_str(" }\n");
    }
    Pipeline::from_yaml(&yaml).unwrap()
}

/// The stages' environments, with v2's faults in place. They outlive executors, as real
/// environments do.
fn environments(gens: &[StageGen]) -> Vec<Env> {
    gens.iter()
        .enumerate()
        .map(|(i, g)| {
            let env = Env::new(&format!("s{i}"));
            let set = match g.fault {
                Fault::None => None,
                Fault::Rollout => Some(&env.bad_rollout),
                Fault::Verify => Some(&env.bad_verify),
                Fault::Analysis => Some(&env.bad_analysis),
            };
            if let Some(set) = set {
                set.lock().unwrap().insert("app@v2".into());
            }
            env
        })
        .collect()
}

fn executor(pipeline: &Pipeline, envs: &[Env], store: impl StateStore + 'static) -> Executor {
    let mut builder = Executor::builder(pipeline.clone())
        .state_store(store)
        .clock(TokioClock::starting_at(T0))
        .poll_interval(Duration::from_secs(30));
    for (i, env) in envs.iter().enumerate() {
        builder = builder.environment(format!("s{i}"), env.clone());
    }
    builder.build().unwrap()
}

/// How a run ends, without times: each stage's freight, verified and failed freight and
/// history, and what each router serves.
fn outcome(envs: &[Env], state: &cutover_pipeline::PipelineState) -> String {
    let mut out = String::new();
    for (i, env) in envs.iter().enumerate() {
        let stage = format!("s{i}");
        let s = state.stage(&stage);
        let _ = writeln!(
            out,
            "{stage}: current {:?} verified {:?} failed {:?} history {:?} serves {:?}",
            s.current_id().map(FreightId::short),
            s.verified.keys().map(FreightId::short).collect::<Vec<_>>(),
            s.failed.keys().map(FreightId::short).collect::<Vec<_>>(),
            events(state, &stage),
            env.router.current(),
        );
    }
    out
}

/// Runs the pipeline with v1 adopted and v2 submitted, the executor stopped at write
/// `crash_at` (then a fresh one on what was saved). Returns the outcome, the writes the first
/// executor made, and whether it crashed.
async fn run(gens: &[StageGen], crash_at: u64, mode: CrashMode) -> (String, u64, bool) {
    let pipeline = pipeline(gens);
    let envs = environments(gens);
    let inner = MemoryStateStore::new();
    let ci = PipelineHandle::new(
        Arc::new(inner.clone()),
        pipeline.clone(),
        Arc::new(TokioClock::starting_at(T0)),
    )
    .by("ci");
    ci.adopt(v(1)).await.unwrap();
    ci.submit(v(2)).await.unwrap();
    let store = CrashingStore::wrapping(inner.clone(), crash_at, mode);
    let first = executor(&pipeline, &envs, store.clone());
    let finished = tokio::select! {
        state = first.run_until_settled() => Some(state.unwrap()),
        () = store.crashed() => None,
    };
    drop(first);
    let writes = store.writes();
    if let Some(state) = finished {
        return (outcome(&envs, &state), writes, false);
    }
    // The process is gone; let the runtime drop its tasks, then start again on the store.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let state = executor(&pipeline, &envs, inner)
        .run_until_settled()
        .await
        .unwrap();
    (outcome(&envs, &state), writes, true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_at_a_random_write_of_a_random_pipeline_resumes_to_the_same_end(
        gens in dag(),
        at in 0.0f64..1.0,
        before in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let (reference, writes, crashed) = run(&gens, u64::MAX, CrashMode::AfterWrite).await;
            prop_assert!(!crashed);
            prop_assert!(writes > 0);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let crash_at = 1 + (at * writes as f64) as u64;
            let mode = if before { CrashMode::BeforeWrite } else { CrashMode::AfterWrite };
            let (result, _, crashed) = run(&gens, crash_at, mode).await;
            prop_assert!(crashed, "no crash at write {} of {}", crash_at, writes);
            prop_assert_eq!(result, reference, "crash at write {} of {} ({:?})", crash_at, writes, mode);
            Ok(())
        })?;
    }
}
