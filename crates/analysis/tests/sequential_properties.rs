//! Property tests of the sequential tests: p-values in [0, 1] and non-increasing, sticky
//! rejection, confidence sequences that contain the estimate, mirror symmetry when the arms are
//! swapped, order-independence within a check, and no panic on any input.

use cutover_analysis::Alternative;
use cutover_analysis::harness::run_json;
use cutover_analysis::sequential::{
    CountSettings, CountTest, DistributionSettings, DistributionTest, Evidence, MeanSettings,
    MeanTest, ObservedShareCountTest,
};
use proptest::prelude::*;

fn alternative() -> impl Strategy<Value = Alternative> {
    prop_oneof![
        Just(Alternative::TwoSided),
        Just(Alternative::Greater),
        Just(Alternative::Less)
    ]
}

/// The invariants every evidence sequence keeps.
fn check_sequence(history: &[Evidence], alpha: f64) -> Result<(), TestCaseError> {
    let mut previous: Option<&Evidence> = None;
    for e in history {
        prop_assert!((0.0..=1.0).contains(&e.p_value), "{e:?}");
        prop_assert_eq!(
            e.rejected,
            previous.is_some_and(|p| p.rejected) || e.p_value <= alpha
        );
        if let Some(p) = previous {
            prop_assert!(e.p_value <= p.p_value, "{p:?} -> {e:?}");
        }
        prop_assert!(e.lower <= e.upper, "{e:?}");
        if e.estimate.is_finite() {
            prop_assert!(e.lower <= e.estimate && e.estimate <= e.upper, "{e:?}");
        }
        previous = Some(e);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn counts_p_values_and_intervals(
        steps in prop::collection::vec((0u64..40, 0u64..40), 1..40),
        share in 0.05f64..0.95,
        k in 0.5f64..200.0,
        alternative in alternative(),
        restarts in any::<bool>(),
    ) {
        let settings = CountSettings { alpha: 0.05, prior_strength: k, alternative, restarts };
        let mut test = CountTest::new(share, settings).unwrap();
        let mut history = Vec::new();
        for &(c, t) in &steps {
            test.observe(c, t).unwrap();
            history.push(test.evidence());
        }
        check_sequence(&history, 0.05)?;
    }

    #[test]
    fn counts_swapping_arms_mirrors_the_test(
        steps in prop::collection::vec((0u64..30, 0u64..30), 1..30),
        share in 0.05f64..0.95,
        k in 1.0f64..100.0,
    ) {
        let two = CountSettings { prior_strength: k, ..CountSettings::default() };
        let greater = CountSettings { alternative: Alternative::Greater, ..two };
        let less = CountSettings { alternative: Alternative::Less, ..two };
        let mut a = CountTest::new(share, two).unwrap();
        let mut b = CountTest::new(1.0 - share, two).unwrap();
        let mut g = CountTest::new(share, greater).unwrap();
        let mut l = CountTest::new(1.0 - share, less).unwrap();
        for &(c, t) in &steps {
            a.observe(c, t).unwrap();
            b.observe(t, c).unwrap();
            g.observe(c, t).unwrap();
            l.observe(t, c).unwrap();
            let (ea, eb) = (a.evidence(), b.evidence());
            prop_assert!((ea.log_e_value - eb.log_e_value).abs() <= 1e-9 * (1.0 + ea.log_e_value.abs()));
            prop_assert!((ea.p_value - eb.p_value).abs() <= 1e-12 + 1e-9 * ea.p_value);
            // The rate ratio of the mirrored test is the reciprocal.
            // (Where the bound is astronomically large, θ sits within 1e-12 of 1 and the
            // reciprocal loses digits.)
            if ea.upper < 1e6 && eb.lower > 1e-6 {
                prop_assert!((ea.upper * eb.lower - 1.0).abs() < 1e-6, "{ea:?} {eb:?}");
            }
            let (eg, el) = (g.evidence(), l.evidence());
            prop_assert!((eg.log_e_value - el.log_e_value).abs() <= 1e-9 * (1.0 + eg.log_e_value.abs()));
        }
    }

    #[test]
    fn observed_share_p_values_and_intervals(
        windows in prop::collection::vec((0u64..20, 0u64..20, 20u64..200, 20u64..200), 1..25),
        alternative in alternative(),
    ) {
        let settings = CountSettings { alternative, ..CountSettings::default() };
        let mut test = ObservedShareCountTest::new(0.5, settings).unwrap();
        let mut history = Vec::new();
        for &(ec, et, nc, nt) in &windows {
            test.observe_window(ec, et, nc, nt).unwrap();
            history.push(test.evidence());
        }
        check_sequence(&history, 0.05)?;
    }

    #[test]
    fn distribution_order_within_a_check_does_not_matter(
        checks in prop::collection::vec(
            (prop::collection::vec(0.0f64..10.0, 0..30), prop::collection::vec(0.0f64..10.0, 0..30)),
            1..8,
        ),
        alternative in alternative(),
    ) {
        let edges: Vec<f64> = (1..60).map(|i| f64::from(i) * 0.2).collect();
        let settings = DistributionSettings { alternative, edges, ..DistributionSettings::default() };
        let mut a = DistributionTest::new(settings.clone()).unwrap();
        let mut b = DistributionTest::new(settings).unwrap();
        let mut history = Vec::new();
        for (control, canary) in &checks {
            a.observe_control(control).unwrap();
            a.observe_canary(canary).unwrap();
            // b: canary first, reversed, one value at a time interleaved with control.
            for v in canary.iter().rev() {
                b.observe_canary(&[*v]).unwrap();
            }
            for v in control.iter().rev() {
                b.observe_control(&[*v]).unwrap();
            }
            let (ea, eb) = (a.check(), b.check());
            // Debug text, so that NaN estimates (no data yet) compare equal.
            prop_assert_eq!(format!("{ea:?}"), format!("{eb:?}"));
            history.push(ea);
        }
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        check_sequence(&history, 0.05)?;
    }

    #[test]
    fn distribution_two_sided_band_is_symmetric_in_the_arms(
        checks in prop::collection::vec(
            (prop::collection::vec(0.0f64..10.0, 1..30), prop::collection::vec(0.0f64..10.0, 1..30)),
            1..8,
        ),
    ) {
        let edges: Vec<f64> = (1..60).map(|i| f64::from(i) * 0.2).collect();
        let settings = DistributionSettings { edges, ..DistributionSettings::default() };
        let mut a = DistributionTest::new(settings.clone()).unwrap();
        let mut b = DistributionTest::new(settings).unwrap();
        for (control, canary) in &checks {
            a.observe_control(control).unwrap();
            a.observe_canary(canary).unwrap();
            b.observe_control(canary).unwrap();
            b.observe_canary(control).unwrap();
            // The band is symmetric; the tail e-process is not (its thresholds are the
            // control's quantiles), so only the band's p-value mirrors.
            a.check();
            b.check();
            prop_assert!((a.band_p_value() - b.band_p_value()).abs() <= 1e-12);
        }
    }

    #[test]
    fn means_p_values_intervals_and_mirror(
        pairs in prop::collection::vec((-5.0f64..5.0, -5.0f64..5.0), 1..120),
        tau in 0.01f64..3.0,
    ) {
        let settings = MeanSettings { tau, ..MeanSettings::default() };
        let mut a = MeanTest::new(settings).unwrap();
        let mut b = MeanTest::new(settings).unwrap();
        let mut history = Vec::new();
        for &(c, t) in &pairs {
            a.observe_control(&[c]).unwrap();
            a.observe_canary(&[t]).unwrap();
            b.observe_control(&[t]).unwrap();
            b.observe_canary(&[c]).unwrap();
            let (ea, eb) = (a.evidence(), b.evidence());
            prop_assert!((ea.p_value - eb.p_value).abs() <= 1e-9);
            if ea.estimate.is_finite() {
                prop_assert!((ea.estimate + eb.estimate).abs() <= 1e-9);
            }
            history.push(ea);
        }
        check_sequence(&history, 0.05)?;
    }

    #[test]
    fn bad_values_never_panic(
        values in prop::collection::vec(prop_oneof![
            Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-0.0),
            Just(-1.0), Just(f64::MAX), Just(f64::MIN_POSITIVE), any::<f64>()
        ], 0..20),
    ) {
        let mut d = DistributionTest::new(DistributionSettings::default()).unwrap();
        let ok = d.observe_control(&values).is_ok();
        prop_assert_eq!(ok, values.iter().all(|v| !v.is_nan() && *v >= 0.0));
        let _ = d.observe_canary(&values);
        let e = d.check();
        prop_assert!((0.0..=1.0).contains(&e.p_value));
        let mut m = MeanTest::new(MeanSettings::default()).unwrap();
        let ok = m.observe_control(&values).is_ok();
        prop_assert_eq!(ok, values.iter().all(|v| v.is_finite() && v.abs() <= 1e100));
        let _ = m.observe_canary(&values);
        prop_assert!((0.0..=1.0).contains(&m.evidence().p_value));
    }

    #[test]
    fn harness_sequential_ops_never_panic(
        counts in prop::collection::vec((0u64..1000, 0u64..1000), 0..10),
        split in (-1.0f64..2.0, -1.0f64..2.0),
        alpha in -0.5f64..1.5,
        k in -5.0f64..500.0,
    ) {
        let request = serde_json::json!({
            "op": "sequential_counts",
            "counts": counts.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
            "split": [split.0, split.1],
            "alpha": alpha,
            "prior_strength": k,
        });
        let result = run_json(&request.to_string());
        let valid = split.0 > 0.0 && split.1 > 0.0 && alpha > 0.0 && alpha < 1.0 && k > 0.0
            && counts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
        prop_assert_eq!(result.is_ok(), valid, "{:?}", result);
    }

    #[test]
    fn harness_stationary_counts_never_panics(
        checks in prop::collection::vec(((0u64..50, 0u64..50), (0u64..100, 0u64..100)), 0..10),
        alpha in -0.5f64..1.5,
    ) {
        let errors: Vec<[u64; 2]> = checks.iter().map(|((a, b), _)| [*a, *b]).collect();
        let requests: Vec<[u64; 2]> = checks.iter().map(|(_, (a, b))| [*a, *b]).collect();
        let request = serde_json::json!({
            "op": "sequential_stationary_counts",
            "errors": errors,
            "requests": requests,
            "alpha": alpha,
        });
        let result = run_json(&request.to_string());
        let increments = |v: &[[u64; 2]]| -> Option<Vec<[u64; 2]>> {
            let mut last = [0, 0];
            v.iter()
                .map(|p| {
                    let step = [p[0].checked_sub(last[0])?, p[1].checked_sub(last[1])?];
                    last = *p;
                    Some(step)
                })
                .collect()
        };
        let valid = alpha > 0.0
            && alpha < 1.0
            && match (increments(&errors), increments(&requests)) {
                (Some(e), Some(n)) => e.iter().zip(&n).all(|(e, n)| e[0] <= n[0] && e[1] <= n[1]),
                _ => false,
            };
        prop_assert_eq!(result.is_ok(), valid, "{:?}", result);
        if let Ok(text) = result {
            let out: serde_json::Value = serde_json::from_str(&text).unwrap();
            let p = out["p_values"].as_array().unwrap();
            prop_assert_eq!(p.len(), checks.len());
            prop_assert!(p.iter().all(|p| (0.0..=1.0).contains(&p.as_f64().unwrap())));
        }
    }
}
