//! The fleet benchmark: rollouts per second through worker processes on one PostgreSQL, and
//! database round trips per decision, next to the same rollouts in one process on a memory
//! store.
//!
//! The rollouts are the `scale` benchmark's ten-step canary (five weights, each followed by an
//! analysis of five measurements) with fake providers; the measurements are 1 ms apart
//! instead of a minute, since worker processes run on real time.

use std::time::Duration;

use cutover_core::state::Final;
use cutover_core::{MemoryStateStore, Outcome, StateStore};
use serde::Serialize;
use tokio::time::Instant;

use super::PgServer;
use super::chaos::Spawner;
use super::process::{Proc, WorkerArgs};
use super::script::{SCRIPTED, scripted_spec, single_process_rollout, ten_step_plan};
use crate::{Fleet, PgStateStore, RolloutSpec};

/// One row of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRow {
    /// `postgres` (the fleet) or `memory` (one process).
    pub store: &'static str,
    /// Worker processes (0 for the single process).
    pub workers: usize,
    /// Rollouts run.
    pub rollouts: usize,
    /// Rollouts promoted.
    pub promoted: usize,
    /// From the workers' start to the last rollout's end.
    pub wall_s: f64,
    /// Rollouts per second.
    pub rollouts_per_s: f64,
    /// Decision records written.
    pub decisions: u64,
    /// Database round trips of the workers (statements, prepares).
    pub round_trips: u64,
    /// Round trips per decision record.
    pub round_trips_per_decision: f64,
}

/// The benchmark's specs.
pub fn bench_specs(rollouts: usize) -> Vec<RolloutSpec> {
    let plan = ten_step_plan(5, Duration::from_millis(1));
    (0..rollouts)
        .map(|i| scripted_spec(&format!("bench-{i:06}"), &plan, SCRIPTED, None))
        .collect()
}

#[allow(clippy::cast_precision_loss)]
fn row(
    store: &'static str,
    workers: usize,
    rollouts: usize,
    promoted: usize,
    wall: Duration,
    decisions: u64,
    round_trips: u64,
) -> ThroughputRow {
    ThroughputRow {
        store,
        workers,
        rollouts,
        promoted,
        wall_s: wall.as_secs_f64(),
        rollouts_per_s: rollouts as f64 / wall.as_secs_f64(),
        decisions,
        round_trips,
        round_trips_per_decision: round_trips as f64 / decisions.max(1) as f64,
    }
}

/// `rollouts` rollouts through `workers` worker processes (started with `spawn`) on a fresh
/// database `db` of `server`.
pub async fn fleet_throughput(
    server: &PgServer,
    db: &str,
    workers: usize,
    rollouts: usize,
    spawn: &Spawner,
) -> Result<ThroughputRow, String> {
    let url = server.database(db).await.map_err(|e| e.to_string())?;
    let store = PgStateStore::connect(&url)
        .await
        .map_err(|e| crate::chain(&e))?;
    let fleet = Fleet::new(store.clone());
    let specs = bench_specs(rollouts);
    for chunk in specs.chunks(1000) {
        fleet
            .submit_all(chunk)
            .await
            .map_err(|e| crate::chain(&e))?;
    }
    let began = Instant::now();
    let mut procs = Vec::new();
    for i in 0..workers {
        let args = WorkerArgs {
            url: server.url(db),
            id: format!("bench-w{i}"),
            lease_ttl_ms: 15_000,
            poll_ms: 1000,
            max_rollouts: 500,
            claim_batch: 50,
            claim_rate: 2000.0,
            record_calls: false,
        };
        procs.push(Proc::start(spawn(), &args).map_err(|e| format!("starting a worker: {e}"))?);
    }
    let deadline = began + Duration::from_mins(30);
    loop {
        let counts = fleet.counts().await.map_err(|e| crate::chain(&e))?;
        if counts.open() == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} rollouts still open after 30 minutes",
                counts.open()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = began.elapsed();
    let reports =
        futures_util::future::join_all(procs.into_iter().map(|p| p.stop(Duration::from_mins(1))))
            .await;
    if reports.iter().any(Option::is_none) {
        return Err("a worker did not report".into());
    }
    let round_trips = reports.iter().flatten().map(|r| r.round_trips).sum();
    let decisions = store
        .db()
        .query_opt("bench: decisions", "SELECT count(*) FROM cutover_log", &[])
        .await
        .map_err(|e| crate::chain(&e))?
        .map_or(0, |r| crate::pg::sql::unbig(r.get(0)));
    let mut promoted = 0;
    for spec in &specs {
        let state = store.load(&spec.id).await.map_err(|e| crate::chain(&e))?;
        if state.is_some_and(|s| s.state.outcome == Some(Final::Outcome(Outcome::Promoted))) {
            promoted += 1;
        }
    }
    Ok(row(
        "postgres",
        workers,
        rollouts,
        promoted,
        wall,
        decisions,
        round_trips,
    ))
}

/// The same rollouts in this process, on one memory store, on real time.
pub async fn memory_throughput(rollouts: usize) -> ThroughputRow {
    let specs = bench_specs(rollouts);
    let store = MemoryStateStore::new();
    let began = Instant::now();
    let tasks: Vec<_> = specs
        .iter()
        .map(|spec| tokio::spawn(single_process_rollout(spec, &store).run()))
        .collect();
    let mut promoted = 0;
    for task in tasks {
        if matches!(task.await, Ok(Ok(Outcome::Promoted))) {
            promoted += 1;
        }
    }
    let wall = began.elapsed();
    let mut decisions = 0;
    for spec in &specs {
        if let Ok(Some(stored)) = store.load(&spec.id).await {
            decisions += stored.state.last_seq;
        }
    }
    row("memory", 0, rollouts, promoted, wall, decisions, 0)
}
