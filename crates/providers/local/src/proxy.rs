//! The reverse proxy: listener, request forwarding, the admin listener, and the
//! [`TrafficRouter`] that swaps its routing table.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use cutover_core::{
    Granularity, HeaderRoute, Mirror, ProviderError, RevisionId, RouterCapabilities, StickySession,
    TrafficRouter, TrafficSplit,
};
use http::header::{HOST, HeaderName, HeaderValue, SET_COOKIE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};

use crate::metrics::{Outcome, ProxyFailure, ProxyMetrics, RevisionStats, wall_now};
use crate::pool::Pool;
use crate::server::serve;
use crate::table::{Reason, Sticky, Table, Targeted, Upstream, remove, upsert, uses_regex};

/// The body of requests and responses through the proxy: streamed from the other side, or
/// made whole by the proxy (buffered mirrored requests, 502/504, admin pages).
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The HTTP/1.1 client with keep-alive pools the proxy, the probe and the load generator use.
pub(crate) type HttpClient = Client<HttpConnector, ProxyBody>;

pub(crate) fn http_client(pool_idle: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool_idle)
        .build(connector)
}

/// The conversion header the proxy counts by default: an upstream marks a response as a
/// conversion (for A/B tests) by setting it.
pub const DEFAULT_CONVERSION_HEADER: &str = "x-conversion";

/// Configures and starts a [`LocalProxy`].
///
/// ```no_run
/// # async fn f() -> Result<(), cutover_core::ProviderError> {
/// use cutover_local::LocalProxy;
/// let proxy = LocalProxy::builder("checkout")
///     .upstream("v1", "127.0.0.1:8081".parse().unwrap())
///     .upstream("v2", "127.0.0.1:8082".parse().unwrap())
///     .admin("127.0.0.1:0".parse().unwrap())
///     .start()
///     .await?;
/// println!("proxy on {}, metrics on {:?}", proxy.addr(), proxy.admin_addr());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LocalProxyBuilder {
    name: String,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    upstreams: Vec<(String, SocketAddr)>,
    timeout: Duration,
    conversion_header: String,
    threads: usize,
}

impl LocalProxyBuilder {
    /// Serve on `threads` threads of the proxy's own, each with a single-threaded tokio
    /// runtime, its own listener on the same port (`SO_REUSEPORT`) and its own upstream
    /// pools, the way nginx runs one worker per core. The default, 0, serves on the runtime
    /// that calls [`start`](Self::start). Routing table and metrics are shared either way.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Adds the upstream of a revision. The first one added takes all traffic at start.
    pub fn upstream(mut self, revision: impl Into<String>, addr: SocketAddr) -> Self {
        self.upstreams.push((revision.into(), addr));
        self
    }

    /// Where the proxy listens (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Also serve `/metrics` (Prometheus text) and `/healthz` on this address.
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// How long an upstream has to send response headers before the proxy answers 504
    /// (default 10 s).
    pub fn upstream_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The response header that marks a conversion (default [`DEFAULT_CONVERSION_HEADER`]).
    pub fn conversion_header(mut self, name: impl Into<String>) -> Self {
        self.conversion_header = name.into();
        self
    }

    /// Binds the listeners and starts serving.
    pub async fn start(self) -> Result<LocalProxy, ProviderError> {
        let name = self.name;
        let epoch = wall_now();
        let metrics = ProxyMetrics::new(name.clone());
        let mut upstreams = Vec::with_capacity(self.upstreams.len());
        for (revision, addr) in self.upstreams {
            let revision: RevisionId = revision.parse().map_err(|e| {
                ProviderError::permanent(format!("proxy `{name}`: invalid revision `{revision}`"))
                    .with_source(e)
            })?;
            if upstreams.iter().any(|u: &Upstream| u.revision == revision) {
                return Err(ProviderError::permanent(format!(
                    "proxy `{name}`: revision `{revision}` has two upstreams"
                )));
            }
            let authority: Authority = addr.to_string().parse().map_err(|e| {
                ProviderError::permanent(format!("proxy `{name}`: bad upstream {addr}"))
                    .with_source(e)
            })?;
            let stats = Arc::new(RevisionStats::new(revision.clone(), epoch, self.threads));
            metrics.register(stats.clone());
            upstreams.push(Upstream {
                revision,
                addr,
                authority,
                stats,
            });
        }
        let Some(first) = upstreams.first() else {
            return Err(ProviderError::permanent(format!(
                "proxy `{name}` needs at least one upstream"
            )));
        };
        let split = TrafficSplit::all_to(&first.revision);
        let conversion_header =
            HeaderName::try_from(self.conversion_header.as_str()).map_err(|e| {
                ProviderError::permanent(format!(
                    "proxy `{name}`: `{}` is not a header name",
                    self.conversion_header
                ))
                .with_source(e)
            })?;
        let bind_error = |what: &str, addr: SocketAddr, e: std::io::Error| {
            ProviderError::permanent(format!("proxy `{name}`: cannot bind {what} {addr}"))
                .with_source(e)
        };
        let admin = match self.admin {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| bind_error("admin listener", addr, e))?,
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().map(local_addr).transpose()?;
        let inner = Arc::new(Inner {
            name: name.clone(),
            table: ArcSwap::from_pointee(Table::new(upstreams.into(), split)),
            writer: tokio::sync::Mutex::new(()),
            metrics,
            timeout: self.timeout,
            conversion_header,
        });
        let upstream_count = inner.table.load().upstreams.len();
        let worker = |shard| {
            Arc::new(Worker {
                inner: inner.clone(),
                pool: Pool::new(upstream_count),
                mirror_client: http_client(Duration::from_secs(90)),
                shard,
            })
        };
        let (stop, stopped) = watch::channel(false);
        let mut done = Vec::new();
        let addr = if self.threads == 0 {
            let listener = TcpListener::bind(self.listen)
                .await
                .map_err(|e| bind_error("listener", self.listen, e))?;
            let addr = local_addr(&listener)?;
            done.push(spawn_done(serve(
                listener,
                stopped.clone(),
                worker(0),
                handle,
            )));
            addr
        } else {
            let mut addr = self.listen;
            for i in 0..self.threads {
                let socket =
                    reuse_port_socket(addr).map_err(|e| bind_error("listener", addr, e))?;
                if i == 0 {
                    addr = socket
                        .local_addr()
                        .map_err(|e| bind_error("listener", addr, e))?;
                }
                // Listening before start returns: a client may connect at once.
                let listener = socket
                    .listen(1024)
                    .and_then(TcpListener::into_std)
                    .map_err(|e| bind_error("listener", addr, e))?;
                done.push(spawn_thread(i, listener, stopped.clone(), worker(i))?);
            }
            addr
        };
        if let Some(admin) = admin {
            done.push(spawn_done(serve(
                admin,
                stopped,
                inner.clone(),
                |inner, req| async move { Ok::<_, Infallible>(admin_page(&inner, &req)) },
            )));
        }
        Ok(LocalProxy {
            router: ProxyRouter { inner },
            addr,
            admin_addr,
            stop,
            done: parking_lot::Mutex::new(done),
        })
    }
}

/// The state of one serving loop: the shared proxy and this loop's own upstream connections.
#[derive(Debug)]
struct Worker {
    inner: Arc<Inner>,
    /// Keep-alive connections for the requests the proxy answers.
    pool: Pool,
    /// The client of mirrored copies, whose responses are discarded.
    mirror_client: HttpClient,
    /// This loop's shard of the metrics.
    shard: usize,
}

async fn handle(
    worker: Arc<Worker>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(forward(&worker, req).await)
}

/// Runs `task` on the current runtime; the receiver resolves when it ends.
fn spawn_done(task: impl Future<Output = ()> + Send + 'static) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        task.await;
        let _ = tx.send(());
    });
    rx
}

/// A listening socket on `addr` that other threads can bind too (`SO_REUSEPORT`): the kernel
/// spreads new connections over them.
fn reuse_port_socket(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Serves `listener` on a thread of its own with a single-threaded runtime, so a request and
/// its upstream connection never wake another thread.
fn spawn_thread(
    index: usize,
    listener: std::net::TcpListener,
    stopped: watch::Receiver<bool>,
    worker: Arc<Worker>,
) -> Result<oneshot::Receiver<()>, ProviderError> {
    let (tx, rx) = oneshot::channel();
    let name = worker.inner.name.clone();
    std::thread::Builder::new()
        .name(format!("cutover-proxy-{index}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, stopped, worker, handle).await,
                        Err(e) => {
                            tracing::error!(proxy = %worker.inner.name, error = %e, "cannot listen");
                        }
                    }
                }),
                Err(e) => tracing::error!(error = %e, "cannot build a proxy runtime"),
            }
            let _ = tx.send(());
        })
        .map_err(|e| {
            ProviderError::permanent(format!("proxy `{name}`: cannot start a thread"))
                .with_source(e)
        })?;
    Ok(rx)
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ProviderError> {
    listener
        .local_addr()
        .map_err(|e| ProviderError::permanent("proxy listener has no address").with_source(e))
}

/// An in-process HTTP/1.1 reverse proxy that splits traffic between revisions' upstreams.
///
/// Routing, in order: header and cookie routes; then the sticky-session cookie, when sticky
/// sessions are on and the pinned revision still has weight; then the weights. The weighted
/// pick draws one random number per request (`fastrand`, a thread-local generator): it needs
/// no shared state, so requests never contend, and over many requests the shares converge to
/// the weights. A smooth weighted round robin would be exact over short runs but needs a
/// shared counter on the hot path.
///
/// The routing table is immutable and swapped whole (`arc-swap`): a request loads it once,
/// atomically, and keeps it until it ends, so a change never splits one request between
/// tables and in-flight requests finish on the upstream they started on.
///
/// An upstream that refuses the connection yields 502, one that does not answer within the
/// timeout yields 504; both count as 5xx of that revision in [`ProxyMetrics`].
#[derive(Debug)]
pub struct LocalProxy {
    router: ProxyRouter,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    done: parking_lot::Mutex<Vec<oneshot::Receiver<()>>>,
}

impl LocalProxy {
    /// A builder for a proxy called `name` (used in errors, records and metrics).
    pub fn builder(name: impl Into<String>) -> LocalProxyBuilder {
        LocalProxyBuilder {
            name: name.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            upstreams: Vec::new(),
            timeout: Duration::from_secs(10),
            conversion_header: DEFAULT_CONVERSION_HEADER.to_owned(),
            threads: 0,
        }
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served, if an admin listener was asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The router that moves this proxy's traffic (cheap to clone).
    pub fn router(&self) -> ProxyRouter {
        self.router.clone()
    }

    /// The proxy's numbers as a metric source (cheap to clone).
    pub fn metrics(&self) -> ProxyMetrics {
        self.router.inner.metrics.clone()
    }

    /// Stops accepting connections, lets requests in flight finish (up to 10 s), then closes
    /// every connection.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let done = std::mem::take(&mut *self.done.lock());
        for finished in done {
            let _ = finished.await;
        }
    }
}

impl Drop for LocalProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[derive(Debug)]
struct Inner {
    name: String,
    table: ArcSwap<Table>,
    /// Serializes writers, so two changes never race on the read-modify-write of the table.
    writer: tokio::sync::Mutex<()>,
    metrics: ProxyMetrics,
    timeout: Duration,
    conversion_header: HeaderName,
}

pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp
}

async fn forward(worker: &Worker, req: Request<Incoming>) -> Response<ProxyBody> {
    let inner = &worker.inner;
    let start = wall_now();
    let table = inner.table.load_full();
    let (index, reason) = table.pick(req.headers());
    let upstream = &table.upstreams[index];
    let mirror = table.mirror_for(req.headers()).map(|i| &table.upstreams[i]);
    let (mut parts, body) = req.into_parts();
    // HTTP/1.1 upstreams get the origin form (`/path?query`) and the client's Host header,
    // which only requests without one (HTTP/1.0) or in absolute form need rebuilt.
    if parts.uri.authority().is_some() {
        parts.uri = origin_form(&parts.uri);
    }
    if !parts.headers.contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(upstream.authority.as_str())
    {
        parts.headers.insert(HOST, host);
    }
    let body = match mirror {
        None => Either::Left(body),
        Some(shadow) => {
            // The copy needs the body twice, so a mirrored request is buffered.
            let Ok(collected) = body.collect().await else {
                return plain(StatusCode::BAD_REQUEST, "request body could not be read\n");
            };
            let bytes = collected.to_bytes();
            let mut copy = Request::new(Either::Right(Full::new(bytes.clone())));
            *copy.method_mut() = parts.method.clone();
            *copy.uri_mut() = upstream_uri(parts.uri.clone(), &shadow.authority);
            *copy.headers_mut() = parts.headers.clone();
            let client = worker.mirror_client.clone();
            let timeout = inner.timeout;
            // Fire and forget: the copy's response is discarded and never delays the primary.
            tokio::spawn(async move {
                if let Ok(Ok(resp)) = tokio::time::timeout(timeout, client.request(copy)).await {
                    let _ = resp.into_body().collect().await;
                }
            });
            Either::Right(Full::new(bytes))
        }
    };
    let sent = tokio::time::timeout(
        inner.timeout,
        worker
            .pool
            .send(index, upstream.addr, Request::from_parts(parts, body)),
    )
    .await;
    let (mut resp, error) = match sent {
        Ok(Ok(resp)) => (resp.map(Either::Left), None),
        Ok(Err(e)) => {
            tracing::debug!(proxy = %inner.name, upstream = %upstream.addr, error = %e, "upstream failed");
            (
                plain(StatusCode::BAD_GATEWAY, "upstream unavailable\n"),
                Some(ProxyFailure::Connect),
            )
        }
        Err(_) => (
            plain(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
            Some(ProxyFailure::Timeout),
        ),
    };
    if let Some(sticky) = &table.sticky
        && reason == Reason::Weight
    {
        resp.headers_mut()
            .append(SET_COOKIE, sticky.set_cookie[index].clone());
    }
    let end = wall_now();
    upstream.stats.record(
        worker.shard,
        end,
        Outcome {
            status: resp.status().as_u16(),
            latency: end.saturating_duration_since(start),
            conversion: resp.headers().contains_key(&inner.conversion_header),
            error,
        },
    );
    resp
}

fn upstream_uri(uri: Uri, authority: &Authority) -> Uri {
    let mut parts = uri.into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    // Scheme, authority and path are all set, which is all `from_parts` checks.
    Uri::from_parts(parts).unwrap_or_default()
}

/// `uri` without scheme and authority: what an HTTP/1.1 request line carries.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

fn admin_page(inner: &Inner, req: &Request<Incoming>) -> Response<ProxyBody> {
    match req.uri().path() {
        "/metrics" => {
            let mut resp = Response::new(Either::Right(Full::new(Bytes::from(
                inner.metrics.prometheus_text(),
            ))));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        "/split" => Response::new(Either::Right(Full::new(Bytes::from(format!(
            "{}\n",
            inner.table.load().split
        ))))),
        _ => plain(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    }
}

/// The [`TrafficRouter`] of a [`LocalProxy`]: weights in basis points, header and cookie
/// routes (exact and prefix matches; regular expressions answer `Permanent`), mirroring and
/// sticky sessions. Every change swaps the routing table atomically and is in force for the
/// next request when the call returns.
#[derive(Debug, Clone)]
pub struct ProxyRouter {
    inner: Arc<Inner>,
}

impl ProxyRouter {
    /// The split in force now (no `await`, for progress displays).
    pub fn split(&self) -> TrafficSplit {
        self.inner.table.load().split.clone()
    }

    async fn update(
        &self,
        change: impl FnOnce(&Table) -> Result<Table, ProviderError>,
    ) -> Result<(), ProviderError> {
        let _writer = self.inner.writer.lock().await;
        let current = self.inner.table.load_full();
        let next = change(&current)?;
        self.inner.table.store(Arc::new(next));
        Ok(())
    }

    fn upstream(&self, table: &Table, revision: &RevisionId) -> Result<usize, ProviderError> {
        table.index_of(revision).ok_or_else(|| {
            ProviderError::permanent(format!(
                "proxy `{}` has no upstream for revision `{revision}`",
                self.inner.name
            ))
        })
    }

    /// A rule must be valid and use no regular expressions (the proxy matches exact values
    /// and prefixes).
    fn check_rule(
        &self,
        what: &str,
        name: &str,
        valid: Result<(), cutover_core::RouteError>,
        matches: &[cutover_core::RouteMatch],
    ) -> Result<(), ProviderError> {
        valid.map_err(|e| ProviderError::permanent(format!("proxy `{}`: {e}", self.inner.name)))?;
        if uses_regex(matches) {
            return Err(ProviderError::permanent(format!(
                "proxy `{}`: {what} `{name}` uses a regular expression; the local proxy matches exact values and prefixes",
                self.inner.name
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl TrafficRouter for ProxyRouter {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::BASIS_POINT)
            .with_header_routes()
            .with_cookie_routes()
            .with_mirroring()
            .with_sticky_sessions()
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        self.update(|table| {
            for (revision, _) in split.iter() {
                self.upstream(table, revision)?;
            }
            Ok(table.with_split(split.clone()))
        })
        .await
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(Some(self.split()))
    }

    async fn set_header_route(
        &self,
        route: &HeaderRoute,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        self.check_rule("route", &route.name, route.validate(), &route.matches)?;
        self.update(|table| {
            let mut next = table.clone();
            let upstream = self.upstream(table, revision)?;
            upsert(
                &mut next.routes,
                Targeted {
                    rule: route.clone(),
                    upstream,
                },
            );
            Ok(next)
        })
        .await
    }

    async fn remove_header_route(&self, name: &str) -> Result<(), ProviderError> {
        self.update(|table| {
            let mut next = table.clone();
            remove(&mut next.routes, name);
            Ok(next)
        })
        .await
    }

    async fn set_mirror(
        &self,
        mirror: &Mirror,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        self.check_rule("mirror", &mirror.name, mirror.validate(), &mirror.matches)?;
        self.update(|table| {
            let mut next = table.clone();
            let upstream = self.upstream(table, revision)?;
            upsert(
                &mut next.mirrors,
                Targeted {
                    rule: mirror.clone(),
                    upstream,
                },
            );
            Ok(next)
        })
        .await
    }

    async fn remove_mirror(&self, name: &str) -> Result<(), ProviderError> {
        self.update(|table| {
            let mut next = table.clone();
            remove(&mut next.mirrors, name);
            Ok(next)
        })
        .await
    }

    async fn set_sticky_sessions(
        &self,
        sticky: Option<StickySession>,
    ) -> Result<(), ProviderError> {
        let name = self.inner.name.clone();
        self.update(|table| {
            let mut next = table.clone();
            next.sticky = match sticky {
                None => None,
                Some(settings) => {
                    let cookie = settings
                        .cookie
                        .clone()
                        .unwrap_or_else(|| "cutover-revision".to_owned());
                    let set_cookie = table
                        .upstreams
                        .iter()
                        .map(|u| {
                            HeaderValue::try_from(format!(
                                "{cookie}={}; Max-Age={}; Path=/; HttpOnly",
                                u.revision,
                                settings.duration.as_secs()
                            ))
                            .map_err(|e| {
                                ProviderError::permanent(format!(
                                    "proxy `{name}`: `{cookie}` cannot be a cookie name"
                                ))
                                .with_source(e)
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    Some(Sticky { cookie, set_cookie })
                }
            };
            Ok(next)
        })
        .await
    }
}
