//! Group-sequential boundaries (one-sided, upper boundary only) for equally spaced looks:
//! Lan-DeMets alpha spending and the classic O'Brien-Fleming shape, computed by recursive
//! numerical integration of the joint distribution of the z-statistics (Armitage-McPherson-Rowe,
//! Jennison & Turnbull ch. 19) with Simpson's rule on a grid finer than the step's spread.

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;

/// Lower end of the integration grid on the z scale (the mass below it is < 1e-15).
const Z_LOW: f64 = -8.0;
/// Upper end of the grid when a look has no finite boundary.
const Z_HIGH: f64 = 8.0;

fn pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() * 0.398_942_280_401_432_7
}

fn upper_tail(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// A density of the z-statistic on a grid, with Simpson weights folded in.
struct Density {
    z: Vec<f64>,
    /// density × Simpson weight.
    w: Vec<f64>,
}

/// Odd number of grid points on [lo, hi] with step at most `h`, and Simpson weights.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn grid(lo: f64, hi: f64, h: f64) -> (Vec<f64>, Vec<f64>) {
    let mut m = ((hi - lo) / h).ceil() as usize + 1;
    if m.is_multiple_of(2) {
        m += 1;
    }
    m = m.max(3);
    let step = (hi - lo) / (m - 1) as f64;
    let z = (0..m).map(|i| lo + step * i as f64).collect();
    let w = (0..m)
        .map(|i| {
            let c = if i == 0 || i == m - 1 {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            c * step / 3.0
        })
        .collect();
    (z, w)
}

/// The recursion over looks at information fractions `t` (increasing, last = 1).
struct Recursion<'a> {
    t: &'a [f64],
}

impl Recursion<'_> {
    /// P(cross `c` at look k, not before) given the sub-density at look k − 1.
    fn crossing(&self, k: usize, prev: Option<&Density>, c: f64) -> f64 {
        if c.is_infinite() {
            return 0.0;
        }
        match prev {
            None => upper_tail(c),
            Some(d) => {
                let (ik, ip) = (self.t[k], self.t[k - 1]);
                let sd = (ik - ip).sqrt();
                d.z.iter()
                    .zip(&d.w)
                    .map(|(&y, &w)| w * upper_tail((c * ik.sqrt() - y * ip.sqrt()) / sd))
                    .sum()
            }
        }
    }

    /// The sub-density of Z_k on (−8, min(c_k, 8)) given no crossing up to k.
    fn density(&self, k: usize, prev: Option<&Density>, c: f64) -> Density {
        let hi = c.min(Z_HIGH);
        let ik = self.t[k];
        let step_sd = if k == 0 {
            1.0
        } else {
            ((ik - self.t[k - 1]) / ik).sqrt()
        };
        let (z, simpson) = grid(Z_LOW, hi, (step_sd / 6.0).min(0.05));
        let dens: Vec<f64> = match prev {
            None => z.iter().map(|&x| pdf(x)).collect(),
            Some(d) => {
                let ip = self.t[k - 1];
                let sd = (ik - ip).sqrt();
                let scale = ik.sqrt() / sd;
                z.iter()
                    .map(|&x| {
                        let a = x * ik.sqrt();
                        d.z.iter()
                            .zip(&d.w)
                            .map(|(&y, &w)| w * pdf((a - y * ip.sqrt()) / sd))
                            .sum::<f64>()
                            * scale
                    })
                    .collect()
            }
        };
        let w = dens.iter().zip(&simpson).map(|(d, s)| d * s).collect();
        Density { z, w }
    }
}

/// Upper boundaries (z scale) for looks at information fractions `t` with cumulative
/// one-sided alpha spent `spent(t)`. A look with nothing to spend gets `+∞`.
pub(crate) fn spending_bounds(t: &[f64], spent: impl Fn(f64) -> f64) -> Vec<f64> {
    let r = Recursion { t };
    let mut out = Vec::with_capacity(t.len());
    let mut prev: Option<Density> = None;
    let mut before = 0.0;
    for k in 0..t.len() {
        let now = spent(t[k]);
        let target = now - before;
        before = now;
        let c = if target < 1e-13 {
            f64::INFINITY
        } else {
            let (mut lo, mut hi) = (-2.0_f64, 30.0_f64);
            for _ in 0..80 {
                let mid = 0.5 * (lo + hi);
                if r.crossing(k, prev.as_ref(), mid) > target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            0.5 * (lo + hi)
        };
        out.push(c);
        if k + 1 < t.len() {
            prev = Some(r.density(k, prev.as_ref(), c));
        }
    }
    out
}

#[cfg(test)]
/// Total probability under H0 of crossing any of `bounds` at looks `t`.
pub(crate) fn total_crossing(t: &[f64], bounds: &[f64]) -> f64 {
    let r = Recursion { t };
    let mut prev: Option<Density> = None;
    let mut total = 0.0;
    for (k, &c) in bounds.iter().enumerate() {
        total += r.crossing(k, prev.as_ref(), c);
        if k + 1 < t.len() {
            prev = Some(r.density(k, prev.as_ref(), c));
        }
    }
    total
}

/// Lan-DeMets O'Brien-Fleming-type spending: α(t) = 2 − 2Φ(Φ⁻¹(1 − α/2)/√t).
pub(crate) fn obf_spending(alpha: f64) -> impl Fn(f64) -> f64 {
    let q = Normal::standard().inverse_cdf(1.0 - alpha / 2.0);
    move |t| 2.0 * upper_tail(q / t.sqrt())
}

#[cfg(test)]
/// Lan-DeMets Pocock-type spending: α(t) = α·ln(1 + (e − 1)t).
pub(crate) fn pocock_spending(alpha: f64) -> impl Fn(f64) -> f64 {
    move |t| alpha * (1.0 + (std::f64::consts::E - 1.0) * t).ln()
}

#[cfg(test)]
/// Classic O'Brien-Fleming boundaries c_k = C·√(K/k) with total one-sided level `alpha`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn classic_obf(k: usize, alpha: f64) -> Vec<f64> {
    let t = equally_spaced(k);
    let shape = |c: f64| {
        (1..=k)
            .map(|i| c * (k as f64 / i as f64).sqrt())
            .collect::<Vec<_>>()
    };
    let (mut lo, mut hi) = (1.0_f64, 5.0_f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if total_crossing(&t, &shape(mid)) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    shape(0.5 * (lo + hi))
}

/// Information fractions k/K, k = 1..K.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn equally_spaced(k: usize) -> Vec<f64> {
    (1..=k).map(|i| i as f64 / k as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 6e-4, "got {got:?}, want {want:?}");
        }
    }

    // ANALYSIS.md §5.4: rpact 3.3.4, K = 5, one-sided α = 0.025.
    #[test]
    fn reproduces_rpact_k5_boundaries() {
        let t = equally_spaced(5);
        close(
            &spending_bounds(&t, obf_spending(0.025)),
            &[4.8769, 3.3570, 2.6803, 2.2898, 2.0310],
        );
        close(
            &spending_bounds(&t, pocock_spending(0.025)),
            &[2.4380, 2.4268, 2.4102, 2.3966, 2.3860],
        );
        close(
            &classic_obf(5, 0.025),
            &[4.5617, 3.2256, 2.6337, 2.2809, 2.0401],
        );
    }

    #[test]
    fn spending_bounds_spend_exactly_alpha() {
        let t = equally_spaced(12);
        let b = spending_bounds(&t, obf_spending(0.025));
        assert!((total_crossing(&t, &b) - 0.025).abs() < 1e-6);
        assert!(
            b.windows(2).all(|w| w[0] > w[1]),
            "OBF boundaries fall: {b:?}"
        );
    }
}
