//! A release promoted through three environments: dev -> staging -> prod.
//!
//! ```text
//! cargo run --example pipeline              # prod asks for an approval
//! cargo run --example pipeline -- --approve # the approval is given at once
//! cargo run --example pipeline -- --bad     # v2 fails in staging
//! ```
//!
//! Everything is real and runs in this process: each environment is a cutover-local proxy in
//! front of its own v1 and v2 demo services on 127.0.0.1, with a load generator sending about
//! 200 requests a second through it. All three run v1 when the pipeline adopts it; then v2 is
//! submitted. Each stage promotes v2 with an ordinary canary judged on the error rate the
//! proxy measured (prod: one more step and a stricter limit, as overrides of the shared plan),
//! then verifies it: each stage's `verification` measures the error rate of all its traffic
//! twice more after the switch (prod with its stricter limit). Staging takes v2 only after dev verified it and it soaked there 5 s;
//! prod after 5 s in staging and a person's approval, which is sent through the state store
//! by a separate handle, as a command line or a dashboard would. With `--bad`, staging's v2
//! answers 20 % of requests with errors: its canary rolls back, v2 is marked failed there,
//! and prod keeps serving v1 without a single failed request.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["local", "pipeline"] }
//! async-trait = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "time"] }
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover::local::demo::{DemoConfig, DemoService};
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::local::{LocalProxy, ProxyMetrics, ProxyRouter};
use cutover::pipeline::{
    Environment, Event, Executor, Freight, Pipeline, PipelineHandle, PipelineState,
    PromotionContext,
};
use cutover::{MemoryStateStore, RevisionId, RolloutBuilder, TokioClock};

const PIPELINE: &str = r"
name: shop
plan:
  strategy:
    canary:
      steps:
        - set_weight: 20
        - analysis: { name: health, initial_delay: 2s, count: 2, interval: 1s }
        - set_weight: 50
        - analysis: { name: health, initial_delay: 2s, count: 2, interval: 1s }
  analyses:
    health:
      threshold:
        metrics:
          - { name: error-rate, source: proxy, query: error_rate, window: 3s, max: 0.01, min_samples: 10 }
  progress_deadline: 30s
stages:
  - name: dev
    providers: [dev]
    verification:         # after the switch: the error rate of all traffic, twice, a second apart
      runs: [ { name: health, initial_delay: 1s, interval: 1s, count: 2 } ]
  - name: staging
    upstreams: [dev]
    soak: 5s
    providers: [staging]
    verification:
      runs: [ { name: health, initial_delay: 1s, interval: 1s, count: 2 } ]
  - name: prod
    upstreams: [staging]
    soak: 5s
    promotion: manual
    providers: [prod]
    verification:         # with prod's stricter `health`
      runs: [ { name: health, initial_delay: 1s, interval: 1s, count: 2 } ]
    overrides:            # prod goes slower and is judged more strictly
      strategy:
        canary:
          steps:
            - set_weight: 10
            - analysis: { name: health, initial_delay: 2s, count: 2, interval: 1s }
            - set_weight: 50
            - analysis: { name: health, initial_delay: 2s, count: 2, interval: 1s }
      analyses:
        health:
          threshold:
            metrics:
              - { name: error-rate, source: proxy, query: error_rate, window: 3s, max: 0.005, min_samples: 10 }
";

/// One environment: a proxy in front of v1 and v2, and load through it.
struct Site {
    name: &'static str,
    services: [DemoService; 2],
    proxy: LocalProxy,
    load: LoadGenerator,
}

impl Site {
    async fn start(name: &'static str, v2_error_rate: f64) -> Result<Site, String> {
        let (v1, v2) = tokio::try_join!(
            DemoService::start(DemoConfig::new("v1")),
            DemoService::start(DemoConfig::new("v2").error_rate(v2_error_rate)),
        )
        .map_err(|e| format!("{name}: cannot start the demo services: {e}"))?;
        let proxy = LocalProxy::builder(name)
            .upstream("v1", v1.addr())
            .upstream("v2", v2.addr())
            .upstream_timeout(Duration::from_secs(2))
            .start()
            .await
            .map_err(|e| format!("{name}: cannot start the proxy: {e}"))?;
        let load = LoadGenerator::start(&LoadConfig::new(proxy.addr()).concurrency(4).rate(200));
        Ok(Site {
            name,
            services: [v1, v2],
            proxy,
            load,
        })
    }

    fn environment(&self) -> LocalEnvironment {
        LocalEnvironment {
            router: self.proxy.router(),
            metrics: self.proxy.metrics(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }
}

/// What a stage's rollout runs on: the site's proxy as router and metric source. Its
/// verification (in the YAML) reads the same metric source after the rollout promoted.
#[derive(Debug)]
struct LocalEnvironment {
    router: ProxyRouter,
    metrics: ProxyMetrics,
}

#[async_trait]
impl Environment for LocalEnvironment {
    fn attach(&self, rollout: RolloutBuilder, _ctx: &PromotionContext) -> RolloutBuilder {
        rollout
            .router(self.router.clone())
            .metric_source("proxy", self.metrics.clone())
    }
}

struct Args {
    approve_at_once: bool,
    bad: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        approve_at_once: false,
        bad: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--approve" => args.approve_at_once = true,
            "--bad" => args.bad = true,
            other => return Err(format!("unknown argument {other}; use --approve or --bad")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, String> {
    let pipeline = Pipeline::from_yaml(PIPELINE).map_err(|e| format!("pipeline: {e}"))?;
    let sites = [
        Site::start("dev", 0.0).await?,
        Site::start("staging", if args.bad { 0.2 } else { 0.0 }).await?,
        Site::start("prod", 0.0).await?,
    ];
    for site in &sites {
        println!(
            "{:<8} proxy on {}, v1 on {}, v2 on {}",
            site.name,
            site.addr(),
            site.services[0].addr(),
            site.services[1].addr()
        );
    }
    if args.bad {
        println!("--bad: staging's v2 answers 20 % of requests with errors");
    }

    let store = MemoryStateStore::new();
    let clock = TokioClock::new();
    let mut executor = Executor::builder(pipeline.clone())
        .state_store(store.clone())
        .clock(clock)
        .poll_interval(Duration::from_millis(200));
    for site in &sites {
        executor = executor.environment(site.name, site.environment());
    }
    let executor = executor.build().map_err(|e| e.to_string())?;

    // The release process: v1 runs everywhere already; v2 is new.
    let ci =
        PipelineHandle::new(Arc::new(store.clone()), pipeline.clone(), Arc::new(clock)).by("ci");
    ci.adopt(Freight::new("v1", "v1").config("cfg-1"))
        .await
        .map_err(|e| e.to_string())?;
    let v2 = ci
        .submit(
            Freight::new("v2", "v2")
                .config("cfg-2")
                .migration("0042_add_sku"),
        )
        .await
        .map_err(|e| e.to_string())?;
    println!("submitted v2 as freight {}", v2.short());

    let began = tokio::time::Instant::now();
    let mut run = tokio::spawn(async move { executor.run_until_settled().await });
    // Someone else with access to the store: prints what happens, approves prod.
    let manager = PipelineHandle::new(Arc::new(store.clone()), pipeline.clone(), Arc::new(clock))
        .by("release-manager");
    let mut printed = std::collections::BTreeMap::new();
    let mut asked_at = None;
    let state = loop {
        tokio::select! {
            done = &mut run => break done.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let state = manager.state().await.map_err(|e| e.to_string())?;
        print_new_history(&state, &mut printed, began);
        let pending = manager
            .pending_approvals()
            .await
            .map_err(|e| e.to_string())?;
        let Some(p) = pending.first() else { continue };
        let asked = *asked_at.get_or_insert_with(|| {
            println!(
                "[{:>5.1}s] {} waits for approval of {}: `cutover approve {} {}` (or PipelineHandle::approve)",
                began.elapsed().as_secs_f64(),
                p.stage,
                p.freight_name,
                p.rollout,
                p.gate
            );
            tokio::time::Instant::now()
        });
        if args.approve_at_once || asked.elapsed() >= Duration::from_secs(3) {
            match manager.approve(&p.stage, "change CHG-1042 approved").await {
                Ok(()) => {}
                // The rollout may not have saved its first state yet: ask again shortly.
                Err(e) => println!("not yet: {e}"),
            }
        }
    };
    print_new_history(&state, &mut printed, began);

    println!();
    for site in &sites {
        let report = site.load.stop().await;
        let metrics = site.proxy.metrics();
        let served = |r: &str| {
            metrics
                .total(&RevisionId::new(r).expect("valid revision"))
                .unwrap_or((0, 0))
        };
        println!(
            "{:<8} runs {}; traffic now {}; load: {} requests, {} failed; v2 served {} ({} errors)",
            site.name,
            state.current_name(site.name),
            site.proxy.router().split(),
            report.total(),
            report.failed(),
            served("v2").0,
            served("v2").1,
        );
    }
    let prod_report = sites[2].load.report();
    let prod_v2 = sites[2]
        .proxy
        .metrics()
        .total(&RevisionId::new("v2").expect("valid revision"))
        .unwrap_or((0, 0))
        .0;
    for site in &sites {
        site.proxy.shutdown().await;
    }
    let prod = state.current_name("prod");
    let ok = if args.bad {
        prod == "v1" && prod_v2 == 0 && prod_report.failed() == 0
    } else {
        prod == "v2"
    };
    println!(
        "{} after {:.1}s: prod runs {prod}",
        if ok { "DONE" } else { "UNEXPECTED" },
        began.elapsed().as_secs_f64()
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the history lines not printed yet, stage by stage.
fn print_new_history(
    state: &PipelineState,
    printed: &mut std::collections::BTreeMap<String, usize>,
    began: tokio::time::Instant,
) {
    for (stage, s) in &state.stages {
        let seen = printed.entry(stage.clone()).or_default();
        for h in s.history.iter().skip(*seen) {
            let name = state
                .freight(&h.freight)
                .map_or("?", |f| f.freight.name.as_str());
            let what = match &h.event {
                Event::Started { rollout, .. } => {
                    format!("promotion of {name} started (rollout {rollout})")
                }
                Event::Approval(a) => format!("{name} approved by {}: {}", a.by, a.reason),
                Event::RolledOut => format!("{name} rolled out"),
                Event::Verified => format!("{name} verified"),
                Event::Failed { reason } => format!("{name} FAILED: {reason}"),
                other => format!("{name}: {other:?}"),
            };
            println!(
                "[{:>5.1}s] {stage:<8} {what}",
                began.elapsed().as_secs_f64()
            );
        }
        *seen = s.history.len();
    }
}
