//! A zero-downtime rolling update: 10 replicas, one extra at a time, never fewer than 10 ready.
//!
//! ```text
//! cargo run --example rolling              # all 10 replicas replaced
//! cargo run --example rolling -- --stuck   # new pods never become ready: rolled back at the deadline
//! ```
//!
//! The workload is simulated in memory (`FakeWorkload` from cutover's test kit) and time is
//! virtual: tokio's clock is paused and jumps ahead whenever the rollout waits, so twenty
//! minutes of rollout take a blink.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["test-util"] }
//! futures-util = "0.3"
//! tokio = { version = "1", features = ["macros", "rt", "test-util"] }
//! ```

use std::error::Error;
use std::process::ExitCode;

use cutover::planner::{Action, Decision};
use cutover::test::FakeWorkload;
use cutover::{Clock as _, Entry, Outcome, Plan, Rollout, RolloutEvent, Timestamp, TokioClock};
use futures_util::StreamExt as _;

const PLAN: &str = "
strategy:
  rolling: { replicas: 10, max_surge: 1, max_unavailable: 0 }
progress_deadline: 5m
poll_interval: 10s
";

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> ExitCode {
    let stuck = std::env::args().any(|a| a == "--stuck");
    run(stuck).await.unwrap_or_else(|e| {
        eprintln!("{}", chain(&*e));
        ExitCode::FAILURE
    })
}

async fn run(stuck: bool) -> Result<ExitCode, Box<dyn Error>> {
    let (v1, v2) = ("v1".parse()?, "v2".parse()?);
    // New replicas need two status polls (20 s) to become ready.
    let workload = FakeWorkload::new("deployment/api").ready_after_polls(2);
    workload.set_replicas(&v1, 10);
    if stuck {
        workload.stuck(&v2, 0);
    }
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("api", Plan::from_yaml(PLAN)?)
        .revisions("v1", "v2")
        .workload(workload.clone())
        .clock(clock)
        .build()?;
    let printer = print_records(&rollout, start);
    let outcome = rollout.run().await;
    printer.await?;
    println!(
        "replicas now: v1 {}, v2 {}",
        workload.desired(&v1),
        workload.desired(&v2)
    );
    match (outcome?, stuck) {
        (Outcome::Promoted, false) => println!("DONE: every replica runs v2"),
        (Outcome::RolledBack(reason), true) => println!("ROLLED BACK: {reason}"),
        (other, _) => {
            println!("unexpected outcome: {other}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints every decision as it is recorded, with the time since `start`; leaves out the
/// replica polls, which come every 10 s.
fn print_records(rollout: &Rollout, start: Timestamp) -> tokio::task::JoinHandle<()> {
    let mut events = rollout.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let RolloutEvent::Record(record) = event else {
                continue;
            };
            if let Entry::Decision {
                decision: Decision::Apply(Action::ObserveWorkload { .. }),
                ..
            } = &record.entry
            {
                continue;
            }
            let secs = record.at.saturating_since(start).as_secs();
            println!("[+{:02}:{:02}] {}", secs / 60, secs % 60, record.summary);
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
