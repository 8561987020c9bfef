//! The JSON request/response harness behind `examples/analyze.rs`, so other implementations
//! (SciPy, R, Kayenta) can be cross-checked against this crate. The format is documented in
//! the crate README.
//!
//! Requests are a serde enum tagged by `op`; adding an op is adding a variant and a match arm.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::kayenta::{
    CanaryConfig, JudgeSettings, MetricConfig, MetricData, ScoreThresholds, ScoredMetric, classify,
    judge, score,
};
use crate::sequential::{
    CountSettings, CountTest, DistributionSettings, DistributionTest, StationaryCountSettings,
    StationaryCountTest,
};
use crate::{
    Alternative, AnalysisError, Method, PowerSettings, chi_square_2x2, fisher_exact,
    hodges_lehmann, mann_whitney, power_normal, power_two_proportions, sample_size_normal,
    sample_size_two_proportions, shift_interval, welch_t_test,
};

fn conf_95() -> f64 {
    0.95
}
fn tolerance() -> f64 {
    JudgeSettings::default().tolerance
}
fn conf_98() -> f64 {
    JudgeSettings::default().conf_level
}
fn alpha() -> f64 {
    0.05
}
fn one() -> f64 {
    1.0
}
fn prior_strength() -> f64 {
    crate::sequential::DEFAULT_PRIOR_STRENGTH
}
fn yes() -> bool {
    true
}

/// One request to the harness.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Request {
    /// [`mann_whitney`] → `{"u", "p_value", "exact"}`.
    MannWhitney {
        /// First sample.
        x: Vec<f64>,
        /// Second sample.
        y: Vec<f64>,
        /// Alternative (default two-sided).
        #[serde(default)]
        alternative: Alternative,
        /// `auto` (default), `exact` or `asymptotic`.
        #[serde(default)]
        method: Method,
        /// Continuity correction (default true).
        #[serde(default = "yes")]
        continuity: bool,
    },
    /// [`shift_interval`] (Kayenta / R asymptotic) → `{"lower", "upper", "estimate"}`.
    MwCi {
        /// First sample (canary).
        x: Vec<f64>,
        /// Second sample (baseline).
        y: Vec<f64>,
        /// Confidence level (default 0.95).
        #[serde(default = "conf_95")]
        conf_level: f64,
    },
    /// [`hodges_lehmann`] (R exact) → `{"lower", "upper", "estimate"}`.
    HodgesLehmann {
        /// First sample.
        x: Vec<f64>,
        /// Second sample.
        y: Vec<f64>,
        /// Confidence level (default 0.95).
        #[serde(default = "conf_95")]
        conf_level: f64,
    },
    /// [`classify`] → `{"label", "critical", "ci", "estimate", "deviation", ...}`.
    Classify {
        /// Baseline values.
        control: Vec<f64>,
        /// Canary values.
        experiment: Vec<f64>,
        /// Kayenta's `analysisConfigurations.canary` object.
        #[serde(default)]
        config: MetricConfig,
        /// Default 0.25.
        #[serde(default = "tolerance")]
        tolerance: f64,
        /// Default 0.98.
        #[serde(default = "conf_98")]
        conf_level: f64,
    },
    /// [`score`] → `{"score", "label", "groups", "reason"}`.
    Score {
        /// Classified metrics.
        results: Vec<ScoredMetric>,
        /// Group weights in percent.
        #[serde(default)]
        group_weights: BTreeMap<String, f64>,
        /// Pass threshold.
        pass: f64,
        /// Marginal threshold.
        marginal: f64,
    },
    /// [`judge`] on a whole canary config → every metric's classification and the score.
    Judge {
        /// A Kayenta canary config.
        config: CanaryConfig,
        /// Data by metric name.
        data: BTreeMap<String, MetricData>,
        /// Thresholds (default: the config's, else 95 / 75).
        #[serde(default)]
        thresholds: Option<ScoreThresholds>,
    },
    /// [`fisher_exact`] → `{"p_value", "odds_ratio"}`.
    Fisher {
        /// `[[a, b], [c, d]]`.
        table: [[u64; 2]; 2],
        /// Alternative (default two-sided).
        #[serde(default)]
        alternative: Alternative,
    },
    /// [`chi_square_2x2`] → `{"statistic", "p_value"}`.
    ChiSquare {
        /// `[[a, b], [c, d]]`.
        table: [[u64; 2]; 2],
        /// Yates' correction (default true, as SciPy).
        #[serde(default = "yes")]
        correction: bool,
    },
    /// [`welch_t_test`] → `{"t", "df", "p_value"}` (two-sided).
    Welch {
        /// First sample.
        x: Vec<f64>,
        /// Second sample.
        y: Vec<f64>,
    },
    /// [`power_two_proportions`] → `{"power"}`.
    PowerProportions {
        /// First group's rate.
        p1: f64,
        /// Second group's rate.
        p2: f64,
        /// First group's size.
        n1: f64,
        /// Default 0.05.
        #[serde(default = "alpha")]
        alpha: f64,
        /// `n2 / n1`, default 1.
        #[serde(default = "one")]
        ratio: f64,
        /// Default two-sided.
        #[serde(default)]
        alternative: Alternative,
    },
    /// [`sample_size_two_proportions`] → `{"n1", "n2"}` (fractional; round up).
    SampleSizeProportions {
        /// First group's rate.
        p1: f64,
        /// Second group's rate.
        p2: f64,
        /// Target power.
        power: f64,
        /// Default 0.05.
        #[serde(default = "alpha")]
        alpha: f64,
        /// `n2 / n1`, default 1.
        #[serde(default = "one")]
        ratio: f64,
        /// Default two-sided.
        #[serde(default)]
        alternative: Alternative,
    },
    /// [`power_normal`] for a standardized difference of means → `{"power"}`.
    PowerMeans {
        /// Cohen's d.
        effect_size: f64,
        /// First group's size.
        n1: f64,
        /// Default 0.05.
        #[serde(default = "alpha")]
        alpha: f64,
        /// `n2 / n1`, default 1.
        #[serde(default = "one")]
        ratio: f64,
        /// Default two-sided.
        #[serde(default)]
        alternative: Alternative,
    },
    /// [`sample_size_normal`] for a standardized difference of means → `{"n1", "n2"}`.
    SampleSizeMeans {
        /// Cohen's d.
        effect_size: f64,
        /// Target power.
        power: f64,
        /// Default 0.05.
        #[serde(default = "alpha")]
        alpha: f64,
        /// `n2 / n1`, default 1.
        #[serde(default = "one")]
        ratio: f64,
        /// Default two-sided.
        #[serde(default)]
        alternative: Alternative,
    },
    /// [`CountTest`] fed cumulative event counts per check →
    /// `{"p_values", "first_rejection"}`.
    SequentialCounts {
        /// Cumulative `[control, canary]` event counts, one pair per check (non-decreasing).
        counts: Vec<[u64; 2]>,
        /// Traffic split `[control, canary]`, positive (normalised to shares).
        split: [f64; 2],
        /// Default 0.05.
        #[serde(default = "alpha")]
        alpha: f64,
        /// Dirichlet prior strength `k` (default
        /// [`DEFAULT_PRIOR_STRENGTH`](crate::sequential::DEFAULT_PRIOR_STRENGTH)).
        #[serde(default = "prior_strength")]
        prior_strength: f64,
        /// Restarted e-processes for late onsets (default true, as the library).
        #[serde(default = "yes")]
        restarts: bool,
        /// Default two-sided.
        #[serde(default)]
        alternative: Alternative,
    },
    /// [`StationaryCountTest`] fed cumulative errors and requests per check →
    /// `{"p_values", "first_rejection"}`.
    SequentialStationaryCounts {
        /// Cumulative `[control, canary]` errors, one pair per check (non-decreasing).
        errors: Vec<[u64; 2]>,
        /// Cumulative `[control, canary]` requests, one pair per check (non-decreasing, as
        /// many as `errors`, never fewer than the errors).
        requests: Vec<[u64; 2]>,
        /// Default 0.05.
        #[serde(default = "alpha")]
        alpha: f64,
        /// Restarted e-processes for late onsets (default true, as the library).
        #[serde(default = "yes")]
        restarts: bool,
    },
    /// [`DistributionTest`] fed new values per check →
    /// `{"p_values", "first_rejection"}`.
    SequentialDistribution {
        /// New control values, one list per check.
        control: Vec<Vec<f64>>,
        /// New canary values, one list per check (as many as `control`).
        canary: Vec<Vec<f64>>,
        /// Default 0.05.
        #[serde(default = "alpha")]
        alpha: f64,
        /// Default two-sided.
        #[serde(default)]
        alternative: Alternative,
        /// Also run the exceedance test (stationary null; default false, as the library).
        #[serde(default)]
        stationary: bool,
    },
}

/// The `{"p_values", "first_rejection"}` answer of the sequential ops.
fn sequential_answer(p_values: &[f64], alpha: f64) -> Value {
    let first = p_values.iter().position(|&p| p <= alpha);
    json!({ "p_values": p_values, "first_rejection": first })
}

fn sequential_counts(
    counts: &[[u64; 2]],
    split: [f64; 2],
    settings: CountSettings,
) -> Result<Value, AnalysisError> {
    if !split.iter().all(|s| *s > 0.0 && s.is_finite()) {
        return Err(AnalysisError::Invalid(format!(
            "split must hold two positive finite weights, got {split:?}"
        )));
    }
    let mut test = CountTest::new(split[1] / (split[0] + split[1]), settings)?;
    let mut p_values = Vec::with_capacity(counts.len());
    for [control, canary] in increments("counts", counts)? {
        test.observe(control, canary)?;
        p_values.push(test.evidence().p_value);
    }
    Ok(sequential_answer(&p_values, settings.alpha))
}

/// The increments of cumulative `[control, canary]` pairs, refused when one falls.
fn increments(name: &str, cumulative: &[[u64; 2]]) -> Result<Vec<[u64; 2]>, AnalysisError> {
    let mut last = [0u64; 2];
    let mut out = Vec::with_capacity(cumulative.len());
    for (i, &pair) in cumulative.iter().enumerate() {
        if pair[0] < last[0] || pair[1] < last[1] {
            return Err(AnalysisError::Invalid(format!(
                "{name} must be cumulative (non-decreasing): check {i} has {pair:?} after {last:?}"
            )));
        }
        out.push([pair[0] - last[0], pair[1] - last[1]]);
        last = pair;
    }
    Ok(out)
}

/// Refuses two per-check lists of different lengths, naming them.
fn same_checks(a: (&str, usize), b: (&str, usize)) -> Result<(), AnalysisError> {
    if a.1 == b.1 {
        return Ok(());
    }
    Err(AnalysisError::Invalid(format!(
        "{} has {} checks but {} has {}",
        a.0, a.1, b.0, b.1
    )))
}

fn sequential_stationary_counts(
    errors: &[[u64; 2]],
    requests: &[[u64; 2]],
    settings: StationaryCountSettings,
) -> Result<Value, AnalysisError> {
    same_checks(("errors", errors.len()), ("requests", requests.len()))?;
    let alpha = settings.alpha;
    let mut test = StationaryCountTest::new(settings)?;
    let mut p_values = Vec::with_capacity(errors.len());
    for (e, n) in increments("errors", errors)?
        .into_iter()
        .zip(increments("requests", requests)?)
    {
        test.observe_window(e[0], n[0], e[1], n[1])?;
        p_values.push(test.evidence().p_value);
    }
    Ok(sequential_answer(&p_values, alpha))
}

fn sequential_distribution(
    control: &[Vec<f64>],
    canary: &[Vec<f64>],
    settings: DistributionSettings,
) -> Result<Value, AnalysisError> {
    same_checks(("control", control.len()), ("canary", canary.len()))?;
    let alpha = settings.alpha;
    let mut test = DistributionTest::new(settings)?;
    let mut p_values = Vec::with_capacity(control.len());
    for (c, t) in control.iter().zip(canary) {
        test.observe_control(c)?;
        test.observe_canary(t)?;
        p_values.push(test.check().p_value);
    }
    Ok(sequential_answer(&p_values, alpha))
}

fn power_settings(alpha: f64, ratio: f64, alternative: Alternative) -> PowerSettings {
    PowerSettings {
        alpha,
        ratio,
        alternative,
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Answers one request.
#[allow(clippy::too_many_lines)]
pub fn run(request: Request) -> Result<Value, AnalysisError> {
    Ok(match request {
        Request::MannWhitney {
            x,
            y,
            alternative,
            method,
            continuity,
        } => to_value(&mann_whitney(&x, &y, alternative, method, continuity)?),
        Request::MwCi { x, y, conf_level } => to_value(&shift_interval(&x, &y, conf_level)?),
        Request::HodgesLehmann { x, y, conf_level } => {
            to_value(&hodges_lehmann(&x, &y, conf_level)?)
        }
        Request::Classify {
            control,
            experiment,
            config,
            tolerance,
            conf_level,
        } => {
            if !(conf_level > 0.0 && conf_level < 1.0) {
                return Err(AnalysisError::InvalidConfLevel(conf_level));
            }
            if !(tolerance >= 0.0 && tolerance.is_finite()) {
                return Err(AnalysisError::Invalid(format!(
                    "tolerance must be finite and at least 0, got {tolerance}"
                )));
            }
            let settings = JudgeSettings {
                tolerance,
                conf_level,
            };
            let c = classify(&control, &experiment, &config, settings);
            json!({
                "label": c.label,
                "critical": c.critical,
                "ci": c.ci,
                "estimate": c.estimate,
                "deviation": c.ratio,
                "effect_size": c.effect_size,
                "reason": c.reason,
                "control": c.control,
                "experiment": c.experiment,
            })
        }
        Request::Score {
            results,
            group_weights,
            pass,
            marginal,
        } => to_value(&score(
            &results,
            &group_weights,
            ScoreThresholds { pass, marginal },
        )),
        Request::Judge {
            config,
            mut data,
            thresholds,
        } => {
            let thresholds = thresholds
                .or(config.classifier.score_thresholds)
                .unwrap_or_default();
            to_value(&judge(
                &config,
                |name| data.remove(name),
                JudgeSettings::default(),
                thresholds,
            ))
        }
        Request::Fisher { table, alternative } => to_value(&fisher_exact(table, alternative)?),
        Request::ChiSquare { table, correction } => to_value(&chi_square_2x2(table, correction)?),
        Request::Welch { x, y } => to_value(&welch_t_test(&x, &y)?),
        Request::PowerProportions {
            p1,
            p2,
            n1,
            alpha,
            ratio,
            alternative,
        } => {
            let s = power_settings(alpha, ratio, alternative);
            json!({ "power": power_two_proportions(p1, p2, n1, s)? })
        }
        Request::SampleSizeProportions {
            p1,
            p2,
            power,
            alpha,
            ratio,
            alternative,
        } => {
            let s = power_settings(alpha, ratio, alternative);
            let n1 = sample_size_two_proportions(p1, p2, power, s)?;
            json!({ "n1": n1, "n2": n1 * ratio })
        }
        Request::PowerMeans {
            effect_size,
            n1,
            alpha,
            ratio,
            alternative,
        } => {
            let s = power_settings(alpha, ratio, alternative);
            json!({ "power": power_normal(effect_size, n1, s)? })
        }
        Request::SampleSizeMeans {
            effect_size,
            power,
            alpha,
            ratio,
            alternative,
        } => {
            let s = power_settings(alpha, ratio, alternative);
            let n1 = sample_size_normal(effect_size, power, s)?;
            json!({ "n1": n1, "n2": n1 * ratio })
        }
        Request::SequentialCounts {
            counts,
            split,
            alpha,
            prior_strength,
            restarts,
            alternative,
        } => sequential_counts(
            &counts,
            split,
            CountSettings {
                alpha,
                prior_strength,
                alternative,
                restarts,
            },
        )?,
        Request::SequentialStationaryCounts {
            errors,
            requests,
            alpha,
            restarts,
        } => sequential_stationary_counts(
            &errors,
            &requests,
            StationaryCountSettings {
                alpha,
                restarts,
                ..StationaryCountSettings::default()
            },
        )?,
        Request::SequentialDistribution {
            control,
            canary,
            alpha,
            alternative,
            stationary,
        } => sequential_distribution(
            &control,
            &canary,
            DistributionSettings {
                alpha,
                alternative,
                stationary,
                ..DistributionSettings::default()
            },
        )?,
    })
}

/// Parses one JSON request and answers it as JSON; the error is a message for stderr.
///
/// ```
/// use cutover_analysis::harness::run_json;
/// let out = run_json(r#"{"op":"fisher","table":[[3,1],[1,3]],"alternative":"greater"}"#)?;
/// let out: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
/// assert_eq!(out["odds_ratio"], 9.0);
/// assert!((out["p_value"].as_f64().unwrap() - 0.242_857_142_857_142_85).abs() < 1e-15);
/// assert!(run_json(r#"{"op":"nope"}"#).is_err());
/// # Ok::<(), String>(())
/// ```
pub fn run_json(input: &str) -> Result<String, String> {
    let request: Request =
        serde_json::from_str(input).map_err(|e| format!("invalid request: {e}"))?;
    let value = run(request).map_err(|e| e.to_string())?;
    serde_json::to_string(&value).map_err(|e| format!("cannot encode the result: {e}"))
}
