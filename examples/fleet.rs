//! A fleet of workers sharing rollouts through PostgreSQL, in one process: two workers claim
//! submitted rollouts, run them, and report; a rollout naming a provider no worker offers
//! stays queued and says so.
//!
//! ```text
//! DATABASE_URL=postgresql://postgres@127.0.0.1:5432/deploys cargo run --example fleet --features fleet
//! DATABASE_URL=... cargo run --example fleet --features fleet -- worker   # one worker until Ctrl-C or SIGTERM
//! ```
//!
//! The example creates the `cutover_*` tables in the database if they are missing (it never
//! drops anything). Its providers are in memory: a router from `cutover::test` and an analysis
//! that passes, or fails for the rollouts submitted with `"fail": true`. Without a database
//! URL it says how to get one and exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover::fleet::{
    DatabaseUrl, Fleet, FleetStatus, PgStateStore, ProviderContext, RolloutSpec, Worker,
    WorkerBuilder,
};
use cutover::test::FakeRouter;
use cutover::{
    Analysis, AnalysisContext, AnalysisResult, Clock as _, ProviderError, TokioClock,
    TrafficRouter, Verdict,
};
use cutover_examples::chain;

const HOW_TO_GET_ONE: &str = "\
fleet needs a PostgreSQL database it may create tables in (cutover_*). Set DATABASE_URL, e.g.
  DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/DBNAME cargo run --example fleet --features fleet
For a throwaway local server (Debian's postgresql package, as scripts/test-deps installs it):
  /usr/lib/postgresql/*/bin/initdb -D /tmp/cutover-pg -U postgres --auth=trust
  /usr/lib/postgresql/*/bin/pg_ctl -D /tmp/cutover-pg -o '-p 5433 -k /tmp' -l /tmp/cutover-pg.log start
  DATABASE_URL='host=127.0.0.1 port=5433 user=postgres dbname=postgres' cargo run --example fleet --features fleet
(as root, run the two PostgreSQL commands as the postgres user). Skipping.";

/// The spec of one rollout of this run.
fn spec(id: &str, router: &str, fail: bool) -> RolloutSpec {
    RolloutSpec::from_yaml(&format!(
        "
id: {id}
revisions: {{ stable: v1, candidate: v2 }}
plan:
  strategy:
    canary:
      steps:
        - set_weight: 10
        - analysis: {{ name: smoke, count: 3, interval: 200ms }}
        - set_weight: 50
        - analysis: {{ name: smoke, count: 3, interval: 200ms }}
providers:
  routers: [{router}]
  analyses: {{ smoke: smoke-check }}
params: {{ fail: {fail} }}
"
    ))
    .expect("the example's specs are valid")
}

/// An analysis that passes, or fails when the spec's params say `fail: true`.
#[derive(Debug)]
struct Smoke {
    fail: bool,
}

#[async_trait]
impl Analysis for Smoke {
    async fn evaluate(&self, _: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        Ok(if self.fail {
            AnalysisResult::new(Verdict::Fail, "smoke check failed")
        } else {
            AnalysisResult::new(Verdict::Pass, "smoke check passed")
        })
    }
}

/// A worker offering the in-memory router `demo-router` and the analysis `smoke-check`.
fn worker(store: &PgStateStore, id: &str) -> WorkerBuilder {
    Worker::builder(store.clone())
        .id(id)
        .router("demo-router", |ctx: &ProviderContext| {
            Ok(Arc::new(FakeRouter::new(format!("demo/{}", ctx.rollout)))
                as Arc<dyn TrafficRouter>)
        })
        .analysis("smoke-check", |ctx: &ProviderContext| {
            let fail = ctx.params.get("fail").and_then(serde_json::Value::as_bool) == Some(true);
            Ok(Arc::new(Smoke { fail }) as Arc<dyn Analysis>)
        })
        .lease_ttl(Duration::from_secs(5))
        .poll_interval(Duration::from_millis(250))
        // One at a time, so that the two workers of the demo share the rollouts.
        .claim_batch(1)
}

fn main() -> ExitCode {
    let worker_only = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("worker") => true,
        Some(other) => {
            eprintln!("unknown argument {other}; use `worker` to run one worker until stopped");
            return ExitCode::FAILURE;
        }
    };
    let url = match DatabaseUrl::from_env("DATABASE_URL") {
        Ok(Some(url)) => url,
        Ok(None) => {
            println!("{HOW_TO_GET_ONE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("DATABASE_URL: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let store = match PgStateStore::connect(&url).await {
            Ok(store) => store,
            Err(e) => {
                eprintln!("{}", chain(&e));
                return ExitCode::FAILURE;
            }
        };
        println!("connected to {url}");
        if worker_only {
            return run_worker(&store).await;
        }
        demo(&store).await
    })
}

/// One worker, until SIGTERM or Ctrl-C.
async fn run_worker(store: &PgStateStore) -> ExitCode {
    let worker = match worker(store, &format!("example-{}", std::process::id())).build() {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("{}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    println!(
        "worker {} offers {:?}; Ctrl-C or SIGTERM drains it",
        worker.id(),
        worker.offers()
    );
    match worker.run_until_signal().await {
        Ok(report) => {
            println!("{report:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Two workers, four rollouts, one of which no worker can run.
async fn demo(store: &PgStateStore) -> ExitCode {
    let fleet = Fleet::new(store.clone());
    let run = TokioClock::new().now().unix_millis();
    let specs = [
        spec(&format!("checkout-{run}"), "demo-router", false),
        spec(&format!("payments-{run}"), "demo-router", false),
        spec(&format!("search-{run}"), "demo-router", true),
        spec(&format!("edge-{run}"), "edge-proxy", false),
    ];
    if let Err(e) = fleet.submit_all(&specs).await {
        eprintln!("{}", chain(&e));
        return ExitCode::FAILURE;
    }
    println!("submitted {} rollouts", specs.len());
    let mut workers = Vec::new();
    for id in ["worker-a", "worker-b"] {
        let worker = worker(store, id).build().expect("valid settings");
        let drainer = worker.drainer();
        workers.push((drainer, tokio::spawn(worker.run(std::future::pending()))));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let mut done = 0;
        for spec in &specs[..3] {
            if matches!(
                fleet.status(&spec.id).await,
                Ok(Some(FleetStatus::Finished { .. }))
            ) {
                done += 1;
            }
        }
        if done == 3 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!("the rollouts did not finish within 60 s");
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ok = true;
    for spec in &specs {
        let status = match fleet.status(&spec.id).await {
            Ok(Some(status)) => status,
            other => {
                eprintln!("{}: no status ({other:?})", spec.id);
                return ExitCode::FAILURE;
            }
        };
        println!("{:<24} {status}", spec.id.as_str());
        let expected = match spec.id.as_str().split('-').next() {
            Some("search") => status.to_string().starts_with("finished: rolled back"),
            Some("edge") => status.to_string() == "queued: no live worker offers router:edge-proxy",
            _ => status.to_string() == "finished: promoted",
        };
        ok &= expected;
    }
    for (drainer, task) in workers {
        drainer.drain();
        match task.await {
            Ok(Ok(report)) => println!(
                "{}: claimed {}, finished {}",
                report.worker, report.claimed, report.finished
            ),
            other => {
                eprintln!("a worker failed: {other:?}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("some rollout did not end as expected");
        ExitCode::FAILURE
    }
}
