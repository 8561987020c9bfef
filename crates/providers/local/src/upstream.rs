//! The upstream connections of one client connection, driven by that client connection's own
//! task: a request, its upstream connection and the response body on its way back are polled
//! together, so forwarding a request wakes no second task.
//!
//! Each client connection keeps at most one keep-alive connection per upstream. The link is
//! taken out for a request, polled by the request future until the response headers come,
//! then by the response body ([`Relay`]) until its end, and put back for the next request of
//! the same client connection. It closes with the client connection, when an upstream closes
//! it, when a response body is dropped before its end, and when it went unused for the idle
//! timeout while the client connection sent requests elsewhere.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::poll_fn;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Builder, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::body::UpstreamBody;

/// How long connecting to an upstream may take before the request fails (502).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request to an upstream failed.
pub(crate) type SendError = Box<dyn std::error::Error + Send + Sync>;

/// An open HTTP/1.1 connection to an upstream: the handle that sends requests, the
/// connection's own future (which reads and writes the socket) and when it was last used.
struct Link {
    sender: SendRequest<UpstreamBody>,
    conn: Connection<TokioIo<TcpStream>, UpstreamBody>,
    used: Instant,
}

impl Link {
    /// Polls the connection's future; true when it has ended (closed by either side, or
    /// failed).
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> bool {
        match Pin::new(&mut self.conn).poll(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "upstream connection failed");
                true
            }
            Poll::Pending => false,
        }
    }
}

/// The keep-alive upstream connections of one client connection, one slot per upstream
/// (indexed like the table's upstreams, which never change after start). HTTP/1.1 answers a
/// connection's requests one at a time, so the lock is never contended.
#[derive(Default)]
pub(crate) struct Links {
    /// Boxed: a link is large (hyper's connection state and buffers), and moves on every
    /// request, out of its slot, through the request and its response, and back.
    slots: Mutex<Vec<Option<Box<Link>>>>,
}

impl fmt::Debug for Links {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = self.slots.lock().iter().filter(|s| s.is_some()).count();
        f.debug_struct("Links").field("open", &open).finish()
    }
}

impl Links {
    /// The link to upstream `index`, if one is idle. Links unused for longer than `idle`
    /// are closed on the way.
    fn take(&self, index: usize, now: Instant, idle: Duration) -> Option<Box<Link>> {
        let mut slots = self.slots.lock();
        for slot in slots.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|l| now.saturating_duration_since(l.used) > idle)
            {
                *slot = None;
            }
        }
        slots.get_mut(index).and_then(Option::take)
    }

    /// Keeps `link` for the next request to upstream `index`.
    fn put(&self, index: usize, link: Box<Link>) {
        let mut slots = self.slots.lock();
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        slots[index] = Some(link);
    }

    /// Sends `req` to upstream `index` at `addr` on this client connection's link to it, or
    /// on a new connection when it has none (or none that is still open). A request that the
    /// kept link closed before writing it goes on a new connection, so an upstream closing
    /// an idle keep-alive connection never shows as an error. `now` is the request's
    /// arrival; links unused for longer than `idle` are closed.
    pub(crate) async fn send(
        self: &Arc<Self>,
        index: usize,
        addr: SocketAddr,
        mut req: Request<UpstreamBody>,
        now: Instant,
        idle: Duration,
    ) -> Result<Response<Relay>, SendError> {
        if let Some(link) = self.take(index, now, idle) {
            match self.send_on(index, link, req, now).await {
                Ok(resp) => return Ok(resp),
                Err(Retry::Unsent(unsent)) => req = unsent,
                Err(Retry::Failed(e)) => return Err(e),
            }
        }
        let link = connect(addr, now).await?;
        self.send_on(index, link, req, now)
            .await
            .map_err(|e| match e {
                Retry::Unsent(_) => "upstream connection closed before the request".into(),
                Retry::Failed(e) => e,
            })
    }

    /// Sends `req` on `link`, polling the link's connection until the response headers come.
    async fn send_on(
        self: &Arc<Self>,
        index: usize,
        mut link: Box<Link>,
        req: Request<UpstreamBody>,
        now: Instant,
    ) -> Result<Response<Relay>, Retry> {
        link.used = now;
        // Let the connection take in what came while it sat idle (an upstream's close, say)
        // and say it takes a request.
        let open = poll_fn(|cx| {
            if link.poll_closed(cx) {
                return Poll::Ready(false);
            }
            link.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await;
        if !open {
            return Err(Retry::Unsent(req));
        }
        let mut sent = std::pin::pin!(link.sender.try_send_request(req));
        let mut link = Some(link);
        let resp = poll_fn(|cx| {
            // Once the connection has ended (and is dropped), the request's answer is an
            // error at once.
            if let Some(l) = link.as_mut()
                && l.poll_closed(cx)
            {
                link = None;
            }
            sent.as_mut().poll(cx)
        })
        .await;
        match resp {
            Ok(resp) => {
                let home = self.clone();
                Ok(resp.map(|body| Relay {
                    body,
                    link,
                    home,
                    index,
                }))
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => Err(Retry::Unsent(unsent)),
                None => Err(Retry::Failed(e.into_error().into())),
            },
        }
    }
}

/// Why a request on a link failed.
enum Retry {
    /// The link closed before the request was written: it can go on another connection.
    Unsent(Request<UpstreamBody>),
    /// The request was written, or the connection failed while writing it.
    Failed(SendError),
}

/// A new HTTP/1.1 connection to `addr`, driven by whoever holds it.
async fn connect(addr: SocketAddr, now: Instant) -> Result<Box<Link>, SendError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))??;
    stream.set_nodelay(true)?;
    let (sender, conn) = Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    Ok(Box::new(Link {
        sender,
        conn,
        used: now,
    }))
}

/// A response body from an upstream on its way to the client. Polling it also drives the
/// upstream connection, which reads the body; at the body's end the connection goes back to
/// its client connection's [`Links`] for the next request.
pub(crate) struct Relay {
    body: Incoming,
    /// None once the connection has ended or gone back.
    link: Option<Box<Link>>,
    home: Arc<Links>,
    index: usize,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("body", &self.body)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Polls the connection, and drops it if it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(link) = self.link.as_mut()
            && link.poll_closed(cx)
        {
            self.link = None;
        }
    }

    /// The body has ended: its connection is free for the next request.
    fn release(&mut self) {
        if let Some(link) = self.link.take()
            && !link.sender.is_closed()
        {
            self.home.put(self.index, link);
        }
    }
}

impl Body for Relay {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // The body first, which tells the connection it wants data; then the connection,
        // which reads it from the socket; then the body again.
        let polled = match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => {
                this.drive(cx);
                ready!(Pin::new(&mut this.body).poll_frame(cx))
            }
            Poll::Ready(polled) => polled,
        };
        match &polled {
            None => this.release(),
            Some(Ok(_)) if this.body.is_end_stream() => this.release(),
            Some(Err(_)) => this.link = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Relay {
    /// A body dropped at its end (or never polled, being empty) leaves its connection for
    /// the next request; one dropped before its end closes it, with what was left unread.
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
