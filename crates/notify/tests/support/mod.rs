//! What the notify tests share: a real HTTP receiver on loopback whose answers are scripted,
//! and real rollouts run to their end on a store.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cutover_core::{MemoryStateStore, Outcome, Plan, RetryPolicy, Rollout, StateStore, Verdict};
use cutover_test::{FakeRouter, ScriptedAnalysis};
use parking_lot::Mutex;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Ok,
    Status(u16),
    /// Never answers.
    Hang,
    /// Redirects to itself, for ever.
    Redirect,
    /// 200 with an endless body.
    Huge,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Reply>,
    otherwise: Option<Reply>,
    received: Vec<Received>,
}

/// An HTTP server on 127.0.0.1 that records every request and answers as scripted (then
/// `200`).
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move { answer(&state, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests so, in turn.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().script.extend(replies);
    }

    /// Answers every request after the script so.
    pub fn otherwise(&self, reply: Reply) {
        self.shared.lock().otherwise = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }
}

async fn answer(shared: &Mutex<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut shared = shared.lock();
        shared.received.push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
        });
        let next = shared.script.pop_front();
        next.or(shared.otherwise).unwrap_or(Reply::Ok)
    };
    match reply {
        Reply::Ok => StatusCode::OK.into_response(),
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::Hang => std::future::pending().await,
        Reply::Redirect => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, uri.path().to_owned())],
        )
            .into_response(),
        Reply::Huge => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let endless =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            Response::new(Body::from_stream(endless))
        }
    }
}

/// A canary that sets 20 % then 50 % and is promoted; no waits.
pub const PROMOTING: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 20
      - set_weight: 50
";

/// A canary that sets 20 % then fails its analysis and is rolled back.
pub const FAILING: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 20
      - analysis: { name: checks, count: 1 }
      - set_weight: 50
";

/// Runs a rollout of `plan` on `store` to its end, in real time.
pub async fn run_rollout(store: Arc<dyn StateStore>, id: &str, plan: &str) -> Outcome {
    let rollout = Rollout::builder(id, Plan::from_yaml(plan).unwrap())
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .analysis("checks", ScriptedAnalysis::verdicts([Verdict::Fail]))
        .state_store(store)
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), rollout.run())
        .await
        .expect("the rollout ends within 30 s")
        .unwrap()
}

/// Polls `check` until it holds, failing after `deadline`.
pub async fn wait_for(deadline: Duration, mut check: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + deadline;
    while !check() {
        assert!(
            tokio::time::Instant::now() < until,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Retries quickly and exactly (no jitter), for tests.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

/// A fresh memory store.
pub fn memory() -> Arc<dyn StateStore> {
    Arc::new(MemoryStateStore::new())
}
