//! DORA figures checked against hand-computed histories.
// Exact values are the point: each figure is compared with the very same arithmetic done by
// hand. Durations are written in seconds to match the figures, which are in seconds.
#![allow(
    clippy::float_cmp,
    clippy::duration_suboptimal_units,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::Duration;

use cutover_core::planner::{Decision, Setup};
use cutover_core::state::{Final, Outcome, Phase};
use cutover_core::{
    DecisionRecord, Entry, Inputs, MemoryStateStore, Plan, Revisions, RolloutState, StateStore,
    StopReason, Timestamp,
};
use cutover_notify::Release;
use cutover_notify::dora::{self, Deployment, Frequency, Result as Res, Window};

const DAY: u64 = 86_400_000;
const HOUR: Duration = Duration::from_hours(1);

fn day(d: u64) -> Timestamp {
    // Noon, so a few hours either side stay on the same UTC day.
    Timestamp::from_unix_millis(d * DAY + DAY / 2)
}

fn ok(service: &str, on: u64) -> Deployment {
    Deployment::new(
        service,
        day(on),
        day(on) + Duration::from_secs(60),
        Res::Succeeded,
    )
}

fn failed(service: &str, on: u64, restore: Duration) -> Deployment {
    Deployment::new(service, day(on), day(on) + restore, Res::Failed)
}

fn lead(d: Deployment, lead: Duration) -> Deployment {
    let committed =
        Timestamp::from_unix_millis(d.finished_at.unix_millis() - lead.as_millis() as u64);
    d.committed_at(committed)
}

#[test]
fn four_weeks_of_two_services() {
    let mut history = vec![
        lead(ok("checkout", 0), HOUR),
        lead(ok("checkout", 1), 3 * HOUR),
        lead(ok("checkout", 2), 2 * HOUR),
        lead(ok("checkout", 7), 5 * HOUR),
    ];
    for d in [8, 9, 14, 15, 16, 21, 22, 23] {
        history.push(ok("checkout", d));
    }
    history.push(failed("checkout", 3, Duration::from_secs(600)));
    history.push(failed("checkout", 10, Duration::from_secs(1200)));
    history.push(ok("payments", 5));
    history.push(failed("payments", 20, Duration::from_secs(1800)));
    // Outside the window: finished on day 28 (the window ends at its start).
    history.push(Deployment::new(
        "checkout",
        day(27),
        Timestamp::from_unix_millis(28 * DAY),
        Res::Failed,
    ));

    let window = Window::new(
        Timestamp::from_unix_millis(0),
        Timestamp::from_unix_millis(28 * DAY),
    );
    let report = dora::report(&history, window);

    let checkout = &report.services["checkout"];
    assert_eq!((checkout.successful, checkout.failed), (12, 2));
    assert_eq!(checkout.deployment_days, 12);
    assert_eq!(checkout.deployments_per_day, 12.0 / 28.0);
    assert_eq!(
        checkout.frequency,
        Frequency::Daily,
        "3 deploy days in each week"
    );
    // Lead times 1 h, 3 h, 2 h, 5 h: median 2.5 h.
    assert_eq!(checkout.lead_time_seconds, Some(9000.0));
    assert_eq!(checkout.change_failure_rate, Some(2.0 / 14.0));
    assert_eq!(checkout.time_to_restore_seconds, Some(900.0));

    let payments = &report.services["payments"];
    assert_eq!((payments.successful, payments.failed), (1, 1));
    assert_eq!(payments.deployments_per_day, 1.0 / 28.0);
    assert_eq!(
        payments.frequency,
        Frequency::Monthly,
        "weeks 1, 0, 0, 0; one in the month"
    );
    assert_eq!(payments.lead_time_seconds, None, "no commit times");
    assert_eq!(payments.change_failure_rate, Some(0.5));
    assert_eq!(payments.time_to_restore_seconds, Some(1800.0));

    let all = &report.overall;
    assert_eq!((all.successful, all.failed), (13, 3));
    assert_eq!(all.deployment_days, 13);
    assert_eq!(
        all.frequency,
        Frequency::Daily,
        "weeks of 4, 3, 3, 3 deploy days"
    );
    assert_eq!(all.lead_time_seconds, Some(9000.0));
    assert_eq!(all.change_failure_rate, Some(3.0 / 16.0));
    assert_eq!(all.time_to_restore_seconds, Some(1200.0));
}

#[test]
fn frequency_buckets_and_an_empty_window() {
    let window = |days: u64| {
        Window::new(
            Timestamp::from_unix_millis(0),
            Timestamp::from_unix_millis(days * DAY),
        )
    };
    // One deployment a week for three weeks: weekly.
    let weekly = [ok("a", 1), ok("a", 8), ok("a", 15)];
    assert_eq!(
        dora::report(&weekly, window(21)).overall.frequency,
        Frequency::Weekly
    );
    // One deployment in each of three 30-day months: monthly.
    let monthly = [ok("a", 1), ok("a", 31), ok("a", 61)];
    assert_eq!(
        dora::report(&monthly, window(90)).overall.frequency,
        Frequency::Monthly
    );
    // One in a year: yearly.
    let yearly = [ok("a", 100)];
    let report = dora::report(&yearly, window(365));
    assert_eq!(report.overall.frequency, Frequency::Yearly);
    let empty = dora::report(&[], window(7));
    assert_eq!(empty.overall.change_failure_rate, None);
    assert_eq!(empty.overall.time_to_restore_seconds, None);
    assert_eq!(empty.overall.frequency, Frequency::Yearly);
    assert!(empty.services.is_empty());
    // A window of any length is fine (its weeks are never listed one by one).
    let forever = Window::new(
        Timestamp::from_unix_millis(0),
        Timestamp::from_unix_millis(u64::MAX),
    );
    assert_eq!(
        dora::report(&weekly, forever).overall.frequency,
        Frequency::Yearly
    );
}

fn record(seq: u64, at: Timestamp, entry: Entry) -> DecisionRecord {
    DecisionRecord {
        seq,
        at,
        phase: Phase::Progressing,
        step: None,
        inputs: Inputs {
            split: None,
            step_elapsed: Duration::ZERO,
            analysis: None,
            background: None,
            health: None,
        },
        entry,
        summary: String::new(),
    }
}

fn started(seq: u64, at: Timestamp) -> DecisionRecord {
    record(
        seq,
        at,
        Entry::Started {
            engine: "e1".into(),
            resumed: false,
            takeover: None,
        },
    )
}

fn decided(seq: u64, at: Timestamp, decision: Decision) -> DecisionRecord {
    record(
        seq,
        at,
        Entry::Decision {
            decision,
            result: None,
        },
    )
}

async fn stored(
    store: &MemoryStateStore,
    id: &str,
    end: Option<Final>,
    records: &[DecisionRecord],
) {
    let plan =
        Plan::from_yaml("strategy:\n  canary:\n    steps:\n      - set_weight: 50\n").unwrap();
    let setup = Arc::new(Setup::new(plan, Revisions::new("v1", "v2").unwrap()));
    let rid = id.parse().unwrap();
    let mut state = RolloutState::new(rid, setup, records[0].at);
    if let Some(end) = end {
        state.phase = Phase::Done;
        state.outcome = Some(end);
    }
    store.save(&state.id.clone(), &state, None).await.unwrap();
    store.append(&state.id, records).await.unwrap();
}

#[tokio::test]
async fn figures_from_a_store_history() {
    let store = MemoryStateStore::new();
    let t = day(3);
    let promoted = Final::Outcome(Outcome::Promoted);
    stored(
        &store,
        "checkout-v1",
        Some(promoted.clone()),
        &[
            started(1, t),
            decided(2, t + Duration::from_secs(300), Decision::Promote),
            decided(
                3,
                t + Duration::from_secs(600),
                Decision::Complete(promoted.clone()),
            ),
        ],
    )
    .await;
    Release::new("checkout")
        .commit(
            "9f1c2ab",
            Timestamp::from_unix_millis(t.unix_millis() - 3_600_000),
        )
        .save(&store, &"checkout-v1".parse().unwrap())
        .await
        .unwrap();
    let reason = StopReason::AnalysisFailed {
        analysis: "checks".into(),
        summary: "error rate 5 %".into(),
    };
    let rolled_back = Final::Outcome(Outcome::RolledBack(reason.clone()));
    stored(
        &store,
        "checkout-v2",
        Some(rolled_back.clone()),
        &[
            started(1, t + HOUR),
            decided(
                2,
                t + HOUR + Duration::from_secs(120),
                Decision::Rollback(reason),
            ),
            decided(
                3,
                t + HOUR + Duration::from_secs(200),
                Decision::Complete(rolled_back),
            ),
        ],
    )
    .await;
    Release::new("checkout")
        .save(&store, &"checkout-v2".parse().unwrap())
        .await
        .unwrap();
    // Still running, and an A/B test that concluded: neither is a deployment.
    stored(&store, "running-v1", None, &[started(1, t)]).await;
    let concluded = Final::Outcome(Outcome::Concluded {
        comparison: None,
        summary: "no winner".into(),
    });
    stored(
        &store,
        "experiment-v1",
        Some(concluded.clone()),
        &[
            started(1, t),
            decided(2, t + HOUR, Decision::Complete(concluded)),
        ],
    )
    .await;

    let deployments = dora::deployments(&store).await.unwrap();
    assert_eq!(deployments.len(), 2, "{deployments:?}");
    let window = Window::new(day(0), day(7));
    let report = dora::from_store(&store, window).await.unwrap();
    assert_eq!(report.services.keys().collect::<Vec<_>>(), ["checkout"]);
    let figures = &report.services["checkout"];
    assert_eq!((figures.successful, figures.failed), (1, 1));
    // Committed an hour before the rollout started; promoted 10 minutes after it started.
    assert_eq!(figures.lead_time_seconds, Some(4200.0));
    assert_eq!(figures.change_failure_rate, Some(0.5));
    assert_eq!(figures.time_to_restore_seconds, Some(200.0));
    assert_eq!(figures.deployments_per_day, 1.0 / 7.0);

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["overall"]["change_failure_rate"], 0.5);
    assert_eq!(json["overall"]["lead_time_seconds"], 4200.0);
    assert_eq!(json["overall"]["frequency"], "weekly");
    assert_eq!(json["window"]["from"], "1970-01-01T12:00:00.000Z");
}
