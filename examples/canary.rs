//! A canary from v1 to v2 with analysis and automatic rollback.
//!
//! ```text
//! cargo run --example canary            # healthy v2: promoted
//! cargo run --example canary -- --bad   # v2 fails 4 % of requests: rolled back
//! cargo run --example canary -- --out decisions.json
//! ```
//!
//! Traffic, metrics and the router are simulated in memory (`cutover::test`) and time is
//! virtual, so the 20-minute canary finishes at once. The plan is the YAML below; the decision
//! record is written as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use cutover::test::FakeRouter;
use cutover::{Clock as _, Outcome, Plan, Rollout, TokioClock};
use cutover_examples::{SimulatedTraffic, chain, print_progress};

const PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 1
      - pause: { duration: 2m }
      - analysis: { name: error-rate, count: 3, interval: 1m }
      - set_weight: 10
      - analysis: { name: error-rate, initial_delay: 1m, count: 3, interval: 1m }
      - set_weight: 50
      - analysis: { name: error-rate, initial_delay: 1m, count: 5, interval: 1m }
analyses:
  error-rate:
    threshold:
      metrics:
        - { name: errors, source: traffic, query: error_ratio, window: 1m, max: 0.01, min_samples: 50 }
progress_deadline: 10m
";

fn main() -> ExitCode {
    let mut bad = false;
    let mut out = PathBuf::from("target/canary-decisions.json");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bad" => bad = true,
            "--out" => out = args.next().map(PathBuf::from).unwrap_or(out),
            other => {
                eprintln!("unknown argument {other}; use --bad and --out PATH");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(bad, out))
}

async fn run(bad: bool, out: PathBuf) -> ExitCode {
    let plan = match Plan::from_yaml(PLAN) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("invalid plan: {e}");
            return ExitCode::FAILURE;
        }
    };
    let router = FakeRouter::new("mesh");
    let v2_errors = if bad { 0.04 } else { 0.002 };
    let traffic = SimulatedTraffic::new(
        router.clone(),
        5_000,
        vec![
            ("v1".parse().expect("valid"), 0.002),
            ("v2".parse().expect("valid"), v2_errors),
        ],
    );
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("checkout", plan)
        .revisions("v1", "v2")
        .router(router)
        .metric_source("traffic", traffic)
        .clock(clock)
        .build();
    let rollout = match rollout {
        Ok(rollout) => rollout,
        Err(e) => {
            eprintln!("cannot build the rollout: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    println!(
        "canary of checkout, v1 -> v2 (v2 error rate {:.1} %)",
        v2_errors * 100.0
    );
    let handle = rollout.handle();
    let printer = print_progress(&rollout, start);
    let outcome = rollout.run().await;
    let _ = printer.await;

    let records = handle.records();
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(&records).map(|json| std::fs::write(&out, json)) {
        Ok(Ok(())) => println!(
            "decision record ({} entries): {}",
            records.len(),
            out.display()
        ),
        Ok(Err(e)) => eprintln!("could not write {}: {e}", out.display()),
        Err(e) => eprintln!("could not serialize the record: {e}"),
    }
    match (outcome, bad) {
        (Ok(Outcome::Promoted), false) => {
            println!("PROMOTED: v2 takes all traffic");
            ExitCode::SUCCESS
        }
        (Ok(Outcome::RolledBack(reason)), true) => {
            println!("ROLLED BACK: {reason}");
            ExitCode::SUCCESS
        }
        (Ok(other), _) => {
            println!("unexpected outcome: {other}");
            ExitCode::FAILURE
        }
        (Err(e), _) => {
            eprintln!("rollout failed: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
