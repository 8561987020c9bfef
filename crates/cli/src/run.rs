//! `cutover run`: a rollout whose plan and providers come from a run file, driven by this
//! process, with its state in the store so that others can see and steer it.

use std::path::Path;
use std::sync::Arc;

use cutover::{Clock as _, Outcome, Rollout, RolloutError, RolloutHandle, StateStore, TokioClock};

use crate::cli::RunArgs;
use crate::exit::chain;
use crate::exit::{Exit, Failure};
use crate::progress;
use crate::runfile::{self, RunFile};

/// Runs the rollout of `args.file` to its end.
pub(crate) async fn run(
    args: &RunArgs,
    store: Arc<dyn StateStore>,
    by: &str,
) -> Result<Exit, Failure> {
    let file = runfile::read(&args.file)?;
    let id = file.id(args.id.as_deref(), &args.file);
    let outcome = drive(
        &file,
        &id,
        store.clone(),
        by,
        args.take_over.as_deref(),
        args.plain,
        args.keep_serving,
    )
    .await;
    if let Some(out) = &args.out {
        write_records(&RolloutHandle::new(store, parse_id(&id)?), out).await;
    }
    Ok(report(outcome?))
}

/// Builds the rollout of `file` on `store` and runs it, showing its progress; `None` when
/// interrupted.
pub(crate) async fn drive(
    file: &RunFile,
    id: &str,
    store: Arc<dyn StateStore>,
    by: &str,
    take_over: Option<&str>,
    plain: bool,
    keep_serving: bool,
) -> Result<Option<Outcome>, Failure> {
    let revisions = file.revisions()?;
    let clock = TokioClock::new();
    let start = clock.now();
    let mut builder = Rollout::builder(id, file.plan.clone())
        .revisions(revisions.0.clone(), revisions.1.clone())
        .state_store(store)
        .clock(clock)
        .engine_id(engine_id(by));
    if let Some(reason) = take_over {
        builder = builder.take_over(by, reason);
    }
    if let Some(ttl) = file.rollout.lease_ttl {
        builder = builder.lease_ttl(ttl);
    }
    let (builder, running) = crate::providers::attach(&file.providers, &revisions, builder).await?;
    let rollout = builder
        .build()
        .map_err(|e| Failure::invalid(format!("cannot build rollout `{id}`: {}", chain(&e))))?;
    let printer = progress::follow(&rollout, start, plain);
    let result = tokio::select! {
        result = rollout.run() => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    let _ = printer.await;
    let outcome = match result {
        None => {
            eprintln!(
                "interrupted: rollout `{id}` stays where it is, in the store. Run the same \
                 command to resume it, or `cutover rollback {id} --file FILE --reason WHY`."
            );
            None
        }
        Some(Ok(outcome)) => Some(outcome),
        Some(Err(e)) => return Err(rollout_error(id, &e)),
    };
    #[cfg(feature = "local")]
    if let Some(proxy) = running.proxy {
        if keep_serving && outcome.is_some() {
            println!(
                "the local proxy keeps serving on {} with {}; Ctrl-C stops it",
                proxy.addr(),
                proxy.router().split()
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        proxy.shutdown().await;
    }
    #[cfg(not(feature = "local"))]
    let _ = (running, keep_serving);
    Ok(outcome)
}

/// The failure for a rollout error, with its exit code: 4 when another engine owns the
/// rollout or the store failed, 3 when the stored rollout has another setup, 5 otherwise.
pub(crate) fn rollout_error(id: &str, e: &RolloutError) -> Failure {
    let message = format!("rollout `{id}`: {}", chain(e));
    match e {
        RolloutError::Owned { .. } => Failure::store(format!(
            "{message}; wait for it, or take it over with --take-over REASON"
        )),
        RolloutError::Store(_) => Failure::store(message),
        RolloutError::SetupMismatch { .. } => Failure::invalid(message),
        _ => Failure::failed(message),
    }
}

/// Prints how the rollout ended; the exit code: 0 promoted or concluded, 1 otherwise.
pub(crate) fn report(outcome: Option<Outcome>) -> Exit {
    match outcome {
        None => Exit::Failed,
        Some(outcome) => {
            println!("outcome: {outcome}");
            match outcome {
                Outcome::Promoted | Outcome::Concluded { .. } => Exit::Ok,
                _ => Exit::NotPromoted,
            }
        }
    }
}

/// The engine's name in records: `cutover-cli/USER@HOST/PID`.
pub(crate) fn engine_id(by: &str) -> String {
    let host = whoami::hostname().unwrap_or_else(|_| "localhost".to_owned());
    format!("cutover-cli/{by}@{host}/{}", std::process::id())
}

/// A rollout id, checked.
pub(crate) fn parse_id(id: &str) -> Result<cutover::RolloutId, Failure> {
    id.parse()
        .map_err(|e| Failure::invalid(format!("invalid rollout id `{id}`: {e}")))
}

/// Writes the rollout's decision log to `out` as pretty JSON.
pub(crate) async fn write_records(handle: &RolloutHandle, out: &Path) {
    let records = match handle.records().await {
        Ok(records) => records,
        Err(e) => {
            eprintln!("could not read the decision log: {}", chain(&e));
            return;
        }
    };
    let written = serde_json::to_string_pretty(&records)
        .map_err(|e| e.to_string())
        .and_then(|json| std::fs::write(out, json + "\n").map_err(|e| e.to_string()));
    match written {
        Ok(()) => println!(
            "decision log ({} records): {}",
            records.len(),
            out.display()
        ),
        Err(e) => eprintln!("could not write {}: {e}", out.display()),
    }
}
