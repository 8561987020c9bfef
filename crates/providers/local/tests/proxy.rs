//! The proxy router, its metrics and the HTTP probe against real HTTP on 127.0.0.1: demo
//! upstreams, the proxy in between, and a plain hyper client.

use std::net::SocketAddr;
use std::time::Duration;

use cutover_core::{
    HeaderRoute, Health, HealthProbe, MetricQuery, MetricSource, Mirror, RevisionId, RouteMatch,
    Samples, StickySession, TrafficRouter, TrafficSplit, Weight,
};
use cutover_local::demo::{DemoConfig, DemoService};
use cutover_local::{HttpProbe, LocalProxy};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

async fn get(
    client: &TestClient,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> (u16, String, http::HeaderMap) {
    let mut req = http::Request::builder().uri(format!("http://{addr}/"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

struct Setup {
    v1: DemoService,
    v2: DemoService,
    proxy: LocalProxy,
}

async fn setup(v2: DemoConfig) -> Setup {
    let v1 = DemoService::start(DemoConfig::new("v1")).await.unwrap();
    let v2 = DemoService::start(v2).await.unwrap();
    let proxy = LocalProxy::builder("test-proxy")
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .upstream_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    Setup { v1, v2, proxy }
}

fn canary(bp: u16) -> TrafficSplit {
    TrafficSplit::canary(
        &rev("v1"),
        &rev("v2"),
        Weight::from_basis_points(bp).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_router_contract() {
    let s = setup(DemoConfig::new("v2")).await;
    let report = cutover_test::router_contract(&s.proxy.router(), &rev("v1"), &rev("v2"))
        .await
        .unwrap();
    assert!(report.unsupported.is_empty(), "{report}");
    assert!(s.proxy.router().split().is_all_to(&rev("v1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_by_weight_and_switches_at_once() {
    let s = setup(DemoConfig::new("v2")).await;
    let c = client();
    let router = s.proxy.router();
    for _ in 0..50 {
        assert_eq!(get(&c, s.proxy.addr(), &[]).await.1, "hello from v1\n");
    }
    router.set_split(&canary(2000)).await.unwrap();
    let mut v2 = 0;
    for _ in 0..2000 {
        if get(&c, s.proxy.addr(), &[]).await.1.contains("v2") {
            v2 += 1;
        }
    }
    // 20 % of 2000 is 400; sd is about 18, so 320..480 is more than four sd either side.
    assert!((320..=480).contains(&v2), "v2 got {v2} of 2000 at 20 %");
    router.set_split(&canary(10_000)).await.unwrap();
    // The very next request after set_split returns goes to the new split.
    assert_eq!(get(&c, s.proxy.addr(), &[]).await.1, "hello from v2\n");
    let unknown = TrafficSplit::all_to(&rev("v9"));
    let err = router.set_split(&unknown).await.unwrap_err();
    assert!(err.to_string().contains("revision `v9`"), "{err}");
    assert!(
        router.split().is_all_to(&rev("v2")),
        "a rejected split changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_cookie_routes_win_over_weights() {
    let s = setup(DemoConfig::new("v2")).await;
    let c = client();
    let router = s.proxy.router();
    let header =
        HeaderRoute::new("testers", [RouteMatch::header_exact("x-canary", "always")]).unwrap();
    let cookie = HeaderRoute::new("beta", [RouteMatch::cookie_exact("group", "b")]).unwrap();
    router.set_header_route(&header, &rev("v2")).await.unwrap();
    router.set_header_route(&cookie, &rev("v2")).await.unwrap();
    let addr = s.proxy.addr();
    assert_eq!(
        get(&c, addr, &[("x-canary", "always")]).await.1,
        "hello from v2\n"
    );
    assert_eq!(
        get(&c, addr, &[("cookie", "a=1; group=b")]).await.1,
        "hello from v2\n"
    );
    assert_eq!(
        get(&c, addr, &[("cookie", "group=a")]).await.1,
        "hello from v1\n"
    );
    assert_eq!(
        get(&c, addr, &[("x-canary", "never")]).await.1,
        "hello from v1\n"
    );
    router.remove_header_route("testers").await.unwrap();
    assert_eq!(
        get(&c, addr, &[("x-canary", "always")]).await.1,
        "hello from v1\n"
    );
    let regex = HeaderRoute::new(
        "re",
        [RouteMatch::Header {
            name: "x".into(),
            value: cutover_core::StringMatch::Regex(".*".into()),
        }],
    )
    .unwrap();
    let err = router
        .set_header_route(&regex, &rev("v2"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), cutover_core::ErrorKind::Permanent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_keep_a_client_on_its_revision() {
    let s = setup(DemoConfig::new("v2")).await;
    let c = client();
    let router = s.proxy.router();
    router
        .set_sticky_sessions(Some(StickySession {
            cookie: Some("pin".into()),
            duration: Duration::from_mins(1),
        }))
        .await
        .unwrap();
    router.set_split(&canary(5000)).await.unwrap();
    let (_, body, headers) = get(&c, s.proxy.addr(), &[]).await;
    let set = headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let pinned = if body.contains("v2") { "v2" } else { "v1" };
    assert!(set.starts_with(&format!("pin={pinned};")), "{set}");
    let cookie = format!("pin={pinned}");
    for _ in 0..100 {
        let (_, body, headers) = get(&c, s.proxy.addr(), &[("cookie", &cookie)]).await;
        assert!(body.contains(pinned), "pinned to {pinned}, got {body}");
        assert!(headers.get("set-cookie").is_none());
    }
    // A pin to a revision that lost all its weight is ignored.
    router
        .set_split(&TrafficSplit::all_to(&rev("v1")))
        .await
        .unwrap();
    assert!(
        get(&c, s.proxy.addr(), &[("cookie", "pin=v2")])
            .await
            .1
            .contains("v1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_copies_without_changing_answers() {
    let s = setup(DemoConfig::new("v2")).await;
    let c = client();
    let mirror = Mirror::new("shadow", Weight::FULL, []).unwrap();
    s.proxy
        .router()
        .set_mirror(&mirror, &rev("v2"))
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(get(&c, s.proxy.addr(), &[]).await.1, "hello from v1\n");
    }
    // Copies are fire and forget: poll until they have all landed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.v2.served() < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!((s.v1.served(), s.v2.served()), (20, 20));
    s.proxy.router().remove_mirror("shadow").await.unwrap();
    get(&c, s.proxy.addr(), &[]).await;
    assert_eq!(s.v2.served(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_slow_upstreams_are_502_and_504_of_their_revision() {
    let slow = DemoService::start(DemoConfig::new("slow").latency(Duration::from_secs(2)))
        .await
        .unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = LocalProxy::builder("p")
        .upstream("dead", dead)
        .upstream("slow", slow.addr())
        .admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .upstream_timeout(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let c = client();
    assert_eq!(get(&c, proxy.addr(), &[]).await.0, 502);
    proxy
        .router()
        .set_split(&TrafficSplit::all_to(&rev("slow")))
        .await
        .unwrap();
    assert_eq!(get(&c, proxy.addr(), &[]).await.0, 504);
    let m = proxy.metrics();
    let w = Duration::from_mins(1);
    assert_eq!(
        m.samples("errors", &rev("dead"), w).unwrap(),
        Samples::Counts {
            events: 1,
            total: 1
        }
    );
    assert_eq!(
        m.samples("errors", &rev("slow"), w).unwrap(),
        Samples::Counts {
            events: 1,
            total: 1
        }
    );
    let admin = proxy.admin_addr().unwrap();
    let req = http::Request::get(format!("http://{admin}/metrics"))
        .body(Empty::new())
        .unwrap();
    let text = c
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("cutover_proxy_upstream_errors_total{revision=\"dead\",kind=\"connect\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cutover_proxy_upstream_errors_total{revision=\"slow\",kind=\"timeout\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cutover_proxy_requests_total{revision=\"slow\",code_class=\"5xx\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::cast_precision_loss)]
async fn metric_source_answers_rates_and_latencies_per_revision() {
    let s = setup(
        DemoConfig::new("v2")
            .error_rate(0.5)
            .latency(Duration::from_millis(20)),
    )
    .await;
    let c = client();
    s.proxy.router().set_split(&canary(5000)).await.unwrap();
    for _ in 0..400 {
        get(&c, s.proxy.addr(), &[]).await;
    }
    let m = s.proxy.metrics();
    let q = |query: &str, r: &str| MetricQuery::new(query, query, rev(r), Duration::from_mins(1));
    let Samples::Counts { events, total } = m.query(&q("error_rate", "v2")).await.unwrap() else {
        panic!()
    };
    let Samples::Counts {
        events: e1,
        total: t1,
    } = m.query(&q("error_rate", "v1")).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(total + t1, 400);
    assert_eq!(e1, 0);
    #[allow(clippy::cast_precision_loss)]
    let rate = events as f64 / total as f64;
    assert!(
        (0.35..0.65).contains(&rate),
        "v2 error rate {rate} over {total}"
    );
    let Samples::Values(lat) = m.query(&q("latency", "v2")).await.unwrap() else {
        panic!()
    };
    assert_eq!(lat.len() as u64, total);
    assert!(
        lat.iter().all(|&l| l >= 0.019),
        "v2 adds 20 ms: {:?}",
        &lat[..3]
    );
    let Samples::Values(p99) = m.query(&q("latency_p99", "v1")).await.unwrap() else {
        panic!()
    };
    assert!(p99[0] < 0.019, "v1 adds nothing: {p99:?}");
    assert_eq!(
        m.query(&q("requests", "v1")).await.unwrap(),
        Samples::Values(vec![t1 as f64])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let v1 = DemoService::start(DemoConfig::new("v1").latency(Duration::from_millis(300)))
        .await
        .unwrap();
    let proxy = LocalProxy::builder("p")
        .upstream("v1", v1.addr())
        .start()
        .await
        .unwrap();
    let addr = proxy.addr();
    let in_flight = tokio::spawn(async move { get(&client(), addr, &[]).await });
    // Wait until the request has reached the upstream, then shut down under it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while v1.served() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proxy.shutdown().await;
    assert_eq!(in_flight.await.unwrap().1, "hello from v1\n");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probe_counts_answers_in_a_row() {
    let good = DemoService::start(DemoConfig::new("v1")).await.unwrap();
    let bad = DemoService::start(DemoConfig::new("v2").healthy(false))
        .await
        .unwrap();
    let probe = HttpProbe::new("smoke")
        .url(
            "v1",
            format!("http://{}/healthz", good.addr()).parse().unwrap(),
        )
        .url(
            "v2",
            format!("http://{}/healthz", bad.addr()).parse().unwrap(),
        )
        .body_contains("ok v1")
        .thresholds(2, 2);
    assert!(matches!(
        probe.check(&rev("v1")).await.unwrap(),
        Health::Progressing { .. }
    ));
    assert_eq!(probe.check(&rev("v1")).await.unwrap(), Health::Ready);
    let Health::Progressing { detail } = probe.check(&rev("v2")).await.unwrap() else {
        panic!()
    };
    assert!(detail.contains("status 503"), "{detail}");
    let Health::Failed { reason } = probe.check(&rev("v2")).await.unwrap() else {
        panic!()
    };
    assert!(reason.contains("2 times in a row"), "{reason}");
    let wrong_body = HttpProbe::new("body")
        .url(
            "v1",
            format!("http://{}/healthz", good.addr()).parse().unwrap(),
        )
        .body_contains("v7")
        .thresholds(1, 1);
    let Health::Failed { reason } = wrong_body.check(&rev("v1")).await.unwrap() else {
        panic!()
    };
    assert!(reason.contains("does not contain `v7`"), "{reason}");
    let err = probe.check(&rev("v3")).await.unwrap_err();
    assert_eq!(err.kind(), cutover_core::ErrorKind::Permanent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_threads_share_the_table_and_the_metrics() {
    let v1 = DemoService::start(DemoConfig::new("v1")).await.unwrap();
    let v2 = DemoService::start(DemoConfig::new("v2")).await.unwrap();
    let proxy = LocalProxy::builder("threads")
        .threads(2)
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .start()
        .await
        .unwrap();
    // Separate clients open separate connections, which the kernel spreads over the threads.
    for _ in 0..20 {
        assert_eq!(get(&client(), proxy.addr(), &[]).await.1, "hello from v1\n");
    }
    proxy
        .router()
        .set_split(&TrafficSplit::all_to(&rev("v2")))
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(get(&client(), proxy.addr(), &[]).await.1, "hello from v2\n");
    }
    let m = proxy.metrics();
    assert_eq!(m.total(&rev("v1")), Some((20, 0)));
    assert_eq!(m.total(&rev("v2")), Some((20, 0)));
    let addr = proxy.addr();
    proxy.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool (Debian package prometheus): scripts/test-deps"]
async fn metrics_page_passes_promtool() {
    let s = setup(DemoConfig::new("v2").error_rate(0.5)).await;
    let c = client();
    s.proxy.router().set_split(&canary(5000)).await.unwrap();
    for _ in 0..50 {
        get(&c, s.proxy.addr(), &[]).await;
    }
    let admin = s.proxy.admin_addr().unwrap();
    let req = http::Request::get(format!("http://{admin}/metrics"))
        .body(Empty::new())
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    let (status, said) = cutover_test::promtool_check_metrics(&text);
    assert!(
        status.success(),
        "promtool rejects /metrics: {said}\n{}",
        String::from_utf8_lossy(&text)
    );
}

/// An upstream that answers one request per connection and then closes it, without saying
/// so (no `Connection: close`): every keep-alive connection the proxy holds dies after one
/// answer, and the proxy must notice before reusing it.
async fn one_request_per_connection() -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_closing_keep_alive_connections_cost_no_request() {
    let upstream = one_request_per_connection().await;
    let proxy = LocalProxy::builder("closing")
        .threads(1)
        .upstream("v1", upstream)
        .start()
        .await
        .unwrap();
    let client = client();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..300 {
        let (status, _, _) = get(&client, proxy.addr(), &[]).await;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses, [(200, 300)].into(), "status counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_service_starts_failing_in_place_without_failing_a_request_for_the_change() {
    let s = setup(DemoConfig::new("v2")).await;
    let c = client();
    s.proxy.router().set_split(&canary(10_000)).await.unwrap();
    for _ in 0..20 {
        assert_eq!(get(&c, s.proxy.addr(), &[]).await.0, 200);
    }
    // Every request fails from now on, and the latency is added, on the same address.
    s.v2.set_error_rate(1.0);
    s.v2.set_latency(Duration::from_millis(20));
    for _ in 0..20 {
        assert_eq!(get(&c, s.proxy.addr(), &[]).await.0, 500);
    }
    s.v2.set_error_rate(0.0);
    for _ in 0..20 {
        assert_eq!(get(&c, s.proxy.addr(), &[]).await.0, 200);
    }
    assert_eq!(s.v2.served(), 60);
    let m = s.proxy.metrics();
    let q = |query: &str| MetricQuery::new(query, query, rev("v2"), Duration::from_mins(1));
    let Samples::Values(lat) = m.query(&q("latency")).await.unwrap() else {
        panic!()
    };
    let slow = lat.iter().filter(|&&l| l >= 0.019).count();
    assert_eq!(slow, 40, "20 ms added to the last 40 of 60: {lat:?}");
    let Samples::Counts { events, total } = m.query(&q("error_rate")).await.unwrap() else {
        panic!()
    };
    assert_eq!((events, total), (20, 60));
}
