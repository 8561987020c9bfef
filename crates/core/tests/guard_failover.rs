//! The failover guard's executor on paused time: probes, router calls, drift, commands through
//! the store, and resuming from the store.

use std::sync::Arc;
use std::time::Duration;

use cutover_core::guard::{
    DriftAction, FailoverEvent, FailoverGuard, FailoverPolicy, GuardEntry, GuardError, GuardHandle,
    GuardRecord, Mode, RunningGuard, Target,
};
use cutover_core::{
    ErrorKind, Health, MemoryStateStore, RevisionId, RolloutId, StateStore, TrafficSplit, Weight,
};
use cutover_test::{FakeProbe, FakeRouter};

fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

fn pct(p: u8) -> Weight {
    Weight::from_percent(p).unwrap()
}

fn policy() -> FailoverPolicy {
    FailoverPolicy::new(vec![
        Target::new(rev("eu"), pct(34), pct(60)),
        Target::new(rev("us"), pct(33), pct(60)),
        Target::new(rev("ap"), pct(33), pct(60)),
    ])
    .unwrap()
    .fail_after(2)
    .restore_after(3)
    .restore_steps(4)
    .hold_out(Duration::from_secs(30), Duration::from_mins(10))
}

fn split(eu: u8, us: u8, ap: u8) -> TrafficSplit {
    TrafficSplit::new([
        (rev("eu"), pct(eu)),
        (rev("us"), pct(us)),
        (rev("ap"), pct(ap)),
    ])
    .unwrap()
}

const SECOND: Duration = Duration::from_secs(1);

struct Running {
    guard: Arc<FailoverGuard>,
    task: RunningGuard,
}

impl Running {
    async fn stop(self) -> Result<(), GuardError> {
        self.task.stop().await
    }
}

fn start(guard: FailoverGuard) -> Running {
    let guard = Arc::new(guard);
    let task = guard.spawn();
    Running { guard, task }
}

fn build(
    store: &Arc<dyn StateStore>,
    router: &FakeRouter,
    probe: &FakeProbe,
    drift: DriftAction,
) -> FailoverGuard {
    FailoverGuard::builder("regions".parse().unwrap(), policy())
        .router(router.clone())
        .probe(probe.clone())
        .store(store.clone())
        .probe_every(10 * SECOND, 2 * SECOND)
        .drift(60 * SECOND, drift)
        .build()
        .unwrap()
}

fn store() -> Arc<dyn StateStore> {
    Arc::new(MemoryStateStore::new())
}

/// Rollout `checkout` (v1 to v2) on `store` through `router`: 10 %, a 5-minute pause, then
/// promoted; running on its own task.
fn spawn_paused_canary(
    store: &Arc<dyn StateStore>,
    router: &FakeRouter,
) -> tokio::task::JoinHandle<Result<cutover_core::Outcome, cutover_core::RolloutError>> {
    let plan = cutover_core::Plan::from_yaml(
        "strategy:\n  canary:\n    steps:\n      - set_weight: 10\n      - pause: { duration: 5m }\n",
    )
    .unwrap();
    let rollout = cutover_core::Rollout::builder("checkout", plan)
        .revisions("v1", "v2")
        .router(router.clone())
        .state_store(store.clone())
        .build()
        .unwrap();
    tokio::spawn(async move { rollout.run().await })
}

async fn records(store: &Arc<dyn StateStore>) -> Vec<GuardRecord> {
    GuardHandle::new(store.clone(), "regions".parse::<RolloutId>().unwrap())
        .records(0)
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn drains_a_failing_target_within_two_intervals_and_restores_it_step_by_step() {
    let (store, router, probe) = (store(), FakeRouter::new("proxy"), FakeProbe::new());
    let running = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(SECOND).await;
    assert_eq!(router.current(), Some(split(34, 33, 33)));

    probe.set(&rev("eu"), Health::failed("connection refused"));
    // Probes at 10 s and 20 s fail; the second drains.
    tokio::time::sleep(18 * SECOND).await;
    assert_eq!(
        router.current(),
        Some(split(34, 33, 33)),
        "one failure drains nothing"
    );
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(router.current(), Some(split(0, 50, 50)));

    probe.set(&rev("eu"), Health::Ready);
    // Hold-out until 50 s; passes at 30, 40, 50 s; then one step per passing check.
    tokio::time::sleep(90 * SECOND).await;
    assert_eq!(
        router.splits(),
        [
            split(34, 33, 33),
            split(0, 50, 50),
            split(8, 46, 46),
            split(17, 42, 41),
            split(25, 38, 37),
            split(34, 33, 33),
        ]
    );
    running.stop().await.unwrap();

    let log = records(&store).await;
    let drained: Vec<_> = log
        .iter()
        .filter_map(|r| match &r.entry {
            GuardEntry::Failover {
                event: FailoverEvent::Drained { target, detail, .. },
            } => Some((target.clone(), detail.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        drained,
        [(rev("eu"), "failed: connection refused".to_owned())]
    );
    assert!(log.iter().any(|r| matches!(
        &r.entry,
        GuardEntry::Failover { event: FailoverEvent::Restored { target } } if *target == rev("eu")
    )));
    // Records are gap-free.
    assert!(log.iter().zip(1..).all(|(r, seq)| r.seq == seq));
}

#[tokio::test(start_paused = true)]
async fn commands_from_the_store_pause_pin_and_force_restore() {
    let (store, router, probe) = (store(), FakeRouter::new("proxy"), FakeProbe::new());
    let running = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(SECOND).await;
    let handle = GuardHandle::new(store.clone(), "regions".parse().unwrap()).by("alice");

    handle.pin_out(rev("us"), "maintenance").await.unwrap();
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(
        router.current(),
        Some(split(51, 0, 49)),
        "pinned out within the poll"
    );

    handle.pause("incident").await.unwrap();
    probe.set(&rev("eu"), Health::failed("timeout"));
    tokio::time::sleep(30 * SECOND).await;
    assert_eq!(
        router.current(),
        Some(split(51, 0, 49)),
        "paused: nothing moves"
    );
    let refused = handle.pin_out(rev("nowhere"), "typo").await.unwrap();

    handle.resume("over").await.unwrap();
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(
        router.current(),
        Some(split(51, 0, 49)),
        "resumed, eu not failed again yet"
    );
    tokio::time::sleep(10 * SECOND).await;
    assert_eq!(
        router.current(),
        Some(split(40, 0, 60)),
        "eu drained after resume; ap at capacity, the rest stays on eu"
    );

    probe.set(&rev("eu"), Health::Ready);
    handle.force_restore(rev("eu"), "it is fine").await.unwrap();
    handle.unpin(rev("us"), "done").await.unwrap();
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(router.current(), Some(split(51, 0, 49)));
    running.stop().await.unwrap();

    let log = records(&store).await;
    let commands: Vec<(u64, String, bool)> = log
        .iter()
        .filter_map(|r| match &r.entry {
            GuardEntry::Command { command, effect } => Some((
                command.seq,
                command.by.clone(),
                matches!(effect, FailoverEvent::Applied { .. }),
            )),
            _ => None,
        })
        .collect();
    let expected: Vec<(u64, String, bool)> = (1..=6)
        .map(|seq| (seq, "alice".to_owned(), seq != refused.seq))
        .collect();
    assert_eq!(commands, expected);
    assert!(log.iter().any(|r| matches!(&r.entry, GuardEntry::CapacityShort { shortfall } if shortfall[..] == [(rev("eu"), pct(40))])));
    let doc = handle.document().await.unwrap().unwrap();
    assert_eq!(doc.last_command, 6);
    assert!(matches!(
        doc.state.targets[&rev("us")].mode,
        Mode::Restoring { level: 0 }
    ));
}

#[tokio::test(start_paused = true)]
async fn drift_is_recorded_once_and_repaired() {
    let (store, router, probe) = (store(), FakeRouter::new("proxy"), FakeProbe::new());
    let running = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(SECOND).await;
    router.misreport(split(80, 10, 10), 1);
    tokio::time::sleep(60 * SECOND).await;
    assert_eq!(
        router.splits(),
        [split(34, 33, 33), split(34, 33, 33)],
        "repaired once"
    );
    tokio::time::sleep(60 * SECOND).await;
    running.stop().await.unwrap();
    let drift: Vec<String> = records(&store)
        .await
        .iter()
        .filter(|r| {
            matches!(
                r.entry,
                GuardEntry::Drift { .. }
                    | GuardEntry::DriftCleared { .. }
                    | GuardEntry::Split { repair: true, .. }
            )
        })
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        drift,
        [
            "drift on proxy: found ap 10%, eu 80%, us 10%, expected ap 33%, eu 34%, us 33%; repairing",
            "repaired proxy to ap 33%, eu 34%, us 33%",
            "proxy in sync again",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn drift_only_reported_is_left_alone() {
    let (store, router, probe) = (store(), FakeRouter::new("proxy"), FakeProbe::new());
    let running = start(build(&store, &router, &probe, DriftAction::Report));
    tokio::time::sleep(SECOND).await;
    router.misreport(split(80, 10, 10), 10);
    tokio::time::sleep(300 * SECOND).await;
    running.stop().await.unwrap();
    assert_eq!(router.splits(), [split(34, 33, 33)], "never repaired");
    let drift = records(&store)
        .await
        .iter()
        .filter(|r| matches!(r.entry, GuardEntry::Drift { repair: false, .. }))
        .count();
    assert_eq!(drift, 1, "the same drift is recorded once");
}

#[tokio::test(start_paused = true)]
async fn a_failed_router_call_is_recorded_and_retried() {
    let (store, router, probe) = (store(), FakeRouter::new("proxy"), FakeProbe::new());
    router.faults().fail("set_split", ErrorKind::Transient, 1);
    let running = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(SECOND).await;
    // Failed at start, set again with the first round of probes.
    assert_eq!(router.calls(), ["set_split", "set_split"]);
    assert_eq!(router.current(), Some(split(34, 33, 33)));
    running.stop().await.unwrap();
    let failed = records(&store)
        .await
        .iter()
        .filter(|r| matches!(r.entry, GuardEntry::Split { error: Some(_), .. }))
        .count();
    assert_eq!(failed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_guard_resumes_from_its_store() {
    let (store, router, probe) = (store(), FakeRouter::new("proxy"), FakeProbe::new());
    probe.set(&rev("eu"), Health::failed("down"));
    let running = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(15 * SECOND).await;
    assert_eq!(router.current(), Some(split(0, 50, 50)));
    running.stop().await.unwrap();

    let again = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(SECOND).await;
    assert_eq!(
        router.splits().len(),
        2,
        "nothing set again: the store knew the split"
    );
    let doc = again.guard.handle().document().await.unwrap().unwrap();
    assert!(matches!(
        doc.state.targets[&rev("eu")].mode,
        Mode::Drained { .. }
    ));
    again.stop().await.unwrap();
    let started: Vec<bool> = records(&store)
        .await
        .iter()
        .filter_map(|r| match r.entry {
            GuardEntry::Started { resumed, .. } => Some(resumed),
            _ => None,
        })
        .collect();
    assert_eq!(started, [false, true]);

    let other = FailoverGuard::builder("regions".parse().unwrap(), policy().fail_after(5))
        .router(router.clone())
        .probe(probe.clone())
        .store(store.clone())
        .build()
        .unwrap();
    assert!(matches!(
        other.run_until(async {}).await,
        Err(GuardError::PolicyMismatch { .. })
    ));
}

#[test]
fn a_guard_needs_a_probe_and_a_fine_enough_router() {
    let no_probe = FailoverGuard::builder("g".parse().unwrap(), policy())
        .router(FakeRouter::new("r"))
        .build();
    assert!(
        matches!(no_probe, Err(GuardError::Build { problem, .. }) if problem.contains("probe"))
    );
    let coarse = FailoverGuard::builder("g".parse().unwrap(), policy())
        .router(
            FakeRouter::new("r").with_capabilities(cutover_core::RouterCapabilities::new(
                cutover_core::Granularity::new(500).unwrap(),
            )),
        )
        .probe(FakeProbe::new())
        .build();
    assert!(
        matches!(coarse, Err(GuardError::Build { problem, .. }) if problem.contains("steps of 5%"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_guard_process_takes_over_and_the_first_stops() {
    let (store, router, probe) = (store(), FakeRouter::new("proxy"), FakeProbe::new());
    let first = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(SECOND).await;
    let second = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(2 * SECOND).await;
    assert!(
        first.task.is_finished(),
        "the first guard stopped at its next look"
    );
    assert!(matches!(
        first.stop().await,
        Err(GuardError::Superseded { .. })
    ));
    // The second one keeps acting.
    probe.set(&rev("eu"), Health::failed("down"));
    tokio::time::sleep(20 * SECOND).await;
    assert_eq!(router.current(), Some(split(0, 50, 50)));
    second.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_thousand_guards_share_one_process_and_one_store() {
    let store = store();
    let probe = FakeProbe::new();
    let mut running = Vec::new();
    let mut routers = Vec::new();
    for i in 0..1000 {
        let router = FakeRouter::new(format!("proxy-{i}"));
        let guard = FailoverGuard::builder(format!("regions-{i}").parse().unwrap(), policy())
            .router(router.clone())
            .probe(probe.clone())
            .store(store.clone())
            .probe_every(10 * SECOND, 2 * SECOND)
            .build()
            .unwrap();
        running.push(start(guard));
        routers.push(router);
    }
    tokio::time::sleep(SECOND).await;
    probe.set(&rev("eu"), Health::failed("region down"));
    tokio::time::sleep(20 * SECOND).await;
    for router in &routers {
        assert_eq!(router.current(), Some(split(0, 50, 50)), "{router:?}");
    }
    let listed = store.list_documents("guard", None, 2000).await.unwrap();
    assert_eq!(listed.len(), 1000);
    for guard in running {
        guard.stop().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn drift_of_a_rollout_in_progress_is_reported_once_and_cleared() {
    use cutover_core::Outcome;
    use cutover_core::guard::RolloutDriftWatch;
    let store = store();
    let router = FakeRouter::new("mesh");
    let rollout = spawn_paused_canary(&store, &router);
    let watch = RolloutDriftWatch::new("checkout".parse().unwrap(), store.clone())
        .router(router.clone())
        .interval(30 * SECOND);
    let watching = tokio::spawn(async move { watch.run().await });
    tokio::time::sleep(20 * SECOND).await;
    let by_hand = TrafficSplit::new([(rev("v1"), pct(50)), (rev("v2"), pct(50))]).unwrap();
    router.misreport(by_hand, 3);
    assert_eq!(rollout.await.unwrap().unwrap(), Outcome::Promoted);
    let records = watching.await.unwrap().unwrap();
    let lines: Vec<String> = records.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "drift on mesh: found v1 50%, v2 50%, expected v1 90%, v2 10%; reported only",
            "mesh in sync again",
        ]
    );
    assert_eq!(
        router.splits().len(),
        2,
        "reported only: the watch set nothing (10 %, then 100 %)"
    );
    // Kept in the rollout's drift document, as returned; the rollout's own log is untouched.
    let id: RolloutId = "checkout".parse().unwrap();
    let doc = RolloutDriftWatch::document(&*store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.log, records);
    assert_eq!(doc.next_seq, 3);
    assert!(doc.drift.is_empty(), "cleared");
    let log = store.records(&id, 0, 1000).await.unwrap();
    assert!(log.iter().zip(1..).all(|(r, seq)| r.seq == seq));
    assert!(
        log.iter()
            .all(|r| !matches!(r.entry, cutover_core::Entry::Guard { .. })),
        "no drift record in the engine's log"
    );
}

#[tokio::test(start_paused = true)]
async fn a_guard_on_a_file_store_takes_commands_from_another_handle_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> =
        Arc::new(cutover_core::FileStateStore::new(dir.path()).unwrap());
    let (router, probe) = (FakeRouter::new("proxy"), FakeProbe::new());
    let running = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(SECOND).await;
    // Another handle on its own store object over the same directory, as another process has.
    let other: Arc<dyn StateStore> =
        Arc::new(cutover_core::FileStateStore::new(dir.path()).unwrap());
    GuardHandle::new(other, "regions".parse().unwrap())
        .by("bob")
        .pin_out(rev("ap"), "maintenance")
        .await
        .unwrap();
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(router.current(), Some(split(51, 49, 0)));
    running.stop().await.unwrap();
    let again = start(build(&store, &router, &probe, DriftAction::Repair));
    tokio::time::sleep(SECOND).await;
    assert_eq!(router.splits().len(), 2, "resumed: the split was known");
    let doc = again.guard.handle().document().await.unwrap().unwrap();
    assert!(doc.state.targets[&rev("ap")].pinned_out);
    again.stop().await.unwrap();
}

/// One guard sets its split on two routers (two regions' load balancers, say): a drain reaches
/// both; a router that fails is retried alone while the other keeps the split; drift on one is
/// repaired on that one only.
#[tokio::test(start_paused = true)]
async fn a_guard_drives_two_routers_and_keeps_each_on_its_split() {
    let (store, probe) = (store(), FakeProbe::new());
    let (west, east) = (FakeRouter::new("west"), FakeRouter::new("east"));
    let guard = FailoverGuard::builder("regions".parse().unwrap(), policy())
        .router(west.clone())
        .router(east.clone())
        .probe(probe.clone())
        .store(store.clone())
        .probe_every(10 * SECOND, 2 * SECOND)
        .drift(60 * SECOND, DriftAction::Repair)
        .build()
        .unwrap();
    let running = start(guard);
    tokio::time::sleep(SECOND).await;
    assert_eq!(west.splits(), [split(34, 33, 33)]);
    assert_eq!(east.splits(), [split(34, 33, 33)]);

    // The drain (second failed probe, at 20 s) fails on east once: west is drained at once,
    // east with the next round (30 s).
    east.faults().fail("set_split", ErrorKind::Transient, 1);
    probe.set(&rev("eu"), Health::failed("connection refused"));
    tokio::time::sleep(20 * SECOND).await;
    assert_eq!(west.current(), Some(split(0, 50, 50)));
    assert_eq!(east.current(), Some(split(34, 33, 33)), "its call failed");
    tokio::time::sleep(10 * SECOND).await;
    assert_eq!(east.current(), Some(split(0, 50, 50)), "retried");
    assert_eq!(
        west.splits(),
        [split(34, 33, 33), split(0, 50, 50)],
        "west is not set again"
    );

    // Drift on west only (read back at 61 s): west is repaired, east untouched.
    west.misreport(split(80, 10, 10), 1);
    tokio::time::sleep(40 * SECOND).await;
    assert_eq!(
        west.splits(),
        [split(34, 33, 33), split(0, 50, 50), split(0, 50, 50)]
    );
    assert_eq!(east.splits(), [split(34, 33, 33), split(0, 50, 50)]);
    running.stop().await.unwrap();

    let sets: Vec<String> = records(&store)
        .await
        .iter()
        .filter(|r| matches!(r.entry, GuardEntry::Split { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        sets,
        [
            "set west to ap 33%, eu 34%, us 33%",
            "set east to ap 33%, eu 34%, us 33%",
            "set west to ap 50%, eu 0%, us 50%",
            "failed to set east to ap 50%, eu 0%, us 50%: injected transient error in set_split (call 2) (transient)",
            "set east to ap 50%, eu 0%, us 50%",
            "repaired west to ap 50%, eu 0%, us 50%",
        ]
    );
    let doc = GuardHandle::new(store, "regions".parse().unwrap())
        .document()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.applied["west"], split(0, 50, 50));
    assert_eq!(doc.applied["east"], split(0, 50, 50));
}

/// A drift watch started again on the same rollout continues its document: drift already
/// reported is not reported again.
#[tokio::test(start_paused = true)]
async fn a_restarted_drift_watch_continues_the_rollouts_drift_document() {
    use cutover_core::Outcome;
    use cutover_core::guard::RolloutDriftWatch;
    let store = store();
    let router = FakeRouter::new("mesh");
    let rollout = spawn_paused_canary(&store, &router);
    let id: RolloutId = "checkout".parse().unwrap();
    let watch = |store: &Arc<dyn StateStore>| {
        RolloutDriftWatch::new(id.clone(), store.clone())
            .router(router.clone())
            .interval(30 * SECOND)
    };
    let first = watch(&store);
    let watching = tokio::spawn(async move { first.run().await });
    tokio::time::sleep(20 * SECOND).await;
    let by_hand = TrafficSplit::new([(rev("v1"), pct(50)), (rev("v2"), pct(50))]).unwrap();
    router.misreport(by_hand, 6);
    tokio::time::sleep(40 * SECOND).await;
    watching.abort();
    let second = watch(&store);
    let again = tokio::spawn(async move { second.run().await });
    assert_eq!(rollout.await.unwrap().unwrap(), Outcome::Promoted);
    let made = again.await.unwrap().unwrap();
    let lines: Vec<String> = made.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["mesh in sync again"],
        "the drift was reported already"
    );
    assert_eq!(made[0].seq, 2, "numbering continues");
    let doc = RolloutDriftWatch::document(&*store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.log.len(), 2);
    assert!(matches!(doc.log[0].entry, GuardEntry::Drift { .. }));
}
