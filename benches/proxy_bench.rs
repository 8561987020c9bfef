//! The processes `scripts/bench-proxy` measures, and the switch-latency measurement.
//!
//! ```text
//! proxy-bench upstreams 127.0.0.1:18081 127.0.0.1:18082   # two demo upstreams, v1 and v2
//! proxy-bench proxy 127.0.0.1:18080 127.0.0.1:18081 127.0.0.1:18082   # cutover proxy, 90/10
//!                                    # on PROXY_THREADS serving threads (default: one per core)
//! proxy-bench switch [ROUNDS]                              # switch latency, printed as a table
//!                                    # and as a last line `switch_p99_us N`
//! ```
//!
//! The switch latency is the time from `set_split` returning to the first response served on
//! the new split, while 8 clients keep requests in flight through the proxy: each round
//! moves all traffic to the other revision and waits for the first answer from it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cutover::local::LocalProxy;
use cutover::local::demo::{DemoConfig, DemoService};
use cutover::{RevisionId, TrafficRouter, TrafficSplit, Weight};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("upstreams") if args.len() == 3 => upstreams(&args[1], &args[2]).await,
            Some("proxy") if args.len() == 4 => proxy(&args[1], &args[2], &args[3]).await,
            Some("switch") => {
                let rounds = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(500);
                switch(rounds).await
            }
            _ => Err(
                "usage: proxy-bench upstreams A1 A2 | proxy LISTEN A1 A2 | switch [ROUNDS]".into(),
            ),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn addr(s: &str) -> Result<SocketAddr, Error> {
    s.parse().map_err(|e| format!("`{s}`: {e}").into())
}

fn rev(s: &str) -> RevisionId {
    s.parse().expect("a valid revision")
}

async fn upstreams(a1: &str, a2: &str) -> Result<(), Error> {
    let v1 = DemoService::start_on(DemoConfig::new("v1"), addr(a1)?).await?;
    let v2 = DemoService::start_on(DemoConfig::new("v2"), addr(a2)?).await?;
    println!("upstreams v1 {} v2 {}", v1.addr(), v2.addr());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Serving threads of the proxy: `PROXY_THREADS`, default one per core.
fn proxy_threads() -> usize {
    std::env::var("PROXY_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

async fn proxy(listen: &str, a1: &str, a2: &str) -> Result<(), Error> {
    let threads = proxy_threads();
    let proxy = LocalProxy::builder("bench")
        .listen(addr(listen)?)
        .threads(threads)
        .upstream("v1", addr(a1)?)
        .upstream("v2", addr(a2)?)
        .start()
        .await?;
    let split = TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(10)?)?;
    proxy.router().set_split(&split).await?;
    println!(
        "cutover proxy on {} at {split}, {threads} threads",
        proxy.addr()
    );
    tokio::signal::ctrl_c().await?;
    proxy.shutdown().await;
    Ok(())
}

/// Nanoseconds since `epoch`. The bench measures real latencies, so it reads the wall clock.
#[allow(clippy::disallowed_methods)]
fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(Instant::now().duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

async fn switch(rounds: usize) -> Result<(), Error> {
    let v1 = DemoService::start(DemoConfig::new("v1")).await?;
    let v2 = DemoService::start(DemoConfig::new("v2")).await?;
    let proxy = LocalProxy::builder("switch")
        .threads(proxy_threads())
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .start()
        .await?;
    let router = proxy.router();
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now();
    // The version the clients are waiting for (1 or 2), and when its first answer came.
    let target = Arc::new(AtomicU64::new(0));
    let first_at = Arc::new(AtomicU64::new(0));
    // Wakes the measuring task when `first_at` is set: it waits instead of spinning, so it
    // takes no CPU from the proxy and the clients it measures (on a 2-core machine, a
    // spinning waiter would take one of them).
    let arrived = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let client = hyper_client();
    let uri: http::Uri = format!("http://{}/", proxy.addr()).parse()?;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (target, first_at, stop, arrived) = (
            target.clone(),
            first_at.clone(),
            stop.clone(),
            arrived.clone(),
        );
        let (client, uri) = (client.clone(), uri.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(uri.clone())
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("a valid request");
                let Ok(resp) = client.request(req).await else {
                    continue;
                };
                let version = match resp
                    .headers()
                    .get("x-version")
                    .map(http::HeaderValue::as_bytes)
                {
                    Some(b"v1") => 1,
                    Some(b"v2") => 2,
                    _ => 0,
                };
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                if version == target.load(Ordering::Acquire) {
                    let now = nanos_since(epoch);
                    if first_at
                        .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        arrived.notify_one();
                    }
                }
            }
        }));
    }
    let splits = [
        TrafficSplit::all_to(&rev("v1")),
        TrafficSplit::all_to(&rev("v2")),
    ];
    let mut latencies = Vec::with_capacity(rounds);
    let mut calls = Vec::with_capacity(rounds);
    for round in 0..rounds + 20 {
        let to = round % 2;
        target.store(0, Ordering::Release);
        first_at.store(0, Ordering::Release);
        target.store(to as u64 + 1, Ordering::Release);
        let before = nanos_since(epoch);
        router.set_split(&splits[to]).await?;
        let returned = nanos_since(epoch);
        let first = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let at = first_at.load(Ordering::Acquire);
                if at != 0 {
                    break at;
                }
                arrived.notified().await;
            }
        })
        .await
        .map_err(|_| "no answer from the new split within 5 s")?;
        // The first 20 rounds warm up the pools.
        if round >= 20 {
            latencies.push(first.saturating_sub(returned));
            calls.push(returned - before);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    latencies.sort_unstable();
    calls.sort_unstable();
    let q = |v: &[u64], p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        Duration::from_nanos(v[i])
    };
    println!("switch latency over {rounds} switches, 8 clients in flight");
    println!("| measure | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| set_split returned -> first response on the new split | {:?} | {:?} | {:?} |",
        q(&latencies, 0.5),
        q(&latencies, 0.99),
        q(&latencies, 1.0)
    );
    println!(
        "| set_split call (table swap) | {:?} | {:?} | {:?} |",
        q(&calls, 0.5),
        q(&calls, 0.99),
        q(&calls, 1.0)
    );
    // For scripts/bench-proxy's JSON.
    println!(
        "switch_p99_us {:.1}",
        q(&latencies, 0.99).as_secs_f64() * 1e6
    );
    proxy.shutdown().await;
    Ok(())
}

fn hyper_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<bytes::Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}
