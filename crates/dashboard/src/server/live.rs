//! The live page's updates: server-sent events carrying the report's body, sent whenever
//! the store says the rollout changed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cutover_core::{DecisionRecord, RolloutId, Watch};
use futures_util::Stream;

use super::App;
use super::pages::{chain, message, parse_id, reader, store_status};
use crate::report::{Report, read_records};

/// At most one update per this interval: a burst of decisions becomes one update.
const COALESCE: Duration = Duration::from_millis(100);

/// What one live page's stream knows.
struct Live {
    app: Arc<App>,
    id: RolloutId,
    watch: Watch,
    records: Vec<DecisionRecord>,
    version: u64,
    last_seq: u64,
    /// The first event goes out without waiting for a change.
    first: bool,
}

impl Live {
    /// Waits until the store says the rollout may have changed; `false` when it never will
    /// (the store dropped the rollout's channel).
    async fn changed(&mut self) -> bool {
        match &mut self.watch {
            Watch::Notified(rx) => rx.changed().await.is_ok(),
            Watch::Poll(every) => {
                tokio::time::sleep(*every).await;
                true
            }
            _ => {
                tokio::time::sleep(cutover_core::store::DEFAULT_POLL_INTERVAL).await;
                true
            }
        }
    }

    /// The new body, if the state or the log moved since the last one; an `error` event if
    /// the store failed.
    async fn update(&mut self) -> Option<Event> {
        let stored = match self.app.store.load(&self.id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                return Some(
                    Event::default()
                        .event("gone")
                        .data("the rollout is no longer in the store"),
                );
            }
            Err(e) => return Some(Event::default().event("error").data(chain(&e))),
        };
        let fresh = match read_records(self.app.store.as_ref(), &self.id, self.last_seq).await {
            Ok(fresh) => fresh,
            Err(e) => return Some(Event::default().event("error").data(chain(&e))),
        };
        if stored.version == self.version && fresh.is_empty() {
            return None;
        }
        self.version = stored.version;
        if let Some(last) = fresh.last() {
            self.last_seq = last.seq;
        }
        self.records.extend(fresh);
        let body = Report::new(&self.records)
            .state(&stored.state)
            .render_body();
        Some(Event::default().event("update").data(body))
    }
}

/// `GET /rollouts/{id}/events`: an `update` event with the page's new body after every
/// change (within the store's notice time: at once for pushing stores, the poll interval
/// for the others).
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let Ok(c) = reader(&app, &headers, &uri) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return message(StatusCode::BAD_REQUEST, c.as_ref(), "No such rollout", &e),
    };
    // Subscribe first, then read (the first event is sent at once), so no change between the
    // page and its stream is missed.
    match app.store.load(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return message(
                StatusCode::NOT_FOUND,
                c.as_ref(),
                "No such rollout",
                &format!("no rollout `{id}`"),
            );
        }
        Err(e) => {
            return message(
                store_status(&e),
                c.as_ref(),
                "Cannot follow the rollout",
                &chain(&e),
            );
        }
    }
    let live = Live {
        watch: app.store.watch(&id),
        app,
        id,
        records: Vec::new(),
        version: 0,
        last_seq: 0,
        first: true,
    };
    Sse::new(stream(live))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn stream(live: Live) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(Some(live), |live| async move {
        let mut live = live?;
        loop {
            if live.first {
                live.first = false;
            } else {
                if !live.changed().await {
                    return None;
                }
                tokio::time::sleep(COALESCE).await;
            }
            if let Some(event) = live.update().await {
                return Some((Ok(event), Some(live)));
            }
        }
    })
}
