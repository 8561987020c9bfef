//! Health-based failover across three regions, and drift repair, over real HTTP.
//!
//! ```text
//! cargo run --example failover
//! ```
//!
//! Everything is real and runs in this process: three regions (`eu`, `us`, `ap`: a demo service
//! each on 127.0.0.1) behind the cutover-local proxy at 34/33/33, a load generator sending about
//! 1,000 requests a second through the proxy, and a failover guard probing each region's
//! `/healthz` every 500 ms. The example then:
//!
//! 1. kills `eu`: after two failed probes the guard drains it and spreads its weight over `us`
//!    and `ap` (capacity 60 % each) in one router call;
//! 2. brings `eu` back: after its hold-out and three passing probes it gets its weight back in
//!    four steps;
//! 3. changes the proxy's split by hand: the guard, reading the proxy back every second,
//!    records the drift and repairs it.
//!
//! It prints the guard's timeline and the failed requests before and after detection, and
//! exits non-zero if a target was missed (drain later than two probe intervals plus the router
//! call, a failed request after detection, no step-by-step restore, drift not repaired).
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["local"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "sync", "time"] }
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cutover::guard::{
    DriftAction, FailoverEvent, FailoverGuard, FailoverPolicy, GuardEntry, GuardRecord, Target,
};
use cutover::local::demo::{DemoConfig, DemoService};
use cutover::local::load::{LoadConfig, LoadGenerator, LoadReport};
use cutover::local::{HttpProbe, LocalProxy};
use cutover::{MemoryStateStore, RevisionId, StateStore, TrafficRouter, TrafficSplit, Weight};
use tokio::sync::broadcast;
use tokio::time::Instant;

const REGIONS: [(&str, u8); 3] = [("eu", 34), ("us", 33), ("ap", 33)];
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Time for requests in flight at the switch to finish.
const SETTLE: Duration = Duration::from_millis(100);

fn rev(s: &str) -> RevisionId {
    s.parse().expect("a valid revision id")
}

fn pct(p: u8) -> Weight {
    Weight::from_percent(p).expect("a percentage")
}

/// Guard records as they come, each with the time it arrived.
struct Timeline {
    began: Instant,
    rx: broadcast::Receiver<GuardRecord>,
    seen: Vec<(Duration, GuardRecord)>,
}

impl Timeline {
    /// Waits (up to `deadline`) for a record matching `what`; returns when it arrived.
    async fn wait_for(
        &mut self,
        deadline: Duration,
        what: impl Fn(&GuardEntry) -> bool,
    ) -> Option<Duration> {
        let until = Instant::now() + deadline;
        loop {
            let record = tokio::time::timeout_at(until, self.rx.recv())
                .await
                .ok()?
                .ok()?;
            let at = self.began.elapsed();
            let hit = what(&record.entry);
            println!("  {:>7.3} s  {record}", at.as_secs_f64());
            self.seen.push((at, record));
            if hit {
                return Some(at);
            }
        }
    }
}

fn failed(report: &LoadReport) -> u64 {
    report.failed()
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("failover: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let mut regions = Vec::new();
    for (name, _) in REGIONS {
        regions.push(DemoService::start(DemoConfig::new(name)).await?);
    }
    let mut proxy = LocalProxy::builder("regions");
    for ((name, _), service) in REGIONS.iter().zip(&regions) {
        proxy = proxy.upstream(*name, service.addr());
    }
    let proxy = proxy
        .upstream_timeout(Duration::from_secs(2))
        .start()
        .await?;
    let mut probe = HttpProbe::new("healthz")
        .timeout(Duration::from_millis(250))
        .thresholds(1, 1);
    for ((name, _), service) in REGIONS.iter().zip(&regions) {
        probe = probe.url(*name, format!("http://{}/healthz", service.addr()).parse()?);
    }
    let policy = FailoverPolicy::new(
        REGIONS
            .iter()
            .map(|&(name, weight)| Target::new(rev(name), pct(weight), pct(60)))
            .collect(),
    )?
    .fail_after(2)
    .restore_after(3)
    .restore_steps(4)
    .hold_out(Duration::from_secs(2), Duration::from_mins(1));
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let guard = Arc::new(
        FailoverGuard::builder("regions".parse()?, policy)
            .router(proxy.router())
            .probe(probe)
            .store(store.clone())
            .probe_every(PROBE_INTERVAL, Duration::from_millis(250))
            .drift(Duration::from_secs(1), DriftAction::Repair)
            .command_poll(Duration::from_millis(200))
            .build()?,
    );
    let began = Instant::now();
    let mut timeline = Timeline {
        began,
        rx: guard.subscribe(),
        seen: Vec::new(),
    };
    let running = guard.spawn();
    println!(
        "regions eu {}, us {}, ap {} behind the proxy on {}; probes every {} ms",
        regions[0].addr(),
        regions[1].addr(),
        regions[2].addr(),
        proxy.addr(),
        PROBE_INTERVAL.as_millis()
    );
    println!("timeline:");
    let set = |e: &GuardEntry| matches!(e, GuardEntry::Split { error: None, .. });
    timeline.wait_for(Duration::from_secs(5), set).await;
    let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(8).rate(1_000));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut ok = true;

    // 1. Kill eu.
    let eu_addr = regions[0].addr();
    let at_kill = load.report();
    let kill_sent = began.elapsed();
    regions[0].shutdown().await;
    // Dead once its listener is closed and the requests in flight are answered.
    let killed = began.elapsed();
    println!(
        "  {:>7.3} s  -- eu killed (shutdown sent at {:.3} s)",
        killed.as_secs_f64(),
        kill_sent.as_secs_f64()
    );
    let drained = timeline
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, GuardEntry::Failover { event: FailoverEvent::Drained { target, .. } } if target.as_str() == "eu")
        })
        .await;
    let applied = timeline.wait_for(Duration::from_secs(10), set).await;
    let split_now = proxy.router().split();
    // A request keeps the routing table it started with: those in flight at the switch
    // (sent to eu just before it) fail within a few ms and count in the detection window.
    tokio::time::sleep(SETTLE).await;
    let at_detection = load.report();
    let eu_at_detection = proxy.metrics().total(&rev("eu")).unwrap_or((0, 0)).0;
    let (Some(drained), Some(applied)) = (drained, applied) else {
        println!("FAIL: eu was not drained");
        return Ok(false);
    };
    let detection = applied.saturating_sub(killed);
    let router_call = applied.saturating_sub(drained);
    println!(
        "eu drained {} ms after the kill (router call {} ms); split now {split_now}",
        detection.as_millis(),
        router_call.as_millis()
    );
    if detection > 2 * PROBE_INTERVAL + router_call + Duration::from_millis(50) {
        println!("FAIL: drained later than two probe intervals plus the router call");
        ok = false;
    }
    if split_now.weight(&rev("eu")) != Weight::ZERO {
        println!("FAIL: eu still has traffic");
        ok = false;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_detection = load.report();
    let eu_sent = proxy.metrics().total(&rev("eu")).unwrap_or((0, 0)).0 - eu_at_detection;
    println!("requests sent to eu in the 3 s after detection: {eu_sent}");
    if eu_sent > 0 {
        println!("FAIL: eu still got requests after it was drained");
        ok = false;
    }

    // 2. Bring eu back on its address.
    regions[0] = DemoService::start_on(DemoConfig::new("eu"), eu_addr).await?;
    println!(
        "  {:>7.3} s  -- eu back on {eu_addr}",
        began.elapsed().as_secs_f64()
    );
    let restored = timeline
        .wait_for(Duration::from_secs(20), |e| {
            matches!(
                e,
                GuardEntry::Failover {
                    event: FailoverEvent::Restored { .. }
                }
            )
        })
        .await;
    timeline.wait_for(Duration::from_secs(5), set).await;
    let steps: Vec<TrafficSplit> = timeline
        .seen
        .iter()
        .filter_map(|(_, r)| match &r.entry {
            GuardEntry::Split {
                split,
                error: None,
                repair: false,
                ..
            } => Some(split.clone()),
            _ => None,
        })
        .collect();
    println!(
        "splits set: {}",
        steps
            .iter()
            .map(|s| format!("eu {}", s.weight(&rev("eu"))))
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    if restored.is_none() || steps.len() < 6 {
        println!("FAIL: eu was not restored step by step");
        ok = false;
    }

    // 3. Someone edits the proxy's split by hand.
    let by_hand = TrafficSplit::new([
        (rev("eu"), pct(80)),
        (rev("us"), pct(10)),
        (rev("ap"), pct(10)),
    ])?;
    proxy.router().set_split(&by_hand).await?;
    println!(
        "  {:>7.3} s  -- split set by hand to {by_hand}",
        began.elapsed().as_secs_f64()
    );
    let repaired = timeline
        .wait_for(Duration::from_secs(5), |e| {
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
    let final_split = proxy.router().split();
    println!("split after repair: {final_split}");
    if repaired.is_none() || final_split.weight(&rev("eu")) != pct(34) {
        println!("FAIL: drift not repaired");
        ok = false;
    }

    let end = load.stop().await;
    running.stop().await?;
    proxy.shutdown().await;
    for region in &regions {
        region.shutdown().await;
    }

    let before = failed(&at_detection) - failed(&at_kill);
    let after = failed(&after_detection) - failed(&at_detection);
    let later = failed(&end) - failed(&after_detection);
    println!(
        "requests: {} in all; failed before the kill {}, between kill and detection (+{} ms for \
         requests in flight) {before}, in the 3 s after detection {after}, from eu's return \
         to the end {later}",
        end.total(),
        failed(&at_kill),
        SETTLE.as_millis(),
    );
    if after > 0 || later > 0 || failed(&at_kill) > 0 {
        println!("FAIL: requests failed outside the detection window");
        ok = false;
    }
    println!("{}", if ok { "OK" } else { "FAILED" });
    Ok(ok)
}
