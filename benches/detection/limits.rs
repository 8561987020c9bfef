//! The physical limit (ANALYSIS.md §3, §6): Wald's power-one SPRT with the true parameters
//! known. Closed-form expected sample sizes for the reference table, and the log-likelihood
//! ratio increments the `sprt` detector accumulates on the simulated traffic.

#[cfg(test)]
/// Kullback-Leibler divergence KL(Bernoulli(p) ‖ Bernoulli(q)).
pub(crate) fn kl_bernoulli(p: f64, q: f64) -> f64 {
    p * (p / q).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - q)).ln()
}

#[cfg(test)]
/// Expected number of observations of a power-one SPRT with threshold ln(1/α), without
/// overshoot: ln(1/α) / KL per observation.
pub(crate) fn power_one_n(alpha: f64, kl: f64) -> f64 {
    (1.0 / alpha).ln() / kl
}

/// Two-sample errors: the probability that an error event is the canary's, for error rates
/// `p0` (control) and `p1` (canary) and equal traffic.
pub(crate) fn canary_event_share(p0: f64, p1: f64) -> f64 {
    p1 / (p0 + p1)
}

/// Two-sample errors: LLR of one window's error events (`control`, `canary`) under a known
/// canary share `theta1` of events against 1/2.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn llr_event_labels(control: u64, canary: u64, theta1: f64) -> f64 {
    canary as f64 * (theta1 / 0.5).ln() + control as f64 * ((1.0 - theta1) / 0.5).ln()
}

/// Normal mean shift `delta` with known variance `var`: LLR of the sum of `n` observations.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn llr_normal_sum(sum: f64, n: usize, delta: f64, var: f64) -> f64 {
    delta / var * (sum - n as f64 * delta / 2.0)
}

/// One-sample tail: LLR of one log-latency `x` under (1 − ε)N(μ, s²) + εN(μ + ln k, s²)
/// against N(μ, s²).
pub(crate) fn llr_tail(x: f64, mu: f64, sd: f64, share: f64, factor: f64) -> f64 {
    let d = factor.ln();
    let z = (x - mu) / (sd * sd);
    (1.0 - share + share * (z * d - d * d / (2.0 * sd * sd)).exp()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    // ANALYSIS.md §6 reference table (R = 100 req/s/arm, power-one, α = 0.05).
    #[test]
    fn matches_the_reference_table() {
        let theta = canary_event_share(0.01, 0.02);
        let kl = kl_bernoulli(theta, 0.5);
        assert!((kl - 0.05663).abs() < 1e-4, "{kl}");
        let n = power_one_n(0.05, kl);
        assert!((n - 52.9).abs() < 0.1, "1%->2%: {n} events");
        // 52.9 events at 3 events/s (1 + 2 per second) = 17.6 s.
        assert!((n / 3.0 - 17.6).abs() < 0.1);
        let theta = canary_event_share(0.001, 0.005);
        assert!((theta - 5.0 / 6.0).abs() < 1e-12);
        let n = power_one_n(0.05, kl_bernoulli(theta, 0.5));
        assert!((n - 12.3).abs() < 0.1, "0.1%->0.5%: {n}");
        // Latency x1.10 paired: KL = δ²/(2·σ_Z²), σ_Z² = 2·0.5².
        let d = 1.1_f64.ln();
        let n = power_one_n(0.05, d * d / (2.0 * 0.5));
        assert!((n - 330.0).abs() < 1.5, "x1.10 pairs: {n}");
        let d = 1.25_f64.ln();
        assert!((power_one_n(0.05, d * d / 1.0) - 60.0).abs() < 0.5);
    }

    #[test]
    fn llr_increments_agree_with_their_definitions() {
        // Event labels: one canary event under θ1 = 2/3 is ln(4/3).
        assert!((llr_event_labels(0, 1, 2.0 / 3.0) - (4.0_f64 / 3.0).ln()).abs() < 1e-12);
        // Normal: one observation at δ/2 carries no evidence.
        assert!(llr_normal_sum(0.05, 1, 0.1, 0.5).abs() < 1e-12);
        // Tail with share 0 carries none either.
        assert!(llr_tail(1.0, 0.0, 0.5, 0.0, 3.0).abs() < 1e-12);
        // Tail share 1 is the normal shift by ln k.
        let x = 0.7;
        let want = llr_normal_sum(x, 1, 3.0_f64.ln(), 0.25);
        assert!((llr_tail(x, 0.0, 0.5, 1.0, 3.0) - want).abs() < 1e-12);
    }
}
