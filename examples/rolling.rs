//! A zero-downtime rolling update: 10 replicas, one extra at a time, never fewer than 10 ready.
//!
//! ```text
//! cargo run --example rolling              # all 10 replicas replaced
//! cargo run --example rolling -- --stuck   # new pods never become ready: rolled back at the deadline
//! ```
//!
//! The workload is simulated in memory and time is virtual.

use std::process::ExitCode;

use cutover::test::FakeWorkload;
use cutover::{Clock as _, Outcome, Plan, Rollout, TokioClock};
use cutover_examples::{chain, print_progress};

const PLAN: &str = "
strategy:
  rolling: { replicas: 10, max_surge: 1, max_unavailable: 0 }
progress_deadline: 5m
poll_interval: 10s
";

fn main() -> ExitCode {
    let stuck = std::env::args().any(|a| a == "--stuck");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(stuck))
}

async fn run(stuck: bool) -> ExitCode {
    let (v1, v2) = ("v1".parse().expect("valid"), "v2".parse().expect("valid"));
    // New replicas need two status polls (20 s) to become ready.
    let workload = FakeWorkload::new("deployment/api").ready_after_polls(2);
    workload.set_replicas(&v1, 10);
    if stuck {
        workload.stuck(&v2, 0);
    }
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = match Rollout::builder(
        "api",
        Plan::from_yaml(PLAN).expect("the plan above is valid"),
    )
    .revisions("v1", "v2")
    .workload(workload.clone())
    .clock(clock)
    .build()
    {
        Ok(rollout) => rollout,
        Err(e) => {
            eprintln!("cannot build the rollout: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let printer = print_progress(&rollout, start);
    let outcome = rollout.run().await;
    let _ = printer.await;
    println!(
        "replicas now: v1 {}, v2 {}",
        workload.desired(&v1),
        workload.desired(&v2)
    );
    match (outcome, stuck) {
        (Ok(Outcome::Promoted), false) => println!("DONE: every replica runs v2"),
        (Ok(Outcome::RolledBack(reason)), true) => println!("ROLLED BACK: {reason}"),
        (Ok(other), _) => {
            println!("unexpected outcome: {other}");
            return ExitCode::FAILURE;
        }
        (Err(e), _) => {
            eprintln!("rollout failed: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
