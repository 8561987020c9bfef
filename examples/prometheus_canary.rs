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

use std::process::ExitCode;
use std::time::Duration;

use cutover::local::demo::DemoConfig;
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::prometheus::PrometheusSource;
use cutover::prometheus::testing::{LOCAL_CANARY_PLAN, PrometheusServer, binary};
use cutover::{Clock as _, Outcome, Plan, Rollout, TokioClock};
use cutover_examples::{Stage, chain, finish, only_flag, run_printed, run_real_time};

fn main() -> ExitCode {
    let good = match only_flag("--good") {
        Ok(good) => good,
        Err(e) => {
            eprintln!("{e}");
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
    run_real_time(run(good))
}

async fn run(good: bool) -> Result<ExitCode, String> {
    let v2_error_rate = if good { 0.0 } else { 0.3 };
    let stage = Stage::start(
        "checkout",
        DemoConfig::new("v1"),
        DemoConfig::new("v2").error_rate(v2_error_rate),
    )
    .await?;
    let proxy = &stage.proxy;
    let admin = proxy.admin_addr().expect("the stage has an admin listener");
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(8).rate(400));
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

    let plan = Plan::from_yaml(LOCAL_CANARY_PLAN).map_err(|e| format!("invalid plan: {e}"))?;
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("checkout", plan)
        .revisions("v1", "v2")
        .router(proxy.router())
        .metric_source(
            "prometheus",
            PrometheusSource::new("prometheus", prometheus.client()),
        )
        .clock(clock)
        .build()
        .map_err(|e| format!("cannot build the rollout: {}", chain(&e)))?;
    println!(
        "canary v1 -> v2: 20 % -> 50 % -> 100 %, judged from Prometheus on error rate <= 5 % and p99 <= 250 ms"
    );
    let outcome = run_printed(rollout, start, Some(proxy)).await;
    let report = load.stop().await;
    println!(
        "load: {} requests, {} not 2xx; traffic now {}",
        report.total(),
        report.failed(),
        proxy.router().split()
    );
    proxy.shutdown().await;
    drop(prometheus);
    Ok(finish(outcome, |outcome| match (outcome, good) {
        (Outcome::Promoted, true) => Some("PROMOTED: v2 takes all traffic".to_owned()),
        (Outcome::RolledBack(reason), false) => Some(format!("ROLLED BACK: {reason}")),
        _ => None,
    }))
}
