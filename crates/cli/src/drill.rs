//! `cutover drill`: a rollback drill. The plan runs on the local proxy in front of two demo
//! services with real traffic; at the chosen moment the candidate starts failing (errors,
//! latency, or a crash); the drill reports how long the plan took to notice and to put all
//! traffic back on stable, and how many requests failed meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::local::demo::{DemoConfig, DemoService};
use cutover::local::load::{LoadConfig, LoadGenerator};
use cutover::local::{LocalProxy, QUERIES};
use cutover::planner::Decision;
use cutover::{
    AnalysisTemplate, AutoPromotion, CanaryStep, Clock as _, Entry, MemoryStateStore, Outcome,
    Plan, RevisionId, Rollout, RolloutEvent, RolloutHandle, Strategy, TokioClock,
};
use futures_util::StreamExt as _;
use tokio::sync::Mutex;

use crate::cli::{DrillArgs, Inject};
use crate::exit::chain;
use crate::exit::{Exit, Failure};

/// Now, on the wall clock: the drill measures real time, which tokio's clock (paused in
/// tests) cannot give.
#[allow(clippy::disallowed_methods)]
fn wall_now() -> Instant {
    Instant::now()
}

/// What the drill saw, in wall-clock time.
#[derive(Debug, Default)]
struct Timeline {
    injected: Option<Instant>,
    injected_at_step: Option<String>,
    candidate_share: f64,
    failed_before: u64,
    total_before: u64,
    rollback: Option<(Instant, String)>,
    stable: Option<Instant>,
    failed_until_stable: u64,
    total_until_stable: u64,
}

/// `cutover drill FILE`.
pub(crate) async fn drill(args: &DrillArgs) -> Result<Exit, Failure> {
    let file = crate::runfile::read(&args.file)?;
    let (stable, candidate) = file
        .revisions()
        .unwrap_or_else(|_| ("stable".to_owned(), "candidate".to_owned()));
    let mut plan = file.plan.clone();
    let changes = adapt(&mut plan, args.max_pause);
    let sources = sources(&plan)?;

    let v1 = DemoService::start(DemoConfig::new(&stable))
        .await
        .map_err(|e| Failure::failed(format!("cannot start the stable demo service: {e}")))?;
    let v2 = DemoService::start(DemoConfig::new(&candidate))
        .await
        .map_err(|e| Failure::failed(format!("cannot start the candidate demo service: {e}")))?;
    let v2_addr = v2.addr();
    let proxy = LocalProxy::builder("drill")
        .upstream(stable.clone(), v1.addr())
        .upstream(candidate.clone(), v2_addr)
        .upstream_timeout(Duration::from_secs(5))
        .start()
        .await
        .map_err(|e| Failure::failed(format!("cannot start the proxy: {}", chain(&e))))?;
    let load = Arc::new(LoadGenerator::start(
        &LoadConfig::new(proxy.addr())
            .concurrency(16)
            .rate(args.rate),
    ));
    println!(
        "drill: {} on the local proxy {} ({stable} on {}, {candidate} on {v2_addr}), {} requests/s",
        args.file.display(),
        proxy.addr(),
        v1.addr(),
        args.rate
    );
    for change in &changes {
        println!("drill: {change}");
    }

    let clock = TokioClock::new();
    let start = clock.now();
    let store = MemoryStateStore::new();
    let mut builder = Rollout::builder("drill", plan)
        .revisions(stable.clone(), candidate.clone())
        .router(proxy.router())
        .state_store(store.clone())
        .clock(clock);
    for source in &sources {
        builder = builder.metric_source(source.clone(), proxy.metrics());
    }
    let rollout = builder.build().map_err(|e| {
        Failure::invalid(format!("the plan cannot run on the proxy: {}", chain(&e)))
    })?;
    let stable_id: RevisionId = stable
        .parse()
        .map_err(|e| Failure::invalid(format!("{e}")))?;
    let candidate_id: RevisionId = candidate
        .parse()
        .map_err(|e| Failure::invalid(format!("{e}")))?;

    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let v2 = Arc::new(Mutex::new(Some(v2)));
    let watcher = {
        let mut events = rollout.subscribe();
        let timeline = timeline.clone();
        let load = load.clone();
        let failure = Injected::from(args);
        let at_step = args.at_step;
        let v2 = v2.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let mut t = timeline.lock().await;
                match &event {
                    RolloutEvent::SplitChanged { to, .. } => {
                        let share = to.weight(&candidate_id).percent();
                        if t.injected.is_none() && at_step.is_none() && share > 0.0 {
                            inject(&mut t, &failure, &v2, &load, share, None).await;
                        } else if t.injected.is_some()
                            && t.stable.is_none()
                            && to.is_all_to(&stable_id)
                        {
                            t.stable = Some(wall_now());
                            let report = load.report();
                            t.failed_until_stable = report.failed() - t.failed_before;
                            t.total_until_stable = report.total() - t.total_before;
                        } else if t.injected.is_none() {
                            t.candidate_share = share;
                        }
                    }
                    RolloutEvent::Record(record) => {
                        if let (None, Some(step), Some(wanted)) =
                            (t.injected, &record.step, at_step)
                            && step.index == wanted
                        {
                            let share = t.candidate_share;
                            let label = format!("{} ({})", step.index, step.kind);
                            inject(&mut t, &failure, &v2, &load, share, Some(label)).await;
                        }
                        if let Entry::Decision {
                            decision: Decision::Rollback(reason),
                            ..
                        } = &record.entry
                            && t.injected.is_some()
                            && t.rollback.is_none()
                        {
                            t.rollback = Some((wall_now(), reason.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        })
    };
    let printer = crate::progress::follow(&rollout, start, true);
    let outcome = tokio::time::timeout(args.timeout, rollout.run()).await;
    let _ = printer.await;
    let _ = watcher.await;
    let report = load.stop().await;
    proxy.shutdown().await;
    v1.shutdown().await;
    if let Some(v2) = v2.lock().await.take() {
        v2.shutdown().await;
    }
    if let Some(out) = &args.out {
        let handle = RolloutHandle::new(
            store,
            "drill"
                .parse()
                .map_err(|e| Failure::failed(format!("{e}")))?,
        );
        crate::run::write_records(&handle, out).await;
    }
    let outcome = match outcome {
        Err(_) => {
            return Err(Failure::new(
                Exit::NotPromoted,
                format!(
                    "the drill did not finish within {}",
                    humantime::format_duration(args.timeout)
                ),
            ));
        }
        Ok(Err(e)) => return Err(crate::run::rollout_error("drill", &e)),
        Ok(Ok(outcome)) => outcome,
    };
    println!(
        "load: {} requests, {} not 2xx",
        report.total(),
        report.failed()
    );
    let t = timeline.lock().await;
    verdict(args, &t, &outcome)
}

/// The failure to inject, resolved from the arguments.
#[derive(Debug, Clone, Copy)]
struct Injected {
    kind: Inject,
    error_rate: f64,
    latency: Duration,
}

impl From<&DrillArgs> for Injected {
    fn from(args: &DrillArgs) -> Self {
        Injected {
            kind: args.inject,
            error_rate: args.error_rate.clamp(0.0, 1.0),
            latency: args.latency,
        }
    }
}

impl Injected {
    fn describe(&self) -> String {
        match self.kind {
            Inject::Errors => format!(
                "errors ({:.0} % of the candidate's requests answer 500)",
                self.error_rate * 100.0
            ),
            Inject::Latency => format!(
                "latency (the candidate answers {} slower)",
                humantime::format_duration(self.latency)
            ),
            Inject::Crash => "a crash (the candidate refuses connections)".to_owned(),
        }
    }
}

/// Makes the candidate fail: errors and latency are switched on in place (same address, same
/// connections, so the switch itself fails no request); a crash stops the service.
async fn inject(
    t: &mut Timeline,
    failure: &Injected,
    v2: &Mutex<Option<DemoService>>,
    load: &LoadGenerator,
    share: f64,
    step: Option<String>,
) {
    let mut slot = v2.lock().await;
    let report = load.report();
    t.failed_before = report.failed();
    t.total_before = report.total();
    t.injected = Some(wall_now());
    t.candidate_share = share;
    t.injected_at_step = step;
    match (failure.kind, slot.as_ref()) {
        (Inject::Errors, Some(service)) => service.set_error_rate(failure.error_rate),
        (Inject::Latency, Some(service)) => service.set_latency(failure.latency),
        (Inject::Crash, _) => {
            if let Some(old) = slot.take() {
                old.shutdown().await;
            }
        }
        (_, None) => {}
    }
    println!(
        "drill: injected {} with {share:.1} % of traffic on the candidate",
        failure.describe()
    );
}

/// What the drill concludes, and the exit code.
fn verdict(args: &DrillArgs, t: &Timeline, outcome: &Outcome) -> Result<Exit, Failure> {
    let Some(injected) = t.injected else {
        return Err(Failure::new(
            Exit::NotPromoted,
            format!(
                "no failure was injected: {} ({outcome}); check --at-step",
                match args.at_step {
                    Some(step) => format!("step {step} never started"),
                    None => "the candidate never got traffic".to_owned(),
                }
            ),
        ));
    };
    let since = |at: Instant| at.saturating_duration_since(injected);
    if let Some((at, reason)) = &t.rollback {
        println!(
            "rollback decided {} after the failure: {reason}",
            seconds(since(*at))
        );
    }
    let Some(stable) = t.stable else {
        return Err(Failure::new(
            Exit::NotPromoted,
            format!(
                "DRILL FAILED: the plan did not return traffic to stable after {} ({outcome}); \
                 its analyses do not catch this failure",
                Injected::from(args).describe()
            ),
        ));
    };
    let took = since(stable);
    println!(
        "all traffic on stable {} after the failure{}",
        seconds(took),
        t.injected_at_step
            .as_ref()
            .map(|s| format!(" (injected at step {s})"))
            .unwrap_or_default()
    );
    println!(
        "requests not 2xx between the failure and stable: {} of {}",
        t.failed_until_stable, t.total_until_stable
    );
    match args.max_time_to_stable {
        Some(max) if took > max => Err(Failure::new(
            Exit::NotPromoted,
            format!(
                "DRILL FAILED: {} to stable is over the limit of {}",
                seconds(took),
                seconds(max)
            ),
        )),
        _ => {
            println!("DRILL PASSED: back on stable in {}", seconds(took));
            Ok(Exit::Ok)
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Caps pauses, and turns waits for a person into timed ones, so the drill runs by itself;
/// says what it changed.
fn adapt(plan: &mut Plan, max_pause: Duration) -> Vec<String> {
    let mut changes = Vec::new();
    if max_pause.is_zero() {
        return changes;
    }
    match &mut plan.strategy {
        Strategy::Canary(c) => {
            for (i, step) in c.steps.iter_mut().enumerate() {
                if let CanaryStep::Pause(p) = step {
                    match p.duration {
                        Some(d) if d > max_pause => {
                            p.duration = Some(max_pause);
                            changes.push(format!(
                                "step {i}: pause of {} shortened to {}",
                                humantime::format_duration(d),
                                humantime::format_duration(max_pause)
                            ));
                        }
                        None => {
                            p.duration = Some(max_pause);
                            changes.push(format!(
                                "step {i}: pause until resumed becomes {}",
                                humantime::format_duration(max_pause)
                            ));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Strategy::BlueGreen(b) if !matches!(b.auto_promotion, AutoPromotion::Enabled) => {
            b.auto_promotion = AutoPromotion::After(max_pause);
            changes.push(format!(
                "promotion happens by itself after {}",
                humantime::format_duration(max_pause)
            ));
        }
        _ => {}
    }
    changes
}

/// The metric sources the plan's analyses read, all bound to the proxy; an error names every
/// query the proxy cannot answer.
fn sources(plan: &Plan) -> Result<Vec<String>, Failure> {
    let answered: Vec<&str> = QUERIES
        .split(',')
        .filter_map(|q| q.split_whitespace().next())
        .collect();
    let mut sources = Vec::new();
    let mut unknown = Vec::new();
    for (name, template) in &plan.analyses {
        let queries: Vec<(&str, &str)> = match template {
            AnalysisTemplate::Threshold(t) => t
                .metrics
                .iter()
                .map(|m| (m.source.as_str(), m.query.as_str()))
                .collect(),
            AnalysisTemplate::Conditions(c) => c
                .metrics
                .iter()
                .map(|m| (m.source.as_str(), m.query.as_str()))
                .collect(),
            AnalysisTemplate::Judge(j) => j
                .queries
                .values()
                .map(|q| (q.source.as_str(), q.query.as_str()))
                .collect(),
            AnalysisTemplate::Proportions(p) => vec![(p.source.as_str(), p.query.as_str())],
            AnalysisTemplate::Sequential(s) => vec![(s.source.as_str(), s.query.as_str())],
            _ => Vec::new(),
        };
        for (source, query) in queries {
            if !sources.iter().any(|s| s == source) {
                sources.push(source.to_owned());
            }
            let known = answered.contains(&query) || query == "errors";
            if !known {
                unknown.push(format!("analysis `{name}` asks `{source}` for `{query}`"));
            }
        }
    }
    if !unknown.is_empty() {
        return Err(Failure::invalid(format!(
            "the drill binds every metric source to the local proxy, which answers {QUERIES}; {}",
            unknown.join("; ")
        )));
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_capped_and_waits_become_timed() {
        let mut plan = Plan::from_yaml(
            "strategy: { canary: { steps: [ {set_weight: 10}, {pause: {duration: 10m}}, {pause: {}}, {pause: {duration: 1s}} ] } }",
        )
        .unwrap();
        let changes = adapt(&mut plan, Duration::from_secs(5));
        assert_eq!(changes.len(), 2, "{changes:?}");
        let Strategy::Canary(c) = &plan.strategy else {
            panic!("a canary")
        };
        let pauses: Vec<Option<Duration>> = c
            .steps
            .iter()
            .filter_map(|s| match s {
                CanaryStep::Pause(p) => Some(p.duration),
                _ => None,
            })
            .collect();
        assert_eq!(
            pauses,
            [
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(1))
            ]
        );
    }

    #[test]
    fn queries_the_proxy_cannot_answer_are_refused() {
        let plan = Plan::from_yaml(
            "strategy: { canary: { steps: [ {set_weight: 10} ] } }\nanalyses: { e: { threshold: { metrics: [ { name: m, source: prom, query: 'sum(rate(x[1m]))', max: 1 } ] } } }",
        )
        .unwrap();
        let err = sources(&plan).unwrap_err();
        assert!(
            err.message.contains("`prom` for `sum(rate(x[1m]))`"),
            "{err}"
        );
        let plan = Plan::from_yaml(
            "strategy: { canary: { steps: [ {set_weight: 10} ] } }\nanalyses: { e: { threshold: { metrics: [ { name: m, source: prom, query: error_rate, max: 1 } ] } } }",
        )
        .unwrap();
        assert_eq!(sources(&plan).unwrap(), ["prom"]);
    }
}
