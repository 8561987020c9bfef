//! The proxy against hostile clients, over raw sockets on 127.0.0.1: slow headers, slow
//! bodies, idle and half-open connections, a flood beyond the connection cap, oversized and
//! malformed requests, smuggling attempts, pipelining across a split change, clients that stop
//! reading a response, refused methods and hop-by-hop headers.
//!
//! Every scenario is bounded in connections and time. While it runs, a normal client keeps
//! sending requests on its own keep-alive connection and must get a 2xx for each within
//! [`LATENCY_BOUND`]. Afterwards the process's open file descriptors and resident memory must
//! come back to what they were before the attack (read from `/proc/self`, so Linux only).
//! The scenarios run one at a time, since they measure the whole process.

#![cfg(target_os = "linux")]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cutover_core::{RevisionId, TrafficRouter, TrafficSplit};
use cutover_local::demo::{DemoConfig, DemoService};
use cutover_local::{ConnectionCounts, LocalProxy, LocalProxyBuilder};
use http_body_util::{BodyExt as _, Empty};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The scenarios measure the whole process, so they take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The slowest answer the normal client may get while an attack runs.
const LATENCY_BOUND: Duration = Duration::from_secs(1);

/// Resident memory may end this much above where it started (allocator caches, lazily
/// grown buffers); a per-connection leak over these attacks would be far more.
const RSS_SLACK_KB: u64 = 16 * 1024;

const HEADER_READ: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(600);
const BODY_IDLE: Duration = Duration::from_millis(300);

fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A proxy on a serving thread of its own in front of one upstream, with the short timeouts.
fn one_upstream(name: &str, upstream: SocketAddr) -> LocalProxyBuilder {
    LocalProxy::builder(name)
        .threads(1)
        .upstream("v1", upstream)
        .header_read_timeout(HEADER_READ)
        .idle_timeout(IDLE)
        .body_idle_timeout(BODY_IDLE)
}

/// Two demo upstreams and the proxy on a serving thread of its own, with short timeouts.
struct Setup {
    v1: DemoService,
    v2: DemoService,
    proxy: LocalProxy,
}

impl Setup {
    async fn start(configure: impl FnOnce(LocalProxyBuilder) -> LocalProxyBuilder) -> Self {
        let v1 = DemoService::start(DemoConfig::new("v1")).await.unwrap();
        let v2 = DemoService::start(DemoConfig::new("v2")).await.unwrap();
        let builder = LocalProxy::builder("hostile")
            .threads(1)
            .upstream("v1", v1.addr())
            .upstream("v2", v2.addr())
            .header_read_timeout(HEADER_READ)
            .idle_timeout(IDLE)
            .body_idle_timeout(BODY_IDLE);
        let proxy = configure(builder).start().await.unwrap();
        Setup { v1, v2, proxy }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    fn served(&self) -> u64 {
        self.v1.served() + self.v2.served()
    }

    fn connections(&self) -> ConnectionCounts {
        self.proxy.metrics().connections()
    }
}

/// A normal client: one keep-alive connection, a request every 5 ms, every answer and its
/// latency kept.
struct Normal {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<(u16, Duration)>>,
}

/// The normal client's answers checked at least, however short the attack.
const NORMAL_AT_LEAST: u64 = 5;

impl Normal {
    async fn start(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn): (SendRequest<Empty<Bytes>>, _) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let (stopping, counting) = (stop.clone(), answered.clone());
        let task = tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                let started = Instant::now();
                let req = http::Request::get(format!("http://{addr}/"))
                    .body(Empty::new())
                    .unwrap();
                let status = match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.into_body().collect().await;
                        status
                    }
                    Err(_) => 0,
                };
                answers.push((status, started.elapsed()));
                counting.fetch_add(1, Ordering::Relaxed);
                if status == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        });
        Normal {
            stop,
            answered,
            task,
        }
    }

    /// Stops it, checks every answer was a 2xx within the bound, and returns how many it got.
    async fn check(self, scenario: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.answered.load(Ordering::Relaxed) < NORMAL_AT_LEAST && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let answers = self.task.await.unwrap();
        assert!(
            answers.len() as u64 >= NORMAL_AT_LEAST,
            "{scenario}: the normal client got only {} answers",
            answers.len()
        );
        for (i, (status, latency)) in answers.iter().enumerate() {
            assert!(
                (200..300).contains(status),
                "{scenario}: normal request {i} got {status}"
            );
            assert!(
                *latency <= LATENCY_BOUND,
                "{scenario}: normal request {i} took {latency:?}"
            );
        }
        answers.len() as u64
    }
}

/// The process's descriptors and memory before an attack.
struct Baseline {
    fds: usize,
    rss_kb: u64,
}

impl Baseline {
    fn now() -> Self {
        Baseline {
            fds: open_fds(),
            rss_kb: rss_kb(),
        }
    }

    /// Waits (at most 5 s) for the descriptors to come back down, then checks memory.
    async fn check(&self, scenario: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while open_fds() > self.fds && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (fds, rss) = (open_fds(), rss_kb());
        assert!(
            fds <= self.fds,
            "{scenario}: {fds} descriptors open after, {} before",
            self.fds
        );
        assert!(
            rss <= self.rss_kb + RSS_SLACK_KB,
            "{scenario}: resident memory {rss} kB after, {} kB before",
            self.rss_kb
        );
    }
}

/// Runs `attack` between a baseline and its check, with a normal client going on meanwhile;
/// returns how many requests the normal clients sent.
async fn under_attack<F: Future<Output = ()>>(proxy: SocketAddr, scenario: &str, attack: F) -> u64 {
    // Warm up: the normal client's connection, the upstream pools, lazily grown buffers.
    let warm = Normal::start(proxy).await;
    let mut sent = warm.check(scenario).await;
    let baseline = Baseline::now();
    let normal = Normal::start(proxy).await;
    attack.await;
    sent += normal.check(scenario).await;
    baseline.check(scenario).await;
    sent
}

/// What came on a connection before the proxy closed it and how long that took, or `None` if
/// it stayed open.
type Closed = Option<(Vec<u8>, Duration)>;

/// Reads until the peer closes the connection (EOF or reset), at most `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Closed {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some((got, started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status codes of the responses in `bytes`, in order.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// What a client in [`clients`] does after sending its bytes.
#[derive(Clone, Copy)]
enum Then {
    /// Keeps its sending side open.
    KeepOpen,
    /// Closes its sending side (a half-open connection).
    CloseSending,
}

/// `n` clients that each connect, send `request` (nothing if empty), then wait at most
/// `within` for the proxy to close the connection; each gives what [`closed_within`] gives.
fn clients(
    addr: SocketAddr,
    n: usize,
    request: &'static [u8],
    then: Then,
    within: Duration,
) -> Vec<tokio::task::JoinHandle<Closed>> {
    (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = connect(addr).await;
                if !request.is_empty() {
                    c.write_all(request).await.unwrap();
                }
                if let Then::CloseSending = then {
                    c.shutdown().await.unwrap();
                }
                closed_within(&mut c, within).await
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_by_the_header_read_timeout() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let s = Setup::start(|b| b).await;
    under_attack(s.addr(), "slow headers", async {
        // 100 clients send a request line and one header, then a header line every 100 ms:
        // always some progress, never the end of the headers.
        let mut clients = Vec::new();
        for _ in 0..100 {
            let addr = s.addr();
            clients.push(tokio::spawn(async move {
                let mut c = connect(addr).await;
                c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
                let started = Instant::now();
                let mut buf = [0u8; 1024];
                for i in 0..30 {
                    let line = format!("X-Drip-{i}: 1\r\n");
                    if c.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) => break,
                        Ok(Ok(n)) => panic!("slow headers got an answer: {:?}", &buf[..n]),
                        Err(_) => {}
                    }
                }
                started.elapsed()
            }));
        }
        for c in clients {
            let held = c.await.unwrap();
            // Dripping would have gone on for 3 s; the timeout is 300 ms.
            assert!(held < Duration::from_millis(1500), "held {held:?}");
        }
    })
    .await;
    assert!(
        s.connections().header_timeouts >= 100,
        "{:?}",
        s.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_silent_and_half_open_connections_are_closed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let s = Setup::start(|b| b).await;
    under_attack(s.addr(), "idle and half-open", async {
        let addr = s.addr();
        // 50 connect and send nothing: the header-read timeout runs from the accept.
        let silent = clients(addr, 50, b"", Then::KeepOpen, Duration::from_secs(2));
        // 50 send one request, read the answer, then stay: the idle timeout closes them.
        let idle = clients(
            addr,
            50,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            Then::KeepOpen,
            Duration::from_secs(3),
        );
        // 20 send half a request and close their sending side.
        let half = clients(
            addr,
            20,
            b"GET / HTTP/1.1\r\nHost:",
            Then::CloseSending,
            Duration::from_secs(2),
        );
        for c in silent {
            let (got, after) = c.await.unwrap().expect("a silent connection stayed open");
            assert!(got.is_empty(), "a silent connection got {got:?}");
            assert!(after >= HEADER_READ, "closed after {after:?}");
        }
        for c in idle {
            let (got, after) = c.await.unwrap().expect("an idle connection stayed open");
            assert_eq!(statuses(&got), [200]);
            assert!(after >= IDLE, "closed after {after:?}");
        }
        for c in half {
            let (got, _) = c
                .await
                .unwrap()
                .expect("a half-open connection stayed open");
            assert!(
                statuses(&got).iter().all(|s| *s == 400),
                "half a request got {got:?}"
            );
        }
    })
    .await;
    let counts = s.connections();
    assert!(counts.header_timeouts >= 50, "{counts:?}");
    assert!(counts.idle_timeouts >= 50, "{counts:?}");
}

/// Each request an upstream read: its path and its body's length.
type Seen = Arc<parking_lot::Mutex<Vec<(String, usize)>>>;

/// An upstream that reads a request's whole body before it answers, and keeps what it read.
async fn reading_upstream() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((c, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<Incoming>| {
                    let keep = keep.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await;
                        let len = body.map_or(usize::MAX, |b| b.to_bytes().len());
                        keep.lock().push((path, len));
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"read\n",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(c), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_bodies_are_cut_off_by_the_body_idle_timeout() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let proxy = one_upstream("bodies", reading_upstream().await.0)
        .start()
        .await
        .unwrap();
    let addr = proxy.addr();
    under_attack(addr, "slow bodies", async {
        // 50 clients send 10 bytes of a 100 kB body, then nothing; one more sends its body in
        // 100-byte pieces every 150 ms (1.5 s in all, each gap under the timeout).
        let stalled = clients(
            addr,
            50,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789",
            Then::KeepOpen,
            Duration::from_secs(3),
        );
        let mut slow = connect(addr).await;
        slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            .await
            .unwrap();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            slow.write_all(&[b'x'; 100]).await.unwrap();
        }
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), slow.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            statuses(&buf[..n]),
            [200],
            "a slow but steady body was cut off"
        );
        for c in stalled {
            let (got, after) = c.await.unwrap().expect("a stalled body stayed open");
            assert!(got.is_empty(), "a stalled body got {got:?}");
            assert!(after >= BODY_IDLE, "closed after {after:?}");
        }
    })
    .await;
    assert!(
        proxy.metrics().connections().body_timeouts >= 50,
        "{:?}",
        proxy.metrics().connections()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_cap_is_refused_fast_and_counted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Long header timeout, so the flood's first wave holds its connections.
    let s = Setup::start(|b| {
        b.max_connections(40)
            .header_read_timeout(Duration::from_secs(30))
    })
    .await;
    under_attack(s.addr(), "flood", async {
        let addr = s.addr();
        // The normal client holds one connection; 39 more fill the cap. The warm-up client's
        // connection may still be closing when the first come in: a holder refused then (503,
        // closed) is replaced, so the cap ends full of live connections either way.
        let refused_at_start = s.connections().refused;
        let mut holders = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.connections().open < 40 && Instant::now() < deadline {
            let refused = usize::try_from(s.connections().refused - refused_at_start).unwrap();
            if holders.len() < 39 + refused {
                holders.push(connect(addr).await);
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(s.connections().open, 40);
        let refused_before = s.connections().refused;
        // 200 more are each answered 503 and closed at once. (They read before they write:
        // a request still unread when the proxy closes would turn its close into a reset.)
        let flood = clients(addr, 200, b"", Then::KeepOpen, Duration::from_secs(2));
        for c in flood {
            let (got, after) = c
                .await
                .unwrap()
                .expect("a connection over the cap stayed open");
            assert_eq!(statuses(&got), [503]);
            assert!(
                after < Duration::from_millis(500),
                "refused after {after:?}"
            );
        }
        assert_eq!(s.connections().refused - refused_before, 200);
        // The admin page's `/metrics` text shows the same count.
        let text = s.proxy.metrics().prometheus_text();
        let line = format!(
            "cutover_proxy_connections_refused_total {}",
            s.connections().refused
        );
        assert!(
            text.lines().any(|l| l == line),
            "no `{line}` in the metrics text"
        );
        // Room again once the holders leave.
        drop(holders);
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.connections().open > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut c = connect(addr).await;
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (got, _) = closed_within(&mut c, Duration::from_secs(2)).await.unwrap();
        assert_eq!(statuses(&got), [200]);
    })
    .await;
}

/// The body of [`big_upstream`]'s answers: 64 MB, far more than loopback socket buffers hold.
static BIG_CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
const BIG_CHUNKS: usize = 1024;

/// An upstream that answers `/big` with a 64 MB body, streamed from one static chunk (so it
/// costs this process no memory of its own), and anything else with `ok`.
async fn big_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<Incoming>| async move {
                    let chunks = if req.uri().path() == "/big" {
                        BIG_CHUNKS
                    } else {
                        1
                    };
                    let chunk = Bytes::from_static(if chunks == 1 { b"ok\n" } else { &BIG_CHUNK });
                    let body = futures_util::stream::iter(
                        std::iter::repeat_n(chunk, chunks)
                            .map(|c| Ok::<_, Infallible>(Frame::data(c))),
                    );
                    Ok::<_, Infallible>(http::Response::new(StreamBody::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(c), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_a_response_are_closed_by_the_idle_timeout() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let proxy = one_upstream("slow readers", big_upstream().await)
        .start()
        .await
        .unwrap();
    let addr = proxy.addr();
    let counts = || proxy.metrics().connections();
    let idle_before = counts().idle_timeouts;
    under_attack(addr, "slow readers", async {
        // 20 clients ask for the 64 MB answer, read its first bytes, then read no more: the
        // response stalls once the socket buffers are full, and the idle timeout runs from
        // the last byte the proxy could write.
        let mut readers = Vec::new();
        for _ in 0..20 {
            let mut c = connect(addr).await;
            c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut head = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut head))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(statuses(&head[..n]), [200]);
            readers.push(c);
        }
        let stopped_reading = Instant::now();
        let deadline = stopped_reading + Duration::from_secs(5);
        while counts().idle_timeouts - idle_before < 20 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let closed_after = stopped_reading.elapsed();
        assert!(
            counts().idle_timeouts - idle_before >= 20,
            "stalled responses were not closed: {:?}",
            counts()
        );
        assert!(closed_after >= IDLE, "closed after {closed_after:?}");
        // What reached each reader ends (the proxy closed it) well short of the whole body.
        for mut c in readers {
            let (got, _) = closed_within(&mut c, Duration::from_secs(5))
                .await
                .expect("a stalled response's connection stayed open");
            assert!(
                got.len() < BIG_CHUNK.len() * BIG_CHUNKS / 2,
                "a stalled reader still got {} bytes",
                got.len()
            );
        }
    })
    .await;
    proxy.shutdown().await;
}

/// Sends `request` on a new connection and returns what came back before the proxy closed it.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut c = connect(addr).await;
    // The proxy may close before taking it all; the answer is what counts.
    let _ = c.write_all(request).await;
    closed_within(&mut c, Duration::from_secs(3))
        .await
        .expect("the proxy kept a bad request's connection open")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_are_refused_before_any_upstream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let s = Setup::start(|b| b).await;
    let served_before = s.served();
    let normal = under_attack(s.addr(), "oversized and malformed", async {
        let addr = s.addr();
        let big_header = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        );
        let many_headers = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..5000).fold(String::new(), |mut all, i| {
                let _ = write!(all, "X-H{i}: 1\r\n");
                all
            })
        );
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200_000));
        let cases: [(&str, Vec<u8>, &[u16]); 6] = [
            ("1 MB header", big_header.into_bytes(), &[431]),
            ("5000 headers", many_headers.into_bytes(), &[431]),
            ("200 kB URI", long_uri.into_bytes(), &[414, 431]),
            (
                "TLS on the plain port",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".repeat(20),
                &[400],
            ),
            (
                "header without a colon",
                b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n".to_vec(),
                &[400],
            ),
            (
                "unknown transfer coding",
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(),
                &[400],
            ),
        ];
        for (case, request, expected) in cases {
            let got = statuses(&exchange(addr, &request).await);
            assert!(
                got.len() <= 1 && got.iter().all(|s| expected.contains(s)),
                "{case}: got {got:?}, expected one of {expected:?} or a close"
            );
        }
    })
    .await;
    assert_eq!(
        s.served() - served_before,
        normal,
        "only the normal clients' requests may reach the upstreams"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_never_reach_the_upstream_as_a_second_request() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (upstream, seen) = reading_upstream().await;
    // Short timeouts, so that an upstream connection the attack made the pool open closes
    // before the descriptors are counted again.
    let proxy = one_upstream("smuggling", upstream).start().await.unwrap();
    let addr = proxy.addr();
    let attacks = || {
        seen.lock()
            .iter()
            .filter(|(path, _)| path != "/")
            .cloned()
            .collect::<Vec<_>>()
    };
    under_attack(addr, "smuggling", async {
        // Chunked wins and Content-Length is dropped (RFC 9112 §6.3): the POST goes upstream
        // with an empty body, and the connection is closed after its answer, so what came
        // behind it never reaches anyone.
        let mut c = connect(addr).await;
        c.write_all(b"POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (got, _) = closed_within(&mut c, Duration::from_secs(3)).await.unwrap();
        let (answers, reached) = (statuses(&got), attacks());
        assert!(
            (answers == [400] && reached.is_empty())
                || (answers == [200] && reached == [("/cl-te".to_owned(), 0)]),
            "CL+TE: {answers:?}, upstream saw {reached:?}"
        );
        seen.lock().retain(|(path, _)| path == "/");
        for (case, request) in [
            (
                "two different Content-Lengths",
                &b"POST /dup-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            ),
            (
                "obs-fold",
                b"GET /fold HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n",
            ),
        ] {
            let got = exchange(addr, request).await;
            assert_eq!(statuses(&got), [400], "{case}");
            assert_eq!(attacks(), [], "{case}");
        }
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_across_a_split_change_are_answered_in_order() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let s = Setup::start(|b| b).await;
    under_attack(s.addr(), "pipelining", async {
        let mut c = connect(s.addr()).await;
        let batch = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(25);
        c.write_all(&batch).await.unwrap();
        s.proxy
            .router()
            .set_split(&TrafficSplit::all_to(&rev("v2")))
            .await
            .unwrap();
        let mut last = batch.clone();
        last.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        c.write_all(&last).await.unwrap();
        let (got, _) = closed_within(&mut c, Duration::from_secs(5))
            .await
            .expect("the pipelined connection stayed open after `Connection: close`");
        let text = String::from_utf8_lossy(&got);
        assert_eq!(statuses(&got), vec![200; 51]);
        let versions: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("x-version: "))
            .collect();
        assert_eq!(versions.len(), 51);
        // Requests read before the switch may go either way, never back to v1 after it; the
        // 26 sent after `set_split` returned all go to v2.
        let first_v2 = versions.iter().position(|v| *v == "v2").unwrap();
        assert!(
            versions[first_v2..].iter().all(|v| *v == "v2"),
            "{versions:?}"
        );
        assert!(first_v2 <= 25, "{versions:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_trace_are_answered_405_by_the_proxy() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let s = Setup::start(|b| b).await;
    let before = s.served();
    let normal = under_attack(s.addr(), "CONNECT and TRACE", async {
        for request in [
            &b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n"[..],
            b"TRACE / HTTP/1.1\r\nHost: x\r\nCookie: secret=1\r\n\r\n",
        ] {
            let mut c = connect(s.addr()).await;
            c.write_all(request).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            assert_eq!(statuses(&buf[..n]), [405], "{text}");
            assert!(text.contains("allow: get"), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
    })
    .await;
    assert_eq!(
        s.served() - before,
        normal,
        "CONNECT or TRACE reached an upstream"
    );
}

/// An upstream that keeps the head of every request it reads and answers each with a
/// response full of hop-by-hop headers.
async fn recording_upstream() -> (SocketAddr, Arc<parking_lot::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = pending.drain(..end + 4).collect();
                        kept.lock()
                            .push(String::from_utf8_lossy(&head).to_lowercase());
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-End-To-End: 1\r\n\r\nok";
                        if c.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped_and_forwarding_headers_appended() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (upstream, heads) = recording_upstream().await;
    let proxy = LocalProxy::builder("hops")
        .threads(1)
        .upstream("v1", upstream)
        .start()
        .await
        .unwrap();
    let mut c = connect(proxy.addr()).await;
    c.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\nUpgrade: websocket\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-End-To-End: 1\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert_eq!(statuses(&buf[..n]), [200], "{answer}");
    assert!(answer.contains("x-end-to-end: 1"), "{answer}");
    for gone in [
        "x-hop:",
        "keep-alive: timeout",
        "proxy-authenticate:",
        "trailer:",
        "upgrade:",
        "connection: x-hop",
    ] {
        assert!(
            !answer.contains(gone),
            "`{gone}` reached the client: {answer}"
        );
    }
    let head = heads
        .lock()
        .first()
        .cloned()
        .expect("the upstream got no request");
    assert!(head.contains("x-end-to-end: 1"), "{head}");
    assert!(
        head.contains("x-forwarded-for: 6.6.6.6, 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("forwarded: for=6.6.6.6, for=127.0.0.1;proto=http\r\n"),
        "{head}"
    );
    for gone in [
        "x-secret",
        "keep-alive: 300",
        "proxy-connection",
        "\r\nte:",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            !head.contains(gone),
            "`{gone}` reached the upstream: {head}"
        );
    }
    proxy.shutdown().await;
}
