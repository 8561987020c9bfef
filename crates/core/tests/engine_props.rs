//! Property tests of the engine and the planner over random plans.

mod common;

use std::collections::BTreeMap;

use common::*;
use cutover_core::planner::{
    Action, ActionResult, Command, Decision, Observation, Setup, apply_command, apply_decision,
    apply_result,
};
use cutover_core::state::{Final, RolloutState};
use cutover_core::{
    AbTest, AnalysisResult, AnalysisRun, AutoPromotion, BlueGreen, Canary, CanaryStep,
    CommandRequest, Comparison, ErrorKind, GateVerdict, Health, Measurement, OnInconclusive,
    Outcome, Plan, Quantity, ReplicaStatus, Revisions, Rolling, RolloutEvent, RolloutId, Scale,
    Timestamp, Verdict, Weight,
};
use cutover_test::{FakeRouter, ScriptedAnalysis};
use futures_util::StreamExt as _;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum StepSpec {
    Weight(u16),
    Pause(u64),
    PauseUntilResumed,
    Analysis(Vec<Verdict>, OnInconclusive),
}

#[derive(Debug, Clone, Copy)]
enum Person {
    Resume,
    Promote,
    PromoteFull,
    Abort,
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![4 => Just(Verdict::Pass), 1 => Just(Verdict::Fail), 1 => Just(Verdict::Inconclusive)]
}

fn on_inconclusive() -> impl Strategy<Value = OnInconclusive> {
    prop_oneof![
        Just(OnInconclusive::Pause),
        Just(OnInconclusive::Abort),
        (1u32..3).prop_map(|times| OnInconclusive::Extend {
            times,
            then: cutover_core::AfterExtensions::Abort
        }),
    ]
}

fn step() -> impl Strategy<Value = StepSpec> {
    prop_oneof![
        3 => (0u16..=10_000).prop_map(StepSpec::Weight),
        1 => (1u64..60).prop_map(StepSpec::Pause),
        1 => Just(StepSpec::PauseUntilResumed),
        2 => (proptest::collection::vec(verdict(), 1..4), on_inconclusive())
            .prop_map(|(v, a)| StepSpec::Analysis(v, a)),
    ]
}

fn person() -> impl Strategy<Value = Person> {
    prop_oneof![
        4 => Just(Person::Resume),
        1 => Just(Person::Promote),
        1 => Just(Person::PromoteFull),
        1 => Just(Person::Abort),
    ]
}

struct Built {
    canary: Canary,
    analyses: Vec<(String, ScriptedAnalysis)>,
    weights: Vec<u16>,
}

fn build(steps: &[StepSpec], background: Option<Vec<Verdict>>) -> Built {
    let mut analyses = Vec::new();
    let mut weights = Vec::new();
    let mut canary_steps = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        canary_steps.push(match s {
            StepSpec::Weight(bp) => {
                weights.push(*bp);
                CanaryStep::SetWeight(Weight::from_basis_points(*bp).unwrap())
            }
            StepSpec::Pause(m) => CanaryStep::pause(mins(*m)),
            StepSpec::PauseUntilResumed => CanaryStep::pause_until_resumed(),
            StepSpec::Analysis(verdicts, action) => {
                let name = format!("a{i}");
                analyses.push((name.clone(), ScriptedAnalysis::verdicts(verdicts.clone())));
                CanaryStep::Analysis(
                    AnalysisRun::new(name)
                        .with_count(2)
                        .with_on_inconclusive(*action),
                )
            }
        });
    }
    let mut canary = Canary::new(canary_steps);
    if let Some(verdicts) = background {
        analyses.push(("bg".into(), ScriptedAnalysis::verdicts(verdicts)));
        canary = canary.with_background_analysis(0, AnalysisRun::new("bg").with_interval(mins(7)));
    }
    Built {
        canary,
        analyses,
        weights,
    }
}

fn is_failing_verdict(event: &RolloutEvent) -> bool {
    matches!(
        event,
        RolloutEvent::Record(cutover_core::DecisionRecord {
            entry: cutover_core::Entry::Decision {
                result: Some(ActionResult::Measured {
                    measurement: Measurement::Fail,
                    ..
                }),
                ..
            },
            ..
        })
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random canaries, random verdicts, transient router errors and a person who resumes,
    /// promotes or aborts at every pause.
    #[test]
    fn engine_invariants_hold_for_random_canaries(
        steps in proptest::collection::vec(step(), 1..8),
        background in proptest::option::of(proptest::collection::vec(verdict(), 1..6)),
        transient in 0usize..3,
        people in proptest::collection::vec(person(), 8),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let built = build(&steps, background);
            let router = FakeRouter::new("mesh");
            router.faults().fail("set_split", ErrorKind::Transient, transient);
            let mut builder = builder("prop", plan(built.canary.clone())).router(router.clone());
            for (name, analysis) in &built.analyses {
                builder = builder.analysis(name.clone(), analysis.clone());
            }
            let rollout = builder.build().unwrap();
            let handle = rollout.handle();
            let mut events = events(&rollout);
            let run = tokio::spawn(rollout.run());

            let mut people = people.into_iter().cycle();
            let mut seen = Vec::new();
            let mut finished = None;
            while let Some(event) = tokio::time::timeout(mins(24 * 60 * 365), events.next()).await.expect("the rollout hangs") {
                // A rollout that keeps deciding without time passing would never trip the
                // virtual-time timeout: bound the number of events instead.
                prop_assert!(seen.len() < 5_000, "no end after 5000 events: {:?}", &seen[seen.len() - 5..]);
                if is_pause(&event) {
                    let command = match people.next().unwrap() {
                        Person::Resume => Command::Resume,
                        Person::Promote => Command::Promote,
                        Person::PromoteFull => Command::PromoteFull,
                        Person::Abort => Command::Abort,
                    };
                    let _ = handle.send(CommandRequest::new(command, "person").reason("property test")).await;
                }
                if let RolloutEvent::Finished(end) = &event {
                    finished = Some(end.clone());
                }
                seen.push(event);
            }
            let outcome = run.await.unwrap();
            let finished = finished.expect("a Finished event");

            // Every split sums to 100 % and sends the candidate a planned weight, 0 or 100 %.
            let splits = router.splits();
            for split in &splits {
                let sum: u32 = split.iter().map(|(_, w)| u32::from(w.basis_points())).sum();
                prop_assert_eq!(sum, 10_000);
                let w = split.weight(&candidate()).basis_points();
                prop_assert!(w == 0 || w == 10_000 || built.weights.contains(&w), "unplanned weight {}", w);
            }
            // The canary weight never rises after a failing verdict.
            let mut failed = false;
            let mut last = None;
            for event in &seen {
                if is_failing_verdict(event) {
                    failed = true;
                }
                if let RolloutEvent::SplitChanged { to, .. } = event {
                    let w = to.weight(&candidate()).basis_points();
                    if failed {
                        prop_assert!(last.is_none_or(|l| w <= l), "weight rose to {} after a failing verdict", w);
                    }
                    last = Some(w);
                }
            }
            // Every rollout that did not promote ends with all traffic on stable.
            let current = router.current();
            match &outcome {
                Ok(Outcome::Promoted) => {
                    prop_assert_eq!(&finished, &Final::Outcome(Outcome::Promoted));
                    prop_assert!(current.is_some_and(|s| s.is_all_to(&candidate())));
                }
                Ok(_) | Err(_) => {
                    prop_assert!(current.is_none_or(|s| all_stable(&s)), "ended off stable: {:?}", outcome);
                }
            }
            Ok(())
        })?;
    }
}

// ---- The pure planner, driven against a simulated world, for every strategy. ----

#[derive(Debug, Clone)]
struct World {
    verdicts: Vec<Verdict>,
    health: Vec<Health>,
    ready: Vec<bool>,
    gates: Vec<GateVerdict>,
    commands: Vec<Command>,
    fail_effects: Vec<bool>,
    turn: usize,
}

impl World {
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        self.turn += 1;
        items[self.turn % items.len()].clone()
    }
}

fn simulate(setup: &Setup, world: &mut World) -> (Final, usize) {
    let mut now = Timestamp::from_unix_millis(0);
    let mut state = RolloutState::new(RolloutId::new("sim").unwrap(), setup.clone(), now);
    let mut replicas: BTreeMap<cutover_core::RevisionId, u32> = BTreeMap::new();
    for iteration in 0..20_000 {
        match cutover_core::planner::decide(setup, &state, &Observation { now }) {
            Decision::Complete(end) => return (end, iteration),
            Decision::Wait(Some(d)) => now = now + d.max(std::time::Duration::from_millis(1)),
            Decision::Wait(None) => {
                let command = world.pick(&world.commands.clone());
                apply_command(
                    &mut state,
                    &CommandRequest::new(command, "sim").reason("sim"),
                    now,
                );
            }
            Decision::Apply(action) => {
                let result = match &action {
                    Action::CheckGate { .. } => {
                        ActionResult::Gate(world.pick(&world.gates.clone()))
                    }
                    Action::CheckHealth { .. } => {
                        ActionResult::Health(world.pick(&world.health.clone()))
                    }
                    Action::ObserveWorkload { revisions } => {
                        let ready = world.pick(&world.ready.clone());
                        ActionResult::Workload(
                            revisions
                                .iter()
                                .map(|r| {
                                    let desired = replicas.get(r).copied().unwrap_or(4);
                                    let up = if ready { desired } else { desired / 2 };
                                    (
                                        r.clone(),
                                        ReplicaStatus {
                                            desired,
                                            updated: desired,
                                            ready: up,
                                            available: up,
                                        },
                                    )
                                })
                                .collect(),
                        )
                    }
                    Action::Measure { .. } => {
                        let verdict = world.pick(&world.verdicts.clone());
                        let mut result = AnalysisResult::new(verdict, "sim");
                        result.comparison = Some(Comparison {
                            winner: None,
                            effect: 0.0,
                            confidence: 0.5,
                            numbers: BTreeMap::new(),
                        });
                        ActionResult::Measured {
                            measurement: verdict.into(),
                            result: Some(result),
                            error: None,
                        }
                    }
                    effect => {
                        if world.pick(&world.fail_effects.clone()) {
                            ActionResult::Failed {
                                kind: ErrorKind::Permanent,
                                error: "sim".into(),
                            }
                        } else {
                            if let Action::Scale {
                                revision,
                                replicas: n,
                            } = effect
                            {
                                replicas.insert(revision.clone(), *n);
                            }
                            ActionResult::Done
                        }
                    }
                };
                if let ActionResult::Failed { .. } = result
                    && (state.phase == cutover_core::state::Phase::RollingBack
                        || state.past_point_of_no_return())
                {
                    // The engine stops here and the next run retries: in the simulation the
                    // retry succeeds.
                    apply_result(setup, &mut state, &action, &ActionResult::Done, now);
                    continue;
                }
                apply_result(setup, &mut state, &action, &result, now);
            }
            other => apply_decision(&mut state, &other, now),
        }
    }
    panic!(
        "the planner did not finish within 20 000 decisions: {:?}",
        state.phase
    );
}

fn strategy() -> impl Strategy<Value = cutover_core::Strategy> {
    let canary = proptest::collection::vec(step(), 1..6).prop_map(|s| {
        let mut built = build(&s, None);
        built
            .canary
            .steps
            .push(CanaryStep::Scale(Scale { replicas: 3 }));
        cutover_core::Strategy::Canary(built.canary)
    });
    let blue_green = (any::<bool>(), any::<bool>(), 0u8..3).prop_map(|(pre, post, auto)| {
        cutover_core::Strategy::BlueGreen(BlueGreen {
            pre_promotion_analysis: pre.then(|| AnalysisRun::new("a0")),
            post_promotion_analysis: post.then(|| AnalysisRun::new("a0").with_count(2)),
            auto_promotion: [
                AutoPromotion::Enabled,
                AutoPromotion::Disabled,
                AutoPromotion::After(mins(5)),
            ][auto as usize],
            replicas: Some(4),
            preview_replicas: Some(2),
            ..BlueGreen::default()
        })
    });
    let rolling = (1u32..20, 0u32..4, 0u32..4).prop_map(|(n, s, u)| {
        cutover_core::Strategy::Rolling(Rolling {
            max_surge: Quantity::Count(s),
            max_unavailable: Quantity::Count(u),
            ..Rolling::new(n)
        })
    });
    let ab = (any::<bool>(), 0u32..3).prop_map(|(promote, extensions)| {
        cutover_core::Strategy::AbTest(AbTest {
            split: Some(Weight::from_percent(30).unwrap()),
            extensions,
            promote_winner: promote,
            ..AbTest::new(mins(30), "a0")
        })
    });
    prop_oneof![canary, blue_green, rolling, ab]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Whatever the world answers, every strategy reaches an end.
    #[test]
    fn planners_terminate(
        strategy in strategy(),
        verdicts in proptest::collection::vec(verdict(), 1..5),
        health in proptest::collection::vec(prop_oneof![4 => Just(Health::Ready), 1 => Just(Health::progressing("warming")), 1 => Just(Health::failed("crash"))], 1..4),
        ready in proptest::collection::vec(any::<bool>(), 1..4),
        gates in proptest::collection::vec(prop_oneof![4 => Just(GateVerdict::Open), 1 => Just(GateVerdict::Pending { detail: "later".into() })], 1..3),
        commands in proptest::collection::vec(prop_oneof![
            Just(Command::Resume), Just(Command::Promote), Just(Command::PromoteFull), Just(Command::Abort)
        ], 1..4),
        fail_effects in proptest::collection::vec(prop_oneof![9 => Just(false), 1 => Just(true)], 1..4),
        has_probe in any::<bool>(),
    ) {
        let mut setup = Setup::new(Plan::new(strategy.clone()), Revisions::new("v1", "v2").unwrap());
        setup.has_routers = !matches!(strategy, cutover_core::Strategy::Rolling(_));
        setup.has_workload = true;
        setup.has_probe = has_probe;
        let mut world = World { verdicts, health, ready, gates, commands, fail_effects, turn: 0 };
        let (end, decisions) = simulate(&setup, &mut world);
        prop_assert!(decisions > 0);
        if let Final::Outcome(Outcome::Promoted) = end {
            let never_promotes = matches!(strategy, cutover_core::Strategy::AbTest(AbTest { promote_winner: false, .. }));
            prop_assert!(!never_promotes, "an A/B test without promote_winner promoted");
        }
    }
}
