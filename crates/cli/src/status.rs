//! `cutover status`: the rollouts in the store as a table, JSON or YAML; one rollout with its
//! latest decisions and the commands still waiting in its inbox; `--watch` to follow.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use cutover::state::{Final, Phase};
use cutover::{
    Clock as _, DecisionRecord, ListFilter, QueuedCommand, RolloutId, StateStore, Summary,
    Timestamp, TokioClock, Watch,
};
use serde::Serialize;

use crate::cli::{Format, StatusArgs};
use crate::exit::{Exit, Failure, store_error};
use crate::run::parse_id;

/// One rollout in detail.
#[derive(Debug, Serialize)]
struct Detail {
    summary: Summary,
    /// Commands sent but not applied yet.
    pending_commands: Vec<QueuedCommand>,
    /// The latest decisions, oldest first.
    records: Vec<DecisionRecord>,
}

/// Runs `status`.
pub(crate) async fn status(args: &StatusArgs, store: Arc<dyn StateStore>) -> Result<Exit, Failure> {
    match &args.id {
        None => list(args, store.as_ref()).await,
        Some(id) => one(args, store.as_ref(), &parse_id(id)?).await,
    }
}

async fn list(args: &StatusArgs, store: &dyn StateStore) -> Result<Exit, Failure> {
    let mut shown = None;
    loop {
        let summaries = all(store, args.active).await?;
        let text = match args.output {
            Format::Table => table(&summaries, TokioClock::new().now()),
            Format::Json => json(&summaries)?,
            Format::Yaml => yaml(&summaries)?,
        };
        if shown.as_ref() != Some(&text) {
            print(&text, args.watch);
            shown = Some(text);
        }
        if !args.watch {
            return Ok(Exit::Ok);
        }
        tokio::time::sleep(cutover::store::DEFAULT_POLL_INTERVAL).await;
    }
}

/// Every rollout in the store, a page at a time.
async fn all(store: &dyn StateStore, active: bool) -> Result<Vec<Summary>, Failure> {
    let mut out: Vec<Summary> = Vec::new();
    loop {
        let mut filter = ListFilter::default();
        if active {
            filter = filter.active();
        }
        if let Some(last) = out.last() {
            filter = filter.after(last.id.clone());
        }
        let page = store.list(&filter).await.map_err(|e| store_error(&e))?;
        let done = page.len() < filter.limit;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

async fn one(args: &StatusArgs, store: &dyn StateStore, id: &RolloutId) -> Result<Exit, Failure> {
    let mut after = 0;
    let mut first = true;
    loop {
        let detail = detail(store, id, args.records).await?;
        let finished = detail.summary.outcome.is_some();
        if first || !args.watch {
            let text = match args.output {
                Format::Table => describe(&detail, TokioClock::new().now()),
                Format::Json => json(&detail)?,
                Format::Yaml => yaml(&detail)?,
            };
            print(&text, false);
            first = false;
        } else {
            for record in detail.records.iter().filter(|r| r.seq > after) {
                println!("{}", record_line(record, args.output)?);
            }
        }
        after = detail.records.last().map_or(after, |r| r.seq.max(after));
        if !args.watch {
            return Ok(Exit::Ok);
        }
        if finished {
            return Ok(match &detail.summary.outcome {
                Some(Final::Outcome(
                    cutover::Outcome::Promoted | cutover::Outcome::Concluded { .. },
                ))
                | None => Exit::Ok,
                Some(_) => Exit::NotPromoted,
            });
        }
        wait_for_change(store, id).await;
    }
}

/// Waits until the store says the rollout may have changed.
pub(crate) async fn wait_for_change(store: &dyn StateStore, id: &RolloutId) {
    match store.watch(id) {
        Watch::Notified(mut changes) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), changes.changed()).await;
        }
        Watch::Poll(every) => tokio::time::sleep(every).await,
        _ => tokio::time::sleep(cutover::store::DEFAULT_POLL_INTERVAL).await,
    }
}

async fn detail(store: &dyn StateStore, id: &RolloutId, records: usize) -> Result<Detail, Failure> {
    let Some(stored) = store.load(id).await.map_err(|e| store_error(&e))? else {
        return Err(Failure::store(format!(
            "no rollout `{id}` in {}; `cutover status` lists them",
            store.name()
        )));
    };
    let lease = store.lease(id).await.map_err(|e| store_error(&e))?;
    let last = stored.state.last_seq;
    let from = last.saturating_sub(records as u64);
    let records = store
        .records(id, from, records)
        .await
        .map_err(|e| store_error(&e))?;
    let pending_commands = store
        .commands(id, stored.state.last_command)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(Detail {
        summary: Summary::of(&stored.state, stored.version, lease),
        pending_commands,
        records,
    })
}

fn print(text: &str, redraw: bool) {
    let mut out = std::io::stdout().lock();
    if redraw && std::io::stdout().is_terminal() {
        // Clear the screen and go home, so the table is redrawn in place.
        let _ = write!(out, "\x1b[2J\x1b[H");
    }
    let _ = write!(out, "{text}");
    let _ = out.flush();
}

pub(crate) fn json<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Failure::failed(format!("cannot write JSON: {e}")))
}

pub(crate) fn yaml<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_saphyr::to_string(value).map_err(|e| Failure::failed(format!("cannot write YAML: {e}")))
}

fn record_line(record: &DecisionRecord, format: Format) -> Result<String, Failure> {
    match format {
        Format::Table => Ok(format!(
            "{}  #{:<4} {}",
            record.at, record.seq, record.summary
        )),
        Format::Json => serde_json::to_string(record)
            .map_err(|e| Failure::failed(format!("cannot write JSON: {e}"))),
        Format::Yaml => yaml(&[record]),
    }
}

/// The candidate's share of traffic, like `v2 10%`.
fn traffic(s: &Summary) -> String {
    s.split.as_ref().map_or_else(
        || "-".to_owned(),
        |split| {
            let c = &s.revisions.candidate;
            format!("{c} {}", split.weight(c))
        },
    )
}

fn state(s: &Summary) -> String {
    match (&s.outcome, &s.paused) {
        (Some(Final::Outcome(outcome)), _) => outcome.to_string(),
        (Some(Final::Failed { error }), _) => format!("failed: {error}"),
        (None, Some(paused)) => paused.clone(),
        (None, None) => String::new(),
    }
}

fn step(s: &Summary) -> String {
    if s.phase == Phase::Progressing {
        let kind = s.step_kind.as_deref().unwrap_or("");
        format!("{} {kind} ({} steps)", s.step, s.steps)
    } else {
        "-".to_owned()
    }
}

fn owner(s: &Summary, now: Timestamp) -> String {
    match &s.lease {
        Some(lease) if lease.is_live_at(now) => lease.owner.clone(),
        _ => "-".to_owned(),
    }
}

/// How long ago, like `3m`.
fn age(at: Timestamp, now: Timestamp) -> String {
    let secs = now.saturating_since(at).as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The table of rollouts, columns padded to their widest cell.
fn table(summaries: &[Summary], now: Timestamp) -> String {
    if summaries.is_empty() {
        return "no rollouts\n".to_owned();
    }
    let header = [
        "ID", "STRATEGY", "PHASE", "STEP", "TRAFFIC", "OWNER", "UPDATED", "STATE",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 8]> = summaries
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                s.strategy.clone(),
                s.phase.to_string(),
                step(s),
                traffic(s),
                owner(s, now),
                age(s.updated_at, now),
                state(s),
            ]
        })
        .collect();
    columns(std::iter::once(header).chain(rows))
}

/// Lays rows out in columns two spaces apart; the last column is not padded.
fn columns<const N: usize>(rows: impl IntoIterator<Item = [String; N]>) -> String {
    let rows: Vec<[String; N]> = rows.into_iter().collect();
    let mut widths = [0; N];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One rollout for people.
fn describe(d: &Detail, now: Timestamp) -> String {
    let s = &d.summary;
    let mut out = String::new();
    let _ = writeln!(out, "rollout   {} ({})", s.id, s.strategy);
    let _ = writeln!(
        out,
        "revisions {} -> {}",
        s.revisions.stable, s.revisions.candidate
    );
    let _ = writeln!(out, "phase     {}", s.phase);
    if s.phase == Phase::Progressing {
        let _ = writeln!(out, "step      {}", step(s));
    }
    if let Some(split) = &s.split {
        let c = split.weight(&s.revisions.candidate).percent();
        let _ = writeln!(out, "traffic   {split}  {}", crate::progress::bar(c, 20));
    }
    let state = state(s);
    if !state.is_empty() {
        let _ = writeln!(out, "state     {state}");
    }
    let _ = writeln!(out, "owner     {}", owner(s, now));
    let _ = writeln!(
        out,
        "updated   {} ({} ago)",
        s.updated_at,
        age(s.updated_at, now)
    );
    if !d.pending_commands.is_empty() {
        let _ = writeln!(out, "\nwaiting in the inbox:");
        for q in &d.pending_commands {
            let r = &q.request;
            let _ = writeln!(
                out,
                "  #{} {} by {}{}",
                q.seq,
                r.command,
                r.by,
                if r.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.reason)
                }
            );
        }
    }
    if !d.records.is_empty() {
        let _ = writeln!(out, "\nlatest decisions:");
        for r in &d.records {
            let _ = writeln!(out, "  {}  #{:<4} {}", r.at, r.seq, r.summary);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let text = columns([
            ["ID".to_owned(), "PHASE".to_owned(), "X".to_owned()],
            [
                "checkout".to_owned(),
                "done".to_owned(),
                "promoted".to_owned(),
            ],
        ]);
        assert_eq!(text, "ID        PHASE  X\ncheckout  done   promoted\n");
    }

    #[test]
    fn ages_are_short() {
        let t = Timestamp::from_unix_millis(0);
        let later = |s: u64| t + Duration::from_secs(s);
        assert_eq!(age(t, later(5)), "5s");
        assert_eq!(age(t, later(125)), "2m");
        assert_eq!(age(t, later(7200)), "2h");
        assert_eq!(age(t, later(200_000)), "2d");
    }
}
