//! Notifications, rollout metrics and DORA figures for two canaries of one service.
//!
//! ```text
//! cargo run --example notify --features notify
//! SLACK_WEBHOOK_URL=https://hooks.slack.com/services/... cargo run --example notify --features notify
//! ```
//!
//! Everything runs in this process on 127.0.0.1: a webhook receiver that checks each
//! notice's Standard Webhooks signature and prints it, a notifier that reads the rollouts'
//! decision logs from a memory store and delivers to that receiver (and to Slack when
//! `SLACK_WEBHOOK_URL` is set: the URL is never printed), and a `/metrics` endpoint.
//! `checkout-v42` is promoted; `checkout-v43` fails its analysis and rolls back. At the end
//! the example prints the metrics as Prometheus scrapes them and the DORA figures as JSON, and
//! exits 0 only if the receiver got every notice and the figures are the expected ones.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["notify", "test-util"] }
//! axum = "0.8"
//! serde_json = "1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "net", "io-util", "time"] }
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use cutover::notify::dora::{self, Window};
use cutover::notify::{
    Filter, NoticeKind, Notifier, Release, RolloutMetrics, SigningKey, Slack, Webhook,
};
use cutover::test::{FakeRouter, ScriptedAnalysis};
use cutover::{Clock, MemoryStateStore, Outcome, Plan, Rollout, TokioClock, Verdict};

const PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 20
      - analysis: { name: checks, count: 1 }
      - set_weight: 50
";

/// Demo only: a real key is 24+ random bytes, kept out of the source.
const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let store = Arc::new(MemoryStateStore::new());
    let clock = TokioClock::new();

    // A receiver, as another team would run it: checks the signature, prints the notice.
    let checker = Webhook::new("http://127.0.0.1/", SigningKey::parse(KEY)?)?;
    let received = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hooks/cutover",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let received = received.clone();
                let checker = checker.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
                    let expected = checker.signature(&id, ts.parse().unwrap_or(0), &body);
                    if header("webhook-signature") != expected {
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    let notice: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    println!(
                        "  webhook  {id:<16} {}",
                        notice["data"]["summary"].as_str().unwrap_or("")
                    );
                    let kind = notice["data"]["kind"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    received.lock().unwrap().push((id, kind));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hooks/cutover", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Metrics on 127.0.0.1, fed from the store.
    let metrics = RolloutMetrics::new();
    let (metrics_addr, _server) = metrics.serve("127.0.0.1:0".parse()?).await?;
    println!("metrics on http://{metrics_addr}/metrics");

    // The notifier: every notice to the webhook; rollbacks and failures to Slack if asked.
    let mut notifier = Notifier::new(store.clone())
        .sink(
            "team-hook",
            Webhook::new(&hook_url, SigningKey::parse(KEY)?)?,
            Filter::default(),
        )?
        .metrics(metrics.clone())
        .link_base("http://127.0.0.1:8080")
        .poll_every(Duration::from_millis(100));
    if let Ok(url) = std::env::var("SLACK_WEBHOOK_URL") {
        let slack = Slack::new(&url)?;
        println!("also posting rollbacks to {slack:?}");
        let urgent = [
            NoticeKind::RollingBack,
            NoticeKind::RolledBack,
            NoticeKind::Failed,
        ];
        notifier = notifier.sink("ops-slack", slack, Filter::default().kinds(urgent))?;
    }
    let running = notifier.spawn();

    // Two rollouts of `checkout`, each with the commit it ships.
    for (id, verdict) in [
        ("checkout-v42", Verdict::Pass),
        ("checkout-v43", Verdict::Fail),
    ] {
        let committed = cutover::Timestamp::from_unix_millis(clock.now().unix_millis() - 7_200_000);
        Release::new("checkout")
            .environment("production")
            .commit(format!("{id}-sha"), committed)
            .save(store.as_ref(), &id.parse()?)
            .await?;
        let rollout = Rollout::builder(id, Plan::from_yaml(PLAN)?)
            .revisions("v1", "v2")
            .router(FakeRouter::new("mesh"))
            .analysis("checks", ScriptedAnalysis::verdicts([verdict]))
            .state_store(store.clone())
            .build()?;
        let outcome = rollout.run().await?;
        println!(
            "{id}: {}",
            if outcome == Outcome::Promoted {
                "promoted".to_owned()
            } else {
                format!("{outcome:?}")
            }
        );
    }

    // Notices reach a sink in log order, so once both endings arrived, everything had.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let kinds = received.lock().unwrap().clone();
        if ["promoted", "rolled_back"]
            .iter()
            .all(|k| kinds.iter().any(|(_, kind)| kind == k))
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!("the receiver did not get both endings within 20 s: {kinds:?}");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop();

    metrics.catch_up(store.as_ref()).await?;
    let text = scrape(metrics_addr).await?;
    println!("\n# GET /metrics (excerpt)");
    for line in text.lines().filter(|l| {
        l.starts_with("cutover_rollouts")
            || l.starts_with("cutover_rollbacks")
            || l.starts_with("cutover_notifications")
    }) {
        println!("{line}");
    }

    let now = clock.now();
    let window = Window::new(
        cutover::Timestamp::from_unix_millis(now.unix_millis() - 86_400_000),
        now + Duration::from_secs(1),
    );
    let report = dora::from_store(store.as_ref(), window).await?;
    println!(
        "\n# DORA, last 24 h\n{}",
        serde_json::to_string_pretty(&report)?
    );
    Ok(report.overall.change_failure_rate == Some(0.5)
        && text.contains(
            r#"cutover_rollouts_finished_total{strategy="canary",outcome="rolled_back"} 1"#,
        ))
}

/// GET /metrics over a plain TCP connection (no HTTP client needed for one request).
async fn scrape(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
