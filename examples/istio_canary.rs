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

use std::process::ExitCode;
use std::time::Duration;

use cutover::istio::cluster::{ClusterError, cluster_with_istio};
use cutover::istio::{Destination, DestinationRuleSubsets, IstioRouter};
use cutover::{
    Canary, CanaryStep, Clock as _, HeaderRoute, Outcome, Plan, Rollout, RouteMatch, TokioClock,
    TrafficRouter as _,
};
use cutover_examples::{chain, pause_arg, print_progress};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

const NEEDS: &str = "It needs a cluster with Istio and, in ISTIO_NAMESPACE (default `default`), \
                     a VirtualService ISTIO_VIRTUAL_SERVICE (default `reviews`) with an HTTP \
                     route ISTIO_ROUTE (default `primary`) to host ISTIO_HOST (default \
                     `reviews`), whose pods are labelled version=v1 and version=v2.";

fn main() -> ExitCode {
    let pause = match pause_arg(Duration::from_secs(20)) {
        Ok(pause) => pause,
        Err(e) => {
            eprintln!("istio_canary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(pause))
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
) -> Result<Outcome, Box<dyn std::error::Error>> {
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
    let printer = print_progress(&rollout, start);
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
