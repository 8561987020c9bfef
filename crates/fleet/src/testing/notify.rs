//! How long a command takes to reach a watcher in another OS process through LISTEN/NOTIFY.
//!
//! This process saves a rollout and watches its inbox on one store. A second process (the
//! calling binary re-executed as a *commander*, with [`COMMANDER_ENV`] set) connects a store
//! of its own and queues a command each time it reads a line on its stdin. For each command
//! this process writes the line, then waits for its watcher to wake: the time between is what
//! an operator's command takes from being issued to reaching the rollout's worker (the pipe,
//! the commander's `INSERT ... pg_notify` round trip, the notification's delivery). The
//! watcher has no poll on this path: only the notification can wake it.

use std::process::ExitCode;
use std::time::Duration;

use cutover_core::{
    Canary, CanaryStep, Revisions, RolloutHandle, RolloutId, RolloutState, StateStore, Timestamp,
    Watch,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::time::Instant;

use super::PgServer;
use super::chaos::Spawner;
use crate::{DatabaseUrl, PgStateStore};

/// The environment variable that turns a re-executed binary into a commander: it holds its
/// arguments as JSON.
pub const COMMANDER_ENV: &str = "CUTOVER_FLEET_COMMANDER";

/// The line a commander prints once its store is connected.
const READY: &str = "cutover-fleet-commander-ready";

#[derive(Debug, Serialize, Deserialize)]
struct CommanderArgs {
    url: String,
    rollout: String,
}

/// What [`notify_latency`] measured: from issuing a command in one process to its watcher
/// waking in another.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifyReport {
    /// Commands sent.
    pub commands: usize,
    /// Commands whose notification woke the watcher within 5 s.
    pub delivered: usize,
    /// Commands found in the inbox afterwards.
    pub queued: usize,
    /// Wakes of the watcher before the command was in the inbox (none if every wake was that
    /// command's notification).
    pub early_wakes: usize,
    /// Median latency, milliseconds.
    pub median_ms: f64,
    /// 90th percentile, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// The slowest, milliseconds.
    pub max_ms: f64,
}

/// Runs a commander if [`COMMANDER_ENV`] is set: returns its exit code, or `None` when the
/// binary is not running as one. It queues a pause on its rollout for every line read on
/// stdin, and exits at the end of stdin.
pub fn commander_main_from_env() -> Option<ExitCode> {
    let text = std::env::var(COMMANDER_ENV).ok()?;
    let args: CommanderArgs = match serde_json::from_str(&text) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{COMMANDER_ENV} does not parse: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    Some(runtime.block_on(async move {
        match commander(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("commander: {e}");
                ExitCode::FAILURE
            }
        }
    }))
}

async fn commander(args: CommanderArgs) -> Result<(), String> {
    let url = DatabaseUrl::parse(&args.url).map_err(|e| crate::chain(&e))?;
    let store = PgStateStore::connect(&url)
        .await
        .map_err(|e| crate::chain(&e))?;
    let id = RolloutId::new(args.rollout).map_err(|e| e.to_string())?;
    let handle = RolloutHandle::new(store, id).by("commander");
    println!("\n{READY}");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        handle
            .pause(format!("command {line}"))
            .await
            .map_err(|e| crate::chain(&e))?;
    }
    Ok(())
}

/// Sends `commands` commands from a commander process (started with `spawn`) to a watcher in
/// this one, on a fresh database `db` of `server`, one at a time.
pub async fn notify_latency(
    server: &PgServer,
    db: &str,
    commands: usize,
    spawn: &Spawner,
) -> Result<NotifyReport, String> {
    let fail = |e: &dyn std::error::Error| crate::chain(e);
    let url = server.database(db).await.map_err(|e| e.to_string())?;
    let store = PgStateStore::connect(&url).await.map_err(|e| fail(&e))?;
    let id = RolloutId::new("notified").map_err(|e| e.to_string())?;
    let setup = cutover_core::planner::Setup::new(
        Canary::new([CanaryStep::set_weight(10).map_err(|e| e.to_string())?]).into(),
        Revisions::new("v1", "v2").map_err(|e| e.to_string())?,
    );
    let state = RolloutState::new(id.clone(), setup, Timestamp::from_unix_millis(0));
    store.save(&id, &state, None).await.map_err(|e| fail(&e))?;
    let Watch::Notified(mut rx) = store.watch(&id) else {
        return Err("the PostgreSQL store does not push changes".into());
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.is_listening() {
        if Instant::now() > deadline {
            return Err("LISTEN never came up".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let args = CommanderArgs {
        url: server.url(db),
        rollout: id.as_str().to_owned(),
    };
    let mut command = spawn();
    command
        .env(
            COMMANDER_ENV,
            serde_json::to_string(&args).unwrap_or_default(),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the commander: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if line == READY {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        return Err("the commander did not connect".into());
    }
    let mut report = NotifyReport {
        commands,
        ..NotifyReport::default()
    };
    let mut latencies = Vec::with_capacity(commands);
    for i in 0..commands {
        rx.borrow_and_update();
        let sent = Instant::now();
        stdin
            .write_all(format!("{i}\n").as_bytes())
            .await
            .map_err(|e| format!("writing to the commander: {e}"))?;
        stdin.flush().await.map_err(|e| e.to_string())?;
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await {
            latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            // The wake was this command's: it is in the inbox (the notification is sent when
            // the insert commits).
            let after = u64::try_from(i).unwrap_or(u64::MAX);
            if store
                .commands(&id, after)
                .await
                .map_err(|e| fail(&e))?
                .is_empty()
            {
                report.early_wakes += 1;
            }
        }
    }
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .map_err(|_| "the commander did not exit".to_owned())?
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the commander failed: {status}"));
    }
    report.delivered = latencies.len();
    report.queued = store.commands(&id, 0).await.map_err(|e| fail(&e))?.len();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    report.median_ms = at(0.5);
    report.p90_ms = at(0.9);
    report.p99_ms = at(0.99);
    report.max_ms = at(1.0);
    Ok(report)
}
