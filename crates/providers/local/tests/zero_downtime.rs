//! Zero downtime under load: a blue-green switch, every canary step and a rollback, each
//! while a load generator keeps 16 requests in flight through the proxy, real HTTP on
//! 127.0.0.1. Each test runs at least 50,000 requests and asserts that every one got a 2xx.

use std::time::Duration;

use cutover_core::{RevisionId, TrafficRouter, TrafficSplit, Weight};
use cutover_local::LocalProxy;
use cutover_local::demo::{DemoConfig, DemoService};
use cutover_local::load::{LoadConfig, LoadGenerator, LoadReport};

const REQUESTS: u64 = 50_000;
/// Generous: the tests normally take a few seconds; this only stops a hung test.
const DEADLINE: Duration = Duration::from_mins(2);

fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

fn canary(percent: u8) -> TrafficSplit {
    TrafficSplit::canary(
        &rev("v1"),
        &rev("v2"),
        Weight::from_percent(percent).unwrap(),
    )
    .unwrap()
}

struct Rig {
    v1: DemoService,
    v2: DemoService,
    proxy: LocalProxy,
    load: LoadGenerator,
}

async fn rig() -> Rig {
    let v1 = DemoService::start(DemoConfig::new("v1")).await.unwrap();
    let v2 = DemoService::start(DemoConfig::new("v2")).await.unwrap();
    let proxy = LocalProxy::builder("zero-downtime")
        .threads(1)
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .start()
        .await
        .unwrap();
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(16));
    Rig {
        v1,
        v2,
        proxy,
        load,
    }
}

/// Applies each split once the load has finished `REQUESTS * k / (n + 1)` requests, so every
/// change happens in the middle of continuous load, then runs to `REQUESTS` and stops.
async fn drive(rig: &Rig, splits: &[TrafficSplit]) -> LoadReport {
    let router = rig.proxy.router();
    let n = splits.len() as u64;
    for (k, split) in (1..).zip(splits) {
        assert!(
            rig.load.wait_for(REQUESTS * k / (n + 1), DEADLINE).await,
            "load stalled"
        );
        router.set_split(split).await.unwrap();
    }
    assert!(rig.load.wait_for(REQUESTS, DEADLINE).await, "load stalled");
    rig.load.stop().await
}

fn assert_no_failures(report: &LoadReport) {
    assert!(
        report.total() >= REQUESTS,
        "only {} requests",
        report.total()
    );
    assert_eq!(report.failed(), 0, "failed requests: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switch_drops_nothing() {
    let rig = rig().await;
    let report = drive(&rig, &[TrafficSplit::all_to(&rev("v2"))]).await;
    assert_no_failures(&report);
    // Both sides really served: blue before the switch, green after.
    assert!(
        rig.v1.served() > REQUESTS / 4 && rig.v2.served() > REQUESTS / 4,
        "v1 {} v2 {}",
        rig.v1.served(),
        rig.v2.served()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_canary_step_drops_nothing() {
    let rig = rig().await;
    let steps: Vec<TrafficSplit> = [1, 10, 25, 50, 100].into_iter().map(canary).collect();
    let report = drive(&rig, &steps).await;
    assert_no_failures(&report);
    assert!(
        rig.v2.served() > REQUESTS / 6,
        "v2 served {}",
        rig.v2.served()
    );
    assert!(rig.proxy.router().split().is_all_to(&rev("v2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_drops_nothing() {
    let rig = rig().await;
    let report = drive(&rig, &[canary(50), TrafficSplit::all_to(&rev("v1"))]).await;
    assert_no_failures(&report);
    let v2_after_rollback = rig.v2.served();
    assert!(
        v2_after_rollback > REQUESTS / 10,
        "v2 served {v2_after_rollback} at 50 %"
    );
    // After the rollback no new request reaches v2.
    let c = LoadGenerator::start(&LoadConfig::new(rig.proxy.addr()).concurrency(2));
    assert!(c.wait_for(500, DEADLINE).await);
    assert_eq!(c.stop().await.failed(), 0);
    assert_eq!(rig.v2.served(), v2_after_rollback);
}
