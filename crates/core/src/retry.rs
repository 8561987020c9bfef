//! Bounded exponential backoff for transient and throttled provider errors.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the engine retries provider calls that fail with a retryable error.
///
/// Attempt `n` (counting from 1) that fails waits `initial_backoff * multiplier^(n-1)`, capped
/// at `max_backoff`, spread by `jitter` (0.2 = ±20 %), then tries again, up to `max_attempts`
/// attempts in all. A throttled error's `retry_after` replaces the computed delay when longer.
/// Only the engine retries: providers turn their clients' own retries off.
///
/// ```
/// use std::time::Duration;
/// use cutover_core::RetryPolicy;
/// let policy = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
/// assert_eq!(policy.backoff(1, 0.5), Duration::from_secs(1));
/// assert_eq!(policy.backoff(3, 0.5), Duration::from_secs(4));
/// assert_eq!(policy.backoff(30, 0.5), Duration::from_secs(30)); // capped
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 1 disables retries.
    pub max_attempts: u32,
    /// Delay after the first failed attempt.
    #[serde(with = "crate::time::serde_duration")]
    pub initial_backoff: Duration,
    /// Longest delay between attempts.
    #[serde(with = "crate::time::serde_duration")]
    pub max_backoff: Duration,
    /// Growth of the delay per attempt.
    pub multiplier: f64,
    /// Relative spread of each delay, 0 to 1. Tests set 0 for exact timing.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries: every error is final.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delay after failed attempt `attempt` (1-based). `unit` is a number in `[0, 1)` that
    /// places the delay within the jitter band (0.5 is the middle).
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let max = self.max_backoff.as_secs_f64();
        let base = (self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent)).min(max);
        let spread = self.jitter.clamp(0.0, 1.0) * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let secs = (base * (1.0 + spread)).clamp(0.0, max);
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_backoff)
    }

    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_attempts == 0 {
            return Err(("max_attempts", "must be at least 1".into()));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err((
                "multiplier",
                format!("must be at least 1, got {}", self.multiplier),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err((
                "jitter",
                format!("must be between 0 and 1, got {}", self.jitter),
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Err((
                "initial_backoff",
                format!(
                    "{} is longer than max_backoff {}",
                    humantime::format_duration(self.initial_backoff),
                    humantime::format_duration(self.max_backoff)
                ),
            ));
        }
        Ok(())
    }
}

/// A small deterministic generator for jitter (splitmix64), seeded per rollout so that many
/// rollouts retrying the same provider spread out.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn seeded(seed: &str) -> Self {
        // FNV-1a of the seed.
        let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Jitter(hash)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        #[allow(clippy::cast_precision_loss)]
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn backoff_stays_within_bounds(
            attempt in 1u32..100,
            unit in 0.0f64..1.0,
            initial_ms in 1u64..10_000,
            extra_ms in 0u64..100_000,
            multiplier in 1.0f64..5.0,
            jitter in 0.0f64..=1.0,
        ) {
            let policy = RetryPolicy {
                max_attempts: 5,
                initial_backoff: Duration::from_millis(initial_ms),
                max_backoff: Duration::from_millis(initial_ms + extra_ms),
                multiplier,
                jitter,
            };
            let d = policy.backoff(attempt, unit);
            prop_assert!(d <= policy.max_backoff);
            // Without jitter the delay never shrinks below the first one.
            let plain = RetryPolicy { jitter: 0.0, ..policy };
            prop_assert!(plain.backoff(attempt, unit) >= policy.initial_backoff);
            prop_assert!(plain.backoff(attempt + 1, unit) >= plain.backoff(attempt, unit));
        }

        #[test]
        fn jitter_units_are_in_range(seed in ".*") {
            let mut j = Jitter::seeded(&seed);
            for _ in 0..32 {
                let u = j.next_unit();
                prop_assert!((0.0..1.0).contains(&u));
            }
        }
    }
}
