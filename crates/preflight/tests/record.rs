//! What a checklist gate of built-in checks leaves in the rollout's decision log: every check,
//! the exemption used, the fix run (against a real HTTP service), and no secret.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cutover_core::checklist::CheckStatus;
use cutover_core::planner::ActionResult;
use cutover_core::{Canary, CanaryStep, Entry, GateStage, Outcome, Plan, Rollout};
use cutover_test::FakeRouter;

#[tokio::test]
async fn the_log_has_every_check_the_exemption_and_the_fix_but_no_secret() {
    let warm = Arc::new(AtomicBool::new(false));
    let addr = common::serve(common::cache_app(&warm)).await;
    let base = format!("http://ops:hunter2@127.0.0.1:{}", addr.port());
    // A closed port: this fix cannot apply, and its error must not carry the token either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        r#"
name: preflight
allow_fixes: true
timeout: 5s
checks:
  - id: cache-warm
    category: infrastructure
    http: {{ url: "{base}/cache?token=s3cret", status: 200 }}
    fix: {{ http: {{ url: "{base}/warm?token=s3cret" }} }}
  - id: edge-warm
    category: infrastructure
    required: false
    http: {{ url: "http://127.0.0.1:{closed}/cache?token=s3cret", status: 200 }}
    fix: {{ http: {{ url: "http://ops:hunter2@127.0.0.1:{closed}/warm?token=s3cret" }} }}
  - id: secrets
    category: security
    env: {{ names: [CUTOVER_PREFLIGHT_TEST_NEVER_SET] }}
exemptions:
  - {{ check: secrets, reason: "vault migration CHG-9", by: alice, expires: 2099-01-01T00:00:00Z }}
"#
    );
    let checklist = cutover_preflight::load_yaml(&yaml).unwrap();
    let rollout = Rollout::builder(
        "api",
        Plan::new(Canary::new([CanaryStep::set_weight(50).unwrap()])),
    )
    .revisions("v1", "v2")
    .router(FakeRouter::new("mesh"))
    .gate(GateStage::PreFlight, checklist)
    .build()
    .unwrap();
    let handle = rollout.handle();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert!(warm.load(Ordering::SeqCst), "the fix ran");

    let records = handle.records().await.unwrap();
    let record = records
        .iter()
        .find_map(|r| match &r.entry {
            Entry::Decision {
                result: Some(ActionResult::Checklist { checklist, .. }),
                ..
            } => Some(checklist.clone()),
            _ => None,
        })
        .expect("the checklist's record");
    let cache = &record.checks[0];
    assert_eq!(
        (cache.id.as_str(), cache.status),
        ("cache-warm", CheckStatus::Pass)
    );
    let fix = cache.fix.as_ref().expect("the fix run is recorded");
    assert!(
        fix.applied && fix.status_before == CheckStatus::Fail,
        "{fix:?}"
    );
    let edge = record.checks[1].fix.as_ref().expect("the failed fix too");
    assert!(!edge.applied, "{edge:?}");
    let exemption = record.checks[2].exempted.as_ref().unwrap();
    assert_eq!(
        (exemption.by.as_str(), exemption.reason.as_str()),
        ("alice", "vault migration CHG-9")
    );

    let log = serde_json::to_string(&records).unwrap();
    assert!(log.contains("CHG-9") && log.contains("127.0.0.1"), "{log}");
    assert!(
        !log.contains("s3cret") && !log.contains("hunter2"),
        "a secret reached the log: {log}"
    );
}
