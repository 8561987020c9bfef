//! Rollout metrics from real rollouts, scraped over HTTP on 127.0.0.1, read by a real
//! Prometheus and checked by `promtool check metrics` (both ignored by default: they need the
//! Debian package prometheus, from scripts/test-deps).

mod support;

use std::sync::Arc;

use cutover_core::{MemoryStateStore, Outcome, StateStore};
use cutover_notify::{CONTENT_TYPE, RolloutMetrics};
use support::*;

async fn two_rollouts() -> Arc<dyn StateStore> {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    assert_eq!(
        run_rollout(store.clone(), "good-v1", PROMOTING).await,
        Outcome::Promoted
    );
    let bad = run_rollout(store.clone(), "bad-v1", FAILING).await;
    assert!(matches!(bad, Outcome::RolledBack(_)), "{bad:?}");
    store
}

/// The two rollouts counted, and one notification delivered.
async fn counted() -> (Arc<dyn StateStore>, RolloutMetrics) {
    let store = two_rollouts().await;
    let metrics = RolloutMetrics::new();
    metrics.catch_up(store.as_ref()).await.unwrap();
    metrics.notification("ops", "slack", "delivered");
    (store, metrics)
}

/// A DORA window holding every test's history.
fn all_time() -> cutover_notify::dora::Window {
    cutover_notify::dora::Window::new(
        cutover_core::Timestamp::from_unix_millis(0),
        cutover_core::Timestamp::from_unix_millis(u64::MAX / 2),
    )
}

/// Fails naming the first of `lines` that is not a whole line of `text`.
fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.lines().any(|l| l == *line), "no `{line}` in\n{text}");
    }
}

async fn scrape(metrics: &RolloutMetrics) -> (String, String) {
    let (addr, _server) = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert!(addr.ip().is_loopback());
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_rollouts_and_are_served_over_http() {
    let store = two_rollouts().await;
    let metrics = RolloutMetrics::new();
    let observed = metrics.catch_up(store.as_ref()).await.unwrap();
    assert!(observed > 10, "{observed}");
    assert_eq!(
        metrics.catch_up(store.as_ref()).await.unwrap(),
        0,
        "nothing is observed twice"
    );
    let (content_type, text) = scrape(&metrics).await;
    assert_eq!(content_type, CONTENT_TYPE);
    for line in [
        r#"cutover_rollouts_started_total{strategy="canary"} 2"#,
        r#"cutover_rollouts_finished_total{strategy="canary",outcome="promoted"} 1"#,
        r#"cutover_rollouts_finished_total{strategy="canary",outcome="rolled_back"} 1"#,
        r#"cutover_rollbacks_total{strategy="canary",reason="analysis_failed"} 1"#,
        r#"cutover_analysis_measurements_total{analysis="checks",run="step",result="fail"} 1"#,
        r#"cutover_step_duration_seconds_count{strategy="canary",step="set_weight"} 3"#,
        r#"cutover_rollout_duration_seconds_count{strategy="canary",outcome="promoted"} 1"#,
        r#"cutover_time_to_rollback_seconds_count{strategy="canary"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    // Finished rollouts leave no per-rollout series behind.
    assert!(!text.contains("cutover_rollout_phase{"), "{text}");
    assert!(
        !text.contains("cutover_rollout_candidate_weight_percent{"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));

    // DORA as gauges: one success and one failure of the service `good-v1` / `bad-v1` each.
    let report = cutover_notify::dora::from_store(store.as_ref(), all_time())
        .await
        .unwrap();
    metrics.set_dora(&report);
    let text = metrics.encode();
    for line in [
        r#"cutover_dora_change_failure_rate{service="*"} 0.5"#,
        r#"cutover_dora_change_failure_rate{service="good-v1"} 0.0"#,
        r#"cutover_dora_change_failure_rate{service="bad-v1"} 1.0"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    assert!(
        !text.contains("cutover_dora_lead_time_seconds{"),
        "no commit times, no lead time"
    );
    assert!(text.contains(r#"cutover_dora_time_to_restore_seconds{service="bad-v1"}"#));
    assert!(!text.contains(r#"cutover_dora_time_to_restore_seconds{service="good-v1"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_rollout_shows_its_phase_and_weight() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let plan = "strategy:\n  canary:\n    steps:\n      - set_weight: 30\n      - pause: {}\n";
    let rollout =
        cutover_core::Rollout::builder("paused-v1", cutover_core::Plan::from_yaml(plan).unwrap())
            .revisions("v1", "v2")
            .router(cutover_test::FakeRouter::new("mesh"))
            .state_store(store.clone())
            .build()
            .unwrap();
    let run = tokio::spawn(rollout.run());
    let metrics = RolloutMetrics::new();
    let id = "paused-v1".parse().unwrap();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while store
        .load(&id)
        .await
        .unwrap()
        .is_none_or(|s| s.state.pause.is_none())
    {
        assert!(
            tokio::time::Instant::now() < until,
            "the rollout never paused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    metrics.catch_up(store.as_ref()).await.unwrap();
    let text = metrics.encode();
    assert!(
        text.contains(r#"cutover_rollout_phase{rollout="paused-v1",phase="progressing"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cutover_rollout_candidate_weight_percent{rollout="paused-v1"} 30.0"#),
        "{text}"
    );

    // Commands, by kind and whether the engine took them: an approval of a gate the rollout
    // does not have is refused, the resume lifts the pause and the rollout ends.
    let now = cutover_core::Timestamp::from_unix_millis(1_764_800_000_000);
    let mut approve = cutover_core::CommandRequest::new(cutover_core::Command::Approve, "ana");
    approve.subject = Some(String::from("no-such-gate"));
    store.send(&id, &approve, now).await.unwrap();
    let resume = cutover_core::CommandRequest::new(cutover_core::Command::Resume, "ana");
    store.send(&id, &resume, now).await.unwrap();
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("the resumed rollout ends")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    metrics.catch_up(store.as_ref()).await.unwrap();
    let text = metrics.encode();
    assert_lines(
        &text,
        &[
            r#"cutover_commands_total{command="approve",accepted="false"} 1"#,
            r#"cutover_commands_total{command="resume",accepted="true"} 1"#,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus: scripts/test-deps"]
async fn a_real_prometheus_scrapes_and_reads_the_metrics() {
    let (_store, metrics) = counted().await;
    let (addr, _server) = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let prometheus = cutover_prometheus::testing::PrometheusServer::start(&[addr])
        .await
        .unwrap();
    // Each query has a result only when Prometheus parsed the scrape and stored that value.
    for promql in [
        r#"up{job="cutover"} == 1"#,
        r#"cutover_rollouts_started_total{strategy="canary"} == 2"#,
        r#"cutover_rollouts_finished_total{outcome="rolled_back"} == 1"#,
        r#"cutover_rollbacks_total{reason="analysis_failed"} == 1"#,
        r#"cutover_step_duration_seconds_count{step="set_weight"} == 3"#,
        r#"cutover_notifications_total{sink="ops",outcome="delivered"} == 1"#,
    ] {
        prometheus
            .wait_for_data(promql, std::time::Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{promql}: {e}\n{}", prometheus.log_tail()));
    }
}

/// A rollout refused by a closed pre-flight gate is a `refused` outcome in the metrics and a
/// `refused` warning notice, not a rollback.
#[tokio::test(start_paused = true)]
async fn a_refused_rollout_is_counted_and_noticed_as_refused() {
    use cutover_core::{GateStage, GateVerdict, Plan, Revisions, Rollout, RolloutId};
    use cutover_notify::{Notice, NoticeKind, RolloutInfo, Severity};
    use cutover_test::{FakeGate, FakeRouter};

    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let closed = FakeGate::new(
        "checklist",
        [GateVerdict::Closed {
            reason: "tls: the certificate expires in 2 days".into(),
        }],
    );
    let rollout = Rollout::builder("refused-v1", Plan::from_yaml(PROMOTING).unwrap())
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .gate(GateStage::PreFlight, closed)
        .state_store(store.clone())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome:?}");

    let metrics = RolloutMetrics::new();
    metrics.catch_up(store.as_ref()).await.unwrap();
    let (_, text) = scrape(&metrics).await;
    let line = r#"cutover_rollouts_finished_total{strategy="canary",outcome="refused"} 1"#;
    assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    assert!(!text.contains(r#"outcome="rolled_back""#), "{text}");

    let id = RolloutId::new("refused-v1").unwrap();
    let info = RolloutInfo::new(id.clone(), "canary", Revisions::new("v1", "v2").unwrap());
    let records = store.records(&id, 0, usize::MAX).await.unwrap();
    let notices: Vec<Notice> = records
        .iter()
        .filter_map(|r| Notice::from_record(&info, r))
        .collect();
    let last = notices.last().expect("notices");
    assert_eq!(last.kind, NoticeKind::Refused);
    assert_eq!(last.severity, Severity::Warning);
    assert!(
        notices.iter().all(|n| n.kind != NoticeKind::RolledBack),
        "{notices:?}"
    );
}

/// Provider calls and their failures, by provider: a promoted and a rolled-back canary call the
/// router and the analysis; a third rollout's router refuses the first split for good (and the
/// rollout fails), a fourth's analysis cannot measure. Calls and failures carry the same labels.
#[tokio::test(start_paused = true)]
async fn provider_calls_and_failures_are_counted_by_provider() {
    use cutover_core::{ErrorKind, Plan, Rollout};
    use cutover_test::{FakeRouter, ScriptedAnalysis};

    let store = two_rollouts().await;
    let router = FakeRouter::new("mesh");
    router
        .faults()
        .fail_always("set_split", ErrorKind::Permanent);
    let broken = Rollout::builder("broken-v1", Plan::from_yaml(PROMOTING).unwrap())
        .revisions("v1", "v2")
        .router(router)
        .state_store(store.clone())
        .build()
        .unwrap()
        .run()
        .await;
    assert!(broken.is_err(), "a router that refuses fails the rollout");
    let analysis = ScriptedAnalysis::verdicts([]);
    analysis
        .faults()
        .fail_always("evaluate", ErrorKind::Permanent);
    let blind = Rollout::builder("blind-v1", Plan::from_yaml(FAILING).unwrap())
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .analysis("checks", analysis)
        .state_store(store.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(matches!(blind, Outcome::RolledBack(_)), "{blind:?}");

    let metrics = RolloutMetrics::new();
    metrics.catch_up(store.as_ref()).await.unwrap();
    let (_, text) = scrape(&metrics).await;
    assert_lines(
        &text,
        &[
            // good-v1: 20, 50, 100 %; bad-v1: 20 %, back to 0 %; broken-v1: 20 % and back to 0 %,
            // both refused; blind-v1: 20 %, back to 0 %.
            r#"cutover_provider_calls_total{provider="router",op="set_split"} 9"#,
            r#"cutover_provider_failures_total{provider="router",op="set_split"} 2"#,
            // bad-v1: one failing verdict (a call that worked); blind-v1: five errors, then the
            // rollback (the plan's error limit).
            r#"cutover_provider_calls_total{provider="checks",op="measure"} 6"#,
            r#"cutover_provider_failures_total{provider="checks",op="measure"} 5"#,
        ],
    );
}

/// The text of every kind of series (counters, histograms, gauges, DORA gauges, notification
/// counts) passes `promtool check metrics`, which parses it and lints names, types and help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool (Debian package prometheus): scripts/test-deps"]
async fn metrics_text_passes_promtool() {
    let (store, metrics) = counted().await;
    let report = cutover_notify::dora::from_store(store.as_ref(), all_time())
        .await
        .unwrap();
    metrics.set_dora(&report);
    let (_, text) = scrape(&metrics).await;
    for family in [
        "cutover_rollouts_finished_total{",
        "cutover_rollout_duration_seconds_bucket{",
        "cutover_provider_calls_total{",
        "cutover_dora_change_failure_rate{",
        "cutover_notifications_total{",
    ] {
        assert!(text.contains(family), "no {family} in\n{text}");
    }
    let (status, said) = cutover_test::promtool_check_metrics(text.as_bytes());
    // promtool 2.x lints in the classic text format, where a counter's HELP names the series
    // `x_total`; OpenMetrics names the family `x` and its sample `x_total`. Exit code 3 is
    // "parsed, with lint problems" (1 would be a parse error): the only ones allowed are that,
    // for counters whose family has its HELP and TYPE under the OpenMetrics name.
    let allowed = |line: &str| {
        line.strip_suffix("_total no help text")
            .is_some_and(|family| {
                text.contains(&format!("# HELP {family} "))
                    && text.contains(&format!("# TYPE {family} counter\n"))
            })
    };
    assert!(
        status.success() || (status.code() == Some(3) && said.lines().all(allowed)),
        "promtool rejects /metrics ({:?}): {said}\n{text}",
        status.code()
    );
}
