//! A canary from v1 to v2 over real HTTP, with analysis and automatic rollback.
//!
//! ```text
//! cargo run --example canary                          # healthy v2: promoted
//! cargo run --example canary -- --bad                 # v2 fails 5 % of requests: rolled back
//! cargo run --example canary -- --v2-error-rate 0.03 --v2-latency-ms 20
//! cargo run --example canary -- --out decisions.json --report report.html
//! ```
//!
//! Everything is real and runs in this process: two versions of a demo service on
//! 127.0.0.1, the cutover-local proxy in front of them, and a load generator sending about
//! 2,000 requests a second through the proxy. The rollout moves the proxy's weights
//! 1 % -> 10 % -> 50 % -> 100 %, and after each step judges v2 on the error rate and p99
//! latency the proxy recorded for it. Prometheus can scrape the proxy's `/metrics` while it
//! runs. The decision record is written as JSON (default `target/canary-decisions.json`), and
//! the rollout's HTML report with its charts and latency distributions (default
//! `target/canary-report.html`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cutover::Outcome;
use cutover::local::demo::DemoConfig;
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover_examples::{Stage, finish, run_printed, run_real_time, write_records, write_report};

const PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 1
      - analysis: { name: health, initial_delay: 2s, count: 2, interval: 1s, on_inconclusive: { extend: { times: 2, then: abort } } }
      - set_weight: 10
      - analysis: { name: health, initial_delay: 1s, count: 2, interval: 1s, on_inconclusive: { extend: { times: 2, then: abort } } }
      - set_weight: 50
      - analysis: { name: health, initial_delay: 1s, count: 2, interval: 1s, on_inconclusive: { extend: { times: 2, then: abort } } }
analyses:
  health:
    threshold:
      metrics:
        - { name: error-rate, source: proxy, query: error_rate, window: 4s, max: 0.01, min_samples: 20 }
        - { name: p99-latency, source: proxy, query: latency, aggregate: p99, window: 4s, max: 0.25, min_samples: 20 }
progress_deadline: 30s
";

// `pub(crate)`: the examples crate's report test runs this example's `run` too.
pub(crate) struct Args {
    pub(crate) bad: bool,
    pub(crate) v2_error_rate: f64,
    pub(crate) v2_latency: Duration,
    pub(crate) out: PathBuf,
    pub(crate) report: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bad: false,
        v2_error_rate: 0.0,
        v2_latency: Duration::ZERO,
        out: PathBuf::from("target/canary-decisions.json"),
        report: PathBuf::from("target/canary-report.html"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--bad" => {
                args.bad = true;
                args.v2_error_rate = 0.05;
            }
            "--v2-error-rate" => {
                args.v2_error_rate = value("--v2-error-rate")?
                    .parse()
                    .map_err(|e| format!("--v2-error-rate: {e}"))?;
            }
            "--v2-latency-ms" => {
                let ms: u64 = value("--v2-latency-ms")?
                    .parse()
                    .map_err(|e| format!("--v2-latency-ms: {e}"))?;
                args.v2_latency = Duration::from_millis(ms);
            }
            "--out" => args.out = PathBuf::from(value("--out")?),
            "--report" => args.report = PathBuf::from(value("--report")?),
            other => {
                return Err(format!(
                    "unknown argument {other}; use --bad, --v2-error-rate F, --v2-latency-ms N, --out PATH, --report PATH"
                ));
            }
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    run_real_time(run(args))
}

pub(crate) async fn run(args: Args) -> Result<ExitCode, String> {
    let v2 = DemoConfig::new("v2")
        .error_rate(args.v2_error_rate)
        .latency(args.v2_latency);
    let stage = Stage::start("checkout", DemoConfig::new("v1"), v2).await?;
    let proxy = &stage.proxy;
    println!(
        "checkout: v1 on {}, v2 on {} (error rate {:.1} %, +{} ms), proxy on {}, metrics on http://{}/metrics",
        stage.v1.addr(),
        stage.v2.addr(),
        args.v2_error_rate * 100.0,
        args.v2_latency.as_millis(),
        proxy.addr(),
        proxy.admin_addr().expect("the stage has an admin listener"),
    );
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(16).rate(2_000));
    println!("load: about 2,000 requests/s through the proxy");
    let (rollout, start) = stage.rollout(PLAN, Some(stage.probe("healthz")))?;
    let began = tokio::time::Instant::now();
    println!(
        "canary v1 -> v2: 1 % -> 10 % -> 50 % -> 100 %, judged on error rate <= 1 % and p99 <= 250 ms"
    );
    let handle = rollout.handle();
    let outcome = run_printed(rollout, start, Some(proxy)).await;
    let report = load.stop().await;
    let metrics = proxy.metrics();
    for r in &Stage::revisions() {
        let (n, errors) = metrics.total(r).unwrap_or((0, 0));
        println!("{r}: {n} requests, {errors} answered 5xx");
    }
    println!(
        "load: {} requests, {} not 2xx, {} without an answer; traffic now {}",
        report.total(),
        report.failed(),
        report.transport_errors,
        proxy.router().split()
    );
    write_records(&handle, &args.out).await;
    let window = began.elapsed() + Duration::from_secs(1);
    write_report(&handle, &metrics, window, &args.report).await;
    proxy.shutdown().await;
    let expect_rollback = args.bad || args.v2_error_rate > 0.01;
    Ok(finish(outcome, |outcome| {
        match (outcome, expect_rollback) {
            (Outcome::Promoted, false) => Some("PROMOTED: v2 takes all traffic".to_owned()),
            (Outcome::RolledBack(reason), true) => Some(format!("ROLLED BACK: {reason}")),
            _ => None,
        }
    }))
}
