//! The `scale` benchmark: N concurrent ten-step canaries on one runtime (paused time, the
//! in-memory providers of `cutover-test`) sharing one state store, measured as a whole process:
//! wall and CPU time, decisions, peak resident memory.
//!
//! ```text
//! scale --store memory|file --rollouts N [--providers minimal|fakes] [--out target/bench/scale.jsonl]
//! ```
//!
//! `minimal` providers (the default) do nothing but answer: a router that keeps the current
//! split and an analysis that always passes, so the figures are the SDK's own. `fakes` uses
//! `cutover-test`'s `FakeRouter` and `ScriptedAnalysis`, which also keep every call for test
//! assertions (about 5 KB per rollout here).
//!
//! Run it once per configuration (peak memory is the process's): `scripts/bench-scale` does.
//! It prints one table row and appends one JSON object per line to the output file.
//!
//! ```text
//! scale --guards N [--rounds R] [--out target/bench/scale.jsonl]
//! ```
//!
//! Guard mode: N failover guards (two targets, one minimal router, a probe that always answers
//! ready; probes every 10 s, inbox looked at every 1 s, routers read back every 30 s) on one
//! memory store, run for R probe rounds (default 30) of paused time: CPU per guard per round
//! and peak resident memory.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::guard::{DriftAction, FailoverGuard, FailoverPolicy, Target};
use cutover::{Health, HealthProbe, RevisionId, RolloutId, Weight};

use cutover::test::{FakeRouter, ScriptedAnalysis};
use cutover::{
    Analysis, AnalysisContext, AnalysisResult, FileStateStore, Granularity, ListFilter,
    MemoryStateStore, Outcome, ProviderError, Rollout, RouterCapabilities, StateStore, Timestamp,
    TokioClock, TrafficRouter, TrafficSplit, Verdict,
};
use cutover_benches::ten_step_canary;

#[derive(Debug)]
struct Args {
    store: String,
    providers: String,
    rollouts: usize,
    guards: usize,
    rounds: u32,
    out: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut store = "memory".to_owned();
    let mut providers = "minimal".to_owned();
    let mut rollouts = 1000;
    let mut guards = 0;
    let mut rounds = 30;
    let mut out = PathBuf::from("target/bench/scale.jsonl");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--store" if value == "memory" || value == "file" => store = value,
            "--providers" if value == "minimal" || value == "fakes" => providers = value,
            "--rollouts" => rollouts = value.parse().map_err(|e| format!("--rollouts: {e}"))?,
            "--guards" => guards = value.parse().map_err(|e| format!("--guards: {e}"))?,
            "--rounds" => rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--out" => out = value.into(),
            _ => return Err(format!("unknown argument {flag} {value}")),
        }
    }
    Ok(Args {
        store,
        providers,
        rollouts,
        guards,
        rounds,
        out,
    })
}

/// A field of /proc/self/status in kB.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // Linux reports these in USER_HZ, 100 on every platform cutover runs on.
    #[allow(clippy::cast_precision_loss)]
    let seconds = ticks as f64 / 100.0;
    seconds
}

/// A router that only keeps the split it was given.
#[derive(Debug, Default)]
struct MinimalRouter(parking_lot::Mutex<Option<TrafficSplit>>);

#[async_trait::async_trait]
impl TrafficRouter for MinimalRouter {
    fn name(&self) -> &'static str {
        "minimal"
    }
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::BASIS_POINT)
    }
    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        *self.0.lock() = Some(split.clone());
        Ok(())
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(self.0.lock().clone())
    }
}

/// An analysis that always passes.
#[derive(Debug)]
struct Passing;

#[async_trait::async_trait]
impl Analysis for Passing {
    async fn evaluate(&self, _: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        Ok(AnalysisResult::new(Verdict::Pass, "passes"))
    }
}

fn rollout(i: usize, store: impl StateStore + 'static, providers: &str) -> Rollout {
    let builder = Rollout::builder(format!("r{i}"), ten_step_canary()).revisions("v1", "v2");
    let builder = if providers == "fakes" {
        builder
            .router(FakeRouter::new("mesh"))
            .analysis("checks", ScriptedAnalysis::verdicts([Verdict::Pass]))
    } else {
        builder
            .router(MinimalRouter::default())
            .analysis("checks", Passing)
    };
    builder
        .clock(TokioClock::starting_at(Timestamp::from_unix_millis(
            1_800_000_000_000,
        )))
        .state_store(store)
        .build()
        .expect("a valid rollout")
}

async fn run_all(args: &Args, store: std::sync::Arc<dyn StateStore>) -> usize {
    let tasks: Vec<_> = (0..args.rollouts)
        .map(|i| tokio::spawn(rollout(i, store.clone(), &args.providers).run()))
        .collect();
    let mut promoted = 0;
    for task in tasks {
        if matches!(task.await, Ok(Ok(Outcome::Promoted))) {
            promoted += 1;
        }
    }
    promoted
}

/// Decision records in the store, over every rollout.
async fn decisions(store: &dyn StateStore) -> u64 {
    let mut total = 0;
    let mut filter = ListFilter::default().limit(10_000);
    loop {
        let page = store.list(&filter).await.expect("the store lists");
        let Some(last) = page.last() else {
            return total;
        };
        for summary in &page {
            let state = store
                .load(&summary.id)
                .await
                .expect("loads")
                .expect("stored");
            total += state.state.last_seq;
        }
        filter = filter.after(last.id.clone());
    }
}

/// A probe that always answers ready.
#[derive(Debug)]
struct Ready;

#[async_trait::async_trait]
impl HealthProbe for Ready {
    fn name(&self) -> &'static str {
        "ready"
    }
    async fn check(&self, _: &RevisionId) -> Result<Health, ProviderError> {
        Ok(Health::Ready)
    }
}

/// Runs `args.guards` guards for `args.rounds` probe rounds; returns the records they logged.
async fn run_guards(args: &Args, store: Arc<dyn StateStore>) -> Result<u64, String> {
    let revision = |s: &str| RevisionId::new(s).expect("valid");
    let half = Weight::from_percent(50).expect("valid");
    let policy = FailoverPolicy::new(vec![
        Target::new(revision("a"), half, Weight::FULL),
        Target::new(revision("b"), half, Weight::FULL),
    ])
    .map_err(|e| e.to_string())?;
    let mut guards = Vec::with_capacity(args.guards);
    for i in 0..args.guards {
        let id = RolloutId::new(format!("g{i}")).map_err(|e| e.to_string())?;
        let guard = FailoverGuard::builder(id, policy.clone())
            .router(MinimalRouter::default())
            .probe(Ready)
            .store(store.clone())
            .clock(Arc::new(TokioClock::starting_at(
                Timestamp::from_unix_millis(1_800_000_000_000),
            )))
            .probe_every(Duration::from_secs(10), Duration::from_secs(5))
            .command_poll(Duration::from_secs(1))
            .drift(Duration::from_secs(30), DriftAction::Repair)
            .build()
            .map_err(|e| e.to_string())?;
        guards.push(Arc::new(guard));
    }
    let running: Vec<_> = guards.iter().map(FailoverGuard::spawn).collect();
    tokio::time::sleep(Duration::from_secs(10) * args.rounds).await;
    for guard in running {
        guard.stop().await.map_err(|e| e.to_string())?;
    }
    let mut records = 0;
    for guard in &guards {
        records += guard
            .handle()
            .document()
            .await
            .map_err(|e| e.to_string())?
            .map_or(0, |d| d.next_seq - 1);
    }
    Ok(records)
}

#[allow(clippy::cast_precision_loss)]
fn guard_mode(args: &Args) -> ExitCode {
    let runtime = cutover_benches::paused_runtime();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let rss_before = status_kb("VmRSS:");
    let cpu_before = cpu_seconds();
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let records = match runtime.block_on(run_guards(args, store)) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("scale: guards: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu_before;
    let peak_kb = status_kb("VmHWM:");
    let n = args.guards as f64;
    let guard_rounds = n * f64::from(args.rounds);
    let row = serde_json::json!({
        "mode": "guards",
        "store": "memory",
        "guards": args.guards,
        "rounds": args.rounds,
        "records": records,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "cpu_us_per_guard_round": cpu_s * 1e6 / guard_rounds,
        "peak_rss_mb": peak_kb as f64 / 1024.0,
        "kb_per_guard": peak_kb.saturating_sub(rss_before) as f64 / n,
    });
    println!(
        "guards  memory {:>8} {:>6} {:>8} {:>8.2} {:>8.2} {:>12.1} {:>9.1} {:>8.1}",
        args.guards,
        args.rounds,
        records,
        wall_s,
        cpu_s,
        cpu_s * 1e6 / guard_rounds,
        peak_kb as f64 / 1024.0,
        peak_kb.saturating_sub(rss_before) as f64 / n,
    );
    write_row(&args.out, &row)
}

fn write_row(out: &std::path::Path, row: &serde_json::Value) -> ExitCode {
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .and_then(|mut f| writeln!(f, "{row}"));
    if let Err(e) = written {
        eprintln!("scale: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[allow(clippy::cast_precision_loss)]
fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "scale: {e}\nusage: scale --store memory|file --rollouts N [--out FILE]\n       scale --guards N [--rounds R] [--out FILE]"
            );
            return ExitCode::FAILURE;
        }
    };
    if args.guards > 0 {
        return guard_mode(&args);
    }
    let runtime = cutover_benches::paused_runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: std::sync::Arc<dyn StateStore> = match args.store.as_str() {
        "file" => std::sync::Arc::new(FileStateStore::new(dir.path()).expect("a directory")),
        _ => std::sync::Arc::new(MemoryStateStore::new()),
    };
    let rss_before = status_kb("VmRSS:");
    let cpu_before = cpu_seconds();
    // Wall time of the whole process's work, measured as a benchmark does.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let promoted = runtime.block_on(run_all(&args, store.clone()));
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu_before;
    let peak_kb = status_kb("VmHWM:");
    let decisions = runtime.block_on(decisions(store.as_ref()));
    let n = args.rollouts as f64;
    let row = serde_json::json!({
        "store": args.store,
        "providers": args.providers,
        "rollouts": args.rollouts,
        "promoted": promoted,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "cpu_ms_per_rollout": cpu_s * 1000.0 / n,
        "decisions": decisions,
        "cpu_us_per_decision": cpu_s * 1e6 / decisions.max(1) as f64,
        "peak_rss_mb": peak_kb as f64 / 1024.0,
        "kb_per_rollout": peak_kb.saturating_sub(rss_before) as f64 / n,
    });
    println!(
        "{:<7} {:<8} {:>8} {:>9} {:>8.2} {:>8.2} {:>10.3} {:>10} {:>8.2} {:>9.1} {:>8.1}",
        args.store,
        args.providers,
        args.rollouts,
        promoted,
        wall_s,
        cpu_s,
        cpu_s * 1000.0 / n,
        decisions,
        cpu_s * 1e6 / decisions.max(1) as f64,
        peak_kb as f64 / 1024.0,
        peak_kb.saturating_sub(rss_before) as f64 / n,
    );
    if write_row(&args.out, &row) == ExitCode::FAILURE {
        return ExitCode::FAILURE;
    }
    if promoted == args.rollouts {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "scale: only {promoted} of {} rollouts were promoted",
            args.rollouts
        );
        ExitCode::FAILURE
    }
}
