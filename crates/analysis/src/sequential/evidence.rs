//! What every sequential test reports ([`Evidence`]), what the engine decides from it
//! ([`Decision`]), and the checks shared by the tests.

use serde::{Deserialize, Serialize};

use crate::AnalysisError;

/// The effect a test's confidence sequence is about, and its "no difference" value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Per-request event rate of the canary divided by the control's (counts tests). No
    /// difference is 1; a degradation is a ratio above 1.
    RateRatio,
    /// `sup_x (F_control(x) − F_canary(x))`, the largest amount by which the canary's values are
    /// stochastically larger (distribution test). No difference is 0; it lies in [0, 1].
    CdfGap,
    /// Canary mean minus control mean (means test). No difference is 0.
    MeanDifference,
}

impl Effect {
    /// The value of the effect when canary and control do not differ: 1 for a ratio, 0 else.
    pub fn null_value(self) -> f64 {
        match self {
            Effect::RateRatio => 1.0,
            Effect::CdfGap | Effect::MeanDifference => 0.0,
        }
    }
}

/// The state of a sequential test after its latest observation or check.
///
/// The p-value is anytime-valid: whatever the monitoring schedule and whenever you stop,
/// `P_H0(p ≤ α at any time) ≤ α`. It never increases, and once `p ≤ α` the test stays
/// `rejected`. `lower..=upper` is a `(1 − α)` confidence sequence on [`Evidence::effect`]: it
/// covers the true effect at all times simultaneously with probability at least `1 − α`
/// (under the test's model). Non-finite bounds mean "unbounded". In JSON, non-finite numbers are
/// written as the strings `"inf"`, `"-inf"` and `"NaN"`, so an `Evidence` reads back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Anytime-valid p-value in [0, 1], non-increasing over the life of the test.
    #[serde(with = "non_finite")]
    pub p_value: f64,
    /// `p_value ≤ alpha` happened at some point (sticky).
    pub rejected: bool,
    /// Natural log of the current e-value (the mixture likelihood ratio). For the distribution
    /// test, whose band statistic has no e-value, it is `−ln p_value`.
    #[serde(with = "non_finite")]
    pub log_e_value: f64,
    /// Which effect `estimate`, `lower` and `upper` are about.
    pub effect: Effect,
    /// Point estimate of the effect (NaN before any data).
    #[serde(with = "non_finite")]
    pub estimate: f64,
    /// Lower end of the confidence sequence (may be `−∞` or 0 for a ratio: unbounded).
    #[serde(with = "non_finite")]
    pub lower: f64,
    /// Upper end of the confidence sequence (may be `+∞`: unbounded).
    #[serde(with = "non_finite")]
    pub upper: f64,
    /// Observations (events, values or pairs, see each test) seen from the control arm.
    pub control_n: u64,
    /// Observations seen from the canary arm.
    pub canary_n: u64,
}

/// Serde for `f64` fields that may be infinite or NaN: finite values as JSON numbers, the
/// others as the strings `"inf"`, `"-inf"`, `"NaN"` (plain JSON would write `null` and could not
/// read it back). `null` also reads back, as NaN.
pub(crate) mod non_finite {
    use serde::{Deserialize, Deserializer, Serializer};

    // serde's `with` calls this with a reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
        Null(()),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(v) => Ok(v),
            Repr::Null(()) => Ok(f64::NAN),
            Repr::Text(t) => match t.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"inf\", \"-inf\" or \"NaN\", got {other:?}"
                ))),
            },
        }
    }
}

/// What the engine may conclude from an [`Evidence`] against a tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The test rejected its null hypothesis: roll back.
    Reject,
    /// The confidence sequence excludes a degradation larger than the tolerance: the step may
    /// pass (when its time is up).
    RuledOut,
    /// Neither: keep observing (or extend the step, then take the inconclusive action).
    Undecided,
}

impl Evidence {
    /// Decides against `tolerance`, in the units of [`Evidence::effect`] measured from its null
    /// value: a degradation is "larger than the tolerance" when the effect exceeds
    /// `effect.null_value() + tolerance` (for a rate ratio, tolerance 0.2 rules out ratios above
    /// 1.2; for a mean difference, tolerance 5.0 rules out the canary being more than 5 worse).
    ///
    /// `Reject` when [`Evidence::rejected`]; else `RuledOut` when `upper ≤ null + tolerance`;
    /// else `Undecided`. A NaN or negative tolerance rules nothing out. "Degradation" is always
    /// the effect above its null value (the canary larger: more errors, slower, a higher mean),
    /// whatever the test's alternative; a two-sided test's rejection is a `Reject` in either
    /// direction, so use `Greater` when only a worse canary should roll back.
    ///
    /// ```
    /// use cutover_analysis::sequential::{CountSettings, CountTest, Decision};
    /// let mut test = CountTest::new(0.5, CountSettings::default())?;
    /// assert_eq!(test.evidence().decide(0.5), Decision::Undecided);
    /// test.observe(400, 400)?;
    /// assert_eq!(test.evidence().decide(0.5), Decision::RuledOut);
    /// test.observe(0, 400)?;
    /// assert_eq!(test.evidence().decide(0.5), Decision::Reject);
    /// assert!(test.evidence().to_string().starts_with("p = 0.0000 (rejected), log e = "));
    /// # Ok::<(), cutover_analysis::AnalysisError>(())
    /// ```
    pub fn decide(&self, tolerance: f64) -> Decision {
        if self.rejected {
            Decision::Reject
        } else if tolerance >= 0.0 && self.upper <= self.effect.null_value() + tolerance {
            Decision::RuledOut
        } else {
            Decision::Undecided
        }
    }
}

impl Effect {
    /// A short name for messages: `rate ratio`, `CDF gap`, `mean difference`.
    pub fn name(self) -> &'static str {
        match self {
            Effect::RateRatio => "rate ratio",
            Effect::CdfGap => "CDF gap",
            Effect::MeanDifference => "mean difference",
        }
    }
}

/// One line with the numbers, for a decision record's reason, e.g.
/// `p = 0.0123 (rejected), log e = 4.40, rate ratio 1.93 [1.21, 3.10], n = 120/240`.
impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p = {:.4}{}, log e = {:.2}, {} {:.4} [{:.4}, {:.4}], n = {}/{}",
            self.p_value,
            if self.rejected { " (rejected)" } else { "" },
            self.log_e_value,
            self.effect.name(),
            self.estimate,
            self.lower,
            self.upper,
            self.control_n,
            self.canary_n
        )
    }
}

/// Checks a significance level.
pub(crate) fn check_alpha(alpha: f64) -> Result<(), AnalysisError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(AnalysisError::InvalidAlpha(alpha))
    }
}

/// Checks a share of traffic (or of events) lies strictly between 0 and 1.
pub(crate) fn check_share(name: &str, share: f64) -> Result<(), AnalysisError> {
    if share > 0.0 && share < 1.0 {
        Ok(())
    } else {
        Err(AnalysisError::Invalid(format!(
            "{name} must lie strictly between 0 and 1, got {share}"
        )))
    }
}

/// The running anytime-valid p-value and its sticky rejection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunningP {
    pub(crate) p_value: f64,
    pub(crate) rejected: bool,
}

impl Default for RunningP {
    fn default() -> Self {
        RunningP {
            p_value: 1.0,
            rejected: false,
        }
    }
}

impl RunningP {
    /// Folds in a new p-value bound (for an e-value `E`, `1/E`).
    pub(crate) fn update(&mut self, p: f64, alpha: f64) {
        if p < self.p_value {
            self.p_value = p.max(0.0);
        }
        if self.p_value <= alpha {
            self.rejected = true;
        }
    }

    /// Folds in a log e-value.
    pub(crate) fn update_log_e(&mut self, log_e: f64, alpha: f64) {
        self.update((-log_e).exp().min(1.0), alpha);
    }
}
