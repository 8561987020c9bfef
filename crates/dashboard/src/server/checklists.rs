//! The checklist pages: the latest pre-flight checklist run of every rollout that keeps an audit
//! document, and every run of one rollout, with their JSON twins.
//!
//! Runs come from the checklist audit documents (kind
//! [`AUDIT_KIND`](cutover_core::checklist::AUDIT_KIND), kept by
//! [`Checklist::audit_to`](cutover_core::Checklist::audit_to)); a rollout without one shows the
//! runs its decision log recorded.

use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cutover_core::checklist::{
    AUDIT_KIND, CheckRecord, CheckStatus, ChecklistRecord, ChecklistReport,
};
use cutover_core::planner::ActionResult;
use cutover_core::{DecisionRecord, Document, Entry, ErrorKind, RolloutId, StoreError};
use serde::{Deserialize, Serialize};

use super::App;
use super::pages::{
    Nav, PAGE_ROWS, api_reader, chain, html, message, parse_id, reader, store_status,
};
use crate::report::html::render;
use crate::report::read_records;

/// Where a run was read from.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    /// The checklist's audit document.
    Audit,
    /// The rollout's decision log.
    Log,
}

/// One checklist run of one rollout, as the JSON API answers it.
#[derive(Debug, Serialize)]
struct Run {
    rollout: RolloutId,
    source: Source,
    passed: bool,
    /// The ids of the checks that stopped the checklist.
    blocking: Vec<String>,
    record: ChecklistRecord,
}

impl Run {
    fn new(rollout: RolloutId, source: Source, record: ChecklistRecord) -> Self {
        let blocking: Vec<String> = record
            .checks
            .iter()
            .filter(|c| c.blocks())
            .map(|c| c.id.clone())
            .collect();
        Run {
            rollout,
            source,
            passed: blocking.is_empty(),
            blocking,
            record,
        }
    }
}

/// The runs kept in an audit document, latest first, at most `limit`.
fn audit_runs(rollout: &RolloutId, doc: &Document, limit: usize) -> Vec<Run> {
    doc.body
        .get("reports")
        .and_then(serde_json::Value::as_array)
        .map(|reports| {
            reports
                .iter()
                .rev()
                // A report this version cannot read is left out rather than failing the page.
                .filter_map(|r| serde_json::from_value::<ChecklistReport>(r.clone()).ok())
                .take(limit)
                .map(|r| Run::new(rollout.clone(), Source::Audit, ChecklistRecord::from(&r)))
                .collect()
        })
        .unwrap_or_default()
}

/// The runs a decision log recorded, latest first.
fn log_runs(rollout: &RolloutId, records: &[DecisionRecord]) -> Vec<Run> {
    records
        .iter()
        .rev()
        .filter_map(|r| match &r.entry {
            Entry::Decision {
                result: Some(ActionResult::Checklist { checklist, .. }),
                ..
            } => Some(Run::new(
                rollout.clone(),
                Source::Log,
                (**checklist).clone(),
            )),
            _ => None,
        })
        .collect()
}

/// Whether a store error says the store keeps no documents.
fn unsupported(e: &StoreError) -> bool {
    matches!(e, StoreError::Provider(p) if p.kind() == ErrorKind::Unsupported)
}

/// A row of a run's table.
struct Row {
    category: String,
    id: String,
    status: &'static str,
    /// `status-<status>`; `status-exempted` when exempted, `status-warn` for an advisory
    /// check that did not pass: only what blocks is red.
    class: String,
    verdict: String,
    required: bool,
    blocks: bool,
    message: String,
    hint: String,
    exemption: String,
    fix: String,
}

fn row(c: &CheckRecord) -> Row {
    let status = c.status.as_str();
    Row {
        category: c.category.clone(),
        id: c.id.clone(),
        status,
        class: if c.exempted.is_some() {
            "status-exempted".to_owned()
        } else if !c.required && c.status.blocks() {
            "status-warn".to_owned()
        } else {
            format!("status-{status}")
        },
        verdict: c.verdict(),
        required: c.required,
        blocks: c.blocks(),
        message: c.message.clone(),
        hint: c.hint.clone().unwrap_or_default(),
        exemption: c
            .exempted
            .as_ref()
            .map(|e| format!("by {} until {}: {}", e.by, e.expires, e.reason))
            .unwrap_or_default(),
        fix: c
            .fix
            .as_ref()
            .map(|f| {
                format!(
                    "{} — {} ({}; was {})",
                    f.description,
                    if f.applied { "applied" } else { "failed" },
                    f.message,
                    f.status_before
                )
            })
            .unwrap_or_default(),
    }
}

/// A run as the page shows it.
struct RunView {
    rollout: String,
    checklist: String,
    when: String,
    passed: bool,
    counts: String,
    source: &'static str,
    rows: Vec<Row>,
}

fn view(run: &Run) -> RunView {
    let r = &run.record;
    let counts = [
        CheckStatus::Pass,
        CheckStatus::Warn,
        CheckStatus::Pending,
        CheckStatus::Fail,
        CheckStatus::Error,
    ]
    .iter()
    .map(|s| format!("{} {s}", r.count(*s)))
    .chain([format!("{} exempted", r.exemptions_used().count())])
    .chain([format!("{} fixed", r.fixes().count())])
    .collect::<Vec<_>>()
    .join(", ");
    RunView {
        rollout: run.rollout.to_string(),
        checklist: r.checklist.clone(),
        when: r.finished_at.to_string(),
        passed: run.passed,
        counts,
        source: match run.source {
            Source::Audit => "audit document",
            Source::Log => "decision log",
        },
        rows: r.checks.iter().map(row).collect(),
    }
}

#[derive(Template)]
#[template(path = "checklists.html")]
struct ChecklistsPage {
    nav: Nav,
    /// Set on one rollout's page.
    rollout: Option<String>,
    runs: Vec<RunView>,
    not_passed: usize,
    note: Option<String>,
    next_link: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// The latest run of each rollout with an audit document, a page at a time (by rollout id).
/// `Ok(None)`: the store keeps no documents.
async fn latest_runs(
    app: &App,
    q: &ListQuery,
) -> Result<Option<(Vec<Run>, Option<RolloutId>)>, (StatusCode, String)> {
    let limit = q.limit.unwrap_or(PAGE_ROWS).clamp(1, 1000);
    let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => Some(parse_id(a).map_err(|e| (StatusCode::BAD_REQUEST, e))?),
        None => None,
    };
    let docs = match app.store.list_documents(AUDIT_KIND, after, limit + 1).await {
        Ok(docs) => docs,
        Err(e) if unsupported(&e) => return Ok(None),
        Err(e) => return Err((store_status(&e), chain(&e))),
    };
    let next = (docs.len() > limit).then(|| docs[limit - 1].0.clone());
    let runs = docs
        .iter()
        .take(limit)
        .filter_map(|(id, doc)| audit_runs(id, doc, 1).into_iter().next())
        .collect();
    Ok(Some((runs, next)))
}

const NO_DOCUMENTS: &str = "This store keeps no documents, so checklist runs are listed only on each rollout's checklist page (from its decision log).";

pub(crate) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ListQuery>,
) -> Response {
    let c = match reader(&app, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (runs, next, note) = match latest_runs(&app, &q).await {
        Ok(Some((runs, next))) => (runs, next, None),
        Ok(None) => (Vec::new(), None, Some(NO_DOCUMENTS.to_owned())),
        Err((status, e)) => return message(status, c.as_ref(), "Cannot list checklists", &e),
    };
    let page = ChecklistsPage {
        nav: Nav::of(c.as_ref()),
        rollout: None,
        not_passed: runs.iter().filter(|r| !r.passed).count(),
        runs: runs.iter().map(view).collect(),
        note,
        next_link: next.map(|n| format!("/checklists?after={n}")),
    };
    html(render(&page)).into_response()
}

pub(crate) async fn api_list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = api_reader(&app, &headers) {
        return *r;
    }
    match latest_runs(&app, &q).await {
        Ok(Some((runs, next))) => {
            Json(serde_json::json!({ "checklists": runs, "next": next })).into_response()
        }
        Ok(None) => {
            Json(serde_json::json!({ "checklists": [], "next": null, "note": NO_DOCUMENTS }))
                .into_response()
        }
        Err((status, e)) => (status, Json(serde_json::json!({ "error": e }))).into_response(),
    }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RunsQuery {
    runs: Option<usize>,
}

/// How many runs one rollout's page shows unless asked.
const RUNS_SHOWN: usize = 10;

/// Every run of `id`, latest first: from its audit document, else from its decision log.
async fn rollout_runs(app: &App, id: &RolloutId) -> Result<Vec<Run>, StoreError> {
    match app.store.load_document(AUDIT_KIND, id).await {
        Ok(Some(doc)) => {
            let runs = audit_runs(id, &doc, usize::MAX);
            if !runs.is_empty() {
                return Ok(runs);
            }
        }
        Ok(None) => {}
        Err(e) if unsupported(&e) => {}
        Err(e) => return Err(e),
    }
    if app.store.load(id).await?.is_none() {
        return Err(StoreError::UnknownRollout {
            id: id.clone(),
            store: app.store.name().to_owned(),
        });
    }
    let records = read_records(app.store.as_ref(), id, 0).await?;
    Ok(log_runs(id, &records))
}

pub(crate) async fn rollout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Response {
    let c = match reader(&app, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return message(StatusCode::BAD_REQUEST, c.as_ref(), "No such rollout", &e),
    };
    let mut runs = match rollout_runs(&app, &id).await {
        Ok(runs) => runs,
        Err(e) => {
            return message(
                store_status(&e),
                c.as_ref(),
                "Cannot show the checklist",
                &chain(&e),
            );
        }
    };
    let total = runs.len();
    runs.truncate(q.runs.unwrap_or(RUNS_SHOWN).clamp(1, 100));
    let note = if total == 0 {
        Some("No checklist ran for this rollout.".to_owned())
    } else if total > runs.len() {
        Some(format!(
            "The latest {} of {total} runs; /api/rollouts/{id}/checklist has them all.",
            runs.len()
        ))
    } else {
        None
    };
    let page = ChecklistsPage {
        nav: Nav::of(c.as_ref()),
        rollout: Some(id.to_string()),
        not_passed: runs.iter().filter(|r| !r.passed).count(),
        runs: runs.iter().map(view).collect(),
        note,
        next_link: None,
    };
    html(render(&page)).into_response()
}

pub(crate) async fn api_rollout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = api_reader(&app, &headers) {
        return *r;
    }
    let bad = |status: StatusCode, e: String| {
        (status, Json(serde_json::json!({ "error": e }))).into_response()
    };
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    match rollout_runs(&app, &id).await {
        Ok(runs) => Json(serde_json::json!({ "rollout": id, "runs": runs })).into_response(),
        Err(e) => bad(store_status(&e), chain(&e)),
    }
}
