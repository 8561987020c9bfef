//! The accept loop shared by the proxy, its admin listener and the demo service: the
//! connection cap, the client timeouts (through [`Watchdog`]) and graceful shutdown.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::body::{ProxyBody, RequestBody};
use crate::headers::Peer;
use crate::limits::{Activity, ConnectionStats, Limits, Phase, Watchdog};

/// How long shutdown waits for requests in flight before it closes their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long the loop pauses after a failed accept (out of file descriptors, say), so the
/// failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// What a connection over the cap gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 20\r\ncontent-type: text/plain\r\n\r\ntoo many connections";

/// Serves HTTP/1.1 connections from `listener` with `handler` until `stopped` turns true, then
/// stops accepting and lets requests in flight finish (up to [`SHUTDOWN_GRACE`]). At most
/// `limits.max_connections` are open at once (counted in `stats`, which several loops may
/// share); a connection over the cap is answered 503 and closed without a task of its own.
/// `tidy` is called with `state` on each round of the watchdog.
pub(crate) async fn serve<S, F, Fut>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    state: S,
    handler: F,
    tidy: fn(&S),
) where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, &Peer, Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let watchdog = Watchdog::new(limits, stats);
    let (watchdog_stop, watchdog_stopped) = tokio::sync::oneshot::channel::<()>();
    let tidied = state.clone();
    let sweeping = tokio::spawn(watchdog.clone().run(
        async move {
            let _ = watchdog_stopped.await;
        },
        move || tidy(&tidied),
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    // The watchdog keeps the header-read timeout; hyper's own would cost a timer per request.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .writev(false);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(open) = watchdog.stats().try_open(watchdog.limits().max_connections) else {
            // Best effort and never waiting: the socket buffer of a new connection takes the
            // whole answer.
            let _ = stream.try_write(REFUSED);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = watchdog.activity();
        let peer = Peer::new(addr);
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let (state, handler, conn_activity) = (state.clone(), handler.clone(), activity.clone());
        let service = service_fn(move |req: Request<Incoming>| {
            let activity = conn_activity.clone();
            activity.request_started(!req.body().is_end_stream());
            let req = req.map(|body| RequestBody::new(body, activity.clone()));
            let answer = handler(state.clone(), &peer, req);
            async move {
                let resp = answer.await;
                activity.answered();
                resp
            }
        });
        let conn = graceful.watch(http.serve_connection(io, service));
        // Unconstrained: hyper's dispatcher yields by itself after a bounded number of
        // rounds, so tokio's cooperative budget would only add bookkeeping to every read and
        // write.
        let task = tokio::spawn(tokio::task::unconstrained(async move {
            let _ = conn.await;
            drop(open);
        }));
        watchdog.watch(activity, task.abort_handle());
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    let _ = watchdog_stop.send(());
    let _ = sweeping.await;
}

/// A client connection that tells its [`Activity`] when bytes move: the first byte of a
/// request starts the header-read timeout, each byte of a body or of a response is progress.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            match self.activity.phase() {
                Phase::Idle => self.activity.enter(Phase::Head),
                Phase::Body => self.activity.touch(),
                Phase::Head | Phase::Busy => {}
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Watched {
    /// A response making progress keeps an idle connection from timing out.
    fn wrote(&self, polled: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = polled
            && *n > 0
            && self.activity.phase() == Phase::Idle
        {
            self.activity.touch();
        }
    }
}
