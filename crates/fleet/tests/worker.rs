//! Workers in this process against a real PostgreSQL: claiming, outcomes, unknown providers,
//! refused specs, takeover of a dead worker, draining, bounded claims, halting.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::state::{Final, Phase};
use cutover_core::{
    Canary, CanaryStep, Granularity, Outcome, Pause, Plan, ProviderError, Revisions, RolloutHandle,
    RolloutId, RouterCapabilities, StateStore, StopReason, TrafficRouter, TrafficSplit, Weight,
};
use cutover_fleet::testing::{
    MemoryRouters, PgServer, SCRIPTED, ScriptedVerdicts, eventually, scripted_spec, ten_step_plan,
};
use cutover_fleet::{
    Fleet, FleetError, FleetStatus, PgStateStore, ProviderNames, RolloutSpec, Submitted, Worker,
    WorkerBuilder, WorkerReport,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);

async fn fleet(db: &str) -> Fleet {
    cutover_test::trace_init();
    let url = PgServer::shared()
        .database(db)
        .await
        .expect("a test database");
    Fleet::new(PgStateStore::connect(&url).await.expect("connects"))
}

fn worker(store: &PgStateStore, id: &str, routers: &MemoryRouters) -> WorkerBuilder {
    Worker::builder(store.clone())
        .id(id)
        .router("mesh", routers.factory())
        .analysis(SCRIPTED, ScriptedVerdicts::factory)
        .lease_ttl(TTL)
        .poll_interval(POLL)
}

/// Runs a worker in a task; drain it with the returned drainer.
fn spawn(worker: Worker) -> (cutover_fleet::Drainer, JoinHandle<WorkerReport>) {
    let drainer = worker.drainer();
    let task = tokio::spawn(async move {
        worker
            .run(std::future::pending())
            .await
            .expect("the worker runs")
    });
    (drainer, task)
}

/// A canary that waits for a resume after its first step: it stays with its worker.
fn holding_spec(id: &str) -> RolloutSpec {
    let plan = Plan::new(Canary::new([
        CanaryStep::set_weight(10).unwrap(),
        CanaryStep::Pause(Pause::default()),
        CanaryStep::set_weight(50).unwrap(),
    ]));
    RolloutSpec::new(
        RolloutId::new(id).unwrap(),
        Revisions::new("v1", "v2").unwrap(),
        plan,
        ProviderNames {
            routers: vec!["mesh".into()],
            ..ProviderNames::default()
        },
    )
}

async fn owner(store: &PgStateStore, id: &RolloutId) -> Option<(String, u64)> {
    store.lease(id).await.unwrap().map(|l| (l.owner, l.epoch))
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn runs_submitted_rollouts_to_their_scripted_outcomes() {
    let fleet = fleet("outcomes").await;
    let routers = MemoryRouters::default();
    let plan = ten_step_plan(1, Duration::from_millis(10));
    let specs: Vec<RolloutSpec> = (0..6)
        .map(|i| {
            let fail_at = (i % 2 == 1).then(|| format!("a{}", i / 2 + 1));
            scripted_spec(&format!("r{i}"), &plan, "mesh", fail_at.as_deref())
        })
        .collect();
    let submitted = fleet.submit_all(&specs).await.unwrap();
    assert_eq!(submitted, vec![Submitted::Queued; 6]);
    let (drainer, task) = spawn(worker(fleet.store(), "w1", &routers).build().unwrap());
    eventually(
        Duration::from_secs(30),
        "every rollout to finish",
        || async { fleet.counts().await.unwrap().finished == 6 },
    )
    .await;
    for (i, spec) in specs.iter().enumerate() {
        let status = fleet.status(&spec.id).await.unwrap().unwrap();
        let FleetStatus::Finished {
            outcome: Some(Final::Outcome(outcome)),
        } = &status
        else {
            panic!("{}: {status}", spec.id);
        };
        if i % 2 == 0 {
            assert_eq!(*outcome, Outcome::Promoted, "{}", spec.id);
        } else {
            let at = format!("a{}", i / 2 + 1);
            assert!(
                matches!(outcome, Outcome::RolledBack(StopReason::AnalysisFailed { analysis, .. }) if *analysis == at),
                "{}: {outcome}",
                spec.id
            );
        }
        // The log is whole and every record was written under the worker's lease.
        let records = fleet.store().records(&spec.id, 0, 1000).await.unwrap();
        let state = fleet.store().load(&spec.id).await.unwrap().unwrap().state;
        assert_eq!(records.len() as u64, state.last_seq);
        // Records saved with the last state are in the log too.
        assert!(state.unlogged.iter().all(|r| records.contains(r)));
        assert!(
            records[0].summary.contains("started by w1"),
            "{}",
            records[0].summary
        );
    }
    // Each rolled-back rollout's last split puts everything on stable.
    let calls = routers.calls();
    for spec in specs.iter().skip(1).step_by(2) {
        let last = calls.iter().rev().find(|c| c.rollout == spec.id).unwrap();
        assert!(last.split.is_all_to(&spec.revisions.stable), "{}", spec.id);
    }
    drainer.drain();
    let report = task.await.unwrap();
    assert_eq!(
        (report.claimed, report.finished, report.lost),
        (6, 6, 0),
        "{report:?}"
    );
    assert_eq!(fleet.queued(10).await.unwrap(), Vec::new());
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn a_spec_naming_a_provider_no_worker_offers_stays_queued_and_says_so() {
    let fleet = fleet("unoffered").await;
    let routers = MemoryRouters::default();
    let plan = ten_step_plan(1, Duration::from_millis(10));
    let waiting = scripted_spec("needs-edge", &plan, "edge-proxy", None);
    let runnable = scripted_spec("on-mesh", &plan, "mesh", None);
    fleet
        .submit_all(&[waiting.clone(), runnable.clone()])
        .await
        .unwrap();
    let (drainer, task) = spawn(worker(fleet.store(), "w1", &routers).build().unwrap());
    // The worker claims and finishes what it can: it has looked at the queue.
    eventually(
        Duration::from_secs(30),
        "the runnable rollout to finish",
        || async {
            matches!(
                fleet.status(&runnable.id).await.unwrap(),
                Some(FleetStatus::Finished { .. })
            )
        },
    )
    .await;
    let status = fleet.status(&waiting.id).await.unwrap().unwrap();
    assert_eq!(
        status,
        FleetStatus::Queued {
            unoffered: vec!["router:edge-proxy".into()],
            attempts: 0,
            last_error: None
        }
    );
    assert_eq!(
        status.to_string(),
        "queued: no live worker offers router:edge-proxy"
    );
    assert_eq!(
        fleet.queued(10).await.unwrap(),
        vec![(waiting.id.clone(), status)]
    );
    assert_eq!(owner(fleet.store(), &waiting.id).await, None);

    // A worker that offers it arrives: it runs it.
    let edge = Worker::builder(fleet.store().clone())
        .id("w-edge")
        .router("edge-proxy", routers.factory())
        .analysis(SCRIPTED, ScriptedVerdicts::factory)
        .lease_ttl(TTL)
        .poll_interval(POLL)
        .build()
        .unwrap();
    let (edge_drainer, edge_task) = spawn(edge);
    eventually(
        Duration::from_secs(30),
        "the edge rollout to finish",
        || async {
            matches!(
                fleet.status(&waiting.id).await.unwrap(),
                Some(FleetStatus::Finished { .. })
            )
        },
    )
    .await;
    drainer.drain();
    edge_drainer.drain();
    assert_eq!(task.await.unwrap().claimed, 1);
    assert_eq!(edge_task.await.unwrap().claimed, 1);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn bad_specs_are_refused_at_submit_and_never_reach_a_worker() {
    let fleet = fleet("refused").await;
    let unknown_strategy = r#"{"id": "r1", "revisions": {"stable": "v1", "candidate": "v2"},
        "plan": {"strategy": {"canarry": {"steps": [{"set_weight": 10}]}}},
        "providers": {"routers": ["mesh"]}}"#;
    let err = RolloutSpec::from_json(unknown_strategy).unwrap_err();
    assert_eq!(err.path(), Some("plan.strategy"), "{err}");
    assert!(
        err.to_string().contains("unknown variant `canarry`"),
        "{err}"
    );

    let bad_weight = unknown_strategy
        .replace("canarry", "canary")
        .replace("10}", "150}");
    let err = RolloutSpec::from_json(&bad_weight).unwrap_err();
    assert_eq!(
        err.path(),
        Some("plan.strategy.canary.steps[0].set_weight"),
        "{err}"
    );

    // A plan built in code that cannot run: only submitting checks it.
    let mut bad = holding_spec("bad-plan");
    bad.plan = Plan::new(Canary::new([
        CanaryStep::set_weight(20).unwrap(),
        CanaryStep::Analysis(
            cutover_core::AnalysisRun::new("errors")
                .with_count(3)
                .with_interval(Duration::ZERO),
        ),
    ]));
    let before = bad.plan.validate().unwrap_err();
    let err = fleet.submit(&bad).await.unwrap_err();
    let FleetError::Spec(spec_err) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        spec_err.path(),
        before.path().map(|p| format!("plan.{p}")).as_deref(),
        "{err}"
    );
    // A rollout whose revisions are the same one.
    let mut same = holding_spec("same-revisions");
    same.revisions = serde_json::from_str(r#"{"stable": "v1", "candidate": "v1"}"#).unwrap();
    let err = fleet.submit(&same).await.unwrap_err();
    assert!(
        matches!(&err, FleetError::Spec(e) if e.path() == Some("revisions")),
        "{err}"
    );
    assert_eq!(
        fleet.counts().await.unwrap().open(),
        0,
        "nothing was queued"
    );

    // The same spec twice is fine; another spec under the same id is not.
    let spec = holding_spec("twice");
    assert_eq!(fleet.submit(&spec).await.unwrap(), Submitted::Queued);
    assert_eq!(fleet.submit(&spec).await.unwrap(), Submitted::AlreadyQueued);
    let mut changed = spec.clone();
    changed.revisions = Revisions::new("v1", "v3").unwrap();
    let err = fleet.submit(&changed).await.unwrap_err();
    assert!(
        matches!(&err, FleetError::AlreadySubmitted { id } if *id == spec.id),
        "{err}"
    );
    let err = fleet
        .submit_all(&[holding_spec("dup"), holding_spec("dup")])
        .await
        .unwrap_err();
    assert!(matches!(err, FleetError::Duplicate { .. }), "{err}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn a_dead_workers_rollouts_are_taken_over_once_its_lease_expires() {
    let fleet = fleet("takeover").await;
    let routers = MemoryRouters::default();
    let specs: Vec<RolloutSpec> = (0..5).map(|i| holding_spec(&format!("hold-{i}"))).collect();
    fleet.submit_all(&specs).await.unwrap();
    let first = worker(fleet.store(), "w1", &routers).build().unwrap();
    let (_drainer, dies) = spawn(first);
    eventually(
        Duration::from_secs(20),
        "w1 to pause every rollout",
        || async {
            let list = fleet
                .store()
                .list(&cutover_core::ListFilter::default())
                .await
                .unwrap();
            list.len() == 5 && list.iter().all(|s| s.paused.is_some())
        },
    )
    .await;
    // The worker dies without a word: no release, no drain.
    dies.abort();
    let died_at = Instant::now();
    let _ = dies.await;
    let second = worker(fleet.store(), "w2", &routers).build().unwrap();
    let (drainer, task) = spawn(second);
    eventually(
        TTL + POLL + Duration::from_secs(3),
        "w2 to take every rollout",
        || async {
            let mut all = true;
            for spec in &specs {
                all &= owner(fleet.store(), &spec.id)
                    .await
                    .is_some_and(|(o, _)| o == "w2");
            }
            all
        },
    )
    .await;
    let took = died_at.elapsed();
    assert!(
        took + POLL + TTL / 20 >= TTL,
        "taken over before the lease could expire: {took:?}"
    );
    // w2 carries them on: a resume (pushed by NOTIFY) finishes each, by w2 only.
    for spec in &specs {
        RolloutHandle::new(fleet.store().clone(), spec.id.clone())
            .by("alice")
            .resume("go on")
            .await
            .unwrap();
    }
    eventually(
        Duration::from_secs(20),
        "every rollout to finish",
        || async { fleet.counts().await.unwrap().finished == 5 },
    )
    .await;
    for spec in &specs {
        let records = fleet.store().records(&spec.id, 0, 100).await.unwrap();
        let started: Vec<&str> = records
            .iter()
            .filter(|r| matches!(r.entry, cutover_core::Entry::Started { .. }))
            .map(|r| r.summary.as_str())
            .collect();
        assert_eq!(started, ["started by w1", "resumed by w2"], "{}", spec.id);
    }
    let by_epoch = routers.calls();
    for spec in &specs {
        let epochs: Vec<u64> = by_epoch
            .iter()
            .filter(|c| c.rollout == spec.id)
            .map(|c| c.epoch)
            .collect();
        assert!(
            epochs.windows(2).all(|w| w[0] <= w[1]),
            "{}: {epochs:?}",
            spec.id
        );
        assert!(
            epochs.first() < epochs.last(),
            "{}: both workers acted: {epochs:?}",
            spec.id
        );
    }
    drainer.drain();
    assert_eq!(task.await.unwrap().finished, 5);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn a_draining_worker_hands_its_rollouts_back_at_once() {
    let fleet = fleet("drain").await;
    let routers = MemoryRouters::default();
    let specs: Vec<RolloutSpec> = (0..4).map(|i| holding_spec(&format!("hold-{i}"))).collect();
    fleet.submit_all(&specs).await.unwrap();
    // Long leases: only a hand-back lets another worker in within the test's time.
    let first = worker(fleet.store(), "w1", &routers)
        .lease_ttl(Duration::from_mins(1))
        .build()
        .unwrap();
    let (drainer, task) = spawn(first);
    eventually(
        Duration::from_secs(20),
        "w1 to hold every rollout",
        || async { fleet.counts().await.unwrap().running == 4 },
    )
    .await;
    drainer.drain();
    let report = task.await.unwrap();
    assert_eq!((report.claimed, report.handed_back), (4, 4), "{report:?}");
    for spec in &specs {
        assert_eq!(
            owner(fleet.store(), &spec.id).await,
            None,
            "{} released",
            spec.id
        );
    }
    let (drainer, task) = spawn(
        worker(fleet.store(), "w2", &routers)
            .lease_ttl(Duration::from_mins(1))
            .build()
            .unwrap(),
    );
    eventually(
        Duration::from_secs(10),
        "w2 to hold every rollout",
        || async { fleet.counts().await.unwrap().running == 4 },
    )
    .await;
    for spec in &specs {
        assert_eq!(
            owner(fleet.store(), &spec.id)
                .await
                .map(|(o, _)| o)
                .as_deref(),
            Some("w2")
        );
        let state = fleet.store().load(&spec.id).await.unwrap().unwrap().state;
        assert_eq!(state.phase, Phase::Progressing);
    }
    drainer.drain();
    assert_eq!(task.await.unwrap().handed_back, 4);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn claims_respect_the_rate_the_batch_and_the_limit() {
    let fleet = fleet("bounded").await;
    let routers = MemoryRouters::default();
    let specs: Vec<RolloutSpec> = (0..40)
        .map(|i| holding_spec(&format!("hold-{i:02}")))
        .collect();
    fleet.submit_all(&specs).await.unwrap();
    let (drainer, task) = spawn(
        worker(fleet.store(), "w1", &routers)
            .claim_batch(4)
            .claim_rate(10.0)
            .max_rollouts(25)
            .build()
            .unwrap(),
    );
    eventually(Duration::from_secs(20), "25 running", || async {
        fleet.counts().await.unwrap().running == 25
    })
    .await;
    // Never more than the limit, and never faster than the bucket: at most 4 at once, then
    // 10 a second.
    let (client, connection) =
        tokio_postgres::connect(&PgServer::shared().url("bounded"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let times: Vec<f64> = client
        .query(
            "SELECT extract(epoch FROM claimed_at - min(claimed_at) OVER ())::float8 \
             FROM cutover_fleet_claims ORDER BY claimed_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(times.len(), 25, "claimed beyond max_rollouts");
    for (n, t) in times.iter().enumerate() {
        // The (n+1)-th claim needs n+1 tokens: 4 in the bucket, the rest at 10 a second.
        let earliest = (f64::from(u32::try_from(n).unwrap()) + 1.0 - 4.0) / 10.0;
        assert!(
            *t >= earliest - 0.05,
            "claim {} at {t:.3} s, before {earliest:.3} s",
            n + 1
        );
    }
    drainer.drain();
    assert_eq!(task.await.unwrap().handed_back, 25);
}

/// A router that sets whole percents only.
#[derive(Debug)]
struct Coarse;

#[async_trait]
impl TrafficRouter for Coarse {
    fn name(&self) -> &'static str {
        "coarse"
    }
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::PERCENT)
    }
    async fn set_split(&self, _: &TrafficSplit) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(None)
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn a_plan_its_providers_cannot_express_is_halted_with_the_reason() {
    let fleet = fleet("halted").await;
    let mut spec = holding_spec("fine-grained");
    spec.plan = Plan::new(Canary::new([CanaryStep::SetWeight(
        Weight::from_basis_points(1250).unwrap(),
    )]));
    fleet.submit(&spec).await.unwrap();
    let coarse = Worker::builder(fleet.store().clone())
        .id("w-coarse")
        .router("mesh", |_| Ok(Arc::new(Coarse) as Arc<dyn TrafficRouter>))
        .lease_ttl(TTL)
        .poll_interval(POLL)
        .build()
        .unwrap();
    let (drainer, task) = spawn(coarse);
    eventually(
        Duration::from_secs(20),
        "the rollout to be halted",
        || async { fleet.counts().await.unwrap().halted == 1 },
    )
    .await;
    let status = fleet.status(&spec.id).await.unwrap().unwrap();
    let FleetStatus::Halted { reason } = &status else {
        panic!("{status}");
    };
    assert!(
        reason.contains("coarse") && reason.contains("12.5"),
        "{reason}"
    );
    assert_eq!(owner(fleet.store(), &spec.id).await, None);
    drainer.drain();
    assert_eq!(task.await.unwrap().halted, 1);
}
