//! The reference vectors of ANALYSIS.md §5 (SciPy 1.17.1 and R 4.2.2): Mann-Whitney p-values
//! to 1e-9 relative, R's exact Hodges-Lehmann intervals, and the asymptotic (Kayenta) intervals
//! and estimates to the step tolerance §1.4 explains.

// Exact values (U, scores, labels' numbers) are compared exactly on purpose.
#![allow(clippy::float_cmp)]

use cutover_analysis::{Alternative, Method, hodges_lehmann, mann_whitney, shift_interval};

struct Case {
    id: &'static str,
    x: &'static [f64],
    y: &'static [f64],
    u: f64,
    exact: Option<f64>,
    cc: f64,
    no_cc: f64,
    hl: Option<(f64, f64, f64)>,
    ci95: (f64, f64),
    ci98: (f64, f64),
    est: f64,
}

const CASES: &[Case] = &[
    Case {
        id: "MW1",
        x: &[19.0, 22.0, 16.0, 29.0, 24.0],
        y: &[20.0, 11.0, 17.0, 12.0],
        u: 17.0,
        exact: Some(0.111_111_111_111_111_1),
        cc: 0.111_346_886_533_140_41,
        no_cc: 0.086_410_732_973_7,
        hl: Some((7.0, -1.0, 17.0)),
        ci95: (-1.000_073_013, 17.000_033_11),
        ci98: (-4.0, 18.0),
        est: 7.0,
    },
    Case {
        id: "MW2",
        x: &[0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46],
        y: &[1.15, 0.88, 0.90, 0.74, 1.21],
        u: 35.0,
        exact: Some(0.254_412_254_412_254_4),
        cc: 0.244_623_605_126_983_33,
        no_cc: 0.220_671_361_919_846_93,
        hl: Some((0.305, -0.15, 0.76)),
        ci95: (-0.150_014_837_2, 0.759_942_765_3),
        ci98: (-0.319_997_213_2, 0.989_946_182_1),
        est: 0.300_148_676_9,
    },
    Case {
        id: "MW3",
        x: &[1.0, 2.0, 3.0],
        y: &[4.0, 5.0, 6.0],
        u: 0.0,
        exact: Some(0.1),
        cc: 0.080_855_598_370_052_24,
        no_cc: 0.049_534_613_435_626_706,
        hl: Some((-3.0, -5.0, -1.0)),
        ci95: (-5.0, -1.0),
        ci98: (-5.0, -1.0),
        est: -3.0,
    },
    Case {
        id: "MW6",
        x: &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0],
        y: &[2.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 7.0],
        u: 13.5,
        exact: None,
        cc: 0.054_640_954_732_943_13,
        no_cc: 0.048_256_633_514_121_48,
        hl: None,
        ci95: (-3.000_006_315, 6.187_142_756e-6),
        ci98: (-3.999_974_661, 4.357_621_941e-5),
        est: -1.999_979_003,
    },
    Case {
        id: "MW8",
        x: &[12.1, 14.3, 11.8, 15.2, 13.7, 12.9, 16.4, 13.1, 14.8, 12.5],
        y: &[10.2, 11.9, 10.8, 12.4, 9.7, 11.1, 13.0, 10.5, 12.2, 11.6],
        u: 91.0,
        exact: Some(0.001_050_033_557_773_496),
        cc: 0.002_202_219_942_497_078_3,
        no_cc: 0.001_939_728_112_903_040_8,
        hl: Some((2.25, 1.0, 3.6)),
        ci95: (0.999_925_267_1, 3.599_988_541),
        ci98: (0.699_997_631_8, 4.000_040_437),
        est: 2.259_926_26,
    },
    Case {
        id: "MW10",
        x: &[
            0.31, 0.42, 0.27, 0.55, 0.38, 0.61, 0.45, 0.33, 0.49, 0.58, 0.36, 0.52, 0.40, 0.47,
            0.29, 0.63, 0.44, 0.35, 0.51, 0.39, 0.57, 0.43, 0.30, 0.54, 0.46,
        ],
        y: &[
            0.28, 0.34, 0.25, 0.41, 0.32, 0.37, 0.26, 0.43, 0.31, 0.35, 0.29, 0.39, 0.24, 0.36,
            0.33, 0.40, 0.27, 0.38, 0.30, 0.22, 0.42, 0.23, 0.44, 0.21, 0.37, 0.19, 0.46, 0.20,
            0.48, 0.18,
        ],
        u: 601.0,
        exact: None,
        cc: 1.374_694_944_734_317e-4,
        no_cc: 1.328_409_396_882_190_4e-4,
        hl: None,
        ci95: (0.060_059_378_06, 0.179_985_589_1),
        ci98: (0.050_004_735_59, 0.189_940_941_9),
        est: 0.119_910_614_1,
    },
];

/// p-values are SciPy 1.17.1's full-precision values for the §5 vectors (the table in
/// ANALYSIS.md rounds them to 10 digits).
fn rel(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1e-300)
}

#[test]
fn mann_whitney_p_values_match_scipy_and_r() {
    for c in CASES {
        let r = mann_whitney(c.x, c.y, Alternative::TwoSided, Method::Asymptotic, true).unwrap();
        assert_eq!(r.u, c.u, "{} U", c.id);
        assert!(
            rel(r.p_value, c.cc, 1e-9),
            "{} cc {} vs {}",
            c.id,
            r.p_value,
            c.cc
        );
        let r = mann_whitney(c.x, c.y, Alternative::TwoSided, Method::Asymptotic, false).unwrap();
        assert!(
            rel(r.p_value, c.no_cc, 1e-9),
            "{} no-cc {} vs {}",
            c.id,
            r.p_value,
            c.no_cc
        );
        if let Some(p) = c.exact {
            let r = mann_whitney(c.x, c.y, Alternative::TwoSided, Method::Exact, true).unwrap();
            assert!(
                rel(r.p_value, p, 1e-9),
                "{} exact {} vs {p}",
                c.id,
                r.p_value
            );
        } else {
            assert!(mann_whitney(c.x, c.y, Alternative::TwoSided, Method::Exact, true).is_err());
        }
    }
    let mw2 = &CASES[1];
    let g = mann_whitney(mw2.x, mw2.y, Alternative::Greater, Method::Exact, true).unwrap();
    assert!(
        rel(g.p_value, 0.127_206_127_206_127_2, 1e-9),
        "{}",
        g.p_value
    );
}

#[test]
fn exact_hodges_lehmann_matches_r() {
    for c in CASES {
        let Some((est, lo, hi)) = c.hl else { continue };
        let r = hodges_lehmann(c.x, c.y, 0.95).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(
            close(r.estimate, est),
            "{} est {} vs {est}",
            c.id,
            r.estimate
        );
        assert!(close(r.lower, lo) && close(r.upper, hi), "{} {r:?}", c.id);
    }
}

/// §1.4: zeroin ported verbatim lands where R lands; the table gives 10 digits.
#[test]
fn asymptotic_interval_matches_kayenta_and_r() {
    for c in CASES {
        for (conf, (lo, hi)) in [(0.95, c.ci95), (0.98, c.ci98)] {
            let r = shift_interval(c.x, c.y, conf).unwrap();
            let tol = 1e-8 * lo.abs().max(hi.abs()).max(1.0);
            assert!(
                (r.lower - lo).abs() <= tol,
                "{} {conf} lower {} vs {lo}",
                c.id,
                r.lower
            );
            assert!(
                (r.upper - hi).abs() <= tol,
                "{} {conf} upper {} vs {hi}",
                c.id,
                r.upper
            );
            let tol = 1e-8 * c.est.abs().max(1.0);
            assert!(
                (r.estimate - c.est).abs() <= tol,
                "{} est {} vs {}",
                c.id,
                r.estimate,
                c.est
            );
        }
    }
}

/// Two constant samples: every pairwise difference is the same d, so the interval is the point
/// d, mirrored when the samples are swapped; equal constants are all tied. Found by the
/// property test `swapping_mirrors_the_interval`: `-24.23… − 901.13…` does not round back to
/// `-925.37…`, so one direction used to see no tie and the other an all-tied error.
#[test]
fn constant_samples_give_a_point_interval_both_ways() {
    let x = [-24.232_595_900_375_41];
    let y = [-925.370_996_655_965_5];
    let d = x[0] - y[0];
    let xy = shift_interval(&x, &y, 0.9).unwrap();
    let yx = shift_interval(&y, &x, 0.9).unwrap();
    assert_eq!((xy.lower, xy.upper, xy.estimate), (d, d, d));
    assert_eq!((yx.lower, yx.upper, yx.estimate), (-d, -d, -d));
    let xy = shift_interval(&[2.0, 2.0], &[1.0; 3], 0.9).unwrap();
    assert_eq!((xy.lower, xy.upper, xy.estimate), (1.0, 1.0, 1.0));
    assert!(matches!(
        shift_interval(&[5.0; 2], &[5.0; 3], 0.9),
        Err(cutover_analysis::AnalysisError::AllTied)
    ));
}
