//! The chaos run, small: three worker processes (this test binary, re-executed), tens of
//! scripted rollouts, a SIGSTOP past the lease, a SIGKILL and more, on a real PostgreSQL.
//! `scripts/bench-fleet` runs the full one (1,000 rollouts).

use cutover_fleet::testing::{ChaosConfig, PgServer, WORKER_ENV, run_chaos, worker_main_from_env};

/// Not a test: the body of a worker process when this binary is re-executed as one.
#[test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
fn chaos_worker() {
    if let Some(code) = worker_main_from_env() {
        std::process::exit(i32::from(code != std::process::ExitCode::SUCCESS));
    }
}

fn worker_command() -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().expect("this binary"));
    command.args([
        "--exact",
        "chaos_worker",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn workers_that_die_or_stall_never_fork_a_rollout() {
    assert!(std::env::var_os(WORKER_ENV).is_none());
    let server = tokio::task::spawn_blocking(PgServer::shared).await.unwrap();
    let config = ChaosConfig::quick();
    let report = run_chaos(server, "chaos", &config, &worker_command)
        .await
        .unwrap_or_else(|e| panic!("the chaos run could not run: {e}"));
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.failures(), Vec::<String>::new(), "{report:#?}");
    assert_eq!(
        report.promoted + report.rolled_back,
        config.rollouts,
        "{report:#?}"
    );
    assert!(report.rolled_back > 0 && report.promoted > 0, "{report:#?}");
    assert!(report.kills >= 1 && report.stops >= 1, "{report:#?}");
    // The faults hit rollouts in flight, and they were taken over.
    assert!(
        report
            .faults
            .iter()
            .any(|f| f.kind == "stop" && f.held > 0 && f.takeover_s.is_some()),
        "{report:#?}"
    );
    assert!(report.claims > config.rollouts, "{report:#?}");
    // Not before the lease could expire (it was renewed at most a third of it before).
    let earliest = config.lease_ttl.as_secs_f64() * 2.0 / 3.0 - 0.1;
    assert!(report.max_takeover_s >= earliest, "{report:#?}");
}
