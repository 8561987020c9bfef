//! Comparison of two rates (error rates, conversion rates) for A/B tests.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::AnalysisError;

/// A count of successes out of trials ("events out of requests").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proportion {
    /// Trials that had the event of interest.
    pub successes: u64,
    /// All trials.
    pub trials: u64,
}

impl Proportion {
    /// A proportion of `successes` out of `trials`.
    pub fn new(successes: u64, trials: u64) -> Self {
        Proportion { successes, trials }
    }

    #[allow(clippy::cast_precision_loss)] // counts far below 2^52 in any real test
    fn rate(self) -> f64 {
        self.successes as f64 / self.trials as f64
    }

    fn check(self, group: &'static str) -> Result<Self, AnalysisError> {
        if self.trials == 0 {
            return Err(AnalysisError::Empty { group });
        }
        if self.successes > self.trials {
            return Err(AnalysisError::SuccessesExceedTrials {
                group,
                successes: self.successes,
                trials: self.trials,
            });
        }
        Ok(self)
    }
}

/// The result of [`two_proportion_test`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProportionTest {
    /// The control group's rate.
    pub control_rate: f64,
    /// The treatment group's rate.
    pub treatment_rate: f64,
    /// `treatment_rate - control_rate`.
    pub difference: f64,
    /// `difference / control_rate`, or `None` when the control rate is zero.
    pub relative_change: Option<f64>,
    /// The z statistic (pooled standard error). Zero when both groups are all-zero or all-one.
    pub z: f64,
    /// Two-sided p-value of "the rates are equal". One when the data cannot show any difference.
    pub p_value: f64,
    /// Lower end of the Wald confidence interval of `difference` at level `1 - alpha`.
    pub ci_low: f64,
    /// Upper end of the Wald confidence interval of `difference` at level `1 - alpha`.
    pub ci_high: f64,
}

impl ProportionTest {
    /// `1 - p_value`: how confident the test is that the rates differ.
    pub fn confidence(&self) -> f64 {
        1.0 - self.p_value
    }
}

/// The two-sided z-test of two proportions with a pooled standard error, and the Wald
/// confidence interval of their difference.
///
/// Matches statsmodels' `proportions_ztest([t, c], [nt, nc])` and
/// `confint_proportions_2indep(..., method="wald", compare="diff")`. Where those return NaN
/// (both groups all-zero or all-one), this returns `z = 0` and `p = 1`: such data shows no
/// difference.
///
/// ```
/// use cutover_analysis::{Proportion, two_proportion_test};
///
/// let control = Proportion::new(120, 1000);
/// let treatment = Proportion::new(150, 1000);
/// let test = two_proportion_test(control, treatment, 0.05)?;
/// assert!((test.p_value - 0.04964).abs() < 1e-5);
/// assert!(test.difference > 0.0);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn two_proportion_test(
    control: Proportion,
    treatment: Proportion,
    alpha: f64,
) -> Result<ProportionTest, AnalysisError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(AnalysisError::InvalidAlpha(alpha));
    }
    let control = control.check("control")?;
    let treatment = treatment.check("treatment")?;
    let (pc, pt) = (control.rate(), treatment.rate());
    #[allow(clippy::cast_precision_loss)]
    let (nc, nt) = (control.trials as f64, treatment.trials as f64);
    let difference = pt - pc;

    #[allow(clippy::cast_precision_loss)]
    let pooled = (control.successes + treatment.successes) as f64 / (nc + nt);
    let pooled_se = (pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nt)).sqrt();
    let standard_normal = Normal::standard();
    let (z, p_value) = if pooled_se > 0.0 {
        let z = difference / pooled_se;
        let p = 2.0 * standard_normal.sf(z.abs());
        (z, p.clamp(0.0, 1.0))
    } else {
        (0.0, 1.0)
    };

    let wald_se = (pc * (1.0 - pc) / nc + pt * (1.0 - pt) / nt).sqrt();
    let quantile = standard_normal.inverse_cdf(1.0 - alpha / 2.0);
    Ok(ProportionTest {
        control_rate: pc,
        treatment_rate: pt,
        difference,
        relative_change: (pc > 0.0).then(|| difference / pc),
        z,
        p_value,
        ci_low: difference - quantile * wald_se,
        ci_high: difference + quantile * wald_se,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    /// Reference values from statsmodels 0.14 `proportions_ztest` and
    /// `confint_proportions_2indep(method="wald", compare="diff")`. p-values agree to 1e-9
    /// relative: statrs' normal tail is that accurate, SciPy's more so.
    #[test]
    fn matches_statsmodels() {
        let cases = [
            (
                (120, 1000, 150, 1000),
                1.963_049_807_622_355,
                0.049_640_386_865_368_78,
                7.602_882_129_777_86e-05,
                0.059_923_971_178_702_22,
            ),
            (
                (15, 10000, 5, 10000),
                -2.237_186_850_713_414_3,
                0.025_274_130_407_633_034,
                -0.001_875_974_542_685_831_7,
                -0.000_124_025_457_314_168_35,
            ),
            (
                (3, 40, 9, 38),
                1.980_149_697_110_424_9,
                0.047_686_710_267_699_28,
                0.003_935_416_763_462_846,
                0.319_748_793_762_852_9,
            ),
            (
                (500, 500, 499, 500),
                -1.000_500_375_312_774_1,
                0.317_068_416_092_514_57,
                -0.005_916_006_079_184_631,
                0.001_916_006_079_184_627_2,
            ),
        ];
        for ((c, nc, t, nt), z, p, lo, hi) in cases {
            let r =
                two_proportion_test(Proportion::new(c, nc), Proportion::new(t, nt), 0.05).unwrap();
            assert!(close(r.z, z, 1e-12), "z {} vs {z}", r.z);
            assert!(close(r.p_value, p, 1e-9), "p {} vs {p}", r.p_value);
            assert!(close(r.ci_low, lo, 1e-12), "lo {} vs {lo}", r.ci_low);
            assert!(close(r.ci_high, hi, 1e-12), "hi {} vs {hi}", r.ci_high);
        }
    }

    #[test]
    fn degenerate_groups_show_no_difference() {
        let r =
            two_proportion_test(Proportion::new(0, 500), Proportion::new(0, 500), 0.05).unwrap();
        assert_eq!((r.z, r.p_value, r.difference), (0.0, 1.0, 0.0));
        assert_eq!(r.relative_change, None);
    }

    #[test]
    fn rejects_bad_input() {
        let ok = Proportion::new(1, 10);
        assert_eq!(
            two_proportion_test(Proportion::new(0, 0), ok, 0.05),
            Err(AnalysisError::Empty { group: "control" })
        );
        assert_eq!(
            two_proportion_test(ok, Proportion::new(11, 10), 0.05),
            Err(AnalysisError::SuccessesExceedTrials {
                group: "treatment",
                successes: 11,
                trials: 10
            })
        );
        assert!(matches!(
            two_proportion_test(ok, ok, 1.0),
            Err(AnalysisError::InvalidAlpha(_))
        ));
        assert!(matches!(
            two_proportion_test(ok, ok, f64::NAN),
            Err(AnalysisError::InvalidAlpha(_))
        ));
    }

    proptest! {
        #[test]
        fn p_value_in_unit_interval_and_symmetric(
            c in 0u64..1000, nc in 1u64..1000, t in 0u64..1000, nt in 1u64..1000,
        ) {
            let (c, t) = (c.min(nc), t.min(nt));
            let ab = two_proportion_test(Proportion::new(c, nc), Proportion::new(t, nt), 0.05).unwrap();
            let ba = two_proportion_test(Proportion::new(t, nt), Proportion::new(c, nc), 0.05).unwrap();
            prop_assert!((0.0..=1.0).contains(&ab.p_value));
            prop_assert!((ab.p_value - ba.p_value).abs() < 1e-12);
            prop_assert!(ab.ci_low <= ab.difference && ab.difference <= ab.ci_high);
        }
    }
}
