//! A canary on a real cluster with Istio: 1 % -> 10 % -> 50 % -> 100 % of a VirtualService
//! route, with a header route for testers on the way.
//!
//! ```text
//! cargo run --example istio_canary --features istio
//! cargo run --example istio_canary --features istio -- --pause 5
//! ```
//!
//! It needs a cluster with Istio (`KUBECONFIG` or `~/.kube/config`), and in the namespace
//! `ISTIO_NAMESPACE` (default `default`):
//!
//! - a VirtualService `ISTIO_VIRTUAL_SERVICE` (default `reviews`) with an HTTP route named
//!   `ISTIO_ROUTE` (default `primary`) that sends to the host `ISTIO_HOST` (default `reviews`);
//! - pods of that Service labelled `version=v1` (stable) and `version=v2` (candidate).
//!
//! It creates or updates the DestinationRule `ISTIO_HOST` with subsets `v1` and `v2` (other
//! subsets and policies are kept), then moves the route's weights, pausing `--pause` seconds
//! (20 by default) at each step, and checks that the route ends with all traffic on v2.
//! Requests with `x-canary: always` reach v2 from the first step. With no cluster configured
//! at all it says what it needs and exits 0; in every other case where it cannot do its job (the
//! cluster unreachable, Istio's CRDs missing, a permission or the VirtualService missing, a
//! rollback) it exits non-zero. The Role of the `cutover-istio` docs is all it needs.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["istio"] }
//! futures-util = "0.3"
//! tokio = { version = "1", features = ["macros", "rt"] }
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use cutover::istio::cluster::{ClusterError, cluster_with_istio};
use cutover::istio::{Destination, DestinationRuleSubsets, IstioRouter};
use cutover::{
    Canary, CanaryStep, Clock as _, HeaderRoute, Outcome, Plan, Rollout, RolloutEvent, RouteMatch,
    Timestamp, TokioClock, TrafficRouter as _,
};
use futures_util::StreamExt as _;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

const NEEDS: &str = "It needs a cluster with Istio and, in ISTIO_NAMESPACE (default `default`), \
                     a VirtualService ISTIO_VIRTUAL_SERVICE (default `reviews`) with an HTTP \
                     route ISTIO_ROUTE (default `primary`) to host ISTIO_HOST (default \
                     `reviews`), whose pods are labelled version=v1 and version=v2.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let pause = match pause_arg(Duration::from_secs(20)) {
        Ok(pause) => pause,
        Err(e) => {
            eprintln!("istio_canary: {e}");
            return ExitCode::FAILURE;
        }
    };
    run(pause).await
}

async fn run(pause: Duration) -> ExitCode {
    let client = match cluster_with_istio().await {
        Ok(client) => client,
        Err(why @ ClusterError::NotConfigured) => {
            println!("istio_canary: {why}.\n{NEEDS} Nothing was changed.");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("istio_canary: {}.\n{NEEDS}", chain(&why));
            return ExitCode::FAILURE;
        }
    };
    match canary(client, pause).await {
        Ok(outcome) => {
            println!("outcome: {outcome}");
            if outcome == Outcome::Promoted {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("istio_canary failed: {}", chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn canary(
    client: cutover::istio::kube::Client,
    pause: Duration,
) -> Result<Outcome, Box<dyn Error>> {
    let namespace = env("ISTIO_NAMESPACE", "default");
    let virtual_service = env("ISTIO_VIRTUAL_SERVICE", "reviews");
    let route = env("ISTIO_ROUTE", "primary");
    let host = env("ISTIO_HOST", "reviews");

    DestinationRuleSubsets::new(client.clone(), &namespace, &host, &host)
        .subset("v1".parse()?, "v1", [("version", "v1")])
        .subset("v2".parse()?, "v2", [("version", "v2")])
        .ensure()
        .await?;
    let router = IstioRouter::new(client, &namespace, &virtual_service, &route)
        .destination("v1".parse()?, Destination::subset(&host, "v1"))
        .destination("v2".parse()?, Destination::subset(&host, "v2"));
    let check = router.clone();

    let pause = CanaryStep::pause(pause);
    let plan = Plan::new(Canary::new([
        CanaryStep::SetHeaderRoute(HeaderRoute::new(
            "testers",
            [RouteMatch::header_exact("x-canary", "always")],
        )?),
        CanaryStep::set_weight(1)?,
        pause.clone(),
        CanaryStep::set_weight(10)?,
        pause.clone(),
        CanaryStep::set_weight(50)?,
        pause,
    ]));
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder(format!("{virtual_service}-canary").as_str(), plan)
        .revisions("v1", "v2")
        .router(router)
        .clock(clock)
        .build()?;
    println!("canary of {namespace}/{virtual_service} route `{route}`: v1 -> v2");
    let printer = print_records(&rollout, start);
    let outcome = rollout.run().await;
    let _ = printer.await;
    let outcome = outcome?;
    if outcome == Outcome::Promoted {
        let now = check.current_split().await?;
        let v2 = "v2".parse()?;
        if now
            .as_ref()
            .is_none_or(|s| s.weight(&v2).basis_points() != 10_000)
        {
            return Err(format!("promoted, but route `{route}` now reads {now:?}").into());
        }
        println!("route `{route}` sends everything to v2");
    }
    Ok(outcome)
}

/// The `--pause SECONDS` argument (how long each pause step lasts), the example's only
/// optional argument, or `default`.
fn pause_arg(default: Duration) -> Result<Duration, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(default),
        [flag, seconds] if flag == "--pause" => seconds
            .parse()
            .map(Duration::from_secs)
            .map_err(|e| format!("--pause {seconds}: {e}")),
        _ => Err(format!(
            "unexpected arguments {args:?}; the only one is --pause SECONDS"
        )),
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
