//! What the charts and tables of a report show, read from a rollout's state and decision log.
//!
//! Everything here is plain data (times in seconds since the rollout started), so it is tested
//! without drawing anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cutover_core::analysis::AnalysisResult;
use cutover_core::planner::{Action, ActionResult, Decision, Slot};
use cutover_core::state::{Final, Outcome};
use cutover_core::{
    AnalysisTemplate, DecisionRecord, Entry, Measurement, RolloutState, Timestamp, TrafficSplit,
    Verdict,
};

/// Seconds from `start` to `at`.
pub(crate) fn seconds(start: Timestamp, at: Timestamp) -> f64 {
    at.saturating_since(start).as_secs_f64()
}

/// `+mm:ss` from `start` to `at` (`+h:mm:ss` past an hour).
pub(crate) fn clock(start: Timestamp, at: Timestamp) -> String {
    let secs = at.saturating_since(start).as_secs();
    if secs >= 3600 {
        format!("+{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("+{:02}:{:02}", secs / 60, secs % 60)
    }
}

/// How a measurement came out: a verdict, or an error (could not measure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Pass,
    Fail,
    Inconclusive,
    Error,
}

impl Mark {
    pub(crate) fn of(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Pass => Mark::Pass,
            Verdict::Fail => Mark::Fail,
            Verdict::Inconclusive => Mark::Inconclusive,
        }
    }

    fn of_measurement(m: Measurement) -> Self {
        match m {
            Measurement::Pass => Mark::Pass,
            Measurement::Fail => Mark::Fail,
            Measurement::Inconclusive => Mark::Inconclusive,
            Measurement::Error => Mark::Error,
        }
    }

    /// `pass`, `fail`, `inconclusive` or `error`: a word and a CSS class.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mark::Pass => "pass",
            Mark::Fail => "fail",
            Mark::Inconclusive => "inconclusive",
            Mark::Error => "error",
        }
    }
}

/// The split on the routers from time `t` on: weight in percent per revision, in the order of
/// [`Traffic::revisions`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrafficPoint {
    pub(crate) t: f64,
    pub(crate) weights: Vec<f64>,
}

/// Traffic weight per revision over time, a step function.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Traffic {
    /// Stable first, then the candidate (and any other revision a split named).
    pub(crate) revisions: Vec<String>,
    /// Where the weights change, in time order; the first is at the start.
    pub(crate) points: Vec<TrafficPoint>,
    /// The end of the chart: the last record.
    pub(crate) end: f64,
}

/// What a marker on the traffic chart stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkerKind {
    Command,
    Pause,
    Promote,
    Rollback,
    Finish,
    Engine,
}

impl MarkerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MarkerKind::Command => "command",
            MarkerKind::Pause => "pause",
            MarkerKind::Promote => "promote",
            MarkerKind::Rollback => "rollback",
            MarkerKind::Finish => "finish",
            MarkerKind::Engine => "engine",
        }
    }
}

/// A numbered mark on the traffic chart, explained in the table under it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    pub(crate) number: usize,
    pub(crate) t: f64,
    pub(crate) clock: String,
    pub(crate) kind: MarkerKind,
    pub(crate) text: String,
}

/// A value of one metric at one measurement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricPoint {
    pub(crate) t: f64,
    pub(crate) value: Option<f64>,
    pub(crate) mark: Mark,
}

/// One metric of an analysis over time, with its bounds from the plan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricSeries {
    pub(crate) name: String,
    /// Whose values these are (`candidate v2`), when the plan says.
    pub(crate) revision: Option<String>,
    /// 0 for the stable, 1 for the candidate, when the plan says (the revision's colour).
    pub(crate) role: Option<usize>,
    /// What is measured (source, query, aggregate and window), when the plan says: metrics
    /// that measure the same thing on the stable and the candidate share one chart.
    pub(crate) measure: Option<String>,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    pub(crate) points: Vec<MetricPoint>,
}

/// One measurement of a sequential test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SequentialPoint {
    pub(crate) t: f64,
    pub(crate) e_value: f64,
    pub(crate) p_value: Option<f64>,
    pub(crate) estimate: Option<f64>,
    /// `None`: unbounded below.
    pub(crate) lower: Option<f64>,
    /// `None`: unbounded above.
    pub(crate) upper: Option<f64>,
    pub(crate) mark: Mark,
}

/// A sequential test over time: the e-value against its rejection line `1 / alpha`, and the
/// confidence sequence against the tolerance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SequentialSeries {
    pub(crate) alpha: f64,
    pub(crate) tolerance: Option<f64>,
    /// What the estimate is (`rate ratio`), when the plan says.
    pub(crate) effect: Option<String>,
    pub(crate) points: Vec<SequentialPoint>,
}

impl SequentialSeries {
    /// The e-value at which the test rejects.
    pub(crate) fn rejection(&self) -> f64 {
        1.0 / self.alpha
    }
}

/// One cell of the judge's table: a metric's classification at one measurement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JudgeCell {
    pub(crate) label: String,
    pub(crate) mark: Mark,
    pub(crate) detail: String,
}

/// One metric's row of the judge's table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JudgeRow {
    pub(crate) metric: String,
    /// One per measurement (`None`: the metric was not in that measurement).
    pub(crate) cells: Vec<Option<JudgeCell>>,
}

/// The Kayenta judge over time: the score against its thresholds and the per-metric table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JudgeSeries {
    pub(crate) pass: f64,
    pub(crate) marginal: f64,
    /// The score at each measurement that had one.
    pub(crate) scores: Vec<MetricPoint>,
    /// The measurements' labels (`#1` at `+01:00`), the table's columns.
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<JudgeRow>,
}

/// One measurement of an analysis, for its table and verdict markers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MeasurementRow {
    pub(crate) t: f64,
    pub(crate) clock: String,
    pub(crate) number: u32,
    pub(crate) mark: Mark,
    pub(crate) summary: String,
}

/// What kind of analysis a run is, from the plan or from what it recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnalysisKind {
    Threshold,
    Conditions,
    Proportions,
    Judge,
    Sequential,
    /// Registered in code, not from a template.
    Custom,
}

impl AnalysisKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AnalysisKind::Threshold => "threshold",
            AnalysisKind::Conditions => "conditions",
            AnalysisKind::Proportions => "proportions",
            AnalysisKind::Judge => "Kayenta judge",
            AnalysisKind::Sequential => "sequential test",
            AnalysisKind::Custom => "analysis",
        }
    }
}

/// Every measurement of one analysis (by name and slot) over the rollout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AnalysisSeries {
    pub(crate) name: String,
    pub(crate) background: bool,
    pub(crate) kind: AnalysisKind,
    pub(crate) measurements: Vec<MeasurementRow>,
    pub(crate) metrics: Vec<MetricSeries>,
    pub(crate) sequential: Option<SequentialSeries>,
    pub(crate) judge: Option<JudgeSeries>,
}

/// Values of one revision (latencies), as an empirical CDF.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Distribution {
    pub(crate) label: String,
    /// Sorted, finite.
    pub(crate) values: Vec<f64>,
}

impl Distribution {
    pub(crate) fn new(label: String, mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        Distribution { label, values }
    }

    /// The ECDF's steps: `(value, fraction at or below it)`, one per distinct value.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn ecdf(&self) -> Vec<(f64, f64)> {
        let n = self.values.len() as f64;
        let mut steps: Vec<(f64, f64)> = Vec::new();
        for (i, &v) in self.values.iter().enumerate() {
            let f = (i + 1) as f64 / n;
            match steps.last_mut() {
                // Equal values make one step (exact equality: they are copies).
                #[allow(clippy::float_cmp)]
                Some(last) if last.0 == v => last.1 = f,
                _ => steps.push((v, f)),
            }
        }
        steps
    }

    /// The `q` quantile (nearest rank), if there are values.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.values.is_empty() {
            return None;
        }
        let rank = (q * self.values.len() as f64).ceil().max(1.0) as usize;
        self.values.get(rank.min(self.values.len()) - 1).copied()
    }
}

/// A gate's answer, an approval, or a migration step's result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckRow {
    pub(crate) clock: String,
    pub(crate) name: String,
    pub(crate) what: String,
    pub(crate) result: String,
    pub(crate) ok: Option<bool>,
}

/// One line of the decision log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogRow {
    pub(crate) seq: u64,
    pub(crate) at: String,
    pub(crate) clock: String,
    pub(crate) phase: String,
    pub(crate) step: String,
    pub(crate) kind: &'static str,
    pub(crate) summary: String,
}

/// Everything a report shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReportData {
    pub(crate) id: String,
    pub(crate) strategy: Option<String>,
    pub(crate) revisions: Vec<String>,
    pub(crate) started: Option<Timestamp>,
    pub(crate) duration: f64,
    pub(crate) phase: Option<String>,
    pub(crate) paused: Option<String>,
    /// `promoted`, `rolled-back`, `aborted`, `concluded`, `failed`, or `running`.
    pub(crate) outcome_class: &'static str,
    /// How it ended and why, or where it stands.
    pub(crate) outcome: String,
    pub(crate) traffic: Traffic,
    pub(crate) markers: Vec<Marker>,
    pub(crate) analyses: Vec<AnalysisSeries>,
    pub(crate) latencies: Vec<Distribution>,
    pub(crate) checks: Vec<CheckRow>,
    pub(crate) log: Vec<LogRow>,
}

fn final_text(end: &Final) -> (&'static str, String) {
    match end {
        Final::Outcome(outcome) => (outcome_class(outcome), outcome.to_string()),
        Final::Failed { error } => ("failed", format!("failed: {error}")),
    }
}

fn outcome_class(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Promoted => "promoted",
        Outcome::RolledBack(_) => "rolled-back",
        Outcome::Aborted { .. } => "aborted",
        Outcome::Refused { .. } => "refused",
        _ => "concluded",
    }
}

fn split_weights(split: Option<&TrafficSplit>, revisions: &[String]) -> Vec<f64> {
    revisions
        .iter()
        .enumerate()
        .map(|(i, r)| match split {
            Some(split) => split
                .iter()
                .find(|(rev, _)| rev.as_str() == r)
                .map_or(0.0, |(_, w)| w.percent()),
            // Before any split is set, all traffic is on stable.
            None if i == 0 => 100.0,
            None => 0.0,
        })
        .collect()
}

impl ReportData {
    /// Reads the report's data from the decision log, the stored state (for the plan's
    /// thresholds, the revisions and where the rollout stands) and any recorded latencies.
    pub(crate) fn new(
        id: Option<&str>,
        records: &[DecisionRecord],
        state: Option<&RolloutState>,
        latencies: &[(String, Vec<f64>)],
    ) -> Self {
        let start = state
            .map(|s| s.started_at)
            .into_iter()
            .chain(records.first().map(|r| r.at))
            .min();
        let start_or_epoch = start.unwrap_or(Timestamp::from_unix_millis(0));
        let end = records
            .last()
            .map(|r| r.at)
            .into_iter()
            .chain(state.map(|s| s.updated_at))
            .max()
            .unwrap_or(start_or_epoch);
        let revisions = revisions(records, state);
        let (outcome_class, outcome) = outcome(records, state);
        let plan = state.map(|s| &s.setup.plan);
        ReportData {
            id: id
                .map(str::to_owned)
                .or_else(|| state.map(|s| s.id.to_string()))
                .unwrap_or_else(|| "rollout".to_owned()),
            strategy: plan.map(|p| p.strategy.kind().to_owned()),
            started: start,
            duration: seconds(start_or_epoch, end),
            phase: state.map(|s| s.phase.to_string()),
            paused: state.and_then(|s| s.pause.as_ref().map(|p| p.reason.to_string())),
            outcome_class,
            outcome,
            traffic: traffic(records, state, &revisions, start_or_epoch, end),
            markers: markers(records, start_or_epoch),
            analyses: analyses(records, plan, &revisions, start_or_epoch),
            latencies: latencies
                .iter()
                .map(|(label, values)| Distribution::new(label.clone(), values.clone()))
                .filter(|d| !d.values.is_empty())
                .collect(),
            checks: checks(records, start_or_epoch),
            log: records.iter().map(|r| log_row(r, start_or_epoch)).collect(),
            revisions,
        }
    }
}

fn revisions(records: &[DecisionRecord], state: Option<&RolloutState>) -> Vec<String> {
    let mut revisions: Vec<String> = state
        .map(|s| {
            let r = s.revisions();
            vec![r.stable.to_string(), r.candidate.to_string()]
        })
        .unwrap_or_default();
    let splits = records.iter().flat_map(|r| {
        let applied = match &r.entry {
            Entry::Decision {
                decision: Decision::Apply(Action::SetSplit { split }),
                ..
            } => Some(split),
            _ => None,
        };
        r.inputs.split.iter().chain(applied)
    });
    for split in splits {
        for (revision, _) in split.iter() {
            if !revisions.iter().any(|r| r == revision.as_str()) {
                revisions.push(revision.to_string());
            }
        }
    }
    revisions
}

fn outcome(records: &[DecisionRecord], state: Option<&RolloutState>) -> (&'static str, String) {
    if let Some(end) = state.and_then(|s| s.outcome.as_ref()) {
        return final_text(end);
    }
    let completed = records.iter().rev().find_map(|r| match &r.entry {
        Entry::Decision {
            decision: Decision::Complete(end),
            ..
        } => Some(end),
        _ => None,
    });
    if let Some(end) = completed {
        return final_text(end);
    }
    let Some(state) = state else {
        return ("running", "not finished".to_owned());
    };
    let mut text = format!("{}", state.phase);
    if state.phase == cutover_core::state::Phase::Progressing {
        text = format!(
            "{text}: step {} of {}",
            state.step + 1,
            state.setup.step_kinds().len()
        );
    }
    if let Some(pause) = &state.pause {
        text = format!("{text}; {}", pause.reason);
    }
    ("running", text)
}

fn traffic(
    records: &[DecisionRecord],
    state: Option<&RolloutState>,
    revisions: &[String],
    start: Timestamp,
    end: Timestamp,
) -> Traffic {
    let mut points = Vec::new();
    let first = records.first().and_then(|r| r.inputs.split.as_ref());
    points.push(TrafficPoint {
        t: 0.0,
        weights: split_weights(first, revisions),
    });
    for r in records {
        if let Entry::Decision {
            decision: Decision::Apply(Action::SetSplit { split }),
            result: Some(ActionResult::Done | ActionResult::AlreadyDone),
        } = &r.entry
        {
            let point = TrafficPoint {
                t: seconds(start, r.at),
                weights: split_weights(Some(split), revisions),
            };
            match points.last_mut() {
                // Two splits at the same instant: the later one is what held.
                #[allow(clippy::float_cmp)]
                Some(last) if last.t == point.t => *last = point,
                _ => points.push(point),
            }
        }
    }
    // A log read from the middle (or a rollout resumed) may miss a split the state knows.
    if let Some(split) = state.and_then(|s| s.split.as_ref()) {
        let now = split_weights(Some(split), revisions);
        if points.last().is_some_and(|p| p.weights != now) {
            points.push(TrafficPoint {
                t: seconds(start, end),
                weights: now,
            });
        }
    }
    Traffic {
        revisions: revisions.to_vec(),
        points,
        end: seconds(start, end),
    }
}

fn markers(records: &[DecisionRecord], start: Timestamp) -> Vec<Marker> {
    let mut markers = Vec::new();
    for r in records {
        let found = match &r.entry {
            Entry::Command { command, effect } => {
                let q = &command.request;
                let mut text = format!("{} by {}", q.command, q.by);
                if let Some(subject) = &q.subject {
                    let _ = write!(text, " ({subject})");
                }
                if !q.reason.is_empty() {
                    let _ = write!(text, ": {}", q.reason);
                }
                let _ = write!(
                    text,
                    " ({}: {})",
                    if effect.accepted {
                        "accepted"
                    } else {
                        "refused"
                    },
                    effect.note
                );
                Some((MarkerKind::Command, text))
            }
            Entry::Started {
                engine,
                resumed: true,
                takeover,
            } => Some((
                MarkerKind::Engine,
                match takeover {
                    Some(t) => format!(
                        "taken over by {engine} from {} (forced by {}: {})",
                        t.from, t.by, t.reason
                    ),
                    None => format!("resumed by {engine}"),
                },
            )),
            Entry::Decision { decision, .. } => match decision {
                Decision::Pause(reason) => Some((MarkerKind::Pause, format!("paused: {reason}"))),
                Decision::Promote => Some((MarkerKind::Promote, r.summary.clone())),
                Decision::Rollback(reason) => {
                    Some((MarkerKind::Rollback, format!("rollback: {reason}")))
                }
                Decision::Complete(end) => Some((MarkerKind::Finish, final_text(end).1)),
                _ => None,
            },
            _ => None,
        };
        if let Some((kind, text)) = found {
            markers.push(Marker {
                number: markers.len() + 1,
                t: seconds(start, r.at),
                clock: clock(start, r.at),
                kind,
                text,
            });
        }
    }
    markers
}

fn kind_of(template: Option<&AnalysisTemplate>, result: Option<&AnalysisResult>) -> AnalysisKind {
    match template {
        Some(AnalysisTemplate::Threshold(_)) => AnalysisKind::Threshold,
        Some(AnalysisTemplate::Conditions(_)) => AnalysisKind::Conditions,
        Some(AnalysisTemplate::Proportions(_)) => AnalysisKind::Proportions,
        Some(AnalysisTemplate::Judge(_)) => AnalysisKind::Judge,
        Some(AnalysisTemplate::Sequential(_)) => AnalysisKind::Sequential,
        Some(_) => AnalysisKind::Custom,
        // Without the plan, tell by what the measurement recorded.
        None => match result {
            Some(r)
                if r.comparison
                    .as_ref()
                    .is_some_and(|c| c.numbers.contains_key("log_e_value")) =>
            {
                AnalysisKind::Sequential
            }
            Some(r) if r.metrics.last().is_some_and(|m| m.name == "score") => AnalysisKind::Judge,
            Some(r) if !r.metrics.is_empty() => AnalysisKind::Threshold,
            _ => AnalysisKind::Custom,
        },
    }
}

/// The measurements of each analysis, in the order they first appear.
fn analyses(
    records: &[DecisionRecord],
    plan: Option<&cutover_core::Plan>,
    revisions: &[String],
    start: Timestamp,
) -> Vec<AnalysisSeries> {
    let mut order: Vec<(String, bool)> = Vec::new();
    let mut by_run: Runs<'_> = BTreeMap::new();
    for r in records {
        if let Entry::Decision {
            decision:
                Decision::Apply(Action::Measure {
                    slot,
                    analysis,
                    measurement,
                }),
            result: Some(result),
        } = &r.entry
        {
            let key = (analysis.clone(), *slot == Slot::Background);
            if !by_run.contains_key(&key) {
                order.push(key.clone());
            }
            by_run
                .entry(key)
                .or_default()
                .push((r, *measurement, result));
        }
    }
    order
        .into_iter()
        .map(|key| {
            let template = plan.and_then(|p| p.analyses.get(&key.0));
            series(key, &by_run, template, revisions, start)
        })
        .collect()
}

/// One measurement's record, its number in the run and its result.
type RunEntry<'a> = (&'a DecisionRecord, u32, &'a ActionResult);
type Runs<'a> = BTreeMap<(String, bool), Vec<RunEntry<'a>>>;

/// One measurement as read from its record.
struct Measured<'a> {
    t: f64,
    record: &'a DecisionRecord,
    number: u32,
    mark: Mark,
    result: Option<&'a AnalysisResult>,
    summary: String,
}

fn series(
    key: (String, bool),
    runs: &Runs<'_>,
    template: Option<&AnalysisTemplate>,
    revisions: &[String],
    start: Timestamp,
) -> AnalysisSeries {
    let entries = &runs[&key];
    let results: Vec<Measured<'_>> = entries
        .iter()
        .map(|&(record, number, result)| {
            let t = seconds(start, record.at);
            let (mark, result, summary) = match result {
                ActionResult::Measured {
                    measurement,
                    result,
                    error,
                } => {
                    let summary = match (result, error) {
                        (_, Some(e)) => format!("could not measure: {e}"),
                        (Some(res), None) => res.summary.clone(),
                        (None, None) => record.summary.clone(),
                    };
                    (Mark::of_measurement(*measurement), result.as_ref(), summary)
                }
                _ => (Mark::Error, None, record.summary.clone()),
            };
            Measured {
                t,
                record,
                number,
                mark,
                result,
                summary,
            }
        })
        .collect();
    let kind = kind_of(template, results.iter().find_map(|m| m.result));
    let measurements = results
        .iter()
        .map(|m| MeasurementRow {
            t: m.t,
            clock: clock(start, m.record.at),
            number: m.number,
            mark: m.mark,
            summary: m.summary.clone(),
        })
        .collect();
    let points: Vec<(f64, &AnalysisResult)> = results
        .iter()
        .filter_map(|m| m.result.map(|r| (m.t, r)))
        .collect();
    let (metrics, sequential, judge) = match kind {
        AnalysisKind::Sequential => (Vec::new(), sequential(template, &points), None),
        AnalysisKind::Judge => (Vec::new(), None, Some(judge(template, &results, start))),
        _ => (metric_series(template, &points, revisions), None, None),
    };
    AnalysisSeries {
        name: key.0,
        background: key.1,
        kind,
        measurements,
        metrics,
        sequential,
        judge,
    }
}

fn metric_series(
    template: Option<&AnalysisTemplate>,
    points: &[(f64, &AnalysisResult)],
    revisions: &[String],
) -> Vec<MetricSeries> {
    let mut out: Vec<MetricSeries> = Vec::new();
    for (t, result) in points {
        for m in &result.metrics {
            let index = if let Some(i) = out.iter().position(|s| s.name == m.name) {
                i
            } else {
                let Planned {
                    revision,
                    role,
                    measure,
                    min,
                    max,
                } = planned(template, &m.name, revisions);
                out.push(MetricSeries {
                    name: m.name.clone(),
                    revision,
                    role,
                    measure,
                    min,
                    max,
                    points: Vec::new(),
                });
                out.len() - 1
            };
            out[index].points.push(MetricPoint {
                t: *t,
                value: m.value.filter(|v| v.is_finite()),
                mark: Mark::of(m.verdict),
            });
        }
    }
    out
}

/// What the plan says of one metric of an analysis.
#[derive(Default)]
struct Planned {
    revision: Option<String>,
    role: Option<usize>,
    measure: Option<String>,
    min: Option<f64>,
    max: Option<f64>,
}

/// Whose values a metric is, what it measures and its bounds, from a threshold or conditions
/// template.
fn planned(template: Option<&AnalysisTemplate>, metric: &str, revisions: &[String]) -> Planned {
    let on = |target: cutover_core::Target, measure: String, min, max| {
        let (role, index) = match target {
            cutover_core::Target::Stable => ("stable", 0),
            cutover_core::Target::Candidate => ("candidate", 1),
        };
        Planned {
            revision: Some(match revisions.get(index) {
                Some(r) => format!("{role} {r}"),
                None => role.to_owned(),
            }),
            role: Some(index),
            measure: Some(measure),
            min,
            max,
        }
    };
    match template {
        Some(AnalysisTemplate::Threshold(t)) => t
            .metrics
            .iter()
            .find(|m| m.name == metric)
            .map_or_else(Planned::default, |m| {
                let measure = measure(&m.source, &m.query, m.aggregate, m.window);
                on(m.revision, measure, m.min, m.max)
            }),
        Some(AnalysisTemplate::Conditions(t)) => t
            .metrics
            .iter()
            .find(|m| m.name == metric)
            .map_or_else(Planned::default, |m| {
                let measure = measure(&m.source, &m.query, m.aggregate, m.window);
                on(m.revision, measure, None, None)
            }),
        _ => Planned::default(),
    }
}

/// What a metric measures, as a key: metrics of equal keys measure the same thing (on
/// different revisions, when their plan says so).
fn measure(
    source: &str,
    query: &str,
    aggregate: cutover_core::Aggregate,
    window: std::time::Duration,
) -> String {
    format!("{source}|{query}|{aggregate:?}|{window:?}")
}

/// The metrics of an analysis, one group per chart: a metric alone, or the metrics that measure
/// the same thing on different revisions (the stable's and the candidate's error rate), in the
/// order they first appear.
pub(crate) fn chart_groups(metrics: &[MetricSeries]) -> Vec<Vec<&MetricSeries>> {
    let mut groups: Vec<Vec<&MetricSeries>> = Vec::new();
    for m in metrics {
        let same = m.measure.as_ref().and_then(|measure| {
            groups.iter().position(|g| {
                g[0].measure.as_ref() == Some(measure) && g.iter().all(|o| o.role != m.role)
            })
        });
        match same {
            Some(i) => groups[i].push(m),
            None => groups.push(vec![m]),
        }
    }
    groups
}

fn sequential(
    template: Option<&AnalysisTemplate>,
    points: &[(f64, &AnalysisResult)],
) -> Option<SequentialSeries> {
    let template = match template {
        Some(AnalysisTemplate::Sequential(t)) => Some(t),
        _ => None,
    };
    let mut alpha = template.map(|t| t.alpha);
    let mut tolerance = template.and_then(cutover_core::SequentialTemplate::effective_tolerance);
    let mut out = Vec::new();
    for (t, result) in points {
        let Some(numbers) = result.comparison.as_ref().map(|c| &c.numbers) else {
            continue;
        };
        let Some(log_e) = numbers.get("log_e_value") else {
            continue;
        };
        alpha = alpha.or_else(|| numbers.get("alpha").copied());
        tolerance = tolerance.or_else(|| numbers.get("tolerance").copied());
        out.push(SequentialPoint {
            t: *t,
            e_value: log_e.exp(),
            p_value: numbers.get("p_value").copied(),
            estimate: numbers.get("estimate").copied(),
            lower: numbers.get("lower").copied(),
            upper: numbers.get("upper").copied(),
            mark: Mark::of(result.verdict),
        });
    }
    let alpha = alpha.filter(|a| *a > 0.0 && *a < 1.0)?;
    Some(SequentialSeries {
        alpha,
        tolerance: tolerance.filter(|t| t.is_finite()),
        effect: template.map(|t| t.test.effect().to_owned()),
        points: out,
    })
}

fn judge(
    template: Option<&AnalysisTemplate>,
    results: &[Measured<'_>],
    start: Timestamp,
) -> JudgeSeries {
    let thresholds = match template {
        Some(AnalysisTemplate::Judge(t)) => t.effective_thresholds(),
        _ => cutover_analysis::kayenta::ScoreThresholds::default(),
    };
    let mut scores = Vec::new();
    let mut columns = Vec::new();
    let mut rows: Vec<JudgeRow> = Vec::new();
    for (col, m) in results.iter().enumerate() {
        columns.push(format!("#{} {}", m.number, clock(start, m.record.at)));
        let (t, Some(result)) = (m.t, m.result) else {
            continue;
        };
        for m in &result.metrics {
            if m.name == "score" {
                scores.push(MetricPoint {
                    t,
                    value: m.value,
                    mark: Mark::of(m.verdict),
                });
                continue;
            }
            let index = if let Some(i) = rows.iter().position(|row| row.metric == m.name) {
                i
            } else {
                rows.push(JudgeRow {
                    metric: m.name.clone(),
                    cells: Vec::new(),
                });
                rows.len() - 1
            };
            let row = &mut rows[index];
            row.cells.resize(col, None);
            // The detail starts with the classification's label (`Pass`, `High`, `muted: ...`).
            let label = m
                .detail
                .trim_start_matches("muted: ")
                .split([' ', ',', '('])
                .next()
                .unwrap_or("")
                .to_owned();
            row.cells.push(Some(JudgeCell {
                label,
                mark: Mark::of(m.verdict),
                detail: m.detail.clone(),
            }));
        }
    }
    for row in &mut rows {
        row.cells.resize(columns.len(), None);
    }
    JudgeSeries {
        pass: thresholds.pass,
        marginal: thresholds.marginal,
        scores,
        columns,
        rows,
    }
}

fn checks(records: &[DecisionRecord], start: Timestamp) -> Vec<CheckRow> {
    let mut out = Vec::new();
    for r in records {
        let row = |name: &str, what: &str, result: String, ok: Option<bool>| CheckRow {
            clock: clock(start, r.at),
            name: name.to_owned(),
            what: what.to_owned(),
            result,
            ok,
        };
        match &r.entry {
            Entry::Decision {
                decision: Decision::Apply(action),
                result: Some(result),
            } => {
                let (name, what) = match action {
                    Action::CheckGate { gate } => (gate.as_str(), "gate"),
                    Action::ApplyMigration { id } => (id.as_str(), "apply migration"),
                    Action::RevertMigration { id } => (id.as_str(), "revert migration"),
                    _ => continue,
                };
                let (text, ok) = match result {
                    ActionResult::Gate(verdict) | ActionResult::Checklist { verdict, .. } => (
                        verdict.to_string(),
                        match verdict {
                            cutover_core::GateVerdict::Open => Some(true),
                            cutover_core::GateVerdict::Closed { .. } => Some(false),
                            cutover_core::GateVerdict::Pending { .. } => None,
                        },
                    ),
                    ActionResult::Done => ("done".to_owned(), Some(true)),
                    ActionResult::AlreadyDone => ("already done".to_owned(), Some(true)),
                    ActionResult::Failed { error, .. } => (format!("failed: {error}"), Some(false)),
                    _ => (r.summary.clone(), None),
                };
                out.push(row(name, what, text, ok));
                // A checklist's checks, each on a row of its own under its gate.
                if let ActionResult::Checklist { checklist, .. } = result {
                    for check in &checklist.checks {
                        out.push(row(
                            &check.id,
                            &format!("check of `{name}` ({})", check.category),
                            check_text(check),
                            match check.status {
                                _ if check.blocks() => Some(false),
                                cutover_core::checklist::CheckStatus::Pass => Some(true),
                                _ => None,
                            },
                        ));
                    }
                }
            }
            Entry::Command { command, effect } if command.request.subject.is_some() => {
                let q = &command.request;
                let mut text = format!("{} by {}", q.command, q.by);
                if !q.reason.is_empty() {
                    let _ = write!(text, ": {}", q.reason);
                }
                out.push(row(
                    q.subject.as_deref().unwrap_or_default(),
                    "approval",
                    text,
                    Some(effect.accepted && q.command == cutover_core::Command::Approve),
                ));
            }
            _ => {}
        }
    }
    out
}

/// A check's result in one line: status and message, then the exemption and the fix, if any.
fn check_text(check: &cutover_core::checklist::CheckRecord) -> String {
    let mut text = check.status.as_str().to_owned();
    if !check.required {
        text.push_str(" (advisory)");
    }
    if !check.message.is_empty() {
        let _ = write!(text, ": {}", check.message);
    }
    if let Some(e) = &check.exempted {
        let _ = write!(
            text,
            "; exempted by {} until {}: {}",
            e.by, e.expires, e.reason
        );
    }
    if let Some(fix) = &check.fix {
        let outcome = if fix.applied { "applied" } else { "failed" };
        let _ = write!(
            text,
            "; fix {outcome} ({}, was {}): {}",
            fix.description,
            fix.status_before.as_str(),
            fix.message
        );
    }
    text
}

fn log_row(r: &DecisionRecord, start: Timestamp) -> LogRow {
    let kind = match &r.entry {
        Entry::Started { .. } => "started",
        Entry::Command { .. } => "command",
        Entry::Decision {
            decision: Decision::Apply(_),
            ..
        } => "action",
        Entry::Decision { .. } => "decision",
        _ => "other",
    };
    LogRow {
        seq: r.seq,
        at: r.at.to_string(),
        clock: clock(start, r.at),
        phase: r.phase.to_string(),
        step: r
            .step
            .as_ref()
            .map(|s| format!("{} {}", s.index, s.kind))
            .unwrap_or_default(),
        kind,
        summary: r.summary.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::needless_pass_by_value)] // `json!` borrows the values it is given
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn at(secs: u64) -> String {
        Timestamp::from_unix_millis(T0 + secs * 1000).to_string()
    }

    /// A record at `secs` seconds, with the split in effect then.
    fn record(seq: u64, secs: u64, split: Option<Value>, entry: Value) -> DecisionRecord {
        let mut inputs = json!({ "step_elapsed": "0s" });
        if let Some(split) = split {
            inputs["split"] = split;
        }
        serde_json::from_value(json!({
            "seq": seq, "at": at(secs), "phase": "progressing", "inputs": inputs,
            "entry": entry, "summary": format!("record {seq}"),
        }))
        .unwrap()
    }

    fn set_split(v1: u8, v2: u8) -> Value {
        json!({ "kind": "decision", "decision": { "apply": { "set_split": { "split": { "v1": v1, "v2": v2 } } } }, "result": "done" })
    }

    fn measured(
        analysis: &str,
        n: u32,
        verdict: &str,
        metrics: Value,
        numbers: Option<Value>,
    ) -> Value {
        let mut result = json!({ "verdict": verdict, "summary": format!("{analysis} #{n}"), "metrics": metrics });
        if let Some(numbers) = numbers {
            result["comparison"] =
                json!({ "winner": null, "effect": 1.0, "confidence": 0.5, "numbers": numbers });
        }
        json!({
            "kind": "decision",
            "decision": { "apply": { "measure": { "slot": "step", "analysis": analysis, "measurement": n } } },
            "result": { "measured": { "measurement": verdict, "result": result } },
        })
    }

    fn metric(name: &str, verdict: &str, value: f64, detail: &str) -> Value {
        json!({ "name": name, "verdict": verdict, "value": value, "samples": 100, "detail": detail })
    }

    #[test]
    fn traffic_steps_follow_the_splits_applied() {
        let records = [
            record(
                1,
                0,
                None,
                json!({ "kind": "started", "engine": "e1", "resumed": false }),
            ),
            record(2, 0, None, set_split(80, 20)),
            record(3, 10, Some(json!({"v1": 80, "v2": 20})), set_split(50, 50)),
            // A split that failed changes nothing.
            record(
                4,
                15,
                Some(json!({"v1": 50, "v2": 50})),
                json!({ "kind": "decision", "decision": { "apply": { "set_split": { "split": { "v1": 0, "v2": 100 } } } }, "result": { "failed": { "kind": "permanent", "error": "boom" } } }),
            ),
            record(5, 20, Some(json!({"v1": 50, "v2": 50})), set_split(100, 0)),
            record(
                6,
                25,
                Some(json!({"v1": 100, "v2": 0})),
                json!({ "kind": "decision", "decision": "advance" }),
            ),
        ];
        let data = ReportData::new(None, &records, None, &[]);
        assert_eq!(data.revisions, ["v1", "v2"]);
        let points: Vec<(f64, Vec<f64>)> = data
            .traffic
            .points
            .iter()
            .map(|p| (p.t, p.weights.clone()))
            .collect();
        assert_eq!(
            points,
            [
                (0.0, vec![80.0, 20.0]),
                (10.0, vec![50.0, 50.0]),
                (20.0, vec![100.0, 0.0])
            ]
        );
        assert!((data.traffic.end - 25.0).abs() < 1e-9);
        assert!((data.duration - 25.0).abs() < 1e-9);
        assert_eq!(
            (data.outcome_class, data.outcome.as_str()),
            ("running", "not finished")
        );
        assert_eq!(data.log.len(), 6);
        assert_eq!(data.log[2].clock, "+00:10");
    }

    #[test]
    fn markers_name_commands_pauses_and_the_ending() {
        let command = json!({
            "kind": "command",
            "command": { "seq": 1, "sent_at": at(5), "command": "pause", "by": "alice", "reason": "error budget" },
            "effect": { "accepted": true, "note": "paused" },
        });
        let records = [
            record(
                1,
                0,
                None,
                json!({ "kind": "started", "engine": "e1", "resumed": false }),
            ),
            record(2, 5, None, command),
            record(
                3,
                8,
                None,
                json!({ "kind": "decision", "decision": { "pause": "step" } }),
            ),
            record(
                4,
                9,
                None,
                json!({ "kind": "started", "engine": "e2", "resumed": true }),
            ),
            record(
                5,
                12,
                None,
                json!({ "kind": "decision", "decision": { "rollback": { "progress_deadline": { "deadline": "10s", "waiting_for": "health" } } } }),
            ),
            record(
                6,
                13,
                None,
                json!({ "kind": "decision", "decision": { "complete": { "outcome": { "aborted": { "by": "alice", "reason": "bad" } } } } }),
            ),
        ];
        let data = ReportData::new(Some("checkout"), &records, None, &[]);
        let markers: Vec<(usize, MarkerKind, &str)> = data
            .markers
            .iter()
            .map(|m| (m.number, m.kind, m.text.as_str()))
            .collect();
        assert_eq!(
            markers[0],
            (
                1,
                MarkerKind::Command,
                "pause by alice: error budget (accepted: paused)"
            )
        );
        assert_eq!(markers[1].1, MarkerKind::Pause);
        assert_eq!(markers[2], (3, MarkerKind::Engine, "resumed by e2"));
        assert_eq!(markers[3].1, MarkerKind::Rollback);
        assert_eq!(markers[4], (5, MarkerKind::Finish, "aborted by alice: bad"));
        assert_eq!(data.markers[3].clock, "+00:12");
        assert_eq!(
            (data.outcome_class, data.outcome.as_str()),
            ("aborted", "aborted by alice: bad")
        );
        assert_eq!(data.id, "checkout");
    }

    #[test]
    fn threshold_metrics_are_series_per_metric() {
        let records = [
            record(
                1,
                0,
                None,
                measured(
                    "health",
                    1,
                    "pass",
                    json!([
                        metric("errors", "pass", 0.001, "ok"),
                        metric("p99", "pass", 0.2, "ok")
                    ]),
                    None,
                ),
            ),
            record(
                2,
                60,
                None,
                measured(
                    "health",
                    2,
                    "fail",
                    json!([metric("errors", "fail", 0.05, "0.05 > max 0.01")]),
                    None,
                ),
            ),
            record(
                3,
                90,
                None,
                json!({ "kind": "decision", "decision": { "apply": { "measure": { "slot": "background", "analysis": "health", "measurement": 1 } } }, "result": { "measured": { "measurement": "error", "error": "source down" } } }),
            ),
        ];
        let data = ReportData::new(None, &records, None, &[]);
        assert_eq!(
            data.analyses.len(),
            2,
            "the step run and the background run"
        );
        let step = &data.analyses[0];
        assert_eq!(
            (step.kind, step.background),
            (AnalysisKind::Threshold, false)
        );
        let names: Vec<&str> = step.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["errors", "p99"]);
        let errors: Vec<(f64, Option<f64>, Mark)> = step.metrics[0]
            .points
            .iter()
            .map(|p| (p.t, p.value, p.mark))
            .collect();
        assert_eq!(
            errors,
            [
                (0.0, Some(0.001), Mark::Pass),
                (60.0, Some(0.05), Mark::Fail)
            ]
        );
        assert_eq!(step.metrics[1].points.len(), 1);
        let background = &data.analyses[1];
        assert!(background.background);
        assert_eq!(background.measurements[0].mark, Mark::Error);
        assert_eq!(
            background.measurements[0].summary,
            "could not measure: source down"
        );
    }

    #[test]
    fn a_metric_measured_on_both_revisions_shares_one_chart() {
        let plan = cutover_core::Plan::from_yaml(
            "
strategy:
  canary:
    steps:
      - set_weight: 10
      - analysis: { name: health }
analyses:
  health:
    threshold:
      metrics:
        - { name: errors, source: proxy, query: error_rate, window: 1m, max: 0.01 }
        - { name: p99, source: proxy, query: latency, aggregate: p99, window: 1m, max: 0.25 }
        - { name: stable-errors, source: proxy, query: error_rate, window: 1m, revision: stable, max: 0.05 }
",
        )
        .unwrap();
        let setup = cutover_core::planner::Setup::new(
            plan,
            cutover_core::Revisions::new("v1", "v2").unwrap(),
        );
        let state = RolloutState::new(
            "checkout".parse().unwrap(),
            std::sync::Arc::new(setup),
            Timestamp::from_unix_millis(T0),
        );
        let records = [record(
            1,
            10,
            None,
            measured(
                "health",
                1,
                "fail",
                json!([
                    metric("errors", "fail", 0.04, "0.04 > max 0.01"),
                    metric("p99", "pass", 0.2, "ok"),
                    metric("stable-errors", "pass", 0.002, "ok")
                ]),
                None,
            ),
        )];
        let data = ReportData::new(Some("checkout"), &records, Some(&state), &[]);
        let metrics = &data.analyses[0].metrics;
        let planned: Vec<String> = metrics
            .iter()
            .map(|m| format!("{} {:?} {:?} {:?}", m.name, m.revision, m.role, m.max))
            .collect();
        assert_eq!(
            planned,
            [
                r#"errors Some("candidate v2") Some(1) Some(0.01)"#,
                r#"p99 Some("candidate v2") Some(1) Some(0.25)"#,
                r#"stable-errors Some("stable v1") Some(0) Some(0.05)"#,
            ]
        );
        let groups: Vec<Vec<&str>> = chart_groups(metrics)
            .iter()
            .map(|g| g.iter().map(|m| m.name.as_str()).collect())
            .collect();
        assert_eq!(
            groups,
            [vec!["errors", "stable-errors"], vec!["p99"]],
            "the error rate of both revisions on one chart, the latency alone"
        );
        // The report draws two metric charts; the shared one names both revisions and both bounds.
        let html = crate::Report::new(&records).state(&state).render();
        assert_eq!(charts(&html, "metric"), 2);
        let doc = scraper::Html::parse_document(&html);
        let figure = doc
            .select(&scraper::Selector::parse("figure[data-chart=\"metric\"]").unwrap())
            .next()
            .unwrap();
        let text: String = figure.text().collect();
        for needle in [
            "errors (candidate v2)",
            "stable-errors (stable v1)",
            "max 0.0100 (candidate v2)",
            "max 0.0500 (stable v1)",
        ] {
            assert!(
                text.contains(needle),
                "`{needle}` not in the chart: {}",
                figure.html()
            );
        }
    }

    #[test]
    fn sequential_tests_chart_the_e_value_and_the_confidence_sequence() {
        let numbers = |log_e: f64, lower: Option<f64>| {
            let mut n = json!({ "log_e_value": log_e, "alpha": 0.05, "estimate": 1.5, "upper": 3.0, "p_value": 0.2, "tolerance": 1.2 });
            if let Some(lower) = lower {
                n["lower"] = json!(lower);
            }
            n
        };
        let records = [
            record(
                1,
                10,
                None,
                measured(
                    "errors",
                    1,
                    "inconclusive",
                    json!([]),
                    Some(numbers(0.0, None)),
                ),
            ),
            record(
                2,
                20,
                None,
                measured(
                    "errors",
                    2,
                    "fail",
                    json!([]),
                    Some(numbers(20f64.ln(), Some(1.25))),
                ),
            ),
        ];
        let data = ReportData::new(None, &records, None, &[]);
        let a = &data.analyses[0];
        assert_eq!(
            a.kind,
            AnalysisKind::Sequential,
            "told by the numbers it recorded"
        );
        let seq = a.sequential.as_ref().unwrap();
        assert!((seq.rejection() - 20.0).abs() < 1e-9);
        assert_eq!(seq.tolerance, Some(1.2));
        assert!((seq.points[0].e_value - 1.0).abs() < 1e-9);
        assert!((seq.points[1].e_value - 20.0).abs() < 1e-9);
        assert_eq!(
            (seq.points[0].lower, seq.points[0].upper),
            (None, Some(3.0))
        );
        assert_eq!(seq.points[1].lower, Some(1.25));
        assert_eq!(seq.points[1].mark, Mark::Fail);
        // And the report draws both charts.
        let html = crate::Report::new(&records).render();
        for kind in ["e-value", "confidence-sequence"] {
            assert_eq!(charts(&html, kind), 1, "one `{kind}` chart");
        }
        assert_eq!(charts(&html, "metric"), 0, "no threshold chart");
    }

    /// Charts of `kind` in a rendered report, each an SVG inside its figure.
    fn charts(html: &str, kind: &str) -> usize {
        let doc = scraper::Html::parse_document(html);
        let css = format!("figure[data-chart=\"{kind}\"] svg");
        doc.select(&scraper::Selector::parse(&css).unwrap()).count()
    }

    #[test]
    fn the_judge_gets_a_table_and_a_score() {
        let records = [
            record(
                1,
                60,
                None,
                measured(
                    "judge",
                    1,
                    "pass",
                    json!([
                        metric(
                            "latency",
                            "pass",
                            0.01,
                            "Pass (no difference; control n=100, candidate n=100)"
                        ),
                        metric(
                            "errors",
                            "pass",
                            0.0,
                            "Pass (ok; control n=100, candidate n=100)"
                        ),
                        metric("score", "pass", 100.0, "Pass"),
                    ]),
                    None,
                ),
            ),
            record(
                2,
                120,
                None,
                measured(
                    "judge",
                    2,
                    "fail",
                    json!([
                        metric(
                            "latency",
                            "fail",
                            0.3,
                            "High, critical (shift; control n=100, candidate n=100)"
                        ),
                        metric("score", "fail", 40.0, "Fail"),
                    ]),
                    None,
                ),
            ),
        ];
        let data = ReportData::new(None, &records, None, &[]);
        let a = &data.analyses[0];
        assert_eq!(a.kind, AnalysisKind::Judge);
        let judge = a.judge.as_ref().unwrap();
        assert_eq!(
            (judge.pass, judge.marginal),
            (95.0, 75.0),
            "Spinnaker's defaults without the plan"
        );
        assert_eq!(
            judge.columns,
            ["#1 +00:00", "#2 +01:00"],
            "from the first record"
        );
        let scores: Vec<(Option<f64>, Mark)> =
            judge.scores.iter().map(|s| (s.value, s.mark)).collect();
        assert_eq!(
            scores,
            [(Some(100.0), Mark::Pass), (Some(40.0), Mark::Fail)]
        );
        assert_eq!(judge.rows[0].metric, "latency");
        let labels: Vec<Option<&str>> = judge.rows[0]
            .cells
            .iter()
            .map(|c| c.as_ref().map(|c| c.label.as_str()))
            .collect();
        assert_eq!(labels, [Some("Pass"), Some("High")]);
        assert_eq!(judge.rows[1].metric, "errors");
        assert!(
            judge.rows[1].cells[1].is_none(),
            "not measured the second time"
        );
        assert_eq!(judge.rows[0].cells[1].as_ref().unwrap().mark, Mark::Fail);
        // And the report draws the score and the classification table.
        let html = crate::Report::new(&records).render();
        assert_eq!(charts(&html, "score"), 1);
        let doc = scraper::Html::parse_document(&html);
        let count = |css: &str| doc.select(&scraper::Selector::parse(css).unwrap()).count();
        assert_eq!(
            count("table.judge tbody tr:not(.score)"),
            2,
            "a row per metric: latency and errors"
        );
        assert_eq!(
            count("table.judge tr.score td"),
            2,
            "a score per measurement"
        );
    }

    #[test]
    fn distributions_give_ecdf_steps_and_quantiles() {
        let d = Distribution::new("v2".into(), vec![0.3, 0.1, f64::NAN, 0.2, 0.1]);
        assert_eq!(d.values, [0.1, 0.1, 0.2, 0.3]);
        assert_eq!(d.ecdf(), [(0.1, 0.5), (0.2, 0.75), (0.3, 1.0)]);
        assert_eq!(d.quantile(0.5), Some(0.1));
        assert_eq!(d.quantile(0.99), Some(0.3));
        assert_eq!(d.quantile(0.0), Some(0.1));
        assert_eq!(Distribution::new("x".into(), vec![]).quantile(0.5), None);
    }

    #[test]
    fn clocks_read_as_minutes_and_hours() {
        let start = Timestamp::from_unix_millis(T0);
        assert_eq!(
            clock(start, Timestamp::from_unix_millis(T0 + 65_000)),
            "+01:05"
        );
        assert_eq!(
            clock(start, Timestamp::from_unix_millis(T0 + 3_725_000)),
            "+1:02:05"
        );
    }
}
