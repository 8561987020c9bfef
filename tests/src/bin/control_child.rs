//! Runs one canary on a file store with a file-backed router, on real time, for the tests that
//! steer it from another process; prints `outcome <outcome>` at the end.
//!
//! Usage: `control-child <state-dir> <world-dir>`
//!
//! The plan holds at a timed pause (2 s) and then at a pause that waits to be resumed. The
//! owner lease lasts 1 s; if another process holds it, the child waits for it to expire (up to
//! 10 s), as a restarted deploy service would.

use std::process::ExitCode;
use std::time::Duration;

use cutover::{FileStateStore, Plan, Rollout, RolloutError};
use cutover_tests::FileRouter;

const PLAN: &str = "
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: { duration: 2s }
      - set_weight: 40
      - pause: {}
      - set_weight: 70
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, state_dir, world_dir] = args.as_slice() else {
        eprintln!("usage: control-child <state-dir> <world-dir>");
        return ExitCode::FAILURE;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let store = FileStateStore::new(state_dir)
            .expect("a state directory")
            .with_poll_interval(Duration::from_millis(50));
        let plan = Plan::from_yaml(PLAN).expect("a valid plan");
        let mut waited = Duration::ZERO;
        loop {
            let rollout = Rollout::builder("steered", plan.clone())
                .revisions("v1", "v2")
                .router(FileRouter::new(world_dir))
                .state_store(store.clone())
                .lease_ttl(Duration::from_secs(1))
                .build()
                .expect("a valid rollout");
            match rollout.run().await {
                Ok(outcome) => {
                    println!("outcome {outcome}");
                    return ExitCode::SUCCESS;
                }
                Err(RolloutError::Owned { owner, .. }) if waited < Duration::from_secs(10) => {
                    println!("waiting for the lease of {owner} to expire");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    waited += Duration::from_millis(200);
                }
                Err(e) => {
                    println!("error {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    })
}
