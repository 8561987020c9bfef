//! Kayenta's canary-config JSON: the per-metric `analysisConfigurations.canary` settings and
//! the classifier's group weights and score thresholds.
//!
//! Parse rules and defaults follow Kayenta's `NetflixACAJudge.scala` (ANALYSIS.md §1.1): an
//! unknown `direction` is `either`; `nanStrategy` is `remove` unless it is exactly `replace`;
//! `outliers.strategy` is `keep` unless it is exactly `remove`; effect-size thresholds default to
//! 1.0 for `meanRatio` and 0.5 for `cles`. Fields this crate does not use (queries, templates,
//! applications) are accepted and ignored, so real configs load unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Which change of a metric is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only an increase is bad (latency, errors).
    Increase,
    /// Only a decrease is bad (throughput).
    Decrease,
    /// Both are bad.
    #[default]
    Either,
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(match s.as_deref() {
            Some("increase") => Direction::Increase,
            Some("decrease") => Direction::Decrease,
            _ => Direction::Either,
        })
    }
}

/// What happens to NaN values before classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NanStrategy {
    /// Drop them (Kayenta's default).
    #[default]
    Remove,
    /// Replace them with 0.0.
    Replace,
}

impl<'de> Deserialize<'de> for NanStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(if s.as_deref() == Some("replace") {
            NanStrategy::Replace
        } else {
            NanStrategy::Remove
        })
    }
}

/// How the size of an effect is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum EffectMeasure {
    /// `mean(experiment) / mean(control)`.
    #[default]
    #[serde(rename = "meanRatio")]
    MeanRatio,
    /// The common-language effect size: the probability that an experiment value exceeds a
    /// control value (ties count one half).
    #[serde(rename = "cles")]
    Cles,
}

/// Effect-size thresholds: a High (Low) label needs the effect at least `allowed_increase` (at
/// most `allowed_decrease`), and a critical failure at least `critical_increase` (at most
/// `critical_decrease`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectSize {
    /// How the effect is measured.
    pub measure: EffectMeasure,
    /// The smallest effect that counts as an increase.
    pub allowed_increase: f64,
    /// The largest effect that counts as a decrease.
    pub allowed_decrease: f64,
    /// The smallest effect that makes a critical metric's increase critical.
    pub critical_increase: f64,
    /// The largest effect that makes a critical metric's decrease critical.
    pub critical_decrease: f64,
}

impl EffectSize {
    /// No threshold: every significant change counts (1.0 for the mean ratio, 0.5 for CLES).
    pub fn neutral(measure: EffectMeasure) -> Self {
        let v = match measure {
            EffectMeasure::MeanRatio => 1.0,
            EffectMeasure::Cles => 0.5,
        };
        EffectSize {
            measure,
            allowed_increase: v,
            allowed_decrease: v,
            critical_increase: v,
            critical_decrease: v,
        }
    }
}

impl Default for EffectSize {
    fn default() -> Self {
        EffectSize::neutral(EffectMeasure::MeanRatio)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEffectSize {
    #[serde(default)]
    measure: EffectMeasure,
    allowed_increase: Option<f64>,
    allowed_decrease: Option<f64>,
    critical_increase: Option<f64>,
    critical_decrease: Option<f64>,
}

impl<'de> Deserialize<'de> for EffectSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawEffectSize::deserialize(d)?;
        let n = EffectSize::neutral(raw.measure);
        Ok(EffectSize {
            measure: raw.measure,
            allowed_increase: raw.allowed_increase.unwrap_or(n.allowed_increase),
            allowed_decrease: raw.allowed_decrease.unwrap_or(n.allowed_decrease),
            critical_increase: raw.critical_increase.unwrap_or(n.critical_increase),
            critical_decrease: raw.critical_decrease.unwrap_or(n.critical_decrease),
        })
    }
}

/// Outlier handling: Kayenta's `IQRDetector(factor, reduceSensitivity = true)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outliers {
    /// Whether outliers are removed (Kayenta's default is to keep them).
    pub remove: bool,
    /// The IQR multiple beyond which a value is an outlier (default 3).
    pub outlier_factor: f64,
}

impl Default for Outliers {
    fn default() -> Self {
        Outliers {
            remove: false,
            outlier_factor: 3.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOutliers {
    strategy: Option<String>,
    outlier_factor: Option<f64>,
}

impl<'de> Deserialize<'de> for Outliers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawOutliers::deserialize(d)?;
        Ok(Outliers {
            remove: raw.strategy.as_deref() == Some("remove"),
            outlier_factor: raw.outlier_factor.unwrap_or(3.0),
        })
    }
}

/// One metric's judge settings: Kayenta's `analysisConfigurations.canary` object.
///
/// ```
/// use cutover_analysis::kayenta::{Direction, MetricConfig};
/// let c: MetricConfig = serde_json::from_str(r#"{"direction": "increase", "critical": true,
///     "effectSize": {"allowedIncrease": 1.1}, "outliers": {"strategy": "remove"}}"#)?;
/// assert_eq!(c.direction, Direction::Increase);
/// assert_eq!(c.effect_size.allowed_increase, 1.1);
/// assert_eq!(c.effect_size.allowed_decrease, 1.0);
/// assert!(c.outliers.remove);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricConfig {
    /// Which change is bad.
    pub direction: Direction,
    /// What happens to NaN values.
    pub nan_strategy: NanStrategy,
    /// A critical metric that fails fails the whole canary (score 0).
    pub critical: bool,
    /// No data for this metric fails it (`NodataFailMetric`) instead of leaving it out.
    pub must_have_data: bool,
    /// Judged and reported, but left out of the score.
    pub muted: bool,
    /// Effect-size thresholds.
    pub effect_size: EffectSize,
    /// Outlier handling.
    pub outliers: Outliers,
}

/// Kayenta's `analysisConfigurations` object of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysisConfigurations {
    /// The judge's settings.
    pub canary: MetricConfig,
}

/// One metric of a canary config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetric {
    /// The metric's name.
    pub name: String,
    /// The groups it is scored in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The scope it is queried in (kept for reference; the caller supplies the data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_name: Option<String>,
    /// Its judge settings.
    #[serde(default)]
    pub analysis_configurations: AnalysisConfigurations,
}

/// Pass and marginal score thresholds, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreThresholds {
    /// A score at or above this passes.
    pub pass: f64,
    /// A score at or above this (and below `pass`) is marginal; below it fails.
    pub marginal: f64,
}

impl Default for ScoreThresholds {
    /// Spinnaker's usual defaults: pass 95, marginal 75.
    fn default() -> Self {
        ScoreThresholds {
            pass: 95.0,
            marginal: 75.0,
        }
    }
}

/// The classifier section of a canary config.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClassifierConfig {
    /// Weight of each group in percent; groups without one share what is left.
    pub group_weights: BTreeMap<String, f64>,
    /// Score thresholds (in Kayenta they come with the execution request; accepted here too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_thresholds: Option<ScoreThresholds>,
}

/// A Kayenta canary config (the parts the judge uses).
///
/// ```
/// use cutover_analysis::kayenta::CanaryConfig;
/// let config = CanaryConfig::from_json(r#"{
///   "name": "my-canary",
///   "metrics": [{"name": "latency", "query": {"type": "prometheus"}, "groups": ["perf"],
///                "analysisConfigurations": {"canary": {"direction": "increase"}},
///                "scopeName": "default"}],
///   "classifier": {"groupWeights": {"perf": 100}}
/// }"#)?;
/// assert_eq!(config.metrics[0].groups, ["perf"]);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CanaryConfig {
    /// The config's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The metrics.
    pub metrics: Vec<CanaryMetric>,
    /// Group weights and thresholds.
    pub classifier: ClassifierConfig,
}

impl CanaryConfig {
    /// Parses a canary config from JSON; the error names the field at fault.
    pub fn from_json(json: &str) -> Result<Self, crate::AnalysisError> {
        serde_json::from_str(json)
            .map_err(|e| crate::AnalysisError::Invalid(format!("invalid canary config: {e}")))
    }
}
