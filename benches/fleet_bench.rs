//! The fleet benchmark and chaos run (`scripts/bench-fleet`), on a PostgreSQL server it starts
//! from Debian's packages (`scripts/test-deps`), with worker processes that are this binary
//! re-executed.
//!
//! ```text
//! fleet-bench chaos [--rollouts N] [--out target/bench/fleet.json]
//! fleet-bench throughput [--rollouts N] [--workers 1,2,4] [--out target/bench/fleet-throughput.jsonl]
//! ```
//!
//! `chaos`: three workers run N scripted rollouts (default 1,000) while a random worker is
//! killed, stopped past its lease or drained every few seconds; writes the report as JSON and
//! fails if any check failed. `throughput`: N rollouts (default 1,000) of the `scale`
//! benchmark's ten-step canary through 1, 2 and 4 worker processes on one PostgreSQL, next to
//! the same rollouts in one process on a memory store; prints a table and appends one JSON
//! object per row.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use cutover_fleet::testing::{
    ChaosConfig, PgServer, fleet_throughput, memory_throughput, run_chaos, worker_main_from_env,
};

struct Args {
    mode: String,
    rollouts: Option<usize>,
    workers: Vec<usize>,
    out: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("a mode: chaos or throughput")?;
    if mode != "chaos" && mode != "throughput" {
        return Err(format!("unknown mode {mode}"));
    }
    let mut args = Args {
        mode,
        rollouts: None,
        workers: vec![1, 2, 4],
        out: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rollouts" => {
                args.rollouts = Some(value.parse().map_err(|e| format!("--rollouts: {e}"))?);
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

fn main() -> ExitCode {
    if let Some(code) = worker_main_from_env() {
        return code;
    }
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "fleet-bench: {e}\nusage: fleet-bench chaos|throughput [--rollouts N] [--workers 1,2,4] [--out FILE]"
            );
            return ExitCode::FAILURE;
        }
    };
    let server = match PgServer::start() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fleet-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
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
        let json = serde_json::to_string_pretty(&report).expect("a report serializes");
        if let Err(e) = write(&out, &json, false) {
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
