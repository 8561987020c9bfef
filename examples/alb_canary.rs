//! A canary on an AWS Application Load Balancer: 10 % -> 50 % -> 100 % through the weights of
//! a listener's forward action, checking the canary target group's health after each step.
//!
//! ```text
//! # against moto (creates a VPC-backed ALB, target groups and a listener itself):
//! python3 -m moto.server -H 127.0.0.1 -p 5000 &
//! AWS_ENDPOINT_URL=http://127.0.0.1:5000 cargo run --example alb_canary --features aws-alb
//!
//! # against existing resources (moto or AWS; credentials and region from the standard chain):
//! ALB_LISTENER_ARN=... ALB_STABLE_TG_ARN=... ALB_CANARY_TG_ARN=... cargo run --example alb_canary --features aws-alb
//! ```
//!
//! Without `AWS_ENDPOINT_URL` or the three ARNs it explains what it needs and exits 0. It runs
//! on real time (the load balancer is real), with 1-second pauses.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own (`test-util` brings `cutover::aws_alb::moto`, which builds the moto
//! fixture):
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["aws-alb", "test-util"] }
//! futures-util = "0.3"
//! tokio = { version = "1", features = ["macros", "rt"] }
//! ```

use std::error::Error;
use std::process::ExitCode;

use cutover::aws_alb::moto::{create_fixture, moto_client};
use cutover::aws_alb::sdk::types::TargetDescription;
use cutover::aws_alb::{AlbRouter, TargetHealthProbe, client_from_env};
use cutover::{
    Clock as _, Outcome, Plan, Rollout, RolloutEvent, Timestamp, TokioClock, TrafficRouter as _,
};
use futures_util::StreamExt as _;

const PLAN: &str = "
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: { duration: 1s }
      - set_weight: 50
      - pause: { duration: 1s }
progress_deadline: 1m
poll_interval: 1s
";

const HELP: &str = "\
alb_canary moves traffic between two target groups of an Application Load Balancer.
It needs one of:
  - AWS_ENDPOINT_URL=http://127.0.0.1:PORT pointing at a moto server
    (python3 -m moto.server -H 127.0.0.1 -p PORT); the example creates the load balancer,
    target groups, listener and a target itself;
  - ALB_LISTENER_ARN, ALB_STABLE_TG_ARN and ALB_CANARY_TG_ARN naming existing resources, with
    credentials and region from the standard AWS chain (this changes the listener's weights).
Neither is set, so there is nothing to do.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let arns = ["ALB_LISTENER_ARN", "ALB_STABLE_TG_ARN", "ALB_CANARY_TG_ARN"]
        .map(|v| std::env::var(v).ok());
    run(endpoint, arns).await
}

async fn run(endpoint: Option<String>, arns: [Option<String>; 3]) -> ExitCode {
    let (client, listener, stable, canary) = match (arns, endpoint) {
        ([Some(l), Some(s), Some(c)], _) => (client_from_env().await, l, s, c),
        (_, Some(endpoint)) => {
            let client = moto_client(&endpoint);
            // Unique per run, so the example can run again against the same moto server.
            let name = format!("alb-canary-{}", std::process::id());
            let fixture = match create_fixture(&client, &endpoint, &name).await {
                Ok(f) => f,
                Err(e) => {
                    eprintln!(
                        "cannot set up the load balancer on {endpoint}: {}",
                        chain(&*e)
                    );
                    return ExitCode::FAILURE;
                }
            };
            println!("created load balancer {}", fixture.load_balancer);
            let target = TargetDescription::builder()
                .id("10.0.2.10")
                .port(8080)
                .build();
            if let Err(e) = client
                .register_targets()
                .target_group_arn(&fixture.candidate)
                .targets(target)
                .send()
                .await
            {
                eprintln!("cannot register the canary target: {}", chain(&e));
                return ExitCode::FAILURE;
            }
            (client, fixture.listener, fixture.stable, fixture.candidate)
        }
        _ => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
    };
    let router = match AlbRouter::builder(client.clone())
        .listener(&listener)
        .target_group("v1", &stable)
        .target_group("v2", &canary)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let probe =
        match TargetHealthProbe::new(client, [("v1", stable.as_str()), ("v2", canary.as_str())]) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("invalid configuration: {e}");
                return ExitCode::FAILURE;
            }
        };
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder(
        "alb-canary",
        Plan::from_yaml(PLAN).expect("the plan above is valid"),
    )
    .revisions("v1", "v2")
    .router(router.clone())
    .health_probe(probe)
    .clock(clock)
    .build();
    let rollout = match rollout {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot build the rollout: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    println!("canary on {}: v1 -> v2", router.name());
    let printer = print_records(&rollout, start);
    let outcome = rollout.run().await;
    let _ = printer.await;
    match outcome {
        Ok(Outcome::Promoted) => {
            match router.current_split().await {
                Ok(Some(split)) => println!("PROMOTED; the listener now reports {split}"),
                Ok(None) => println!("PROMOTED"),
                Err(e) => println!("PROMOTED, but reading the listener back failed: {e}"),
            }
            ExitCode::SUCCESS
        }
        Ok(other) => {
            println!("unexpected outcome: {other}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rollout failed: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Prints every decision as it is recorded, with the time since `start`, and every retry of a
/// provider call.
fn print_records(rollout: &Rollout, start: Timestamp) -> tokio::task::JoinHandle<()> {
    let mut events = rollout.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                RolloutEvent::Record(record) => {
                    let secs = record.at.saturating_since(start).as_secs();
                    println!("[+{:02}:{:02}] {}", secs / 60, secs % 60, record.summary);
                }
                RolloutEvent::Retrying {
                    op,
                    provider,
                    attempt,
                    error,
                    ..
                } => println!("         retrying {op} on {provider} (attempt {attempt}): {error}"),
                _ => {}
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
