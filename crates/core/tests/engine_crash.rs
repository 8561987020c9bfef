//! Crash and resume: stop the engine at every write (state save or log append) of random plans, start a fresh engine on the
//! same store, and check it reaches the same end with every migration run exactly once.

mod common;

use std::collections::BTreeMap;

use common::*;
use cutover_core::{
    AnalysisRun, AutoPromotion, BlueGreen, Canary, CanaryStep, HeaderRoute, MigrationPhase,
    Outcome, Plan, RolloutError, RouteMatch, Scale, StateStore, Strategy as PlanStrategy,
    Timestamp, TokioClock, TrafficSplit, Verdict, Weight,
};
use cutover_test::{
    CrashMode, CrashingStore, FakeGate, FakeMigration, FakeProbe, FakeRouter, FakeWorkload,
    ScriptedAnalysis,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum StepSpec {
    Weight(u16),
    Pause(u64),
    Analysis(Verdict),
    Route,
    Scale(u32),
}

#[derive(Debug, Clone)]
struct Spec {
    blue_green: Option<(bool, Verdict)>,
    steps: Vec<StepSpec>,
    migrations: Vec<(MigrationPhase, bool)>,
}

/// The world a rollout acts on: it outlives engines, as real infrastructure does.
struct World {
    router: FakeRouter,
    workload: FakeWorkload,
    migrations: Vec<FakeMigration>,
    analyses: BTreeMap<String, ScriptedAnalysis>,
}

fn strategy_of(spec: &Spec, analyses: &mut BTreeMap<String, ScriptedAnalysis>) -> PlanStrategy {
    if let Some((post, verdict)) = spec.blue_green {
        analyses.insert("post".into(), ScriptedAnalysis::verdicts([verdict]));
        return PlanStrategy::BlueGreen(BlueGreen {
            preview_route: Some(
                HeaderRoute::new("preview", [RouteMatch::header_exact("x-preview", "1")]).unwrap(),
            ),
            post_promotion_analysis: post.then(|| AnalysisRun::new("post").with_count(2)),
            auto_promotion: AutoPromotion::After(mins(3)),
            replicas: Some(3),
            preview_replicas: Some(1),
            ..BlueGreen::default()
        });
    }
    let mut steps = Vec::new();
    let mut route_open = false;
    for (i, s) in spec.steps.iter().enumerate() {
        steps.push(match s {
            StepSpec::Weight(bp) => CanaryStep::SetWeight(Weight::from_basis_points(*bp).unwrap()),
            StepSpec::Pause(m) => CanaryStep::pause(mins(*m)),
            StepSpec::Analysis(verdict) => {
                // One analysis per step with a constant answer: repeating a measurement after a
                // crash must not change what it says.
                let name = format!("a{i}");
                analyses.insert(name.clone(), ScriptedAnalysis::verdicts([*verdict]));
                CanaryStep::Analysis(AnalysisRun::new(name).with_count(2))
            }
            StepSpec::Route if route_open => {
                route_open = false;
                CanaryStep::RemoveHeaderRoute("testers".into())
            }
            StepSpec::Route => {
                route_open = true;
                CanaryStep::SetHeaderRoute(
                    HeaderRoute::new("testers", [RouteMatch::header_exact("x-canary", "1")])
                        .unwrap(),
                )
            }
            StepSpec::Scale(n) => CanaryStep::Scale(Scale { replicas: *n }),
        });
    }
    PlanStrategy::Canary(Canary::new(steps))
}

fn world(spec: &Spec) -> (World, Plan) {
    let mut analyses = BTreeMap::new();
    let strategy = strategy_of(spec, &mut analyses);
    let workload = FakeWorkload::new("deployments");
    workload.set_replicas(&stable(), 3);
    let migrations = spec
        .migrations
        .iter()
        .enumerate()
        .map(|(i, (phase, reversible))| {
            let m = FakeMigration::new(format!("m{i}"), *phase);
            if *reversible { m.reversible() } else { m }
        })
        .collect();
    let world = World {
        router: FakeRouter::new("mesh"),
        workload,
        migrations,
        analyses,
    };
    (world, plan_for(strategy))
}

fn plan_for(strategy: PlanStrategy) -> Plan {
    Plan::new(strategy)
        .with_bake_time(mins(2))
        .with_retry(cutover_core::RetryPolicy {
            jitter: 0.0,
            ..cutover_core::RetryPolicy::default()
        })
}

fn rollout(
    world: &World,
    plan: &Plan,
    store: impl StateStore + 'static,
    clock: TokioClock,
) -> cutover_core::Rollout {
    let mut b = cutover_core::Rollout::builder("crashy", plan.clone())
        .revisions("v1", "v2")
        .clock(clock)
        .router(world.router.clone())
        .workload(world.workload.clone())
        .health_probe(FakeProbe::new())
        .gate(
            cutover_core::GateStage::PreFlight,
            FakeGate::open("preflight"),
        )
        .state_store(store);
    for m in &world.migrations {
        b = b.migration(m.clone());
    }
    for (name, a) in &world.analyses {
        b = b.analysis(name.clone(), a.clone());
    }
    b.build().unwrap()
}

/// What must be the same after a crash.
#[derive(Debug, PartialEq)]
struct Ending {
    outcome: Result<Outcome, String>,
    /// The distinct splits in order (a split repeated after a crash is the same traffic).
    path: Vec<TrafficSplit>,
    /// `apply` and `revert` calls per migration.
    migration_calls: Vec<(u64, u64)>,
    stable_replicas: u32,
    candidate_replicas: u32,
}

fn ending(world: &World, outcome: Result<Outcome, RolloutError>) -> Ending {
    let mut path = world.router.splits();
    path.dedup();
    Ending {
        outcome: outcome.map_err(|e| e.to_string()),
        path,
        migration_calls: world
            .migrations
            .iter()
            .map(|m| (m.faults().calls("apply"), m.faults().calls("revert")))
            .collect(),
        stable_replicas: world.workload.desired(&stable()),
        candidate_replicas: world.workload.desired(&candidate()),
    }
}

fn step_spec() -> impl Strategy<Value = StepSpec> {
    prop_oneof![
        3 => (0u16..=100).prop_map(|p| StepSpec::Weight(p * 100)),
        1 => (1u64..10).prop_map(StepSpec::Pause),
        2 => prop_oneof![4 => Just(Verdict::Pass), 1 => Just(Verdict::Fail)].prop_map(StepSpec::Analysis),
        1 => Just(StepSpec::Route),
        1 => (1u32..5).prop_map(StepSpec::Scale),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::weighted(
            0.25,
            (
                any::<bool>(),
                prop_oneof![Just(Verdict::Pass), Just(Verdict::Fail)],
            ),
        ),
        proptest::collection::vec(step_spec(), 1..7),
        proptest::collection::vec(
            (
                prop_oneof![Just(MigrationPhase::Expand), Just(MigrationPhase::Contract)],
                any::<bool>(),
            ),
            0..4,
        ),
    )
        .prop_map(|(blue_green, steps, migrations)| Spec {
            blue_green,
            steps,
            migrations,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn resuming_after_a_crash_at_any_save_reaches_the_same_end(spec in spec()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let clock = TokioClock::starting_at(Timestamp::from_unix_millis(1_700_000_000_000));

            let (reference_world, plan) = world(&spec);
            let counting = CrashingStore::new(u64::MAX, CrashMode::AfterWrite);
            let outcome = rollout(&reference_world, &plan, counting.clone(), clock).run().await;
            let reference = ending(&reference_world, outcome);
            prop_assert!(reference.outcome.is_ok(), "{:?}", reference.outcome);
            let saves = counting.writes();

            for crash_at in 1..=saves {
                for mode in [CrashMode::AfterWrite, CrashMode::BeforeWrite] {
                    let (world, plan) = world(&spec);
                    let store = CrashingStore::new(crash_at, mode);
                    let first = rollout(&world, &plan, store.clone(), clock);
                    tokio::select! {
                        result = first.run() => prop_assert!(false, "no crash at save {crash_at}: {result:?}"),
                        () = store.crashed() => {}
                    }
                    // What the dead engine left: records in the log, and records saved with the
                    // state but maybe not appended yet.
                    let id = cutover_core::RolloutId::new("crashy").unwrap();
                    let mut left = store.inner().records(&id, 0, usize::MAX).await.unwrap();
                    if let Some(stored) = store.inner().load(&id).await.unwrap() {
                        for r in stored.state.unlogged {
                            if r.seq > left.last().map_or(0, |l| l.seq) {
                                left.push(r);
                            }
                        }
                    }
                    let resumed = rollout(&world, &plan, store.inner(), clock).run().await;
                    let after_crash = ending(&world, resumed);
                    prop_assert_eq!(&after_crash, &reference, "crash at write {} of {} ({:?})", crash_at, saves, mode);
                    // The log is gap-free from 1, keeps every record the dead engine saved, and
                    // holds each record once.
                    let log = store.inner().records(&id, 0, usize::MAX).await.unwrap();
                    let last = store.inner().load(&id).await.unwrap().unwrap().state.last_seq;
                    let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
                    prop_assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
                    prop_assert!(log.len() >= left.len() && log[..left.len()] == left[..], "a record the first engine saved was lost or rewritten (crash at write {})", crash_at);
                    prop_assert_eq!(log.iter().filter(|r| r.summary.starts_with("finished")).count(), 1);
                }
            }
            Ok(())
        })?;
    }
}
