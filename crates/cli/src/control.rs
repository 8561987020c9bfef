//! Commands to a rollout through its store's inbox: pause, resume, promote, abort, approve,
//! reject, and `rollback` (abort, then wait until all traffic is on stable).

use std::sync::Arc;
use std::time::Duration;

use cutover::state::Final;
use cutover::{
    Clock as _, Command, CommandRequest, Entry, Outcome, QueuedCommand, RolloutId, StateStore,
    TokioClock,
};

use crate::cli::{CommandArgs, Delivery, GateArgs, RollbackArgs};
use crate::exit::{Exit, Failure, store_error};
use crate::run::parse_id;
use crate::status::wait_for_change;

/// Sends `command` with the common arguments; with `--wait`, waits for the engine to apply
/// it and says what it did.
pub(crate) async fn send(
    store: Arc<dyn StateStore>,
    command: Command,
    args: &CommandArgs,
    by: &str,
) -> Result<Exit, Failure> {
    let request = request(CommandRequest::new(command, by), &args.delivery);
    deliver(store, &args.id, request, args.delivery.wait).await
}

/// `approve` and `reject`.
pub(crate) async fn gate(
    store: Arc<dyn StateStore>,
    command: Command,
    args: &GateArgs,
    by: &str,
) -> Result<Exit, Failure> {
    let request = request(
        CommandRequest::new(command, by).subject(args.gate.clone()),
        &args.delivery,
    );
    deliver(store, &args.id, request, args.delivery.wait).await
}

/// `request` with the reason and key of `delivery`.
fn request(request: CommandRequest, delivery: &Delivery) -> CommandRequest {
    let request = request.reason(delivery.reason.clone());
    match &delivery.key {
        Some(key) => request.key(key.clone()),
        None => request,
    }
}

async fn deliver(
    store: Arc<dyn StateStore>,
    id: &str,
    request: CommandRequest,
    wait: Option<Duration>,
) -> Result<Exit, Failure> {
    let id = parse_id(id)?;
    let queued = store
        .send(&id, &request, TokioClock::new().now())
        .await
        .map_err(|e| store_error(&e))?;
    println!(
        "queued {} #{} for rollout `{id}` by {}",
        queued.request.command, queued.seq, queued.request.by
    );
    let Some(wait) = wait else {
        return Ok(Exit::Ok);
    };
    match tokio::time::timeout(wait, applied(store.as_ref(), &id, &queued)).await {
        Ok(result) => {
            let (accepted, summary) = result?;
            println!("{summary}");
            Ok(if accepted { Exit::Ok } else { Exit::Store })
        }
        Err(_) => Err(Failure::store(format!(
            "no engine applied command #{} within {}: none may be running rollout `{id}`; \
             the command waits in its inbox for the next one",
            queued.seq,
            humantime::format_duration(wait)
        ))),
    }
}

/// Waits for the record of `queued`: whether it was accepted, and its line.
async fn applied(
    store: &dyn StateStore,
    id: &RolloutId,
    queued: &QueuedCommand,
) -> Result<(bool, String), Failure> {
    let mut after = 0;
    loop {
        let records = store
            .records(id, after, 1000)
            .await
            .map_err(|e| store_error(&e))?;
        for record in &records {
            if let Entry::Command { command, effect } = &record.entry
                && command.seq == queued.seq
            {
                return Ok((effect.accepted, record.summary.clone()));
            }
        }
        if let Some(last) = records.last() {
            after = last.seq;
        }
        if records.len() < 1000 {
            wait_for_change(store, id).await;
        }
    }
}

/// `rollback`: abort, then wait until the rollout has finished with all traffic on stable.
/// With `--file` and no live engine on the rollout, resume it here to roll it back.
pub(crate) async fn rollback(
    store: Arc<dyn StateStore>,
    args: &RollbackArgs,
    by: &str,
) -> Result<Exit, Failure> {
    let id = parse_id(&args.id)?;
    let clock = TokioClock::new();
    let started = clock.now();
    let Some(stored) = store.load(&id).await.map_err(|e| store_error(&e))? else {
        return Err(Failure::store(format!(
            "no rollout `{id}` in {}",
            store.name()
        )));
    };
    if let Some(end) = &stored.state.outcome {
        return finished(&id, end);
    }
    let request = CommandRequest::new(Command::Abort, by).reason(args.reason.clone());
    let queued = store
        .send(&id, &request, clock.now())
        .await
        .map_err(|e| store_error(&e))?;
    println!("queued abort #{} for rollout `{id}` by {by}", queued.seq);
    let lease = store.lease(&id).await.map_err(|e| store_error(&e))?;
    let now = clock.now();
    let live_until = lease.as_ref().filter(|l| l.is_live_at(now)).map(|l| {
        l.expires_at
            .map_or(args.timeout, |at| at.saturating_since(now))
    });
    if let Some(file) = &args.file {
        // The owner has until its lease runs out to carry the abort out; an owner that died
        // stops renewing, and then this process rolls the rollout back itself.
        if let Some(wait) = live_until {
            let owner = lease.map(|l| l.owner).unwrap_or_default();
            println!("`{owner}` runs rollout `{id}`: waiting for it to roll back");
            let grace = wait + Duration::from_secs(1);
            if let Ok(end) = tokio::time::timeout(grace, until_finished(store.as_ref(), &id)).await
            {
                return report(&id, &end?, clock.now().saturating_since(started));
            }
            println!("`{owner}` did not roll back and its lease ran out");
        }
        println!("no engine runs rollout `{id}`: rolling it back here");
        let file_spec = crate::runfile::read(file)?;
        let run = crate::run::drive(
            &file_spec,
            id.as_str(),
            store.clone(),
            by,
            None,
            true,
            false,
        );
        match tokio::time::timeout(args.timeout, run).await {
            Ok(result) => {
                result?;
            }
            Err(_) => return Err(timed_out(&id, args.timeout)),
        }
    } else if live_until.is_none() {
        println!(
            "no engine runs rollout `{id}` now: the abort waits in its inbox for the next one \
             (or give --file RUNFILE to roll it back from here)"
        );
    }
    let outcome = tokio::time::timeout(args.timeout, until_finished(store.as_ref(), &id))
        .await
        .map_err(|_| timed_out(&id, args.timeout))??;
    report(&id, &outcome, clock.now().saturating_since(started))
}

fn report(id: &RolloutId, end: &Final, took: Duration) -> Result<Exit, Failure> {
    let exit = finished(id, end)?;
    println!("took {}", humantime::format_duration(round(took)));
    Ok(exit)
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn timed_out(id: &RolloutId, timeout: Duration) -> Failure {
    Failure::store(format!(
        "rollout `{id}` did not finish rolling back within {}; `cutover status {id}` shows where it is",
        humantime::format_duration(timeout)
    ))
}

async fn until_finished(store: &dyn StateStore, id: &RolloutId) -> Result<Final, Failure> {
    loop {
        let stored = store.load(id).await.map_err(|e| store_error(&e))?;
        if let Some(end) = stored.and_then(|s| s.state.outcome) {
            return Ok(end);
        }
        wait_for_change(store, id).await;
    }
}

/// What to say about a finished rollout, and the exit code: back on stable is success.
fn finished(id: &RolloutId, end: &Final) -> Result<Exit, Failure> {
    match end {
        Final::Outcome(
            outcome @ (Outcome::Aborted { .. } | Outcome::RolledBack(_) | Outcome::Refused { .. }),
        ) => {
            println!("rollout `{id}` is back on stable: {outcome}");
            Ok(Exit::Ok)
        }
        Final::Outcome(outcome @ Outcome::Promoted) => Err(Failure::store(format!(
            "rollout `{id}` has {outcome}: the candidate is the stable revision now; to go back, \
             run a new rollout to the previous revision"
        ))),
        Final::Outcome(outcome) => Err(Failure::store(format!(
            "rollout `{id}` has finished ({outcome})"
        ))),
        Final::Failed { error } => Err(Failure::failed(format!(
            "rollout `{id}` failed: {error}; run it again with its run file to carry the rollback out"
        ))),
    }
}
