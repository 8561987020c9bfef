//! The report's charts, drawn as SVG by plotters' SVG backend.
//!
//! Every function returns one `<svg>` element as a string; plotters escapes the text it
//! draws, and the SVG uses presentation attributes only (no `style`), so it passes a strict
//! content security policy when inlined.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::data::{
    Distribution, JudgeSeries, Mark, Marker, MarkerKind, MetricSeries, SequentialSeries, Traffic,
};

const WIDTH: u32 = 1040;
const HEIGHT: u32 = 260;
const FONT: &str = "sans-serif";

/// Colours of the revisions: stable, candidate, then others.
const REVISION_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
const LINE: RGBColor = RGBColor(60, 60, 60);
const LIMIT: RGBColor = RGBColor(214, 39, 40);
const GUIDE: RGBColor = RGBColor(120, 120, 120);
const BAND: RGBColor = RGBColor(31, 119, 180);

fn mark_color(mark: Mark) -> RGBColor {
    match mark {
        Mark::Pass => RGBColor(44, 160, 44),
        Mark::Fail => RGBColor(214, 39, 40),
        Mark::Inconclusive => RGBColor(188, 150, 0),
        Mark::Error => RGBColor(127, 127, 127),
    }
}

fn marker_color(kind: MarkerKind) -> RGBColor {
    match kind {
        MarkerKind::Command => RGBColor(148, 103, 189),
        MarkerKind::Pause => RGBColor(188, 150, 0),
        MarkerKind::Promote | MarkerKind::Finish => RGBColor(44, 160, 44),
        MarkerKind::Rollback => RGBColor(214, 39, 40),
        MarkerKind::Engine => RGBColor(127, 127, 127),
    }
}

pub(crate) fn revision_color(index: usize) -> RGBColor {
    REVISION_COLORS[index % REVISION_COLORS.len()]
}

/// The time axis's label: seconds for short rollouts, `m:ss` or `h:mm:ss` for longer ones.
fn time_desc(end: f64) -> &'static str {
    if end < 120.0 {
        "time since start (s)"
    } else {
        "time since start (m:ss)"
    }
}

/// A time for an axis label, in the unit [`time_desc`] names.
fn time_label(end: f64) -> impl Fn(&f64) -> String {
    move |seconds| {
        if end < 120.0 {
            let s = seconds.max(0.0);
            if end < 10.0 {
                format!("{s:.1}")
            } else {
                format!("{s:.0}")
            }
        } else {
            clock_label(*seconds)
        }
    }
}

/// `m:ss` or `h:mm:ss`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn clock_label(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A short number for an axis label (by reference: plotters' label formatters take one).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn number_label(v: &f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The time axis: from the start to a little past `end`, never empty.
fn time_range(end: f64) -> std::ops::Range<f64> {
    0.0..(end * 1.02).max(1.0)
}

/// A value range covering `values` with some room, never empty.
fn value_range(values: impl IntoIterator<Item = f64>, floor_zero: bool) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if floor_zero && lo >= 0.0 {
        lo = 0.0;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        hi.abs().max(1.0) * 0.1
    };
    let lo = if floor_zero && lo == 0.0 {
        0.0
    } else {
        lo - pad
    };
    lo..hi + pad
}

type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// Draws into a fresh SVG string; a drawing error (none is expected from a string backend)
/// becomes a note instead of a chart.
fn svg(
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    let mut out = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match result {
        Ok(()) => out,
        Err(e) => format!(
            "<p class=\"note\">chart could not be drawn: {}</p>",
            escape(&e)
        ),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn legend<'a, 'b: 'a, Y: Ranged>(chart: &mut Chart<'a, 'b, Y>) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(GUIDE)
        .label_font((FONT, 12))
        .draw()
        .map_err(err)
}

/// A horizontal line at `y` across the time axis, with a legend entry.
fn hline<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, 'b, Y>,
    end: f64,
    y: f64,
    color: RGBColor,
    label: String,
) -> Result<(), String> {
    let x = time_range(end);
    chart
        .draw_series(DashedLineSeries::new(
            [(x.start, y), (x.end, y)],
            6,
            4,
            color.stroke_width(2),
        ))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    Ok(())
}

/// Verdict-coloured dots.
fn verdict_dots<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, 'b, Y>,
    points: impl IntoIterator<Item = (f64, f64, Mark)>,
) -> Result<(), String> {
    chart
        .draw_series(
            points
                .into_iter()
                .map(|(x, y, mark)| Circle::new((x, y), 4, mark_color(mark).filled())),
        )
        .map_err(err)?;
    Ok(())
}

/// Traffic weight per revision over time, with numbered markers for commands, pauses, the
/// promotion or rollback.
pub(crate) fn traffic(traffic: &Traffic, markers: &[Marker]) -> String {
    svg(HEIGHT + 20, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(44)
            .build_cartesian_2d(time_range(traffic.end), 0.0..108.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(time_desc(traffic.end))
            .y_desc("traffic %")
            .x_label_formatter(&time_label(traffic.end))
            .y_labels(6)
            .label_style((FONT, 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for m in markers {
            let color = marker_color(m.kind);
            chart
                .draw_series(DashedLineSeries::new(
                    [(m.t, 0.0), (m.t, 100.0)],
                    3,
                    3,
                    color.stroke_width(1),
                ))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    m.number.to_string(),
                    (m.t, 106.0),
                    (FONT, 12).into_font().color(&color),
                )))
                .map_err(err)?;
        }
        for (i, revision) in traffic.revisions.iter().enumerate() {
            let color = revision_color(i);
            let mut steps = Vec::new();
            for (k, p) in traffic.points.iter().enumerate() {
                let w = p.weights.get(i).copied().unwrap_or(0.0);
                if k > 0 {
                    let previous = traffic.points[k - 1].weights.get(i).copied().unwrap_or(0.0);
                    steps.push((p.t, previous));
                }
                steps.push((p.t, w));
            }
            if let Some(&(_, last)) = steps.last() {
                steps.push((traffic.end, last));
            }
            chart
                .draw_series(LineSeries::new(steps, color.stroke_width(3)))
                .map_err(err)?
                .label(revision.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(3))
                });
        }
        legend(&mut chart)
    })
}

/// One chart of metrics that measure the same thing: a line per metric (in its revision's
/// colour when the plan names the revision), each metric's bounds as dashed lines, dots
/// coloured by verdict.
pub(crate) fn metric(group: &[&MetricSeries], end: f64) -> String {
    svg(HEIGHT, |root| {
        let values = group.iter().flat_map(|series| {
            series
                .points
                .iter()
                .filter_map(|p| p.value)
                .chain(series.min)
                .chain(series.max)
        });
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(64)
            .build_cartesian_2d(time_range(end), value_range(values, true))
            .map_err(err)?;
        let name = |series: &MetricSeries| match &series.revision {
            Some(r) => format!("{} ({r})", series.name),
            None => series.name.clone(),
        };
        let y_desc = match group {
            [one] => name(one),
            _ => group
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(" / "),
        };
        chart
            .configure_mesh()
            .x_desc(time_desc(end))
            .y_desc(y_desc)
            .x_label_formatter(&time_label(end))
            .y_label_formatter(&number_label)
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        // With several lines a bound says whose it is.
        let whose = |series: &MetricSeries| match (group.len(), &series.revision) {
            (2.., Some(r)) => format!(" ({r})"),
            _ => String::new(),
        };
        for series in group {
            for (bound, word) in [(series.max, "max"), (series.min, "min")] {
                if let Some(bound) = bound {
                    hline(
                        &mut chart,
                        end,
                        bound,
                        LIMIT,
                        format!("{word} {}{}", number_label(&bound), whose(series)),
                    )?;
                }
            }
        }
        for series in group {
            let color = series.role.map_or(LINE, revision_color);
            let line: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter_map(|p| p.value.map(|v| (p.t, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(err)?
                .label(name(series))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            verdict_dots(
                &mut chart,
                series
                    .points
                    .iter()
                    .filter_map(|p| p.value.map(|v| (p.t, v, p.mark))),
            )?;
        }
        legend(&mut chart)
    })
}

/// A sequential test's e-value (log scale) against its rejection line `1 / alpha`.
pub(crate) fn e_value(series: &SequentialSeries, end: f64) -> String {
    svg(HEIGHT, |root| {
        let rejection = series.rejection();
        let (mut lo, mut hi) = (0.5_f64.min(1.0 / rejection), rejection * 4.0);
        for p in &series.points {
            if p.e_value.is_finite() && p.e_value > 0.0 {
                lo = lo.min(p.e_value / 2.0);
                hi = hi.max(p.e_value * 2.0);
            }
        }
        let lo = lo.max(1e-12);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(64)
            .build_cartesian_2d(time_range(end), (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(time_desc(end))
            .y_desc("e-value (log scale)")
            .x_label_formatter(&time_label(end))
            .y_label_formatter(&number_label)
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        let x = time_range(end);
        chart
            .draw_series(DashedLineSeries::new(
                [(x.start, rejection), (x.end, rejection)],
                6,
                4,
                LIMIT.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("rejects at 1/alpha = {}", number_label(&rejection)))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], LIMIT.stroke_width(2)));
        let points: Vec<(f64, f64, Mark)> = series
            .points
            .iter()
            .filter(|p| p.e_value.is_finite() && p.e_value > 0.0)
            .map(|p| (p.t, p.e_value.max(lo), p.mark))
            .collect();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(x, y, _)| (x, y)),
                LINE.stroke_width(2),
            ))
            .map_err(err)?
            .label("e-value")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], LINE.stroke_width(2)));
        verdict_dots(&mut chart, points)?;
        legend(&mut chart)
    })
}

/// A sequential test's confidence sequence narrowing around its estimate, against the
/// tolerance.
pub(crate) fn confidence(series: &SequentialSeries, end: f64) -> String {
    svg(HEIGHT, |root| {
        let finite = series
            .points
            .iter()
            .flat_map(|p| [p.estimate, p.lower, p.upper])
            .flatten()
            .chain(series.tolerance);
        let range = value_range(finite, false);
        let (lo, hi) = (range.start, range.end);
        let effect = series
            .effect
            .clone()
            .unwrap_or_else(|| "estimate".to_owned());
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(64)
            .build_cartesian_2d(time_range(end), range)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(time_desc(end))
            .y_desc(effect.clone())
            .x_label_formatter(&time_label(end))
            .y_label_formatter(&number_label)
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        // The band: an unbounded end reaches the edge of the chart.
        let band: Vec<(f64, f64, f64)> = series
            .points
            .iter()
            .map(|p| {
                (
                    p.t,
                    p.lower.unwrap_or(lo).clamp(lo, hi),
                    p.upper.unwrap_or(hi).clamp(lo, hi),
                )
            })
            .collect();
        if band.len() > 1 {
            let outline: Vec<(f64, f64)> = band
                .iter()
                .map(|&(t, _, u)| (t, u))
                .chain(band.iter().rev().map(|&(t, l, _)| (t, l)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    BAND.mix(0.18).filled(),
                )))
                .map_err(err)?
                .label("confidence sequence")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], BAND.mix(0.18).filled())
                });
        }
        chart
            .draw_series(
                band.iter()
                    .map(|&(t, l, u)| PathElement::new([(t, l), (t, u)], BAND.stroke_width(2))),
            )
            .map_err(err)?;
        if let Some(tolerance) = series.tolerance {
            hline(
                &mut chart,
                end,
                tolerance,
                LIMIT,
                format!("tolerance {}", number_label(&tolerance)),
            )?;
        }
        let estimates: Vec<(f64, f64, Mark)> = series
            .points
            .iter()
            .filter_map(|p| {
                p.estimate
                    .filter(|v| v.is_finite())
                    .map(|e| (p.t, e, p.mark))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(
                estimates.iter().map(|&(x, y, _)| (x, y)),
                LINE.stroke_width(2),
            ))
            .map_err(err)?
            .label(effect)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], LINE.stroke_width(2)));
        verdict_dots(&mut chart, estimates)?;
        legend(&mut chart)
    })
}

/// The judge's score over time against its pass and marginal thresholds.
pub(crate) fn score(judge: &JudgeSeries, end: f64) -> String {
    svg(HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(44)
            .build_cartesian_2d(time_range(end), 0.0..105.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(time_desc(end))
            .y_desc("score")
            .x_label_formatter(&time_label(end))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        hline(
            &mut chart,
            end,
            judge.pass,
            mark_color(Mark::Pass),
            format!("pass {}", judge.pass),
        )?;
        hline(
            &mut chart,
            end,
            judge.marginal,
            mark_color(Mark::Inconclusive),
            format!("marginal {}", judge.marginal),
        )?;
        let points: Vec<(f64, f64, Mark)> = judge
            .scores
            .iter()
            .filter_map(|p| p.value.map(|v| (p.t, v, p.mark)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(x, y, _)| (x, y)),
                LINE.stroke_width(2),
            ))
            .map_err(err)?
            .label("score")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], LINE.stroke_width(2)));
        verdict_dots(&mut chart, points)?;
        legend(&mut chart)
    })
}

/// Empirical CDFs of each revision's values (latencies in seconds, drawn in milliseconds on a
/// log scale).
pub(crate) fn ecdf(distributions: &[Distribution]) -> String {
    svg(HEIGHT + 20, |root| {
        let ms = |v: f64| (v * 1000.0).max(1e-3);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for d in distributions {
            if let (Some(first), Some(last)) = (d.values.first(), d.values.last()) {
                lo = lo.min(ms(*first));
                hi = hi.max(ms(*last));
            }
        }
        if !lo.is_finite() {
            (lo, hi) = (1.0, 10.0);
        }
        let (lo, hi) = (lo / 1.5, (hi * 1.5).max(lo * 2.0));
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(44)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.02)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("latency (ms, log scale)")
            .y_desc("fraction of requests at or below")
            .x_label_formatter(&number_label)
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for (i, d) in distributions.iter().enumerate() {
            let color = revision_color(i);
            let mut steps = Vec::new();
            let mut previous = 0.0;
            for (v, f) in d.ecdf() {
                steps.push((ms(v), previous));
                steps.push((ms(v), f));
                previous = f;
            }
            chart
                .draw_series(LineSeries::new(steps, color.stroke_width(2)))
                .map_err(err)?
                .label(format!("{} (n = {})", d.label, d.values.len()))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(GUIDE)
            .label_font((FONT, 12))
            .draw()
            .map_err(err)
    })
}
