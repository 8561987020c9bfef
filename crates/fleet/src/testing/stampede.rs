//! The stampede run: many queued rollouts and many workers on one PostgreSQL, to show that the
//! claim-rate bounds and the pools hold the load on the database where the configuration says.
//!
//! Every rollout is queued before the workers start. The workers run in this process, each
//! with a store and a pool of its own (so each is a separate set of database connections,
//! named `stampede-w<i>` in `pg_stat_activity`), and share one in-memory router that keeps
//! every call with its caller's fencing token. A sampler on a connection of its own reads,
//! every 100 ms, the claim statements executed (`pg_stat_statements`, so the server must
//! preload it: [`STAMPEDE_SERVER_OPTIONS`]), the rollouts claimed (`cutover_fleet_claims`) and
//! the workers' connections (`pg_stat_activity`). Then it reports the peaks next to the bounds
//! the configuration implies, and checks from the router's calls that no rollout was acted on
//! by two workers at once.
//!
//! The bounds, per worker and per window of `T` seconds (see `worker/pacing.rs`):
//!
//! - **rollouts claimed** at most `claim_batch + claim_rate × T`: each one takes a token from a
//!   bucket of `claim_batch` tokens refilled at `claim_rate` per second;
//! - **claim statements** at most `2 × (claim_batch + claim_rate × T) + T / poll + 2`: a claim
//!   that gets rollouts takes at least one token; one that comes back short waits a poll
//!   interval unless a notification or a slot freed after a full claim brings it forward (at
//!   most one per token-taking claim); plus one look when the LISTEN connection comes up and
//!   one at the window's start;
//! - **connections** at most `pool_size + 1` (the pool and the LISTEN connection).

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_core::state::Final;
use cutover_core::{Outcome, StateStore};
use serde::Serialize;
use tokio::time::Instant;

use super::PgServer;
use super::script::{MemoryRouters, SCRIPTED, ScriptedVerdicts, scripted_spec, ten_step_plan};
use crate::{DatabaseUrl, Fleet, PgOptions, PgStateStore, RolloutSpec, Worker, WorkerReport};

/// What the server of a stampede run must be started with ([`PgServer::start_with`]).
pub const STAMPEDE_SERVER_OPTIONS: &str = "-c shared_preload_libraries=pg_stat_statements";

/// The shape of a stampede run.
#[derive(Debug, Clone, Serialize)]
pub struct StampedeConfig {
    /// Rollouts queued before the workers start.
    pub rollouts: usize,
    /// Workers, each with its own store and pool.
    pub workers: usize,
    /// Connections in each worker's pool.
    pub pool_size: usize,
    /// Each worker's claim rate (rollouts per second).
    pub claim_rate: f64,
    /// Each worker's claim batch.
    pub claim_batch: usize,
    /// Rollouts each worker runs at once.
    pub max_rollouts: usize,
    /// Each worker's poll interval.
    pub poll: Duration,
    /// Each worker's lease time-to-live.
    pub lease_ttl: Duration,
    /// Give up this long after the workers started.
    pub deadline: Duration,
}

impl StampedeConfig {
    /// The full run of `scripts/bench-fleet stampede`: 10,000 rollouts, 20 workers.
    pub fn full() -> Self {
        StampedeConfig {
            rollouts: 10_000,
            workers: 20,
            pool_size: 4,
            claim_rate: 20.0,
            claim_batch: 10,
            max_rollouts: 100,
            poll: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(15),
            deadline: Duration::from_mins(10),
        }
    }

    /// The test suite's run: 1,000 rollouts, 20 workers.
    pub fn quick() -> Self {
        StampedeConfig {
            rollouts: 1000,
            deadline: Duration::from_mins(1),
            ..Self::full()
        }
    }

    /// At most this many rollouts claimed by all workers in a window of `t` seconds.
    #[allow(clippy::cast_precision_loss)]
    pub fn claimed_bound(&self, t: f64) -> f64 {
        self.workers as f64 * (self.claim_batch as f64 + self.claim_rate * t)
    }

    /// At most this many claim statements from all workers in a window of `t` seconds.
    #[allow(clippy::cast_precision_loss)]
    pub fn statements_bound(&self, t: f64) -> f64 {
        let tokens = self.claim_batch as f64 + self.claim_rate * t;
        self.workers as f64 * (2.0 * tokens + t / self.poll.as_secs_f64() + 2.0)
    }

    /// At most this many connections of all workers at once.
    pub fn connections_bound(&self) -> usize {
        self.workers * (self.pool_size + 1)
    }
}

/// What a stampede run measured; `scripts/bench-fleet stampede` adds it to
/// `target/bench/fleet.json` as `stampede`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StampedeReport {
    /// Rollouts queued.
    pub rollouts: usize,
    /// Workers.
    pub workers: usize,
    /// Connections in each worker's pool.
    pub pool_size: usize,
    /// Each worker's claim rate (rollouts per second).
    pub claim_rate: f64,
    /// Each worker's claim batch.
    pub claim_batch: usize,
    /// Rollouts each worker runs at once.
    pub max_rollouts: usize,
    /// Each worker's poll interval, seconds.
    pub poll_s: f64,
    /// Rollouts promoted.
    pub promoted: usize,
    /// Rollouts still open (queued or running) when the run ended.
    pub unfinished: usize,
    /// Claim statements executed by all workers (`pg_stat_statements`).
    pub claim_statements: u64,
    /// Claim statements per second, over the whole run (from the workers' start until every
    /// rollout had finished).
    pub claim_statements_per_s: f64,
    /// The most claim statements per second in any window of about one second.
    pub peak_claim_statements_per_s: f64,
    /// What the configuration allows in a window of one second.
    pub claim_statements_bound_per_s: f64,
    /// The largest share of its bound any window used (above 1: the bound was broken).
    pub claim_statements_share: f64,
    /// The most rollouts claimed per second in any window of about one second.
    pub peak_claimed_per_s: f64,
    /// What the configuration allows in a window of one second.
    pub claimed_bound_per_s: f64,
    /// The largest share of its bound any window used (above 1: the bound was broken).
    pub claimed_share: f64,
    /// The most connections of all workers seen at once (`pg_stat_activity`).
    pub peak_connections: usize,
    /// The most connections of one worker seen at once.
    pub peak_connections_per_worker: usize,
    /// What the configuration allows: workers × (pool size + 1 LISTEN connection).
    pub connections_bound: usize,
    /// Claims recorded (first claims and any takeovers).
    pub claims: usize,
    /// Rollouts claimed more than once.
    pub reclaimed: usize,
    /// Rollouts on which two workers (or two epochs out of order) acted: router calls of one
    /// epoch from two workers, or a call of an older epoch after one of a newer.
    pub double_actors: usize,
    /// Seconds from the workers' start until every rollout had been claimed.
    pub all_claimed_s: f64,
    /// Seconds from the workers' start until every rollout had finished.
    pub all_finished_s: f64,
    /// Samples taken.
    pub samples: usize,
    /// Rollouts per worker, fewest and most.
    pub finished_per_worker: (u64, u64),
}

impl StampedeReport {
    /// What went wrong: empty when every bound held and every rollout was promoted once.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.promoted != self.rollouts {
            out.push(format!(
                "{} of {} rollouts promoted",
                self.promoted, self.rollouts
            ));
        }
        if self.unfinished > 0 {
            out.push(format!(
                "{} rollouts still open at the end",
                self.unfinished
            ));
        }
        if self.double_actors > 0 {
            out.push(format!(
                "{} rollouts with double actors",
                self.double_actors
            ));
        }
        if self.peak_connections > self.connections_bound {
            out.push(format!(
                "{} connections, more than the bound {}",
                self.peak_connections, self.connections_bound
            ));
        }
        if self.peak_connections_per_worker > self.pool_size + 1 {
            out.push(format!(
                "a worker held {} connections, more than its pool ({}) plus one",
                self.peak_connections_per_worker, self.pool_size
            ));
        }
        if self.claim_statements_share > 1.0 {
            out.push(format!(
                "a window had {:.0} % of the claim statements its bound allows (peak {:.1}/s, bound {:.1}/s)",
                self.claim_statements_share * 100.0,
                self.peak_claim_statements_per_s,
                self.claim_statements_bound_per_s
            ));
        }
        if self.claimed_share > 1.0 {
            out.push(format!(
                "a window had {:.0} % of the claimed rollouts its bound allows (peak {:.1}/s, bound {:.1}/s)",
                self.claimed_share * 100.0,
                self.peak_claimed_per_s,
                self.claimed_bound_per_s
            ));
        }
        if self.reclaimed > 0 {
            out.push(format!(
                "{} rollouts claimed twice in a run without faults",
                self.reclaimed
            ));
        }
        out
    }
}

/// One reading of the sampler.
struct Sample {
    /// The database's clock, seconds.
    at: f64,
    statements: i64,
    claimed: i64,
    connections: i64,
    per_worker: i64,
    open: i64,
}

const SAMPLE: &str = "SELECT extract(epoch FROM clock_timestamp())::float8, \
       (SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
          AND query LIKE 'WITH picked AS%'), \
       (SELECT count(*) FROM cutover_fleet_claims), \
       (SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'stampede-w%'), \
       (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM pg_stat_activity \
        WHERE application_name LIKE 'stampede-w%' GROUP BY application_name) AS per), \
       (SELECT count(*) FROM cutover_fleet_rollouts WHERE open)";

/// The specs of a stampede run: the ten-step canary, one measurement per analysis, promoted.
pub fn stampede_specs(rollouts: usize) -> Vec<RolloutSpec> {
    let plan = ten_step_plan(1, Duration::from_millis(1));
    (0..rollouts)
        .map(|i| scripted_spec(&format!("stampede-{i:05}"), &plan, SCRIPTED, None))
        .collect()
}

/// Runs the stampede on `server` (started with [`STAMPEDE_SERVER_OPTIONS`]), in a fresh
/// database `db`.
#[allow(clippy::too_many_lines)]
pub async fn run_stampede(
    server: &PgServer,
    db: &str,
    config: &StampedeConfig,
) -> Result<StampedeReport, String> {
    let fail = |e: &dyn std::error::Error| crate::chain(e);
    let url = server.database(db).await.map_err(|e| e.to_string())?;
    let store = PgStateStore::connect_with(&url, PgOptions::default().pool_size(2))
        .await
        .map_err(|e| fail(&e))?;
    let fleet = Fleet::new(store.clone());
    let specs = stampede_specs(config.rollouts);
    for chunk in specs.chunks(1000) {
        fleet.submit_all(chunk).await.map_err(|e| fail(&e))?;
    }
    let (sampler, connection) = tokio_postgres::connect(
        &format!("{} application_name=stampede-sampler", server.url(db)),
        tokio_postgres::NoTls,
    )
    .await
    .map_err(|e| fail(&e))?;
    let connection = tokio::spawn(connection);
    sampler
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .map_err(|e| fail(&e))?;
    let sample = async || -> Result<Sample, String> {
        let row = sampler.query_one(SAMPLE, &[]).await.map_err(|e| fail(&e))?;
        Ok(Sample {
            at: row.get(0),
            statements: row.get(1),
            claimed: row.get(2),
            connections: row.get(3),
            per_worker: row.get(4),
            open: row.get(5),
        })
    };
    let first = sample().await?;
    let routers = MemoryRouters::default();
    let mut workers = Vec::new();
    for i in 0..config.workers {
        let url = DatabaseUrl::parse(&format!(
            "{} application_name=stampede-w{i}",
            server.url(db)
        ))
        .map_err(|e| fail(&e))?;
        let store =
            PgStateStore::connect_with(&url, PgOptions::default().pool_size(config.pool_size))
                .await
                .map_err(|e| fail(&e))?;
        let worker = Worker::builder(store)
            .id(format!("stampede-w{i}"))
            .router(SCRIPTED, routers.factory())
            .analysis(SCRIPTED, ScriptedVerdicts::factory)
            .lease_ttl(config.lease_ttl)
            .poll_interval(config.poll)
            .max_rollouts(config.max_rollouts)
            .claim_batch(config.claim_batch)
            .claim_rate(config.claim_rate)
            .build()
            .map_err(|e| fail(&e))?;
        workers.push(worker);
    }
    // Every worker starts at once: the stampede.
    let began = Instant::now();
    let started = sample().await?;
    let runs: Vec<_> = workers
        .into_iter()
        .map(|w| {
            let drainer = w.drainer();
            (drainer, tokio::spawn(w.run(std::future::pending())))
        })
        .collect();
    let mut samples = vec![started];
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = sample().await?;
        let done = s.open == 0;
        samples.push(s);
        if done {
            break;
        }
        if began.elapsed() > config.deadline {
            break;
        }
    }
    let mut reports: Vec<WorkerReport> = Vec::new();
    for (drainer, _) in &runs {
        drainer.drain();
    }
    for (_, task) in runs {
        match task.await {
            Ok(Ok(report)) => reports.push(report),
            Ok(Err(e)) => return Err(format!("a worker failed: {}", fail(&e))),
            Err(e) => return Err(format!("a worker panicked: {e}")),
        }
    }
    let mut report = StampedeReport {
        rollouts: config.rollouts,
        workers: config.workers,
        pool_size: config.pool_size,
        claim_rate: config.claim_rate,
        claim_batch: config.claim_batch,
        max_rollouts: config.max_rollouts,
        poll_s: config.poll.as_secs_f64(),
        connections_bound: config.connections_bound(),
        samples: samples.len(),
        finished_per_worker: (
            reports.iter().map(|r| r.finished).min().unwrap_or(0),
            reports.iter().map(|r| r.finished).max().unwrap_or(0),
        ),
        ..StampedeReport::default()
    };
    let t0 = samples[0].at;
    let last = samples.last().unwrap_or(&first);
    report.claim_statements = u64::try_from(last.statements - first.statements).unwrap_or(0);
    report.unfinished = usize::try_from(last.open).unwrap_or(0);
    // Windows of about a second: each sample against the latest one at least 1 s before it,
    // each checked against the bound for its own length.
    for (i, s) in samples.iter().enumerate() {
        report.peak_connections = report
            .peak_connections
            .max(usize::try_from(s.connections).unwrap_or(0));
        report.peak_connections_per_worker = report
            .peak_connections_per_worker
            .max(usize::try_from(s.per_worker).unwrap_or(0));
        let Some(before) = samples[..i].iter().rev().find(|b| s.at - b.at >= 1.0) else {
            continue;
        };
        let t = s.at - before.at;
        #[allow(clippy::cast_precision_loss)]
        let (statements, claimed) = (
            (s.statements - before.statements) as f64,
            (s.claimed - before.claimed) as f64,
        );
        report.peak_claim_statements_per_s = report.peak_claim_statements_per_s.max(statements / t);
        report.peak_claimed_per_s = report.peak_claimed_per_s.max(claimed / t);
        report.claim_statements_share = report
            .claim_statements_share
            .max(statements / config.statements_bound(t));
        report.claimed_share = report.claimed_share.max(claimed / config.claimed_bound(t));
    }
    report.claim_statements_bound_per_s = config.statements_bound(1.0);
    report.claimed_bound_per_s = config.claimed_bound(1.0);
    // Times on the database's clock, from the claims and the finished rollouts.
    let row = store
        .db()
        .query_opt(
            "stampede: times",
            "SELECT extract(epoch FROM (SELECT max(first) FROM \
                 (SELECT min(claimed_at) AS first FROM cutover_fleet_claims GROUP BY id) AS f))::float8, \
               extract(epoch FROM (SELECT max(finished_at) FROM cutover_fleet_rollouts))::float8, \
               (SELECT count(*) FROM cutover_fleet_claims), \
               (SELECT count(*) FROM (SELECT id FROM cutover_fleet_claims GROUP BY id \
                HAVING count(*) > 1) AS r)",
            &[],
        )
        .await
        .map_err(|e| fail(&e))?
        .ok_or("no row")?;
    report.all_claimed_s = row.get::<_, Option<f64>>(0).map_or(f64::NAN, |t| t - t0);
    report.all_finished_s = row.get::<_, Option<f64>>(1).map_or(f64::NAN, |t| t - t0);
    report.claims = usize::try_from(row.get::<_, i64>(2)).unwrap_or(0);
    report.reclaimed = usize::try_from(row.get::<_, i64>(3)).unwrap_or(0);
    if last.at > t0 {
        #[allow(clippy::cast_precision_loss)]
        let n = report.claim_statements as f64;
        report.claim_statements_per_s = n / (last.at - t0);
    }
    report.double_actors = double_actors(&routers);
    for spec in &specs {
        let state = store.load(&spec.id).await.map_err(|e| fail(&e))?;
        if state.is_some_and(|s| s.state.outcome == Some(Final::Outcome(Outcome::Promoted))) {
            report.promoted += 1;
        }
    }
    drop(sampler);
    let _ = connection.await;
    Ok(report)
}

/// Rollouts whose router calls show two actors at once: one epoch from two workers, or a call
/// of an older epoch after one of a newer.
fn double_actors(routers: &MemoryRouters) -> usize {
    let mut calls = routers.calls();
    calls.sort_by_key(|c| c.at);
    let mut by_rollout: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for call in calls {
        by_rollout
            .entry(call.rollout.as_str().to_owned())
            .or_default()
            .push((call.epoch, call.owner));
    }
    by_rollout
        .values()
        .filter(|calls| {
            let mut owners: BTreeMap<u64, &str> = BTreeMap::new();
            let mut newest = 0;
            calls.iter().any(|(epoch, owner)| {
                let stale = *epoch < newest;
                newest = newest.max(*epoch);
                let other = *owners.entry(*epoch).or_insert(owner) != owner.as_str();
                stale || other
            })
        })
        .count()
}
