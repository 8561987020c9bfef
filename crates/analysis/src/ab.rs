//! A/B statistics: Fisher's exact test, the chi-square test of a 2×2 table, Welch's t-test,
//! and power and sample size for two proportions or two means.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use statrs::function::factorial::ln_factorial;

use crate::AnalysisError;
use crate::mann_whitney::Alternative;
use crate::zeroin::zeroin;

/// The result of [`fisher_exact`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FisherExact {
    /// The p-value for the requested alternative.
    pub p_value: f64,
    /// The sample odds ratio `ad / bc` (SciPy's; R reports the conditional MLE instead).
    /// Infinite when `bc = 0 < ad`, NaN when both are 0.
    pub odds_ratio: f64,
}

/// Fisher's exact test of the 2×2 table `[[a, b], [c, d]]`, conditional on its margins, as
/// SciPy's `fisher_exact` and R's `fisher.test`: `a` is hypergeometric; `Greater` is
/// `P(X ≥ a)` (the first row's odds are higher), `Less` is `P(X ≤ a)`, and two-sided sums
/// every table no more likely than the observed one (with R's relative fuzz of 1e-7).
///
/// For canary error rates use `[[canary errors, canary ok], [baseline errors, baseline ok]]`.
///
/// ```
/// use cutover_analysis::{Alternative, fisher_exact};
/// let r = fisher_exact([[3, 1], [1, 3]], Alternative::TwoSided)?;
/// assert!((r.p_value - 0.485_714_285_714_285_65).abs() < 1e-12);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn fisher_exact(
    table: [[u64; 2]; 2],
    alternative: Alternative,
) -> Result<FisherExact, AnalysisError> {
    let [[a, b], [c, d]] = table;
    let n = a + b + c + d;
    if n == 0 {
        return Err(AnalysisError::Invalid("the table is empty".into()));
    }
    let row1 = a + b;
    let col1 = a + c;
    let lo = row1.saturating_sub(n - col1);
    let hi = row1.min(col1);
    // ln P(X = x) for X ~ Hypergeometric(N = n, K = col1, draws = row1).
    let ln_total = ln_choose(n, row1);
    let ln_p = |x: u64| ln_choose(col1, x) + ln_choose(n - col1, row1 - x) - ln_total;
    let p = |x: u64| ln_p(x).exp();
    let p_value = match alternative {
        Alternative::Greater => (a..=hi).map(p).sum::<f64>(),
        Alternative::Less => (lo..=a).map(p).sum::<f64>(),
        Alternative::TwoSided => {
            let observed = ln_p(a);
            let limit = observed + 1e-7f64.ln_1p();
            (lo..=hi)
                .map(ln_p)
                .filter(|&l| l <= limit)
                .map(f64::exp)
                .sum::<f64>()
        }
    };
    #[allow(clippy::cast_precision_loss)]
    let odds_ratio = (a as f64 * d as f64) / (b as f64 * c as f64);
    Ok(FisherExact {
        p_value: p_value.clamp(0.0, 1.0),
        odds_ratio,
    })
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// The result of [`chi_square_2x2`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquare {
    /// Pearson's statistic (with Yates' correction when asked).
    pub statistic: f64,
    /// Its p-value on one degree of freedom.
    pub p_value: f64,
}

/// Pearson's chi-square test of independence of a 2×2 table, with or without Yates'
/// continuity correction: SciPy's `chi2_contingency(table, correction)` (R's `chisq.test`).
/// This is the two-sided test of two proportions.
///
/// Errors when a row or a column is all zero (an expected count of zero).
///
/// ```
/// use cutover_analysis::chi_square_2x2;
/// let r = chi_square_2x2([[120, 880], [150, 850]], false)?;
/// assert!((r.p_value - 0.049_640_386_865_368_83).abs() < 1e-10); // SciPy
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[allow(clippy::cast_precision_loss)]
pub fn chi_square_2x2(table: [[u64; 2]; 2], correction: bool) -> Result<ChiSquare, AnalysisError> {
    let t = table.map(|row| row.map(|v| v as f64));
    let rows = [t[0][0] + t[0][1], t[1][0] + t[1][1]];
    let cols = [t[0][0] + t[1][0], t[0][1] + t[1][1]];
    let n = rows[0] + rows[1];
    if rows.contains(&0.0) || cols.contains(&0.0) {
        return Err(AnalysisError::Invalid(
            "a row or a column of the table is all zero".into(),
        ));
    }
    let mut statistic = 0.0;
    for (i, row) in t.iter().enumerate() {
        for (j, &observed) in row.iter().enumerate() {
            let expected = rows[i] * cols[j] / n;
            let mut diff = (observed - expected).abs();
            if correction {
                diff -= diff.min(0.5);
            }
            statistic += diff * diff / expected;
        }
    }
    // The chi-square tail on 1 df is the two-sided normal tail of √statistic.
    let p_value = 2.0 * Normal::standard().sf(statistic.sqrt());
    Ok(ChiSquare {
        statistic,
        p_value: p_value.clamp(0.0, 1.0),
    })
}

/// The result of [`welch_t_test`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchTest {
    /// `(mean x − mean y) / √(s²x/nx + s²y/ny)`.
    pub t: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// `mean x − mean y`.
    pub difference: f64,
}

/// Welch's two-sample t-test (unequal variances), two-sided: SciPy's
/// `ttest_ind(x, y, equal_var=False)`, R's `t.test(x, y)`.
///
/// Errors with fewer than two values in a sample, non-finite values, or zero variance in both.
///
/// ```
/// use cutover_analysis::welch_t_test;
/// let r = welch_t_test(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0, 10.0])?;
/// assert!(r.t < 0.0 && r.p_value < 0.1);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn welch_t_test(x: &[f64], y: &[f64]) -> Result<WelchTest, AnalysisError> {
    let (mx, vx, nx) = moments(x, "x")?;
    let (my, vy, ny) = moments(y, "y")?;
    let (sx, sy) = (vx / nx, vy / ny);
    let se2 = sx + sy;
    if se2 == 0.0 {
        return Err(AnalysisError::Invalid(
            "both samples have zero variance".into(),
        ));
    }
    let difference = mx - my;
    let t = difference / se2.sqrt();
    let df = se2 * se2 / (sx * sx / (nx - 1.0) + sy * sy / (ny - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df)
        .map_err(|e| AnalysisError::Invalid(format!("degrees of freedom {df}: {e}")))?;
    let p_value = (2.0 * dist.sf(t.abs())).clamp(0.0, 1.0);
    Ok(WelchTest {
        t,
        df,
        p_value,
        difference,
    })
}

#[allow(clippy::cast_precision_loss)]
fn moments(v: &[f64], group: &'static str) -> Result<(f64, f64, f64), AnalysisError> {
    if v.len() < 2 {
        return Err(AnalysisError::Invalid(format!(
            "sample `{group}` needs at least two values"
        )));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(AnalysisError::Infinite { group });
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    Ok((mean, var, n))
}

/// Settings shared by the power calculators.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerSettings {
    /// Significance level.
    pub alpha: f64,
    /// Size of the second group relative to the first (`n2 = ratio · n1`).
    pub ratio: f64,
    /// `Greater`: the second group's value is higher; `Less`: lower; or either.
    pub alternative: Alternative,
}

impl Default for PowerSettings {
    /// α = 0.05, equal groups, two-sided.
    fn default() -> Self {
        PowerSettings {
            alpha: 0.05,
            ratio: 1.0,
            alternative: Alternative::TwoSided,
        }
    }
}

impl PowerSettings {
    fn check(self) -> Result<Self, AnalysisError> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(AnalysisError::InvalidAlpha(self.alpha));
        }
        if !(self.ratio > 0.0 && self.ratio.is_finite()) {
            return Err(AnalysisError::Invalid(format!(
                "ratio must be positive, got {}",
                self.ratio
            )));
        }
        Ok(self)
    }
}

/// Cohen's h for two proportions, `2·asin√p2 − 2·asin√p1` (statsmodels'
/// `proportion_effectsize(p2, p1)`).
pub fn cohens_h(p1: f64, p2: f64) -> Result<f64, AnalysisError> {
    for p in [p1, p2] {
        if !(0.0..=1.0).contains(&p) {
            return Err(AnalysisError::Invalid(format!(
                "a proportion must lie in [0, 1], got {p}"
            )));
        }
    }
    Ok(2.0 * p2.sqrt().asin() - 2.0 * p1.sqrt().asin())
}

/// Power of the normal (z) test for a standardized effect `effect_size` with `n1` in the first
/// group: statsmodels' `NormalIndPower().power(effect_size, nobs1, alpha, ratio, alternative)`.
pub fn power_normal(
    effect_size: f64,
    n1: f64,
    settings: PowerSettings,
) -> Result<f64, AnalysisError> {
    let s = settings.check()?;
    if n1.is_nan() || n1 <= 0.0 || !effect_size.is_finite() {
        return Err(AnalysisError::Invalid(format!(
            "need a positive sample size and a finite effect, got n1 = {n1}, effect = {effect_size}"
        )));
    }
    Ok(power_unchecked(effect_size, n1, s))
}

fn power_unchecked(d: f64, n1: f64, s: PowerSettings) -> f64 {
    let n2 = n1 * s.ratio;
    let nobs = 1.0 / (1.0 / n1 + 1.0 / n2);
    let shift = d * nobs.sqrt();
    let normal = Normal::standard();
    match s.alternative {
        Alternative::Greater => normal.sf(normal.inverse_cdf(1.0 - s.alpha) - shift),
        Alternative::Less => normal.cdf(normal.inverse_cdf(s.alpha) - shift),
        Alternative::TwoSided => {
            let crit = normal.inverse_cdf(1.0 - s.alpha / 2.0);
            normal.sf(crit - shift) + normal.cdf(-crit - shift)
        }
    }
}

/// The first group's size (fractional; round up) for the normal test of `effect_size` to
/// reach `power`: statsmodels' `NormalIndPower().solve_power(effect_size, alpha=…, power=…,
/// ratio=…, alternative=…)`.
pub fn sample_size_normal(
    effect_size: f64,
    power: f64,
    settings: PowerSettings,
) -> Result<f64, AnalysisError> {
    let s = settings.check()?;
    if !(power > s.alpha && power < 1.0) {
        return Err(AnalysisError::Invalid(format!(
            "power must lie between alpha ({}) and 1, got {power}",
            s.alpha
        )));
    }
    let wrong_way = match s.alternative {
        Alternative::Greater => effect_size <= 0.0,
        Alternative::Less => effect_size >= 0.0,
        Alternative::TwoSided => effect_size == 0.0,
    };
    if wrong_way || !effect_size.is_finite() {
        return Err(AnalysisError::Invalid(format!(
            "an effect of {effect_size} can never be detected by this test"
        )));
    }
    let f = |n: f64| power_unchecked(effect_size, n, s) - power;
    let lo = 1e-6;
    let mut hi = 1.0;
    while f(hi) < 0.0 {
        hi *= 2.0;
        if hi > 1e18 {
            return Err(AnalysisError::Invalid(
                "the sample size is unbounded".into(),
            ));
        }
    }
    Ok(zeroin(lo, hi, f(lo), f(hi), f, 1e-12 * hi, 1000))
}

/// Power of the two-proportion test (normal approximation on Cohen's h) with `n1` in the first
/// group, of rate `p1`, and `ratio · n1` in the second, of rate `p2`.
///
/// ```
/// use cutover_analysis::{PowerSettings, power_two_proportions, sample_size_two_proportions};
/// let n = sample_size_two_proportions(0.10, 0.12, 0.8, PowerSettings::default())?;
/// assert!((3830.0..3850.0).contains(&n));
/// let p = power_two_proportions(0.10, 0.12, n, PowerSettings::default())?;
/// assert!((p - 0.8).abs() < 1e-9);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn power_two_proportions(
    p1: f64,
    p2: f64,
    n1: f64,
    settings: PowerSettings,
) -> Result<f64, AnalysisError> {
    power_normal(cohens_h(p1, p2)?, n1, settings)
}

/// The first group's size to detect rates `p1` → `p2` with `power` (see
/// [`power_two_proportions`]).
pub fn sample_size_two_proportions(
    p1: f64,
    p2: f64,
    power: f64,
    settings: PowerSettings,
) -> Result<f64, AnalysisError> {
    sample_size_normal(cohens_h(p1, p2)?, power, settings)
}

/// The first group's size to detect a difference of means of `difference` with standard
/// deviation `sd` (Cohen's d = difference / sd) with `power`, by the normal approximation.
pub fn sample_size_two_means(
    difference: f64,
    sd: f64,
    power: f64,
    settings: PowerSettings,
) -> Result<f64, AnalysisError> {
    if sd.is_nan() || sd <= 0.0 {
        return Err(AnalysisError::Invalid(format!(
            "sd must be positive, got {sd}"
        )));
    }
    sample_size_normal(difference / sd, power, settings)
}

/// Power to detect a difference of means of `difference` with standard deviation `sd`, with
/// `n1` in the first group, by the normal approximation.
pub fn power_two_means(
    difference: f64,
    sd: f64,
    n1: f64,
    settings: PowerSettings,
) -> Result<f64, AnalysisError> {
    if sd.is_nan() || sd <= 0.0 {
        return Err(AnalysisError::Invalid(format!(
            "sd must be positive, got {sd}"
        )));
    }
    power_normal(difference / sd, n1, settings)
}
