//! Helpers shared by the examples: simulated traffic and progress printing.
//!
//! The examples run on in-memory providers from `cutover::test` and on paused tokio time, so a
//! rollout of many minutes finishes at once; timestamps are printed on the rollout's clock.

use std::sync::Arc;

use async_trait::async_trait;
use cutover::test::FakeRouter;
use cutover::{
    Entry, MetricQuery, MetricSource, ProviderError, RevisionId, RolloutEvent, Samples, Timestamp,
};

/// A metric source for `error_ratio` that simulates traffic: each revision gets its share of
/// `requests_per_minute` according to the split on `router`, and fails at its error rate.
#[derive(Debug, Clone)]
pub struct SimulatedTraffic {
    router: FakeRouter,
    requests_per_minute: u64,
    error_rates: Arc<Vec<(RevisionId, f64)>>,
}

impl SimulatedTraffic {
    /// Traffic through `router` with an error rate per revision (0.01 = 1 %).
    pub fn new(
        router: FakeRouter,
        requests_per_minute: u64,
        error_rates: Vec<(RevisionId, f64)>,
    ) -> Self {
        SimulatedTraffic {
            router,
            requests_per_minute,
            error_rates: Arc::new(error_rates),
        }
    }

    /// Requests a revision got over `window` at the current split.
    pub fn requests(&self, revision: &RevisionId, window: std::time::Duration) -> u64 {
        let share = self
            .router
            .current()
            .map_or(0, |s| u64::from(s.weight(revision).basis_points()));
        let minutes = window.as_secs() / 60;
        self.requests_per_minute * minutes * share / 10_000
    }
}

#[async_trait]
impl MetricSource for SimulatedTraffic {
    fn name(&self) -> &'static str {
        "simulated-traffic"
    }

    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError> {
        if query.query != "error_ratio" {
            return Err(ProviderError::permanent(format!(
                "unknown query `{}`",
                query.query
            )));
        }
        let total = self.requests(&query.revision, query.window);
        let rate = self
            .error_rates
            .iter()
            .find(|(r, _)| *r == query.revision)
            .map_or(0.0, |(_, rate)| *rate);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let events = (total as f64 * rate).round() as u64;
        Ok(Samples::Counts { events, total })
    }
}

/// Prints an event as a line a person can follow, with the time since `start`.
pub fn print_event(start: Timestamp, event: &RolloutEvent) {
    match event {
        RolloutEvent::Record(record) => {
            let quiet = matches!(&record.entry, Entry::Decision { decision, .. }
                if matches!(decision, cutover::planner::Decision::Apply(cutover::planner::Action::ObserveWorkload { .. })));
            if !quiet {
                println!("[{}] {}", clock(start, record.at), record.summary);
            }
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

/// Prints the rollout's events as they come, until it finishes. Await the handle after `run`.
pub fn print_progress(rollout: &cutover::Rollout, start: Timestamp) -> tokio::task::JoinHandle<()> {
    use futures_util::StreamExt as _;
    let mut events = rollout.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            print_event(start, &event);
        }
    })
}

/// `mm:ss` since `start`.
pub fn clock(start: Timestamp, at: Timestamp) -> String {
    let secs = at.saturating_since(start).as_secs();
    format!("+{:02}:{:02}", secs / 60, secs % 60)
}

/// An error and all its sources on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A live view of a proxy for the examples that run real traffic: once a second, one line
/// with the candidate's weight as a bar and what each revision answered in that second.
pub mod live {
    use std::fmt::Write as _;
    use std::time::Duration;

    use cutover::RevisionId;
    use cutover::local::{LocalProxy, ProxyMetrics, ProxyRouter};

    /// A bar of `width` cells for `percent` (0 to 100).
    pub fn bar(percent: f64, width: usize) -> String {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let filled = ((percent / 100.0) * width as f64).round() as usize;
        let filled = filled.min(width);
        format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
    }

    /// One line: `candidate`'s weight as a bar, then requests and 5xx per revision in the
    /// last complete second.
    pub fn line(router: &ProxyRouter, metrics: &ProxyMetrics, revisions: &[RevisionId]) -> String {
        let split = router.split();
        let candidate = revisions.last().map_or(0.0, |c| split.weight(c).percent());
        let mut text = format!("         {} {:>5.1}% |", bar(candidate, 20), candidate);
        for r in revisions {
            let (n, errors) = metrics.last_second(r).unwrap_or((0, 0));
            let _ = write!(text, " {r}: {n:>5} req/s {errors:>3} 5xx |");
        }
        text
    }

    /// Prints [`line()`] every second until the task is aborted.
    pub fn ticker(proxy: &LocalProxy, revisions: Vec<RevisionId>) -> tokio::task::JoinHandle<()> {
        let (router, metrics) = (proxy.router(), proxy.metrics());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                println!("{}", line(&router, &metrics, &revisions));
            }
        })
    }
}

/// Writes the rollout's decision records to `out` as pretty JSON and says where.
pub async fn write_records(handle: &cutover::RolloutHandle, out: &std::path::Path) {
    let records = match handle.records().await {
        Ok(records) => records,
        Err(e) => {
            eprintln!("could not read the decision record: {e}");
            return;
        }
    };
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(&records).map(|json| std::fs::write(out, json)) {
        Ok(Ok(())) => println!(
            "decision record ({} entries): {}",
            records.len(),
            out.display()
        ),
        Ok(Err(e)) => eprintln!("could not write {}: {e}", out.display()),
        Err(e) => eprintln!("could not serialize the record: {e}"),
    }
}

/// Writes the rollout's HTML report (`cutover::dashboard::Report`) to `out` and says where:
/// its stored state and decision log, and the request latencies each revision's metric
/// source recorded over the last `window` (the local proxy keeps 300 s).
pub async fn write_report(
    handle: &cutover::RolloutHandle,
    latencies: &dyn MetricSource,
    window: std::time::Duration,
    out: &std::path::Path,
) {
    let (state, records) = match (handle.state().await, handle.records().await) {
        (Ok(Some(state)), Ok(records)) => (state, records),
        (Ok(None), _) => return eprintln!("no report: the rollout is not in its store"),
        (Err(e), _) | (_, Err(e)) => return eprintln!("no report: {}", chain(&e)),
    };
    let mut report = cutover::dashboard::Report::new(&records).state(&state);
    for revision in [
        &state.setup.revisions.stable,
        &state.setup.revisions.candidate,
    ] {
        let query = MetricQuery::new("latency", "latency", revision.clone(), window);
        if let Ok(Samples::Values(values)) = latencies.query(&query).await {
            report = report.latencies(revision.as_str(), values);
        }
    }
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(out, report.render()) {
        Ok(()) => println!("report: {}", out.display()),
        Err(e) => eprintln!("could not write {}: {e}", out.display()),
    }
}

/// Two versions of the demo service behind a cutover-local proxy with an admin listener: the
/// setup every real-traffic example starts from.
#[derive(Debug)]
pub struct Stage {
    /// The stable version.
    pub v1: cutover::local::demo::DemoService,
    /// The candidate.
    pub v2: cutover::local::demo::DemoService,
    /// The proxy in front of them, all traffic on v1 at start.
    pub proxy: cutover::local::LocalProxy,
}

impl Stage {
    /// Starts both versions and the proxy called `name`; the error says what failed.
    pub async fn start(
        name: &str,
        v1: cutover::local::demo::DemoConfig,
        v2: cutover::local::demo::DemoConfig,
    ) -> Result<Self, String> {
        use cutover::local::demo::DemoService;
        let (v1, v2) = tokio::try_join!(DemoService::start(v1), DemoService::start(v2))
            .map_err(|e| format!("cannot start the demo services: {e}"))?;
        let proxy = cutover::local::LocalProxy::builder(name)
            .upstream("v1", v1.addr())
            .upstream("v2", v2.addr())
            .admin(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .upstream_timeout(std::time::Duration::from_secs(2))
            .start()
            .await
            .map_err(|e| format!("cannot start the proxy: {}", chain(&e)))?;
        Ok(Stage { v1, v2, proxy })
    }

    /// `http://ADDR/healthz` of a demo service.
    pub fn health_url(service: &cutover::local::demo::DemoService) -> cutover::local::demo::Uri {
        format!("http://{}/healthz", service.addr())
            .parse()
            .expect("a socket address makes a valid URL")
    }

    /// An HTTP probe on both versions' `/healthz`.
    pub fn probe(&self, name: &str) -> cutover::local::HttpProbe {
        cutover::local::HttpProbe::new(name)
            .url("v1", Self::health_url(&self.v1))
            .url("v2", Self::health_url(&self.v2))
            .timeout(std::time::Duration::from_secs(1))
    }

    /// A rollout of v1 -> v2 through this proxy, its metrics (source `proxy`) and `probe`,
    /// with progress printed as it goes. Run it with [`run_printed`].
    pub fn rollout(
        &self,
        plan: &str,
        probe: Option<cutover::local::HttpProbe>,
    ) -> Result<(cutover::Rollout, Timestamp), String> {
        use cutover::Clock as _;
        let plan = cutover::Plan::from_yaml(plan).map_err(|e| format!("invalid plan: {e}"))?;
        let clock = cutover::TokioClock::new();
        let start = clock.now();
        let mut builder = cutover::Rollout::builder(
            cutover::TrafficRouter::name(&self.proxy.router()).to_owned(),
            plan,
        )
        .revisions("v1", "v2")
        .router(self.proxy.router())
        .metric_source("proxy", self.proxy.metrics())
        .clock(clock);
        if let Some(probe) = probe {
            builder = builder.health_probe(probe);
        }
        let rollout = builder
            .build()
            .map_err(|e| format!("cannot build the rollout: {}", chain(&e)))?;
        Ok((rollout, start))
    }

    /// The revisions, stable first.
    pub fn revisions() -> Vec<RevisionId> {
        vec!["v1".parse().expect("valid"), "v2".parse().expect("valid")]
    }
}

/// Runs `rollout`, printing its records as they come and, with `live`, the proxy's traffic
/// once a second.
pub async fn run_printed(
    rollout: cutover::Rollout,
    start: Timestamp,
    live: Option<&cutover::local::LocalProxy>,
) -> Result<cutover::Outcome, cutover::RolloutError> {
    let printer = print_progress(&rollout, start);
    let ticker = live.map(|proxy| live::ticker(proxy, Stage::revisions()));
    let outcome = rollout.run().await;
    let _ = printer.await;
    if let Some(t) = ticker {
        t.abort();
    }
    outcome
}

/// Runs an example that sends real traffic: on a tokio runtime with real time and two
/// workers. An `Err` is printed and exits 1.
pub fn run_real_time(
    example: impl Future<Output = Result<std::process::ExitCode, String>>,
) -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(example).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::ExitCode::FAILURE
    })
}

/// Prints the expected outcome's line and exits 0, or says what happened instead and exits 1.
pub fn finish(
    outcome: Result<cutover::Outcome, cutover::RolloutError>,
    expected: impl FnOnce(&cutover::Outcome) -> Option<String>,
) -> std::process::ExitCode {
    match outcome {
        Ok(outcome) => {
            if let Some(line) = expected(&outcome) {
                println!("{line}");
                std::process::ExitCode::SUCCESS
            } else {
                println!("unexpected outcome: {outcome}");
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("rollout failed: {}", chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether the example was started with `flag`, its only optional argument.
pub fn only_flag(flag: &str) -> Result<bool, String> {
    let mut args = std::env::args().skip(1);
    match (args.next(), args.next()) {
        (None, _) => Ok(false),
        (Some(arg), None) if arg == flag => Ok(true),
        (Some(arg), _) => Err(format!("unexpected argument {arg}; the only one is {flag}")),
    }
}

/// The `--pause SECONDS` argument (how long each pause step of a cluster example lasts), the
/// example's only optional argument, or `default`.
pub fn pause_arg(default: std::time::Duration) -> Result<std::time::Duration, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(default),
        [flag, seconds] if flag == "--pause" => seconds
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|e| format!("--pause {seconds}: {e}")),
        _ => Err(format!(
            "unexpected arguments {args:?}; the only one is --pause SECONDS"
        )),
    }
}
