//! Kayenta's scoring: `WeightedSumScorer` and `ThresholdScoreClassifier` (ANALYSIS.md §1.5,
//! vectors from `ScorerSuite.scala`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::classify::Label;
use super::config::ScoreThresholds;

/// What the scorer needs of one metric's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredMetric {
    /// The metric's name.
    pub name: String,
    /// Its label.
    pub label: Label,
    /// Whether the result is critical (from [`classify`](super::classify)).
    #[serde(default)]
    pub critical: bool,
    /// Muted metrics are reported but not scored.
    #[serde(default)]
    pub muted: bool,
    /// The groups it is scored in.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The canary's overall label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScoreLabel {
    /// Score at or above `pass`.
    Pass,
    /// Score at or above `marginal`, below `pass`.
    Marginal,
    /// Score below `marginal`, or a critical failure.
    Fail,
}

impl fmt::Display for ScoreLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One group's part in the score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupScore {
    /// 100 · passed / counted (0 when nothing counted).
    pub score: f64,
    /// Whether no metric of the group counted (all Nodata or Error).
    pub no_data: bool,
    /// The weight it got, in percent.
    pub weight: f64,
}

/// The canary's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// 0 to 100, rounded half up to two decimals.
    pub score: f64,
    /// Pass, marginal or fail by the thresholds.
    pub label: ScoreLabel,
    /// Why, when the score was forced to 0 (a critical failure, too many Nodata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Per-group scores.
    pub groups: BTreeMap<String, GroupScore>,
}

fn label_of(score: f64, thresholds: ScoreThresholds) -> ScoreLabel {
    if score >= thresholds.pass {
        ScoreLabel::Pass
    } else if score >= thresholds.marginal {
        ScoreLabel::Marginal
    } else {
        ScoreLabel::Fail
    }
}

/// Scores classified metrics as Kayenta's `WeightedSumScorer` does, then labels the score.
///
/// Per group, `100 · #Pass / #(Pass, High, Low, NodataFailMetric)`; `Nodata` and `Error` do
/// not count. A critical result that is not `Pass` scores 0, as does 50 % or more `Nodata`.
/// Otherwise the groups' scores are summed with their weights; groups without a configured
/// weight share `100 − Σ weights` equally. Kayenta's quirks are kept: a group that is all
/// `Nodata` scores 100, `Error` metrics vanish from the score, and a weighted group with no
/// metrics caps the score below 100.
///
/// ```
/// use std::collections::BTreeMap;
/// use cutover_analysis::kayenta::{Label, ScoreLabel, ScoreThresholds, ScoredMetric, score};
/// let m = |label| ScoredMetric { name: "m".into(), label, critical: false, muted: false,
///                                groups: vec!["g".into()] };
/// let s = score(&[m(Label::Pass), m(Label::High)], &BTreeMap::new(), ScoreThresholds::default());
/// assert_eq!((s.score, s.label), (50.0, ScoreLabel::Fail));
/// ```
pub fn score(
    results: &[ScoredMetric],
    group_weights: &BTreeMap<String, f64>,
    thresholds: ScoreThresholds,
) -> Score {
    let scored: Vec<&ScoredMetric> = results.iter().filter(|r| !r.muted).collect();
    let mut counts: BTreeMap<&str, (u32, u32)> = BTreeMap::new(); // (passed, counted)
    for r in &scored {
        for g in &r.groups {
            let entry = counts.entry(g.as_str()).or_default();
            match r.label {
                Label::Pass => {
                    entry.0 += 1;
                    entry.1 += 1;
                }
                Label::High | Label::Low | Label::NodataFailMetric => entry.1 += 1,
                Label::Nodata | Label::Error => {}
            }
        }
    }
    let configured: f64 = group_weights.values().sum();
    let unweighted: BTreeSet<&str> = counts
        .keys()
        .copied()
        .filter(|g| !group_weights.contains_key(*g))
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let share = if unweighted.is_empty() {
        0.0
    } else {
        (100.0 - configured) / unweighted.len() as f64
    };
    let mut groups = BTreeMap::new();
    let mut sum = 0.0;
    for (g, (passed, counted)) in &counts {
        let no_data = *counted == 0;
        let s = if no_data {
            0.0
        } else {
            100.0 * f64::from(*passed) / f64::from(*counted)
        };
        let weight = group_weights.get(*g).copied().unwrap_or(share);
        sum += if no_data { 100.0 } else { s } * weight / 100.0;
        groups.insert(
            (*g).to_owned(),
            GroupScore {
                score: s,
                no_data,
                weight,
            },
        );
    }
    let critical = scored.iter().find(|r| r.critical && r.label != Label::Pass);
    let nodata = scored.iter().filter(|r| r.label == Label::Nodata).count();
    #[allow(clippy::cast_precision_loss)]
    let (score, reason) = if let Some(r) = critical {
        (
            0.0,
            Some(format!("critical metric `{}` is {}", r.name, r.label)),
        )
    } else if !scored.is_empty() && 100.0 * nodata as f64 / scored.len() as f64 >= 50.0 {
        (
            0.0,
            Some(format!("{nodata} of {} metrics have no data", scored.len())),
        )
    } else {
        ((sum * 100.0).round() / 100.0, None)
    };
    Score {
        score,
        label: label_of(score, thresholds),
        reason,
        groups,
    }
}
