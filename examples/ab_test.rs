//! An A/B test over real HTTP: a cookie decides who sees v2, and a two-proportion test on the
//! conversions the proxy counted names the winner and its confidence.
//!
//! ```text
//! cargo run --example ab_test                  # v2 converts 13 % vs 10 %: v2 wins
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

use std::net::SocketAddr;
use std::process::ExitCode;

use cutover::local::LocalProxy;
use cutover::local::demo::{DemoConfig, DemoService};
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::{Clock as _, Outcome, Plan, Rollout, TokioClock};
use cutover_examples::{chain, print_progress};

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

fn main() -> ExitCode {
    let no_effect = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--no-effect") => true,
        Some(other) => {
            eprintln!("unknown argument {other}; use --no-effect");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(no_effect))
}

async fn run(no_effect: bool) -> ExitCode {
    let plan = Plan::from_yaml(PLAN).expect("the plan above is valid");
    let v2_rate = if no_effect { 0.10 } else { 0.13 };
    let (v1, v2) = match tokio::try_join!(
        DemoService::start(DemoConfig::new("v1").conversion_rate(0.10)),
        DemoService::start(DemoConfig::new("v2").conversion_rate(v2_rate)),
    ) {
        Ok(services) => services,
        Err(e) => {
            eprintln!("cannot start the demo services: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proxy = match LocalProxy::builder("signup")
        .upstream("v1", v1.addr())
        .upstream("v2", v2.addr())
        .admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
    {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("cannot start the proxy: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
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
    let rollout = match Rollout::builder("signup", plan)
        .revisions("v1", "v2")
        .router(proxy.router())
        .metric_source("proxy", proxy.metrics())
        .clock(clock)
        .build()
    {
        Ok(rollout) => rollout,
        Err(e) => {
            eprintln!("cannot build the rollout: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let printer = print_progress(&rollout, start);
    let outcome = rollout.run().await;
    let _ = printer.await;
    let (a, b) = (a.stop().await, b.stop().await);
    println!(
        "group a: {} requests, group b: {} requests; {} not 2xx",
        a.total(),
        b.total(),
        a.failed() + b.failed()
    );
    proxy.shutdown().await;
    let comparison = match outcome {
        Ok(Outcome::Concluded {
            comparison,
            summary,
        }) => {
            println!("CONCLUDED: {summary}");
            comparison
        }
        Ok(other) => {
            println!("unexpected outcome: {other}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("A/B test failed: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let Some(comparison) = comparison else {
        println!("no comparison was made");
        return ExitCode::FAILURE;
    };
    let winner = comparison.winner.as_ref().map(ToString::to_string);
    match (&winner, no_effect) {
        (Some(w), false) if w == "v2" => {
            println!(
                "WINNER: v2, conversion {:+.2} points, confidence {:.4} (p = {:.1e})",
                comparison.effect * 100.0,
                comparison.confidence,
                1.0 - comparison.confidence
            );
            ExitCode::SUCCESS
        }
        (None, true) => {
            println!(
                "NO WINNER: difference {:+.2} points, confidence {:.1} % is below 95 %",
                comparison.effect * 100.0,
                comparison.confidence * 100.0
            );
            ExitCode::SUCCESS
        }
        _ => {
            println!("unexpected winner: {winner:?}");
            ExitCode::FAILURE
        }
    }
}
