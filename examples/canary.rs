//! A canary from v1 to v2 over real HTTP, with analysis and automatic rollback.
//!
//! ```text
//! cargo run --example canary                          # healthy v2: promoted
//! cargo run --example canary -- --bad                 # v2 fails 5 % of requests: rolled back
//! cargo run --example canary -- --v2-error-rate 0.03 --v2-latency-ms 20
//! cargo run --example canary -- --out decisions.json --report report.html
//! cargo run --example canary -- --metrics             # then the rollout metrics, Prometheus text
//! ```
//!
//! Everything is real and runs in this process: two versions of a demo service on
//! 127.0.0.1, the cutover-local proxy in front of them, and a load generator sending about
//! 2,000 requests a second through the proxy. The rollout moves the proxy's weights
//! 1 % -> 10 % -> 50 % -> 100 %, and after each step judges v2 on the error rate and p99
//! latency the proxy recorded for it. Prometheus can scrape the proxy's `/metrics` while it
//! runs. The decision record is written as JSON (default `target/canary-decisions.json`), and
//! the rollout's HTML report with its charts and latency distributions (default
//! `target/canary-report.html`). With `--metrics`, the rollout's events also feed a
//! [`RolloutMetrics`](cutover::notify::RolloutMetrics), printed in Prometheus (OpenMetrics) text
//! when the rollout ends.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["local", "dashboard", "metrics"] }
//! futures-util = "0.3"
//! serde_json = "1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cutover::dashboard::Report;
use cutover::local::demo::{DemoConfig, DemoService, Uri};
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::local::{HttpProbe, LocalProxy};
use cutover::notify::{RolloutInfo, RolloutMetrics};
use cutover::{
    Clock as _, MetricQuery, MetricSource as _, Outcome, Plan, RevisionId, Rollout, RolloutEvent,
    RolloutHandle, Samples, Timestamp, TokioClock,
};
use futures_util::StreamExt as _;

/// The rollout, as a deploy tool would keep it in a file: three weight steps, each followed
/// by an analysis of v2's error rate and p99 latency as the proxy measured them.
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let result = match Args::parse() {
        Ok(args) => run(args).await,
        Err(e) => Err(e.into()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("{}", chain(&*e));
        ExitCode::FAILURE
    })
}

// `pub(crate)`: the examples' report test runs this example's `run` too.
pub(crate) async fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    // Two versions of a service, and the proxy in front of them with all traffic on v1.
    let v1 = DemoService::start(DemoConfig::new("v1")).await?;
    let v2 = DemoService::start(
        DemoConfig::new("v2")
            .error_rate(args.v2_error_rate)
            .latency(args.v2_latency),
    )
    .await?;
    let proxy = LocalProxy::builder("checkout")
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .admin(SocketAddr::from(([127, 0, 0, 1], 0))) // serves /metrics
        .upstream_timeout(Duration::from_secs(2))
        .start()
        .await?;
    println!(
        "checkout: v1 on {}, v2 on {} (error rate {:.1} %, +{} ms), proxy on {}, metrics on http://{}/metrics",
        v1.addr(),
        v2.addr(),
        args.v2_error_rate * 100.0,
        args.v2_latency.as_millis(),
        proxy.addr(),
        proxy
            .admin_addr()
            .ok_or("the proxy has no admin listener")?,
    );
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(16).rate(2_000));
    println!("load: about 2,000 requests/s through the proxy");

    // The rollout: the proxy is both the router and the metric source the plan calls `proxy`;
    // an HTTP probe checks each version's /healthz after every weight change.
    let probe = HttpProbe::new("healthz")
        .url(
            "v1",
            format!("http://{}/healthz", v1.addr()).parse::<Uri>()?,
        )
        .url(
            "v2",
            format!("http://{}/healthz", v2.addr()).parse::<Uri>()?,
        )
        .timeout(Duration::from_secs(1));
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("checkout", Plan::from_yaml(PLAN)?)
        .revisions("v1", "v2")
        .router(proxy.router())
        .metric_source("proxy", proxy.metrics())
        .health_probe(probe)
        .clock(clock)
        .build()?;
    println!(
        "canary v1 -> v2: 1 % -> 10 % -> 50 % -> 100 %, judged on error rate <= 1 % and p99 <= 250 ms"
    );
    let handle = rollout.handle();
    let began = tokio::time::Instant::now();
    let rollout_metrics = args.metrics.then(|| {
        let info = RolloutInfo::new(
            rollout.id().clone(),
            "canary",
            rollout.setup().revisions.clone(),
        );
        (RolloutMetrics::new(), info)
    });
    let printer = print_records(&rollout, start, rollout_metrics.clone());
    let ticker = print_traffic(&proxy);
    let outcome = rollout.run().await;
    printer.await?;
    ticker.abort();

    // What the proxy and the load generator saw.
    let report = load.stop().await;
    let metrics = proxy.metrics();
    for revision in ["v1", "v2"] {
        let (n, errors) = metrics.total(&revision.parse()?).unwrap_or((0, 0));
        println!("{revision}: {n} requests, {errors} answered 5xx");
    }
    println!(
        "load: {} requests, {} not 2xx, {} without an answer; traffic now {}",
        report.total(),
        report.failed(),
        report.transport_errors,
        proxy.router().split()
    );
    write_records(&handle, &args.out).await?;
    let window = began.elapsed() + Duration::from_secs(1);
    write_report(&handle, &proxy, window, &args.report).await?;
    proxy.shutdown().await;
    if let Some((rollout_metrics, _)) = &rollout_metrics {
        println!("rollout metrics:\n{}", rollout_metrics.encode());
    }

    let expect_rollback = args.v2_error_rate > 0.01;
    match (outcome?, expect_rollback) {
        (Outcome::Promoted, false) => println!("PROMOTED: v2 takes all traffic"),
        (Outcome::RolledBack(reason), true) => println!("ROLLED BACK: {reason}"),
        (other, _) => {
            println!("unexpected outcome: {other}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints every decision as it is recorded, with the time since `start`; feeds every event to
/// the rollout metrics, if any.
fn print_records(
    rollout: &Rollout,
    start: Timestamp,
    metrics: Option<(RolloutMetrics, RolloutInfo)>,
) -> tokio::task::JoinHandle<()> {
    let mut events = rollout.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Some((metrics, info)) = &metrics {
                metrics.observe_event(info, &event);
            }
            if let RolloutEvent::Record(record) = event {
                let secs = record.at.saturating_since(start).as_secs();
                println!("[+{:02}:{:02}] {}", secs / 60, secs % 60, record.summary);
            }
        }
    })
}

/// Once a second: v2's weight as a bar, and what each version answered in the last second.
fn print_traffic(proxy: &LocalProxy) -> tokio::task::JoinHandle<()> {
    let (router, metrics) = (proxy.router(), proxy.metrics());
    let revisions: Vec<RevisionId> = ["v1", "v2"].iter().filter_map(|r| r.parse().ok()).collect();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.tick().await;
        loop {
            every.tick().await;
            let weight = router.split().weight(&revisions[1]);
            let filled = usize::from(weight.basis_points() / 500);
            let counts: Vec<String> = revisions
                .iter()
                .map(|revision| {
                    let (n, errors) = metrics.last_second(revision).unwrap_or((0, 0));
                    format!("{revision}: {n:>5} req/s {errors:>3} 5xx")
                })
                .collect();
            println!(
                "         [{}{}] {:>5.1}% | {} |",
                "#".repeat(filled),
                ".".repeat(20 - filled),
                weight.percent(),
                counts.join(" | ")
            );
        }
    })
}

/// Writes the decision record (every decision with its inputs) as JSON.
async fn write_records(handle: &RolloutHandle, out: &Path) -> Result<(), Box<dyn Error>> {
    let records = handle.records().await?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&records)?)?;
    println!(
        "decision record ({} entries): {}",
        records.len(),
        out.display()
    );
    Ok(())
}

/// Writes the rollout's HTML report: its state and decision log, with the latencies the
/// proxy recorded for each version over the last `window` (it keeps 300 s).
async fn write_report(
    handle: &RolloutHandle,
    proxy: &LocalProxy,
    window: Duration,
    out: &Path,
) -> Result<(), Box<dyn Error>> {
    let state = handle
        .state()
        .await?
        .ok_or("the rollout is not in its store")?;
    let records = handle.records().await?;
    let mut report = Report::new(&records).state(&state);
    let revisions = &state.setup.revisions;
    for revision in [&revisions.stable, &revisions.candidate] {
        let query = MetricQuery::new("latency", "latency", revision.clone(), window);
        if let Samples::Values(values) = proxy.metrics().query(&query).await? {
            report = report.latencies(revision.as_str(), values);
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, report.render())?;
    println!("report: {}", out.display());
    Ok(())
}

/// An error and its sources on one line.
fn chain(error: &dyn Error) -> String {
    let causes = std::iter::successors(Some(error), |&e| e.source());
    causes
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

pub(crate) struct Args {
    pub(crate) v2_error_rate: f64,
    pub(crate) v2_latency: Duration,
    pub(crate) out: PathBuf,
    pub(crate) report: PathBuf,
    pub(crate) metrics: bool,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            v2_error_rate: 0.0,
            v2_latency: Duration::ZERO,
            out: PathBuf::from("target/canary-decisions.json"),
            report: PathBuf::from("target/canary-report.html"),
            metrics: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--bad" => args.v2_error_rate = 0.05,
                "--v2-error-rate" => {
                    args.v2_error_rate = value()?.parse().map_err(|e| format!("{arg}: {e}"))?;
                }
                "--v2-latency-ms" => {
                    let ms = value()?.parse().map_err(|e| format!("{arg}: {e}"))?;
                    args.v2_latency = Duration::from_millis(ms);
                }
                "--out" => args.out = PathBuf::from(value()?),
                "--report" => args.report = PathBuf::from(value()?),
                "--metrics" => args.metrics = true,
                other => {
                    return Err(format!(
                        "unknown argument {other}; use --bad, --v2-error-rate F, --v2-latency-ms N, --out PATH, --report PATH, --metrics"
                    ));
                }
            }
        }
        Ok(args)
    }
}
