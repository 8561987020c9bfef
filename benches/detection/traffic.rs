//! Simulated traffic (ANALYSIS.md §6): per arm, requests per 10 s window are Poisson(R·10),
//! errors per window Binomial(requests, p), and each request's log-latency is N(ln 0.1 s, 0.5²).
//! The canary's effect (error rate, latency scale, or a slow tail) starts at the onset, at once
//! or growing linearly over a ramp.

use crate::rng::{Purpose, Rng};

/// Seconds per window: every detector checks at the end of each window.
pub(crate) const WINDOW_S: f64 = 10.0;
/// Windows in a run: 30 minutes of checks every 10 s (K = 180).
pub(crate) const WINDOWS: usize = 180;
/// Median latency in seconds (log-latency mean is its log).
pub(crate) const MEDIAN_LATENCY_S: f64 = 0.1;
/// Standard deviation of log-latency.
pub(crate) const LOG_SD: f64 = 0.5;
/// Error rate of both arms in the A/A and latency scenarios.
pub(crate) const BASE_ERROR_RATE: f64 = 0.01;

/// Windows of a ramp: 5 minutes.
pub(crate) const RAMP_WINDOWS: usize = 30;

/// Control is arm 0, canary arm 1.
pub(crate) const CONTROL: usize = 0;
/// The canary arm.
pub(crate) const CANARY: usize = 1;

/// What the canary does differently once the effect has started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Effect {
    /// Nothing (A/A).
    None,
    /// Error rate `from` → `to`.
    Errors {
        /// Both arms before, control always.
        from: f64,
        /// The canary after the onset.
        to: f64,
    },
    /// Every canary latency multiplied by this.
    Scale(f64),
    /// A fraction `share` of canary requests `factor` times slower.
    Tail {
        /// Fraction of requests hit.
        share: f64,
        /// Latency multiple of those requests.
        factor: f64,
    },
}

impl Effect {
    /// Whether detectors of error rates read this scenario.
    pub(crate) fn has_errors(self) -> bool {
        matches!(self, Effect::None | Effect::Errors { .. })
    }

    /// Whether detectors of latency read this scenario.
    pub(crate) fn has_latency(self) -> bool {
        !matches!(self, Effect::Errors { .. })
    }
}

/// One scenario: an effect and when it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scenario {
    /// Short name used in the table and JSON.
    pub(crate) name: String,
    /// The effect.
    pub(crate) effect: Effect,
    /// First window with the effect (0, or 60 / 120 for an onset at 10 / 20 minutes).
    pub(crate) onset_window: usize,
    /// Windows over which the effect grows linearly to its full size (0: all at once). In
    /// window `onset + i` the effect is at `(i + 1) / ramp_windows` of its size: the error
    /// rate `from + f·(to − from)`, the latency scale `m^f`, the tail share `f·share`.
    pub(crate) ramp_windows: usize,
}

impl Scenario {
    /// Every scenario of the issues: A/A, then each effect with onset at 0, at 10 and at 20
    /// minutes, and ramping up over 5 minutes from minute 10.
    pub(crate) fn all() -> Vec<Scenario> {
        let effects = [
            (
                "err-0.1%->0.5%",
                Effect::Errors {
                    from: 0.001,
                    to: 0.005,
                },
            ),
            (
                "err-1%->2%",
                Effect::Errors {
                    from: 0.01,
                    to: 0.02,
                },
            ),
            ("lat-x1.10", Effect::Scale(1.10)),
            ("lat-x1.25", Effect::Scale(1.25)),
            (
                "tail-5%x3",
                Effect::Tail {
                    share: 0.05,
                    factor: 3.0,
                },
            ),
            (
                "tail-1%x5",
                Effect::Tail {
                    share: 0.01,
                    factor: 5.0,
                },
            ),
        ];
        let mut out = vec![Scenario {
            name: "A/A".into(),
            effect: Effect::None,
            onset_window: 0,
            ramp_windows: 0,
        }];
        for (suffix, onset, ramp) in [
            ("", 0, 0),
            ("@10m", 60, 0),
            ("@20m", 120, 0),
            ("/ramp@10m", 60, RAMP_WINDOWS),
        ] {
            for (name, effect) in effects {
                out.push(Scenario {
                    name: format!("{name}{suffix}"),
                    effect,
                    onset_window: onset,
                    ramp_windows: ramp,
                });
            }
        }
        out
    }

    /// The effect in window `index`: `None` before the onset, then scaled along the ramp.
    pub(crate) fn effect_at(&self, index: usize) -> Effect {
        if index < self.onset_window {
            return Effect::None;
        }
        let step = index - self.onset_window + 1;
        if self.ramp_windows == 0 || step >= self.ramp_windows {
            return self.effect;
        }
        #[allow(clippy::cast_precision_loss)]
        let f = step as f64 / self.ramp_windows as f64;
        match self.effect {
            Effect::None => Effect::None,
            Effect::Errors { from, to } => Effect::Errors {
                from,
                to: from + f * (to - from),
            },
            Effect::Scale(m) => Effect::Scale(m.powf(f)),
            Effect::Tail { share, factor } => Effect::Tail {
                share: f * share,
                factor,
            },
        }
    }
}

/// One 10 s window of both arms (index 0 = control, 1 = canary).
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    /// Window number, 0-based; the check after it is at `(index + 1)·10 s`.
    pub(crate) index: usize,
    /// Requests per arm.
    pub(crate) requests: [u64; 2],
    /// Errors per arm.
    pub(crate) errors: [u64; 2],
    /// Latencies in seconds per arm, in arrival order (empty in error-only scenarios).
    pub(crate) latency: [Vec<f64>; 2],
}

/// The traffic of one replication at one rate.
#[derive(Debug, Clone)]
pub(crate) struct Traffic<'a> {
    /// Base seed of the run.
    pub(crate) seed: u64,
    /// Replication number.
    pub(crate) replication: u64,
    /// Requests per second per arm.
    pub(crate) rate: f64,
    /// The scenario.
    pub(crate) scenario: &'a Scenario,
}

impl Traffic<'_> {
    /// Fills `w` with window `index`.
    pub(crate) fn window(&self, index: usize, w: &mut Window) {
        w.index = index;
        let effect = self.scenario.effect;
        let now = self.scenario.effect_at(index);
        for arm in [CONTROL, CANARY] {
            let key = |p| Rng::keyed(self.seed, self.replication, arm, index as u64, p);
            let n = key(Purpose::Requests).poisson(self.rate * WINDOW_S);
            w.requests[arm] = n;
            let p = match (effect, now) {
                (_, Effect::Errors { to, .. }) if arm == CANARY => to,
                (Effect::Errors { from, .. }, _) => from,
                _ => BASE_ERROR_RATE,
            };
            w.errors[arm] = if effect.has_errors() {
                key(Purpose::Errors).binomial(n, p)
            } else {
                0
            };
            let v = &mut w.latency[arm];
            v.clear();
            if effect.has_latency() {
                let canary_effect = if arm == CANARY { now } else { Effect::None };
                fill_latencies(&mut key(Purpose::Latency), n, canary_effect, v);
            }
        }
    }
}

/// `n` latencies in seconds with the given effect.
fn fill_latencies(rng: &mut Rng, n: u64, effect: Effect, out: &mut Vec<f64>) {
    let mu = MEDIAN_LATENCY_S.ln();
    let (shift, share, tail) = match effect {
        Effect::Scale(m) => (m.ln(), 0.0, 0.0),
        Effect::Tail { share, factor } => (0.0, share, factor.ln()),
        _ => (0.0, 0.0, 0.0),
    };
    let mut left = n;
    while left > 0 {
        let (a, b) = rng.normal_pair();
        for z in [a, b]
            .into_iter()
            .take(usize::try_from(left.min(2)).unwrap_or(2))
        {
            let mut log = mu + LOG_SD * z + shift;
            if share > 0.0 && rng.uniform() < share {
                log += tail;
            }
            out.push(log.exp());
            left -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_replication_same_traffic_and_effect_only_after_onset() {
        let s = Scenario {
            name: "t".into(),
            effect: Effect::Scale(2.0),
            onset_window: 3,
            ramp_windows: 0,
        };
        let aa = Scenario {
            effect: Effect::None,
            ..s.clone()
        };
        let t = |sc| Traffic {
            seed: 1,
            replication: 9,
            rate: 20.0,
            scenario: sc,
        };
        let (mut a, mut b, mut c) = (Window::default(), Window::default(), Window::default());
        t(&s).window(2, &mut a);
        t(&s).window(2, &mut b);
        t(&aa).window(2, &mut c);
        assert_eq!(a.latency, b.latency);
        assert_eq!(
            a.latency, c.latency,
            "before the onset the canary is untouched"
        );
        t(&s).window(5, &mut a);
        t(&aa).window(5, &mut c);
        assert_eq!(a.latency[CONTROL], c.latency[CONTROL]);
        for (x, y) in a.latency[CANARY].iter().zip(&c.latency[CANARY]) {
            assert!(
                (x / y - 2.0).abs() < 1e-12,
                "common random numbers, scaled by 2"
            );
        }
        assert_eq!(a.requests, c.requests);
    }

    #[test]
    fn a_ramp_grows_linearly_to_the_full_effect() {
        let s = Scenario {
            name: "r".into(),
            effect: Effect::Errors {
                from: 0.01,
                to: 0.02,
            },
            onset_window: 10,
            ramp_windows: 4,
        };
        assert_eq!(s.effect_at(9), Effect::None);
        let rates: Vec<f64> = (10..16)
            .map(|i| match s.effect_at(i) {
                Effect::Errors { to, .. } => to,
                other => panic!("{other:?}"),
            })
            .collect();
        for (got, want) in rates.iter().zip([0.0125, 0.015, 0.0175, 0.02, 0.02, 0.02]) {
            assert!((got - want).abs() < 1e-15, "{rates:?}");
        }
        let tail = Scenario {
            effect: Effect::Tail {
                share: 0.05,
                factor: 3.0,
            },
            ..s.clone()
        };
        assert_eq!(
            tail.effect_at(11),
            Effect::Tail {
                share: 0.025,
                factor: 3.0
            }
        );
        let scale = Scenario {
            effect: Effect::Scale(1.21),
            ..s
        };
        match scale.effect_at(11) {
            Effect::Scale(m) => assert!((m - 1.1).abs() < 1e-12),
            other => panic!("{other:?}"),
        }
    }
}
