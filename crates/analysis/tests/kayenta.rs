//! The Kayenta judge against ANALYSIS.md §5.2 (classifier vectors from `ClassifierSuite.scala`)
//! and §1.5 (scorer vectors from `ScorerSuite.scala`), the IQR detector vector, config parsing
//! and the labels of degenerate input.

// Exact values (U, scores, labels' numbers) are compared exactly on purpose.
#![allow(clippy::float_cmp)]

use std::collections::BTreeMap;

use cutover_analysis::kayenta::{
    CanaryConfig, Direction, EffectMeasure, EffectSize, JudgeSettings, Label, MetricConfig,
    NanStrategy, ScoreLabel, ScoreThresholds, ScoredMetric, classify, iqr_fences, score,
};

const TOL: JudgeSettings = JudgeSettings {
    tolerance: 0.1,
    conf_level: 0.95,
};

fn effect(ai: f64, ad: f64, ci: f64, cd: f64) -> EffectSize {
    EffectSize {
        measure: EffectMeasure::MeanRatio,
        allowed_increase: ai,
        allowed_decrease: ad,
        critical_increase: ci,
        critical_decrease: cd,
    }
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol
}

const C1: [f64; 5] = [1.0, 2.2, 1.1, 2.5, 3.0];
const E1: [f64; 5] = [20.0, 22.0, 21.0, 25.0, 30.0];

#[test]
fn classifier_suite_vectors() {
    // Row 1: allowed (0.8, 1.2) -> High; CI and estimate from R to the digits given.
    let mut config = MetricConfig {
        effect_size: effect(1.2, 0.8, 1.0, 1.0),
        ..MetricConfig::default()
    };
    let r = classify(&C1, &E1, &config, TOL);
    assert_eq!(r.label, Label::High);
    let [lo, hi] = r.ci.unwrap();
    assert!(
        close(lo, 17.800_043_85, 1e-7) && close(hi, 27.799_943_25, 1e-7),
        "{lo} {hi}"
    );
    assert!(close(r.estimate.unwrap(), 20.0, 2e-4));
    assert!(close(r.ratio.unwrap(), 12.0408, 1e-4));

    // Row 2: allowed (0.5, 1.0) -> Pass.
    config.effect_size = effect(1.0, 0.5, 1.0, 1.0);
    let r = classify(&E1, &[10.0, 12.2, 10.1, 12.5, 23.0], &config, TOL);
    assert_eq!(r.label, Label::Pass);
    let [lo, hi] = r.ci.unwrap();
    assert!(
        close(lo, -17.799_961_65, 1e-7) && close(hi, 0.999_947_798_6, 1e-7),
        "{lo} {hi}"
    );
    assert!(close(r.estimate.unwrap(), -10.78122, 2e-4));
    assert!(close(r.ratio.unwrap(), 0.5746, 1e-4));

    // Row 3: critical (1.2, 1.0), isCritical -> Low, critical.
    let config3 = MetricConfig {
        critical: true,
        effect_size: effect(1.0, 1.0, 1.2, 1.0),
        ..MetricConfig::default()
    };
    let r = classify(
        &[10.0, 20.2, 10.1, 20.5, 30.0],
        &[2.0, 2.0, 2.0, 2.0, 3.0],
        &config3,
        TOL,
    );
    assert_eq!((r.label, r.critical), (Label::Low, true));
    let [lo, hi] = r.ci.unwrap();
    assert!(
        close(lo, -27.999_942_06, 1e-7) && close(hi, -7.999_954_026, 1e-7),
        "{lo} {hi}"
    );
    assert!(close(r.estimate.unwrap(), -18.0751, 2e-4));

    // Row 4: allowed (1, 5), critical (1, 13), critical metric -> High, not critical.
    let config4 = MetricConfig {
        critical: true,
        effect_size: effect(5.0, 1.0, 13.0, 1.0),
        ..MetricConfig::default()
    };
    let r = classify(&C1, &E1, &config4, TOL);
    assert_eq!((r.label, r.critical), (Label::High, false));
    // Row 5: allowed (1, 13), critical (1, 15) -> Pass.
    let config5 = MetricConfig {
        effect_size: effect(13.0, 1.0, 15.0, 1.0),
        ..MetricConfig::default()
    };
    assert_eq!(classify(&C1, &E1, &config5, TOL).label, Label::Pass);
}

#[test]
fn direction_limits_the_labels() {
    let inc = MetricConfig {
        direction: Direction::Increase,
        ..MetricConfig::default()
    };
    let dec = MetricConfig {
        direction: Direction::Decrease,
        ..MetricConfig::default()
    };
    let s = JudgeSettings::default();
    assert_eq!(classify(&C1, &E1, &inc, s).label, Label::High);
    assert_eq!(classify(&C1, &E1, &dec, s).label, Label::Pass);
    assert_eq!(classify(&E1, &C1, &dec, s).label, Label::Low);
    assert_eq!(classify(&E1, &C1, &inc, s).label, Label::Pass);
}

#[test]
fn iqr_detector_vector() {
    let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0];
    let (lo, hi) = iqr_fences(&v, 3.0);
    assert!(
        close(lo, -10.25, 1e-12) && close(hi, 91.81, 1e-12),
        "{lo} {hi}"
    );
    let config: MetricConfig =
        serde_json::from_str(r#"{"outliers": {"strategy": "remove"}}"#).unwrap();
    let r = classify(&v, &v[..9], &config, JudgeSettings::default());
    assert_eq!(r.control.count, 9, "100 is removed from the control");
    assert_eq!(r.label, Label::Pass);
}

#[test]
fn no_data_and_degenerate_labels() {
    let s = JudgeSettings::default();
    let mut c = MetricConfig::default();
    assert_eq!(classify(&[], &[1.0], &c, s).label, Label::Nodata);
    assert_eq!(classify(&[f64::NAN], &[1.0], &c, s).label, Label::Nodata);
    c.must_have_data = true;
    assert_eq!(classify(&[1.0], &[], &c, s).label, Label::NodataFailMetric);
    c.critical = true;
    let r = classify(&[1.0], &[], &c, s);
    assert_eq!((r.label, r.critical), (Label::Nodata, true));
    c.nan_strategy = NanStrategy::Replace;
    let r = classify(&[], &[1.0], &c, s);
    assert_eq!((r.label, r.critical), (Label::Pass, false));
    let d = MetricConfig::default();
    assert_eq!(classify(&[2.0, 1.0], &[1.0, 2.0], &d, s).label, Label::Pass);
    assert_eq!(classify(&[3.0; 4], &[3.0; 9], &d, s).label, Label::Pass);
    // Two constant arms get noise and are then judged: 5 vs 3 is a clear increase.
    assert_eq!(classify(&[3.0; 20], &[5.0; 20], &d, s).label, Label::High);
    // A zero control gets no noise (sd 0) and has no mean ratio (NaN passes the effect gate).
    let r = classify(&[0.0; 20], &[5.0; 20], &d, s);
    assert_eq!((r.label, r.ratio), (Label::High, None));
    assert_eq!(
        classify(&[1.0, f64::INFINITY], &[1.0, 2.0], &d, s).label,
        Label::Error
    );
    // NaN replaced by zero.
    let r = classify(
        &[1.0, f64::NAN],
        &[1.0, 0.0],
        &MetricConfig {
            nan_strategy: NanStrategy::Replace,
            ..d
        },
        s,
    );
    assert_eq!(r.label, Label::Pass);
}

#[test]
fn parses_a_real_canary_config() {
    let json = r#"{
      "applications": ["app"], "configVersion": "1", "createdTimestamp": 1, "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
      "name": "cfg", "templates": {},
      "metrics": [
        {"name": "errors", "query": {"type": "prometheus", "metricName": "x"}, "groups": ["g1"], "scopeName": "default",
         "analysisConfigurations": {"canary": {"direction": "increase", "nanStrategy": "replace", "critical": true,
           "mustHaveData": true, "effectSize": {"measure": "cles", "allowedIncrease": 0.6},
           "outliers": {"strategy": "remove", "outlierFactor": 2.5}}}},
        {"name": "cpu", "query": {}, "groups": ["g2"], "analysisConfigurations": {"canary": {"direction": "sideways"}}}
      ],
      "classifier": {"groupWeights": {"g1": 70, "g2": 30}, "scoreThresholds": {"pass": 90, "marginal": 60}}
    }"#;
    let config = CanaryConfig::from_json(json).unwrap();
    let c = config.metrics[0].analysis_configurations.canary;
    assert_eq!(c.direction, Direction::Increase);
    assert_eq!(c.nan_strategy, NanStrategy::Replace);
    assert!(c.critical && c.must_have_data && c.outliers.remove);
    assert_eq!(c.outliers.outlier_factor, 2.5);
    assert_eq!(c.effect_size.measure, EffectMeasure::Cles);
    assert_eq!(
        (
            c.effect_size.allowed_increase,
            c.effect_size.allowed_decrease
        ),
        (0.6, 0.5)
    );
    assert_eq!(
        config.metrics[1].analysis_configurations.canary.direction,
        Direction::Either
    );
    assert_eq!(config.classifier.group_weights["g1"], 70.0);
    assert_eq!(config.classifier.score_thresholds.unwrap().pass, 90.0);
    let err = CanaryConfig::from_json(r#"{"metrics": [{"groups": []}]}"#).unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
}

fn m(label: Label, critical: bool, groups: &[&str]) -> ScoredMetric {
    ScoredMetric {
        name: format!("{label}"),
        label,
        critical,
        muted: false,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

#[test]
fn scorer_suite_vectors() {
    use Label::{High, Low, Nodata, Pass};
    let none = BTreeMap::new();
    let w = |a: f64, b: f64| BTreeMap::from([("g1".to_owned(), a), ("g2".to_owned(), b)]);
    let t = ScoreThresholds::default();
    let cases: Vec<(Vec<ScoredMetric>, BTreeMap<String, f64>, f64)> = vec![
        (
            vec![m(Pass, false, &["g1"]), m(High, false, &["g1"])],
            none.clone(),
            50.0,
        ),
        (
            vec![
                m(Pass, false, &["g1"]),
                m(High, false, &["g1"]),
                m(Low, false, &["g1"]),
            ],
            none.clone(),
            33.33,
        ),
        (
            vec![
                m(Pass, false, &["g1"]),
                m(Pass, false, &["g1"]),
                m(High, false, &["g2"]),
            ],
            w(75.0, 25.0),
            75.0,
        ),
        (
            vec![
                m(Pass, false, &["g1"]),
                m(High, false, &["g1"]),
                m(High, false, &["g2"]),
            ],
            w(50.0, 50.0),
            25.0,
        ),
        (
            vec![
                m(Pass, false, &["g1"]),
                m(Nodata, false, &["g1"]),
                m(High, false, &["g2"]),
            ],
            w(50.0, 50.0),
            50.0,
        ),
        (
            vec![m(Pass, false, &["g1"]), m(High, true, &["g1"])],
            none.clone(),
            0.0,
        ),
        (
            vec![m(Low, false, &["g1"]), m(Pass, true, &["g1"])],
            none.clone(),
            50.0,
        ),
        (
            vec![m(Pass, false, &["g1"]), m(Nodata, true, &["g1"])],
            none.clone(),
            0.0,
        ),
        (vec![m(Nodata, false, &["g1"])], none.clone(), 0.0),
        (
            vec![
                m(High, false, &["g1"]),
                m(Low, false, &["g1"]),
                m(Pass, false, &["g1"]),
                m(High, false, &["g2"]),
            ],
            w(15.0, 85.0),
            5.0,
        ),
    ];
    for (i, (results, weights, want)) in cases.iter().enumerate() {
        let s = score(results, weights, t);
        assert_eq!(s.score, *want, "case {i}: {s:?}");
    }
    // Muted metrics are not scored; labels follow the thresholds.
    let mut muted = m(High, true, &["g1"]);
    muted.muted = true;
    let s = score(&[m(Pass, false, &["g1"]), muted], &none, t);
    assert_eq!((s.score, s.label), (100.0, ScoreLabel::Pass));
    let s = score(
        &[
            m(Pass, false, &["g1"]),
            m(Pass, false, &["g1"]),
            m(Pass, false, &["g1"]),
            m(High, false, &["g1"]),
        ],
        &none,
        ScoreThresholds {
            pass: 80.0,
            marginal: 75.0,
        },
    );
    assert_eq!((s.score, s.label), (75.0, ScoreLabel::Marginal));
}
