//! An A/B test over real HTTP: a cookie decides who sees v2, and a two-proportion test on the
//! conversions the proxy counted names the winner and its confidence.
//!
//! ```text
//! cargo run --example ab_test                  # v2 converts 15 % vs 10 %: v2 wins
//! cargo run --example ab_test -- --no-effect   # both convert 10 %: no winner (about one run
//!                                              # in ten still names one by chance: alpha 0.05,
//!                                              # tested twice with the extension)
//! ```
//!
//! v1 and v2 are demo services on 127.0.0.1 behind the cutover-local proxy; a response with
//! the `x-conversion` header counts as a conversion. Group A (cookie `group=a`) and group B
//! (cookie `group=b`) each send about 800 requests/s. A cookie route sends group B to v2; the
//! weights keep everyone else on v1. After 6 s the `proportions` analysis compares the
//! conversion rates (two-proportion z-test, alpha 0.05) and the test ends with traffic back
//! on v1 and the result reported.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["local"] }
//! futures-util = "0.3"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use cutover::local::LocalProxy;
use cutover::local::demo::{DemoConfig, DemoService};
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::{
    Clock as _, Outcome, Plan, RevisionId, Rollout, RolloutEvent, Timestamp, TokioClock,
};
use futures_util::StreamExt as _;

const PLAN: &str = r"
strategy:
  ab_test:
    routes: [ { name: group-b, match: [ { cookie: { name: group, value: { exact: b } } } ] } ]
    duration: 6s
    analysis: conversion
    extensions: 1
analyses:
  conversion:
    proportions: { source: proxy, query: conversions, higher_is_better: true, alpha: 0.05, min_samples: 1000 }
progress_deadline: 30s
";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let no_effect = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--no-effect") => true,
        Some(other) => {
            eprintln!("unexpected argument {other}; the only one is --no-effect");
            return ExitCode::FAILURE;
        }
    };
    run(no_effect).await.unwrap_or_else(|e| {
        eprintln!("{}", chain(&*e));
        ExitCode::FAILURE
    })
}

async fn run(no_effect: bool) -> Result<ExitCode, Box<dyn Error>> {
    let v2_rate = if no_effect { 0.10 } else { 0.15 };
    let v1 = DemoService::start(DemoConfig::new("v1").conversion_rate(0.10)).await?;
    let v2 = DemoService::start(DemoConfig::new("v2").conversion_rate(v2_rate)).await?;
    // The proxy counts a response carrying `x-conversion` as a conversion of its revision.
    let proxy = LocalProxy::builder("signup")
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .upstream_timeout(Duration::from_secs(2))
        .start()
        .await?;
    println!(
        "signup: v1 converts 10.0 %, v2 converts {:.1} %; proxy on {}",
        v2_rate * 100.0,
        proxy.addr()
    );
    let group = |g: &str| {
        LoadGenerator::start(
            &LoadConfig::new(proxy.addr())
                .concurrency(4)
                .rate(800)
                .header("cookie", &format!("group={g}")),
        )
    };
    let (a, b) = (group("a"), group("b"));
    println!("load: group a and group b, about 800 requests/s each");

    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("signup", Plan::from_yaml(PLAN)?)
        .revisions("v1", "v2")
        .router(proxy.router())
        .metric_source("proxy", proxy.metrics())
        .clock(clock)
        .build()?;
    let printer = print_records(&rollout, start);
    let outcome = rollout.run().await;
    printer.await?;

    let (a, b) = (a.stop().await, b.stop().await);
    println!(
        "group a: {} requests, group b: {} requests; {} not 2xx",
        a.total(),
        b.total(),
        a.failed() + b.failed()
    );
    proxy.shutdown().await;
    let Outcome::Concluded {
        comparison: Some(comparison),
        summary,
    } = outcome?
    else {
        println!("unexpected outcome: the test did not conclude with a comparison");
        return Ok(ExitCode::FAILURE);
    };
    println!("CONCLUDED: {summary}");
    let effect = comparison.effect * 100.0;
    let confidence = comparison.confidence;
    match (
        comparison.winner.as_ref().map(RevisionId::as_str),
        no_effect,
    ) {
        (Some("v2"), false) => println!(
            "WINNER: v2, conversion {effect:+.2} points, confidence {confidence:.4} (p = {:.1e})",
            1.0 - confidence
        ),
        (None, true) => println!(
            "NO WINNER: difference {effect:+.2} points, confidence {confidence:.4} is below 0.95"
        ),
        (winner, _) => {
            println!("unexpected winner: {winner:?}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints every decision as it is recorded, with the time since `start`.
fn print_records(rollout: &Rollout, start: Timestamp) -> tokio::task::JoinHandle<()> {
    let mut events = rollout.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let RolloutEvent::Record(record) = event {
                let secs = record.at.saturating_since(start).as_secs();
                println!("[+{:02}:{:02}] {}", secs / 60, secs % 60, record.summary);
            }
        }
    })
}

/// An error and its sources on one line.
fn chain(error: &dyn Error) -> String {
    let causes = std::iter::successors(Some(error), |&e| e.source());
    causes
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
