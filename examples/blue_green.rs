//! Blue-green over real HTTP: preview, smoke test with the HTTP probe, switch, post-promotion
//! analysis, and an automatic switch back.
//!
//! ```text
//! cargo run --example blue_green            # green is healthy: promoted
//! cargo run --example blue_green -- --bad   # green fails 5 % of requests: switched back
//! ```
//!
//! Blue (v1) and green (v2) are demo services on 127.0.0.1 behind the cutover-local proxy.
//! Customers (about 1,000 requests/s) stay on blue while green is smoke-tested with the
//! HTTP probe on `/healthz` and previewed by testers who send `x-preview: 1` (about 100
//! requests/s). The preview analysis is a smoke check on a small sample (at most 10 % errors,
//! p99 under 250 ms); after the switch, the post-promotion analysis holds green to 1 % on
//! full traffic. With `--bad`, green's 5 % error rate slips through the small preview and
//! is caught after the switch: traffic goes back to blue in one router call.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["local"] }
//! futures-util = "0.3"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use cutover::local::demo::{DemoConfig, DemoService, Uri};
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::local::{HttpProbe, LocalProxy};
use cutover::{Clock as _, Outcome, Plan, Rollout, RolloutEvent, Timestamp, TokioClock};
use futures_util::StreamExt as _;

const PLAN: &str = r#"
strategy:
  blue_green:
    preview_route: { name: preview, match: [ { header: { name: x-preview, value: { exact: "1" } } } ] }
    pre_promotion_analysis: { name: preview-smoke, initial_delay: 2s, count: 1 }
    auto_promotion: enabled
    post_promotion_analysis: { name: error-rate, initial_delay: 1s, count: 3, interval: 1s }
    scale_down_delay: 1s
analyses:
  preview-smoke:
    threshold:
      metrics:
        - { name: preview-errors, source: proxy, query: error_rate, window: 3s, max: 0.10, min_samples: 50 }
        - { name: preview-p99, source: proxy, query: latency, aggregate: p99, window: 3s, max: 0.25, min_samples: 50 }
  error-rate:
    threshold:
      metrics:
        - { name: errors, source: proxy, query: error_rate, window: 2s, max: 0.01, min_samples: 200 }
progress_deadline: 30s
"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let bad = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--bad") => true,
        Some(other) => {
            eprintln!("unexpected argument {other}; the only one is --bad");
            return ExitCode::FAILURE;
        }
    };
    run(bad).await.unwrap_or_else(|e| {
        eprintln!("{}", chain(&*e));
        ExitCode::FAILURE
    })
}

async fn run(bad: bool) -> Result<ExitCode, Box<dyn Error>> {
    let green_errors = if bad { 0.05 } else { 0.0 };
    let blue = DemoService::start(DemoConfig::new("v1")).await?;
    let green = DemoService::start(DemoConfig::new("v2").error_rate(green_errors)).await?;
    let proxy = LocalProxy::builder("storefront")
        .upstream("v1", blue.addr())
        .upstream("v2", green.addr())
        .upstream_timeout(Duration::from_secs(2))
        .start()
        .await?;
    // The smoke test: /healthz must answer 200 with "ok"; one success makes a version ready,
    // three failures in a row fail it.
    let smoke = HttpProbe::new("smoke")
        .url(
            "v1",
            format!("http://{}/healthz", blue.addr()).parse::<Uri>()?,
        )
        .url(
            "v2",
            format!("http://{}/healthz", green.addr()).parse::<Uri>()?,
        )
        .timeout(Duration::from_secs(1))
        .expect_status(200)
        .body_contains("ok")
        .thresholds(1, 3);
    println!(
        "storefront: blue v1 on {}, green v2 on {} (error rate {:.0} %), proxy on {}",
        blue.addr(),
        green.addr(),
        green_errors * 100.0,
        proxy.addr()
    );
    let customers = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(8).rate(1_000));
    let testers = LoadGenerator::start(
        &LoadConfig::new(proxy.addr())
            .concurrency(2)
            .rate(100)
            .header("x-preview", "1"),
    );
    println!("load: customers about 1,000 requests/s, testers (x-preview: 1) about 100/s");

    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("storefront", Plan::from_yaml(PLAN)?)
        .revisions("v1", "v2")
        .router(proxy.router())
        .metric_source("proxy", proxy.metrics())
        .health_probe(smoke)
        .clock(clock)
        .build()?;
    let printer = print_records(&rollout, start);
    let outcome = rollout.run().await;
    printer.await?;

    let (c, t) = (customers.stop().await, testers.stop().await);
    println!(
        "customers: {} requests, {} not 2xx, {} without an answer; testers: {} requests; traffic now {}",
        c.total(),
        c.failed(),
        c.transport_errors,
        t.total(),
        proxy.router().split()
    );
    proxy.shutdown().await;
    match (outcome?, bad) {
        (Outcome::Promoted, false) => println!("PROMOTED: green v2 serves everyone"),
        (Outcome::RolledBack(reason), true) => println!("SWITCHED BACK to blue: {reason}"),
        (other, _) => {
            println!("unexpected outcome: {other}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints every decision as it is recorded, with the time since `start`.
fn print_records(rollout: &Rollout, start: Timestamp) -> tokio::task::JoinHandle<()> {
    let mut events = rollout.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let RolloutEvent::Record(record) = event {
                let secs = record.at.saturating_since(start).as_secs();
                println!("[+{:02}:{:02}] {}", secs / 60, secs % 60, record.summary);
            }
        }
    })
}

/// An error and its sources on one line.
fn chain(error: &dyn Error) -> String {
    let causes = std::iter::successors(Some(error), |&e| e.source());
    causes
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
