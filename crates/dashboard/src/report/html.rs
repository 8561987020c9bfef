//! The report's HTML, from askama templates (`templates/report.html`, `templates/body.html`).
//! askama escapes every value; only the SVG charts (drawn and escaped by plotters) are
//! inserted as they are.

use std::fmt::Write as _;

use askama::Template;

use super::charts;
use super::data::{AnalysisKind, AnalysisSeries, Mark, ReportData, chart_groups};

/// The stylesheet of the report and the dashboard.
pub(crate) const CSS: &str = include_str!("../../assets/style.css");

/// One chart of an analysis.
pub(crate) struct ChartView {
    pub(crate) kind: &'static str,
    pub(crate) svg: String,
    pub(crate) caption: String,
}

/// One analysis with its charts drawn.
pub(crate) struct AnalysisView<'a> {
    pub(crate) series: &'a AnalysisSeries,
    pub(crate) charts: Vec<ChartView>,
    /// `3 pass, 1 fail`.
    pub(crate) tally: String,
    /// The judge's score per measurement, for the table's last row.
    pub(crate) scores: Vec<String>,
    pub(crate) open: bool,
}

/// The report's data with its charts drawn, as the templates see it.
pub(crate) struct View<'a> {
    pub(crate) data: &'a ReportData,
    pub(crate) has_state: bool,
    pub(crate) revision_text: String,
    pub(crate) started: String,
    pub(crate) duration: String,
    pub(crate) traffic_svg: String,
    pub(crate) analyses: Vec<AnalysisView<'a>>,
    pub(crate) ecdf_svg: Option<String>,
    /// revision, requests, p50, p90, p99, max (milliseconds).
    pub(crate) quantiles: Vec<(String, usize, String, String, String, String)>,
}

fn tally(series: &AnalysisSeries) -> String {
    let count = |mark| {
        series
            .measurements
            .iter()
            .filter(|m| m.mark == mark)
            .count()
    };
    [
        (Mark::Pass, "pass"),
        (Mark::Fail, "fail"),
        (Mark::Inconclusive, "inconclusive"),
        (Mark::Error, "error"),
    ]
    .into_iter()
    .filter_map(|(mark, word)| match count(mark) {
        0 => None,
        n => Some(format!("{n} {word}")),
    })
    .collect::<Vec<_>>()
    .join(", ")
}

fn analysis_view(series: &AnalysisSeries, end: f64) -> AnalysisView<'_> {
    let mut out = Vec::new();
    match series.kind {
        AnalysisKind::Sequential => {
            if let Some(seq) = &series.sequential {
                out.push(ChartView {
                    kind: "e-value",
                    svg: charts::e_value(seq, end),
                    caption: format!(
                        "{}: e-value after each measurement; the test rejects (rolls back) once it reaches 1/alpha = {}.",
                        series.name,
                        seq.rejection()
                    ),
                });
                out.push(ChartView {
                    kind: "confidence-sequence",
                    svg: charts::confidence(seq, end),
                    caption: format!(
                        "{}: estimate and anytime-valid confidence sequence{}; a pass needs the sequence to rule out the tolerance.",
                        series.name,
                        seq.effect
                            .as_ref()
                            .map(|e| format!(" of the {e}"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
        AnalysisKind::Judge => {
            if let Some(judge) = &series.judge {
                out.push(ChartView {
                    kind: "score",
                    svg: charts::score(judge, end),
                    caption: format!(
                        "{}: the judge's score at each measurement against its pass ({}) and marginal ({}) thresholds.",
                        series.name, judge.pass, judge.marginal
                    ),
                });
            }
        }
        _ => {
            for group in chart_groups(&series.metrics) {
                let lines: Vec<String> = group
                    .iter()
                    .map(|m| {
                        let whose = m
                            .revision
                            .as_ref()
                            .map(|r| format!(" of the {r}"))
                            .unwrap_or_default();
                        let bounds = match (m.min, m.max) {
                            (Some(lo), Some(hi)) => format!(" within [{lo}, {hi}]"),
                            (Some(lo), None) => format!(" at least {lo}"),
                            (None, Some(hi)) => format!(" at most {hi}"),
                            (None, None) => String::new(),
                        };
                        format!("{}{whose}{bounds}", m.name)
                    })
                    .collect();
                out.push(ChartView {
                    kind: "metric",
                    svg: charts::metric(&group, end),
                    caption: format!(
                        "{}: {} at each measurement; dots coloured by verdict.",
                        series.name,
                        lines.join(", and ")
                    ),
                });
            }
            if series.metrics.is_empty() {
                out.push(ChartView {
                    kind: "verdicts",
                    svg: charts::metric(&[&verdict_series(series)], end),
                    caption: format!(
                        "{}: verdict of each measurement (1 pass, 0 fail, 0.5 inconclusive or error).",
                        series.name
                    ),
                });
            }
        }
    }
    let scores = series
        .judge
        .as_ref()
        .map(|j| {
            series
                .measurements
                .iter()
                .map(|m| {
                    j.scores
                        .iter()
                        .find(|s| (s.t - m.t).abs() < f64::EPSILON)
                        .and_then(|s| s.value)
                        .map(|v| format!("{v:.1}"))
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    AnalysisView {
        series,
        charts: out,
        tally: tally(series),
        scores,
        open: true,
    }
}

/// An analysis that recorded no numbers, charted by its verdicts.
fn verdict_series(series: &AnalysisSeries) -> super::data::MetricSeries {
    super::data::MetricSeries {
        name: "verdict".to_owned(),
        revision: None,
        role: None,
        measure: None,
        min: None,
        max: None,
        points: series
            .measurements
            .iter()
            .map(|m| super::data::MetricPoint {
                t: m.t,
                value: Some(match m.mark {
                    Mark::Pass => 1.0,
                    Mark::Fail => 0.0,
                    _ => 0.5,
                }),
                mark: m.mark,
            })
            .collect(),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1} ms", v * 1000.0))
        .unwrap_or_default()
}

impl<'a> View<'a> {
    pub(crate) fn new(data: &'a ReportData, has_state: bool) -> Self {
        let end = data.duration;
        let revision_text = match data.revisions.as_slice() {
            [] => String::new(),
            [stable] => stable.clone(),
            [stable, candidate, rest @ ..] => {
                let mut text = format!("{stable} (stable) to {candidate} (candidate)");
                for r in rest {
                    let _ = write!(text, ", {r}");
                }
                text
            }
        };
        View {
            revision_text,
            has_state,
            started: data
                .started
                .map_or_else(|| "not yet".to_owned(), |t| t.to_string()),
            duration: humantime::format_duration(std::time::Duration::from_secs_f64(
                data.duration.max(0.0).round(),
            ))
            .to_string(),
            traffic_svg: charts::traffic(&data.traffic, &data.markers),
            analyses: data
                .analyses
                .iter()
                .map(|a| analysis_view(a, end))
                .collect(),
            ecdf_svg: (!data.latencies.is_empty()).then(|| charts::ecdf(&data.latencies)),
            quantiles: data
                .latencies
                .iter()
                .map(|d| {
                    (
                        d.label.clone(),
                        d.values.len(),
                        ms(d.quantile(0.5)),
                        ms(d.quantile(0.9)),
                        ms(d.quantile(0.99)),
                        ms(d.values.last().copied()),
                    )
                })
                .collect(),
            data,
        }
    }
}

/// The whole report: one HTML document with its stylesheet inside.
#[derive(Template)]
#[template(path = "report.html")]
pub(crate) struct ReportPage<'a> {
    pub(crate) view: View<'a>,
    pub(crate) css: &'static str,
    pub(crate) version: &'static str,
}

/// The report's body alone, for the dashboard's live page.
#[derive(Template)]
#[template(path = "body_only.html")]
pub(crate) struct Body<'a> {
    pub(crate) view: View<'a>,
}

/// Renders a template; askama fails only if writing to a string fails, which it does not, so
/// an error becomes a line saying so rather than a panic.
pub(crate) fn render(template: &impl Template) -> String {
    template
        .render()
        .unwrap_or_else(|e| format!("<p>the page could not be rendered: {e}</p>"))
}
