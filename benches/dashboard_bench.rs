//! The `dashboard-bench` benchmark: how fast the dashboard's list of rollouts answers with 10
//! and with 10,000 rollouts in a memory store, over real HTTP on loopback.
//!
//! ```text
//! dashboard-bench [--sizes 10,10000] [--requests 200] [--warmup 20] [--out target/bench/dashboard.json]
//! ```
//!
//! For each size N it stores N rollouts (70 % promoted, 15 % rolled back, 5 % aborted, 10 %
//! not finished: progressing, paused or promoting), serves the dashboard on 127.0.0.1:0 with a
//! token, and times, one request after another on one keep-alive connection, after a warm-up:
//! the first page of the HTML list, the JSON list's first page, an HTML page from the middle
//! of the list (`after` = the id halfway through), `phase=active`, a search that matches a
//! handful of ids (one rollout in 2,000 is a `ledger-` one) and a search that matches none
//! (each one `list` call: the store matches ids before it reads a state). Each answer is
//! checked (status, rows) before timing. Beside them, in this process and without HTTP, what a
//! search cost when the page compared ids itself: `StateStore::list` through all N, 1,000 a
//! call (a tenth as many repetitions).
//!
//! It prints a table of the median and p99 latencies per case and size with the ratio of the
//! largest size to the smallest, and writes them as one JSON object to `--out`.
//! `scripts/bench-dashboard` builds and runs it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutover::dashboard::{Dashboard, Running, Secret};
use cutover::planner::Setup;
use cutover::state::{Final, Outcome, PauseReason, PauseState, Phase, StopReason};
use cutover::{
    ListFilter, MemoryStateStore, Revisions, RolloutState, StateStore, Timestamp, TrafficSplit,
    Weight,
};
use cutover_benches::ten_step_canary;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

type Error = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The dashboard's token for this run (not a secret: the server lives as long as the run).
const TOKEN: &str = "dashboard-bench-token-0123456789";
/// The services most rollouts belong to: a rollout's id is `{service}-{number:05}`.
const SERVICES: [&str; 8] = [
    "api", "auth", "billing", "catalog", "checkout", "search", "shipping", "web",
];
/// The rare service the matching search looks for: one rollout in 2,000.
const RARE: &str = "ledger";
/// A search that matches no id.
const NO_MATCH: &str = "no-such-service";

#[derive(Debug)]
struct Args {
    sizes: Vec<usize>,
    requests: usize,
    warmup: usize,
    out: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut parsed = Args {
        sizes: vec![10, 10_000],
        requests: 200,
        warmup: 20,
        out: PathBuf::from("target/bench/dashboard.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sizes" => {
                parsed.sizes = value
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|e| format!("--sizes {n}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--requests" => {
                parsed.requests = value.parse().map_err(|e| format!("--requests: {e}"))?;
            }
            "--warmup" => parsed.warmup = value.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--out" => parsed.out = value.into(),
            _ => return Err(format!("unknown argument {flag} {value}")),
        }
    }
    if parsed.sizes.is_empty() || parsed.sizes.contains(&0) {
        return Err("--sizes needs one or more sizes above 0".to_owned());
    }
    if parsed.requests == 0 {
        return Err("--requests must be above 0".to_owned());
    }
    Ok(parsed)
}

/// The id of the `i`-th stored rollout (from 1).
fn rollout_id(i: usize) -> String {
    if i % 2000 == 7 {
        format!("{RARE}-{i:05}")
    } else {
        format!("{}-{i:05}", SERVICES[i % SERVICES.len()])
    }
}

/// The `i`-th stored rollout's state: 14 in 20 promoted, 3 rolled back, 1 aborted, and 2 not
/// finished (progressing at some step, paused there, or promoting).
fn state(i: usize, setup: &Arc<Setup>) -> Result<RolloutState, Error> {
    let minutes = u64::try_from(i)?;
    let started = Timestamp::from_unix_millis(1_780_000_000_000) + Duration::from_mins(minutes);
    let mut s = RolloutState::new(rollout_id(i).parse()?, setup.clone(), started);
    let revisions = setup.revisions.clone();
    let steps = setup.step_kinds().len();
    let finish = |s: &mut RolloutState, outcome: Outcome, to: &cutover::RevisionId| {
        s.phase = Phase::Done;
        s.step = steps;
        s.traffic_touched = true;
        s.split = Some(TrafficSplit::all_to(to));
        s.outcome = Some(Final::Outcome(outcome));
        s.updated_at = started + Duration::from_mins(55);
    };
    match i % 20 {
        3 | 13 => {
            // Not finished: a set_weight step (even index) and its analysis (odd index).
            let step = (i / 20) % steps;
            let percent = [5, 10, 25, 50, 75][step / 2];
            s.phase = Phase::Progressing;
            s.step = step;
            s.traffic_touched = true;
            s.split = Some(TrafficSplit::canary(
                &revisions.stable,
                &revisions.candidate,
                Weight::from_percent(percent)?,
            )?);
            s.updated_at = started + Duration::from_mins(5);
            if i % 20 == 13 {
                if (i / 20).is_multiple_of(2) {
                    s.pause = Some(PauseState {
                        reason: PauseReason::Manual {
                            by: "alice".to_owned(),
                            reason: "waiting for the on-call to look".to_owned(),
                        },
                        since: s.updated_at,
                    });
                } else {
                    s.phase = Phase::Promoting;
                }
            }
        }
        6 | 11 | 17 => finish(
            &mut s,
            Outcome::RolledBack(StopReason::AnalysisFailed {
                analysis: "checks".to_owned(),
                summary: "error rate 2.4 % above the 1 % limit".to_owned(),
            }),
            &revisions.stable,
        ),
        9 => finish(
            &mut s,
            Outcome::Aborted {
                by: "bob".to_owned(),
                reason: "wrong image".to_owned(),
            },
            &revisions.stable,
        ),
        _ => finish(&mut s, Outcome::Promoted, &revisions.candidate),
    }
    Ok(s)
}

/// A memory store holding `n` rollouts that no engine runs.
async fn filled_store(n: usize) -> Result<MemoryStateStore, Error> {
    let store = MemoryStateStore::new();
    let setup = Arc::new(Setup::new(ten_step_canary(), Revisions::new("v1", "v2")?));
    for i in 1..=n {
        let s = state(i, &setup)?;
        store.save(&s.id.clone(), &s, None).await?;
    }
    Ok(store)
}

/// Where the middle of `n` rollouts is, counting from 1.
fn middle_position(n: usize) -> usize {
    (n / 2).max(1)
}

/// The id halfway through the store's id order: the cursor of a page in the middle.
async fn middle_id(store: &MemoryStateStore, n: usize) -> Result<String, Error> {
    let mut seen = 0;
    let mut filter = ListFilter::default().limit(1000);
    loop {
        let page = store.list(&filter).await?;
        let Some(last) = page.last() else {
            return Err("the store ended before its middle".into());
        };
        if seen + page.len() >= middle_position(n) {
            return Ok(page[middle_position(n) - seen - 1].id.to_string());
        }
        seen += page.len();
        filter = filter.after(last.id.clone());
    }
}

/// One kind of request the bench times.
struct Case {
    name: &'static str,
    path: String,
    /// How many rows the answer must hold.
    rows: usize,
}

fn cases(n: usize, middle: &str) -> Vec<Case> {
    let page = n.min(50);
    let after_middle = (n - middle_position(n)).min(50);
    let active = (1..=n).filter(|i| matches!(i % 20, 3 | 13)).count();
    let rare = (1..=n).filter(|i| i % 2000 == 7).count();
    vec![
        Case {
            name: "html first page",
            path: "/rollouts".to_owned(),
            rows: page,
        },
        Case {
            name: "json first page",
            path: "/api/rollouts".to_owned(),
            rows: page,
        },
        Case {
            name: "html page after the middle",
            path: format!("/rollouts?after={middle}"),
            rows: after_middle,
        },
        Case {
            name: "html phase=active",
            path: "/rollouts?phase=active".to_owned(),
            rows: active.min(50),
        },
        Case {
            name: "html search, a few hits",
            path: format!("/rollouts?q={RARE}"),
            rows: rare.min(50),
        },
        Case {
            name: "html search, no hit",
            path: format!("/rollouts?q={NO_MATCH}"),
            rows: 0,
        },
    ]
}

/// Sends `GET path` with the token and reads the whole body.
async fn get(client: &HttpClient, base: &str, path: &str) -> Result<(u16, Bytes), Error> {
    let request = http::Request::get(format!("{base}{path}"))
        .header(http::header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Empty::new())?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The rows of a list answer: links in the HTML, entries in the JSON.
fn rows_in(path: &str, body: &[u8]) -> Result<usize, Error> {
    if path.starts_with("/api/") {
        let value: serde_json::Value = serde_json::from_slice(body)?;
        let rows = value["rollouts"]
            .as_array()
            .ok_or("the JSON answer has no `rollouts` array")?;
        Ok(rows.len())
    } else {
        Ok(String::from_utf8_lossy(body)
            .matches("class=\"rollout-link\"")
            .count())
    }
}

/// The latencies of one case at one size.
struct Measured {
    case: &'static str,
    path: String,
    n: usize,
    rows: usize,
    /// Sorted, in milliseconds.
    latencies_ms: Vec<f64>,
}

impl Measured {
    fn quantile(&self, p: f64) -> f64 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((self.latencies_ms.len() - 1) as f64 * p).round() as usize;
        self.latencies_ms[i]
    }
}

/// The wall clock: the bench measures real latencies.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

async fn measure_size(n: usize, args: &Args) -> Result<Vec<Measured>, Error> {
    let store = filled_store(n).await?;
    let middle = middle_id(&store, n).await?;
    let scan = store_scan(&store, n, args).await?;
    let running: Running = Dashboard::builder(store)
        .token(Secret::new(TOKEN))
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()?
        .serve()
        .await?;
    let base = running.url().trim_end_matches('/').to_owned();
    let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut measured = Vec::new();
    for case in cases(n, &middle) {
        let (status, body) = get(&client, &base, &case.path).await?;
        let rows = rows_in(&case.path, &body)?;
        if status != 200 || rows != case.rows {
            return Err(format!(
                "N={n} {}: `{}` answered {status} with {rows} rows, expected 200 with {}",
                case.name, case.path, case.rows
            )
            .into());
        }
        for _ in 0..args.warmup {
            get(&client, &base, &case.path).await?;
        }
        let mut latencies_ms = Vec::with_capacity(args.requests);
        for _ in 0..args.requests {
            let start = now();
            let (status, _) = get(&client, &base, &case.path).await?;
            latencies_ms.push(start.elapsed().as_secs_f64() * 1e3);
            if status != 200 {
                return Err(format!("N={n} `{}` answered {status}", case.path).into());
            }
        }
        latencies_ms.sort_by(f64::total_cmp);
        measured.push(Measured {
            case: case.name,
            path: case.path,
            n,
            rows,
            latencies_ms,
        });
    }
    running.shutdown().await;
    measured.push(scan);
    Ok(measured)
}

/// What a search cost when the page compared ids itself: `StateStore::list` through every
/// stored rollout, 1,000 a call, in this process (no HTTP, no page).
async fn store_scan(store: &MemoryStateStore, n: usize, args: &Args) -> Result<Measured, Error> {
    let scan = || async {
        let mut filter = ListFilter::default().limit(1000);
        let mut seen = 0;
        loop {
            let page = store.list(&filter).await?;
            seen += page.len();
            match page.last() {
                Some(last) if page.len() == 1000 => filter = filter.after(last.id.clone()),
                _ => return Ok::<usize, Error>(seen),
            }
        }
    };
    let seen = scan().await?;
    if seen != n {
        return Err(format!("N={n}: a scan of the store saw {seen} rollouts").into());
    }
    for _ in 0..args.warmup.min(5) {
        scan().await?;
    }
    let requests = args.requests.div_ceil(10);
    let mut latencies_ms = Vec::with_capacity(requests);
    for _ in 0..requests {
        let start = now();
        scan().await?;
        latencies_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    latencies_ms.sort_by(f64::total_cmp);
    Ok(Measured {
        case: "store.list of all (no HTTP)",
        path: String::new(),
        n,
        rows: seen,
        latencies_ms,
    })
}

/// The size of one stored state in bytes, as the stores keep it (JSON).
fn state_bytes() -> Result<usize, Error> {
    let setup = Arc::new(Setup::new(ten_step_canary(), Revisions::new("v1", "v2")?));
    let s = state(1, &setup)?;
    Ok(cutover::store::kit::encode_state(&s.id, &s)?.len())
}

/// The table: per case, median and p99 at each size, and the ratio of the largest size's
/// median (and p99) to the smallest's.
fn table(all: &[Measured], sizes: &[usize]) -> String {
    let mut out = String::new();
    let mut header = format!("{:<28} {:>10}", "case", "rows");
    for n in sizes {
        let _ = write!(header, " {:>14} {:>10}", format!("N={n} median"), "p99");
    }
    let (small, large) = (sizes[0], sizes[sizes.len() - 1]);
    if sizes.len() > 1 {
        let _ = write!(header, " {:>18}", format!("median {large}/{small}"));
        let _ = write!(header, " {:>12}", "p99 ratio");
    }
    let _ = writeln!(out, "{header}");
    let names: Vec<&str> = all
        .iter()
        .filter(|m| m.n == small)
        .map(|m| m.case)
        .collect();
    for name in names {
        let of = |n: usize| all.iter().find(|m| m.n == n && m.case == name);
        let rows: Vec<String> = sizes
            .iter()
            .filter_map(|&n| of(n).map(|m| m.rows.to_string()))
            .collect();
        let mut line = format!("{name:<28} {:>10}", rows.join("/"));
        for &n in sizes {
            if let Some(m) = of(n) {
                let _ = write!(
                    line,
                    " {:>11.3} ms {:>7.3} ms",
                    m.quantile(0.5),
                    m.quantile(0.99)
                );
            }
        }
        if let (Some(a), Some(b), true) = (of(small), of(large), sizes.len() > 1) {
            let _ = write!(
                line,
                " {:>17.1}x {:>11.1}x",
                b.quantile(0.5) / a.quantile(0.5),
                b.quantile(0.99) / a.quantile(0.99)
            );
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

fn json(all: &[Measured], args: &Args) -> serde_json::Value {
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let (small, large) = (args.sizes[0], args.sizes[args.sizes.len() - 1]);
    let ratios: Vec<serde_json::Value> = all
        .iter()
        .filter(|m| m.n == small && args.sizes.len() > 1)
        .filter_map(|a| {
            let b = all.iter().find(|m| m.n == large && m.case == a.case)?;
            Some(serde_json::json!({
                "case": a.case,
                "median_ratio": round(b.quantile(0.5) / a.quantile(0.5)),
                "p99_ratio": round(b.quantile(0.99) / a.quantile(0.99)),
            }))
        })
        .collect();
    serde_json::json!({
        "bench": "dashboard",
        "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "requests": args.requests,
        "warmup": args.warmup,
        "sizes": args.sizes,
        "state_bytes": state_bytes().unwrap_or(0),
        "cases": all.iter().map(|m| serde_json::json!({
            "case": m.case,
            "path": m.path,
            "N": m.n,
            "rows": m.rows,
            "samples": m.latencies_ms.len(),
            "median_ms": round(m.quantile(0.5)),
            "p99_ms": round(m.quantile(0.99)),
        })).collect::<Vec<_>>(),
        "ratios": ratios,
    })
}

async fn run(args: &Args) -> Result<(), Error> {
    let mut all = Vec::new();
    for &n in &args.sizes {
        all.extend(measure_size(n, args).await?);
    }
    println!(
        "dashboard list over HTTP on loopback, one keep-alive connection, {} requests a case \
         after {} warm-up; a stored state is {} bytes of JSON",
        args.requests,
        args.warmup,
        state_bytes()?
    );
    print!("{}", table(&all, &args.sizes));
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&json(&all, args))? + "\n",
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dashboard-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dashboard-bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashboard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
