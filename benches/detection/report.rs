//! Summaries of a cell's replications (Wilson interval, censored quantiles of the time to
//! detect), the text table and the JSON rows.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// Wilson score 95 % interval for `k` successes out of `n`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The `q` quantile of times where undetected replications count as +∞ (censored): `None`
/// when that quantile is censored. Lower empirical quantile (type 1).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
pub(crate) fn censored_quantile(detected: &[f64], total: usize, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let mut v = detected.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * total as f64).ceil() as usize).max(1);
    v.get(rank - 1).copied()
}

/// One row: a detector in a scenario at a rate.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Detector name.
    pub(crate) detector: String,
    /// Scenario name.
    pub(crate) scenario: String,
    /// Requests per second per arm.
    pub(crate) rate: f64,
    /// Replications run.
    pub(crate) replications: usize,
    /// Rollbacks before the onset (all of them in A/A).
    pub(crate) false_rollbacks: usize,
    /// Times to detect (seconds after the onset) of the replications that detected.
    pub(crate) ttd: Vec<f64>,
    /// Median time to detect of the SPRT limit in the same cell.
    pub(crate) limit_ttd_s: Option<f64>,
    /// Whether the scenario has an effect (else detection fields are null).
    pub(crate) has_effect: bool,
    /// Whether there are checks without an effect (A/A, or before a delayed onset); else the
    /// false rollback fields are null.
    pub(crate) has_null_checks: bool,
}

impl Row {
    #[allow(clippy::cast_precision_loss)]
    fn rate_of(&self, k: usize) -> f64 {
        if self.replications == 0 {
            f64::NAN
        } else {
            k as f64 / self.replications as f64
        }
    }

    /// Median time to detect (censored).
    pub(crate) fn median(&self) -> Option<f64> {
        censored_quantile(&self.ttd, self.replications, 0.5)
    }

    /// The row as JSON.
    pub(crate) fn json(&self) -> Value {
        let (lo, hi) = wilson(self.false_rollbacks, self.replications);
        let eff = |v: Option<f64>| if self.has_effect { v } else { None };
        let nullable = |v: f64| self.has_null_checks.then_some(v);
        let median = eff(self.median());
        json!({
            "detector": self.detector,
            "scenario": self.scenario,
            "rate": self.rate,
            "replications": self.replications,
            "false_rollback_rate": nullable(self.rate_of(self.false_rollbacks)),
            "fpr_ci_low": nullable(lo),
            "fpr_ci_high": nullable(hi),
            "detect_prob": eff(Some(self.rate_of(self.ttd.len()))),
            "median_ttd_s": median,
            "p90_ttd_s": eff(censored_quantile(&self.ttd, self.replications, 0.9)),
            "limit_ttd_s": eff(self.limit_ttd_s),
            "ratio_to_limit": match (median, eff(self.limit_ttd_s)) {
                (Some(m), Some(l)) if l > 0.0 => Some(m / l),
                _ => None,
            },
        })
    }
}

fn cell(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// The text table of `rows`.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<26} {:<19} {:>5} {:>5} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>6}\n",
        "detector",
        "scenario",
        "rate",
        "reps",
        "false",
        "fpr_hi",
        "detect",
        "med_ttd",
        "p90_ttd",
        "limit",
        "ratio"
    );
    for r in rows {
        let j = r.json();
        let _ = writeln!(
            out,
            "{:<26} {:<19} {:>5} {:>5} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>6}",
            r.detector,
            r.scenario,
            r.rate,
            r.replications,
            cell(&j["false_rollback_rate"], 4),
            cell(&j["fpr_ci_high"], 4),
            cell(&j["detect_prob"], 3),
            cell(&j["median_ttd_s"], 0),
            cell(&j["p90_ttd_s"], 0),
            cell(&j["limit_ttd_s"], 0),
            cell(&j["ratio_to_limit"], 2),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // statsmodels proportion_confint(100, 2000, method="wilson").
        let (lo, hi) = wilson(100, 2000);
        assert!(
            (lo - 0.041_281_23).abs() < 1e-7 && (hi - 0.060_444_11).abs() < 1e-7,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 100);
        assert!(lo.abs() < 1e-12 && (hi - 0.036_993_50).abs() < 1e-7, "{hi}");
    }

    #[test]
    fn censored_median_is_none_when_half_are_undetected() {
        assert_eq!(censored_quantile(&[10.0, 20.0], 4, 0.5), Some(20.0));
        assert_eq!(censored_quantile(&[10.0], 4, 0.5), None);
        assert_eq!(censored_quantile(&[30.0, 10.0, 20.0], 3, 0.9), Some(30.0));
    }
}
