//! A load generator for examples and tests: a number of workers send `GET /` over keep-alive
//! connections as fast as answers come back (or at a set rate), and count the answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt as _, Either, Full};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::http_client;

/// What a [`LoadGenerator`] sends.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    target: SocketAddr,
    concurrency: usize,
    rate: Option<u32>,
    headers: Vec<(HeaderName, HeaderValue)>,
    path: String,
}

impl LoadConfig {
    /// `GET /` to `target` from 8 workers, as fast as answers come.
    pub fn new(target: SocketAddr) -> Self {
        LoadConfig {
            target,
            concurrency: 8,
            rate: None,
            headers: Vec::new(),
            path: "/".to_owned(),
        }
    }

    /// Number of workers, each with at most one request in flight.
    pub fn concurrency(mut self, workers: usize) -> Self {
        self.concurrency = workers.max(1);
        self
    }

    /// At most this many requests per second in total.
    pub fn rate(mut self, per_second: u32) -> Self {
        self.rate = Some(per_second.max(1));
        self
    }

    /// A header on every request (a cookie, an A/B group). Invalid names or values are skipped.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            self.headers.push((n, v));
        }
        self
    }

    /// The path requested (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
}

/// Counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers with a 5xx status (including 502/504 from a proxy).
    pub server_errors: u64,
    /// Answers with any other status.
    pub other_status: u64,
    /// Requests that got no answer: refused, reset, closed.
    pub transport_errors: u64,
}

impl LoadReport {
    /// Requests sent and finished.
    pub fn total(&self) -> u64 {
        self.ok + self.server_errors + self.other_status + self.transport_errors
    }

    /// Requests that did not get a 2xx.
    pub fn failed(&self) -> u64 {
        self.total() - self.ok
    }
}

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    server_errors: AtomicU64,
    other_status: AtomicU64,
    transport_errors: AtomicU64,
}

/// Running load. Stop it with [`stop`](LoadGenerator::stop) to get the final counts.
#[derive(Debug)]
pub struct LoadGenerator {
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    workers: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl LoadGenerator {
    /// Starts the workers.
    pub fn start(config: &LoadConfig) -> Self {
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let client = http_client(Duration::from_secs(30));
        let uri: Uri = format!("http://{}{}", config.target, config.path)
            .parse()
            .unwrap_or_else(|_| Uri::from_static("http://127.0.0.1/"));
        let pace = config.rate.map(|rate| {
            Duration::from_secs_f64(
                f64::from(u32::try_from(config.concurrency).unwrap_or(u32::MAX)) / f64::from(rate),
            )
        });
        let workers = (0..config.concurrency)
            .map(|_| {
                let (client, uri, counters) = (client.clone(), uri.clone(), counters.clone());
                let headers = config.headers.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let mut ticks = pace.map(|p| {
                        let mut t = tokio::time::interval(p);
                        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        t
                    });
                    while !*stopped.borrow() {
                        if let Some(t) = &mut ticks {
                            t.tick().await;
                        }
                        let mut req = Request::new(Either::Right(Full::default()));
                        *req.uri_mut() = uri.clone();
                        for (n, v) in &headers {
                            req.headers_mut().insert(n, v.clone());
                        }
                        let counter = match client.request(req).await {
                            Ok(resp) => {
                                let status = resp.status();
                                if resp.into_body().collect().await.is_err() {
                                    &counters.transport_errors
                                } else if status.is_success() {
                                    &counters.ok
                                } else if status.is_server_error() {
                                    &counters.server_errors
                                } else {
                                    &counters.other_status
                                }
                            }
                            Err(_) => &counters.transport_errors,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        LoadGenerator {
            counters,
            stop,
            workers: parking_lot::Mutex::new(workers),
        }
    }

    /// The counts so far.
    pub fn report(&self) -> LoadReport {
        let c = &self.counters;
        LoadReport {
            ok: c.ok.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
            other_status: c.other_status.load(Ordering::Relaxed),
            transport_errors: c.transport_errors.load(Ordering::Relaxed),
        }
    }

    /// Waits until at least `requests` have finished, checking every few milliseconds, or
    /// until `deadline` passes. Returns whether the count was reached.
    pub async fn wait_for(&self, requests: u64, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        while self.report().total() < requests {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops the workers after their requests in flight and returns the final counts.
    pub async fn stop(&self) -> LoadReport {
        let _ = self.stop.send(true);
        let workers = std::mem::take(&mut *self.workers.lock());
        for w in workers {
            let _ = w.await;
        }
        self.report()
    }
}
