//! Keep-alive HTTP/1.1 connections from one serving loop to the upstreams: a plain list per
//! upstream, with no shared pool map, key hashing or idle-timer task on the request path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::body::UpstreamBody;

/// How long connecting to an upstream may take before the request fails (502).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections kept per upstream and loop: more than this are closed after their request.
const MAX_CONNECTIONS: usize = 1024;

/// How many reused connections one request tries before it opens a new one.
const MAX_RETRIES: usize = 3;

/// Why a request to an upstream failed.
pub(crate) type SendError = Box<dyn std::error::Error + Send + Sync>;

/// The connections of one serving loop, one list per upstream (indexed like the table's
/// upstreams, which never change after start). The lock is only ever taken by this loop's
/// thread (or briefly by the runtime's threads when the proxy serves on the caller's runtime)
/// and never held across an `await`.
///
/// A connection unused for longer than `idle` is closed: load that came and went (a burst of
/// hostile clients, say) leaves no upstream connections behind. The serving loop's watchdog
/// sweeps the lists ([`Pool::sweep`]), so the request path keeps no timer.
#[derive(Debug)]
pub(crate) struct Pool {
    upstreams: Vec<Mutex<Connections>>,
    idle: Duration,
}

/// The connections to one upstream, each with the time its last request was sent.
type Connections = Vec<(SendRequest<UpstreamBody>, Instant)>;

impl Pool {
    pub(crate) fn new(upstreams: usize, idle: Duration) -> Self {
        Pool {
            upstreams: (0..upstreams).map(|_| Mutex::new(Vec::new())).collect(),
            idle,
        }
    }

    /// Drops the closed connections, and those unused for longer than the idle timeout.
    pub(crate) fn sweep(&self, now: Instant) {
        for conns in &self.upstreams {
            conns.lock().retain(|(c, used)| {
                !c.is_closed() && now.saturating_duration_since(*used) <= self.idle
            });
        }
    }

    /// Sends `req` to upstream `index` at `addr` on an idle connection, or a new one when none
    /// is idle. A request that a reused connection closed before sending it is sent again on
    /// another connection, so an upstream closing an idle keep-alive connection never shows
    /// as an error.
    /// `now` is the request's arrival.
    pub(crate) async fn send(
        &self,
        index: usize,
        addr: SocketAddr,
        mut req: Request<UpstreamBody>,
        now: Instant,
    ) -> Result<Response<Incoming>, SendError> {
        let conns = &self.upstreams[index];
        for _ in 0..MAX_RETRIES {
            let sent = {
                let mut conns = conns.lock();
                match conns.iter_mut().find(|(c, _)| c.is_ready()) {
                    Some((c, used)) => {
                        *used = now;
                        c.try_send_request(req)
                    }
                    None => break,
                }
            };
            match sent.await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    // Never written: the connection was closing. Try the next one.
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let mut sender = connect(addr).await?;
        let sent = sender.try_send_request(req);
        {
            let mut conns = conns.lock();
            // Closed connections leave at the next sweep; until then they count here.
            if conns.len() < MAX_CONNECTIONS {
                conns.push((sender, now));
            }
        }
        sent.await.map_err(|e| e.into_error().into())
    }
}

/// A new HTTP/1.1 connection to `addr`, its connection task running on this runtime.
async fn connect(addr: SocketAddr) -> Result<SendRequest<UpstreamBody>, SendError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))??;
    stream.set_nodelay(true)?;
    let (sender, conn) = Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    // Unconstrained, like the client connections (see `server::serve`).
    tokio::spawn(tokio::task::unconstrained(async move {
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "upstream connection failed");
        }
    }));
    Ok(sender)
}
