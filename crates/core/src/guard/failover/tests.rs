use proptest::prelude::*;

use super::*;

fn rev(s: &str) -> RevisionId {
    RevisionId::new(s).unwrap()
}

fn pct(p: u8) -> Weight {
    Weight::from_percent(p).unwrap()
}

fn three(capacity: u8) -> FailoverPolicy {
    FailoverPolicy::new(vec![
        Target::new(rev("eu"), pct(34), pct(capacity)),
        Target::new(rev("us"), pct(33), pct(capacity)),
        Target::new(rev("ap"), pct(33), pct(capacity)),
    ])
    .unwrap()
    .fail_after(2)
    .restore_after(3)
    .restore_steps(4)
    .hold_out(Duration::from_secs(30), Duration::from_mins(10))
}

fn check(target: &str, passed: bool) -> Check {
    Check {
        target: rev(target),
        passed,
        detail: if passed { "ok" } else { "connection refused" }.into(),
    }
}

fn weights(policy: &FailoverPolicy, state: &FailoverState) -> Vec<u8> {
    let split = allocate(policy, state).split;
    ["eu", "us", "ap"]
        .iter()
        .map(|t| u8::try_from(split.weight(&rev(t)).basis_points() / 100).unwrap())
        .collect()
}

const T0: Timestamp = Timestamp::from_unix_millis(1_000_000);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

#[test]
fn refuses_policies_that_cannot_carry_all_traffic() {
    let t = |id: &str, w, c| Target::new(rev(id), pct(w), pct(c));
    assert_eq!(FailoverPolicy::new(vec![]), Err(PolicyError::NoTargets));
    assert_eq!(
        FailoverPolicy::new(vec![t("a", 50, 50), t("b", 40, 60)]),
        Err(PolicyError::WeightSum { sum: 9000 })
    );
    assert_eq!(
        FailoverPolicy::new(vec![t("a", 50, 40), t("b", 50, 60)]),
        Err(PolicyError::CapacityBelowWeight {
            target: rev("a"),
            capacity: pct(40),
            weight: pct(50)
        })
    );
    assert_eq!(
        FailoverPolicy::new(vec![t("a", 50, 50), t("a", 50, 50)]),
        Err(PolicyError::Duplicate(rev("a")))
    );
    let policy = FailoverPolicy::new(vec![t("a", 50, 50), t("b", 50, 50)]).unwrap();
    assert_eq!(allocate(&policy, &policy.initial_state()).split.len(), 2);
    assert!(matches!(
        FailoverPolicy::with_granularity(
            vec![t("a", 50, 50), t("b", 50, 50)],
            Granularity::new(2000).unwrap()
        ),
        Err(PolicyError::Granularity { .. })
    ));
}

#[test]
fn drains_after_k_failures_and_spreads_the_weight_in_proportion() {
    let policy = three(60);
    let mut state = policy.initial_state();
    assert_eq!(weights(&policy, &state), [34, 33, 33]);
    assert!(observe(&policy, &mut state, &check("eu", false), at(0)).is_empty());
    assert_eq!(weights(&policy, &state), [34, 33, 33]);
    let events = observe(&policy, &mut state, &check("eu", false), at(10));
    assert_eq!(
        events,
        [FailoverEvent::Drained {
            target: rev("eu"),
            failures: 2,
            hold_out: Duration::from_secs(30),
            detail: "connection refused".into()
        }]
    );
    assert_eq!(weights(&policy, &state), [0, 50, 50]);
    assert!(allocate(&policy, &state).shortfall.is_empty());
}

#[test]
fn a_pass_in_between_resets_the_failure_count() {
    let policy = three(60);
    let mut state = policy.initial_state();
    for (i, passed) in [false, true, false, true, false].into_iter().enumerate() {
        observe(&policy, &mut state, &check("eu", passed), at(10 * i as u64));
    }
    assert_eq!(weights(&policy, &state), [34, 33, 33]);
}

#[test]
fn capacity_is_never_exceeded_and_the_rest_stays_on_the_drained_target() {
    let policy = three(40);
    let mut state = policy.initial_state();
    observe(&policy, &mut state, &check("eu", false), at(0));
    observe(&policy, &mut state, &check("eu", false), at(10));
    assert_eq!(weights(&policy, &state), [20, 40, 40]);
    assert_eq!(allocate(&policy, &state).shortfall, [(rev("eu"), pct(20))]);
}

#[test]
fn the_last_target_in_service_is_never_drained() {
    let policy = three(100);
    let mut state = policy.initial_state();
    for target in ["eu", "us"] {
        observe(&policy, &mut state, &check(target, false), at(0));
        observe(&policy, &mut state, &check(target, false), at(10));
    }
    assert_eq!(weights(&policy, &state), [0, 0, 100]);
    observe(&policy, &mut state, &check("ap", false), at(20));
    let events = observe(&policy, &mut state, &check("ap", false), at(30));
    assert!(
        matches!(&events[..], [FailoverEvent::KeptLastInService { target, .. }] if *target == rev("ap"))
    );
    assert!(observe(&policy, &mut state, &check("ap", false), at(40)).is_empty());
    assert_eq!(weights(&policy, &state), [0, 0, 100]);
    assert!(matches!(
        command(&mut state, &FailoverCommand::PinOut(rev("ap")), at(50)),
        FailoverEvent::Refused { .. }
    ));
}

#[test]
fn restores_step_by_step_after_the_hold_out_and_m_passes() {
    let policy = three(60);
    let mut state = policy.initial_state();
    observe(&policy, &mut state, &check("eu", false), at(0));
    observe(&policy, &mut state, &check("eu", false), at(10)); // drained, held until 40
    let mut seen = Vec::new();
    for i in 2..10 {
        observe(&policy, &mut state, &check("eu", true), at(10 * i));
        seen.push(weights(&policy, &state)[0]);
    }
    // Passes at 20 and 30 are within the hold-out; the third pass (40) ends it.
    assert_eq!(seen, [0, 0, 8, 17, 25, 34, 34, 34]);
    assert_eq!(weights(&policy, &state), [34, 33, 33]);
}

#[test]
fn a_failure_while_restoring_drains_again_with_a_longer_hold_out() {
    let policy = three(60);
    let mut state = policy.initial_state();
    observe(&policy, &mut state, &check("eu", false), at(0));
    observe(&policy, &mut state, &check("eu", false), at(10));
    for i in 2..5 {
        observe(&policy, &mut state, &check("eu", true), at(10 * i));
    }
    assert_eq!(weights(&policy, &state)[0], 8);
    let events = observe(&policy, &mut state, &check("eu", false), at(50));
    assert!(matches!(
        &events[..],
        [FailoverEvent::Drained { hold_out, failures: 1, .. }] if *hold_out == Duration::from_mins(1)
    ));
    assert_eq!(weights(&policy, &state), [0, 50, 50]);
}

#[test]
fn commands_pause_pin_unpin_and_force_restore() {
    let policy = three(60);
    let mut state = policy.initial_state();
    command(&mut state, &FailoverCommand::Pause, at(0));
    observe(&policy, &mut state, &check("eu", false), at(0));
    observe(&policy, &mut state, &check("eu", false), at(10));
    assert_eq!(
        weights(&policy, &state),
        [34, 33, 33],
        "paused: nothing moves"
    );
    command(&mut state, &FailoverCommand::Resume, at(20));
    observe(&policy, &mut state, &check("eu", false), at(20));
    assert_eq!(
        weights(&policy, &state),
        [0, 50, 50],
        "counted while paused"
    );

    command(&mut state, &FailoverCommand::PinOut(rev("us")), at(30));
    assert_eq!(
        weights(&policy, &state),
        [40, 0, 60],
        "us pinned, eu drained: capacity short"
    );
    assert_eq!(allocate(&policy, &state).shortfall, [(rev("eu"), pct(40))]);

    command(
        &mut state,
        &FailoverCommand::ForceRestore(rev("eu")),
        at(40),
    );
    assert_eq!(
        weights(&policy, &state),
        [51, 0, 49],
        "eu back in full, plus what us leaves"
    );

    command(&mut state, &FailoverCommand::Unpin(rev("us")), at(50));
    assert_eq!(
        weights(&policy, &state),
        [51, 0, 49],
        "unpinned: restored step by step"
    );
    observe(&policy, &mut state, &check("us", true), at(60));
    assert_eq!(weights(&policy, &state), [47, 8, 45]);
    assert!(matches!(
        command(&mut state, &FailoverCommand::Unpin(rev("nowhere")), at(70)),
        FailoverEvent::Refused { .. }
    ));
}

fn arb_policy() -> impl Strategy<Value = FailoverPolicy> {
    (1usize..=5)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(0u8..=100, n - 1),
                proptest::collection::vec(0u8..=100, n),
                1u32..4,
                1u32..4,
                1u32..5,
            )
        })
        .prop_map(|(mut cuts, extra, k, m, steps)| {
            cuts.sort_unstable();
            let mut bounds = vec![0u8];
            bounds.extend(cuts);
            bounds.push(100);
            let weights: Vec<u8> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
            let mut caps: Vec<u8> = weights
                .iter()
                .zip(&extra)
                .map(|(&w, &e)| w.saturating_add(e).min(100))
                .collect();
            if caps.iter().map(|&c| u32::from(c)).sum::<u32>() < 100 {
                caps[0] = 100;
            }
            let targets = weights
                .iter()
                .zip(&caps)
                .enumerate()
                .map(|(i, (&w, &c))| Target::new(rev(&format!("t{i}")), pct(w), pct(c)))
                .collect();
            FailoverPolicy::new(targets)
                .unwrap()
                .fail_after(k)
                .restore_after(m)
                .restore_steps(steps)
                .hold_out(Duration::from_secs(20), Duration::from_mins(5))
        })
}

#[derive(Debug, Clone)]
enum Op {
    Check(usize, bool),
    Pin(usize),
    Unpin(usize),
    Force(usize),
    Pause(bool),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0usize..5, any::<bool>()).prop_map(|(i, p)| Op::Check(i, p)),
        1 => (0usize..5).prop_map(Op::Pin),
        1 => (0usize..5).prop_map(Op::Unpin),
        1 => (0usize..5).prop_map(Op::Force),
        1 => any::<bool>().prop_map(Op::Pause),
    ]
}

proptest! {
    /// Whatever the probes and commands: the split adds up to 100 %, no target is above its
    /// capacity, a target in full service keeps at least its weight, a target out of service
    /// carries traffic only when everyone in service is at capacity, and at least one target
    /// stays in service.
    #[test]
    fn allocations_stay_within_capacity_and_keep_someone_in_service(
        policy in arb_policy(),
        ops in proptest::collection::vec(arb_op(), 0..300),
    ) {
        let mut state = policy.initial_state();
        let ids: Vec<RevisionId> = policy.targets().iter().map(|t| t.id.clone()).collect();
        for (i, op) in ops.iter().enumerate() {
            let now = at(10 * i as u64);
            match op {
                Op::Check(t, passed) => {
                    let c = Check { target: ids[t % ids.len()].clone(), passed: *passed, detail: String::new() };
                    observe(&policy, &mut state, &c, now);
                }
                Op::Pin(t) => { command(&mut state, &FailoverCommand::PinOut(ids[t % ids.len()].clone()), now); }
                Op::Unpin(t) => { command(&mut state, &FailoverCommand::Unpin(ids[t % ids.len()].clone()), now); }
                Op::Force(t) => { command(&mut state, &FailoverCommand::ForceRestore(ids[t % ids.len()].clone()), now); }
                Op::Pause(p) => { command(&mut state, if *p { &FailoverCommand::Pause } else { &FailoverCommand::Resume }, now); }
            }
            prop_assert!(state.targets.values().any(TargetState::in_service), "nobody in service after {op:?}");
            let allocation = allocate(&policy, &state);
            let sum: u32 = allocation.split.iter().map(|(_, w)| u32::from(w.basis_points())).sum();
            prop_assert_eq!(sum, 10_000);
            let mut all_in_service_full = true;
            for t in policy.targets() {
                let got = allocation.split.weight(&t.id);
                prop_assert!(got <= t.capacity, "{} at {got} above capacity {}", t.id, t.capacity);
                let s = &state.targets[&t.id];
                if s.in_service() {
                    if s.mode == Mode::Serving {
                        prop_assert!(got >= t.weight, "{} serving at {got} below its weight", t.id);
                    }
                    all_in_service_full &= got == t.capacity;
                } else {
                    prop_assert_eq!(
                        got > Weight::ZERO,
                        allocation.shortfall.iter().any(|(id, _)| *id == t.id)
                    );
                }
            }
            if !allocation.shortfall.is_empty() {
                prop_assert!(all_in_service_full, "drained target carries traffic while capacity is left");
            }
        }
    }

    /// A target that flaps at random is drained a bounded number of times: between two drains
    /// at least the earlier hold-out passes, hold-outs double up to their cap, and they start
    /// over only after the target served in full for `forgive_after`.
    #[test]
    fn a_flapping_target_switches_a_bounded_number_of_times(
        pattern in proptest::collection::vec(prop::bool::weighted(0.5), 500..2000),
    ) {
        let interval = Duration::from_secs(10);
        let policy = three(60)
            .fail_after(1)
            .restore_after(1)
            .restore_steps(1)
            .hold_out(Duration::from_secs(30), Duration::from_mins(8))
            .forgive_after(Duration::from_mins(30));
        let mut state = policy.initial_state();
        let mut drains: Vec<(Timestamp, Duration)> = Vec::new();
        let mut switches = 0u32;
        let mut last = allocate(&policy, &state).split;
        for (i, &passed) in pattern.iter().enumerate() {
            let now = at(0) + interval * u32::try_from(i).unwrap();
            for e in observe(&policy, &mut state, &check("eu", passed), now) {
                if let FailoverEvent::Drained { hold_out, .. } = e {
                    drains.push((now, hold_out));
                }
            }
            let split = allocate(&policy, &state).split;
            if split != last {
                switches += 1;
                last = split;
            }
        }
        for pair in drains.windows(2) {
            let ((t1, hold), (t2, _)) = (pair[0], pair[1]);
            prop_assert!(t2.saturating_since(t1) >= hold, "drained again {:?} after a hold-out of {hold:?}", t2.saturating_since(t1));
        }
        // 30, 60, 120, 240, 480 s: five hold-outs per forgiveness cycle, a cycle needs 30 min
        // of full service, and past the cap one drain per 480 s at most.
        let span = interval * u32::try_from(pattern.len()).unwrap();
        let cycles = u32::try_from(span.as_secs() / 1800).unwrap() + 1;
        let bound = cycles * 5 + u32::try_from(span.as_secs() / 480).unwrap();
        let drained = u32::try_from(drains.len()).unwrap();
        prop_assert!(drained <= bound, "{drained} drains in {span:?}, bound {bound}");
        // A drain and a restore each change the split once.
        prop_assert!(switches <= 2 * drained, "{switches} switches for {drained} drains");
    }
}
