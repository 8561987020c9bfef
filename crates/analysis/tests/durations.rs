//! `sequential::durations`: its numbers against seeded simulations of the real tests, its
//! monotonicity and errors, and the table in `docs/analysis-durations.md`, which this file
//! writes (`CUTOVER_UPDATE_DOCS=1 cargo test -p cutover-analysis --test durations`) and checks.

use std::fmt::Write as _;
use std::time::Duration;

use cutover_analysis::sequential::{
    CountSettings, CountTest, Decision, DistributionSettings, Durations, MeanSettings, MeanTest,
    Model, ObservedShareCountTest, Traffic, durations,
};
use cutover_analysis::{Alternative, SplitMix64};

const MINUTE: Duration = Duration::from_mins(1);
const DAY: Duration = Duration::from_hours(24);

fn greater_counts() -> CountSettings {
    CountSettings {
        alternative: Alternative::Greater,
        ..CountSettings::default()
    }
}

fn greater_means() -> MeanSettings {
    MeanSettings {
        alternative: Alternative::Greater,
        ..MeanSettings::default()
    }
}

fn greater_distribution() -> DistributionSettings {
    DistributionSettings {
        alternative: Alternative::Greater,
        ..DistributionSettings::default()
    }
}

fn counts(base_rate: f64, observed_share: bool) -> Model {
    Model::Counts {
        settings: greater_counts(),
        base_rate,
        observed_share,
    }
}

fn minutes(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_secs() / 60)
}

/// Poisson draws: Knuth's method for small means, the normal approximation above 50.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn poisson(rng: &mut SplitMix64, mean: f64) -> u64 {
    if mean > 50.0 {
        return (mean + mean.sqrt() * rng.normal()).round().max(0.0) as u64;
    }
    let limit = (-mean).exp();
    let (mut k, mut p) = (0, rng.uniform());
    while p > limit {
        k += 1;
        p *= rng.uniform();
    }
    k
}

/// Over `reps` seeded replications, the first check (1-based) at which `run`'s test decides
/// (`u64::MAX` for none within `limit` checks), sorted.
fn simulate(reps: u64, limit: u64, mut run: impl FnMut(&mut SplitMix64, u64) -> bool) -> Vec<u64> {
    let mut firsts: Vec<u64> = (0..reps)
        .map(|rep| {
            let mut rng = SplitMix64::new(0xD0_0000 + rep);
            (1..=limit).find(|&t| run(&mut rng, t)).unwrap_or(u64::MAX)
        })
        .collect();
    firsts.sort_unstable();
    firsts
}

#[track_caller]
#[allow(clippy::cast_precision_loss)]
fn assert_near(name: &str, simulated: &[u64], expected: Option<u64>) {
    let expected = expected.expect("decides within the horizon");
    let median = simulated[simulated.len() / 2];
    let p90 = simulated[simulated.len() * 9 / 10];
    let ratio = median as f64 / expected as f64;
    eprintln!(
        "{name}: simulated median {median}, p90 {p90}; expected path {expected} ({ratio:.2})"
    );
    // The expected path is about the median, a little late; one run in ten takes up to about
    // twice as long (module docs, the document below).
    assert!(
        (0.6..=1.05).contains(&ratio),
        "{name}: simulated median {median} checks, durations says {expected}"
    );
    assert!(
        p90 as f64 <= 2.2 * expected as f64,
        "{name}: simulated p90 {p90} checks, durations says {expected}"
    );
}

/// The counts tests fed Poisson errors window by window: the simulated median time to pass
/// and to reject is what `durations` says, within the documented slack.
#[test]
fn counts_durations_are_about_the_simulated_median() {
    // 1 % errors, 1,000 requests per arm per minute; tolerance 1.5, a doubled rate.
    let (rate, requests, tolerance, effect) = (0.01, 1000.0, 1.5, 2.0);
    for observed in [false, true] {
        let d = durations(
            &counts(rate, observed),
            &Traffic::per_arm(requests, MINUTE),
            tolerance,
            effect,
            DAY,
        )
        .unwrap();
        let run = |ratio: f64, pass: bool| {
            let mut fixed = CountTest::new(0.5, greater_counts()).unwrap();
            let mut share = ObservedShareCountTest::new(0.5, greater_counts()).unwrap();
            move |rng: &mut SplitMix64, t: u64| {
                if t == 1 {
                    fixed = CountTest::new(0.5, greater_counts()).unwrap();
                    share = ObservedShareCountTest::new(0.5, greater_counts()).unwrap();
                }
                let (c, x) = (
                    poisson(rng, requests * rate),
                    poisson(rng, requests * rate * ratio),
                );
                let e = if observed {
                    share.observe_window(c, x, 1000, 1000).unwrap();
                    share.evidence()
                } else {
                    fixed.observe(c, x).unwrap();
                    fixed.evidence()
                };
                if pass {
                    e.decide(tolerance - 1.0) == Decision::RuledOut
                } else {
                    e.rejected
                }
            }
        };
        let name = if observed {
            "observed share"
        } else {
            "fixed split"
        };
        assert_near(
            &format!("{name} pass"),
            &simulate(41, 400, run(1.0, true)),
            minutes(d.pass),
        );
        assert_near(
            &format!("{name} reject"),
            &simulate(41, 400, run(effect, false)),
            minutes(d.reject),
        );
    }
}

#[test]
fn mean_durations_are_about_the_simulated_median() {
    // Values with standard deviation 1, 100 per arm per minute; tolerance 0.1, effect 0.2.
    let (n, tolerance, effect) = (100usize, 0.1, 0.2);
    let model = Model::Mean {
        settings: greater_means(),
        std_dev: 1.0,
    };
    #[allow(clippy::cast_precision_loss)]
    let d = durations(
        &model,
        &Traffic::per_arm(n as f64, MINUTE),
        tolerance,
        effect,
        DAY,
    )
    .unwrap();
    let run = |shift: f64, pass: bool| {
        let mut test = MeanTest::new(greater_means()).unwrap();
        move |rng: &mut SplitMix64, t: u64| {
            if t == 1 {
                test = MeanTest::new(greater_means()).unwrap();
            }
            let control: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            let canary: Vec<f64> = (0..n).map(|_| rng.normal() + shift).collect();
            test.observe_control(&control).unwrap();
            test.observe_canary(&canary).unwrap();
            let e = test.evidence();
            if pass {
                e.decide(tolerance) == Decision::RuledOut
            } else {
                e.rejected
            }
        }
    };
    assert_near(
        "mean pass",
        &simulate(41, 400, run(0.0, true)),
        minutes(d.pass),
    );
    assert_near(
        "mean reject",
        &simulate(41, 400, run(effect, false)),
        minutes(d.reject),
    );
}

#[test]
fn more_traffic_or_a_wider_tolerance_is_never_slower() {
    let model = counts(0.01, true);
    let at = |requests: f64, tolerance: f64, effect: f64| {
        durations(
            &model,
            &Traffic::per_arm(requests, MINUTE),
            tolerance,
            effect,
            DAY,
        )
        .unwrap()
    };
    let base = at(1000.0, 1.2, 1.5);
    let (pass, reject) = (base.pass.unwrap(), base.reject.unwrap());
    assert!(at(4000.0, 1.2, 1.5).pass.unwrap() < pass);
    assert!(at(4000.0, 1.2, 1.5).reject.unwrap() < reject);
    assert!(at(1000.0, 1.5, 1.5).pass.unwrap() < pass);
    assert!(at(1000.0, 1.2, 3.0).reject.unwrap() < reject);
    // Nothing within an hour at 10 requests per minute and a 5 % tolerance.
    let slow = durations(
        &model,
        &Traffic::per_arm(10.0, MINUTE),
        1.05,
        1.1,
        Duration::from_hours(1),
    )
    .unwrap();
    assert_eq!(
        slow,
        Durations {
            pass: None,
            reject: None
        }
    );
    // The time is a whole number of intervals.
    let ten = Duration::from_secs(10);
    let d = durations(&model, &Traffic::per_arm(200.0, ten), 1.5, 2.0, DAY).unwrap();
    assert_eq!(d.pass.unwrap().as_secs() % 10, 0);
    // Less rejects only a better canary: a worse one is never rejected.
    let less = Model::Counts {
        settings: CountSettings {
            alternative: Alternative::Less,
            ..CountSettings::default()
        },
        base_rate: 0.01,
        observed_share: false,
    };
    let d = durations(&less, &Traffic::per_arm(1000.0, MINUTE), 1.2, 2.0, DAY).unwrap();
    assert_eq!(d.reject, None);
    assert!(d.pass.is_some());
}

#[test]
fn distribution_durations_follow_the_band() {
    let model = Model::Distribution {
        settings: greater_distribution(),
    };
    let d = |requests: f64, tolerance: f64, gap: f64| {
        durations(
            &model,
            &Traffic::per_arm(requests, MINUTE),
            tolerance,
            gap,
            DAY,
        )
        .unwrap()
    };
    let base = d(300.0, 0.1, 0.3);
    // Simulated (release, 51 replications of uniform values, the canary shifted by the gap):
    // median pass 16 checks, reject 2 (the expected path: 15 and 2).
    assert_eq!(
        (minutes(base.pass), minutes(base.reject)),
        (Some(15), Some(2))
    );
    assert!(d(300.0, 0.05, 0.3).pass > base.pass);
    assert!(d(300.0, 0.1, 0.1).reject > base.reject);
    // Without the tail e-process the band has all of alpha, and is never slower.
    let band_only = Model::Distribution {
        settings: DistributionSettings {
            tail_quantiles: Vec::new(),
            ..greater_distribution()
        },
    };
    let alone = durations(&band_only, &Traffic::per_arm(300.0, MINUTE), 0.1, 0.1, DAY).unwrap();
    assert!(alone.reject.unwrap() < d(300.0, 0.1, 0.1).reject.unwrap());
}

#[test]
fn bad_questions_are_errors_that_name_the_field() {
    let model = counts(0.01, true);
    let traffic = Traffic::per_arm(1000.0, MINUTE);
    let err = |m: &Model, t: &Traffic, tol: f64, eff: f64, h: Duration| {
        durations(m, t, tol, eff, h).unwrap_err().to_string()
    };
    assert!(err(&model, &traffic, 1.0, 2.0, DAY).contains("tolerance"));
    assert!(err(&model, &traffic, 1.2, f64::NAN, DAY).contains("effect"));
    assert!(err(&counts(0.6, true), &traffic, 1.2, 2.0, DAY).contains("effect"));
    assert!(err(&counts(0.0, true), &traffic, 1.2, 2.0, DAY).contains("base_rate"));
    assert!(
        err(&model, &Traffic::per_arm(0.0, MINUTE), 1.2, 2.0, DAY).contains("control_requests")
    );
    assert!(
        err(
            &model,
            &Traffic::per_arm(1.0, Duration::ZERO),
            1.2,
            2.0,
            DAY
        )
        .contains("interval")
    );
    assert!(err(&model, &traffic, 1.2, 2.0, Duration::from_secs(1)).contains("horizon"));
    let mean = Model::Mean {
        settings: greater_means(),
        std_dev: 0.0,
    };
    assert!(err(&mean, &traffic, 0.1, 0.2, DAY).contains("std_dev"));
    let gap = Model::Distribution {
        settings: greater_distribution(),
    };
    assert!(err(&gap, &traffic, 0.0, 0.2, DAY).contains("tolerance"));
}

/// `2 min`, `1 h 5 min`, `> 1 day`.
fn show(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "> 1 day".to_owned();
    };
    let m = d.as_secs().div_ceil(60);
    match (m / 60, m % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const TRAFFIC: [u64; 3] = [600, 6_000, 60_000];

/// The document: every number comes from `durations`.
#[allow(clippy::cast_precision_loss)]
fn document() -> String {
    let mut out = String::from(
        "# How long the sequential tests take\n\n\
         <!-- Generated by crates/analysis/tests/durations.rs from \
         cutover_analysis::sequential::durations; do not edit. \
         CUTOVER_UPDATE_DOCS=1 cargo test -p cutover-analysis --test durations rewrites it, and \
         the test fails while this file and the function disagree. -->\n\n\
         A sequential test rolls back as soon as the evidence is strong enough, but it passes \
         only once its confidence sequence rules out a degradation above the tolerance, and \
         that takes as much data as the tolerance is tight. Until then a step stays \
         \"undecided, going on\". These tables say how long that is for common traffic; \
         `cutover_analysis::sequential::durations` answers it for your own (base rate, \
         requests per interval per arm, interval, tolerance, alpha, true effect).\n\n\
         Every cell: alpha 0.05, one-sided (`greater`, the plan default), default settings \
         (restarts on), the same traffic to both arms, a check every minute. **Pass**: the \
         candidate is exactly as good as stable, time until the test rules out an effect above \
         the tolerance (the engine passes a step at the first check after both this and the \
         step's own time). **Reject**: the candidate is worse by the given true effect, time \
         until the rollback. Times are about the median (the test fed its expected data; \
         simulated medians were 0.65 to 1.0 times these); one run in ten takes up to about \
         twice as long. More than a day is shown as `> 1 day`.\n\n",
    );
    let newcomer = durations(
        &counts(0.01, true),
        &Traffic::per_arm(2000.0, MINUTE),
        1.2,
        2.0,
        DAY,
    )
    .unwrap();
    let _ = write!(
        out,
        "For example, at a 1 % error rate with 2,000 requests per arm per minute and tolerance \
         1.2, the counts test needs about {} to pass (it must tell a rate of 1.00 % from \
         1.20 %, which takes a few thousand error events), and rolls back a doubled error rate \
         in about {}.\n\n",
        show(newcomer.pass),
        show(newcomer.reject)
    );
    out.push_str(
        "## Counts (error rates), observed-share test (the plan default)\n\n\
         Tolerance and effect are rate ratios canary / control: 1.2 passes at most 20 % more \
         errors per request.\n\n\
         | base rate | requests per arm per minute | pass, tolerance 1.1 | 1.2 | 1.5 | reject 1.5x | 2x |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (rate, label) in [(0.001, "0.1 %"), (0.01, "1 %"), (0.05, "5 %")] {
        for n in TRAFFIC {
            let traffic = Traffic::per_arm(n as f64, MINUTE);
            let model = counts(rate, true);
            let at = |tol: f64, eff: f64| durations(&model, &traffic, tol, eff, DAY).unwrap();
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                grouped(n),
                show(at(1.1, 2.0).pass),
                show(at(1.2, 2.0).pass),
                show(at(1.5, 2.0).pass),
                show(at(1.2, 1.5).reject),
                show(at(1.2, 2.0).reject),
            );
        }
    }
    out.push_str(
        "\n## Distribution (latency)\n\n\
         Tolerance and effect are CDF gaps `sup (F_control − F_canary)`: 0.05 passes a canary \
         whose distribution is at most 5 points of probability slower anywhere. Reject is the \
         CDF band's time for a shift of the whole distribution; the tail e-process beside it \
         rejects tail-only regressions much sooner (see the detection benchmark).\n\n\
         | requests per arm per minute | pass, tolerance 0.02 | 0.05 | 0.1 | reject gap 0.05 | 0.1 | 0.2 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let model = Model::Distribution {
        settings: greater_distribution(),
    };
    for n in TRAFFIC {
        let traffic = Traffic::per_arm(n as f64, MINUTE);
        let at = |tol: f64, eff: f64| durations(&model, &traffic, tol, eff, DAY).unwrap();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            grouped(n),
            show(at(0.02, 0.05).pass),
            show(at(0.05, 0.05).pass),
            show(at(0.1, 0.05).pass),
            show(at(0.05, 0.05).reject),
            show(at(0.05, 0.1).reject),
            show(at(0.05, 0.2).reject),
        );
    }
    out.push_str(
        "\n## Means\n\n\
         Tolerance and effect in standard deviations of one request's value (for latencies \
         with a standard deviation of 50 ms, 0.1 is 5 ms).\n\n\
         | requests per arm per minute | pass, tolerance 0.05 | 0.1 | 0.2 | reject 0.05 | 0.1 | 0.2 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let model = Model::Mean {
        settings: greater_means(),
        std_dev: 1.0,
    };
    for n in TRAFFIC {
        let traffic = Traffic::per_arm(n as f64, MINUTE);
        let at = |tol: f64, eff: f64| durations(&model, &traffic, tol, eff, DAY).unwrap();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            grouped(n),
            show(at(0.05, 0.1).pass),
            show(at(0.1, 0.1).pass),
            show(at(0.2, 0.1).pass),
            show(at(0.1, 0.05).reject),
            show(at(0.1, 0.1).reject),
            show(at(0.1, 0.2).reject),
        );
    }
    out
}

#[test]
fn the_docs_table_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/analysis-durations.md"
    );
    let want = document();
    if std::env::var_os("CUTOVER_UPDATE_DOCS").is_some() {
        std::fs::write(path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "{path} is not what sequential::durations computes; rewrite it with \
         CUTOVER_UPDATE_DOCS=1 cargo test -p cutover-analysis --test durations\n\n{want}"
    );
}
