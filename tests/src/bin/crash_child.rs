//! Runs one canary with file-backed state and providers, on real time, and prints
//! `outcome <outcome>` at the end.
//!
//! Usage: `crash-child <state-dir> <world-dir> <pass|fail> [stepped] [takeover]`
//!
//! With `stepped`, it stops at every checkpoint (after each save and log append, and after each
//! effect a provider made) until a line arrives on stdin; the crash test kills it at one of
//! them. With `takeover`, it takes the rollout from the owner lease a killed process left
//! behind instead of waiting for the lease to expire.

use std::process::ExitCode;
use std::time::Duration;

use cutover::{AnalysisResult, FileStateStore, MigrationPhase, Outcome, Plan, Rollout, Verdict};
use cutover_tests::{CheckpointStore, FileMigration, FileRouter, step_through_checkpoints};

const PLAN: &str = "
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: { duration: 20ms }
      - analysis: { name: checks, count: 2, interval: 10ms }
      - set_weight: 40
      - set_weight: 70
bake_time: 20ms
poll_interval: 10ms
";

#[derive(Debug)]
struct Constant(Verdict);

#[async_trait::async_trait]
impl cutover::Analysis for Constant {
    async fn evaluate(
        &self,
        _ctx: &cutover::AnalysisContext,
    ) -> Result<AnalysisResult, cutover::ProviderError> {
        Ok(AnalysisResult::new(self.0, format!("always {}", self.0)))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (state_dir, world_dir, verdict, flags) = match args.as_slice() {
        [_, state, world, verdict, flags @ ..]
            if flags.iter().all(|f| f == "stepped" || f == "takeover") =>
        {
            (state, world, verdict, flags)
        }
        _ => {
            eprintln!(
                "usage: crash-child <state-dir> <world-dir> <pass|fail> [stepped] [takeover]"
            );
            return ExitCode::FAILURE;
        }
    };
    if flags.iter().any(|f| f == "stepped") {
        step_through_checkpoints();
    }
    let takeover = flags.iter().any(|f| f == "takeover");
    let verdict = if verdict == "fail" {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let store = FileStateStore::new(state_dir).expect("a state directory");
        let plan = Plan::from_yaml(PLAN).expect("a valid plan");
        let rollout = Rollout::builder("crashy", plan)
            .revisions("v1", "v2")
            .router(FileRouter::new(world_dir))
            .migration(FileMigration::new(
                world_dir,
                "expand",
                MigrationPhase::Expand,
            ))
            .migration(FileMigration::new(
                world_dir,
                "contract",
                MigrationPhase::Contract,
            ))
            .analysis("checks", Constant(verdict))
            .state_store(CheckpointStore(store))
            .retry(cutover::RetryPolicy {
                initial_backoff: Duration::from_millis(10),
                ..cutover::RetryPolicy::default()
            });
        let rollout = if takeover {
            rollout.take_over("crash-test", "the previous process was killed")
        } else {
            rollout
        }
        .build()
        .expect("a valid rollout");
        match rollout.run().await {
            Ok(Outcome::Promoted) => println!("outcome promoted"),
            Ok(Outcome::RolledBack(_)) => println!("outcome rolled-back"),
            Ok(other) => println!("outcome {other}"),
            Err(e) => {
                println!("error {e}");
                return ExitCode::FAILURE;
            }
        }
        ExitCode::SUCCESS
    })
}
