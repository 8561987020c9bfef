//! The report: one self-contained HTML file that shows what a rollout did and why.

mod charts;
pub(crate) mod data;
pub(crate) mod html;

use cutover_core::{DecisionRecord, RolloutId, RolloutState, StateStore, StoreError};

use self::data::ReportData;
use self::html::{Body, ReportPage, View};

/// How many records one read of the decision log asks for.
pub(crate) const PAGE: usize = 1000;

/// A rollout's report, rendered as one HTML document that needs nothing else: no script, no
/// stylesheet, font or image from anywhere (the charts are inline SVG), readable offline and
/// printable.
///
/// It shows traffic weight per revision over time with pauses, commands (who and why), the
/// promotion or rollback marked; every analysis over time (verdicts, metrics against their
/// bounds, a sequential test's e-value against its rejection line and its confidence sequence,
/// the Kayenta judge's score and per-metric table); latency distributions where given; gates,
/// approvals and migrations; the outcome and why; and the whole decision log.
///
/// The decision log alone is enough (it is what `--out` of the examples writes); the stored
/// state adds the plan's bounds, the revisions and where a running rollout stands.
///
/// ```
/// use cutover_dashboard::Report;
/// let records: Vec<cutover_core::DecisionRecord> = Vec::new();
/// let html = Report::new(&records).id("checkout").render();
/// assert!(html.starts_with("<!DOCTYPE html>"));
/// assert!(html.contains("checkout"));
/// ```
#[derive(Debug, Clone)]
pub struct Report<'a> {
    records: &'a [DecisionRecord],
    state: Option<&'a RolloutState>,
    id: Option<String>,
    latencies: Vec<(String, Vec<f64>)>,
}

impl<'a> Report<'a> {
    /// The report of a decision log, in `seq` order.
    pub fn new(records: &'a [DecisionRecord]) -> Self {
        Report {
            records,
            state: None,
            id: None,
            latencies: Vec::new(),
        }
    }

    /// Adds the rollout's stored state: the plan's bounds, the revisions, the phase.
    pub fn state(mut self, state: &'a RolloutState) -> Self {
        self.state = Some(state);
        self
    }

    /// Names the rollout (without a state, the report is titled "rollout").
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds one revision's request latencies, in seconds, drawn as an empirical CDF beside
    /// the other revisions'.
    pub fn latencies(mut self, revision: impl Into<String>, seconds: impl Into<Vec<f64>>) -> Self {
        self.latencies.push((revision.into(), seconds.into()));
        self
    }

    pub(crate) fn data(&self) -> ReportData {
        ReportData::new(
            self.id.as_deref(),
            self.records,
            self.state,
            &self.latencies,
        )
    }

    /// The HTML document.
    pub fn render(&self) -> String {
        let data = self.data();
        html::render(&ReportPage {
            view: View::new(&data, self.state.is_some()),
            css: html::CSS,
            version: env!("CARGO_PKG_VERSION"),
        })
    }

    /// The report's body alone (what the dashboard's live page shows and updates).
    pub(crate) fn render_body(&self) -> String {
        let data = self.data();
        html::render(&Body {
            view: View::new(&data, self.state.is_some()),
        })
    }
}

/// A rollout's stored state and its whole decision log, read from any store: what
/// [`Report`] needs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_core::MemoryStateStore;
/// let store = MemoryStateStore::new();
/// let id = "checkout".parse()?;
/// assert!(cutover_dashboard::load(&store, &id).await.is_err(), "no such rollout");
/// # Ok(()) }
/// ```
pub async fn load(
    store: &dyn StateStore,
    id: &RolloutId,
) -> Result<(RolloutState, Vec<DecisionRecord>), StoreError> {
    let Some(stored) = store.load(id).await? else {
        return Err(StoreError::UnknownRollout {
            id: id.clone(),
            store: store.name().to_owned(),
        });
    };
    let records = read_records(store, id, 0).await?;
    Ok((stored.state, records))
}

/// Every record with `seq > after`, a page at a time.
pub(crate) async fn read_records(
    store: &dyn StateStore,
    id: &RolloutId,
    mut after: u64,
) -> Result<Vec<DecisionRecord>, StoreError> {
    let mut records = Vec::new();
    loop {
        let page = store.records(id, after, PAGE).await?;
        let full = page.len() == PAGE;
        if let Some(last) = page.last() {
            after = last.seq;
        }
        records.extend(page);
        if !full {
            return Ok(records);
        }
    }
}
