//! The live view of a running rollout: on a terminal, a status line kept at the bottom
//! (candidate weight, step, analysis, elapsed) with each decision printed above it; otherwise
//! one plain line per decision and per traffic change.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use cutover::state::Phase;
use cutover::{
    DecisionRecord, Entry, RevisionId, Rollout, RolloutEvent, Tally, Timestamp, TrafficSplit,
};
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

/// What the status line shows, updated from the rollout's events.
#[derive(Debug, Clone)]
struct View {
    candidate: RevisionId,
    steps: usize,
    phase: Phase,
    step: Option<(usize, String)>,
    split: Option<TrafficSplit>,
    analysis: Option<Tally>,
}

impl View {
    fn update(&mut self, record: &DecisionRecord) {
        self.phase = record.phase;
        self.step = record.step.as_ref().map(|s| (s.index, s.kind.clone()));
        if record.inputs.split.is_some() {
            self.split.clone_from(&record.inputs.split);
        }
        self.analysis = record.inputs.analysis.or(record.inputs.background);
    }

    fn line(&self) -> String {
        let percent = self
            .split
            .as_ref()
            .map_or(0.0, |s| s.weight(&self.candidate).percent());
        let mut text = format!("{} {} {percent:>5.1}%", self.candidate, bar(percent, 20));
        match (&self.phase, &self.step) {
            (Phase::Progressing, Some((index, kind))) => {
                let _ = write!(text, " | step {index} {kind} ({} steps)", self.steps);
            }
            (phase, _) => {
                let _ = write!(text, " | {phase}");
            }
        }
        if let Some(t) = &self.analysis {
            let _ = write!(
                text,
                " | analysis {} passed, {} failed, {} inconclusive",
                t.passed, t.failed, t.inconclusive
            );
        }
        text
    }
}

/// A bar of `width` cells for `percent`.
pub(crate) fn bar(percent: f64, width: usize) -> String {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let filled = (((percent / 100.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// `+mm:ss` since `start`.
pub(crate) fn clock(start: Timestamp, at: Timestamp) -> String {
    let secs = at.saturating_since(start).as_secs();
    format!("+{:02}:{:02}", secs / 60, secs % 60)
}

/// Whether a record is worth a line: every one but the quiet observations of replicas.
fn shown(record: &DecisionRecord) -> bool {
    !matches!(&record.entry, Entry::Decision { decision, .. }
        if matches!(decision, cutover::planner::Decision::Apply(cutover::planner::Action::ObserveWorkload { .. })))
}

/// Shows the rollout's progress until it finishes; await the handle after `run`.
pub(crate) fn follow(rollout: &Rollout, start: Timestamp, plain: bool) -> JoinHandle<()> {
    let mut events = rollout.subscribe();
    let mut view = View {
        candidate: rollout.setup().revisions.candidate.clone(),
        steps: rollout.setup().step_kinds().len(),
        phase: Phase::PreFlight,
        step: None,
        split: None,
        analysis: None,
    };
    let live = !plain && std::io::stderr().is_terminal();
    tokio::spawn(async move {
        let bar = live.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} | {elapsed_precise}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let say = |line: String| {
            if let Some(bar) = &bar {
                bar.println(line);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        };
        while let Some(event) = events.next().await {
            match &event {
                RolloutEvent::Record(record) => {
                    view.update(record);
                    if shown(record) {
                        say(format!("[{}] {}", clock(start, record.at), record.summary));
                    }
                }
                RolloutEvent::SplitChanged { to, .. } => {
                    view.split = Some(to.clone());
                    if bar.is_none() {
                        say(format!("         traffic: {to}"));
                    }
                }
                RolloutEvent::Retrying {
                    op,
                    provider,
                    attempt,
                    error,
                    ..
                } => say(format!(
                    "         retrying {op} on {provider} (attempt {attempt}): {error}"
                )),
                RolloutEvent::Lagged { missed } => {
                    say(format!(
                        "         ({missed} events missed; the log has them all)"
                    ));
                }
                _ => {}
            }
            if let Some(bar) = &bar {
                bar.set_message(view.line());
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_by_percent() {
        assert_eq!(bar(0.0, 4), "[....]");
        assert_eq!(bar(50.0, 4), "[##..]");
        assert_eq!(bar(100.0, 4), "[####]");
        assert_eq!(bar(150.0, 4), "[####]");
    }
}
