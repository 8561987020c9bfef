//! Three canaries over real HTTP on one memory store, and the dashboard serving them.
//!
//! ```text
//! cargo run --example dashboard                     # serves on 127.0.0.1:8080 until Ctrl-C
//! cargo run --example dashboard -- --port 0 --exit  # exits once every rollout has ended (CI)
//! ```
//!
//! `checkout` and `search` roll out a healthy v2; `payments`' v2 fails 5 % of its requests and
//! rolls back. Each has two demo services behind its own cutover-local proxy and a load
//! generator. Open the printed URL, sign in with any name and the printed token, and watch
//! them move; pause, resume, promote or abort them from their pages.

use cutover::dashboard::{Dashboard, Secret};
use cutover::local::demo::DemoConfig;
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::{MemoryStateStore, Outcome, Plan, Rollout, StateStore, TokioClock};
use cutover_examples::{Stage, chain, run_real_time};
use std::process::ExitCode;

const PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 10
      - analysis: { name: health, initial_delay: 2s, count: 3, interval: 2s }
      - set_weight: 30
      - pause: { duration: 5s }
      - set_weight: 60
      - analysis: { name: health, initial_delay: 1s, count: 3, interval: 2s }
analyses:
  health:
    threshold:
      metrics:
        - { name: error-rate, source: proxy, query: error_rate, window: 4s, max: 0.01, min_samples: 20 }
        - { name: p99-latency, source: proxy, query: latency, aggregate: p99, window: 4s, max: 0.25, min_samples: 20 }
progress_deadline: 60s
";

fn main() -> ExitCode {
    let mut port = 8080u16;
    let mut exit = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--exit", next) => {
                exit = true;
                if let Some(n) = next {
                    eprintln!("unexpected argument {n}");
                    return ExitCode::FAILURE;
                }
            }
            ("--port", Some(n)) => match n.parse() {
                Ok(p) => port = p,
                Err(e) => {
                    eprintln!("--port {n}: {e}");
                    return ExitCode::FAILURE;
                }
            },
            (other, _) => {
                eprintln!("unknown argument {other}; use --port N and --exit");
                return ExitCode::FAILURE;
            }
        }
    }
    run_real_time(run(port, exit))
}

async fn run(port: u16, exit: bool) -> Result<ExitCode, String> {
    let store = std::sync::Arc::new(MemoryStateStore::new());
    let token = Secret::generate().map_err(|e| e.to_string())?;
    let running = Dashboard::builder(store.clone())
        .token(token.clone())
        .bind(([127, 0, 0, 1], port).into())
        .build()
        .map_err(|e| e.to_string())?
        .serve()
        .await
        .map_err(|e| chain(&e))?;
    println!(
        "dashboard: {}  (sign in with any name and the token {})",
        running.url(),
        token.expose()
    );

    let mut runs = Vec::new();
    for (name, error_rate) in [("checkout", 0.0), ("search", 0.0), ("payments", 0.05)] {
        let stage = Stage::start(
            name,
            DemoConfig::new("v1"),
            DemoConfig::new("v2").error_rate(error_rate),
        )
        .await?;
        let load =
            LoadGenerator::start(&LoadConfig::new(stage.proxy.addr()).concurrency(4).rate(300));
        let plan = Plan::from_yaml(PLAN).map_err(|e| format!("invalid plan: {e}"))?;
        let rollout = Rollout::builder(name, plan)
            .revisions("v1", "v2")
            .router(stage.proxy.router())
            .metric_source("proxy", stage.proxy.metrics())
            .state_store(store.clone())
            .clock(TokioClock::new())
            .build()
            .map_err(|e| format!("cannot build {name}: {}", chain(&e)))?;
        println!(
            "{name}: v1 -> v2 (v2 error rate {:.0} %): {}rollouts/{name}",
            error_rate * 100.0,
            running.url()
        );
        runs.push(tokio::spawn(async move {
            // The whole stage lives as long as its rollout: both versions and the proxy.
            let stage = stage;
            let outcome = rollout.run().await;
            load.stop().await;
            stage.proxy.shutdown().await;
            outcome
        }));
    }
    let mut outcomes = Vec::new();
    for (run, name) in runs.into_iter().zip(["checkout", "search", "payments"]) {
        let outcome = run
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| chain(&e))?;
        println!("{name}: {outcome}");
        outcomes.push(outcome);
    }
    let listed = store
        .list(&cutover::ListFilter::default())
        .await
        .map_err(|e| chain(&e))?;
    println!(
        "the store lists {} rollouts; their reports are at {}rollouts/ID/report",
        listed.len(),
        running.url()
    );
    let answer = api_get(running.addr(), "/api/rollouts?phase=done", token.expose()).await?;
    let served = ["checkout", "search", "payments"]
        .iter()
        .all(|id| answer.contains(&format!("\"id\":\"{id}\"")));
    if !answer.starts_with("HTTP/1.1 200") || !served {
        return Err(format!(
            "the dashboard's API did not list the three rollouts: {answer}"
        ));
    }
    println!("the dashboard's API lists all three as done");
    let expected = matches!(
        outcomes.as_slice(),
        [Outcome::Promoted, Outcome::Promoted, Outcome::RolledBack(_)]
    );
    if !exit && expected {
        println!("serving until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    running.shutdown().await;
    Ok(if expected {
        println!("DONE: checkout and search promoted, payments rolled back");
        ExitCode::SUCCESS
    } else {
        println!("unexpected outcomes: {outcomes:?}");
        ExitCode::FAILURE
    })
}

/// One GET with the bearer token, over a plain TCP connection; the whole answer as text.
async fn api_get(addr: std::net::SocketAddr, path: &str, token: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}
