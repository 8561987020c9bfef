//! Blue-green with a preview route, a smoke test, a manual approval and post-promotion analysis.
//!
//! ```text
//! cargo run --example blue_green            # approved and promoted
//! cargo run --example blue_green -- --bad   # v2 errors after the switch: switched back at once
//! ```
//!
//! Providers are simulated in memory and time is virtual.

use std::process::ExitCode;

use cutover::test::{FakeProbe, FakeRouter, FakeWorkload, ScriptedAnalysis};
use cutover::{Clock as _, Outcome, Plan, Rollout, TokioClock, Verdict};
use cutover_examples::{SimulatedTraffic, chain, print_event};
use futures_util::StreamExt as _;

const PLAN: &str = r#"
strategy:
  blue_green:
    preview_route: { name: preview, match: [ { header: { name: x-preview, value: { exact: "1" } } } ] }
    preview_replicas: 1
    replicas: 4
    pre_promotion_analysis: { name: smoke }
    auto_promotion: disabled
    post_promotion_analysis: { name: error-rate, initial_delay: 1m, count: 3, interval: 1m }
    scale_down_delay: 5m
analyses:
  error-rate:
    threshold:
      metrics:
        - { name: errors, source: traffic, query: error_ratio, window: 1m, max: 0.01, min_samples: 100 }
"#;

fn main() -> ExitCode {
    let bad = std::env::args().any(|a| a == "--bad");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(bad))
}

async fn run(bad: bool) -> ExitCode {
    let plan = Plan::from_yaml(PLAN).expect("the plan above is valid");
    let router = FakeRouter::new("load-balancer");
    let workload = FakeWorkload::new("deployments");
    workload.set_replicas(&"v1".parse().expect("valid"), 4);
    let v2_errors = if bad { 0.05 } else { 0.001 };
    let traffic = SimulatedTraffic::new(
        router.clone(),
        2_000,
        vec![
            ("v1".parse().expect("valid"), 0.001),
            ("v2".parse().expect("valid"), v2_errors),
        ],
    );
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = match Rollout::builder("storefront", plan)
        .revisions("v1", "v2")
        .router(router)
        .workload(workload.clone())
        .health_probe(FakeProbe::new())
        .analysis("smoke", ScriptedAnalysis::verdicts([Verdict::Pass]))
        .metric_source("traffic", traffic)
        .clock(clock)
        .build()
    {
        Ok(rollout) => rollout,
        Err(e) => {
            eprintln!("cannot build the rollout: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let handle = rollout.handle();
    let mut events = rollout.subscribe();
    let approver = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            print_event(start, &event);
            if matches!(&event, cutover::RolloutEvent::Record(r) if r.summary.starts_with("pause: waiting to be promoted"))
            {
                println!("         (a person looks at the preview and approves)");
                let _ = handle.promote();
            }
        }
    });
    let outcome = rollout.run().await;
    let _ = approver.await;
    let v1 = workload.desired(&"v1".parse().expect("valid"));
    let v2 = workload.desired(&"v2".parse().expect("valid"));
    println!("replicas now: v1 {v1}, v2 {v2}");
    match (outcome, bad) {
        (Ok(Outcome::Promoted), false) => println!("PROMOTED"),
        (Ok(Outcome::RolledBack(reason)), true) => println!("SWITCHED BACK: {reason}"),
        (Ok(other), _) => {
            println!("unexpected outcome: {other}");
            return ExitCode::FAILURE;
        }
        (Err(e), _) => {
            eprintln!("rollout failed: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
