//! A small demo service for examples and tests: answers every request with its version, fails
//! a share of them with 500, adds latency, and marks a share as conversions.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::body::{ProxyBody, full, plain};
use crate::limits::Limits;
use crate::metrics::DEFAULT_CONVERSION_HEADER;
use crate::server::serve;

/// How a [`DemoService`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// The version it reports in its body and in `x-version`.
    pub version: String,
    /// Share of requests answered 500 (0.0 to 1.0).
    pub error_rate: f64,
    /// Latency added to every request.
    pub latency: Duration,
    /// Share of 200 answers marked as conversions with the `x-conversion` header.
    pub conversion_rate: f64,
    /// Whether `/healthz` answers 200 (else 503).
    pub healthy: bool,
}

impl DemoConfig {
    /// A healthy version with no errors, no added latency and no conversions.
    pub fn new(version: impl Into<String>) -> Self {
        DemoConfig {
            version: version.into(),
            error_rate: 0.0,
            latency: Duration::ZERO,
            conversion_rate: 0.0,
            healthy: true,
        }
    }

    /// Sets the error rate.
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// Sets the added latency.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the conversion rate.
    pub fn conversion_rate(mut self, rate: f64) -> Self {
        self.conversion_rate = rate;
        self
    }

    /// Sets whether `/healthz` answers 200.
    pub fn healthy(mut self, healthy: bool) -> Self {
        self.healthy = healthy;
        self
    }
}

struct Prepared {
    config: DemoConfig,
    /// The share answered 500, as `f64` bits: changed in place by [`DemoService::set_error_rate`].
    error_rate: AtomicU64,
    /// The added latency in nanoseconds: changed in place by [`DemoService::set_latency`].
    latency_nanos: AtomicU64,
    served: AtomicU64,
    version: HeaderValue,
    body: Bytes,
    health: Bytes,
}

/// A running demo service on 127.0.0.1. `GET /healthz` is its health check; every other
/// path is the application.
#[derive(Debug)]
pub struct DemoService {
    addr: SocketAddr,
    prepared: Arc<Prepared>,
    stop: watch::Sender<bool>,
    task: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl DemoService {
    /// Starts the service on a free port of 127.0.0.1.
    pub async fn start(config: DemoConfig) -> std::io::Result<Self> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the service on `addr`.
    pub async fn start_on(config: DemoConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let prepared = Arc::new(Prepared {
            version: HeaderValue::try_from(config.version.as_str())
                .unwrap_or(HeaderValue::from_static("unknown")),
            body: Bytes::from(format!("hello from {}\n", config.version)),
            health: Bytes::from(format!("ok {}\n", config.version)),
            error_rate: AtomicU64::new(config.error_rate.to_bits()),
            latency_nanos: AtomicU64::new(nanos(config.latency)),
            config,
            served: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            stopped,
            Limits::default(),
            Arc::default(),
            prepared.clone(),
            |p, _peer, req| async move { Ok::<_, Infallible>(answer(&p, &req).await) },
            |_| {},
        ));
        Ok(DemoService {
            addr,
            prepared,
            stop,
            task: parking_lot::Mutex::new(Some(task)),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Application requests answered so far (health checks not counted).
    pub fn served(&self) -> u64 {
        self.prepared.served.load(Ordering::Relaxed)
    }

    /// Answers this share of the requests that arrive from now on with 500 (0.0 to 1.0), on
    /// the same address and connections: a failure injected without a restart, so no request
    /// fails for the change itself.
    pub fn set_error_rate(&self, rate: f64) {
        self.prepared
            .error_rate
            .store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Adds this latency to the requests that arrive from now on, on the same address and
    /// connections.
    pub fn set_latency(&self, latency: Duration) {
        self.prepared
            .latency_nanos
            .store(nanos(latency), Ordering::Relaxed);
    }

    /// Stops it, letting requests in flight finish.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for DemoService {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Prepared {
    fn error_rate(&self) -> f64 {
        f64::from_bits(self.error_rate.load(Ordering::Relaxed))
    }

    fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }
}

/// A latency in nanoseconds, saturated (584 years fit).
fn nanos(latency: Duration) -> u64 {
    u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut config = self.config.clone();
        config.error_rate = self.error_rate();
        config.latency = self.latency();
        config.fmt(f)
    }
}

async fn answer<B>(p: &Prepared, req: &Request<B>) -> Response<ProxyBody> {
    let c = &p.config;
    if req.uri().path() == "/healthz" {
        return if c.healthy {
            Response::new(full(p.health.clone()))
        } else {
            plain(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
        };
    }
    p.served.fetch_add(1, Ordering::Relaxed);
    let latency = p.latency();
    if !latency.is_zero() {
        // Simulated service time, not a wait for something to happen.
        tokio::time::sleep(latency).await;
    }
    let mut resp = if fastrand::f64() < p.error_rate() {
        plain(StatusCode::INTERNAL_SERVER_ERROR, "failed\n")
    } else {
        let mut resp = Response::new(full(p.body.clone()));
        if c.conversion_rate > 0.0 && fastrand::f64() < c.conversion_rate {
            resp.headers_mut()
                .insert(DEFAULT_CONVERSION_HEADER, HeaderValue::from_static("1"));
        }
        resp
    };
    resp.headers_mut().insert("x-version", p.version.clone());
    resp
}
/// Re-exported so callers can build probe URLs without depending on .
pub use http::Uri;
