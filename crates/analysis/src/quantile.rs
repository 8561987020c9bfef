//! Sample quantiles.

/// The `q`-quantile of `values` by R's default definition (type 7, NumPy's `linear`):
/// `h = (n - 1) q`, interpolating between the order statistics around `h`.
///
/// NaN values are ignored. Returns `None` for no (non-NaN) values or `q` outside `[0, 1]`.
///
/// ```
/// use cutover_analysis::quantile_r7;
/// assert_eq!(quantile_r7(&[4.0, 1.0, 3.0, 2.0], 0.5), Some(2.5));
/// assert_eq!(quantile_r7(&[], 0.5), None);
/// ```
pub fn quantile_r7(values: &[f64], q: f64) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let h = (sorted.len() - 1) as f64 * q;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    #[allow(clippy::cast_precision_loss)]
    let frac = h - lo as f64;
    Some(sorted[lo] + frac * (sorted[hi] - sorted[lo]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from NumPy 2 `np.quantile` (method `linear`, R type 7).
    #[test]
    fn matches_numpy_linear() {
        let cases: [(&[f64], f64, f64); 7] = [
            (&[1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
            (&[1.0, 2.0, 3.0, 4.0], 0.9, 3.7),
            (&[3.0, 1.0, 2.0], 0.99, 2.98),
            (&[10.0], 0.5, 10.0),
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0],
                0.95,
                59.049_999_999_999_905,
            ),
            (&[5.0, 1.0, 4.0, 2.0, 3.0], 0.0, 1.0),
            (&[5.0, 1.0, 4.0, 2.0, 3.0], 1.0, 5.0),
        ];
        for (values, q, want) in cases {
            let got = quantile_r7(values, q).unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{values:?} q={q}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn ignores_nan_and_rejects_bad_q() {
        assert_eq!(quantile_r7(&[f64::NAN, 1.0, 3.0], 0.5), Some(2.0));
        assert_eq!(quantile_r7(&[f64::NAN], 0.5), None);
        assert_eq!(quantile_r7(&[1.0], 1.5), None);
    }
}
