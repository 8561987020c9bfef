//! The detection benchmark (issue 10, ANALYSIS.md §6): one seeded simulation of canary traffic,
//! read by every detector (Kayenta-style repeated judgment, naive repeated Mann-Whitney,
//! Argo-style thresholds, cutover's sequential tests, an O'Brien-Fleming group-sequential test,
//! the SPRT limit, and a CUSUM that knows the effect but not its onset), reporting false
//! rollback rates and times to detect.
//!
//! ```text
//! cargo run --release -p cutover-benches --bin detection -- [--quick] [--json PATH]
//!     [--threads N] [--seed N] [--only SCENARIO] [--detectors SUBSTRING] [--sweep]
//!     [--sweep-tail]
//! ```

// The formulas keep the one-letter names of their sources (Wald, Jennison & Turnbull, NumPy).
#![allow(clippy::many_single_char_names)]

mod detectors;
mod gsd;
mod limits;
mod lineup;
mod report;
mod rng;
mod sim;
mod sweep;
mod traffic;

use std::process::ExitCode;

use report::Row;
use traffic::Scenario;

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    json: Option<String>,
    threads: usize,
    seed: u64,
    only: Option<String>,
    detectors: Option<String>,
    null_reps: Option<usize>,
    effect_reps: Option<usize>,
    sweep: bool,
    sweep_tail: bool,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        json: None,
        threads: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        seed: 20_261_122,
        only: None,
        detectors: None,
        null_reps: None,
        effect_reps: None,
        sweep: false,
        sweep_tail: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--sweep" => o.sweep = true,
            "--sweep-tail" => o.sweep_tail = true,
            "--json" => o.json = Some(value("--json")?),
            "--only" => o.only = Some(value("--only")?),
            "--detectors" => o.detectors = Some(value("--detectors")?),
            "--threads" => {
                o.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?;
            }
            "--null-reps" => {
                o.null_reps = Some(value("--null-reps")?.parse().map_err(|e| format!("{e}"))?);
            }
            "--effect-reps" => {
                o.effect_reps = Some(
                    value("--effect-reps")?
                        .parse()
                        .map_err(|e| format!("{e}"))?,
                );
            }
            "--seed" => {
                o.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

/// Replication counts of a run.
#[derive(Debug, Clone, Copy)]
struct Reps {
    null: usize,
    effect: usize,
    baseline: usize,
    raw: usize,
}

/// Every cell of the run.
fn run(o: &Options, reps: Reps) -> Vec<Row> {
    let mut rows = Vec::new();
    // The CUSUM reference's threshold per effect and rate, calibrated once (the onsets share it).
    let mut thresholds = std::collections::HashMap::new();
    for rate in [5.0_f64, 20.0, 100.0] {
        for scenario in Scenario::all() {
            if o.only
                .as_ref()
                .is_some_and(|s| !scenario.name.contains(s.as_str()))
            {
                continue;
            }
            let n = if scenario.effect == traffic::Effect::None {
                reps.null
            } else {
                reps.effect
            };
            let cusum = (scenario.effect != traffic::Effect::None).then(|| {
                let key = (format!("{:?}", scenario.effect), rate.to_bits());
                *thresholds.entry(key).or_insert_with(|| {
                    detectors::cusum::calibrate(
                        o.seed,
                        scenario.effect,
                        rate,
                        detectors::cusum::CALIBRATION_REPS,
                        o.threads,
                    )
                })
            });
            let mut specs = lineup::lineup(
                &scenario,
                rate,
                lineup::Caps {
                    baseline: reps.baseline,
                    raw: reps.raw,
                },
                cusum,
            );
            if let Some(d) = &o.detectors {
                specs.retain(|s| s.name.starts_with("sprt-") || s.name.contains(d.as_str()));
            }
            let cell = sim::run_cell(o.seed, &scenario, rate, n, &specs, o.threads);
            eprintln!("done: {} at {rate} req/s ({n} reps)", scenario.name);
            rows.extend(cell);
        }
    }
    rows
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("detection: {e}");
            return ExitCode::from(2);
        }
    };
    // Wall time of the run is part of the output; no engine clock exists in a CLI benchmark.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    if o.sweep || o.sweep_tail {
        if o.sweep {
            print!("{}", sweep::run(o.seed, o.threads, o.quick));
        }
        if o.sweep_tail {
            print!("{}", sweep::run_tail(o.seed, o.threads, o.quick));
        }
        eprintln!("wall time: {:.1} s", started.elapsed().as_secs_f64());
        return ExitCode::SUCCESS;
    }
    let mut reps = if o.quick {
        Reps {
            null: 100,
            effect: 40,
            baseline: 100,
            raw: 10,
        }
    } else {
        Reps {
            null: 2000,
            effect: 500,
            baseline: 500,
            raw: 100,
        }
    };
    reps.null = o.null_reps.unwrap_or(reps.null);
    reps.effect = o.effect_reps.unwrap_or(reps.effect);
    // Computed before the clock matters for any cell, once per process.
    let _ = detectors::group_sequential::boundaries();
    let rows = run(&o, reps);
    let wall = started.elapsed().as_secs_f64();
    println!(
        "detection benchmark: seed {}, {} A/A reps, {} reps per effect cell; Kayenta and \
         naive MW on 10 s points on the first {} reps of each cell, on raw latencies at \
         5 req/s on the first {}; checks every 10 s for 30 min; TTD from onset; limit = \
         power-one SPRT (ln 20) with true parameters; sprt-cusum = CUSUM on the same \
         increments, onset unknown, threshold for 5 % false alarms in 30 min",
        o.seed, reps.null, reps.effect, reps.baseline, reps.raw
    );
    print!("{}", report::table(&rows));
    println!("wall time: {wall:.1} s on {} threads", o.threads);
    if let Some(path) = &o.json {
        let doc = serde_json::json!({
            "seed": o.seed,
            "quick": o.quick,
            "replications": {"null": reps.null, "effect": reps.effect,
                "kayenta_mw_points": reps.baseline, "kayenta_mw_raw": reps.raw},
            "wall_time_s": wall,
            "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("detection: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
