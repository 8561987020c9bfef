//! A canary judged by anytime-valid sequential tests over real HTTP: a bad v2 is rolled back
//! at the first rejection, seconds into the step, and a good one is promoted only once the
//! step's time is up and the data rules out a real degradation.
//!
//! ```text
//! cargo run --example sequential_canary                  # v2 as good as v1: promoted
//! cargo run --example sequential_canary -- --bad         # v2 fails 6 % of requests, v1 3 %: rolled back
//! cargo run --example sequential_canary -- --slow        # v2 answers 25 ms slower: rolled back
//! cargo run --example sequential_canary -- --out decisions.json
//! ```
//!
//! Two versions of the demo service run on 127.0.0.1 behind the cutover-local proxy, with a
//! load generator aiming at 4,000 requests a second (a debug build on two cores reaches about
//! half of that). v1 fails 3 % of its requests. The
//! rollout sends half the traffic to v2, then every 2 s feeds the requests of the last 2 s to
//! two sequential tests (see `SequentialTemplate`):
//!
//! - `errors`, a counts test of the 5xx per request at the configured 1:1 split (alpha 1 %).
//!   It rolls back as soon as its anytime-valid p-value reaches alpha, and passes the step
//!   only after the step's 6 s AND once its confidence sequence excludes a rate ratio above
//!   1.5; undecided, the step extends to 30 s and then aborts (a slow machine that gets
//!   half the traffic may need that long to rule out 1.5 when v2's errors come out high by
//!   chance).
//! - `latency`, a background distribution test of the per-request latencies (alpha 0.1 %),
//!   which rolls back when v2 is stochastically slower.
//!
//! Checking after every window does not inflate false rollbacks: the chance of rolling back a
//! v2 that is no worse stays below alpha however often the tests look. The decision record
//! (default `target/sequential-canary-decisions.json`) carries each measurement's p-value,
//! e-value, estimate, confidence-sequence bounds and sample sizes.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["local"] }
//! futures-util = "0.3"
//! serde_json = "1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cutover::local::LocalProxy;
use cutover::local::demo::{DemoConfig, DemoService};
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::{
    Clock as _, DecisionRecord, Outcome, Plan, Rollout, RolloutEvent, StopReason, Timestamp,
    TokioClock,
};
use futures_util::StreamExt as _;

const PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 50
      - analysis: { name: errors, interval: 2s, count: 3, max_count: 15, on_inconclusive: abort }
    background_analysis:
      starting_step: 1
      analysis: { name: latency, interval: 2s }
analyses:
  errors:
    sequential: { test: counts, source: proxy, query: error_rate, canary_share: 0.5, alpha: 0.01, tolerance: 1.5 }
  latency:
    sequential: { test: distribution, source: proxy, query: latency, alpha: 0.001, tolerance: 0.1 }
progress_deadline: 60s
";

/// What v2 does wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Good,
    Bad,
    Slow,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let result = match parse_args() {
        Ok((mode, out)) => run(mode, out).await,
        Err(e) => Err(e.into()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("{}", chain(&*e));
        ExitCode::FAILURE
    })
}

async fn run(mode: Mode, out: PathBuf) -> Result<ExitCode, Box<dyn Error>> {
    let v1 = DemoService::start(DemoConfig::new("v1").error_rate(0.03)).await?;
    let v2 = DemoService::start(match mode {
        Mode::Good => DemoConfig::new("v2").error_rate(0.03),
        Mode::Bad => DemoConfig::new("v2").error_rate(0.06),
        Mode::Slow => DemoConfig::new("v2")
            .error_rate(0.03)
            .latency(Duration::from_millis(25)),
    })
    .await?;
    let proxy = LocalProxy::builder("checkout")
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .upstream_timeout(Duration::from_secs(2))
        .start()
        .await?;
    println!(
        "checkout: v1 on {}, v2 on {} ({mode:?}), proxy on {}",
        v1.addr(),
        v2.addr(),
        proxy.addr(),
    );
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(16).rate(4_000));
    println!("load: about 4,000 requests/s through the proxy; v1 fails 3 % of them");

    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("checkout", Plan::from_yaml(PLAN)?)
        .revisions("v1", "v2")
        .router(proxy.router())
        .metric_source("proxy", proxy.metrics())
        .clock(clock)
        .build()?;
    println!(
        "canary v1 -> v2 at 50 %: sequential tests every 2 s on errors (alpha 1 %) and latency (alpha 0.1 %)"
    );
    let handle = rollout.handle();
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
    let records = handle.records().await?;
    write_records(&records, &out)?;
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        println!(
            "decided after {:.1} s (the step's time is 6 s, at most 30 s)",
            last.at.saturating_since(first.at).as_secs_f64()
        );
    }
    proxy.shutdown().await;

    match (outcome?, mode) {
        (Outcome::Promoted, Mode::Good) => println!("PROMOTED: v2 takes all traffic"),
        (Outcome::RolledBack(StopReason::AnalysisFailed { analysis, summary }), Mode::Bad)
            if analysis == "errors" =>
        {
            println!("ROLLED BACK at the first rejection: {summary}");
        }
        (Outcome::RolledBack(StopReason::AnalysisFailed { analysis, summary }), Mode::Slow)
            if analysis == "latency" =>
        {
            println!("ROLLED BACK at the first rejection: {summary}");
        }
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

/// Writes the decision record as JSON: each measurement with its p-value, e-value, estimate
/// and bounds.
fn write_records(records: &[DecisionRecord], out: &Path) -> Result<(), Box<dyn Error>> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(records)?)?;
    println!(
        "decision record ({} entries): {}",
        records.len(),
        out.display()
    );
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

fn parse_args() -> Result<(Mode, PathBuf), String> {
    let mut mode = Mode::Good;
    let mut out = PathBuf::from("target/sequential-canary-decisions.json");
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--good" => mode = Mode::Good,
            "--bad" => mode = Mode::Bad,
            "--slow" => mode = Mode::Slow,
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a path")?),
            other => {
                return Err(format!(
                    "unknown argument {other}; use --good, --bad, --slow, --out PATH"
                ));
            }
        }
    }
    Ok((mode, out))
}
