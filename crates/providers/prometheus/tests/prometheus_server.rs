//! Against a real Prometheus (`scripts/test-deps` installs it): the client's query kinds and
//! errors, hostile names that must come back as empty results rather than `bad_data`, and a
//! canary whose analysis reads the cutover-local proxy's metrics through Prometheus.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use cutover_core::{ErrorKind, MetricQuery, MetricSource, Outcome, Plan, Rollout, Samples};
use cutover_local::LocalProxy;
use cutover_local::demo::{DemoConfig, DemoService};
use cutover_local::load::{LoadConfig, LoadGenerator};
use cutover_prometheus::testing::{LOCAL_CANARY_PLAN, PrometheusServer};
use cutover_prometheus::{PrometheusSource, Query, QueryData, Template, templates};

fn mq(query: &str, revision: &str) -> MetricQuery {
    MetricQuery::new(
        "m",
        query,
        revision.parse().unwrap(),
        Duration::from_secs(30),
    )
}

/// The wall clock, for a range query's bounds: Prometheus's clock is the real one.
#[allow(clippy::disallowed_methods)]
fn now() -> SystemTime {
    SystemTime::now()
}

#[tokio::test]
#[ignore = "needs prometheus: scripts/test-deps"]
async fn client_query_kinds_and_errors() {
    let prom = PrometheusServer::start(&[]).await.unwrap();
    let client = prom.client();

    let QueryData::Vector(v) = client.query("vector(1)").await.unwrap() else {
        panic!("vector(1) is a vector")
    };
    assert_eq!(v.len(), 1);
    assert!((v[0].value - 1.0).abs() < f64::EPSILON);

    let QueryData::Scalar(_, s) = client.query("scalar(vector(2))").await.unwrap() else {
        panic!("a scalar")
    };
    assert!((s - 2.0).abs() < f64::EPSILON);

    let end = now();
    let QueryData::Matrix(m) = client
        .query_range(
            "vector(3)",
            end - Duration::from_secs(10),
            end,
            Duration::from_secs(1),
        )
        .await
        .unwrap()
    else {
        panic!("a range query gives a matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].values.len(), 11);
    assert!(
        m[0].values
            .iter()
            .all(|(_, v)| (*v - 3.0).abs() < f64::EPSILON)
    );

    let bad = client.query("sum(rate(x[5m])").await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Permanent, "{bad}");
    assert!(bad.message().contains("bad_data"), "{bad}");

    let source = PrometheusSource::new("prometheus", client.clone()).register(
        "ones",
        Query::new(Template::custom_value("ones", "vector(1)")).range(Duration::from_secs(2)),
    );
    // A subquery over the window: one value per step.
    let ones = source.query(&mq("ones", "v1")).await.unwrap();
    let Samples::Values(values) = ones else {
        panic!("values")
    };
    assert!((14..=16).contains(&values.len()), "{values:?}");
    // NaN is no data, not zero and not an error.
    let nan = source
        .query(&mq("vector(0) / vector(0)", "v1"))
        .await
        .unwrap();
    assert!(nan.is_empty(), "{nan:?}");

    // Nothing is listening on the old port once the server is gone: transient.
    let url = prom.url();
    drop(prom);
    let gone = cutover_prometheus::PrometheusClient::builder(url)
        .build()
        .unwrap()
        .query("vector(1)")
        .await
        .unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Transient, "{gone}");
}

/// Names that would add `or vector(1)` to the query, or break it, if they were not escaped.
const HOSTILE: [&str; 5] = [
    "x\"} or vector(1) or up{a=\"",
    "x\\\"} or vector(1) #",
    "\"}",
    "\\",
    "line\nbreak\"}\t\u{7}",
];

#[tokio::test]
#[ignore = "needs prometheus: scripts/test-deps"]
async fn hostile_names_give_empty_results_not_bad_data() {
    let prom = PrometheusServer::start(&[]).await.unwrap();
    // Valid, these find no series; with a name that escaped its quotes they would add
    // `vector(1)` (data) or fail to parse (bad_data).
    let inline = r#"nothing_here{version="{revision}",service="{service}"}"#;
    for name in HOSTILE {
        let source = PrometheusSource::new("prometheus", prom.client())
            .arg("namespace", name)
            .arg("service", name)
            .arg("ingress", name)
            .arg("quantile", "0.99")
            .template(Template::custom_value(
                "regex",
                r#"nothing_here{job=~"{service}"}"#,
            ));
        // Revision names cannot hold control characters; the other arguments can.
        let revision = name.replace(['\n', '\t', '\u{7}'], "_");
        let mut queries: Vec<String> = templates::all().map(|t| t.name().to_owned()).collect();
        queries.push("regex".to_owned());
        queries.push(inline.to_owned());
        for q in &queries {
            let samples = source
                .query(&mq(q, &revision))
                .await
                .unwrap_or_else(|e| panic!("{q} with {name:?}: {}", e.chain()));
            assert!(samples.is_empty(), "{q} with {name:?} gave {samples:?}");
        }
    }
    // The same shape of query with an unescaped name is what bad_data looks like.
    let raw = prom.client().query("up{job=\"\"}\"}").await.unwrap_err();
    assert!(raw.message().contains("bad_data"), "{raw}");
}

/// Two demo versions behind the proxy, load through it, and Prometheus scraping the proxy.
struct Stage {
    _v1: DemoService,
    _v2: DemoService,
    proxy: LocalProxy,
    load: LoadGenerator,
    prom: PrometheusServer,
}

async fn stage(v2_error_rate: f64) -> Stage {
    let v1 = DemoService::start(DemoConfig::new("v1")).await.unwrap();
    let v2 = DemoService::start(DemoConfig::new("v2").error_rate(v2_error_rate))
        .await
        .unwrap();
    let proxy = LocalProxy::builder("checkout")
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .unwrap();
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(8).rate(400));
    let prom = PrometheusServer::start(&[proxy.admin_addr().unwrap()])
        .await
        .unwrap();
    prom.wait_for_data(
        "sum(cutover_proxy_requests_total{revision=\"v1\"})",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    Stage {
        _v1: v1,
        _v2: v2,
        proxy,
        load,
        prom,
    }
}

async fn canary(stage: &Stage) -> Outcome {
    let rollout = Rollout::builder("checkout", Plan::from_yaml(LOCAL_CANARY_PLAN).unwrap())
        .revisions("v1", "v2")
        .router(stage.proxy.router())
        .metric_source(
            "prometheus",
            PrometheusSource::new("prometheus", stage.prom.client()),
        )
        .build()
        .unwrap();
    let handle = rollout.handle();
    let outcome = rollout.run().await.unwrap();
    let measured = handle
        .records()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.summary.contains("error-rate"))
        .count();
    assert!(measured > 0, "the analysis measured nothing");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus: scripts/test-deps"]
async fn canary_rolls_back_a_bad_version_from_prometheus_data() {
    let stage = stage(0.3).await;
    let outcome = canary(&stage).await;
    let Outcome::RolledBack(reason) = &outcome else {
        panic!("expected a rollback, got {outcome}")
    };
    assert!(reason.to_string().contains("error-rate"), "{reason}");
    let split = stage.proxy.router().split();
    assert_eq!(split.weight(&"v2".parse().unwrap()).basis_points(), 0);
    stage.load.stop().await;
    stage.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus: scripts/test-deps"]
async fn canary_promotes_a_good_version_from_prometheus_data() {
    let stage = stage(0.0).await;
    let outcome = canary(&stage).await;
    assert_eq!(outcome, Outcome::Promoted);
    let split = stage.proxy.router().split();
    assert_eq!(split.weight(&"v2".parse().unwrap()).basis_points(), 10_000);
    stage.load.stop().await;
    stage.proxy.shutdown().await;
}
