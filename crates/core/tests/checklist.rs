//! Pre-flight checklists: timeouts, concurrency, exemptions, fixes, YAML, and the gate that
//! refuses a rollout before anything changed. All on paused time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use cutover_core::checklist::{
    AUDIT_KIND, Check, CheckContext, CheckResult, CheckStatus, ChecklistError, ChecklistItem,
    ChecklistRecord, Exemption, FixRecord, Registry,
};
use cutover_core::planner::ActionResult;
use cutover_core::{
    Canary, Checklist, DecisionRecord, Entry, FileStateStore, GateStage, GateVerdict,
    MemoryStateStore, Outcome, RolloutId, StateStore, Timestamp, TokioClock,
};
use cutover_test::{ColdCache, FakeRouter};
use serde::Deserialize;

const EPOCH: u64 = 1_700_000_000_000;

fn clock() -> TokioClock {
    TokioClock::starting_at(Timestamp::from_unix_millis(EPOCH))
}

fn at(offset: Duration) -> Timestamp {
    Timestamp::from_unix_millis(EPOCH) + offset
}

/// A check that answers `result` after `delay`, counting how many run at once.
#[derive(Debug, Clone)]
struct Scripted {
    result: CheckResult,
    delay: Duration,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(result: CheckResult) -> Self {
        Scripted {
            result,
            delay: Duration::ZERO,
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[async_trait]
impl Check for Scripted {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.result.clone()
    }
}

/// A check that never answers.
#[derive(Debug)]
struct Hangs;

#[async_trait]
impl Check for Hangs {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_is_cut_off_at_its_timeout_and_reported_as_an_error() {
    let checklist = Checklist::new("pf")
        .clock(clock())
        .item(ChecklistItem::new("hangs", "infrastructure", Hangs).timeout(secs(5)))
        .item(ChecklistItem::new(
            "ok",
            "infrastructure",
            Scripted::new(CheckResult::pass("fine")),
        ));
    let started = tokio::time::Instant::now();
    let report = checklist.run(&CheckContext::default()).await;
    assert_eq!(started.elapsed(), secs(5));
    let hangs = report.get("hangs").unwrap();
    assert_eq!(hangs.result.status, CheckStatus::Error);
    assert!(
        hangs.result.message.contains("no answer within 5s"),
        "{}",
        hangs.result.message
    );
    assert_eq!(report.get("ok").unwrap().result.status, CheckStatus::Pass);
    assert!(!report.passed());
}

#[tokio::test(start_paused = true)]
async fn checks_run_concurrently_up_to_the_limit() {
    let base = Scripted::new(CheckResult::pass("fine")).after(secs(10));
    let mut checklist = Checklist::new("pf").clock(clock()).concurrency(3);
    for i in 0..7 {
        checklist = checklist.item(ChecklistItem::new(format!("c{i}"), "x", base.clone()));
    }
    let started = tokio::time::Instant::now();
    let report = checklist.run(&CheckContext::default()).await;
    assert!(report.passed());
    assert_eq!(base.peak.load(Ordering::SeqCst), 3);
    // 7 checks of 10 s, 3 at a time: three rounds.
    assert_eq!(started.elapsed(), secs(30));
    let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["c0", "c1", "c2", "c3", "c4", "c5", "c6"],
        "checklist order kept"
    );
}

#[tokio::test(start_paused = true)]
async fn advisory_failures_and_warnings_do_not_block() {
    let checklist = Checklist::new("pf")
        .clock(clock())
        .item(ChecklistItem::new(
            "w",
            "x",
            Scripted::new(CheckResult::warn("12 days left")),
        ))
        .item(
            ChecklistItem::new("adv", "x", Scripted::new(CheckResult::fail("no runbook")))
                .advisory(),
        );
    let report = checklist.run(&CheckContext::default()).await;
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.get("adv").unwrap().verdict(), "fail (advisory)");
}

#[tokio::test(start_paused = true)]
async fn exemptions_let_a_failure_through_until_they_expire_and_unknown_ones_are_errors() {
    let failing = || Scripted::new(CheckResult::fail("disk 95% full").hint("clean /var/log"));
    let valid = Exemption::new("disk", "cleanup CHG-7 tonight", "alice", at(mins(60)));
    let checklist = Checklist::new("pf")
        .clock(clock())
        .item(ChecklistItem::new("disk", "infrastructure", failing()))
        .exemption(valid.clone());
    let report = checklist.run(&CheckContext::default()).await;
    assert!(report.passed(), "{}", report.table());
    let disk = report.get("disk").unwrap();
    assert_eq!(
        disk.result.status,
        CheckStatus::Fail,
        "the real result is kept"
    );
    assert_eq!(disk.exempted.as_ref(), Some(&valid));
    assert_eq!(report.exemptions_used, std::slice::from_ref(&valid));
    assert!(
        report.table().contains("fail (exempted)"),
        "{}",
        report.table()
    );

    // The same checklist an hour and a minute later: the exemption has expired.
    tokio::time::advance(mins(61)).await;
    let report = checklist.run(&CheckContext::default()).await;
    assert!(!report.passed());
    let disk = report.get("disk").unwrap();
    assert_eq!(disk.result.status, CheckStatus::Error);
    assert!(
        disk.result.message.contains("expired"),
        "{}",
        disk.result.message
    );
    assert!(report.exemptions_used.is_empty());

    // An exemption for a check the list does not have.
    let checklist = Checklist::new("pf")
        .clock(clock())
        .item(ChecklistItem::new(
            "ok",
            "x",
            Scripted::new(CheckResult::pass("fine")),
        ))
        .exemption(Exemption::new("dsik", "typo", "bob", at(mins(60))));
    let report = checklist.run(&CheckContext::default()).await;
    assert!(!report.passed());
    let row = report.get("exemption:dsik").unwrap();
    assert_eq!(row.result.status, CheckStatus::Error);
}

#[tokio::test(start_paused = true)]
async fn a_fix_runs_only_when_allowed_and_is_recorded() {
    let switch = ColdCache::default();
    let item = ChecklistItem::new("cache", "configuration", switch.clone()).fix(switch.clone());
    let checklist = Checklist::new("pf").clock(clock()).item(item);

    let report = checklist.run(&CheckContext::default()).await;
    assert!(!report.passed());
    assert!(!switch.warmed(), "no fix without permission");
    let row = report.get("cache").unwrap();
    assert!(row.fix.is_none());
    assert!(
        row.result
            .hint
            .as_deref()
            .unwrap()
            .contains("automatic fix available")
    );

    let report = checklist
        .allow_fixes(true)
        .run(&CheckContext::default())
        .await;
    assert!(report.passed(), "{}", report.table());
    let row = report.get("cache").unwrap();
    let fix = row.fix.as_ref().unwrap();
    assert!(fix.applied);
    assert_eq!(fix.status_before, CheckStatus::Fail);
    assert_eq!(row.result.status, CheckStatus::Pass, "the check ran again");
    assert_eq!(row.verdict(), "pass (fixed)");
}

#[tokio::test(start_paused = true)]
async fn a_failing_checklist_refuses_the_rollout_before_any_traffic_moves() {
    let router = FakeRouter::new("mesh");
    let store = MemoryStateStore::new();
    let checklist = Checklist::new("preflight")
        .clock(clock())
        .audit_to(store.clone())
        .item(ChecklistItem::new(
            "ok",
            "x",
            Scripted::new(CheckResult::pass("fine")),
        ))
        .item(ChecklistItem::new(
            "tls",
            "security",
            Scripted::new(CheckResult::fail("certificate expired 3 days ago").hint("renew it")),
        ));
    let rollout = builder("refused", plan(Canary::new([weight(10)])))
        .state_store(store.clone())
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
    assert!(
        reason.contains("tls [fail]: certificate expired 3 days ago (hint: renew it)"),
        "{reason}"
    );
    assert!(
        !reason.contains("ok ["),
        "passing checks are not listed: {reason}"
    );
    assert!(router.calls().is_empty(), "no router call at all");
    assert!(
        outcome
            .to_string()
            .starts_with("refused by gate `preflight`")
    );
    let records = summaries(&handle.records().await.unwrap());
    assert!(
        records.iter().any(|s| s.contains("certificate expired")),
        "{records:?}"
    );
    // The full report, with what passed too, is kept in the store's audit document.
    let doc = store
        .load_document(AUDIT_KIND, &RolloutId::new("refused").unwrap())
        .await
        .unwrap()
        .unwrap();
    let reports = doc.body["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["checks"][0]["id"], "ok");
    assert_eq!(reports[0]["checks"][0]["result"]["status"], "pass");
    assert_eq!(reports[0]["checks"][1]["result"]["hint"], "renew it");
}

/// The record of the checklist gate's last answer in `records`.
fn checklist_records(records: &[DecisionRecord]) -> Vec<(GateVerdict, ChecklistRecord)> {
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Decision {
                result: Some(ActionResult::Checklist { verdict, checklist }),
                ..
            } => Some((verdict.clone(), (**checklist).clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_decision_log_keeps_every_check_every_exemption_used_and_every_fix_run() {
    let dir = tempfile::tempdir().unwrap();
    // A file store: the log goes through JSON on disk and is read back from it.
    let store = FileStateStore::new(dir.path()).unwrap();
    let switch = ColdCache::default();
    let checklist = Checklist::new("preflight")
        .clock(clock())
        .allow_fixes(true)
        .item(ChecklistItem::new(
            "ok",
            "infrastructure",
            Scripted::new(CheckResult::pass("fine").evidence("token", "s3cr3t-evidence")),
        ))
        .item(ChecklistItem::new("cache", "configuration", switch.clone()).fix(switch.clone()))
        .item(ChecklistItem::new(
            "secrets-present",
            "security",
            Scripted::new(CheckResult::fail("not set: API_TOKEN").hint("set it")),
        ))
        .item(ChecklistItem::new(
            "tls",
            "security",
            Scripted::new(CheckResult::fail("certificate expired 3 days ago").hint("renew it")),
        ))
        .exemption(Exemption::new(
            "secrets-present",
            "secrets move to the vault in CHG-2041",
            "alice",
            at(mins(60)),
        ));
    let rollout = builder("logged", plan(Canary::new([weight(10)])))
        .state_store(store.clone())
        .router(FakeRouter::new("mesh"))
        .gate(GateStage::PreFlight, checklist)
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome:?}");

    let id = RolloutId::new("logged").unwrap();
    let records = store.records(&id, 0, 1000).await.unwrap();
    let found = checklist_records(&records);
    assert_eq!(found.len(), 1, "one checklist run, one record");
    let (verdict, record) = &found[0];
    assert!(matches!(verdict, GateVerdict::Closed { .. }), "{verdict}");
    assert_eq!(record.checklist, "preflight");
    assert!(record.fixes_allowed);
    let statuses: Vec<(&str, &str, CheckStatus)> = record
        .checks
        .iter()
        .map(|c| (c.id.as_str(), c.category.as_str(), c.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("ok", "infrastructure", CheckStatus::Pass),
            ("cache", "configuration", CheckStatus::Pass),
            ("secrets-present", "security", CheckStatus::Fail),
            ("tls", "security", CheckStatus::Fail),
        ]
    );
    assert_eq!(record.checks[3].hint.as_deref(), Some("renew it"));
    assert!(record.checks[3].blocks() && !record.checks[2].blocks());

    // The exemption used: which check, why, who, until when.
    let used: Vec<&Exemption> = record.exemptions_used().collect();
    assert_eq!(
        used,
        [&Exemption::new(
            "secrets-present",
            "secrets move to the vault in CHG-2041",
            "alice",
            at(mins(60)),
        )]
    );
    // The fix run: what, and what came of it.
    let fixes: Vec<(&str, &FixRecord)> = record.fixes().collect();
    assert_eq!(fixes.len(), 1);
    assert_eq!(fixes[0].0, "cache");
    assert_eq!(
        fixes[0].1,
        &FixRecord {
            description: "warm the cache".into(),
            applied: true,
            message: "cache warmed".into(),
            status_before: CheckStatus::Fail,
        }
    );
    // People read the same in the record's summary.
    let summary = &records
        .iter()
        .find(|r| {
            matches!(
                &r.entry,
                Entry::Decision {
                    result: Some(ActionResult::Checklist { .. }),
                    ..
                }
            )
        })
        .unwrap()
        .summary;
    assert!(
        summary.contains("4 checks: 2 pass, 2 fail")
            && summary.contains(
                "exempted: secrets-present (by alice until 2023-11-14T23:13:20.000Z: secrets move to the vault in CHG-2041)"
            )
            && summary.contains("fix applied on cache: cache warmed"),
        "{summary}"
    );
    // Evidence stays out of the log (the audit document has it).
    let log = std::fs::read_dir(dir.path())
        .unwrap()
        .flat_map(|d| walk(&d.unwrap().path()))
        .collect::<String>();
    assert!(log.contains("CHG-2041"), "the log on disk was read");
    assert!(!log.contains("s3cr3t-evidence"), "no evidence in the log");
}

/// Every file's text under `path`.
fn walk(path: &std::path::Path) -> Vec<String> {
    if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .flat_map(|d| walk(&d.unwrap().path()))
            .collect()
    } else {
        vec![std::fs::read_to_string(path).unwrap_or_default()]
    }
}

#[test]
fn logs_written_before_checklist_records_still_read() {
    // A gate record as written before checklists were recorded, and a checklist record
    // missing every field that has a default.
    let old = r#"{"seq":3,"at":"2026-12-01T10:00:00Z","phase":"pre_flight","inputs":{"step_elapsed":"0s"},
        "entry":{"kind":"decision","decision":{"apply":{"check_gate":{"gate":"preflight"}}},
        "result":{"gate":{"closed":{"reason":"1 required check did not pass"}}}},
        "summary":"check gate `preflight`: closed"}"#;
    let record: DecisionRecord = serde_json::from_str(old).unwrap();
    let Entry::Decision {
        result: Some(result),
        ..
    } = &record.entry
    else {
        panic!("{record:?}");
    };
    assert!(matches!(
        result.gate_verdict(),
        Some(GateVerdict::Closed { .. })
    ));
    let sparse = r#"{"checklist":{"verdict":"open","checklist":{"checklist":"pf",
        "started_at":"2026-12-01T10:00:00Z","finished_at":"2026-12-01T10:00:01Z",
        "checks":[{"id":"a","status":"pass"}]}}}"#;
    let result: ActionResult = serde_json::from_str(sparse).unwrap();
    let ActionResult::Checklist { verdict, checklist } = &result else {
        panic!("{result:?}");
    };
    assert_eq!(verdict, &GateVerdict::Open);
    assert!(!checklist.fixes_allowed);
    assert!(
        checklist.checks[0].required,
        "checks are required unless said"
    );
    assert_eq!(checklist.exemptions_used().count(), 0);
    // And a full one goes through JSON unchanged.
    let json = serde_json::to_string(&result).unwrap();
    assert_eq!(serde_json::from_str::<ActionResult>(&json).unwrap(), result);
}

/// Pending until someone approves the checklist's gate through the store.
#[derive(Debug)]
struct NeedsApproval;

#[async_trait]
impl Check for NeedsApproval {
    async fn run(&self, ctx: &CheckContext) -> CheckResult {
        match ctx.approvals.get(&ctx.checklist) {
            Some(a) if a.approved => CheckResult::pass(format!("approved by {}", a.by)),
            Some(a) => CheckResult::fail(format!("rejected by {}", a.by)),
            None => CheckResult::pending("waiting for approval"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_pending_approval_holds_the_rollout_until_approved_through_the_store() {
    let router = FakeRouter::new("mesh");
    let checklist = Checklist::new("preflight")
        .clock(clock())
        .poll_interval(secs(30))
        .item(ChecklistItem::new("change-board", "process", NeedsApproval));
    let rollout = builder("approval", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .gate(GateStage::PreFlight, checklist)
        .build()
        .unwrap();
    let handle = rollout.handle().by("carol");
    let run = tokio::spawn(rollout.run());
    tokio::time::sleep(mins(5)).await;
    assert!(router.calls().is_empty(), "held while pending");
    handle.approve("preflight", "CAB-12").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixedParams {
    status: String,
    #[serde(default)]
    message: Option<String>,
}

fn registry() -> Registry {
    Registry::new().check("fixed", |p: FixedParams| {
        let message = p.message.unwrap_or_default();
        match p.status.as_str() {
            "pass" => Ok(Scripted::new(CheckResult::pass(message))),
            "fail" => Ok(Scripted::new(CheckResult::fail(message))),
            other => Err(("status".into(), format!("unknown status `{other}`"))),
        }
    })
}

#[tokio::test(start_paused = true)]
async fn yaml_checklists_build_and_bad_ones_name_the_field() {
    let checklist = registry()
        .load_yaml(
            r"
name: preflight
concurrency: 2
timeout: 3s
checks:
  - { id: a, category: infrastructure, fixed: { status: pass } }
  - { id: b, category: security, required: false, fixed: { status: fail, message: nope } }
exemptions:
  - { check: a, reason: r, by: alice, expires: 2030-01-01T00:00:00Z }
",
        )
        .unwrap();
    assert_eq!(checklist.name(), "preflight");
    assert_eq!(checklist.items().len(), 2);
    let report = checklist.clock(clock()).run(&CheckContext::default()).await;
    assert!(report.passed());

    let err = |text: &str| registry().load_yaml(text).unwrap_err();
    let e = err("name: p\nchecks:\n  - { id: a, category: x, htp: { url: u } }\n");
    assert_eq!(e.path(), Some("checks[0].htp"));
    assert!(
        e.to_string()
            .contains("unknown check kind `htp`; known: fixed"),
        "{e}"
    );

    let e = err("name: p\nchecks:\n  - { id: a, category: x, fixed: { message: m } }\n");
    assert_eq!(e.path(), Some("checks[0].fixed"));
    assert!(e.to_string().contains("missing field `status`"), "{e}");

    let e = err("name: p\nchecks:\n  - { id: a, category: x, fixed: { status: maybe } }\n");
    assert_eq!(e.path(), Some("checks[0].fixed.status"));

    let e = err("name: p\nchecks: []\nexemptions:\n  - { check: a, reason: r, by: alice }\n");
    assert_eq!(e.path(), Some("exemptions[0]"));
    assert!(e.to_string().contains("missing field `expires`"), "{e}");

    let e = err("name: p\nchecks:\n  - { id: a, category: x }\n");
    assert!(e.to_string().contains("no check kind given"), "{e}");

    let e = err(
        "name: p\nchecks:\n  - { id: a, category: x, timeout: soon, fixed: { status: pass } }\n",
    );
    assert!(e.to_string().contains("invalid duration `soon`"), "{e}");

    let e = err(
        "name: p\nchecks:\n  - { id: a, category: x, fixed: { status: pass } }\n  - { id: a, category: x, fixed: { status: pass } }\n",
    );
    assert_eq!(e.path(), Some("checks[1].id"));

    assert!(matches!(err("name: [p"), ChecklistError::Syntax { .. }));
}

#[tokio::test(start_paused = true)]
async fn the_report_has_a_table_and_json() {
    let checklist = Checklist::new("pf").clock(clock()).item(ChecklistItem::new(
        "tls",
        "security",
        Scripted::new(
            CheckResult::fail("expired")
                .hint("renew the certificate")
                .evidence("days_left", -3),
        ),
    ));
    let report = checklist.run(&CheckContext::default()).await;
    let table = report.table();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("CATEGORY  CHECK  RESULT  MESSAGE  HINT"),
        "{table}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("security  tls    fail    expired  renew the certificate"),
        "{table}"
    );
    assert!(table.contains("pf: NOT PASSED"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["checks"][0]["result"]["evidence"]["days_left"], -3);
    assert_eq!(json["checks"][0]["result"]["status"], "fail");
    let back: cutover_core::checklist::ChecklistReport =
        serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}
