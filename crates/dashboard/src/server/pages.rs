//! The pages: sign-in, the list of rollouts, a rollout's live page and report, and their JSON
//! twins.

use std::fmt::Write as _;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use cutover_core::planner::ActionResult;
use cutover_core::state::Phase;
use cutover_core::{
    Command, CommandRequest, DecisionRecord, Entry, ListFilter, RolloutId, RolloutState,
    StoreError, Summary,
};
use serde::Deserialize;

use super::App;
use super::auth::{COOKIE_NAME, Caller, SESSION_TTL, caller, csrf_ok, same_origin, session_cookie};
use crate::report::html::{CSS, render};
use crate::report::{Report, read_records};

/// The navigation bar: who is signed in, and the token for the sign-out form.
pub(crate) struct Nav {
    pub(crate) who: Option<String>,
    pub(crate) csrf: String,
}

impl Nav {
    pub(crate) fn of(caller: Option<&Caller>) -> Self {
        match caller {
            Some(Caller::Session(session)) => Nav {
                who: Some(session.who.clone()),
                csrf: session.csrf.clone(),
            },
            _ => Nav {
                who: None,
                csrf: String::new(),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    nav: Nav,
    heading: &'a str,
    message: &'a str,
}

/// An HTML page saying what went wrong, with a status.
pub(crate) fn message(
    status: StatusCode,
    caller: Option<&Caller>,
    heading: &str,
    message: &str,
) -> Response {
    let page = MessagePage {
        nav: Nav::of(caller),
        heading,
        message,
    };
    (status, html(render(&page))).into_response()
}

pub(crate) fn html(body: String) -> ([(header::HeaderName, HeaderValue); 1], String) {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
}

/// A path to return to after signing in: a path on this site, never another site.
fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && !next.chars().any(char::is_control);
    if ok {
        next.to_owned()
    } else {
        "/rollouts".to_owned()
    }
}

/// The caller of a page that reads: signed in, or anyone when reads are public. Otherwise
/// the answer is a redirect to the sign-in page.
pub(crate) fn reader(
    app: &App,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<Caller>, Box<Response>> {
    match caller(headers, &app.credentials, &app.sessions) {
        Some(c) => Ok(Some(c)),
        None if app.public_reads => Ok(None),
        None => {
            let next = uri.path_and_query().map_or("/rollouts", |p| p.as_str());
            let to = format!("/login?next={}", percent_encode(next, b"/-_.~"));
            Err(Box::new(Redirect::to(&to).into_response()))
        }
    }
}

/// The caller of an API read, or 401.
pub(crate) fn api_reader(app: &App, headers: &HeaderMap) -> Result<Option<Caller>, Box<Response>> {
    match caller(headers, &app.credentials, &app.sessions) {
        Some(c) => Ok(Some(c)),
        None if app.public_reads => Ok(None),
        None => Err(Box::new(unauthorized())),
    }
}

pub(crate) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        Json(serde_json::json!({ "error": "sign in, or send the token as `Authorization: Bearer TOKEN`" })),
    )
        .into_response()
}

/// A store error as a status and a message for people.
pub(crate) fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::UnknownRollout { .. } => StatusCode::NOT_FOUND,
        StoreError::Finished { .. } | StoreError::KeyReused { .. } => StatusCode::CONFLICT,
        StoreError::InvalidCommand { .. } => StatusCode::BAD_REQUEST,
        _ if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn parse_id(id: &str) -> Result<RolloutId, String> {
    id.parse::<RolloutId>().map_err(|e| e.to_string())
}

pub(crate) async fn home() -> Redirect {
    Redirect::to("/rollouts")
}

pub(crate) async fn not_found(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let c = caller(&headers, &app.credentials, &app.sessions);
    message(
        StatusCode::NOT_FOUND,
        c.as_ref(),
        "Not found",
        "There is no such page.",
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            ),
        ],
        CSS,
    )
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            ),
        ],
        include_str!("../../assets/live.js"),
    )
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    nav: Nav,
    next: &'a str,
    name: &'a str,
    error: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

pub(crate) async fn login_form(Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref().unwrap_or("/rollouts"));
    html(render(&LoginPage {
        nav: Nav::of(None),
        next: &next,
        name: "",
        error: None,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    name: String,
    secret: String,
    #[serde(default)]
    next: String,
}

pub(crate) async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(&form.next);
    let again = |status, error: &str| {
        let page = LoginPage {
            nav: Nav::of(None),
            next: &next,
            name: &form.name,
            error: Some(error),
        };
        (status, html(render(&page))).into_response()
    };
    if !same_origin(&headers) {
        return again(
            StatusCode::FORBIDDEN,
            "This form must be sent from the dashboard's own page.",
        );
    }
    let name = form.name.trim().to_owned();
    if let Err(e) = CommandRequest::new(Command::Pause, name.clone()).validate() {
        return again(StatusCode::BAD_REQUEST, &format!("Your name: {e}"));
    }
    if !app.credentials.accepts(&form.secret) {
        tracing::warn!(name = %name, "dashboard sign-in refused: wrong token or password");
        return again(StatusCode::UNAUTHORIZED, "Wrong token or password.");
    }
    let (cookie, _) = match app.sessions.start(name.clone()) {
        Ok(started) => started,
        Err(e) => return again(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    tracing::info!(name = %name, "dashboard sign-in");
    let set = format!(
        "{COOKIE_NAME}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&set) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(cookie) = session_cookie(&headers)
        && let Some(session) = app.sessions.get(&cookie)
    {
        if !same_origin(&headers) || !csrf_ok(&session, &form.csrf) {
            return message(
                StatusCode::FORBIDDEN,
                None,
                "Refused",
                "The sign-out form did not come from this dashboard.",
            );
        }
        app.sessions.end(&cookie);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cutover_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

/// The phases a list can be filtered by: value and label.
const PHASES: [(&str, &str); 8] = [
    ("", "all"),
    ("active", "not finished"),
    ("pre_flight", "pre-flight"),
    ("expanding", "expanding"),
    ("progressing", "progressing"),
    ("promoting", "promoting"),
    ("rolling_back", "rolling back"),
    ("done", "done"),
];

fn phase_filter(value: &str) -> Option<Vec<Phase>> {
    Some(match value {
        "" => Vec::new(),
        "active" => ListFilter::default().active().phases,
        "pre_flight" => vec![Phase::PreFlight],
        "expanding" => vec![Phase::Expanding],
        "progressing" => vec![Phase::Progressing],
        "promoting" => vec![Phase::Promoting],
        "rolling_back" => vec![Phase::RollingBack],
        "done" => vec![Phase::Done],
        _ => return None,
    })
}

/// Rows on a page of the list.
pub(crate) const PAGE_ROWS: usize = 50;

#[derive(Debug, Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    phase: String,
    #[serde(default)]
    q: String,
    after: Option<String>,
    limit: Option<usize>,
}

/// One page of the list.
struct ListPage {
    rows: Vec<Summary>,
    next: Option<RolloutId>,
}

/// One `list` call per page, a search included: the store matches ids before it reads a
/// rollout's state.
async fn list_page(app: &App, q: &ListQuery) -> Result<ListPage, (StatusCode, String)> {
    let phases = phase_filter(&q.phase).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "unknown phase `{}`",
                q.phase.chars().take(40).collect::<String>()
            ),
        )
    })?;
    let limit = q.limit.unwrap_or(PAGE_ROWS).clamp(1, 1000);
    let mut filter = ListFilter::default()
        .phases(phases)
        .id_contains(q.q.trim())
        .limit(limit + 1);
    if let Some(a) = q.after.as_deref().filter(|a| !a.is_empty()) {
        filter = filter.after(parse_id(a).map_err(|e| (StatusCode::BAD_REQUEST, e))?);
    }
    let mut rows = app
        .store
        .list(&filter)
        .await
        .map_err(|e| (super::pages::store_status(&e), chain(&e)))?;
    let next = (rows.len() > limit).then(|| rows[limit - 1].id.clone());
    rows.truncate(limit);
    Ok(ListPage { rows, next })
}

struct Row {
    id: String,
    strategy: String,
    phase: String,
    step: String,
    traffic: String,
    status: String,
    status_class: &'static str,
    owner: String,
    updated: String,
}

fn row(s: &Summary) -> Row {
    let (status, status_class) = match (&s.outcome, &s.paused) {
        (Some(cutover_core::state::Final::Outcome(o)), _) => (
            o.to_string(),
            if matches!(o, cutover_core::Outcome::Promoted) {
                "pass"
            } else {
                "fail"
            },
        ),
        (Some(cutover_core::state::Final::Failed { error }), _) => {
            (format!("failed: {error}"), "fail")
        }
        (None, Some(p)) => (format!("paused: {p}"), "inconclusive"),
        (None, None) => ("running".to_owned(), ""),
    };
    Row {
        id: s.id.to_string(),
        strategy: s.strategy.clone(),
        phase: s.phase.to_string(),
        step: if s.phase == Phase::Progressing {
            format!(
                "{}/{}{}",
                s.step + 1,
                s.steps,
                s.step_kind
                    .as_ref()
                    .map(|k| format!(" {k}"))
                    .unwrap_or_default()
            )
        } else {
            String::new()
        },
        traffic: s
            .split
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        status,
        status_class,
        owner: s
            .lease
            .as_ref()
            .map(|l| l.owner.clone())
            .unwrap_or_default(),
        updated: s.updated_at.to_string(),
    }
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListTemplate<'a> {
    nav: Nav,
    phases: [(&'static str, &'static str); 8],
    phase: &'a str,
    q: &'a str,
    rows: Vec<Row>,
    first_page: bool,
    first_link: String,
    next_link: Option<String>,
}

fn query_link(phase: &str, q: &str, after: Option<&str>) -> String {
    let mut pairs = vec![("phase", phase), ("q", q)];
    if let Some(a) = after {
        pairs.push(("after", a));
    }
    let encoded = serde_urlencoded_pairs(&pairs);
    format!("/rollouts?{encoded}")
}

/// `text` with every byte but ASCII letters, digits and `keep` percent-encoded.
fn percent_encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `a=b&c=d`, percent-encoded.
fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v, b"-_.~")))
        .collect::<Vec<_>>()
        .join("&")
}

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
    let page = match list_page(&app, &q).await {
        Ok(p) => p,
        Err((status, e)) => return message(status, c.as_ref(), "Cannot list rollouts", &e),
    };
    let template = ListTemplate {
        nav: Nav::of(c.as_ref()),
        phases: PHASES,
        phase: &q.phase,
        q: &q.q,
        rows: page.rows.iter().map(row).collect(),
        first_page: q.after.as_deref().is_none_or(str::is_empty),
        first_link: query_link(&q.phase, &q.q, None),
        next_link: page
            .next
            .as_ref()
            .map(|n| query_link(&q.phase, &q.q, Some(n.as_str()))),
    };
    html(render(&template)).into_response()
}

pub(crate) async fn api_list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = api_reader(&app, &headers) {
        return *r;
    }
    match list_page(&app, &q).await {
        Ok(page) => Json(serde_json::json!({
            "rollouts": page.rows,
            "next": page.next,
        }))
        .into_response(),
        Err((status, e)) => (status, Json(serde_json::json!({ "error": e }))).into_response(),
    }
}

#[derive(Template)]
#[template(path = "rollout.html")]
struct RolloutTemplate {
    nav: Nav,
    id: String,
    csrf: Option<String>,
    gates: Vec<String>,
    has_checklist: bool,
    checklist_blocked: bool,
    body: String,
}

/// A rollout a page shows: who asks, its id, its state and its whole log; or the page that
/// says why not (`doing` names what could not be done).
async fn open(
    app: &App,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
    doing: &str,
) -> Result<(Option<Caller>, RolloutId, RolloutState, Vec<DecisionRecord>), Box<Response>> {
    let c = reader(app, headers, uri)?;
    let id = parse_id(id).map_err(|e| {
        Box::new(message(
            StatusCode::BAD_REQUEST,
            c.as_ref(),
            "No such rollout",
            &e,
        ))
    })?;
    match crate::report::load(app.store.as_ref(), &id).await {
        Ok((state, records)) => Ok((c, id, state, records)),
        Err(e) => Err(Box::new(message(
            store_status(&e),
            c.as_ref(),
            doing,
            &chain(&e),
        ))),
    }
}

pub(crate) async fn rollout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let (c, id, state, records) =
        match open(&app, &headers, &uri, &id, "Cannot show the rollout").await {
            Ok(found) => found,
            Err(r) => return *r,
        };
    let body = Report::new(&records).state(&state).render_body();
    // The latest checklist run the log recorded, if any: the link says whether it passed.
    let latest_checklist = records.iter().rev().find_map(|r| match &r.entry {
        Entry::Decision {
            result: Some(ActionResult::Checklist { checklist, .. }),
            ..
        } => Some(checklist),
        _ => None,
    });
    let template = RolloutTemplate {
        nav: Nav::of(c.as_ref()),
        id: id.to_string(),
        csrf: match &c {
            Some(Caller::Session(session)) => Some(session.csrf.clone()),
            _ => None,
        },
        gates: state.setup.gates.iter().map(|g| g.name.clone()).collect(),
        has_checklist: latest_checklist.is_some(),
        checklist_blocked: latest_checklist.is_some_and(|c| !c.passed()),
        body,
    };
    html(render(&template)).into_response()
}

pub(crate) async fn report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let (_, id, state, records) =
        match open(&app, &headers, &uri, &id, "Cannot write the report").await {
            Ok(found) => found,
            Err(r) => return *r,
        };
    let body = Report::new(&records).state(&state).render();
    let disposition = HeaderValue::from_str(&format!("inline; filename=\"{id}-report.html\""))
        .unwrap_or(HeaderValue::from_static("inline"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, app.report_csp.clone()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct RecordsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn api_rollout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RecordsQuery>,
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
    let stored = match app.store.load(&id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return bad(StatusCode::NOT_FOUND, format!("no rollout `{id}`")),
        Err(e) => return bad(store_status(&e), chain(&e)),
    };
    let lease = app.store.lease(&id).await.ok().flatten();
    let after = q.after.unwrap_or(0);
    let records = match q.limit {
        Some(limit) => app.store.records(&id, after, limit.min(10_000)).await,
        None => read_records(app.store.as_ref(), &id, after).await,
    };
    match records {
        Ok(records) => Json(serde_json::json!({
            "summary": Summary::of(&stored.state, stored.version, lease),
            "records": records,
        }))
        .into_response(),
        Err(e) => bad(store_status(&e), chain(&e)),
    }
}
