//! Blue-green over real HTTP: preview, smoke test with the HTTP probe, switch, post-promotion
//! analysis, and an automatic switch back.
//!
//! ```text
//! cargo run --example blue_green            # green is healthy: promoted
//! cargo run --example blue_green -- --bad   # green fails 5 % of requests: switched back
//! ```
//!
//! Blue (v1) and green (v2) are demo services on 127.0.0.1 behind the cutover-local proxy.
//! Customers (about 1,000 requests/s) stay on blue while green is smoke-tested with the
//! HTTP probe on `/healthz` and previewed by testers who send `x-preview: 1` (about 100
//! requests/s). The preview analysis is a smoke check on a small sample (at most 10 % errors,
//! p99 under 250 ms); after the switch, the post-promotion analysis holds green to 1 % on
//! full traffic. With `--bad`, green's 5 % error rate slips through the small preview and
//! is caught after the switch: traffic goes back to blue in one router call.

use std::process::ExitCode;

use cutover::Outcome;
use cutover::local::demo::DemoConfig;
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover_examples::{Stage, finish, only_flag, run_printed, run_real_time};

const PLAN: &str = r#"
strategy:
  blue_green:
    preview_route: { name: preview, match: [ { header: { name: x-preview, value: { exact: "1" } } } ] }
    pre_promotion_analysis: { name: preview-smoke, initial_delay: 2s, count: 1 }
    auto_promotion: enabled
    post_promotion_analysis: { name: error-rate, initial_delay: 1s, count: 3, interval: 1s }
    scale_down_delay: 1s
analyses:
  preview-smoke:
    threshold:
      metrics:
        - { name: preview-errors, source: proxy, query: error_rate, window: 3s, max: 0.10, min_samples: 50 }
        - { name: preview-p99, source: proxy, query: latency, aggregate: p99, window: 3s, max: 0.25, min_samples: 50 }
  error-rate:
    threshold:
      metrics:
        - { name: errors, source: proxy, query: error_rate, window: 2s, max: 0.01, min_samples: 200 }
progress_deadline: 30s
"#;

fn main() -> ExitCode {
    run_real_time(async { run(only_flag("--bad")?).await })
}

async fn run(bad: bool) -> Result<ExitCode, String> {
    let green_errors = if bad { 0.05 } else { 0.0 };
    let stage = Stage::start(
        "storefront",
        DemoConfig::new("v1"),
        DemoConfig::new("v2").error_rate(green_errors),
    )
    .await?;
    let proxy = &stage.proxy;
    let smoke = stage
        .probe("smoke")
        .expect_status(200)
        .body_contains("ok")
        .thresholds(1, 3);
    println!(
        "storefront: blue v1 on {}, green v2 on {} (error rate {:.0} %), proxy on {}",
        stage.v1.addr(),
        stage.v2.addr(),
        green_errors * 100.0,
        proxy.addr()
    );
    let customers = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(8).rate(1_000));
    let testers = LoadGenerator::start(
        &LoadConfig::new(proxy.addr())
            .concurrency(2)
            .rate(100)
            .header("x-preview", "1"),
    );
    println!("load: customers about 1,000 requests/s, testers (x-preview: 1) about 100/s");
    let (rollout, start) = stage.rollout(PLAN, Some(smoke))?;
    let outcome = run_printed(rollout, start, Some(proxy)).await;
    let (c, t) = (customers.stop().await, testers.stop().await);
    println!(
        "customers: {} requests, {} not 2xx, {} without an answer; testers: {} requests; traffic now {}",
        c.total(),
        c.failed(),
        c.transport_errors,
        t.total(),
        proxy.router().split()
    );
    proxy.shutdown().await;
    Ok(finish(outcome, |outcome| match (outcome, bad) {
        (Outcome::Promoted, false) => Some("PROMOTED: green v2 serves everyone".to_owned()),
        (Outcome::RolledBack(reason), true) => Some(format!("SWITCHED BACK to blue: {reason}")),
        _ => None,
    }))
}
