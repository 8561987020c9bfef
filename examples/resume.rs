//! A rollout survives its engine: the first engine is stopped mid-rollout (as if its process
//! died), and a second one picks it up from the state files and finishes it, once the dead
//! engine's owner lease has expired.
//!
//! ```text
//! cargo run --example resume
//! ```
//!
//! The router is cutover's in-memory `FakeRouter` and time is virtual (tokio's clock is
//! paused), so the twenty minutes of pauses take no time. The state lives in a
//! `FileStateStore` in a directory under the system's temporary directory, as it would on a
//! deploy host's disk; the example removes it at the end.
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

use cutover::test::FakeRouter;
use cutover::{
    BuildError, Clock as _, DEFAULT_LEASE_TTL, FileStateStore, Outcome, Plan, Rollout,
    RolloutError, RolloutEvent, Timestamp, TokioClock,
};
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

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> ExitCode {
    run().await.unwrap_or_else(|e| {
        eprintln!("{}", chain(&*e));
        ExitCode::FAILURE
    })
}

/// The same rollout as any engine builds it; `engine` names the engine in the record.
fn build(
    router: &FakeRouter,
    store: &FileStateStore,
    clock: TokioClock,
    engine: &str,
) -> Result<Rollout, BuildError> {
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
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("cutover-resume-{}", std::process::id()));
    let outcome = resume(FileStateStore::new(&dir)?).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn resume(store: FileStateStore) -> Result<ExitCode, Box<dyn Error>> {
    // The router stands for the mesh: it keeps its state across engines, as real infrastructure does.
    let router = FakeRouter::new("mesh");
    let clock = TokioClock::new();
    let start = clock.now();

    println!("engine A starts the rollout");
    let first = build(&router, &store, clock, "engine-a")?;
    let mut events = first.subscribe();
    tokio::select! {
        _ = first.run() => {}
        () = async {
            while let Some(event) = events.next().await {
                if let RolloutEvent::Record(record) = &event {
                    print_record(start, record);
                }
                if matches!(&event, RolloutEvent::SplitChanged { to, .. } if to.to_string().contains("v8 50%")) {
                    return;
                }
            }
        } => println!("engine A is killed at 50 % (its future is dropped mid-rollout)"),
    }
    let files = store.rollout_dir(&"payments".parse()?);
    let state = std::fs::read_to_string(files.join("state.json")).unwrap_or_default();
    let log = std::fs::read_to_string(files.join("log.jsonl")).unwrap_or_default();
    println!(
        "state.json: {} bytes; log.jsonl: {} records",
        state.len(),
        log.lines().count()
    );

    // Engine A still holds the owner lease: engine B is refused until it expires.
    match build(&router, &store, clock, "engine-b")?.run().await {
        Err(RolloutError::Owned { owner, .. }) => {
            println!("engine B is refused: {owner} holds the lease; waiting for it to expire");
        }
        other => {
            eprintln!("expected the lease of engine A to be held, got {other:?}");
            return Ok(ExitCode::FAILURE);
        }
    }
    tokio::time::sleep(DEFAULT_LEASE_TTL).await;

    println!("engine B resumes from the files");
    let second = build(&router, &store, clock, "engine-b")?;
    let mut events = second.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let RolloutEvent::Record(record) = &event {
                print_record(start, record);
            }
        }
    });
    let outcome = second.run().await;
    printer.await?;
    match outcome? {
        Outcome::Promoted => {
            let weights: Vec<String> = router.splits().iter().map(ToString::to_string).collect();
            println!(
                "PROMOTED; splits over both engines: {}",
                weights.join(" -> ")
            );
            Ok(ExitCode::SUCCESS)
        }
        other => {
            println!("unexpected outcome: {other}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints a decision with the time since `start`.
fn print_record(start: Timestamp, record: &cutover::DecisionRecord) {
    let secs = record.at.saturating_since(start).as_secs();
    println!("[+{:02}:{:02}] {}", secs / 60, secs % 60, record.summary);
}

/// An error and its sources on one line.
fn chain(error: &dyn Error) -> String {
    let causes = std::iter::successors(Some(error), |&e| e.source());
    causes
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
