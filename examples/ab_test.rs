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

use std::process::ExitCode;

use cutover::Outcome;
use cutover::local::demo::DemoConfig;
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover_examples::{Stage, finish, only_flag, run_printed, run_real_time};

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
    run_real_time(async { run(only_flag("--no-effect")?).await })
}

async fn run(no_effect: bool) -> Result<ExitCode, String> {
    let v2_rate = if no_effect { 0.10 } else { 0.15 };
    let stage = Stage::start(
        "signup",
        DemoConfig::new("v1").conversion_rate(0.10),
        DemoConfig::new("v2").conversion_rate(v2_rate),
    )
    .await?;
    let proxy = &stage.proxy;
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
    let (rollout, start) = stage.rollout(PLAN, None)?;
    let outcome = run_printed(rollout, start, None).await;
    let (a, b) = (a.stop().await, b.stop().await);
    println!(
        "group a: {} requests, group b: {} requests; {} not 2xx",
        a.total(),
        b.total(),
        a.failed() + b.failed()
    );
    proxy.shutdown().await;
    Ok(finish(outcome, |outcome| {
        let Outcome::Concluded {
            comparison: Some(comparison),
            summary,
        } = outcome
        else {
            return None;
        };
        println!("CONCLUDED: {summary}");
        let effect = comparison.effect * 100.0;
        let confidence = comparison.confidence;
        match (
            comparison.winner.as_ref().map(cutover::RevisionId::as_str),
            no_effect,
        ) {
            (Some("v2"), false) => Some(format!(
                "WINNER: v2, conversion {effect:+.2} points, confidence {confidence:.4} (p = {:.1e})",
                1.0 - confidence
            )),
            (None, true) => Some(format!(
                "NO WINNER: difference {effect:+.2} points, confidence {confidence:.4} is below 0.95"
            )),
            _ => None,
        }
    }))
}
