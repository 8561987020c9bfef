//! The sequential tests against ANALYSIS.md §5.4 and SciPy (`fixtures/sequential.json`, made
//! by `fixtures/sequential.py`), the harness ops, the bad inputs, and a small seeded Monte-Carlo
//! check that each test's A/A rejection rate stays under alpha.

// Exact values (p = 1, an infinite width) are compared exactly on purpose.
#![allow(clippy::float_cmp)]

use cutover_analysis::harness::{Request, run, run_json};
use cutover_analysis::sequential::{
    Arm, BAND_SHARE, BASE_WEIGHT, CountSettings, CountTest, Decision, DistributionSettings,
    DistributionTest, MeanSettings, MeanTest, ObservedShareCountTest, StationaryCountSettings,
    StationaryCountTest, Variance, band_epsilon, log_bayes_factor, log_bayes_factor_greater,
    msprt_log_lambda, msprt_log_lambda_greater, t_mixture_log_bf,
};
use cutover_analysis::{Alternative, AnalysisError};
use serde_json::{Value, json};

fn close(have: f64, want: f64, rel: f64) -> bool {
    (have - want).abs() <= rel * want.abs().max(1e-12)
}

#[track_caller]
fn assert_close(have: f64, want: f64, rel: f64) {
    assert!(close(have, want, rel), "got {have}, want {want}");
}

#[test]
fn dirichlet_multinomial_vectors() {
    // (control, canary, canary share, log BF, 1/BF) from ANALYSIS.md §5.4, k = 100.
    let rows = [
        (0, 0, 0.5, 0.0, 1.0),
        (10, 10, 0.5, -0.091_577_427_5, 1.0959),
        (10, 25, 0.5, 0.690_598_238_1, 0.501_276_096_9),
        (100, 150, 0.5, 2.965_838_877_7, 0.051_517_234_5),
        (148, 62, 0.2, 3.088_294_334_195_41, 0.045_579_631_759_263_1),
    ];
    for (c, t, rho, log_bf, inv) in rows {
        let l = log_bayes_factor(c, t, rho, 100.0).unwrap();
        if log_bf == 0.0 {
            assert!(l.abs() < 1e-12, "{l}");
        } else {
            assert_close(l, log_bf, 1e-9);
        }
        assert_close(
            (-l).exp(),
            inv,
            if c == 10 && t == 10 { 1e-4 } else { 1e-9 },
        );
        // The same through the test object (without restarts: the single e-process), one
        // event at a time.
        let settings = CountSettings {
            prior_strength: 100.0,
            restarts: false,
            ..CountSettings::default()
        };
        let mut test = CountTest::new(rho, settings).unwrap();
        for _ in 0..c {
            test.observe(1, 0).unwrap();
        }
        for _ in 0..t {
            test.observe(0, 1).unwrap();
        }
        let e = test.evidence();
        assert_close(e.log_e_value + 1.0, log_bf + 1.0, 1e-9);
        assert_eq!((e.control_n, e.canary_n), (c, t));
    }
    // p = min over the path, never above 1.
    let mut test = CountTest::new(
        0.5,
        CountSettings {
            prior_strength: 100.0,
            ..Default::default()
        },
    )
    .unwrap();
    test.observe(10, 10).unwrap();
    assert_eq!(test.evidence().p_value, 1.0);
}

#[test]
fn savvi_sequential_stop() {
    // savvi's test (split 0.8/0.2, k = 100, numpy seed 1) stops at n = 210, counts (148, 62),
    // p = 0.045579631759249686. Of the two counts that can precede (148, 62), (147, 62) would
    // have stopped the test at n = 209 already, so the path came through (148, 61), which
    // must not reject: the first rejection is at n = 210.
    let settings = CountSettings {
        prior_strength: 100.0,
        restarts: false,
        ..CountSettings::default()
    };
    let p = |c, t| (-log_bayes_factor(c, t, 0.2, 100.0).unwrap()).exp();
    assert!(p(147, 62) <= 0.05);
    assert!(p(148, 61) > 0.05);
    let mut test = CountTest::new(0.2, settings).unwrap();
    test.observe(148, 61).unwrap();
    assert!(!test.evidence().rejected);
    test.observe(0, 1).unwrap();
    let e = test.evidence();
    assert!(e.rejected);
    assert_close(e.p_value, 0.045_579_631_759_249_686, 1e-9);
}

#[test]
fn one_sided_vector() {
    assert_close(
        log_bayes_factor_greater(10, 25, 0.5, 100.0).unwrap(),
        1.281_238_239_8,
        1e-9,
    );
    // The one-sided BF of a canary with fewer events than its share is below the two-sided.
    let two = log_bayes_factor(25, 10, 0.5, 100.0).unwrap();
    let one = log_bayes_factor_greater(25, 10, 0.5, 100.0).unwrap();
    assert!(one < two && one < 0.0, "{one} {two}");
}

#[test]
fn msprt_vectors() {
    assert_close(
        msprt_log_lambda(0.0, 100.0, 1.0, 2.0).exp(),
        0.140_028_008_4,
        1e-9,
    );
    assert_close(
        msprt_log_lambda(0.3, 100.0, 1.0, 2.0).exp(),
        1.271_210_424,
        1e-9,
    );
    // Through the test object with a known variance (σ = 1 per arm, σ_Z² = 2), without
    // restarts: the single mSPRT.
    let settings = MeanSettings {
        tau: 1.0,
        variance: Variance::KnownDifference(2.0),
        restarts: false,
        ..MeanSettings::default()
    };
    let mut test = MeanTest::new(settings).unwrap();
    test.observe_canary(&[1.3; 100]).unwrap();
    test.observe_control(&[1.0; 100]).unwrap();
    let e = test.evidence();
    assert_close(e.log_e_value.exp(), 1.271_210_424, 1e-9);
    assert_close(e.estimate, 0.3, 1e-9);
    // The CS of §3: half-width sqrt(σ²(σ²+nτ²)/(n²τ²)·ln((σ²+nτ²)/(σ²α²))).
    let half = (2.0 * 102.0 / 10_000.0 * (102.0f64 / (2.0 * 0.0025)).ln()).sqrt();
    assert_close(e.upper - e.estimate, half, 1e-9);
    assert_close(e.estimate - e.lower, half, 1e-9);
}

#[test]
fn band_epsilon_vectors() {
    for (t, want) in [(100.0, 0.26918), (1000.0, 0.08657), (1e4, 0.02771)] {
        assert!((band_epsilon(t, 0.05) - want).abs() < 5e-6, "{t}");
    }
    assert_eq!(band_epsilon(0.0, 0.05), f64::INFINITY);
}

#[test]
fn scipy_fixture() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/sequential.json")).unwrap();
    let counts = fixture["counts"].as_array().unwrap();
    assert!(counts.len() >= 50);
    for case in counts {
        let c = case["control"].as_u64().unwrap();
        let t = case["canary"].as_u64().unwrap();
        let rho = case["canary_share"].as_f64().unwrap();
        let k = case["prior_strength"].as_f64().unwrap();
        // Relative to max(|value|, 1): log BFs near 0 are compared absolutely.
        let cmp = |have: f64, want: f64| {
            assert!(
                (have - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{case}: {have} vs {want}"
            );
        };
        cmp(
            log_bayes_factor(c, t, rho, k).unwrap(),
            case["log_bf"].as_f64().unwrap(),
        );
        cmp(
            log_bayes_factor_greater(c, t, rho, k).unwrap(),
            case["log_bf_greater"].as_f64().unwrap(),
        );
    }
    for case in fixture["means"].as_array().unwrap() {
        let f = |k: &str| case[k].as_f64().unwrap();
        let args = (f("mean_difference"), f("n"), f("tau"), f("variance"));
        let cmp = |have: f64, want: f64| {
            assert!(
                (have - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{case}: {have} vs {want}"
            );
        };
        cmp(
            msprt_log_lambda(args.0, args.1, args.2, args.3),
            f("log_lambda"),
        );
        cmp(
            msprt_log_lambda_greater(args.0, args.1, args.2, args.3),
            f("log_lambda_greater"),
        );
    }
    for case in fixture["bands"].as_array().unwrap() {
        let f = |k: &str| case[k].as_f64().unwrap();
        assert_close(band_epsilon(f("t"), f("a")), f("epsilon"), 1e-12);
    }
}

#[test]
fn observed_share_matches_the_closed_form_at_a_constant_share() {
    // With every window at the configured share, the quadrature mixture is the
    // Dirichlet-multinomial Bayes factor up to the grid.
    for (rho, k) in [(0.5, 10.0), (0.2, 100.0), (0.1, 20.0)] {
        let settings = CountSettings {
            prior_strength: k,
            restarts: false,
            ..CountSettings::default()
        };
        let mut test = ObservedShareCountTest::new(rho, settings).unwrap();
        let (mut c, mut t) = (0, 0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let requests = ((1.0 - rho) * 10_000.0) as u64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let canary_requests = (rho * 10_000.0) as u64;
        for w in 0..40u64 {
            let (dc, dt) = (3 + w % 4, 2 + (w * 7) % 5);
            test.observe_window(dc, dt, requests, canary_requests)
                .unwrap();
            let e = test.evidence();
            c += dc;
            t += dt;
            let exact = log_bayes_factor(c, t, rho, k).unwrap();
            assert!(
                (e.log_e_value - exact).abs() < 1e-3,
                "{rho} {k} {w}: {} vs {exact}",
                e.log_e_value
            );
        }
        // Its CS contains the closed-form test's estimate and matches its CS to 5 % even at
        // ratios of 2-13, where the grid is coarsest.
        let mut fixed = CountTest::new(rho, settings).unwrap();
        fixed.observe(c, t).unwrap();
        let f = fixed.evidence();
        let e = test.evidence();
        assert!(e.lower <= f.estimate && f.estimate <= e.upper);
        assert!(
            (e.lower / f.lower - 1.0).abs() < 0.05 && (e.upper / f.upper - 1.0).abs() < 0.05,
            "{e:?} {f:?}"
        );
    }
}

#[test]
fn observed_share_bounds_are_fine_near_a_ratio_of_one() {
    // A good canary at a 1:1 split (2 % errors in both arms, alpha 0.01, k = 10): once the
    // bounds are within a factor 1.6 of 1, the drift-robust test's follow the closed form's
    // within 1 %, so it can pass a tolerance about as early (the engine's example found 7 %
    // steps with the first, uniform grid).
    let settings = CountSettings {
        alpha: 0.01,
        ..CountSettings::default()
    };
    let mut fixed = CountTest::new(0.5, settings).unwrap();
    let mut observed = ObservedShareCountTest::new(0.5, settings).unwrap();
    let mut previous = f64::INFINITY;
    for _ in 0..40 {
        fixed.observe(10, 10).unwrap();
        observed.observe_window(10, 10, 500, 500).unwrap();
        let (f, e) = (fixed.evidence(), observed.evidence());
        if f.upper < 1.6 {
            assert!((e.upper / f.upper - 1.0).abs() < 0.01, "{e} vs {f}");
            assert!((e.lower / f.lower - 1.0).abs() < 0.01, "{e} vs {f}");
        }
        assert!(e.upper <= previous, "{e}");
        previous = e.upper;
    }
}

#[test]
fn observed_share_ignores_a_traffic_drift_the_fixed_split_test_mistakes_for_errors() {
    // The canary gets 2/3 of the traffic instead of 1/2, with the same error rate per request.
    let mut fixed = CountTest::new(0.5, CountSettings::default()).unwrap();
    let mut observed = ObservedShareCountTest::new(0.5, CountSettings::default()).unwrap();
    for _ in 0..60 {
        fixed.observe(10, 20).unwrap();
        observed.observe_window(10, 20, 1000, 2000).unwrap();
    }
    assert!(fixed.evidence().rejected);
    let e = observed.evidence();
    assert!(!e.rejected && e.p_value > 0.5, "{e:?}");
    assert_close(e.estimate, 1.0, 1e-12);
    // A real doubling under the same drift is caught.
    let mut bad = ObservedShareCountTest::new(0.5, CountSettings::default()).unwrap();
    for _ in 0..20 {
        bad.observe_window(10, 40, 1000, 2000).unwrap();
    }
    let e = bad.evidence();
    assert!(
        e.rejected && e.lower > 1.0 && e.lower < 2.0 && e.upper > 2.0,
        "{e:?}"
    );
}

#[test]
fn decisions() {
    let mut test = CountTest::new(0.5, CountSettings::default()).unwrap();
    assert_eq!(test.evidence().decide(0.2), Decision::Undecided);
    test.observe(2000, 2000).unwrap();
    let e = test.evidence();
    assert!(e.upper < 1.2 && e.lower > 1.0 / 1.2, "{e:?}");
    assert_eq!(e.decide(0.2), Decision::RuledOut);
    assert_eq!(e.decide(0.01), Decision::Undecided);
    assert_eq!(e.decide(f64::NAN), Decision::Undecided);
    assert_eq!(e.decide(-1.0), Decision::Undecided);
    test.observe(0, 1000).unwrap();
    assert_eq!(test.evidence().decide(10.0), Decision::Reject);
}

#[test]
fn distribution_detects_a_shift_and_a_tail_and_gives_quantile_bounds() {
    // Deterministic "samples": the quantiles of a log-normal (median 100 ms, s = 0.5).
    use statrs::distribution::ContinuousCDF;
    let normal = statrs::distribution::Normal::new(0.0, 1.0).unwrap();
    let lognormal = |n: usize| -> Vec<f64> {
        (1..=n)
            .map(|i| {
                #[allow(clippy::cast_precision_loss)]
                let u = i as f64 / (n as f64 + 1.0);
                0.1 * (0.5 * normal.inverse_cdf(u)).exp()
            })
            .collect()
    };
    let base = lognormal(2000);
    let settings = DistributionSettings {
        alternative: Alternative::Greater,
        ..DistributionSettings::default()
    };
    // A/A: identical values never reject.
    let mut same = DistributionTest::new(settings.clone()).unwrap();
    for _ in 0..10 {
        same.observe_control(&base).unwrap();
        same.observe_canary(&base).unwrap();
        let e = same.check();
        assert!(
            !e.rejected && e.p_value == 1.0 && e.estimate == 0.0,
            "{e:?}"
        );
    }
    // Quantile bounds bracket the true median and tighten with data.
    let (lo, hi) = same.quantile_bounds(Arm::Control, 0.5).unwrap();
    assert!(lo < 0.1 && 0.1 < hi && hi / lo < 1.1, "{lo} {hi}");
    assert!(same.quantile_bounds(Arm::Control, 1.5).is_err());
    // 25 % slower: caught by the band.
    let slow: Vec<f64> = base.iter().map(|v| v * 1.25).collect();
    let mut shift = DistributionTest::new(settings.clone()).unwrap();
    shift.observe_control(&base).unwrap();
    shift.observe_canary(&slow).unwrap();
    let e = shift.check();
    assert!(e.rejected && shift.band_p_value() <= 0.025, "{e:?}");
    // Tail only (every 20th value 3x): the band misses it, the tail e-process catches it.
    let tail: Vec<f64> = base
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 20 == 7 { v * 3.0 } else { *v })
        .collect();
    // Each check gets 200 values spread over the whole distribution (a fixed permutation).
    let shuffle = |v: &[f64]| -> Vec<f64> { (0..2000).map(|i| v[i * 1543 % 2000]).collect() };
    let (base, tail) = (shuffle(&base), shuffle(&tail));
    let mut t = DistributionTest::new(settings).unwrap();
    let mut first = None;
    for check in 0..40 {
        t.observe_control(&base[check % 10 * 200..][..200]).unwrap();
        t.observe_canary(&tail[(check + 3) % 10 * 200..][..200])
            .unwrap();
        if t.check().rejected && first.is_none() {
            first = Some(check);
        }
    }
    assert!(first.is_some(), "tail not caught: {:?}", t.evidence());
    assert!(t.band_p_value() > 0.025, "{}", t.band_p_value());
    assert!(t.tail_p_value() <= 0.025);
}

#[test]
fn distribution_bucket_input_equals_value_input() {
    let edges = vec![1.0, 2.0, 5.0, 10.0];
    let settings = DistributionSettings {
        edges: edges.clone(),
        tail_quantiles: vec![0.5],
        ..DistributionSettings::default()
    };
    let mut by_value = DistributionTest::new(settings.clone()).unwrap();
    let mut by_bucket = DistributionTest::new(settings).unwrap();
    // Buckets (-inf,1], (1,2], (2,5], (5,10], (10,inf).
    for _ in 0..30 {
        by_value
            .observe_control(&[0.5, 1.0, 1.5, 3.0, 20.0])
            .unwrap();
        by_value
            .observe_canary(&[1.0, 4.0, 6.0, 11.0, 30.0])
            .unwrap();
        by_bucket
            .observe_buckets(Arm::Control, &[2, 1, 1, 0, 1])
            .unwrap();
        by_bucket
            .observe_buckets(Arm::Canary, &[1, 0, 1, 1, 2])
            .unwrap();
        assert_eq!(by_value.check(), by_bucket.check());
    }
    assert_eq!(by_value, by_bucket);
    assert!(by_bucket.observe_buckets(Arm::Canary, &[1, 2]).is_err());
}

#[test]
fn state_round_trips_through_json() {
    let mut counts = CountTest::new(0.3, CountSettings::default()).unwrap();
    counts.observe(5, 9).unwrap();
    let back: CountTest = serde_json::from_str(&serde_json::to_string(&counts).unwrap()).unwrap();
    assert_eq!(back, counts);
    let mut dist = DistributionTest::new(DistributionSettings::default()).unwrap();
    dist.observe_control(&[0.1, 0.2]).unwrap();
    dist.check();
    dist.observe_canary(&[0.3]).unwrap();
    let back: DistributionTest =
        serde_json::from_str(&serde_json::to_string(&dist).unwrap()).unwrap();
    assert_eq!(back, dist);
    let mut means = MeanTest::new(MeanSettings::default()).unwrap();
    means.observe_control(&[1.0, 2.0, 3.0]).unwrap();
    let back: MeanTest = serde_json::from_str(&serde_json::to_string(&means).unwrap()).unwrap();
    assert_eq!(back, means);
    let mut observed = ObservedShareCountTest::new(0.5, CountSettings::default()).unwrap();
    observed.observe_window(1, 2, 10, 10).unwrap();
    let text = serde_json::to_string(&observed).unwrap();
    let back: ObservedShareCountTest = serde_json::from_str(&text).unwrap();
    assert_eq!(back, observed);
}

#[test]
fn bad_inputs_are_errors() {
    let bad_alpha = |alpha| CountSettings {
        alpha,
        ..CountSettings::default()
    };
    for alpha in [0.0, 1.0, -0.1, f64::NAN, 2.0] {
        assert!(matches!(
            CountTest::new(0.5, bad_alpha(alpha)),
            Err(AnalysisError::InvalidAlpha(_))
        ));
        let d = DistributionSettings {
            alpha,
            ..DistributionSettings::default()
        };
        assert!(matches!(
            DistributionTest::new(d),
            Err(AnalysisError::InvalidAlpha(_))
        ));
        let m = MeanSettings {
            alpha,
            ..MeanSettings::default()
        };
        assert!(matches!(
            MeanTest::new(m),
            Err(AnalysisError::InvalidAlpha(_))
        ));
    }
    for share in [0.0, 1.0, -0.5, f64::NAN, f64::INFINITY] {
        assert!(CountTest::new(share, CountSettings::default()).is_err());
        assert!(ObservedShareCountTest::new(share, CountSettings::default()).is_err());
        assert!(log_bayes_factor(1, 1, share, 10.0).is_err());
    }
    for k in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let s = CountSettings {
            prior_strength: k,
            ..CountSettings::default()
        };
        assert!(CountTest::new(0.5, s).is_err());
        assert!(log_bayes_factor_greater(1, 1, 0.5, k).is_err());
    }
    let mut counts = CountTest::new(0.5, CountSettings::default()).unwrap();
    counts.observe(u64::MAX - 1, 0).unwrap();
    let before = counts.clone();
    assert!(counts.observe(5, 0).is_err());
    assert_eq!(counts, before);
    let mut observed = ObservedShareCountTest::new(0.5, CountSettings::default()).unwrap();
    assert!(matches!(
        observed.observe_window(5, 0, 4, 10),
        Err(AnalysisError::SuccessesExceedTrials { .. })
    ));
    let mut dist = DistributionTest::new(DistributionSettings::default()).unwrap();
    assert!(dist.observe_control(&[1.0, f64::NAN]).is_err());
    assert!(dist.observe_canary(&[1.0, -0.5]).is_err());
    dist.check();
    assert_eq!(
        dist.evidence().control_n,
        0,
        "a rejected batch must not be half inserted"
    );
    for edges in [
        vec![2.0, 1.0],
        vec![1.0, 1.0],
        vec![f64::NAN],
        vec![1.0, f64::INFINITY],
    ] {
        let s = DistributionSettings {
            edges,
            ..DistributionSettings::default()
        };
        assert!(DistributionTest::new(s).is_err());
    }
    let s = DistributionSettings {
        tail_quantiles: vec![1.0],
        ..DistributionSettings::default()
    };
    assert!(DistributionTest::new(s).is_err());
    for (tau, variance) in [
        (0.0, Variance::PlugIn),
        (f64::NAN, Variance::PlugIn),
        (1.0, Variance::KnownDifference(0.0)),
        (1.0, Variance::KnownDifference(f64::INFINITY)),
    ] {
        let s = MeanSettings {
            tau,
            variance,
            ..MeanSettings::default()
        };
        assert!(MeanTest::new(s).is_err());
    }
    let mut means = MeanTest::new(MeanSettings::default()).unwrap();
    assert!(means.observe_control(&[1.0, f64::INFINITY]).is_err());
    assert!(means.observe_canary(&[f64::NAN]).is_err());
    assert_eq!(means.evidence().control_n + means.evidence().canary_n, 0);
}

#[test]
fn harness_sequential_counts() {
    let request = json!({
        "op": "sequential_counts",
        "counts": [[0, 0], [10, 10], [10, 25], [100, 150]],
        "split": [0.5, 0.5],
        "alpha": 0.05,
        "prior_strength": 100,
        "restarts": false,
        "alternative": "two-sided"
    });
    let out = run(serde_json::from_value::<Request>(request).unwrap()).unwrap();
    let p: Vec<f64> = out["p_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(p.len(), 4);
    assert_eq!(&p[..2], &[1.0, 1.0]);
    assert_close(p[2], 0.501_276_096_9, 1e-9);
    assert_close(p[3], 0.051_517_234_5, 1e-9);
    assert_eq!(out["first_rejection"], Value::Null);
    // savvi's stop, with the defaults (alpha 0.05, two-sided) and a split given as weights;
    // the single e-process of savvi (no restarts).
    let out = run_json(r#"{"op":"sequential_counts","counts":[[148,61],[148,62]],"split":[80,20],"prior_strength":100,"restarts":false}"#).unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["first_rejection"], json!(1));
    // One-sided.
    let out = run_json(r#"{"op":"sequential_counts","counts":[[10,25]],"split":[0.5,0.5],"prior_strength":100,"restarts":false,"alternative":"greater"}"#).unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_close(
        out["p_values"][0].as_f64().unwrap(),
        (-1.281_238_239_8f64).exp(),
        1e-9,
    );
    // With restarts (the default) the base e-process weighs 0.7: at the first check no
    // restart has begun yet, so the p-value is the single e-process's divided by that weight.
    let out = run_json(r#"{"op":"sequential_counts","counts":[[10,25]],"split":[0.5,0.5],"prior_strength":100,"alternative":"greater"}"#).unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_close(
        out["p_values"][0].as_f64().unwrap(),
        (-1.281_238_239_8f64).exp() / BASE_WEIGHT,
        1e-9,
    );
    // Bad input: decreasing totals, bad split, bad alpha, unknown field.
    for bad in [
        r#"{"op":"sequential_counts","counts":[[5,5],[4,6]],"split":[0.5,0.5]}"#,
        r#"{"op":"sequential_counts","counts":[[5,5]],"split":[0,1]}"#,
        r#"{"op":"sequential_counts","counts":[[5,5]],"split":[0.5,0.5],"alpha":1.5}"#,
        r#"{"op":"sequential_counts","counts":[[5,5]],"split":[0.5,0.5],"nope":1}"#,
        r#"{"op":"sequential_counts","counts":[[-1,5]],"split":[0.5,0.5]}"#,
    ] {
        assert!(run_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn harness_sequential_distribution() {
    let control: Vec<Vec<f64>> = (0..5)
        .map(|c| (0..100).map(|i| f64::from(i + c) / 100.0).collect())
        .collect();
    let canary: Vec<Vec<f64>> = control
        .iter()
        .map(|v| v.iter().map(|x| x + 0.5).collect())
        .collect();
    let mut answers = Vec::new();
    for stationary in [false, true] {
        let request = json!({"op": "sequential_distribution", "control": control,
            "canary": canary, "alpha": 0.05, "stationary": stationary});
        let out = run(serde_json::from_value::<Request>(request).unwrap()).unwrap();
        // The same numbers as the test object fed the same checks.
        let settings = DistributionSettings {
            stationary,
            ..DistributionSettings::default()
        };
        let mut test = DistributionTest::new(settings).unwrap();
        let mut want = Vec::new();
        for (c, t) in control.iter().zip(&canary) {
            test.observe_control(c).unwrap();
            test.observe_canary(t).unwrap();
            want.push(test.check().p_value);
        }
        assert_eq!(out["p_values"], json!(want));
        let first = want.iter().position(|p| *p <= 0.05).unwrap();
        assert_eq!(out["first_rejection"], json!(first));
        answers.push(want);
    }
    assert_ne!(
        answers[0], answers[1],
        "stationary adds the exceedance test"
    );
    for bad in [
        r#"{"op":"sequential_distribution","control":[[1]],"canary":[]}"#,
        r#"{"op":"sequential_distribution","control":[[1]],"canary":[[-1]]}"#,
        r#"{"op":"sequential_distribution","control":[[1]],"canary":[[1]],"alpha":0}"#,
    ] {
        assert!(run_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn harness_sequential_stationary_counts() {
    // 1 % errors in both arms for 30 checks, then the canary at 10 %.
    let (mut errors, mut requests) = (Vec::new(), Vec::new());
    let (mut e, mut n) = ([0u64; 2], [0u64; 2]);
    let mut windows = Vec::new();
    for check in 0..40 {
        let canary_errors = if check < 30 { 10 } else { 100 };
        let window = [10, 1000, canary_errors, 1000];
        windows.push(window);
        e = [e[0] + window[0], e[1] + window[2]];
        n = [n[0] + window[1], n[1] + window[3]];
        errors.push(e);
        requests.push(n);
    }
    for restarts in [true, false] {
        let request = json!({"op": "sequential_stationary_counts", "errors": errors,
            "requests": requests, "alpha": 0.05, "restarts": restarts});
        let out = run(serde_json::from_value::<Request>(request).unwrap()).unwrap();
        // The same numbers as the test object fed the same windows.
        let mut test = StationaryCountTest::new(StationaryCountSettings {
            restarts,
            ..StationaryCountSettings::default()
        })
        .unwrap();
        let mut want = Vec::new();
        for [ce, cn, te, tn] in &windows {
            test.observe_window(*ce, *cn, *te, *tn).unwrap();
            want.push(test.evidence().p_value);
        }
        assert_eq!(out["p_values"], json!(want));
        let first = want.iter().position(|p| *p <= 0.05).unwrap();
        assert!(first >= 30, "rejected before the onset: {want:?}");
        assert_eq!(out["first_rejection"], json!(first));
    }
    for bad in [
        // Decreasing totals, more errors than requests, unequal lengths, bad alpha, unknown
        // field.
        r#"{"op":"sequential_stationary_counts","errors":[[5,5],[4,6]],"requests":[[9,9],[9,9]]}"#,
        r#"{"op":"sequential_stationary_counts","errors":[[5,5],[5,5]],"requests":[[9,9],[8,9]]}"#,
        r#"{"op":"sequential_stationary_counts","errors":[[5,10]],"requests":[[9,9]]}"#,
        r#"{"op":"sequential_stationary_counts","errors":[[5,5]],"requests":[]}"#,
        r#"{"op":"sequential_stationary_counts","errors":[[5,5]],"requests":[[9,9]],"alpha":0}"#,
        r#"{"op":"sequential_stationary_counts","errors":[[5,5]],"requests":[[9,9]],"nope":1}"#,
    ] {
        assert!(run_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn evidence_round_trips_through_json_with_non_finite_numbers() {
    let test = CountTest::new(0.5, CountSettings::default()).unwrap();
    let e = test.evidence();
    assert!(e.estimate.is_nan() && e.upper.is_infinite());
    let text = serde_json::to_string(&e).unwrap();
    assert!(
        text.contains(r#""upper":"inf""#) && text.contains(r#""estimate":"NaN""#),
        "{text}"
    );
    let back: cutover_analysis::Evidence = serde_json::from_str(&text).unwrap();
    assert_eq!(format!("{back:?}"), format!("{e:?}"));
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["estimate"] = Value::Null;
    v["lower"] = json!(0.5);
    let back: cutover_analysis::Evidence = serde_json::from_value(v.clone()).unwrap();
    assert!(back.estimate.is_nan() && back.lower == 0.5);
    v["upper"] = json!("lots");
    assert!(serde_json::from_value::<cutover_analysis::Evidence>(v).is_err());
}

#[test]
fn every_test_state_round_trips_through_json_for_every_alternative() {
    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(t: &T) {
        let text = serde_json::to_string(t).unwrap();
        // A non-finite f64 would be written as null and fail to read back here.
        let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:.300}"));
        assert_eq!(format!("{back:?}"), format!("{t:?}"));
    }
    for alternative in [
        Alternative::TwoSided,
        Alternative::Greater,
        Alternative::Less,
    ] {
        let counts = CountSettings {
            alternative,
            ..CountSettings::default()
        };
        let mut c = CountTest::new(0.2, counts).unwrap();
        round_trip(&c);
        c.observe(0, 50).unwrap();
        round_trip(&c);
        let mut o = ObservedShareCountTest::new(0.2, counts).unwrap();
        round_trip(&o);
        // Windows where one arm had all the traffic (share 0 or 1), and a lopsided one.
        o.observe_window(0, 30, 0, 100).unwrap();
        o.observe_window(30, 0, 100, 0).unwrap();
        o.observe_window(0, 60, 100, 100).unwrap();
        round_trip(&o);
        let mut d = DistributionTest::new(DistributionSettings {
            alternative,
            ..Default::default()
        })
        .unwrap();
        round_trip(&d);
        for _ in 0..3 {
            d.observe_control(&[0.1, 0.2, 0.3, f64::INFINITY]).unwrap();
            d.observe_canary(&[0.0, 5.0]).unwrap();
            d.check();
        }
        round_trip(&d);
        for variance in [
            Variance::Unknown,
            Variance::PlugIn,
            Variance::KnownDifference(1.0),
        ] {
            let mut m = MeanTest::new(MeanSettings {
                alternative,
                variance,
                ..Default::default()
            })
            .unwrap();
            round_trip(&m);
            m.observe_control(&[1.0, 1.0, 1.0, 2.0]).unwrap();
            m.observe_canary(&[-1e100, 1e100, 1.0]).unwrap();
            round_trip(&m);
        }
    }
}

#[test]
fn t_mixture_matches_numerical_integration() {
    // ln BF of the scale-invariant t-mixture, against a double numerical integration over θ and
    // σ (SciPy quad, right Haar prior 1/σ, θ | σ ~ N(0, gσ²)): (differences, g, ln BF).
    let cases: [(&[f64], f64, f64); 2] = [
        (&[0.5, 1.2, -0.3], 1.0, -0.210_188_526_773_97),
        (&[0.9, 1.7, 0.4, 1.1, 0.2, 1.5], 0.5, 1.848_067_130_361_058),
    ];
    for (z, g, want) in cases {
        let settings = MeanSettings {
            tau: g.sqrt(),
            restarts: false,
            ..MeanSettings::default()
        };
        let mut test = MeanTest::new(settings).unwrap();
        test.observe_control(&vec![0.0; z.len()]).unwrap();
        test.observe_canary(z).unwrap();
        let e = test.evidence();
        assert!(
            (e.log_e_value - want).abs() < 1e-5,
            "{} vs {want}",
            e.log_e_value
        );
        #[allow(clippy::cast_precision_loss)]
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let direct = t_mixture_log_bf(n * mean * mean / var, n, g);
        assert!((direct - e.log_e_value).abs() < 1e-12);
    }
}

#[test]
fn state_saved_before_restarts_resumes_without_them() {
    // A counts test as it was persisted before restarts existed.
    let old = r#"{"canary_share":0.5,"settings":{"alpha":0.05,"prior_strength":100.0,"alternative":"two-sided"},"control":10,"canary":25,"running":{"p_value":0.6,"rejected":false}}"#;
    let mut test: CountTest = serde_json::from_str(old).unwrap();
    assert!(!test.settings().restarts);
    assert_close(test.evidence().log_e_value, 0.690_598_238_1, 1e-9);
    test.observe(90, 125).unwrap();
    let e = test.evidence();
    assert_close(e.log_e_value, 2.965_838_877_7, 1e-9);
    assert_close(e.p_value, 0.051_517_234_5, 1e-9);
    let old = r#"{"settings":{"alpha":0.05,"tau":0.13,"variance":"unknown","alternative":"two-sided"},"control_queue":[],"canary_queue":[],"pairs":0,"mean":0.0,"m2":0.0,"running":{"p_value":1.0,"rejected":false}}"#;
    let means: MeanTest = serde_json::from_str(old).unwrap();
    assert!(!means.settings().restarts);
}

#[test]
fn the_band_gets_a_fifth_of_alpha_beside_the_tail() {
    let mut test = DistributionTest::new(DistributionSettings {
        alternative: Alternative::Greater,
        ..DistributionSettings::default()
    })
    .unwrap();
    let control: Vec<f64> = (1..=300).map(|i| f64::from(i) / 1000.0).collect();
    let canary: Vec<f64> = control.iter().map(|v| v * 1.3).collect();
    let (mut seen_both, mut lowest) = (false, 1.0f64);
    for _ in 0..10 {
        test.observe_control(&control).unwrap();
        test.observe_canary(&canary).unwrap();
        let e = test.check();
        let (band, tail) = (test.band_p_value(), test.tail_p_value());
        seen_both |= band < 1.0 && tail < 1.0;
        // The band's and the tail's p-values are running minima, and so is the combination.
        lowest = lowest.min((band / BAND_SHARE).min(tail / (1.0 - BAND_SHARE)));
        assert!(
            (e.p_value - lowest).abs() <= 1e-15,
            "{} vs {lowest}",
            e.p_value
        );
    }
    assert!(seen_both);
    // Without tail quantiles the band has all of alpha.
    let mut band_only = DistributionTest::new(DistributionSettings {
        tail_quantiles: Vec::new(),
        ..DistributionSettings::default()
    })
    .unwrap();
    band_only.observe_control(&control).unwrap();
    band_only.observe_canary(&canary).unwrap();
    let e = band_only.check();
    assert_eq!(e.p_value, band_only.band_p_value());
}
