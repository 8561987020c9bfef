//! Event counts when the realised request split drifts from the configured one: the
//! observed-share variant of the counts test \[D\].
//!
//! In window `t` the canary served `n_T` of `n_T + n_C` requests, `ρ_t = n_T / (n_T + n_C)`.
//! If the fixed-split test were used with the configured `ρ`, a canary that merely received
//! more traffic than configured would look worse. Here each window's events are weighed with
//! their own `ρ_t`: for the per-request rate ratio `r = e^δ`, the event-label likelihood
//! ratio of window `t` against `δ = 0` is
//!
//! ```text
//! LR_t(δ) = exp(x_T,t·δ) / (1 + ρ_t(e^δ − 1))^{x_T,t + x_C,t}
//! ```
//!
//! and the e-value is the mixture `Σ_j w_j Π_t LR_t(δ_j)` over a fixed grid of `δ` (1-D
//! quadrature of the prior that Beta(`k·ρ₀`, `k·(1−ρ₀)`) on the event share induces on `δ`,
//! `ρ₀` the configured share; the weights sum to 1, so the discretisation costs nothing in
//! validity). Each update is O(grid) = O(1) in the number of observations.
//!
//! Validity: `ρ_t` is fixed by the request counts, which do not depend on the outcomes. Given
//! them, under H0 (equal per-request rates) the canary's events in the window are
//! Hypergeometric (requests fail independently with a common probability) or Binomial(`n`,
//! `ρ_t`) (Poisson events); `LR_t(δ)` has mean exactly 1 under the Binomial, and at most 1
//! under the Hypergeometric because `e^{δx}` is convex and the Hypergeometric is smaller than
//! the Binomial in convex order (Hoeffding 1963, Thm 4). So each component is a nonnegative
//! supermartingale and Ville's inequality applies to the mixture. For `Greater` the prior is
//! truncated to `δ > 0`, and for a true `δ₀ ≤ 0` every component with `δ > 0` still has mean
//! at most 1 (the argument of the fixed-split one-sided test, window by window).
//!
//! The confidence sequence on `δ` is read off the grid (each end widened to the next grid
//! point outside) and reported as the rate ratio `e^δ`.

use serde::{Deserialize, Serialize};

use super::counts::{COUNT_SPACING, CountSettings};
use super::evidence::{Effect, Evidence, RunningP, check_share};
use super::mixture::LogRatioMixture;
use super::restarts::{Combine, Restarts};
use crate::AnalysisError;

/// The counts test that weighs each window with its realised request share (module docs).
///
/// ```
/// use cutover_analysis::sequential::{CountSettings, ObservedShareCountTest};
/// let mut test = ObservedShareCountTest::new(0.5, CountSettings::default())?;
/// // The canary got twice the configured traffic but errs at the same rate per request.
/// for _ in 0..30 {
///     test.observe_window(10, 20, 1000, 2000)?;
/// }
/// let e = test.evidence();
/// assert!(!e.rejected && e.lower < 1.0 && e.upper > 1.0);
/// # Ok::<(), cutover_analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedShareCountTest {
    settings: CountSettings,
    mixture: LogRatioMixture,
    control_events: u64,
    canary_events: u64,
    control_requests: u64,
    canary_requests: u64,
    running: RunningP,
    /// The restarted e-processes (coarse grids), when the settings ask for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restarts: Option<Restarts<LogRatioMixture>>,
    /// ln of the combined e-value after the latest window.
    #[serde(default, with = "super::evidence::non_finite")]
    log_e: f64,
}

impl ObservedShareCountTest {
    /// A test whose prior is centred for the configured canary share `canary_share` (in (0, 1));
    /// the windows' realised shares are what the likelihood uses.
    pub fn new(canary_share: f64, settings: CountSettings) -> Result<Self, AnalysisError> {
        check_share("canary_share", canary_share)?;
        settings.validate()?;
        Ok(ObservedShareCountTest {
            settings,
            mixture: LogRatioMixture::new(
                settings.prior_strength,
                canary_share,
                settings.alternative,
            ),
            control_events: 0,
            canary_events: 0,
            control_requests: 0,
            canary_requests: 0,
            running: RunningP::default(),
            restarts: settings
                .restarts
                .then(|| Restarts::new(Combine::Sum, COUNT_SPACING)),
            log_e: 0.0,
        })
    }

    /// The settings the test was built with.
    pub fn settings(&self) -> CountSettings {
        self.settings
    }

    /// Adds one window: the events (errors) and the requests each arm served in it
    /// (increments), O(grid) = O(1). Fails, changing nothing, when an arm has more events than
    /// requests or a total would overflow. Read the result with [`evidence`](Self::evidence).
    #[allow(clippy::cast_precision_loss)]
    pub fn observe_window(
        &mut self,
        control_events: u64,
        canary_events: u64,
        control_requests: u64,
        canary_requests: u64,
    ) -> Result<(), AnalysisError> {
        for (group, events, requests) in [
            ("control", control_events, control_requests),
            ("canary", canary_events, canary_requests),
        ] {
            if events > requests {
                return Err(AnalysisError::SuccessesExceedTrials {
                    group,
                    successes: events,
                    trials: requests,
                });
            }
        }
        let overflow = || AnalysisError::Invalid("request count overflows u64".into());
        let control_requests_total = self
            .control_requests
            .checked_add(control_requests)
            .ok_or_else(overflow)?;
        let canary_requests_total = self
            .canary_requests
            .checked_add(canary_requests)
            .ok_or_else(overflow)?;
        let requests = control_requests + canary_requests;
        if requests > 0 {
            let rho = canary_requests as f64 / requests as f64;
            self.mixture.observe(control_events, canary_events, rho);
            if let Some(restarts) = &mut self.restarts {
                for r in restarts.live_mut() {
                    r.component.observe(control_events, canary_events, rho);
                    r.log_e = r.component.log_e();
                }
            }
        }
        // Events never exceed requests, so these cannot overflow.
        self.control_events += control_events;
        self.canary_events += canary_events;
        self.control_requests = control_requests_total;
        self.canary_requests = canary_requests_total;
        let base = self.mixture.log_e();
        self.log_e = self.restarts.as_ref().map_or(base, |r| r.log_e(base));
        self.running.update_log_e(self.log_e, self.settings.alpha);
        let (s, share) = (self.settings, self.mixture.share());
        if let Some(restarts) = &mut self.restarts {
            let events = (control_events + canary_events) as f64;
            restarts.after_window(events, || {
                LogRatioMixture::coarse(s.prior_strength, share, s.alternative)
            });
        }
        Ok(())
    }

    /// The current evidence; the effect is the per-request rate ratio canary / control, its
    /// estimate the maximum-likelihood ratio on the grid (with a drifting share this is not the
    /// ratio of the pooled rates, which mixes windows of different shares).
    #[allow(clippy::cast_precision_loss)]
    pub fn evidence(&self) -> Evidence {
        let (lo, hi) = self.mixture.delta_interval(self.settings.alpha);
        Evidence {
            p_value: self.running.p_value,
            rejected: self.running.rejected,
            log_e_value: if self.restarts.is_some() {
                self.log_e
            } else {
                self.mixture.log_e()
            },
            effect: Effect::RateRatio,
            estimate: if self.control_events + self.canary_events == 0 {
                f64::NAN
            } else {
                self.mixture.mle_delta().exp()
            },
            lower: lo.exp(),
            upper: hi.exp(),
            control_n: self.control_events,
            canary_n: self.canary_events,
        }
    }
}
