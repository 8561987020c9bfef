//! The local proxy itself: [`LocalProxyBuilder`] binds the listeners and starts the serving
//! loops, [`LocalProxy`] is the running proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::{ProviderError, RevisionId, TrafficSplit};
use http::header::HeaderName;
use http::uri::Authority;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};

use crate::admin::{self, Admin};
use crate::forward::{self, Forwarder};
use crate::limits::{ConnectionStats, Limits};
use crate::metrics::{DEFAULT_CONVERSION_HEADER, ProxyMetrics, RevisionStats, wall_now};
use crate::router::ProxyRouter;
use crate::server::serve;
use crate::table::{Table, Upstream};

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
    conversion_header: String,
    threads: usize,
    limits: Limits,
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

    /// How long an upstream has to send response headers, from the end of the request, before
    /// the proxy answers 504 (default 10 s; kept to within a fifth of the shortest timeout,
    /// like the client timeouts).
    pub fn upstream_timeout(mut self, timeout: Duration) -> Self {
        self.limits.upstream = timeout;
        self
    }

    /// The response header that marks a conversion (default [`DEFAULT_CONVERSION_HEADER`]).
    pub fn conversion_header(mut self, name: impl Into<String>) -> Self {
        self.conversion_header = name.into();
        self
    }

    /// How long a client has to send a request's headers, from the connection's accept or
    /// the request's first byte (default 10 s). A slower client's connection is closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read = timeout;
        self
    }

    /// How long a client connection may stay open between requests, and a response may make
    /// no progress (default 60 s). Then the connection is closed. Upstream keep-alive
    /// connections unused for as long are closed too.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle = timeout;
        self
    }

    /// How long a request body may go without a byte (default 30 s). Then the connection is
    /// closed and the upstream request abandoned.
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.body_idle = timeout;
        self
    }

    /// How many client connections may be open at once, over all serving threads (default
    /// 4096). One more is answered 503 and closed at once, and counted in
    /// `cutover_proxy_connections_refused_total`. Keep it under the process's file descriptor
    /// limit (`ulimit -n`) less the upstream connections.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max;
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
        let limits = self.limits;
        for (what, timeout) in [
            ("header_read_timeout", limits.header_read),
            ("idle_timeout", limits.idle),
            ("body_idle_timeout", limits.body_idle),
            ("upstream_timeout", limits.upstream),
        ] {
            if timeout.is_zero() {
                return Err(ProviderError::permanent(format!(
                    "proxy `{name}`: {what} must be more than zero"
                )));
            }
        }
        if limits.max_connections == 0 {
            return Err(ProviderError::permanent(format!(
                "proxy `{name}`: max_connections must be at least 1"
            )));
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
        let router = ProxyRouter::new(name.clone(), Table::new(upstreams.into(), split));
        let worker = |shard| {
            Arc::new(Forwarder::new(
                router.clone(),
                self.threads > 0,
                shard,
                limits.upstream,
                limits.idle,
                conversion_header.clone(),
            ))
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
                limits,
                metrics.connection_stats(),
                worker(0),
                forward::handle,
                Forwarder::tidy,
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
                done.push(spawn_thread(
                    i,
                    listener,
                    stopped.clone(),
                    Serving {
                        limits,
                        stats: metrics.connection_stats(),
                        forwarder: worker(i),
                    },
                )?);
            }
            addr
        };
        if let Some(admin) = admin {
            let pages = Arc::new(Admin {
                router: router.clone(),
                metrics: metrics.clone(),
            });
            done.push(spawn_done(serve(
                admin,
                stopped,
                Limits::default(),
                Arc::default(),
                pages,
                admin::handle,
                |_| {},
            )));
        }
        Ok(LocalProxy {
            router,
            metrics,
            addr,
            admin_addr,
            stop,
            done: parking_lot::Mutex::new(done),
        })
    }
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

/// What a serving thread serves with.
struct Serving {
    limits: Limits,
    stats: Arc<ConnectionStats>,
    forwarder: Arc<Forwarder>,
}

/// Serves `listener` on a thread of its own with a single-threaded runtime, so a request and
/// its upstream connection never wake another thread.
fn spawn_thread(
    index: usize,
    listener: std::net::TcpListener,
    stopped: watch::Receiver<bool>,
    serving: Serving,
) -> Result<oneshot::Receiver<()>, ProviderError> {
    let Serving {
        limits,
        stats,
        forwarder,
    } = serving;
    let (tx, rx) = oneshot::channel();
    let name = forwarder.name().to_owned();
    std::thread::Builder::new()
        .name(format!("cutover-proxy-{index}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            serve(
                                listener,
                                stopped,
                                limits,
                                stats,
                                forwarder,
                                forward::handle,
                                Forwarder::tidy,
                            )
                            .await;
                        }
                        Err(e) => {
                            tracing::error!(proxy = %forwarder.name(), error = %e, "cannot listen");
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
    metrics: ProxyMetrics,
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
            conversion_header: DEFAULT_CONVERSION_HEADER.to_owned(),
            threads: 0,
            limits: Limits::default(),
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
        self.metrics.clone()
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
