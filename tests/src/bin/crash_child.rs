//! Runs one canary with file-backed state and providers, on real time, printing `record <seq>`
//! for every decision as soon as it is saved, and `outcome <outcome>` at the end. The crash test
//! kills it with SIGKILL at every record and runs it again.
//!
//! Usage: `crash-child <state-dir> <world-dir> <pass|fail>`

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use cutover::{
    AnalysisResult, FileStateStore, MigrationPhase, Outcome, Plan, Rollout, RolloutEvent, Verdict,
};
use cutover_tests::{FileMigration, FileRouter};
use futures_util::StreamExt as _;

const PLAN: &str = "
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: { duration: 30ms }
      - analysis: { name: checks, count: 2, interval: 20ms }
      - set_weight: 40
      - pause: { duration: 30ms }
      - set_weight: 70
bake_time: 30ms
poll_interval: 10ms
";

#[derive(Debug)]
struct Constant(Verdict);

#[async_trait::async_trait]
impl cutover::Analysis for Constant {
    async fn evaluate(&self, _ctx: &cutover::AnalysisContext) -> Result<AnalysisResult, cutover::ProviderError> {
        Ok(AnalysisResult::new(self.0, format!("always {}", self.0)))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, state_dir, world_dir, verdict] = args.as_slice() else {
        eprintln!("usage: crash-child <state-dir> <world-dir> <pass|fail>");
        return ExitCode::FAILURE;
    };
    let verdict = if verdict == "fail" { Verdict::Fail } else { Verdict::Pass };
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
            .migration(FileMigration::new(world_dir, "expand", MigrationPhase::Expand))
            .migration(FileMigration::new(world_dir, "contract", MigrationPhase::Contract))
            .analysis("checks", Constant(verdict))
            .state_store(store)
            .retry(cutover::RetryPolicy {
                initial_backoff: Duration::from_millis(10),
                ..cutover::RetryPolicy::default()
            })
            .build()
            .expect("a valid rollout");
        let mut events = rollout.subscribe();
        let printer = tokio::spawn(async move {
            let mut out = std::io::stdout();
            while let Some(event) = events.next().await {
                if let RolloutEvent::Record(record) = event {
                    let _ = writeln!(out, "record {}", record.seq);
                    let _ = out.flush();
                }
            }
        });
        let outcome = rollout.run().await;
        let _ = printer.await;
        match outcome {
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
