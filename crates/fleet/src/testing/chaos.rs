//! The chaos run: worker processes on one PostgreSQL run scripted rollouts while a random
//! worker is killed (SIGKILL), stopped past its lease (SIGSTOP, then SIGCONT) or drained
//! (SIGTERM) every few seconds, and a replacement starts at once after every fault (a stopped
//! worker is continued past its lease, left a lease's time to meet the fencing, then drained).
//! Then it checks, from the database:
//!
//! - every rollout has the outcome a single-process run of the same script gives
//!   (`divergent`);
//! - no write from a stale token was accepted: no decision record written in an epoch older
//!   than one before it, no router call accepted out of epoch order or from a worker that did
//!   not hold that epoch (`stale_writes_accepted`); the router calls it refused for a stale
//!   token are counted too (`stale_calls_refused`);
//! - no two workers acted on one rollout in one epoch (`double_actors`);
//! - nothing stuck: every rollout finished before the run's deadline (`stuck`);
//! - the decision logs have no gaps or duplicates (`log_gaps`, `log_duplicates`);
//! - how long after each kill or stop its rollouts were claimed again (`max_takeover_s`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use cutover_core::state::Final;
use cutover_core::{
    DecisionRecord, Entry, MemoryStateStore, Outcome, RolloutId, StateStore, StopReason,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::PgServer;
use super::process::{Proc, WorkerArgs};
use super::script::{
    RecordingRouter, SCRIPTED, scripted_spec, single_process_rollout, ten_step_plan,
};
use crate::pg::sql::{RawJson, unbig};
use crate::{Fleet, PgStateStore, RolloutSpec};

/// The shape of a chaos run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChaosConfig {
    /// Rollouts submitted.
    pub rollouts: usize,
    /// Worker processes at any time.
    pub workers: usize,
    /// Rollouts submitted per second.
    pub submit_per_s: f64,
    /// Measurements per analysis step.
    pub count: u32,
    /// Time between measurements.
    pub interval: Duration,
    /// Workers' lease time-to-live.
    pub lease_ttl: Duration,
    /// Workers' poll interval.
    pub poll: Duration,
    /// A fault about this often (±25 %).
    pub fault_every: Duration,
    /// Give up on rollouts not finished this long after the last was submitted.
    pub deadline: Duration,
    /// Seed of the faults and of which rollouts fail.
    pub seed: u64,
}

impl ChaosConfig {
    /// The full run of `scripts/bench-fleet`: 1,000 rollouts, three workers, a fault every
    /// three seconds.
    pub fn full() -> Self {
        ChaosConfig {
            rollouts: 1000,
            workers: 3,
            submit_per_s: 30.0,
            count: 2,
            interval: Duration::from_millis(300),
            lease_ttl: Duration::from_secs(2),
            poll: Duration::from_millis(250),
            fault_every: Duration::from_secs(3),
            deadline: Duration::from_mins(3),
            seed: 17,
        }
    }

    /// The test suite's run: tens of rollouts, seconds.
    pub fn quick() -> Self {
        ChaosConfig {
            rollouts: 40,
            workers: 3,
            submit_per_s: 12.0,
            count: 3,
            interval: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(2),
            poll: Duration::from_millis(200),
            fault_every: Duration::from_millis(1500),
            deadline: Duration::from_secs(40),
            seed: 17,
        }
    }

    /// The spec of rollout `i`: a third of them fail, at an analysis that depends on `i`.
    pub fn spec(&self, i: usize) -> RolloutSpec {
        let plan = ten_step_plan(self.count, self.interval);
        let salt = i.wrapping_mul(2_654_435_761) ^ usize::try_from(self.seed).unwrap_or(0);
        let fail_at = salt
            .is_multiple_of(3)
            .then(|| format!("a{}", salt / 3 % 5 + 1));
        scripted_spec(
            &format!("chaos-{i:05}"),
            &plan,
            SCRIPTED,
            fail_at.as_deref(),
        )
    }
}

/// One fault the run injected.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// `kill`, `stop` or `term`.
    pub kind: &'static str,
    /// The worker.
    pub worker: String,
    /// Seconds into the run.
    pub at_s: f64,
    /// Rollouts it held, and the slowest of their takeovers (seconds), if any.
    pub held: usize,
    /// Seconds until the last of them was claimed again.
    pub takeover_s: Option<f64>,
}

/// What a chaos run found; `scripts/bench-fleet` writes it to `target/bench/fleet.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    /// Rollouts submitted.
    pub rollouts: usize,
    /// Worker processes at any time.
    pub workers: usize,
    /// Workers started over the run (replacements included).
    pub workers_started: usize,
    /// SIGKILLs.
    pub kills: usize,
    /// SIGSTOPs past the lease (each followed by SIGCONT).
    pub stops: usize,
    /// SIGTERMs (drains).
    pub drains: usize,
    /// Rollouts promoted.
    pub promoted: usize,
    /// Rollouts rolled back.
    pub rolled_back: usize,
    /// Rollouts whose outcome differs from the single-process run's.
    pub divergent: usize,
    /// Writes from a stale token that were accepted (decision records, router calls).
    pub stale_writes_accepted: usize,
    /// Router calls the router refused because their token was stale.
    pub stale_calls_refused: usize,
    /// (rollout, epoch) pairs on which more than one worker acted.
    pub double_actors: usize,
    /// Rollouts not finished by the deadline.
    pub stuck: usize,
    /// Rollouts whose decision log has a gap.
    pub log_gaps: usize,
    /// Decision records written twice.
    pub log_duplicates: usize,
    /// Claims of rollouts (first claims and takeovers).
    pub claims: usize,
    /// Rollouts whose lease the workers that were drained found lost (and dropped): what the
    /// stalled workers noticed when they woke. Killed workers do not report.
    pub leases_lost_seen: u64,
    /// The longest time from a kill or stop to a new claim of one of the rollouts it held.
    pub max_takeover_s: f64,
    /// The longest time from a drain to a new claim of one of the rollouts it handed back.
    pub max_handoff_s: f64,
    /// The workers' lease time-to-live.
    pub lease_ttl_s: f64,
    /// The workers' poll interval.
    pub poll_s: f64,
    /// The whole run.
    pub wall_s: f64,
    /// Every fault.
    pub faults: Vec<Fault>,
}

impl ChaosReport {
    /// What went wrong: empty when every check passed.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, n) in [
            ("divergent outcomes", self.divergent),
            ("stale writes accepted", self.stale_writes_accepted),
            ("double actors", self.double_actors),
            ("stuck rollouts", self.stuck),
            ("decision logs with gaps", self.log_gaps),
            ("duplicate decision records", self.log_duplicates),
        ] {
            if n > 0 {
                out.push(format!("{n} {what}"));
            }
        }
        let bound = self.lease_ttl_s + self.poll_s + 1.0;
        if self.max_takeover_s > bound {
            out.push(format!(
                "a takeover took {:.2} s, more than the lease ({:.1} s) plus a poll ({:.2} s) plus 1 s",
                self.max_takeover_s, self.lease_ttl_s, self.poll_s
            ));
        }
        out
    }
}

/// Builds the command that re-executes the calling binary as a worker.
pub type Spawner = dyn Fn() -> std::process::Command + Send + Sync;

struct Run<'a> {
    config: &'a ChaosConfig,
    url: String,
    spawn: &'a Spawner,
    procs: Vec<Proc>,
    /// Stopped workers, to continue at the given time.
    stopped: Vec<(Proc, Instant)>,
    /// Continued workers (their replacement already runs), to drain at the given time, once
    /// they have woken and met the fencing.
    retiring: Vec<(Proc, Instant)>,
    started: usize,
}

impl Run<'_> {
    fn start_worker(&mut self) -> Result<(), String> {
        self.started += 1;
        let args = WorkerArgs {
            url: self.url.clone(),
            id: format!("w{}", self.started),
            lease_ttl_ms: u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX),
            poll_ms: u64::try_from(self.config.poll.as_millis()).unwrap_or(u64::MAX),
            max_rollouts: 400,
            claim_batch: 25,
            claim_rate: 200.0,
            record_calls: true,
        };
        let proc =
            Proc::start((self.spawn)(), &args).map_err(|e| format!("starting a worker: {e}"))?;
        self.procs.push(proc);
        Ok(())
    }
}

/// Runs the chaos run on `server`, in a fresh database `db`, starting workers with `spawn`.
pub async fn run_chaos(
    server: &PgServer,
    db: &str,
    config: &ChaosConfig,
    spawn: &Spawner,
) -> Result<ChaosReport, String> {
    let url = server.database(db).await.map_err(|e| e.to_string())?;
    let store = PgStateStore::connect(&url)
        .await
        .map_err(|e| crate::chain(&e))?;
    RecordingRouter::create_table(&store)
        .await
        .map_err(|e| crate::chain(&e))?;
    let fleet = Fleet::new(store.clone());
    let specs: Vec<RolloutSpec> = (0..config.rollouts).map(|i| config.spec(i)).collect();
    let reference = tokio::task::spawn_blocking({
        let specs = specs.clone();
        move || reference_outcomes(&specs)
    });
    let mut run = Run {
        config,
        url: server.url(db),
        spawn,
        procs: Vec::new(),
        stopped: Vec::new(),
        retiring: Vec::new(),
        started: 0,
    };
    for _ in 0..config.workers {
        run.start_worker()?;
    }
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let began = Instant::now();
    let mut submitted = 0;
    let mut faults: Vec<Injected> = Vec::new();
    let mut next_fault = began + config.fault_every;
    let mut finished_submitting: Option<Instant> = None;
    let mut report = ChaosReport {
        rollouts: config.rollouts,
        workers: config.workers,
        lease_ttl_s: config.lease_ttl.as_secs_f64(),
        poll_s: config.poll.as_secs_f64(),
        ..ChaosReport::default()
    };
    loop {
        let now = Instant::now();
        // Submit at the configured rate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = ((now - began).as_secs_f64() * config.submit_per_s).ceil() as usize;
        let due = due.min(specs.len());
        if due > submitted {
            fleet
                .submit_all(&specs[submitted..due])
                .await
                .map_err(|e| crate::chain(&e))?;
            submitted = due;
            if submitted == specs.len() {
                finished_submitting = Some(now);
            }
        }
        // Continue stopped workers whose time is up.
        let (resume, keep): (Vec<_>, Vec<_>) =
            run.stopped.drain(..).partition(|(_, at)| *at <= now);
        run.stopped = keep;
        for (proc, _) in resume {
            proc.signal("CONT").map_err(|e| format!("SIGCONT: {e}"))?;
            run.retiring.push((proc, now + config.lease_ttl));
        }
        // Drain continued workers once they had a lease's time to act on what they held.
        let (retire, keep): (Vec<_>, Vec<_>) =
            run.retiring.drain(..).partition(|(_, at)| *at <= now);
        run.retiring = keep;
        for (proc, _) in retire {
            if let Some(r) = proc.stop(Duration::from_secs(30)).await {
                report.leases_lost_seen += r.lost;
            }
        }
        let counts = fleet.counts().await.map_err(|e| crate::chain(&e))?;
        if submitted == specs.len() && counts.open() == 0 {
            break;
        }
        if finished_submitting.is_some_and(|t| now - t > config.deadline) {
            break;
        }
        if now >= next_fault && counts.running > 0 && !run.procs.is_empty() {
            // The first faults are a stop, a kill and a drain, so even a short run has each.
            let kind = match faults.len() {
                0 => "stop",
                1 => "kill",
                2 => "term",
                _ => match rng.u32(0..10) {
                    0..5 => "kill",
                    5..9 => "stop",
                    _ => "term",
                },
            };
            // A random worker among those that hold rollouts, so that every fault hits
            // rollouts in flight.
            let mut holding = Vec::new();
            for (i, proc) in run.procs.iter().enumerate() {
                if !held_by(&store, &proc.id).await?.1.is_empty() {
                    holding.push(i);
                }
            }
            let pick = if holding.is_empty() {
                rng.usize(0..run.procs.len())
            } else {
                holding[rng.usize(0..holding.len())]
            };
            let victim = run.procs.remove(pick);
            let (t0, held) = held_by(&store, &victim.id).await?;
            let fault = Fault {
                kind,
                worker: victim.id.clone(),
                at_s: (now - began).as_secs_f64(),
                held: held.len(),
                takeover_s: None,
            };
            match kind {
                "kill" => {
                    victim.kill().await.map_err(|e| format!("SIGKILL: {e}"))?;
                    report.kills += 1;
                    run.start_worker()?;
                }
                "stop" => {
                    victim.signal("STOP").map_err(|e| format!("SIGSTOP: {e}"))?;
                    report.stops += 1;
                    let until = Instant::now() + config.lease_ttl + Duration::from_secs(1);
                    run.stopped.push((victim, until));
                    run.start_worker()?;
                }
                _ => {
                    if let Some(r) = victim.stop(Duration::from_secs(30)).await {
                        report.leases_lost_seen += r.lost;
                    }
                    report.drains += 1;
                    run.start_worker()?;
                }
            }
            faults.push((fault, t0, held));
            let spread = 0.75 + rng.f64() * 0.5;
            next_fault = Instant::now() + config.fault_every.mul_f64(spread);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.wall_s = began.elapsed().as_secs_f64();
    for (proc, _) in std::mem::take(&mut run.stopped) {
        let _ = proc.signal("CONT");
        run.procs.push(proc);
    }
    run.procs.extend(
        std::mem::take(&mut run.retiring)
            .into_iter()
            .map(|(p, _)| p),
    );
    let stops = std::mem::take(&mut run.procs)
        .into_iter()
        .map(|p| p.stop(Duration::from_secs(30)));
    for r in futures_util::future::join_all(stops)
        .await
        .into_iter()
        .flatten()
    {
        report.leases_lost_seen += r.lost;
    }
    report.workers_started = run.started;
    let reference = reference.await.map_err(|e| e.to_string())?;
    check(&store, &specs, &reference, &mut report).await?;
    for (mut fault, t0, held) in faults {
        fault.takeover_s = takeover(&store, t0, &held).await?;
        let slowest = fault.takeover_s.unwrap_or(0.0);
        if fault.kind == "term" {
            report.max_handoff_s = report.max_handoff_s.max(slowest);
        } else {
            report.max_takeover_s = report.max_takeover_s.max(slowest);
        }
        report.faults.push(fault);
    }
    Ok(report)
}

/// A fault, the database's time when it was injected, and the rollouts (with epochs) its
/// worker held then.
type Injected = (Fault, f64, Vec<(RolloutId, u64)>);

/// The rollouts `worker` holds a live lease on, with their epochs, and the database's time.
async fn held_by(
    store: &PgStateStore,
    worker: &str,
) -> Result<(f64, Vec<(RolloutId, u64)>), String> {
    let rows = store
        .db()
        .query(
            "chaos: held leases",
            "SELECT extract(epoch FROM now())::float8, id, lease_epoch FROM cutover_rollouts \
             WHERE lease_owner = $1 AND lease_deadline > now() \
               AND phase IS DISTINCT FROM 'done' \
             UNION ALL SELECT extract(epoch FROM now())::float8, NULL, NULL",
            &[&worker],
        )
        .await
        .map_err(|e| crate::chain(&e))?;
    let now = rows.first().map_or(0.0, |r| r.get::<_, f64>(0));
    let held = rows
        .iter()
        .filter_map(|r| {
            let id: Option<String> = r.get(1);
            let epoch: Option<i64> = r.get(2);
            Some((RolloutId::new(id?).ok()?, unbig(epoch?)))
        })
        .collect();
    Ok((now, held))
}

/// Seconds from `t0` until every one of `held` was claimed with a later epoch (the slowest).
async fn takeover(
    store: &PgStateStore,
    t0: f64,
    held: &[(RolloutId, u64)],
) -> Result<Option<f64>, String> {
    let mut slowest: Option<f64> = None;
    for (id, epoch) in held {
        let row = store
            .db()
            .query_opt(
                "chaos: takeover",
                "SELECT extract(epoch FROM min(claimed_at))::float8 FROM cutover_fleet_claims \
                 WHERE id = $1 AND epoch > $2",
                &[&id.as_str(), &i64::try_from(*epoch).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(|e| crate::chain(&e))?;
        if let Some(at) = row.and_then(|r| r.get::<_, Option<f64>>(0)) {
            let took = (at - t0).max(0.0);
            slowest = Some(slowest.map_or(took, |s: f64| s.max(took)));
        }
    }
    Ok(slowest)
}

/// The outcome of every spec run alone in one process, on a memory store and paused time,
/// with the same scripted providers.
fn reference_outcomes(specs: &[RolloutSpec]) -> BTreeMap<RolloutId, Option<Final>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = MemoryStateStore::new();
        let mut tasks = Vec::new();
        for spec in specs {
            let rollout = single_process_rollout(spec, &store);
            tasks.push(tokio::spawn(rollout.run()));
        }
        for task in tasks {
            let _ = task.await;
        }
        let mut out = BTreeMap::new();
        for spec in specs {
            let state = store.load(&spec.id).await.ok().flatten();
            out.insert(spec.id.clone(), state.and_then(|s| s.state.outcome));
        }
        out
    })
}

/// The checks, from the database.
async fn check(
    store: &PgStateStore,
    specs: &[RolloutSpec],
    reference: &BTreeMap<RolloutId, Option<Final>>,
    report: &mut ChaosReport,
) -> Result<(), String> {
    let db = store.db();
    let fail = |e: cutover_core::StoreError| crate::chain(&e);
    // Outcomes against the single-process run; what did not finish is stuck.
    for spec in specs {
        let state = store.load(&spec.id).await.map_err(fail)?.map(|s| s.state);
        let outcome = state.as_ref().and_then(|s| s.outcome.clone());
        match &outcome {
            Some(Final::Outcome(Outcome::Promoted)) => report.promoted += 1,
            Some(Final::Outcome(Outcome::RolledBack(reason))) => {
                report.rolled_back += 1;
                if matches!(reason, StopReason::ProgressDeadline { .. }) {
                    report.stuck += 1;
                }
            }
            None => report.stuck += 1,
            _ => {}
        }
        if outcome.is_some() && reference.get(&spec.id) != Some(&outcome) {
            report.divergent += 1;
        }
    }
    // The decision logs: whole, never written from an older epoch after a newer one, and one
    // engine per epoch.
    let rows = db
        .query(
            "chaos: logs",
            "SELECT l.id, l.seq, l.epoch, l.record, r.state->>'last_seq' \
             FROM cutover_log l JOIN cutover_rollouts r ON r.id = l.id ORDER BY l.id, l.seq",
            &[],
        )
        .await
        .map_err(fail)?;
    let mut logs: BTreeMap<String, (Vec<u64>, u64)> = BTreeMap::new();
    let mut engines: HashMap<(String, u64), BTreeSet<String>> = HashMap::new();
    let mut newest: HashMap<String, u64> = HashMap::new();
    for row in &rows {
        let id: String = row.get(0);
        let seq = unbig(row.get(1));
        let epoch = row.get::<_, Option<i64>>(2).map_or(0, unbig);
        let last: Option<String> = row.get(4);
        let entry = logs
            .entry(id.clone())
            .or_insert_with(|| (Vec::new(), last.and_then(|l| l.parse().ok()).unwrap_or(0)));
        entry.0.push(seq);
        let seen = newest.entry(id.clone()).or_insert(0);
        if epoch < *seen {
            report.stale_writes_accepted += 1;
        }
        *seen = (*seen).max(epoch);
        let record: RawJson<'_> = row.get(3);
        let record: DecisionRecord = serde_json::from_slice(record.0).map_err(|e| e.to_string())?;
        if let Entry::Started { engine, .. } = record.entry {
            engines.entry((id, epoch)).or_default().insert(engine);
        }
    }
    for (seqs, last) in logs.values() {
        let distinct: BTreeSet<&u64> = seqs.iter().collect();
        report.log_duplicates += seqs.len() - distinct.len();
        if distinct.len() as u64 != *last || seqs.iter().copied().ne(1..=*last) {
            report.log_gaps += 1;
        }
    }
    report.double_actors += engines.values().filter(|e| e.len() > 1).count();
    // Router calls: accepted ones in epoch order, from the worker that claimed that epoch, and
    // one process per epoch.
    let calls = db
        .query(
            "chaos: router calls",
            "SELECT c.rollout, c.epoch, c.worker, c.pid, c.accepted, cl.worker \
             FROM chaos_router_calls c \
             LEFT JOIN cutover_fleet_claims cl ON cl.id = c.rollout AND cl.epoch = c.epoch \
             ORDER BY c.seq",
            &[],
        )
        .await
        .map_err(fail)?;
    let mut newest: HashMap<String, u64> = HashMap::new();
    let mut actors: HashMap<(String, u64), BTreeSet<(String, i64)>> = HashMap::new();
    for call in &calls {
        let rollout: String = call.get(0);
        let epoch = unbig(call.get(1));
        let worker: String = call.get(2);
        let pid: i64 = call.get(3);
        let accepted: bool = call.get(4);
        let claimed_by: Option<String> = call.get(5);
        if !accepted {
            report.stale_calls_refused += 1;
            continue;
        }
        let seen = newest.entry(rollout.clone()).or_insert(0);
        if epoch < *seen || claimed_by.as_deref() != Some(worker.as_str()) {
            report.stale_writes_accepted += 1;
        }
        *seen = (*seen).max(epoch);
        actors
            .entry((rollout, epoch))
            .or_default()
            .insert((worker, pid));
    }
    report.double_actors += actors.values().filter(|a| a.len() > 1).count();
    report.claims = db
        .query_opt(
            "chaos: claims",
            "SELECT count(*) FROM cutover_fleet_claims",
            &[],
        )
        .await
        .map_err(fail)?
        .map_or(0, |r| usize::try_from(r.get::<_, i64>(0)).unwrap_or(0));
    Ok(())
}
