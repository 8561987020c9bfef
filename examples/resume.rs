//! A rollout survives its engine: the first engine is stopped mid-rollout (as if its process
//! died), and a second one picks it up from the state files and finishes it, once the dead
//! engine's owner lease has expired.
//!
//! ```text
//! cargo run --example resume
//! ```

use std::process::ExitCode;

use cutover::test::FakeRouter;
use cutover::{
    Clock as _, DEFAULT_LEASE_TTL, FileStateStore, Outcome, Plan, Rollout, RolloutError,
    RolloutEvent, TokioClock,
};
use cutover_examples::{chain, print_event, print_progress};
use futures_util::StreamExt as _;

const PLAN: &str = "
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: { duration: 10m }
      - set_weight: 50
      - pause: { duration: 10m }
";

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run())
}

fn build(router: &FakeRouter, store: &FileStateStore, clock: TokioClock, engine: &str) -> Rollout {
    Rollout::builder(
        "payments",
        Plan::from_yaml(PLAN).expect("the plan above is valid"),
    )
    .revisions("v7", "v8")
    .router(router.clone())
    .state_store(store.clone())
    .clock(clock)
    .engine_id(engine)
    .build()
    .expect("a valid rollout")
}

async fn run() -> ExitCode {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = FileStateStore::new(dir.path()).expect("a state directory");
    // The router stands for the mesh: it keeps its state across engines, as real infrastructure does.
    let router = FakeRouter::new("mesh");
    let clock = TokioClock::new();
    let start = clock.now();

    println!("engine A starts the rollout");
    let first = build(&router, &store, clock, "engine-a");
    let mut events = first.subscribe();
    tokio::select! {
        _ = first.run() => {}
        () = async {
            while let Some(event) = events.next().await {
                print_event(start, &event);
                if matches!(&event, RolloutEvent::SplitChanged { to, .. } if to.to_string().contains("v8 50%")) {
                    return;
                }
            }
        } => println!("engine A is killed at 50 % (its future is dropped mid-rollout)"),
    }
    let id = "payments".parse().expect("a valid id");
    let files = store.rollout_dir(&id);
    let state = std::fs::read_to_string(files.join("state.json")).unwrap_or_default();
    let log = std::fs::read_to_string(files.join("log.jsonl")).unwrap_or_default();
    println!(
        "state.json: {} bytes; log.jsonl: {} records",
        state.len(),
        log.lines().count()
    );

    // Engine A still holds the owner lease: engine B is refused until it expires.
    match build(&router, &store, clock, "engine-b").run().await {
        Err(RolloutError::Owned { owner, .. }) => {
            println!("engine B is refused: {owner} holds the lease; waiting for it to expire");
        }
        other => {
            eprintln!("expected the lease of engine A to be held, got {other:?}");
            return ExitCode::FAILURE;
        }
    }
    tokio::time::sleep(DEFAULT_LEASE_TTL).await;

    println!("engine B resumes from the files");
    let second = build(&router, &store, clock, "engine-b");
    let printer = print_progress(&second, start);
    let outcome = second.run().await;
    let _ = printer.await;
    match outcome {
        Ok(Outcome::Promoted) => {
            let weights: Vec<String> = router.splits().iter().map(ToString::to_string).collect();
            println!(
                "PROMOTED; splits over both engines: {}",
                weights.join(" -> ")
            );
            ExitCode::SUCCESS
        }
        Ok(other) => {
            println!("unexpected outcome: {other}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rollout failed: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
