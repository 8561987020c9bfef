//! Worker processes: what a test or benchmark binary runs when it re-executes itself as a
//! worker, and how the harness starts, signals and collects them.

use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use super::script::{MemoryRouters, RecordingRouter, SCRIPTED, ScriptedVerdicts};
use crate::{DatabaseUrl, PgOptions, PgStateStore, Worker, WorkerReport};

/// The environment variable that turns a re-executed binary into a worker: it holds the
/// worker's [`WorkerArgs`] as JSON.
pub const WORKER_ENV: &str = "CUTOVER_FLEET_WORKER";

/// The marker before the line a worker process prints when it stops.
const REPORT_MARKER: &str = "cutover-fleet-worker-report ";

/// How a worker process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerArgs {
    /// The database's connection string.
    pub url: String,
    /// The worker's id.
    pub id: String,
    /// Lease time-to-live, ms.
    pub lease_ttl_ms: u64,
    /// Poll interval, ms.
    pub poll_ms: u64,
    /// Rollouts at once.
    pub max_rollouts: usize,
    /// Rollouts per claim.
    pub claim_batch: usize,
    /// Claims per second.
    pub claim_rate: f64,
    /// `true`: the router records every call in the database ([`RecordingRouter`]);
    /// `false`: in memory (the benchmark's fake providers).
    pub record_calls: bool,
}

/// What a worker process reports when it stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessReport {
    /// The worker's report.
    pub claimed: u64,
    /// Rollouts it ran to their end.
    pub finished: u64,
    /// Rollouts whose lease it lost.
    pub lost: u64,
    /// Rollouts it handed back when draining.
    pub handed_back: u64,
    /// Database round trips of its store.
    pub round_trips: u64,
}

impl ProcessReport {
    fn of(report: &WorkerReport, round_trips: u64) -> Self {
        ProcessReport {
            claimed: report.claimed,
            finished: report.finished,
            lost: report.lost,
            handed_back: report.handed_back,
            round_trips,
        }
    }
}

/// Runs a worker process if [`WORKER_ENV`] is set: returns its exit code, or `None` when the
/// binary is not running as a worker. The worker runs until SIGTERM (drain) or SIGKILL, then
/// prints its report on a line of its own.
pub fn worker_main_from_env() -> Option<ExitCode> {
    let text = std::env::var(WORKER_ENV).ok()?;
    let args: WorkerArgs = match serde_json::from_str(&text) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{WORKER_ENV} does not parse: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    Some(runtime.block_on(run_worker(args)))
}

async fn run_worker(args: WorkerArgs) -> ExitCode {
    let url = match DatabaseUrl::parse(&args.url) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("worker {}: {}", args.id, crate::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let store = match PgStateStore::connect_with(&url, PgOptions::default().pool_size(8)).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("worker {}: {}", args.id, crate::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let builder = Worker::builder(store.clone())
        .id(args.id.clone())
        .analysis(SCRIPTED, ScriptedVerdicts::factory)
        .lease_ttl(Duration::from_millis(args.lease_ttl_ms))
        .poll_interval(Duration::from_millis(args.poll_ms))
        .max_rollouts(args.max_rollouts)
        .claim_batch(args.claim_batch)
        .claim_rate(args.claim_rate)
        .retry_backoff(Duration::from_millis(200), Duration::from_secs(2));
    let builder = if args.record_calls {
        builder.router(
            SCRIPTED,
            RecordingRouter::factory(store.clone(), args.id.clone()),
        )
    } else {
        builder.router(SCRIPTED, MemoryRouters::default().factory())
    };
    let worker = match builder.build() {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("worker {}: {}", args.id, crate::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    match worker.run_until_signal().await {
        Ok(report) => {
            let line = serde_json::to_string(&ProcessReport::of(&report, store.round_trips()))
                .unwrap_or_default();
            println!("\n{REPORT_MARKER}{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("worker {}: {}", args.id, crate::chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// A worker process the harness started.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) id: String,
    child: tokio::process::Child,
}

impl Proc {
    /// Starts `command` as worker `args.id`.
    pub(crate) fn start(
        mut command: std::process::Command,
        args: &WorkerArgs,
    ) -> std::io::Result<Self> {
        command
            .env(WORKER_ENV, serde_json::to_string(args).unwrap_or_default())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Proc {
            id: args.id.clone(),
            child,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub(crate) fn signal(&self, name: &str) -> std::io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| std::io::Error::other("the process has exited"))?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{name} {pid} failed")))
        }
    }

    /// SIGKILL, and waits for the process to go.
    pub(crate) async fn kill(mut self) -> std::io::Result<()> {
        self.child.kill().await
    }

    /// SIGTERM, then waits up to `within` for the worker to drain and report (SIGKILL after).
    pub(crate) async fn stop(mut self, within: Duration) -> Option<ProcessReport> {
        let _ = self.signal("CONT");
        if self.signal("TERM").is_err() {
            return None;
        }
        let mut stdout = self.child.stdout.take()?;
        let read = async {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out).await;
            let _ = self.child.wait().await;
            out
        };
        if let Ok(out) = tokio::time::timeout(within, read).await {
            return out
                .lines()
                .find_map(|l| l.strip_prefix(REPORT_MARKER))
                .and_then(|l| serde_json::from_str(l).ok());
        }
        let _ = self.child.kill().await;
        None
    }
}
