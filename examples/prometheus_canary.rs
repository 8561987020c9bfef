//! A canary judged on metrics read from a real Prometheus.
//!
//! ```text
//! cargo run --example prometheus_canary --features prometheus            # v2 fails 30 %: rolled back
//! cargo run --example prometheus_canary --features prometheus -- --good  # healthy v2: promoted
//! ```
//!
//! Two versions of a demo service run behind the cutover-local proxy on 127.0.0.1 with about
//! 400 requests a second through it. A Prometheus started here (the `prometheus` binary,
//! temporary config and data, a free port) scrapes the proxy's `/metrics` every second. The
//! rollout sends v2 20 % of the traffic, then 50 %, and after each step its analysis asks
//! Prometheus, through `PrometheusSource` and the built-in `local/*` templates, for v2's error
//! rate and p99 latency. Without a `prometheus` binary the example says what it needs and
//! exits 0.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own (`test-util` brings `PrometheusServer`, which starts Prometheus):
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["local", "prometheus", "test-util"] }
//! futures-util = "0.3"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use cutover::local::LocalProxy;
use cutover::local::demo::{DemoConfig, DemoService};
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::prometheus::PrometheusSource;
use cutover::prometheus::testing::{LOCAL_CANARY_PLAN, PrometheusServer, binary};
use cutover::{Clock as _, Outcome, Plan, Rollout, RolloutEvent, Timestamp, TokioClock};
use futures_util::StreamExt as _;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let good = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--good") => true,
        Some(other) => {
            eprintln!("unexpected argument {other}; the only one is --good");
            return ExitCode::FAILURE;
        }
    };
    if binary().is_none() {
        println!(
            "this example needs a `prometheus` binary (Prometheus 2.x): run scripts/test-deps, \
             `apt-get install prometheus`, or set PROMETHEUS_BIN=/path/to/prometheus. Skipping."
        );
        return ExitCode::SUCCESS;
    }
    run(good).await.unwrap_or_else(|e| {
        eprintln!("{}", chain(&*e));
        ExitCode::FAILURE
    })
}

async fn run(good: bool) -> Result<ExitCode, Box<dyn Error>> {
    let v2_error_rate = if good { 0.0 } else { 0.3 };
    let v1 = DemoService::start(DemoConfig::new("v1")).await?;
    let v2 = DemoService::start(DemoConfig::new("v2").error_rate(v2_error_rate)).await?;
    let proxy = LocalProxy::builder("checkout")
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .admin(SocketAddr::from(([127, 0, 0, 1], 0))) // serves /metrics for Prometheus
        .upstream_timeout(Duration::from_secs(2))
        .start()
        .await?;
    let admin = proxy
        .admin_addr()
        .ok_or("the proxy has no admin listener")?;
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(8).rate(400));
    // A real Prometheus on a free loopback port, scraping the proxy every second.
    let prometheus = PrometheusServer::start(&[admin]).await?;
    println!(
        "checkout: proxy on {}, v2 fails {:.0} % of requests; prometheus on {} scrapes http://{admin}/metrics every second",
        proxy.addr(),
        v2_error_rate * 100.0,
        prometheus.url(),
    );
    println!("waiting for the first scrape (about 5 s)...");
    prometheus
        .wait_for_data(
            "sum(cutover_proxy_requests_total{revision=\"v1\"})",
            Duration::from_secs(30),
        )
        .await?;

    // The plan's analyses name the metric source `prometheus` and the `local/*` templates.
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("checkout", Plan::from_yaml(LOCAL_CANARY_PLAN)?)
        .revisions("v1", "v2")
        .router(proxy.router())
        .metric_source(
            "prometheus",
            PrometheusSource::new("prometheus", prometheus.client()),
        )
        .clock(clock)
        .build()?;
    println!(
        "canary v1 -> v2: 20 % -> 50 % -> 100 %, judged from Prometheus on error rate <= 5 % and p99 <= 250 ms"
    );
    let printer = print_records(&rollout, start);
    let outcome = rollout.run().await;
    printer.await?;

    let report = load.stop().await;
    println!(
        "load: {} requests, {} not 2xx; traffic now {}",
        report.total(),
        report.failed(),
        proxy.router().split()
    );
    proxy.shutdown().await;
    drop(prometheus);
    match (outcome?, good) {
        (Outcome::Promoted, true) => println!("PROMOTED: v2 takes all traffic"),
        (Outcome::RolledBack(reason), false) => println!("ROLLED BACK: {reason}"),
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
