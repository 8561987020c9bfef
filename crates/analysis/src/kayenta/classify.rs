//! Kayenta's metric classification (`NetflixACAJudge-v1.0`, `MannWhitneyClassifier.scala`),
//! as ANALYSIS.md §1.2-§1.3 describes it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::{Direction, EffectMeasure, MetricConfig, NanStrategy};
use crate::SplitMix64;
use crate::mann_whitney::shift_interval_sorted;
use crate::rank::{Shifted, sort_f64};

/// The label of one metric, as Kayenta names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Label {
    /// No significant change in a bad direction.
    Pass,
    /// Significantly higher than the control.
    High,
    /// Significantly lower than the control.
    Low,
    /// No data in one of the arms; left out of the score.
    Nodata,
    /// No data for a metric that must have data; counts as a failure.
    NodataFailMetric,
    /// The classification failed (for example every value tied after noise).
    Error,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Judge settings that Kayenta hard-codes: the tolerance of the bound and the confidence level
/// of the interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JudgeSettings {
    /// The interval must clear `tolerance · |estimate|` (Kayenta: 0.25).
    pub tolerance: f64,
    /// Confidence level of the interval (Kayenta: 0.98).
    pub conf_level: f64,
}

impl Default for JudgeSettings {
    /// Kayenta's values: `new MannWhitneyClassifier(tolerance = 0.25, confLevel = 0.98, …)`.
    fn default() -> Self {
        JudgeSettings {
            tolerance: 0.25,
            conf_level: 0.98,
        }
    }
}

/// Summary statistics of one arm after preprocessing (Kayenta's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ArmStats {
    /// Values kept.
    pub count: u64,
    /// Smallest value (0 when empty).
    pub min: f64,
    /// Largest value (0 when empty).
    pub max: f64,
    /// Mean (0 when empty).
    pub mean: f64,
    /// Sample standard deviation, n − 1 (0 with fewer than two values).
    pub std: f64,
}

impl ArmStats {
    #[allow(clippy::cast_precision_loss)]
    fn of(sorted: &[f64]) -> Self {
        let n = sorted.len();
        if n == 0 {
            return ArmStats::default();
        }
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (sorted.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        ArmStats {
            count: n as u64,
            min: sorted[0],
            max: sorted[n - 1],
            mean,
            std,
        }
    }
}

/// One metric's classification and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// The label.
    pub label: Label,
    /// Whether this result fails the whole canary (a critical metric beyond its critical
    /// effect size, or a critical metric without data).
    pub critical: bool,
    /// Why, in words.
    pub reason: String,
    /// The confidence interval of the shift experiment − control, when it was computed.
    pub ci: Option<[f64; 2]>,
    /// The shift's estimate (Kayenta's Hodges-Lehmann-type root), when computed.
    pub estimate: Option<f64>,
    /// `mean(experiment) / mean(control)`; `None` when either mean is zero or an arm is empty
    /// (NaN in Kayenta). Kayenta reports it as the metric's "ratio".
    pub ratio: Option<f64>,
    /// The effect size compared with the thresholds (the ratio or CLES), when computed.
    pub effect_size: Option<f64>,
    /// The control arm after preprocessing.
    pub control: ArmStats,
    /// The experiment arm after preprocessing.
    pub experiment: ArmStats,
}

/// NaN strategy, then outlier removal, on one arm; returns the values sorted ascending.
pub(crate) fn preprocess(values: &[f64], config: &MetricConfig) -> Vec<f64> {
    let mut v: Vec<f64> = match config.nan_strategy {
        NanStrategy::Remove => values.iter().copied().filter(|v| !v.is_nan()).collect(),
        NanStrategy::Replace => values
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { v })
            .collect(),
    };
    sort_f64(&mut v);
    if config.outliers.remove && !v.is_empty() {
        let (lo, hi) = iqr_fences(&v, config.outliers.outlier_factor);
        v.retain(|&x| lo <= x && x <= hi);
    }
    v
}

/// Percentile by R-7 on a sorted slice, `p` in percent (commons-math `EstimationType.R_7`).
fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let h = (sorted.len() - 1) as f64 * p / 100.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    #[allow(clippy::cast_precision_loss)]
    let frac = h - lo as f64;
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

/// Kayenta's `IQRDetector(factor, reduceSensitivity = true)` fences on a sorted, non-empty
/// slice: `[min(q1, q25 − f·IQR), max(q99, q75 + f·IQR)]`.
pub fn iqr_fences(sorted: &[f64], factor: f64) -> (f64, f64) {
    let q1 = percentile_sorted(sorted, 1.0);
    let q25 = percentile_sorted(sorted, 25.0);
    let q75 = percentile_sorted(sorted, 75.0);
    let q99 = percentile_sorted(sorted, 99.0);
    let iqr = q75 - q25;
    (q1.min(q25 - factor * iqr), q99.max(q75 + factor * iqr))
}

fn mean(v: &[f64]) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = v.len() as f64;
    v.iter().sum::<f64>() / n
}

fn distinct_sorted(v: &[f64]) -> usize {
    if v.is_empty() {
        0
    } else {
        1 + v.windows(2).filter(|w| w[0] != w[1]).count()
    }
}

/// Deterministic N(0, sd²) noise. Kayenta draws it at random; a fixed seed keeps verdicts
/// reproducible (and only ever touches two constant arms).
struct Noise(SplitMix64);

impl Noise {
    fn add_to(&mut self, values: &mut [f64]) {
        let sd = (values[0] * 1e-5).abs();
        for v in values.iter_mut() {
            *v += sd * self.0.normal();
        }
        sort_f64(values);
    }
}

/// Classifies one metric: experiment (canary) against control (baseline).
///
/// The rule is Kayenta's (ANALYSIS.md §1.3): no data → `Nodata` / `NodataFailMetric` (or `Pass`
/// under the `replace` NaN strategy); identical arms, or a single value across both → `Pass`;
/// two constant arms get N(0, (v·1e-5)²) noise; then the R-compatible interval of the shift at
/// `conf_level` must clear `tolerance·|estimate|` for `High` (increase or either) or `Low`
/// (decrease or either), and the effect size (mean ratio or CLES) must reach the allowed
/// threshold. A critical metric is critical when its effect also reaches the critical
/// threshold. An interval that cannot be computed (every value tied) or an infinite value is
/// `Error` ("Metric Classification Failed"), never critical.
///
/// ```
/// use cutover_analysis::kayenta::{JudgeSettings, Label, MetricConfig, classify};
/// let control = [1.0, 2.2, 1.1, 2.5, 3.0];
/// let experiment = [20.0, 22.0, 21.0, 25.0, 30.0];
/// let c = classify(&control, &experiment, &MetricConfig::default(), JudgeSettings::default());
/// assert_eq!(c.label, Label::High);
/// ```
pub fn classify(
    control: &[f64],
    experiment: &[f64],
    config: &MetricConfig,
    settings: JudgeSettings,
) -> Classification {
    let c = preprocess(control, config);
    let e = preprocess(experiment, config);
    classify_sorted(c, e, config, settings)
}

pub(crate) fn classify_sorted(
    mut c: Vec<f64>,
    mut e: Vec<f64>,
    config: &MetricConfig,
    settings: JudgeSettings,
) -> Classification {
    let mut out = Classification {
        label: Label::Pass,
        critical: false,
        reason: String::new(),
        ci: None,
        estimate: None,
        ratio: None,
        effect_size: None,
        control: ArmStats::of(&c),
        experiment: ArmStats::of(&e),
    };
    if e.is_empty() || c.is_empty() {
        let which = if e.is_empty() {
            "experiment"
        } else {
            "control"
        };
        if config.nan_strategy == NanStrategy::Remove {
            if config.must_have_data && !config.critical {
                out.label = Label::NodataFailMetric;
            } else {
                out.label = Label::Nodata;
                out.critical = config.critical;
            }
        }
        out.reason = format!("no data in the {which}");
        return out;
    }
    let ratio = {
        let (mc, me) = (mean(&c), mean(&e));
        if mc == 0.0 || me == 0.0 {
            f64::NAN
        } else {
            me / mc
        }
    };
    out.ratio = Some(ratio).filter(|r| !r.is_nan());
    if c.iter().chain(&e).any(|v| v.is_infinite()) {
        out.label = Label::Error;
        out.reason = "Metric Classification Failed: infinite value".into();
        return out;
    }
    if e == c {
        out.reason = "experiment and control are identical".into();
        return out;
    }
    let (dc, de) = (distinct_sorted(&c), distinct_sorted(&e));
    if dc == 1 && de == 1 && c[0] == e[0] {
        out.reason = "every value is the same".into();
        return out;
    }
    if dc == 1 && de == 1 {
        let mut noise = Noise(SplitMix64::new(0x00C0_FFEE));
        noise.add_to(&mut e);
        noise.add_to(&mut c);
    }
    let ci = match shift_interval_sorted(&e, &c, settings.conf_level) {
        Ok(ci) => ci,
        Err(err) => {
            out.label = Label::Error;
            out.reason = format!("Metric Classification Failed: {err}");
            return out;
        }
    };
    #[allow(clippy::cast_precision_loss)]
    let effect = match config.effect_size.measure {
        EffectMeasure::MeanRatio => ratio,
        EffectMeasure::Cles => {
            Shifted::new(&e, &c).merge(0.0).u / (e.len() as f64 * c.len() as f64)
        }
    };
    let es = &config.effect_size;
    let bound = settings.tolerance * ci.estimate.abs();
    let up = matches!(config.direction, Direction::Increase | Direction::Either);
    let down = matches!(config.direction, Direction::Decrease | Direction::Either);
    let is_high = up && ci.lower > bound && (effect.is_nan() || effect >= es.allowed_increase);
    let is_low = down && ci.upper < -bound && (effect.is_nan() || effect <= es.allowed_decrease);
    out.label = if is_high {
        Label::High
    } else if is_low {
        Label::Low
    } else {
        Label::Pass
    };
    out.critical = config.critical
        && ((is_high && (effect.is_nan() || effect >= es.critical_increase))
            || (!is_high && is_low && (effect.is_nan() || effect <= es.critical_decrease)));
    out.ci = Some([ci.lower, ci.upper]);
    out.estimate = Some(ci.estimate);
    out.effect_size = Some(effect).filter(|v| !v.is_nan());
    out.reason = format!(
        "{}: {:.0}% interval of the shift [{:.6}, {:.6}], estimate {:.6}, bound ±{:.6}, effect {}",
        out.label,
        settings.conf_level * 100.0,
        ci.lower,
        ci.upper,
        ci.estimate,
        bound,
        if effect.is_nan() {
            "n/a".to_owned()
        } else {
            format!("{effect:.4}")
        }
    );
    out
}
