//! Checklists from YAML as pre-flight gates: refused rollouts, fixes, approvals, the template.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::serve;
use cutover_core::checklist::{CheckContext, CheckStatus};
use cutover_core::{Canary, CanaryStep, GateStage, Outcome, Plan, Rollout};
use cutover_test::FakeRouter;

async fn cache_server() -> (String, Arc<AtomicBool>) {
    let warm = Arc::new(AtomicBool::new(false));
    let app = common::cache_app(&warm);
    let addr = serve(app).await;
    (format!("http://127.0.0.1:{}", addr.port()), warm)
}

fn yaml(base: &str, allow_fixes: bool) -> String {
    format!(
        r#"
name: preflight
allow_fixes: {allow_fixes}
timeout: 5s
checks:
  - id: cache-warm
    category: infrastructure
    http: {{ url: "{base}/cache", status: 200 }}
    fix: {{ http: {{ url: "{base}/warm?token=s3cret" }} }}
  - id: secrets
    category: security
    env: {{ names: [CUTOVER_PREFLIGHT_TEST_NEVER_SET] }}
exemptions:
  - {{ check: secrets, reason: "vault migration CHG-9", by: alice, expires: 2099-01-01T00:00:00Z }}
"#
    )
}

fn plan() -> Plan {
    Plan::new(Canary::new([CanaryStep::set_weight(50).unwrap()]))
}

#[tokio::test]
async fn a_failing_check_refuses_the_rollout_and_its_fix_lets_it_through() {
    let (base, warm) = cache_server().await;

    let checklist = cutover_preflight::load_yaml(&yaml(&base, false)).unwrap();
    let report = checklist.run(&CheckContext::default()).await;
    let table = report.table();
    assert!(table.contains("cache-warm"), "{table}");
    assert!(table.contains("fail (exempted)"), "{table}");
    assert!(table.contains("automatic fix available"), "{table}");
    assert!(!table.contains("s3cret") && !report.to_json().contains("s3cret"));
    assert_eq!(report.exemptions_used.len(), 1);

    let router = FakeRouter::new("mesh");
    let rollout = Rollout::builder("api", plan())
        .revisions("v1", "v2")
        .router(router.clone())
        .gate(GateStage::PreFlight, checklist)
        .build()
        .unwrap();
    let handle = rollout.handle();
    let outcome = rollout.run().await.unwrap();
    let Outcome::Refused { gate, reason } = &outcome else {
        panic!("expected refused, got {outcome:?}");
    };
    assert_eq!(gate, "preflight");
    assert!(reason.contains("cache-warm [fail]"), "{reason}");
    assert!(
        !reason.contains("secrets"),
        "the exempted check does not block: {reason}"
    );
    assert!(router.calls().is_empty(), "no traffic moved");
    assert!(!warm.load(Ordering::SeqCst), "no fix without permission");
    let records = serde_json::to_string(&handle.records().await.unwrap()).unwrap();
    assert!(records.contains("cache cold") && !records.contains("s3cret"));

    let checklist = cutover_preflight::load_yaml(&yaml(&base, true)).unwrap();
    let rollout = Rollout::builder("api-2", plan())
        .revisions("v1", "v2")
        .router(router.clone())
        .gate(GateStage::PreFlight, checklist.clone())
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert!(warm.load(Ordering::SeqCst), "the fix ran");
}

#[tokio::test(start_paused = true)]
async fn an_approval_check_waits_for_the_store_command() {
    let checklist = cutover_preflight::load_yaml(
        "name: preflight\nchecks:\n  - { id: sign-off, category: security, approval: {} }\n",
    )
    .unwrap()
    .poll_interval(Duration::from_mins(1));
    let report = checklist.run(&CheckContext::default()).await;
    assert_eq!(report.checks[0].result.status, CheckStatus::Pending);
    let router = FakeRouter::new("mesh");
    let rollout = Rollout::builder("signed", plan())
        .revisions("v1", "v2")
        .router(router.clone())
        .gate(GateStage::PreFlight, checklist)
        .build()
        .unwrap();
    let handle = rollout.handle().by("security-lead");
    let run = tokio::spawn(rollout.run());
    tokio::time::sleep(Duration::from_mins(10)).await;
    assert!(router.calls().is_empty());
    handle.approve("preflight", "reviewed").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    let records = serde_json::to_string(&handle.records().await.unwrap()).unwrap();
    assert!(
        records.contains("security-lead"),
        "who approved is recorded"
    );
}

#[test]
#[cfg(all(feature = "kubernetes", feature = "aws-alb"))]
fn the_seed_template_has_28_items_in_three_categories() {
    let checklist = cutover_preflight::load_yaml(cutover_preflight::TEMPLATE).unwrap();
    let count = |c: &str| {
        checklist
            .items()
            .iter()
            .filter(|i| i.category() == c)
            .count()
    };
    assert_eq!(checklist.items().len(), 28);
    assert_eq!(count("infrastructure"), 12);
    assert_eq!(count("security"), 8);
    assert_eq!(count("configuration"), 8);
}

/// Without the features, the template's Kubernetes and ALB items are refused, naming the
/// feature to enable.
#[test]
#[cfg(not(all(feature = "kubernetes", feature = "aws-alb")))]
fn the_seed_template_names_the_features_it_needs() {
    let err = cutover_preflight::load_yaml(cutover_preflight::TEMPLATE)
        .unwrap_err()
        .to_string();
    assert!(err.contains("enable its feature"), "{err}");
}

#[test]
fn bad_yaml_names_the_field() {
    let err = |t: &str| cutover_preflight::load_yaml(t).unwrap_err().to_string();
    let e = err("name: p\nchecks:\n  - { id: a, category: x, http: { status: 200 } }\n");
    assert_eq!(e, "checks[0].http: missing field `url`");
    let e = err("name: p\nchecks:\n  - { id: a, category: x, http: { url: u, stauts: 200 } }\n");
    assert!(
        e.starts_with("checks[0].http.stauts: unknown field `stauts`"),
        "{e}"
    );
    let e = err("name: p\nchecks:\n  - { id: a, category: x, smoke: { url: u } }\n");
    assert!(e.starts_with("checks[0].smoke: unknown check kind `smoke`; known: alb_healthy_targets, approval, attestation, burn_rate, business_hours"), "{e}");
    let e = err("name: p\nchecks:\n  - { id: a, category: x, tcp: { address: nohost } }\n");
    assert!(
        e.starts_with("checks[0].tcp.address: `nohost` has no port"),
        "{e}"
    );
    let e = err(
        "name: p\nchecks:\n  - { id: a, category: x, freeze: { zone: Mars/Base, windows: [] } }\n",
    );
    assert!(
        e.starts_with("checks[0].freeze.zone: unknown time zone `Mars/Base`"),
        "{e}"
    );
    let e = err("name: p\nchecks: []\nexemptions: [ { check: a, reason: r, by: b } ]\n");
    assert_eq!(e, "exemptions[0]: missing field `expires`");
    let e = err(
        "name: p\nchecks:\n  - { id: a, category: x, env: { names: [A] }, fix: { shell: {} } }\n",
    );
    assert!(
        e.starts_with("checks[0].fix.shell: unknown fix kind `shell`"),
        "{e}"
    );
}
