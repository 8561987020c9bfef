//! A failover guard on the real proxy under load: one of three regions is killed, drained
//! within two probe intervals plus the router call, and no request fails after that; then a
//! split edited by hand is found and repaired. Real HTTP on 127.0.0.1, real time.

use std::sync::Arc;
use std::time::Duration;

use cutover_core::guard::{
    DriftAction, FailoverGuard, FailoverPolicy, GuardEntry, GuardRecord, Target,
};
use cutover_core::{RevisionId, TrafficRouter, TrafficSplit, Weight};
use cutover_local::demo::{DemoConfig, DemoService};
use cutover_local::load::{LoadConfig, LoadGenerator};
use cutover_local::{HttpProbe, LocalProxy};
use tokio::sync::broadcast;
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_millis(200);
/// Only stops a hung test.
const DEADLINE: Duration = Duration::from_secs(30);

fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

fn split(eu: u8, us: u8, ap: u8) -> TrafficSplit {
    let p = |p| Weight::from_percent(p).unwrap();
    TrafficSplit::new([(rev("eu"), p(eu)), (rev("us"), p(us)), (rev("ap"), p(ap))]).unwrap()
}

/// Waits for a record matching `what`; returns when it came.
async fn wait_for(
    rx: &mut broadcast::Receiver<GuardRecord>,
    what: impl Fn(&GuardEntry) -> bool,
) -> Instant {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let record = rx.recv().await.unwrap();
            if what(&record.entry) {
                return Instant::now();
            }
        }
    })
    .await
    .expect("the guard recorded it in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_region_is_drained_in_time_and_no_request_fails_after() {
    let mut regions = Vec::new();
    for name in ["eu", "us", "ap"] {
        regions.push(DemoService::start(DemoConfig::new(name)).await.unwrap());
    }
    let proxy = LocalProxy::builder("regions")
        .threads(1)
        .upstream("eu", regions[0].addr())
        .upstream("us", regions[1].addr())
        .upstream("ap", regions[2].addr())
        .start()
        .await
        .unwrap();
    let mut probe = HttpProbe::new("healthz")
        .timeout(Duration::from_millis(150))
        .thresholds(1, 1);
    for (name, region) in ["eu", "us", "ap"].iter().zip(&regions) {
        probe = probe.url(
            *name,
            format!("http://{}/healthz", region.addr()).parse().unwrap(),
        );
    }
    let targets = [("eu", 34), ("us", 33), ("ap", 33)]
        .iter()
        .map(|&(name, w)| {
            Target::new(
                rev(name),
                Weight::from_percent(w).unwrap(),
                Weight::from_percent(60).unwrap(),
            )
        })
        .collect();
    let guard = Arc::new(
        FailoverGuard::builder(
            "regions".parse().unwrap(),
            FailoverPolicy::new(targets).unwrap().fail_after(2),
        )
        .router(proxy.router())
        .probe(probe)
        .probe_every(INTERVAL, Duration::from_millis(150))
        .drift(Duration::from_millis(300), DriftAction::Repair)
        .build()
        .unwrap(),
    );
    let mut rx = guard.subscribe();
    let running = guard.spawn();
    wait_for(&mut rx, |e| {
        matches!(e, GuardEntry::Split { error: None, .. })
    })
    .await;
    assert_eq!(proxy.router().split(), split(34, 33, 33));

    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(8));
    assert!(load.wait_for(3_000, DEADLINE).await);
    assert_eq!(load.report().failed(), 0);

    regions[0].shutdown().await;
    let killed = Instant::now();
    let drained = wait_for(&mut rx, |e| {
        matches!(
            e,
            GuardEntry::Failover {
                event: cutover_core::guard::FailoverEvent::Drained { .. }
            }
        )
    })
    .await;
    let applied = wait_for(&mut rx, |e| {
        matches!(e, GuardEntry::Split { error: None, .. })
    })
    .await;
    assert_eq!(proxy.router().split(), split(0, 50, 50));
    // A request keeps the routing table it started with: let those in flight at the switch
    // (sent to eu just before it, refused at once) finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_detection = load.report();
    let eu_at_detection = proxy.metrics().total(&rev("eu")).unwrap().0;
    let (took, call) = (applied - killed, applied - drained);
    // Two probe intervals and the router call, plus one interval of slack for a busy machine.
    assert!(
        took <= 3 * INTERVAL + call,
        "drained {took:?} after the kill (router call {call:?})"
    );

    let target = at_detection.total() + 5_000;
    assert!(load.wait_for(target, DEADLINE).await);
    let after = load.report();
    assert_eq!(
        after.failed(),
        at_detection.failed(),
        "no request fails after detection ({} more requests)",
        after.total() - at_detection.total()
    );
    assert_eq!(
        proxy.metrics().total(&rev("eu")).unwrap().0,
        eu_at_detection,
        "nothing is sent to eu once drained"
    );

    proxy.router().set_split(&split(80, 10, 10)).await.unwrap();
    wait_for(&mut rx, |e| {
        matches!(
            e,
            GuardEntry::Split {
                repair: true,
                error: None,
                ..
            }
        )
    })
    .await;
    assert_eq!(proxy.router().split(), split(0, 50, 50));

    load.stop().await;
    running.stop().await.unwrap();
    proxy.shutdown().await;
    for region in &regions[1..] {
        region.shutdown().await;
    }
}
