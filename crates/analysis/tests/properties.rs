//! Properties that must hold for any input: p-values in [0, 1]; swapping the samples mirrors U
//! and the interval; permuting a sample changes nothing; NaN, infinities, empty arms, all-tied
//! and single-value arms give a defined label and never panic; the harness never panics on any
//! JSON.

// Exact values (U, scores, labels' numbers) are compared exactly on purpose; sample sizes
// and shuffle indices are small.
#![allow(
    clippy::float_cmp,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use cutover_analysis::harness::run_json;
use cutover_analysis::kayenta::{JudgeSettings, Label, MetricConfig, NanStrategy, classify};
use cutover_analysis::{
    Alternative, Method, fisher_exact, mann_whitney, shift_interval, welch_t_test,
};
use proptest::prelude::*;

fn sample(max: usize) -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        proptest::collection::vec(-1e3f64..1e3, 1..max),
        // Heavy ties.
        proptest::collection::vec((0i32..5).prop_map(f64::from), 1..max),
    ]
}

fn alternative() -> impl Strategy<Value = Alternative> {
    prop_oneof![
        Just(Alternative::TwoSided),
        Just(Alternative::Greater),
        Just(Alternative::Less)
    ]
}

/// Any f64, including NaN, ±∞, ±0 and huge values.
fn wild() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e6f64..1e6,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(1e300),
        1 => (0i32..3).prop_map(f64::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn p_values_are_probabilities_and_swapping_mirrors_u(
        x in sample(40), y in sample(40), alt in alternative(), cc in any::<bool>(),
    ) {
        let (m, n) = (x.len() as f64, y.len() as f64);
        let xy = mann_whitney(&x, &y, alt, Method::Asymptotic, cc).unwrap();
        prop_assert!((0.0..=1.0).contains(&xy.p_value), "{xy:?}");
        let mirrored = match alt {
            Alternative::TwoSided => Alternative::TwoSided,
            Alternative::Greater => Alternative::Less,
            Alternative::Less => Alternative::Greater,
        };
        let yx = mann_whitney(&y, &x, mirrored, Method::Asymptotic, cc).unwrap();
        prop_assert!((xy.u + yx.u - m * n).abs() < 1e-9);
        prop_assert!((xy.p_value - yx.p_value).abs() < 1e-12);
        if let Ok(exact) = mann_whitney(&x, &y, alt, Method::Exact, cc) {
            prop_assert!((0.0..=1.0).contains(&exact.p_value));
        }
    }

    #[test]
    fn permuting_changes_nothing(x in sample(60), y in sample(60), seed in any::<u64>()) {
        let mut px = x.clone();
        // A deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..px.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            px.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let a = mann_whitney(&x, &y, Alternative::TwoSided, Method::Auto, true).unwrap();
        let b = mann_whitney(&px, &y, Alternative::TwoSided, Method::Auto, true).unwrap();
        prop_assert_eq!(a, b);
        prop_assert_eq!(shift_interval(&x, &y, 0.95), shift_interval(&px, &y, 0.95));
        let settings = JudgeSettings::default();
        let c = MetricConfig::default();
        prop_assert_eq!(classify(&y, &x, &c, settings), classify(&y, &px, &c, settings));
    }

    #[test]
    fn swapping_mirrors_the_interval(x in sample(30), y in sample(30)) {
        match (shift_interval(&x, &y, 0.9), shift_interval(&y, &x, 0.9)) {
            (Ok(a), Ok(b)) => {
                // The roots are found to zeroin's tolerance (1e-4) from opposite ends.
                let tol = 2e-4 * (1.0 + a.lower.abs().max(a.upper.abs()));
                prop_assert!((a.lower + b.upper).abs() <= tol, "{a:?} {b:?}");
                prop_assert!((a.upper + b.lower).abs() <= tol, "{a:?} {b:?}");
                prop_assert!(a.lower <= a.upper);
            }
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "{a:?} vs {b:?}"),
        }
    }

    #[test]
    fn the_judge_always_gives_a_label(
        control in proptest::collection::vec(wild(), 0..30),
        experiment in proptest::collection::vec(wild(), 0..30),
        replace in any::<bool>(),
        remove_outliers in any::<bool>(),
        critical in any::<bool>(),
        must_have_data in any::<bool>(),
    ) {
        let mut config: MetricConfig = serde_json::from_value(serde_json::json!({
            "critical": critical, "mustHaveData": must_have_data,
            "outliers": {"strategy": if remove_outliers { "remove" } else { "keep" }},
        })).unwrap();
        if replace {
            config.nan_strategy = NanStrategy::Replace;
        }
        let c = classify(&control, &experiment, &config, JudgeSettings::default());
        let clean = |v: &[f64]| v.iter().filter(|x| replace || !x.is_nan()).count();
        if clean(&control) == 0 || clean(&experiment) == 0 {
            prop_assert!(matches!(c.label, Label::Nodata | Label::NodataFailMetric | Label::Pass));
        }
        if c.critical {
            prop_assert!(critical && matches!(c.label, Label::High | Label::Low | Label::Nodata));
        }
        if c.label == Label::NodataFailMetric {
            prop_assert!(must_have_data && !critical);
        }
    }

    #[test]
    fn other_tests_stay_in_range(
        a in 0u64..200, b in 0u64..200, c in 0u64..200, d in 0u64..200, alt in alternative(),
        x in proptest::collection::vec(-1e3f64..1e3, 2..30),
        y in proptest::collection::vec(-1e3f64..1e3, 2..30),
    ) {
        if let Ok(r) = fisher_exact([[a, b], [c, d]], alt) {
            prop_assert!((0.0..=1.0).contains(&r.p_value));
        }
        if let Ok(r) = welch_t_test(&x, &y) {
            prop_assert!((0.0..=1.0).contains(&r.p_value));
        }
    }

    #[test]
    fn the_harness_never_panics(s in ".{0,200}") {
        let _ = run_json(&s);
    }

    #[test]
    fn the_harness_never_panics_on_wild_numbers(
        op in prop_oneof![Just("mann_whitney"), Just("mw_ci"), Just("hodges_lehmann"), Just("classify"), Just("welch")],
        x in proptest::collection::vec(wild(), 0..12),
        y in proptest::collection::vec(wild(), 0..12),
    ) {
        let nums = |v: &[f64]| v.iter().map(|f| if f.is_finite() { f.to_string() } else { "1e999".into() }).collect::<Vec<_>>().join(",");
        let req = format!(
            r#"{{"op":"{op}","x":[{}],"y":[{}],"control":[{}],"experiment":[{}]}}"#,
            nums(&x), nums(&y), nums(&x), nums(&y)
        );
        let _ = run_json(&req);
    }
}

#[test]
fn degenerate_arms_have_defined_labels() {
    let s = JudgeSettings::default();
    let c = MetricConfig::default();
    assert_eq!(classify(&[], &[], &c, s).label, Label::Nodata);
    assert_eq!(classify(&[f64::NAN; 3], &[1.0], &c, s).label, Label::Nodata);
    assert_eq!(classify(&[5.0], &[5.0], &c, s).label, Label::Pass);
    assert_eq!(classify(&[5.0; 10], &[5.0; 3], &c, s).label, Label::Pass);
    assert_eq!(
        classify(&[1.0], &[f64::INFINITY], &c, s).label,
        Label::Error
    );
    assert_eq!(
        classify(&[f64::NEG_INFINITY, 1.0], &[2.0, 3.0], &c, s).label,
        Label::Error
    );
    // One value per arm, different: after the noise, W has no room to move and both interval
    // ends sit at the only difference, so Kayenta (like R) calls a single value High.
    assert_eq!(classify(&[1.0], &[2.0], &c, s).label, Label::High);
    assert!(mann_whitney(&[], &[1.0], Alternative::TwoSided, Method::Auto, true).is_err());
    assert!(
        mann_whitney(
            &[f64::NAN],
            &[1.0],
            Alternative::TwoSided,
            Method::Auto,
            true
        )
        .is_err()
    );
    let tied = mann_whitney(
        &[2.0; 5],
        &[2.0; 5],
        Alternative::TwoSided,
        Method::Asymptotic,
        true,
    );
    assert_eq!(tied.unwrap().p_value, 1.0);
    assert!(shift_interval(&[2.0; 5], &[2.0; 5], 0.95).is_err());
}
