//! The fleet benchmark and chaos run (`scripts/bench-fleet`), on a PostgreSQL server it starts
//! from Debian's packages (`scripts/test-deps`), with worker processes that are this binary
//! re-executed.
//!
//! ```text
//! fleet-bench chaos [--rollouts N] [--out target/bench/fleet.json]
//! fleet-bench throughput [--rollouts N] [--workers 1,2,4] [--out target/bench/fleet-throughput.jsonl]
//! fleet-bench stampede [--rollouts N] [--out target/bench/fleet.json]
//! fleet-bench notify [--commands N] [--out target/bench/fleet.json]
//! ```
//!
//! `chaos`: three workers run N scripted rollouts (default 1,000) while a random worker is
//! killed, stopped past its lease or drained every few seconds; writes the report as JSON and
//! fails if any check failed. `throughput`: N rollouts (default 1,000) of the `scale`
//! benchmark's ten-step canary through 1, 2 and 4 worker processes on one PostgreSQL, next to
//! the same rollouts in one process on a memory store; prints a table and appends one JSON
//! object per row. `stampede`: N queued rollouts (default 10,000) and 20 workers with their own
//! pools; claim statements per second, connections and claims against the configured bounds,
//! added to the JSON report as `stampede`; fails if a bound was broken.
//!
//! `notify`: N commands (default 200) queued one at a time by another process (this binary
//! re-executed), each timed from being issued until the watcher here wakes through
//! LISTEN/NOTIFY; added to the JSON report as `notify`.
//!
//! `chaos`, `stampede` and `notify` write their fields into the same JSON object, each keeping what the
//! others wrote.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use cutover_fleet::testing::{
    ChaosConfig, PgServer, STAMPEDE_SERVER_OPTIONS, StampedeConfig, commander_main_from_env,
    fleet_throughput, memory_throughput, notify_latency, run_chaos, run_stampede,
    worker_main_from_env,
};

struct Args {
    mode: String,
    rollouts: Option<usize>,
    commands: usize,
    workers: Vec<usize>,
    out: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("a mode: chaos, throughput or stampede")?;
    if !["chaos", "throughput", "stampede", "notify"].contains(&mode.as_str()) {
        return Err(format!("unknown mode {mode}"));
    }
    let mut args = Args {
        mode,
        rollouts: None,
        commands: 200,
        workers: vec![1, 2, 4],
        out: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rollouts" => {
                args.rollouts = Some(value.parse().map_err(|e| format!("--rollouts: {e}"))?);
            }
            "--commands" => {
                args.commands = value.parse().map_err(|e| format!("--commands: {e}"))?;
            }
            "--workers" => {
                args.workers = value
                    .split(',')
                    .map(|w| w.parse().map_err(|e| format!("--workers: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--out" => args.out = Some(value.into()),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(args)
}

fn worker() -> std::process::Command {
    std::process::Command::new(std::env::current_exe().expect("this binary"))
}

fn write(path: &PathBuf, text: &str, append: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    writeln!(file, "{text}")
}

/// Writes `fields` into the JSON object at `path`, keeping the fields already there.
fn merge(path: &PathBuf, fields: serde_json::Value) -> std::io::Result<()> {
    let mut object = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    if let (Some(object), serde_json::Value::Object(fields)) = (object.as_object_mut(), fields) {
        object.extend(fields);
    }
    let text = serde_json::to_string_pretty(&object).expect("JSON serializes");
    write(path, &text, false)
}

fn stampede(runtime: &tokio::runtime::Runtime, args: &Args) -> ExitCode {
    let server = match PgServer::start_with(STAMPEDE_SERVER_OPTIONS) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fleet-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = StampedeConfig::full();
    if let Some(n) = args.rollouts {
        config.rollouts = n;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| "target/bench/fleet.json".into());
    let report = match runtime.block_on(run_stampede(&server, "stampede", &config)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("fleet-bench: the stampede failed to run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fields = serde_json::json!({ "stampede": report });
    if let Err(e) = merge(&out, fields) {
        eprintln!("fleet-bench: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "stampede: {} queued rollouts, {} workers (pool {}, claim rate {}/s, batch {}, poll {} s): \
         {} promoted; claim statements {} ({:.1}/s, peak {:.1}/s, bound {:.1}/s); \
         claimed peak {:.1}/s (bound {:.1}/s); connections peak {} (bound {}), {} per worker \
         (bound {}); claims {}, reclaimed {}, double actors {}; all claimed in {:.1} s, \
         all finished in {:.1} s",
        report.rollouts,
        report.workers,
        report.pool_size,
        report.claim_rate,
        report.claim_batch,
        report.poll_s,
        report.promoted,
        report.claim_statements,
        report.claim_statements_per_s,
        report.peak_claim_statements_per_s,
        report.claim_statements_bound_per_s,
        report.peak_claimed_per_s,
        report.claimed_bound_per_s,
        report.peak_connections,
        report.connections_bound,
        report.peak_connections_per_worker,
        report.pool_size + 1,
        report.claims,
        report.reclaimed,
        report.double_actors,
        report.all_claimed_s,
        report.all_finished_s
    );
    println!("wrote {}", out.display());
    let failures = report.failures();
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "fleet-bench: stampede checks failed: {}",
        failures.join("; ")
    );
    ExitCode::FAILURE
}

fn notify(runtime: &tokio::runtime::Runtime, server: &PgServer, args: &Args) -> ExitCode {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| "target/bench/fleet.json".into());
    let report = match runtime.block_on(notify_latency(server, "notify", args.commands, &worker)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("fleet-bench: the notify run failed to run: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "notify: {} commands from another process, {} delivered: median {:.2} ms, p90 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms",
        report.commands,
        report.delivered,
        report.median_ms,
        report.p90_ms,
        report.p99_ms,
        report.max_ms
    );
    if let Err(e) = merge(&out, serde_json::json!({ "notify": report })) {
        eprintln!("fleet-bench: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", out.display());
    if report.delivered == report.commands
        && report.queued == report.commands
        && report.early_wakes == 0
    {
        ExitCode::SUCCESS
    } else {
        eprintln!("fleet-bench: not every command reached the watcher");
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    if let Some(code) = worker_main_from_env() {
        return code;
    }
    if let Some(code) = commander_main_from_env() {
        return code;
    }
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "fleet-bench: {e}\nusage: fleet-bench chaos|throughput|stampede|notify [--rollouts N] [--commands N] [--workers 1,2,4] [--out FILE]"
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if args.mode == "stampede" {
        return stampede(&runtime, &args);
    }
    let server = match PgServer::start() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fleet-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.mode == "notify" {
        return notify(&runtime, &server, &args);
    }
    if args.mode == "chaos" {
        let mut config = ChaosConfig::full();
        if let Some(n) = args.rollouts {
            config.rollouts = n;
        }
        let out = args.out.unwrap_or_else(|| "target/bench/fleet.json".into());
        let report = match runtime.block_on(run_chaos(&server, "chaos", &config, &worker)) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("fleet-bench: the chaos run failed to run: {e}");
                return ExitCode::FAILURE;
            }
        };
        let fields = serde_json::to_value(&report).expect("a report serializes");
        if let Err(e) = merge(&out, fields) {
            eprintln!("fleet-bench: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        println!(
            "chaos: {} rollouts, {} workers, {} kills, {} stops, {} drains: {} promoted, {} rolled back; \
             divergent {}, stale writes accepted {}, stale calls refused {}, double actors {}, stuck {}, \
             log gaps {}; max takeover {:.2} s (lease {:.1} s, poll {:.2} s); {:.1} s",
            report.rollouts,
            report.workers,
            report.kills,
            report.stops,
            report.drains,
            report.promoted,
            report.rolled_back,
            report.divergent,
            report.stale_writes_accepted,
            report.stale_calls_refused,
            report.double_actors,
            report.stuck,
            report.log_gaps,
            report.max_takeover_s,
            report.lease_ttl_s,
            report.poll_s,
            report.wall_s
        );
        println!("wrote {}", out.display());
        let failures = report.failures();
        if failures.is_empty() {
            return ExitCode::SUCCESS;
        }
        eprintln!("fleet-bench: chaos checks failed: {}", failures.join("; "));
        return ExitCode::FAILURE;
    }
    let rollouts = args.rollouts.unwrap_or(1000);
    let out = args
        .out
        .unwrap_or_else(|| "target/bench/fleet-throughput.jsonl".into());
    let _ = std::fs::remove_file(&out);
    println!(
        "{:<9} {:>7} {:>8} {:>8} {:>8} {:>10} {:>10} {:>11} {:>8}",
        "store",
        "workers",
        "rollouts",
        "promoted",
        "wall_s",
        "rollouts/s",
        "decisions",
        "round_trips",
        "rt/dec"
    );
    let mut rows = vec![runtime.block_on(memory_throughput(rollouts))];
    for (i, workers) in args.workers.iter().enumerate() {
        match runtime.block_on(fleet_throughput(
            &server,
            &format!("bench{i}"),
            *workers,
            rollouts,
            &worker,
        )) {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("fleet-bench: {workers} workers: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut ok = true;
    for row in &rows {
        println!(
            "{:<9} {:>7} {:>8} {:>8} {:>8.2} {:>10.1} {:>10} {:>11} {:>8.3}",
            row.store,
            row.workers,
            row.rollouts,
            row.promoted,
            row.wall_s,
            row.rollouts_per_s,
            row.decisions,
            row.round_trips,
            row.round_trips_per_decision
        );
        ok &= row.promoted == row.rollouts;
        let json = serde_json::to_string(row).expect("a row serializes");
        if let Err(e) = write(&out, &json, true) {
            eprintln!("fleet-bench: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    println!("wrote {}", out.display());
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("fleet-bench: not every rollout was promoted");
        ExitCode::FAILURE
    }
}
