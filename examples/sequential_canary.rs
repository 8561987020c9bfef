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
//! load generator sending about 4,000 requests a second. v1 fails 3 % of its requests. The
//! rollout sends half the traffic to v2, then every 2 s feeds the requests of the last 2 s to
//! two sequential tests (see `SequentialTemplate`):
//!
//! - `errors`, a counts test of the 5xx per request at the configured 1:1 split (alpha 1 %).
//!   It rolls back as soon as its
//!   anytime-valid p-value reaches alpha, and passes the step only after the step's 6 s AND
//!   once its confidence sequence excludes a rate ratio above 1.5; undecided, the step
//!   extends to 14 s and then aborts.
//! - `latency`, a background distribution test of the per-request latencies (alpha 0.1 %),
//!   which rolls back when v2 is stochastically slower.
//!
//! Checking after every window does not inflate false rollbacks: the chance of rolling back a
//! v2 that is no worse stays below alpha however often the tests look. The decision record
//! (default `target/sequential-canary-decisions.json`) carries each measurement's p-value,
//! e-value, estimate, confidence-sequence bounds and sample sizes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cutover::local::demo::DemoConfig;
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::{Outcome, StopReason};
use cutover_examples::{Stage, finish, run_printed, run_real_time, write_records};

const PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 50
      - analysis: { name: errors, interval: 2s, count: 3, max_count: 7, on_inconclusive: abort }
    background_analysis:
      starting_step: 1
      analysis: { name: latency, interval: 2s }
analyses:
  errors:
    sequential: { test: counts, source: proxy, query: error_rate, canary_share: 0.5, alpha: 0.01, tolerance: 1.5 }
  latency:
    sequential: { test: distribution, source: proxy, query: latency, alpha: 0.001, tolerance: 0.1 }
progress_deadline: 30s
";

/// What v2 does wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Good,
    Bad,
    Slow,
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

fn main() -> ExitCode {
    match parse_args() {
        Ok((mode, out)) => run_real_time(run(mode, out)),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mode: Mode, out: PathBuf) -> Result<ExitCode, String> {
    let v1 = DemoConfig::new("v1").error_rate(0.03);
    let v2 = match mode {
        Mode::Good => DemoConfig::new("v2").error_rate(0.03),
        Mode::Bad => DemoConfig::new("v2").error_rate(0.06),
        Mode::Slow => DemoConfig::new("v2")
            .error_rate(0.03)
            .latency(Duration::from_millis(25)),
    };
    let stage = Stage::start("checkout", v1, v2).await?;
    let proxy = &stage.proxy;
    println!(
        "checkout: v1 on {}, v2 on {} ({mode:?}), proxy on {}",
        stage.v1.addr(),
        stage.v2.addr(),
        proxy.addr(),
    );
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(16).rate(4_000));
    println!("load: about 4,000 requests/s through the proxy; v1 fails 3 % of them");
    let (rollout, start) = stage.rollout(PLAN, None)?;
    println!(
        "canary v1 -> v2 at 50 %: sequential tests every 2 s on errors (alpha 1 %) and latency (alpha 0.1 %)"
    );
    let handle = rollout.handle();
    let outcome = run_printed(rollout, start, Some(proxy)).await;
    let report = load.stop().await;
    println!(
        "load: {} requests, {} not 2xx; traffic now {}",
        report.total(),
        report.failed(),
        proxy.router().split()
    );
    write_records(&handle, &out).await;
    // How long the analysis step ran, from the records.
    let records = handle.records().await.unwrap();
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        println!(
            "decided after {:.1} s (the step's time is 6 s, at most 14 s)",
            last.at.saturating_since(first.at).as_secs_f64()
        );
    }
    proxy.shutdown().await;
    Ok(finish(outcome, |outcome| match (outcome, mode) {
        (Outcome::Promoted, Mode::Good) => Some("PROMOTED: v2 takes all traffic".to_owned()),
        (Outcome::RolledBack(StopReason::AnalysisFailed { analysis, summary }), Mode::Bad)
            if analysis == "errors" =>
        {
            Some(format!("ROLLED BACK at the first rejection: {summary}"))
        }
        (Outcome::RolledBack(StopReason::AnalysisFailed { analysis, summary }), Mode::Slow)
            if analysis == "latency" =>
        {
            Some(format!("ROLLED BACK at the first rejection: {summary}"))
        }
        _ => None,
    }))
}
