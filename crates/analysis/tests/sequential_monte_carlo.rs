//! A small seeded Monte-Carlo check of the false-rejection guarantee: A/A traffic (both arms
//! identical), checked every "10 s" for "30 minutes" (180 checks), a few hundred replications
//! per test. Each test's rejection rate must stay below alpha. Alpha is 0.1 rather than 0.05 so
//! that a few hundred replications can see a violation; the full-size check (2000
//! replications, alpha 0.05) is the detection benchmark's.

use cutover_analysis::sequential::{
    CountSettings, CountTest, DistributionSettings, DistributionTest, MeanSettings, MeanTest,
    ObservedShareCountTest, StationaryCountSettings, StationaryCountTest, Variance,
};
use cutover_analysis::{Alternative, SplitMix64};

const ALPHA: f64 = 0.1;
const CHECKS: usize = 180;

/// The crate's seeded generator, with the draws this simulation needs.
struct Rng(SplitMix64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0.uniform()
    }

    fn normal(&mut self) -> f64 {
        self.0.normal()
    }

    /// Knuth's Poisson sampler (small means only).
    fn poisson(&mut self, mean: f64) -> u64 {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, self.uniform());
        while p > limit {
            k += 1;
            p *= self.uniform();
        }
        k
    }

    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        (0..n).map(|_| u64::from(self.uniform() < p)).sum()
    }

    /// Log-normal latency, median 100 ms, s = 0.5.
    fn latency(&mut self) -> f64 {
        0.1 * (0.5 * self.normal()).exp()
    }
}

/// Runs `replications` A/A replications of one test; returns how many rejected.
fn rejections(replications: u64, mut one: impl FnMut(&mut Rng) -> bool) -> u64 {
    (0..replications)
        .map(|r| u64::from(one(&mut Rng(SplitMix64::new(0x5EED_0000 + r)))))
        .sum()
}

#[track_caller]
#[allow(clippy::cast_precision_loss)]
fn assert_under_alpha(name: &str, rejected: u64, replications: u64) {
    let rate = rejected as f64 / replications as f64;
    eprintln!("{name}: {rejected}/{replications} = {rate:.3} (alpha {ALPHA})");
    assert!(
        rate <= ALPHA,
        "{name}: A/A rejection rate {rate} above alpha {ALPHA}"
    );
}

#[test]
fn counts_tests_hold_alpha_under_a_a() {
    for alternative in [Alternative::TwoSided, Alternative::Greater] {
        for k in [2.0, 100.0] {
            let settings = CountSettings {
                alpha: ALPHA,
                prior_strength: k,
                alternative,
                restarts: true,
            };
            let n = 150;
            let r = rejections(n, |rng| {
                let mut test = CountTest::new(0.5, settings).unwrap();
                (0..CHECKS).any(|_| {
                    let (c, t) = (rng.poisson(3.0), rng.poisson(3.0));
                    test.observe(c, t).unwrap();
                    test.evidence().rejected
                })
            });
            assert_under_alpha(&format!("counts {alternative:?} k={k}"), r, n);
        }
    }
}

#[test]
fn stationary_counts_test_holds_alpha_under_a_a() {
    for error_rate in [0.002, 0.05] {
        let settings = StationaryCountSettings {
            alpha: ALPHA,
            ..StationaryCountSettings::default()
        };
        let n = 150;
        let r = rejections(n, |rng| {
            let mut test = StationaryCountTest::new(settings.clone()).unwrap();
            (0..CHECKS).any(|_| {
                let (nc, nt) = (rng.poisson(50.0), rng.poisson(50.0));
                let (ec, et) = (rng.binomial(nc, error_rate), rng.binomial(nt, error_rate));
                test.observe_window(ec, nc, et, nt).unwrap();
                test.evidence().rejected
            })
        });
        assert_under_alpha(&format!("stationary counts at {error_rate}"), r, n);
    }
}

#[test]
fn observed_share_test_holds_alpha_when_the_split_drifts() {
    let settings = CountSettings {
        alpha: ALPHA,
        ..CountSettings::default()
    };
    let n = 100;
    let r = rejections(n, |rng| {
        let mut test = ObservedShareCountTest::new(0.5, settings).unwrap();
        (0..CHECKS).any(|check| {
            // The canary's share wanders between 1/3 and 2/3; errors 5 % per request in both.
            let canary_mean = if check % 20 < 10 { 100.0 } else { 25.0 };
            let (nc, nt) = (rng.poisson(50.0), rng.poisson(canary_mean));
            let (ec, et) = (rng.binomial(nc, 0.05), rng.binomial(nt, 0.05));
            test.observe_window(ec, et, nc, nt).unwrap();
            test.evidence().rejected
        })
    });
    assert_under_alpha("observed share", r, n);
}

#[test]
fn distribution_test_holds_alpha_under_a_a() {
    // Coarser edges than the default keep this fast in a debug build.
    let edges: Vec<f64> = (0..200).map(|i| 0.005 * 1.025f64.powi(i)).collect();
    for alternative in [Alternative::TwoSided, Alternative::Greater] {
        let settings = DistributionSettings {
            alpha: ALPHA,
            alternative,
            edges: edges.clone(),
            ..DistributionSettings::default()
        };
        let n = 100;
        let r = rejections(n, |rng| {
            let mut test = DistributionTest::new(settings.clone()).unwrap();
            (0..CHECKS).any(|_| {
                let control: Vec<f64> = (0..rng.poisson(10.0)).map(|_| rng.latency()).collect();
                let canary: Vec<f64> = (0..rng.poisson(10.0)).map(|_| rng.latency()).collect();
                test.observe_control(&control).unwrap();
                test.observe_canary(&canary).unwrap();
                test.check().rejected
            })
        });
        assert_under_alpha(&format!("distribution {alternative:?}"), r, n);
    }
}

#[test]
fn mean_test_holds_alpha_under_a_a() {
    // With a known variance and with the scale-invariant t-mixture (the default) the
    // construction is exact for normal differences; the plug-in variance is valid only
    // asymptotically (module docs), but checked once per check it stays well below alpha too.
    let n = 200;
    for variance in [
        Variance::Unknown,
        Variance::KnownDifference(0.5),
        Variance::PlugIn,
    ] {
        for alternative in [Alternative::TwoSided, Alternative::Greater] {
            let tau = if variance == Variance::Unknown {
                0.13
            } else {
                1.1f64.ln()
            };
            let settings = MeanSettings {
                alpha: ALPHA,
                tau,
                alternative,
                variance,
                restarts: true,
            };
            let r = rejections(n, |rng| {
                let mut test = MeanTest::new(settings).unwrap();
                (0..CHECKS).any(|_| {
                    let draw = |rng: &mut Rng| -> Vec<f64> {
                        (0..rng.poisson(10.0)).map(|_| rng.latency().ln()).collect()
                    };
                    let (control, canary) = (draw(rng), draw(rng));
                    test.observe_control(&control).unwrap();
                    test.observe_canary(&canary).unwrap();
                    test.evidence().rejected
                })
            });
            assert_under_alpha(&format!("means {variance:?} {alternative:?}"), r, n);
        }
    }
}

/// Checks after the onset until the test rejects (`CHECKS` if it never does), per replication.
fn delays(replications: u64, mut one: impl FnMut(&mut Rng) -> Option<usize>) -> Vec<usize> {
    let mut d: Vec<usize> = (0..replications)
        .map(|r| one(&mut Rng(SplitMix64::new(0xDE7E_C700 + r))).unwrap_or(CHECKS))
        .collect();
    d.sort_unstable();
    d
}

/// The restarted e-processes exist for regressions that begin late: with an onset after 60
/// checks of A/A traffic, the tests with restarts must reject clearly sooner than the single
/// e-process, whose evidence the 60 checks of no difference dilute (`restarts` module docs).
#[test]
fn restarts_catch_a_late_onset_sooner() {
    const ONSET: usize = 60;
    let counts = |restarts: bool| {
        delays(30, |rng| {
            let settings = CountSettings {
                alternative: Alternative::Greater,
                restarts,
                ..CountSettings::default()
            };
            let mut test = CountTest::new(0.5, settings).unwrap();
            (0..CHECKS)
                .find(|&check| {
                    // 10 errors per check per arm, the canary's doubling at the onset.
                    let canary = if check >= ONSET { 20.0 } else { 10.0 };
                    test.observe(rng.poisson(10.0), rng.poisson(canary))
                        .unwrap();
                    test.evidence().rejected
                })
                .map(|check| check.saturating_sub(ONSET))
        })
    };
    let means = |restarts: bool| {
        delays(30, |rng| {
            let settings = MeanSettings {
                alternative: Alternative::Greater,
                restarts,
                ..MeanSettings::default()
            };
            let mut test = MeanTest::new(settings).unwrap();
            (0..CHECKS)
                .find(|&check| {
                    // 50 log-latencies per check per arm; the canary 25 % slower after the onset.
                    let shift = if check >= ONSET { 1.25f64.ln() } else { 0.0 };
                    let control: Vec<f64> = (0..50).map(|_| rng.latency().ln()).collect();
                    let canary: Vec<f64> = (0..50).map(|_| rng.latency().ln() + shift).collect();
                    test.observe_control(&control).unwrap();
                    test.observe_canary(&canary).unwrap();
                    test.evidence().rejected
                })
                .map(|check| check.saturating_sub(ONSET))
        })
    };
    for (name, with, without) in [
        ("counts", counts(true), counts(false)),
        ("means", means(true), means(false)),
    ] {
        let (a, b) = (with[with.len() / 2], without[without.len() / 2]);
        eprintln!("{name}: median checks after the onset {a} with restarts, {b} without");
        assert!(
            2 * a <= b,
            "{name}: {a} checks with restarts, {b} without: {with:?} {without:?}"
        );
        assert!(
            with[with.len() * 9 / 10] < CHECKS - ONSET,
            "{name}: {with:?}"
        );
    }
}
