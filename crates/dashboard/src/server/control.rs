//! Controls: commands sent through the store's inbox, with who and why.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use cutover_core::{Command, CommandRequest, QueuedCommand, RolloutId};
use serde::Deserialize;

use super::App;
use super::auth::{Caller, caller, csrf_ok, same_origin};
use super::pages::{chain, message, parse_id, store_status, unauthorized};

/// A command from the live page's form.
#[derive(Deserialize)]
pub(crate) struct CommandForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    reason: String,
    subject: Option<String>,
}

/// A command from a program.
#[derive(Deserialize)]
pub(crate) struct CommandBody {
    command: String,
    by: String,
    reason: String,
    subject: Option<String>,
    key: Option<String>,
}

/// Sends a command; the error is a status and a message for people.
async fn send(
    app: &App,
    id: &RolloutId,
    request: CommandRequest,
) -> Result<QueuedCommand, (StatusCode, String)> {
    if request.reason.trim().is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "give a reason: it is recorded with the command".to_owned(),
        ));
    }
    request
        .validate()
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    // Only rollouts that exist: the store refuses the others, but check first so that no
    // store is asked to track an id it never had.
    match app.store.load(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err((StatusCode::NOT_FOUND, format!("no rollout `{id}`"))),
        Err(e) => return Err((store_status(&e), chain(&e))),
    }
    let queued = app
        .store
        .send(id, &request, app.clock.now())
        .await
        .map_err(|e| (store_status(&e), chain(&e)))?;
    tracing::info!(
        rollout = %id,
        command = %queued.request.command,
        by = %queued.request.by,
        seq = queued.seq,
        "dashboard sent a command"
    );
    Ok(queued)
}

fn parse_command(
    command: &str,
    subject: Option<String>,
    by: String,
    reason: &str,
) -> Result<CommandRequest, (StatusCode, String)> {
    let command: Command = command
        .parse()
        .map_err(|e: cutover_core::CommandError| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut request = CommandRequest::new(command, by).reason(reason.trim());
    if let Some(subject) = subject.filter(|s| !s.is_empty()) {
        request = request.subject(subject);
    }
    Ok(request)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn queued_message(q: &QueuedCommand) -> String {
    format!(
        "{} sent as command #{} by {}; the engine applies it when it next looks at the inbox",
        q.request.command, q.seq, q.request.by
    )
}

/// `POST /rollouts/{id}/commands`: the live page's controls. Needs a signed-in browser, a
/// request from the dashboard's own origin, and the session's CSRF token.
pub(crate) async fn form(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CommandForm>,
) -> Response {
    let json = wants_json(&headers);
    let fail = |status: StatusCode, c: Option<&Caller>, text: &str| {
        if json {
            (
                status,
                Json(serde_json::json!({ "ok": false, "message": text })),
            )
                .into_response()
        } else {
            message(status, c, "Command not sent", text)
        }
    };
    let Some(Caller::Session(session)) = caller(&headers, &app.credentials, &app.sessions) else {
        return fail(StatusCode::UNAUTHORIZED, None, "Sign in to send commands.");
    };
    let c = Some(Caller::Session(session.clone()));
    if !same_origin(&headers) || !csrf_ok(&session, &form.csrf) {
        tracing::warn!(who = %session.who, "dashboard refused a command without a valid CSRF token");
        return fail(
            StatusCode::FORBIDDEN,
            c.as_ref(),
            "The form did not come from this dashboard (missing or wrong CSRF token).",
        );
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return fail(StatusCode::BAD_REQUEST, c.as_ref(), &e),
    };
    let request = match parse_command(
        &form.command,
        form.subject,
        session.who.clone(),
        &form.reason,
    ) {
        Ok(r) => r,
        Err((status, e)) => return fail(status, c.as_ref(), &e),
    };
    match send(&app, &id, request).await {
        Ok(queued) if json => Json(serde_json::json!({
            "ok": true,
            "seq": queued.seq,
            "message": queued_message(&queued),
        }))
        .into_response(),
        Ok(_) => Redirect::to(&format!("/rollouts/{id}")).into_response(),
        Err((status, e)) => fail(status, c.as_ref(), &e),
    }
}

/// `POST /api/rollouts/{id}/commands`: for programs, with the bearer token; the body names
/// the command, who sends it and why, and may carry an idempotency key.
pub(crate) async fn api(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<CommandBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let fail = |status: StatusCode, text: String| {
        (
            status,
            Json(serde_json::json!({ "ok": false, "error": text })),
        )
            .into_response()
    };
    // Programs use the bearer token; a browser session would make this open to CSRF.
    if !matches!(
        caller(&headers, &app.credentials, &app.sessions),
        Some(Caller::Bearer)
    ) {
        return unauthorized();
    }
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e),
    };
    let mut request = match parse_command(&body.command, body.subject, body.by, &body.reason) {
        Ok(r) => r,
        Err((status, e)) => return fail(status, e),
    };
    request.key = body.key;
    match send(&app, &id, request).await {
        Ok(queued) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "ok": true, "command": queued })),
        )
            .into_response(),
        Err((status, e)) => fail(status, e),
    }
}
