//! The Mann-Whitney U test (Wilcoxon rank-sum), and the location shift's estimate and
//! confidence interval in R's `wilcox.test` semantics.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::AnalysisError;
use crate::rank::{Merged, Shifted, rank_sum, sorted};
use crate::zeroin::zeroin;

/// Which alternative hypothesis a test's p-value is for. `Greater` means x tends to be larger
/// than y.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Alternative {
    /// x and y differ in either direction.
    #[default]
    #[serde(rename = "two-sided", alias = "two_sided", alias = "two.sided")]
    TwoSided,
    /// x tends to be larger than y.
    #[serde(rename = "greater")]
    Greater,
    /// x tends to be smaller than y.
    #[serde(rename = "less")]
    Less,
}

/// How the Mann-Whitney p-value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// R's rule: exact when both samples have fewer than 50 values and there are no ties,
    /// otherwise the normal approximation.
    #[default]
    Auto,
    /// The exact null distribution of U (no ties allowed), for `m·n` up to
    /// [`EXACT_MAX_PAIRS`].
    Exact,
    /// The normal approximation with the tie correction of σ.
    Asymptotic,
}

/// The largest `m·n` for which the exact distribution of U is computed.
pub const EXACT_MAX_PAIRS: usize = 10_000;

/// The result of [`mann_whitney`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U of x: the number of pairs with `x_i > y_j`, ties counting one half (SciPy's `U1`).
    pub u: f64,
    /// The p-value for the requested alternative.
    pub p_value: f64,
    /// Whether the exact distribution was used (false: the normal approximation).
    pub exact: bool,
}

fn check(values: &[f64], group: &'static str) -> Result<(), AnalysisError> {
    if values.is_empty() {
        return Err(AnalysisError::Empty { group });
    }
    if values.iter().any(|v| v.is_nan()) {
        return Err(AnalysisError::NotANumber { group });
    }
    Ok(())
}

/// The Mann-Whitney U test of x against y.
///
/// Matches SciPy's `mannwhitneyu(x, y, alternative, method, use_continuity)` and R's
/// `wilcox.test(x, y, exact, correct)`:
/// - exact: two-sided `p = min(1, 2·min(P(U ≤ u), P(U ≥ u)))` under the no-ties null;
/// - asymptotic: `z = (U − mn/2 − c)/σ` with σ corrected for ties and `c` the continuity
///   correction (±0.5 toward zero for two-sided, +0.5 for greater, −0.5 for less).
///
/// When every value is tied, σ is zero and the data shows no difference: `p = 1` (SciPy
/// returns NaN here, R an error).
///
/// Errors on an empty sample, NaN, or `Exact` with ties or more than [`EXACT_MAX_PAIRS`] pairs.
///
/// ```
/// use cutover_analysis::{Alternative, Method, mann_whitney};
/// let x = [19.0, 22.0, 16.0, 29.0, 24.0];
/// let y = [20.0, 11.0, 17.0, 12.0];
/// let r = mann_whitney(&x, &y, Alternative::TwoSided, Method::Exact, true)?;
/// assert_eq!(r.u, 17.0);
/// assert!((r.p_value - 0.111_111_111_1).abs() < 1e-10);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn mann_whitney(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    method: Method,
    continuity: bool,
) -> Result<MannWhitney, AnalysisError> {
    if x.is_empty() {
        return Err(AnalysisError::Empty { group: "x" });
    }
    if y.is_empty() {
        return Err(AnalysisError::Empty { group: "y" });
    }
    let Merged { u, ties } = rank_sum(x, y)?;
    let (m, n) = (x.len(), y.len());
    let exact = match method {
        Method::Exact => {
            if ties > 0.0 {
                return Err(AnalysisError::ExactWithTies);
            }
            true
        }
        Method::Asymptotic => false,
        Method::Auto => m < 50 && n < 50 && ties == 0.0,
    };
    let p_value = if exact {
        exact_p(u, m, n, alternative)?
    } else {
        asymptotic_p(u, m, n, ties, alternative, continuity)
    };
    Ok(MannWhitney { u, p_value, exact })
}

#[allow(clippy::cast_precision_loss)]
fn sigma(m: usize, n: usize, ties: f64) -> f64 {
    let (mf, nf) = (m as f64, n as f64);
    let big_n = mf + nf;
    let tie_part = if big_n > 1.0 {
        ties / (big_n * (big_n - 1.0))
    } else {
        0.0
    };
    (mf * nf / 12.0 * ((big_n + 1.0) - tie_part))
        .max(0.0)
        .sqrt()
}

#[allow(clippy::cast_precision_loss)]
fn asymptotic_p(
    u: f64,
    m: usize,
    n: usize,
    ties: f64,
    alternative: Alternative,
    continuity: bool,
) -> f64 {
    let s = sigma(m, n, ties);
    if s == 0.0 || !s.is_finite() {
        return 1.0;
    }
    let dz = u - m as f64 * n as f64 / 2.0;
    let correction = if continuity {
        match alternative {
            Alternative::TwoSided => 0.5 * sign(dz),
            Alternative::Greater => 0.5,
            Alternative::Less => -0.5,
        }
    } else {
        0.0
    };
    let z = (dz - correction) / s;
    let normal = Normal::standard();
    let p = match alternative {
        Alternative::TwoSided => 2.0 * normal.cdf(z).min(normal.sf(z)),
        Alternative::Greater => normal.sf(z),
        Alternative::Less => normal.cdf(z),
    };
    p.clamp(0.0, 1.0)
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The exact null distribution of U for samples of `m` and `n` without ties: `P(U = k)` for
/// `k = 0..=m·n`.
///
/// A dynamic programme over the combined order: walking the `m + n` positions, an x placed
/// after `k` y values adds `k` to U. Counts are kept in f64 (exact up to 2^53, relatively
/// accurate beyond) and divided by their total at the end.
pub(crate) fn exact_distribution(m: usize, n: usize) -> Result<Vec<f64>, AnalysisError> {
    let pairs = m.saturating_mul(n);
    if pairs > EXACT_MAX_PAIRS {
        return Err(AnalysisError::ExactTooLarge { m, n });
    }
    // f(i, j, u) = f(i − 1, j, u − j) + f(i, j − 1, u): the last of the i + j values is either
    // an x (after all j y values, adding j to U) or a y (adding nothing).
    let mut prev: Vec<Vec<f64>> = (0..=m).map(|_| vec![1.0]).collect(); // j = 0
    for j in 1..=n {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(m + 1);
        cur.push(vec![1.0]);
        for i in 1..=m {
            let mut row = vec![0.0; i * j + 1];
            for (u, c) in cur[i - 1].iter().enumerate() {
                row[u + j] += c;
            }
            for (u, c) in prev[i].iter().enumerate() {
                row[u] += c;
            }
            cur.push(row);
        }
        prev = cur;
    }
    let row = &prev[m];
    let total: f64 = row.iter().sum();
    Ok(row.iter().map(|c| c / total).collect())
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn exact_p(u: f64, m: usize, n: usize, alternative: Alternative) -> Result<f64, AnalysisError> {
    let dist = exact_distribution(m, n)?;
    // No ties: U is an integer.
    let k = u.round() as usize;
    let lower: f64 = dist[..=k].iter().sum(); // P(U <= u)
    let upper: f64 = dist[k..].iter().sum(); // P(U >= u)
    let p = match alternative {
        Alternative::TwoSided => 2.0 * lower.min(upper),
        Alternative::Greater => upper,
        Alternative::Less => lower,
    };
    Ok(p.clamp(0.0, 1.0))
}

/// A location shift of x relative to y: its estimate and confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShiftInterval {
    /// Lower end of the interval.
    pub lower: f64,
    /// Upper end of the interval.
    pub upper: f64,
    /// The point estimate.
    pub estimate: f64,
}

fn check_conf(conf_level: f64) -> Result<(), AnalysisError> {
    if conf_level > 0.0 && conf_level < 1.0 {
        Ok(())
    } else {
        Err(AnalysisError::InvalidConfLevel(conf_level))
    }
}

fn check_finite(values: &[f64], group: &'static str) -> Result<(), AnalysisError> {
    check(values, group)?;
    if values.iter().any(|v| v.is_infinite()) {
        return Err(AnalysisError::Infinite { group });
    }
    Ok(())
}

/// The confidence interval and estimate of the shift of x relative to y by inverting the
/// normal approximation of the rank-sum statistic: R's
/// `wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE)`, as Kayenta's
/// `MannWhitney.scala` reproduces it (ANALYSIS.md §1.4).
///
/// `W(d) = (dz − 0.5·sign(dz))/σ(d)` with `dz` the centred rank sum of `x − d` among `y` and
/// σ tie-corrected; the interval ends are the roots of `W(d) = ±z` found by [`zeroin`] (R's
/// `uniroot`, tol 1e-4) on `[min x − max y, max x − min y]`, an end being the search bound when
/// W does not cross there. The estimate is the root of `W(d) = 0` **with** the continuity
/// correction, as in Kayenta (and in R before 4.0; R 4.x drops the correction for the
/// estimate, so estimates may differ from current R by one step of W).
///
/// Errors on empty samples, NaN or infinite values, a confidence level outside (0, 1), and
/// when every value is tied (σ = 0), where R stops with "cannot compute confidence interval
/// when all observations are tied". Two constant samples that differ by `d` give the point
/// interval `[d, d]`: every pairwise difference is `d` (R stops there too, or not, depending
/// on whether `x − d` rounds back to `y`).
///
/// ```
/// use cutover_analysis::shift_interval;
/// let x = [19.0, 22.0, 16.0, 29.0, 24.0];
/// let y = [20.0, 11.0, 17.0, 12.0];
/// let ci = shift_interval(&x, &y, 0.98)?;
/// assert_eq!((ci.lower, ci.upper, ci.estimate), (-4.0, 18.0, 7.0));
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn shift_interval(
    x: &[f64],
    y: &[f64],
    conf_level: f64,
) -> Result<ShiftInterval, AnalysisError> {
    check_conf(conf_level)?;
    check_finite(x, "x")?;
    check_finite(y, "y")?;
    shift_interval_sorted(&sorted(x), &sorted(y), conf_level)
}

/// [`shift_interval`] on finite samples already sorted ascending.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn shift_interval_sorted(
    xs: &[f64],
    ys: &[f64],
    conf_level: f64,
) -> Result<ShiftInterval, AnalysisError> {
    let (m, n) = (xs.len(), ys.len());
    let (mf, nf) = (m as f64, n as f64);
    let half = mf * nf / 2.0;
    let mut failed = false;
    let shifted = Shifted::new(xs, ys);
    let mut w = |d: f64, zq: f64| {
        let merged = shifted.merge(d);
        let dz = merged.u - half;
        let s = sigma(m, n, merged.ties);
        if s == 0.0 {
            failed = true;
            return f64::NAN;
        }
        (dz - 0.5 * sign(dz)) / s - zq
    };
    let mumin = xs[0] - ys[n - 1];
    let mumax = xs[m - 1] - ys[0];
    if mumin == mumax {
        // Both samples are constant: every pairwise difference is the same d. Decided here
        // rather than by W(d), whose x − d rounds back to y in one direction and not in the
        // other, so swapping the samples would not mirror the answer.
        if mumin == 0.0 {
            return Err(AnalysisError::AllTied);
        }
        return Ok(ShiftInterval {
            lower: mumin,
            upper: mumin,
            estimate: mumin,
        });
    }
    let z = Normal::standard()
        .inverse_cdf((1.0 - conf_level) / 2.0)
        .abs();
    let mut root = |zq: f64| {
        let fl = w(mumin, zq);
        let fu = w(mumax, zq);
        if fl <= 0.0 {
            return mumin;
        }
        if fu >= 0.0 {
            return mumax;
        }
        zeroin(mumin, mumax, fl, fu, |d| w(d, zq), 1e-4, 1000)
    };
    let lower = root(z);
    let upper = root(-z);
    let (fl, fu) = (w(mumin, 0.0), w(mumax, 0.0));
    let estimate = zeroin(mumin, mumax, fl, fu, |d| w(d, 0.0), 1e-4, 1000);
    if failed || [lower, upper, estimate].iter().any(|v| v.is_nan()) {
        return Err(AnalysisError::AllTied);
    }
    Ok(ShiftInterval {
        lower,
        upper,
        estimate,
    })
}

/// The exact Hodges-Lehmann estimate and confidence interval of the shift of x relative to
/// y, as R's `wilcox.test(x, y, conf.int = TRUE, exact = TRUE)` for small samples without
/// ties: the estimate is the median of the pairwise differences `x_i − y_j`, the interval
/// `[d(qu), d(mn − qu + 1)]` of the sorted differences with `qu = qwilcox(α/2, m, n)` (1 when
/// that is 0).
///
/// Errors as [`shift_interval`], and when `m·n` exceeds [`EXACT_MAX_PAIRS`].
///
/// ```
/// use cutover_analysis::hodges_lehmann;
/// let ci = hodges_lehmann(&[19.0, 22.0, 16.0, 29.0, 24.0], &[20.0, 11.0, 17.0, 12.0], 0.95)?;
/// assert_eq!((ci.lower, ci.upper, ci.estimate), (-1.0, 17.0, 7.0));
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
pub fn hodges_lehmann(
    x: &[f64],
    y: &[f64],
    conf_level: f64,
) -> Result<ShiftInterval, AnalysisError> {
    check_conf(conf_level)?;
    check_finite(x, "x")?;
    check_finite(y, "y")?;
    let (m, n) = (x.len(), y.len());
    let dist = exact_distribution(m, n)?;
    let mut diffs: Vec<f64> = x
        .iter()
        .flat_map(|a| y.iter().map(move |b| a - b))
        .collect();
    diffs.sort_unstable_by(f64::total_cmp);
    let alpha = 1.0 - conf_level;
    // qwilcox(p): the smallest q with P(U <= q) >= p (R's `qwilcox`, with R's fuzz).
    let mut cumulative = 0.0;
    let mut qu = dist.len() - 1;
    for (q, p) in dist.iter().enumerate() {
        cumulative += p;
        if cumulative >= alpha / 2.0 * (1.0 - 64.0 * f64::EPSILON) {
            qu = q;
            break;
        }
    }
    if qu == 0 {
        qu = 1;
    }
    let mn = m * n;
    let lower = diffs[qu - 1];
    let upper = diffs[mn - qu];
    let estimate = if mn % 2 == 1 {
        diffs[mn / 2]
    } else {
        f64::midpoint(diffs[mn / 2 - 1], diffs[mn / 2])
    };
    Ok(ShiftInterval {
        lower,
        upper,
        estimate,
    })
}
