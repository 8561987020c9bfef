//! The `cutover` binary as a user runs it: `run` in one process; `status`, `pause`, `resume`,
//! `promote`, `abort` and `rollback` from others, through a file store; the decision log
//! shows who did what and why.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A canary of the local proxy (its upstreams need not answer: no analysis reads them): 10 %,
/// an hour's pause, 40 %, a pause until resumed.
const CANARY: &str = "\
rollout: { id: checkout, stable: v1, candidate: v2, lease_ttl: 2s }
providers:
  local_proxy: { listen: 127.0.0.1:0, upstreams: { v1: 127.0.0.1:9, v2: 127.0.0.1:9 } }
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: { duration: 1h }
      - set_weight: 40
      - pause: {}
poll_interval: 1s
";

/// A store and a run file in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    store: String,
    run_file: PathBuf,
    records: PathBuf,
}

impl Setup {
    /// [`CANARY`] on a file store.
    fn new() -> Self {
        Self::with_store(None)
    }

    /// The same on the store `store` (default: a file store in the temporary directory).
    fn with_store(store: Option<String>) -> Self {
        Self::with(store, CANARY)
    }

    /// The run file `run_file_text` on the store `store` (default: a file store in the
    /// temporary directory).
    fn with(store: Option<String>, run_file_text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run_file = dir.path().join("checkout.yaml");
        std::fs::write(&run_file, run_file_text).unwrap();
        let store = store.unwrap_or_else(|| format!("file:{}", dir.path().join("store").display()));
        let records = dir.path().join("records.json");
        Setup {
            dir,
            store,
            run_file,
            records,
        }
    }

    fn command(&self, by: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cutover"));
        command
            .arg("--store")
            .arg(&self.store)
            .arg("--by")
            .arg(by)
            .args(args)
            .stdin(Stdio::null());
        command
    }

    fn cutover(&self, by: &str, args: &[&str]) -> Output {
        self.command(by, args).output().expect("cutover runs")
    }

    fn run(&self) -> Child {
        self.command(
            "runner",
            &[
                "run",
                self.run_file.to_str().unwrap(),
                "--out",
                self.records.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cutover run starts")
    }

    /// `status checkout -o json`, once the rollout exists.
    fn status(&self) -> Option<Value> {
        let out = self.cutover("observer", &["status", "checkout", "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("status -o json is JSON"))
    }

    /// Polls the status until `done` holds; fails after 20 s.
    async fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status();
            if let Some(status) = &status
                && done(status)
            {
                return status.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last status: {status:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The candidate's share of traffic, in whole percent.
fn candidate_percent(status: &Value) -> u64 {
    status["summary"]["split"]["v2"].as_u64().unwrap_or(0)
}

fn summaries(records: &Value) -> Vec<String> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["summary"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn another_process_pauses_promotes_and_aborts_a_rollout_that_run_drives() {
    steer_from_other_processes(&Setup::new()).await;
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn the_same_through_a_postgres_store() {
    let server = cutover_fleet::testing::PgServer::shared();
    let db = "cli_e2e";
    server.database(db).await.expect("a fresh database");
    let store = format!("postgres://postgres@127.0.0.1:{}/{db}", server.port());
    steer_from_other_processes(&Setup::with_store(Some(store))).await;
}

/// `run` in one process; `pause`, `resume`, `promote`, `abort`, `status` from others.
async fn steer_from_other_processes(setup: &Setup) {
    let runner = setup.run();

    let paused = setup
        .wait_for("the timed pause", |s| s["summary"]["step"] == 1)
        .await;
    assert_eq!(candidate_percent(&paused), 10, "{paused:#}");
    assert!(
        paused["summary"]["lease"]["owner"]
            .as_str()
            .unwrap()
            .starts_with("cutover-cli/runner@"),
        "{paused:#}"
    );

    // A follower started now sees every decision until the rollout ends.
    let follower = setup
        .command("observer", &["status", "checkout", "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let pause = setup.cutover(
        "alice",
        &[
            "pause",
            "checkout",
            "--reason",
            "checking dashboards",
            "--wait",
            "20s",
        ],
    );
    assert!(pause.status.success(), "{}", text(&pause));
    assert!(
        text(&pause).contains("command pause by alice (checking dashboards): paused"),
        "{}",
        text(&pause)
    );
    let table = setup.cutover("observer", &["status"]);
    let table = text(&table);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(
        table.contains("checkout") && table.contains("paused by alice: checking dashboards"),
        "{table}"
    );

    let resume = setup.cutover(
        "bob",
        &[
            "resume",
            "checkout",
            "-r",
            "dashboards fine",
            "--wait",
            "20s",
        ],
    );
    assert!(resume.status.success(), "{}", text(&resume));
    let promote = setup.cutover(
        "bob",
        &["promote", "checkout", "-r", "on to 40 %", "--wait", "20s"],
    );
    assert!(promote.status.success(), "{}", text(&promote));
    let at_40 = setup
        .wait_for("the pause until resumed", |s| s["summary"]["step"] == 3)
        .await;
    assert_eq!(candidate_percent(&at_40), 40, "{at_40:#}");

    let abort = setup.cutover("carol", &["abort", "checkout", "--reason", "p99 too high"]);
    assert!(abort.status.success(), "{}", text(&abort));

    let out = runner.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "aborted: exit 1\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("outcome: aborted by carol: p99 too high"),
        "{stdout}"
    );
    assert!(
        stdout.contains("set split v1 90%, v2 10%"),
        "plain progress lines: {stdout}"
    );
    assert!(stdout.contains("set split v1 100%, v2 0%"), "{stdout}");

    let follow = follower.wait_with_output().unwrap();
    assert_eq!(follow.status.code(), Some(1), "{}", text(&follow));
    assert!(
        String::from_utf8_lossy(&follow.stdout).contains("command abort by carol (p99 too high)"),
        "{}",
        text(&follow)
    );

    // The decision log, from the store and from the file `run --out` wrote, shows who and why.
    let end = setup.status().unwrap();
    assert_eq!(end["summary"]["phase"], "done");
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(&setup.records).unwrap()).unwrap();
    let lines = summaries(&log);
    for expected in [
        "command pause by alice (checking dashboards): paused",
        "command resume by bob (dashboards fine): resumed (paused by alice: checking dashboards)",
        "command promote by bob (on to 40 %)",
        "command abort by carol (p99 too high): rolling back",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(expected)).count(),
            1,
            "{expected:?} in {lines:#?}"
        );
    }
    let latest = summaries(&end["records"]);
    assert!(
        latest
            .iter()
            .any(|l| l.starts_with("finished: aborted by carol")),
        "{latest:#?}"
    );

    // Bad input: clear errors and the store's exit code.
    let late = setup.cutover("dave", &["resume", "checkout", "-r", "too late"]);
    assert_eq!(late.status.code(), Some(4), "{}", text(&late));
    assert!(text(&late).contains("has finished"), "{}", text(&late));
    let unknown = setup.cutover("dave", &["pause", "nope", "-r", "x"]);
    assert_eq!(unknown.status.code(), Some(4), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no rollout `nope`"),
        "{}",
        text(&unknown)
    );
    let yaml = setup.cutover("observer", &["status", "-o", "yaml"]);
    assert!(text(&yaml).contains("id: checkout"), "{}", text(&yaml));
}

#[tokio::test(flavor = "current_thread")]
async fn rollback_takes_over_from_a_runner_that_died() {
    let setup = Setup::new();
    let mut runner = setup.run();
    setup
        .wait_for("the pause step", |s| s["summary"]["step"] == 1)
        .await;
    runner.kill().unwrap();
    let _ = runner.wait();

    let out = setup.cutover(
        "erin",
        &[
            "rollback",
            "checkout",
            "--file",
            setup.run_file.to_str().unwrap(),
            "--reason",
            "the runner host died",
            "--timeout",
            "60s",
        ],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("did not roll back and its lease ran out"),
        "{said}"
    );
    assert!(said.contains("rolling it back here"), "{said}");
    assert!(
        said.contains("is back on stable: aborted by erin: the runner host died"),
        "{said}"
    );
    let end = setup.status().expect("the rollout is in the store");
    assert_eq!(candidate_percent(&end), 0, "{end:#}");

    // Again: already back on stable is success too.
    let again = setup.cutover("erin", &["rollback", "checkout", "-r", "again"]);
    assert!(again.status.success(), "{}", text(&again));
}

/// A canary that promotes alone: 10 %, a second's pause, 50 %.
const SHORT_CANARY: &str = "\
rollout: { id: checkout, stable: v1, candidate: v2 }
providers:
  local_proxy: { listen: 127.0.0.1:0, upstreams: { v1: 127.0.0.1:9, v2: 127.0.0.1:9 } }
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: { duration: 1s }
      - set_weight: 50
poll_interval: 1s
";

fn select<'a>(doc: &'a scraper::Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&scraper::Selector::parse(css).unwrap())
        .collect()
}

fn texts(element: &scraper::ElementRef<'_>) -> String {
    element.text().collect::<Vec<_>>().join(" ")
}

#[test]
fn report_writes_the_html_report_of_a_rollout_that_run_drove() {
    report_of_a_finished_rollout(&Setup::with(None, SHORT_CANARY));
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn report_through_a_postgres_store() {
    let server = cutover_fleet::testing::PgServer::shared();
    let db = "cli_report";
    server.database(db).await.expect("a fresh database");
    let store = format!("postgres://postgres@127.0.0.1:{}/{db}", server.port());
    report_of_a_finished_rollout(&Setup::with(Some(store), SHORT_CANARY));
}

/// `run` to the end, then `report` from other processes.
fn report_of_a_finished_rollout(setup: &Setup) {
    let run = setup.run().wait_with_output().unwrap();
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("outcome: promoted"),
        "{}",
        text(&run)
    );
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(&setup.records).unwrap()).unwrap();
    let decisions = log.as_array().unwrap().len();

    let file = setup.dir.path().join("report.html");
    let out = setup.cutover(
        "observer",
        &["report", "checkout", "-o", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "report of rollout `checkout` ({decisions} decisions): {}",
            file.display()
        )),
        "{}",
        text(&out)
    );
    let html = std::fs::read_to_string(&file).unwrap();
    let doc = scraper::Html::parse_document(&html);
    let title = select(&doc, "title");
    assert_eq!(texts(&title[0]), "Rollout checkout: promoted", "{html}");
    let id = select(&doc, "#summary h1 .id");
    assert_eq!(texts(&id[0]), "checkout");
    let outcome = select(&doc, "#outcome");
    assert_eq!(outcome[0].attr("data-outcome"), Some("promoted"));
    // The traffic chart: an inline SVG with a line per revision and the revisions' legend.
    let traffic = select(&doc, "figure[data-chart=traffic] svg");
    assert_eq!(traffic.len(), 1, "one traffic chart: {html}");
    let chart = traffic[0].html();
    let legend: Vec<String> = select(&doc, "figure[data-chart=traffic] svg text")
        .iter()
        .map(texts)
        .collect();
    for revision in ["v1", "v2"] {
        assert!(
            legend.iter().any(|t| t.trim() == revision),
            "{revision} in the legend: {legend:?}"
        );
    }
    assert!(
        chart.matches("<polyline").count() >= 2,
        "a line per revision: {chart}"
    );
    // Every decision of the log, in order, ending with the promotion.
    let rows = select(&doc, "#log table.log tbody tr");
    assert_eq!(rows.len(), decisions, "{html}");
    assert!(
        texts(rows.last().unwrap()).contains("finished: promoted"),
        "{}",
        texts(rows.last().unwrap())
    );

    // Standard output without -o.
    let stdout = setup.cutover("observer", &["report", "checkout"]);
    assert!(stdout.status.success(), "{}", text(&stdout));
    assert!(String::from_utf8_lossy(&stdout.stdout).starts_with("<!DOCTYPE html>"));

    // An unknown rollout: the store's exit code, and no file.
    let missing = setup.dir.path().join("nope.html");
    let unknown = setup.cutover(
        "observer",
        &["report", "nope", "-o", missing.to_str().unwrap()],
    );
    assert_eq!(unknown.status.code(), Some(4), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no rollout `nope` in")
            && text(&unknown).contains("`cutover status` lists the rollouts"),
        "{}",
        text(&unknown)
    );
    assert!(!missing.exists());
    // A directory that does not exist: exit 5, naming the file.
    let nowhere = setup.dir.path().join("no/such/dir/report.html");
    let unwritable = setup.cutover(
        "observer",
        &["report", "checkout", "-o", nowhere.to_str().unwrap()],
    );
    assert_eq!(unwritable.status.code(), Some(5), "{}", text(&unwritable));
    assert!(
        text(&unwritable).contains("cannot write the report to"),
        "{}",
        text(&unwritable)
    );
}

/// `cutover check FILE ARGS` with `CUTOVER_CHECK_TOKEN` set to a secret.
fn check(file: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("check")
        .arg(file)
        .args(args)
        .env("CUTOVER_CHECK_TOKEN", "s3cret-token")
        .env_remove("CUTOVER_CHECK_MISSING")
        .output()
        .unwrap()
}

#[test]
fn check_runs_a_checklist_and_fails_on_a_blocking_check() {
    let dir = tempfile::tempdir().unwrap();
    let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listening.local_addr().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = write(
        "good.yaml",
        format!(
            "\
name: preflight
checks:
  - {{ id: token, category: security, env: {{ names: [CUTOVER_CHECK_TOKEN] }} }}
  - {{ id: api-port, category: infrastructure, tcp: {{ address: \"{open}\" }} }}
  - {{ id: scratch, category: infrastructure, disk: {{ path: \"{}\", min_free_mb: 1 }} }}
  - {{ id: nice-to-have, category: configuration, required: false, env: {{ names: [CUTOVER_CHECK_MISSING] }} }}
",
            dir.path().display()
        ),
    );
    let out = check(&good, &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines[0].starts_with("CATEGORY"), "{said}");
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .map_or_else(
                || panic!("no row for {id}: {said}"),
                |l| l.split_whitespace().nth(2).unwrap().to_owned(),
            )
    };
    assert_eq!(row("token"), "pass");
    assert_eq!(row("api-port"), "pass");
    assert_eq!(row("scratch"), "pass");
    assert_eq!(row("nice-to-have"), "fail", "advisory: {said}");
    assert!(said.contains("fail (advisory)"), "{said}");
    assert!(said.contains("preflight: PASSED"), "{said}");
    assert!(!said.contains("s3cret-token"), "names only: {said}");

    let bad = write(
        "bad.yaml",
        format!(
            "\
name: release-gate
checks:
  - {{ id: token, category: security, env: {{ names: [CUTOVER_CHECK_TOKEN] }} }}
  - {{ id: database, category: infrastructure, tcp: {{ address: \"{closed}\" }} }}
  - {{ id: secrets, category: security, env: {{ names: [CUTOVER_CHECK_MISSING] }} }}
"
        ),
    );
    let out = check(&bad, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("-o json is JSON");
    assert_eq!(report["checklist"], "release-gate");
    let status = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["result"]["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status("token").as_deref(), Some("pass"), "{report:#}");
    assert_eq!(status("database").as_deref(), Some("fail"), "{report:#}");
    assert_eq!(status("secrets").as_deref(), Some("fail"), "{report:#}");
    let table = check(&bad, &[]);
    assert_eq!(table.status.code(), Some(1));
    assert!(
        text(&table).contains("release-gate: NOT PASSED")
            && text(&table).contains("not set: CUTOVER_CHECK_MISSING"),
        "{}",
        text(&table)
    );

    // An invalid checklist: exit 3, naming the file and the field.
    let invalid = write(
        "invalid.yaml",
        "name: x\nchecks:\n  - { id: a, category: c, tcp: { host: db } }\n".to_owned(),
    );
    let out = check(&invalid, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("invalid.yaml: checks[0].tcp"),
        "{}",
        text(&out)
    );
    drop(listening);
}

#[tokio::test(flavor = "current_thread")]
async fn check_for_a_rollout_sees_its_approvals_in_the_store() {
    use cutover::StateStore as _;

    let setup = Setup::with(None, SHORT_CANARY);
    let run = setup.run().wait_with_output().unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let checklist = setup.dir.path().join("signoff.yaml");
    std::fs::write(
        &checklist,
        "name: signoff\nchecks:\n  - { id: security-signoff, category: security, approval: { gate: security } }\n",
    )
    .unwrap();
    let file = checklist.to_str().unwrap();
    let status = |out: &Output| -> String {
        let report: Value = serde_json::from_slice(&out.stdout).expect("-o json is JSON");
        report["checks"][0]["result"]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // No approval yet: pending blocks.
    let out = setup.cutover(
        "ci",
        &["check", file, "--rollout", "checkout", "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(status(&out), "pending");

    // The approval the engine keeps in the rollout's state once it applies `cutover approve`.
    let store = cutover::FileStateStore::new(setup.dir.path().join("store")).unwrap();
    let id: cutover::RolloutId = "checkout".parse().unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    let mut state = stored.state;
    state.approvals.insert(
        "security".to_owned(),
        cutover::Approval {
            approved: true,
            by: "sam".to_owned(),
            reason: "pen test passed".to_owned(),
            at: state.updated_at,
        },
    );
    store.save(&id, &state, Some(stored.version)).await.unwrap();

    let out = setup.cutover(
        "ci",
        &["check", file, "--rollout", "checkout", "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(status(&out), "pass");
    // Without --rollout the checks see no approvals.
    let out = setup.cutover("ci", &["check", file, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(status(&out), "pending");
    let out = setup.cutover("ci", &["check", file, "--rollout", "nope"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("no rollout `nope`"), "{}", text(&out));
}

/// A run file with `users(id, name)` migrations on the database in `CUTOVER_TEST_DATABASE_URL`:
/// a backfilled column, a rename and an index; `steps` are the canary's.
fn migrating(steps: &str) -> String {
    format!(
        "\
rollout: {{ id: checkout, stable: v1, candidate: v2 }}
providers:
  local_proxy: {{ listen: 127.0.0.1:0, upstreams: {{ v1: 127.0.0.1:9, v2: 127.0.0.1:9 }} }}
  postgres:
    connection_env: CUTOVER_TEST_DATABASE_URL
    lock_timeout: 1s
    batch_size: 1
    migrations:
      - {{ id: add-email, add_column: {{ table: users, column: email, type: text, backfill: \"lower(name) || '@example.com'\" }} }}
      - {{ id: rename-name, rename_column: {{ table: users, from: name, to: full_name }} }}
      - {{ id: index-email, contract: false, create_index: {{ table: users, name: users_email, columns: email }} }}
strategy: {{ canary: {{ steps: [ {steps} ] }} }}
poll_interval: 1s
bake_time: 100ms
"
    )
}

/// A fresh database `name` with `users(id, name)` and three rows; its URL (with a password the
/// server does not ask for: it must never be shown) and a client.
async fn users_database(name: &str) -> (String, cutover::postgres::tokio_postgres::Client) {
    use cutover::postgres::tokio_postgres;
    let server = cutover_fleet::testing::PgServer::shared();
    server.database(name).await.expect("a fresh database");
    let url = format!(
        "postgresql://postgres:hunter2@127.0.0.1:{}/{name}",
        server.port()
    );
    let (client, connection) = tokio_postgres::connect(&server.url(name), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);
             INSERT INTO users (name) VALUES ('Ada'), ('Grace'), ('Edsger');",
        )
        .await
        .unwrap();
    (url, client)
}

async fn columns(client: &cutover::postgres::tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn migration_states(
    client: &cutover::postgres::tokio_postgres::Client,
) -> Vec<(String, String)> {
    client
        .query(
            "SELECT migration || '/' || phase, state FROM cutover.migrations \
             ORDER BY migration, phase DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs postgres: scripts/test-deps"]
async fn a_run_file_migrates_postgres_expands_then_contracts_after_promotion() {
    let (url, client) = users_database("cli_migrate_promote").await;
    let setup = Setup::with(
        None,
        &migrating("{ set_weight: 10 }, { pause: { duration: 1s } }, { set_weight: 50 }"),
    );
    let run = setup
        .command(
            "runner",
            &[
                "run",
                setup.run_file.to_str().unwrap(),
                "--out",
                setup.records.to_str().unwrap(),
            ],
        )
        .env("CUTOVER_TEST_DATABASE_URL", &url)
        .output()
        .unwrap();
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(said.contains("outcome: promoted"), "{said}");

    // Expanded, backfilled, then contracted: `name` is gone, `full_name` holds its values.
    assert_eq!(columns(&client).await, ["id", "email", "full_name"]);
    let rows: Vec<(String, String)> = client
        .query("SELECT full_name, email FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        [
            ("Ada".into(), "ada@example.com".into()),
            ("Grace".into(), "grace@example.com".into()),
            ("Edsger".into(), "edsger@example.com".into()),
        ]
    );
    let index: bool = client
        .query_one("SELECT to_regclass('users_email') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(index, "the index stays");
    assert_eq!(
        migration_states(&client).await,
        [
            ("add-email/expand".into(), "applied".into()),
            ("add-email/contract".into(), "applied".into()),
            ("index-email/expand".into(), "applied".into()),
            ("rename-name/expand".into(), "applied".into()),
            ("rename-name/contract".into(), "applied".into()),
        ]
    );
    // The decision log says so, and never shows the connection string's password.
    let log = std::fs::read_to_string(&setup.records).unwrap();
    let lines = summaries(&serde_json::from_str(&log).unwrap());
    assert!(
        lines.iter().any(|l| l.contains("rename-name/contract")),
        "{lines:#?}"
    );
    assert!(
        !log.contains("hunter2") && !said.contains("hunter2"),
        "{said}\n{log}"
    );
    let status = text(&setup.cutover("observer", &["status", "checkout", "-o", "json"]));
    assert!(!status.contains("hunter2"), "{status}");

    // Without the variable: exit 3, naming the field and the variable.
    let unset = setup
        .command(
            "runner",
            &["run", setup.run_file.to_str().unwrap(), "--id", "again"],
        )
        .env_remove("CUTOVER_TEST_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(unset.status.code(), Some(3), "{}", text(&unset));
    assert!(
        text(&unset).contains(
            "providers.postgres.connection_env: the environment variable \
             `CUTOVER_TEST_DATABASE_URL` is not set"
        ),
        "{}",
        text(&unset)
    );
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs postgres: scripts/test-deps"]
async fn an_aborted_run_reverts_its_postgres_migrations() {
    let (url, client) = users_database("cli_migrate_abort").await;
    let setup = Setup::with(None, &migrating("{ set_weight: 10 }, { pause: {} }"));
    let runner = setup
        .command("runner", &["run", setup.run_file.to_str().unwrap()])
        .env("CUTOVER_TEST_DATABASE_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    setup
        .wait_for("the pause", |s| s["summary"]["step"] == 1)
        .await;
    assert_eq!(
        columns(&client).await,
        ["id", "name", "email", "full_name"],
        "expanded before the candidate takes traffic"
    );
    let abort = setup.cutover("carol", &["abort", "checkout", "-r", "bad schema"]);
    assert!(abort.status.success(), "{}", text(&abort));
    let out = runner.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(columns(&client).await, ["id", "name"], "reverted");
    assert_eq!(
        migration_states(&client).await,
        [
            ("add-email/expand".into(), "reverted".into()),
            ("index-email/expand".into(), "reverted".into()),
            ("rename-name/expand".into(), "reverted".into()),
        ]
    );
}

/// A canary whose analysis reads the proxy's error rate after an hour's pause.
const DRILL_PLAN: &str = "\
rollout: { stable: v1, candidate: v2 }
strategy:
  canary:
    steps:
      - set_weight: 20
      - pause: { duration: 1h }
      - analysis: { name: errors, count: 5, interval: 1s }
      - set_weight: 60
      - pause: {}
analyses:
  errors:
    threshold:
      metrics:
        - { name: error-rate, source: proxy, query: error_rate, max: 0.05, min_samples: 10 }
";

/// `cutover drill` of [`DRILL_PLAN`] with pauses capped at 1 s and `args`.
fn drill(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, DRILL_PLAN).unwrap();
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("drill")
        .arg(&plan)
        .args(["--max-pause", "1s", "--rate", "200", "--timeout", "60s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The seconds in `… {prefix}X.XX s…`.
fn seconds_after(said: &str, prefix: &str) -> f64 {
    let at = said
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {said}"));
    said[at + prefix.len()..]
        .split(" s")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seconds after {prefix:?} in {said}"))
}

#[test]
fn drill_times_the_rollback_of_an_injected_failure() {
    let out = drill(&["--max-time-to-stable", "30s"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("drill: step 1: pause of 1h shortened to 1s"),
        "{said}"
    );
    assert!(
        said.contains(
            "drill: injected errors (50 % of the candidate's requests answer 500) with 20.0 % \
             of traffic on the candidate"
        ),
        "{said}"
    );
    assert!(
        said.contains("rollback decided") && said.contains("analysis `errors` failed: error-rate:"),
        "{said}"
    );
    // The time from the failure to all traffic on stable: at least the 1 s pause before the
    // analysis first measures, and the same in the pass line.
    let took = seconds_after(&said, "all traffic on stable ");
    let passed = seconds_after(&said, "DRILL PASSED: back on stable in ");
    assert!((took - passed).abs() < f64::EPSILON, "{said}");
    assert!((0.9..30.0).contains(&took), "{took} s: {said}");
    let failed: u64 = said
        .split("requests not 2xx between the failure and stable: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of failed requests: {said}"));
    assert!(failed > 0, "the injected errors reached clients: {said}");

    // Slower than the limit: the drill fails, saying by how much.
    let slow = drill(&["--max-time-to-stable", "100ms"]);
    let said = text(&slow);
    assert_eq!(slow.status.code(), Some(1), "{said}");
    assert!(said.contains("DRILL FAILED: "), "{said}");
    assert!(
        said.contains("to stable is over the limit of 0.10 s"),
        "{said}"
    );
    assert!(!said.contains("DRILL PASSED"), "{said}");
}

#[test]
fn a_drill_whose_analyses_miss_the_failure_fails() {
    let out = drill(&["--inject", "latency", "--latency", "50ms"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "DRILL FAILED: the plan did not return traffic to stable after latency (the \
             candidate answers 50ms slower) (promoted); its analyses do not catch this failure"
        ),
        "{said}"
    );
}

#[test]
fn help_has_examples_and_exit_codes_and_completions_are_printed() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(args)
            .output()
            .unwrap()
    };
    let help = text(&run(&["--help"]));
    assert!(
        help.contains("Examples:") && help.contains("Exit codes:"),
        "{help}"
    );
    for command in [
        "run", "status", "pause", "abort", "lint", "import", "drill", "rollback", "report", "check",
    ] {
        let help = text(&run(&[command, "--help"]));
        assert!(
            help.contains("cutover "),
            "`{command} --help` has no example: {help}"
        );
    }
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("_cutover()"));
    let usage = run(&["pause"]);
    assert_eq!(usage.status.code(), Some(2));
    let report = run(&["report"]);
    assert_eq!(report.status.code(), Some(2), "the id is required");
}

#[test]
fn lint_finds_every_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("broken.yaml");
    std::fs::write(
        &plan,
        "\
strategy:
  canary:
    steps:
      - set_weight: 50
      - set_weight: 20
      - pause: { duration: later }
      - analysis: { name: latency, count: 0 }
progress_deadline: 0s
",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["lint", plan.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.replace(&*plan.to_string_lossy(), "broken.yaml"))
        .collect();
    let starts: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.split(" error:")
                .next()
                .unwrap()
                .split(" warning:")
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        starts,
        [
            "broken.yaml:5:9:",
            "broken.yaml:6:18:",
            "broken.yaml:7:21:",
            "broken.yaml:7:36:",
            "broken.yaml:8:1:",
        ],
        "{lines:#?}"
    );
    assert!(
        lines[0].contains(
            "warning: strategy.canary.steps[1].set_weight: the weight goes down from 50%"
        ),
        "{lines:#?}"
    );
    assert!(
        lines[1].contains("error: strategy.canary.steps[2].pause.duration"),
        "{lines:#?}"
    );
    assert!(
        text(&out).contains("1 file: 3 errors, 2 warnings"),
        "{}",
        text(&out)
    );
}
