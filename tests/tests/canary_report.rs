//! The HTML report of the canary example's good and bad runs (the example's own code, run
//! here with real traffic through the local proxy) is valid HTML with a chart per analysis.

#[allow(dead_code)]
#[path = "../../examples/canary.rs"]
mod canary;

use std::collections::BTreeSet;
use std::time::Duration;

use cutover::planner::{Action, Decision};
use cutover::{DecisionRecord, Entry};
use scraper::{Html, Selector};

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

/// Runs the example and checks its report; returns the report's outcome class.
fn run_and_check(bad: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let args = canary::Args {
        v2_error_rate: if bad { 0.05 } else { 0.0 },
        v2_latency: Duration::ZERO,
        out: dir.path().join("decisions.json"),
        report: dir.path().join("report.html"),
        metrics: false,
    };
    let (out, report) = (args.out.clone(), args.report.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let code = runtime.block_on(canary::run(args)).unwrap();
    assert_eq!(
        format!("{code:?}"),
        format!("{:?}", std::process::ExitCode::SUCCESS),
        "the example's expected outcome"
    );

    let records: Vec<DecisionRecord> =
        serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    let analyses: BTreeSet<String> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Decision {
                decision: Decision::Apply(Action::Measure { analysis, .. }),
                ..
            } => Some(analysis.clone()),
            _ => None,
        })
        .collect();
    assert!(!analyses.is_empty(), "the run measured");

    let html = std::fs::read_to_string(report).unwrap();
    let doc = Html::parse_document(&html);
    assert!(
        doc.errors.is_empty(),
        "the report is valid HTML: {:?}",
        doc.errors
    );
    assert!(
        select(&doc, "script").is_empty() && select(&doc, "link").is_empty(),
        "self-contained"
    );
    assert_self_contained(&doc);
    assert_eq!(select(&doc, "figure[data-chart=traffic] svg").len(), 1);
    for name in &analyses {
        let charts = select(&doc, &format!("figure.chart[data-analysis=\"{name}\"] svg"));
        // The canary's threshold analysis has two metrics: error rate and p99 latency.
        assert_eq!(charts.len(), 2, "a chart per metric of analysis `{name}`");
    }
    let measured = records
        .iter()
        .filter(|r| {
            matches!(
                &r.entry,
                Entry::Decision {
                    decision: Decision::Apply(Action::Measure { .. }),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        select(&doc, "details.measurements tbody tr").len(),
        measured,
        "every measurement listed"
    );
    assert_eq!(
        select(&doc, "table.log tbody tr").len(),
        records.len(),
        "the whole decision log"
    );
    assert_eq!(
        select(&doc, "figure[data-chart=latency] svg").len(),
        1,
        "latencies recorded by the proxy"
    );
    select(&doc, "#outcome")[0]
        .value()
        .attr("data-outcome")
        .unwrap()
        .to_owned()
}

#[test]
fn reports_of_the_good_and_the_bad_run() {
    assert_eq!(run_and_check(false), "promoted");
    assert_eq!(run_and_check(true), "rolled-back");
}

/// Nothing in the report is fetched from anywhere: every `src`, `href` (and the like) is an
/// in-page `#` reference or a `data:` URI, and so is every CSS `url(...)`; no `@import`.
fn assert_self_contained(doc: &Html) {
    let inside = |v: &str| {
        let v = v.trim().trim_start_matches(['"', '\'']);
        v.starts_with('#') || v.starts_with("data:")
    };
    let mut css = Vec::new();
    for node in doc.root_element().descendants() {
        let Some(el) = scraper::ElementRef::wrap(node) else {
            continue;
        };
        for (name, value) in el.value().attrs() {
            match name {
                "src" | "href" | "srcset" | "action" | "formaction" | "poster" | "data"
                | "background" => assert!(
                    inside(value),
                    "<{}> {name}={value:?} points outside the file",
                    el.value().name()
                ),
                "style" => css.push(value.to_owned()),
                _ => {}
            }
        }
        if el.value().name() == "style" {
            css.push(el.text().collect());
        }
    }
    for sheet in css {
        assert!(!sheet.contains("@import"), "CSS imports: {sheet}");
        for after in sheet.split("url(").skip(1) {
            assert!(inside(after), "CSS loads url({after:.40})");
        }
    }
}
