//! Tuning sweeps for the stats helper, through the public API: the counts tests' prior
//! strength on error 1 %→2 % at 100 req/s/arm, the mSPRT's mixture width and the distribution
//! test's tail prior strength on latency ×1.10 and tail 5 % ×3 at 5 req/s/arm, each with its
//! A/A false rollback rate at the same rate.

use cutover_analysis::Alternative;
use cutover_analysis::sequential::{CountSettings, DistributionSettings, MeanSettings};

use crate::detectors::cutover::Sequential;
use crate::detectors::sprt::Sprt;
use crate::report::{Row, table};
use crate::sim::{Spec, run_cell};
use crate::traffic::{Effect, Scenario};

/// A lineup of sweep detectors.
type Lineup = fn() -> Vec<Spec<'static>>;

fn spec<'a>(name: String, make: impl Fn() -> Sequential + Sync + 'a) -> Spec<'a> {
    Spec {
        name,
        max_reps: usize::MAX,
        make: Box::new(move || Box::new(make())),
    }
}

fn scenario(name: &str) -> Scenario {
    Scenario::all()
        .into_iter()
        .find(|s| s.name == name)
        .expect("known scenario")
}

fn count_specs() -> Vec<Spec<'static>> {
    let mut out = Vec::new();
    for k in [1.0, 3.0, 10.0, 30.0, 100.0] {
        for (alt, a) in [(Alternative::TwoSided, "2s"), (Alternative::Greater, "gt")] {
            let s = CountSettings {
                prior_strength: k,
                alternative: alt,
                ..Default::default()
            };
            out.push(spec(format!("counts-{a} k={k}"), move || {
                Sequential::counts(s, false)
            }));
            out.push(spec(format!("counts-obs-{a} k={k}"), move || {
                Sequential::counts(s, true)
            }));
        }
    }
    out
}

fn latency_specs() -> Vec<Spec<'static>> {
    let mut out = Vec::new();
    for tau in [0.05, 0.09, 0.13, 0.2, 0.4] {
        for (alt, a) in [(Alternative::TwoSided, "2s"), (Alternative::Greater, "gt")] {
            let s = MeanSettings {
                tau,
                alternative: alt,
                ..Default::default()
            };
            out.push(spec(format!("msprt-{a} tau={tau:.3}"), move || {
                Sequential::mean(s)
            }));
        }
    }
    for k in [1.0, 3.0, 10.0, 30.0, 100.0] {
        out.push(spec(format!("dist-gt tail_k={k}"), move || {
            Sequential::distribution(DistributionSettings {
                alternative: Alternative::Greater,
                tail_prior_strength: k,
                ..Default::default()
            })
        }));
    }
    out
}

/// The distribution test's tail e-process: which control quantiles, and the prior strength.
fn tail_specs() -> Vec<Spec<'static>> {
    let mut out = Vec::new();
    let sets: [&[f64]; 5] = [
        &[0.9, 0.99],
        &[0.99, 0.999],
        &[0.9, 0.99, 0.999],
        &[0.95, 0.99, 0.999],
        &[0.99],
    ];
    for quantiles in sets {
        for k in [2.0, 5.0, 10.0] {
            let q = quantiles.to_vec();
            out.push(spec(format!("dist-gt q={quantiles:?} k={k}"), move || {
                Sequential::distribution(DistributionSettings {
                    alternative: Alternative::Greater,
                    tail_prior_strength: k,
                    tail_quantiles: q.clone(),
                    ..Default::default()
                })
            }));
        }
    }
    out
}

/// The tail sweep: tail cells at 5 and 20 req/s with their A/A.
pub(crate) fn run_tail(seed: u64, threads: usize, quick: bool) -> String {
    let (null, effect) = if quick { (200, 100) } else { (1000, 200) };
    let cells: [(&str, f64); 7] = [
        ("A/A", 5.0),
        ("tail-5%x3", 5.0),
        ("tail-1%x5", 5.0),
        ("tail-5%x3@10m", 5.0),
        ("A/A", 20.0),
        ("tail-1%x5", 20.0),
        ("tail-1%x5@10m", 20.0),
    ];
    let mut rows: Vec<Row> = Vec::new();
    for (name, rate) in cells {
        let sc = scenario(name);
        let mut specs = tail_specs();
        let has_effect = sc.effect != Effect::None;
        if has_effect {
            let s = &sc;
            specs.insert(
                0,
                Spec {
                    name: "sprt-limit".into(),
                    max_reps: usize::MAX,
                    make: Box::new(move || Box::new(Sprt::new(s))),
                },
            );
        }
        let n = if has_effect { effect } else { null };
        rows.extend(run_cell(seed, &sc, rate, n, &specs, threads));
        eprintln!("sweep: {name} at {rate} req/s done");
    }
    table(&rows)
}

/// Runs the sweep and returns its table.
pub(crate) fn run(seed: u64, threads: usize, quick: bool) -> String {
    let (null, effect) = if quick { (100, 50) } else { (1000, 200) };
    let cells: [(&str, f64, Lineup); 5] = [
        ("A/A", 100.0, count_specs),
        ("err-1%->2%", 100.0, count_specs),
        ("A/A", 5.0, latency_specs),
        ("lat-x1.10", 5.0, latency_specs),
        ("tail-5%x3", 5.0, latency_specs),
    ];
    let mut rows: Vec<Row> = Vec::new();
    for (name, rate, specs) in cells {
        let sc = scenario(name);
        let mut specs = specs();
        let has_effect = sc.effect != Effect::None;
        if has_effect {
            let s = &sc;
            specs.insert(
                0,
                Spec {
                    name: "sprt-limit".into(),
                    max_reps: usize::MAX,
                    make: Box::new(move || Box::new(Sprt::new(s))),
                },
            );
        }
        let n = if has_effect { effect } else { null };
        let cell = run_cell(seed, &sc, rate, n, &specs, threads);
        eprintln!("sweep: {name} at {rate} req/s done");
        rows.extend(cell);
    }
    table(&rows)
}
