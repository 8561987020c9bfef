//! The stampede, small: 1,000 queued rollouts and 20 workers (in this process, each with its
//! own pool) on a real PostgreSQL with `pg_stat_statements`. The connections never exceed the
//! pools, the claims and claim statements never exceed what the claim rate allows, and no
//! rollout is acted on by two workers. `scripts/bench-fleet stampede` runs the full one
//! (10,000 rollouts).

use cutover_fleet::testing::{PgServer, STAMPEDE_SERVER_OPTIONS, StampedeConfig, run_stampede};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn twenty_workers_on_a_full_queue_stay_within_their_bounds() {
    let server = tokio::task::spawn_blocking(|| PgServer::start_with(STAMPEDE_SERVER_OPTIONS))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let config = StampedeConfig::quick();
    let report = run_stampede(&server, "stampede", &config)
        .await
        .unwrap_or_else(|e| panic!("the stampede could not run: {e}"));
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.failures(), Vec::<String>::new(), "{report:#?}");
    // The bounds were measured, not vacuous: every worker connected and claimed.
    assert!(report.samples > 10, "{report:#?}");
    assert!(report.peak_connections >= config.workers, "{report:#?}");
    assert!(report.finished_per_worker.0 > 0, "{report:#?}");
    assert!(
        report.claim_statements >= u64::try_from(config.rollouts / config.claim_batch).unwrap(),
        "{report:#?}"
    );
    assert_eq!(report.claims, config.rollouts, "{report:#?}");
    assert!(report.all_finished_s < 60.0, "{report:#?}");
}
