//! Sequential analysis, built from a plan's `sequential` template: an anytime-valid test of
//! candidate against stable, fed the data since the previous measurement, whose state the
//! engine saves with the rollout.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_analysis::sequential::{
    CountSettings, CountTest, Decision, DistributionSettings, DistributionTest, Evidence,
    MeanSettings, MeanTest, Model, ObservedShareCountTest, StationaryCountSettings,
    StationaryCountTest, Traffic, durations,
};
use cutover_analysis::{AnalysisError, SplitMix64, Verdict};
use serde::{Deserialize, Serialize};

use super::{AnalysisContext, AnalysisResult, Comparison, MetricResult, Sources, source};
use crate::plan::{SequentialKind, SequentialTemplate};
use crate::{MetricQuery, ProviderError, RevisionId, Samples, Timestamp};

/// The statistical test of a sequential analysis run, as the statistics crate serializes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SequentialTest {
    /// Counts with a fixed canary share (the template's `canary_share`).
    Counts(CountTest),
    /// Counts weighed with each window's realised request share.
    ObservedShare(ObservedShareCountTest),
    /// Distributions of per-request values.
    Distribution(DistributionTest),
    /// Means of per-request values (mSPRT).
    Mean(MeanTest),
    /// A counts test beside the stationary counts test (the template's `stationary: true`),
    /// each at half the template's alpha: rejected when either rejects; the estimate and the
    /// confidence sequence are the counts test's.
    StationaryCounts {
        /// The counts test (fixed or realised share).
        counts: Box<SequentialTest>,
        /// The test of the candidate's errors against the error rate of all requests so far.
        stationary: StationaryCountTest,
    },
}

impl SequentialTest {
    /// The test's current evidence.
    fn evidence(&self) -> Evidence {
        match self {
            SequentialTest::Counts(t) => t.evidence(),
            SequentialTest::ObservedShare(t) => t.evidence(),
            SequentialTest::Distribution(t) => t.evidence(),
            SequentialTest::Mean(t) => t.evidence(),
            SequentialTest::StationaryCounts { counts, stationary } => {
                either_at_half_alpha(counts.evidence(), &stationary.evidence())
            }
        }
    }
}

/// The evidence of two tests each run at `alpha / 2`, rejecting when either does (a union
/// bound): the p-value is `min(1, 2·min(p₁, p₂))`, the e-value half the larger, and the
/// effect, estimate and confidence sequence are the first test's.
fn either_at_half_alpha(first: Evidence, second: &Evidence) -> Evidence {
    Evidence {
        p_value: (2.0 * first.p_value.min(second.p_value)).min(1.0),
        rejected: first.rejected || second.rejected,
        log_e_value: first.log_e_value.max(second.log_e_value) - std::f64::consts::LN_2,
        ..first
    }
}

/// What a sequential analysis run carries from one measurement to the next; saved in
/// [`AnalysisProgress::sequential`](crate::state::AnalysisProgress::sequential).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialState {
    /// When the test's data begins: the run's start plus its initial delay. The step's time
    /// counts from here.
    pub data_start: Timestamp,
    /// The end of the data fed to the test so far; the next measurement asks for the data
    /// since then.
    pub covered_until: Timestamp,
    /// Measurements whose window had data for both revisions.
    pub windows: u32,
    /// Counts tests: the requests fed to the test so far, stable then candidate (the test
    /// itself counts events). Zero for the other tests, and in state saved before this field
    /// existed.
    #[serde(default, skip_serializing_if = "is_zero_pair")]
    pub requests: [u64; 2],
    /// The test.
    pub test: SequentialTest,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero_pair(v: &[u64; 2]) -> bool {
    *v == [0, 0]
}

/// What the engine tells a sequential analysis besides the [`AnalysisContext`].
#[derive(Debug, Clone)]
pub(crate) struct SequentialInput {
    /// Where the data begins for a new test (the run's start plus its initial delay).
    pub(crate) data_start: Timestamp,
    /// The step's time (`count` × `interval`); `None` when the run has no count (background
    /// analysis), which never passes.
    pub(crate) min_duration: Option<Duration>,
    /// The candidate's share of traffic in the current split, to centre a new observed-share
    /// test's prior.
    pub(crate) canary_weight: f64,
    /// The saved state, if the run has measured before.
    pub(crate) state: Option<SequentialState>,
}

/// An anytime-valid sequential test of candidate against stable, built from a plan's
/// `sequential` template (see [`SequentialTemplate`] for the decision rules).
#[derive(Debug, Clone)]
pub(crate) struct SequentialAnalysis {
    template: SequentialTemplate,
    sources: Sources,
}

/// One revision's data over a window.
enum Window {
    Counts { events: u64, total: u64 },
    Values(Vec<f64>),
}

impl Window {
    /// Requests (counts) or values in the window.
    fn size(&self) -> u64 {
        match self {
            Window::Counts { total, .. } => *total,
            Window::Values(v) => v.len() as u64,
        }
    }

    /// Events (counts) or values in the window: what the test counts.
    fn observations(&self) -> u64 {
        match self {
            Window::Counts { events, .. } => *events,
            Window::Values(v) => v.len() as u64,
        }
    }
}

/// What one revision contributed, for the summary: totals so far and this window's share.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// Events (counts tests) or values, in total.
    total: u64,
    /// Requests in total (counts tests only).
    requests: Option<u64>,
    /// Events or values in the window.
    window: u64,
    /// Requests in the window (counts tests only).
    window_requests: Option<u64>,
}

impl Seen {
    /// `191 events in 19,100 requests (12 in 1,200 in the last 1m)`, or `1,910 values (120 in
    /// the last 1m)`.
    fn describe(&self, unit: &str, window: &str) -> String {
        match (self.requests, self.window_requests) {
            (Some(requests), Some(window_requests)) => format!(
                "{} {unit} in {} requests ({} in {} in the last {window})",
                grouped(self.total),
                grouped(requests),
                grouped(self.window),
                grouped(window_requests),
            ),
            _ => format!(
                "{} {unit} ({} in the last {window})",
                grouped(self.total),
                grouped(self.window)
            ),
        }
    }
}

/// `19100` as `19,100`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A p-value: four decimals, or scientific notation below 0.001 (`3.1e-62`).
fn format_p(p: f64) -> String {
    if p.is_finite() && p > 0.0 && p < 1e-3 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// An e-value from its natural log: three decimals up to 10,000, else scientific notation
/// from the log itself (`3.2e61`), so that huge values neither overflow nor print 60 digits.
fn format_e_value(log_e: f64) -> String {
    if log_e.is_nan() {
        return "NaN".to_owned();
    }
    if log_e == f64::NEG_INFINITY {
        return "0".to_owned();
    }
    if log_e == f64::INFINITY {
        return "inf".to_owned();
    }
    if log_e.abs() < 10_000f64.ln() {
        return format!("{:.3}", log_e.exp());
    }
    let log10 = log_e / std::f64::consts::LN_10;
    let mut exponent = log10.floor();
    let mut mantissa = 10f64.powf(log10 - exponent);
    if mantissa >= 9.95 {
        mantissa /= 10.0;
        exponent += 1.0;
    }
    format!("{mantissa:.1}e{exponent:.0}")
}

fn invalid(name: &str, e: &AnalysisError) -> ProviderError {
    ProviderError::permanent(format!("sequential analysis `{name}`: {e}"))
}

impl SequentialAnalysis {
    pub(crate) fn new(template: SequentialTemplate, sources: Sources) -> Self {
        SequentialAnalysis { template, sources }
    }

    /// Whether a counts test runs beside the stationary counts test.
    fn stationary_counts(&self) -> bool {
        self.template.test == SequentialKind::Counts && self.template.stationary == Some(true)
    }

    /// The alpha of each test: the template's, or half of it for each of the two tests of
    /// `stationary: true` on counts.
    fn test_alpha(&self) -> f64 {
        if self.stationary_counts() {
            self.template.alpha / 2.0
        } else {
            self.template.alpha
        }
    }

    /// The counts settings of the template (counts tests only).
    fn count_settings(&self) -> CountSettings {
        let t = &self.template;
        let mut settings = CountSettings {
            alpha: self.test_alpha(),
            alternative: t.effective_alternative(),
            restarts: t.restarts.unwrap_or(true),
            ..CountSettings::default()
        };
        if let Some(k) = t.prior_strength {
            settings.prior_strength = k;
        }
        settings
    }

    /// The distribution settings of the template.
    fn distribution_settings(&self) -> DistributionSettings {
        let t = &self.template;
        DistributionSettings {
            alpha: t.alpha,
            alternative: t.effective_alternative(),
            restarts: t.restarts.unwrap_or(true),
            stationary: t.stationary.unwrap_or(false),
            ..DistributionSettings::default()
        }
    }

    /// A new test with the template's settings.
    fn new_test(&self, canary_weight: f64) -> Result<SequentialTest, AnalysisError> {
        let t = &self.template;
        Ok(match t.test {
            SequentialKind::Counts => {
                let settings = self.count_settings();
                let counts = match t.canary_share {
                    Some(share) => SequentialTest::Counts(CountTest::new(share, settings)?),
                    None => SequentialTest::ObservedShare(ObservedShareCountTest::new(
                        canary_weight.clamp(0.01, 0.99),
                        settings,
                    )?),
                };
                if self.stationary_counts() {
                    SequentialTest::StationaryCounts {
                        counts: Box::new(counts),
                        stationary: StationaryCountTest::new(StationaryCountSettings {
                            alpha: self.test_alpha(),
                            restarts: t.restarts.unwrap_or(true),
                            ..StationaryCountSettings::default()
                        })?,
                    }
                } else {
                    counts
                }
            }
            SequentialKind::Distribution => {
                SequentialTest::Distribution(DistributionTest::new(self.distribution_settings())?)
            }
            SequentialKind::Mean => {
                let mut settings = MeanSettings {
                    alpha: t.alpha,
                    alternative: t.effective_alternative(),
                    restarts: t.restarts.unwrap_or(true),
                    ..MeanSettings::default()
                };
                if let Some(tau) = t.mixture_width {
                    settings.tau = tau;
                }
                SequentialTest::Mean(MeanTest::new(settings)?)
            }
        })
    }

    /// How long, at the traffic seen so far, the test needs in all to rule out an effect
    /// above the tolerance (`cutover_analysis::sequential::durations`), in words; `None` for
    /// a mean test (its time depends on the values' spread) or when the traffic so far says
    /// too little (no events from stable yet).
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn time_to_pass(
        &self,
        (stable, candidate): (Seen, Seen),
        elapsed: Duration,
        window: Duration,
    ) -> Option<String> {
        let t = &self.template;
        let tolerance = t.effective_tolerance()?;
        if window.is_zero() || elapsed < window {
            return None;
        }
        let intervals = elapsed.as_secs_f64() / window.as_secs_f64();
        let (model, traffic, rate) = match t.test {
            SequentialKind::Counts => {
                let requests = (stable.requests?, candidate.requests?);
                let base_rate = stable.total as f64 / requests.0 as f64;
                if !(base_rate > 0.0 && base_rate < 1.0) || requests.1 == 0 {
                    return None;
                }
                let model = Model::Counts {
                    settings: self.count_settings(),
                    base_rate,
                    observed_share: t.canary_share.is_none(),
                };
                (
                    model,
                    requests,
                    format!(", {:.2} % events", 100.0 * base_rate),
                )
            }
            SequentialKind::Distribution => {
                let model = Model::Distribution {
                    settings: self.distribution_settings(),
                };
                (model, (stable.total, candidate.total), String::new())
            }
            SequentialKind::Mean => return None,
        };
        let traffic = Traffic {
            control_requests: traffic.0 as f64 / intervals,
            canary_requests: traffic.1 as f64 / intervals,
            interval: window,
        };
        let horizon = Duration::from_hours(7 * 24);
        let pass = durations(&model, &traffic, tolerance, 1.0, horizon)
            .ok()?
            .pass;
        let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        let unit = match t.test {
            SequentialKind::Counts => "requests",
            _ => "values",
        };
        let seen = format!(
            "at the traffic so far ({} and {} {unit} per {}{rate})",
            grouped(traffic.control_requests.round() as u64),
            grouped(traffic.canary_requests.round() as u64),
            secs(window),
        );
        Some(match pass {
            Some(d) => format!(
                "{seen}, ruling it out takes about {} in all (docs/analysis-durations.md)",
                secs(d)
            ),
            None => format!(
                "{seen}, ruling it out takes more than a week: widen the tolerance or send more \
                 traffic (docs/analysis-durations.md)"
            ),
        })
    }

    async fn window(
        &self,
        revision: &RevisionId,
        window: Duration,
    ) -> Result<Window, ProviderError> {
        let t = &self.template;
        let query = MetricQuery::new(&t.query, &t.query, revision.clone(), window);
        let samples = source(&self.sources, &t.source)?.query(&query).await?;
        match (t.test, samples) {
            (SequentialKind::Counts, Samples::Counts { events, total }) => {
                if events > total {
                    return Err(ProviderError::permanent(format!(
                        "query `{}` for `{revision}` returned {events} events out of {total}",
                        t.query
                    )));
                }
                Ok(Window::Counts { events, total })
            }
            (SequentialKind::Counts, Samples::Values(v)) if v.is_empty() => Ok(Window::Counts {
                events: 0,
                total: 0,
            }),
            (SequentialKind::Counts, Samples::Values(_)) => Err(ProviderError::permanent(format!(
                "query `{}` returned values; a `counts` sequential test needs counts (events out of requests)",
                t.query
            ))),
            (_, Samples::Values(v)) => Ok(Window::Values(v)),
            (kind, _) => Err(ProviderError::permanent(format!(
                "query `{}` returned counts; a `{}` sequential test needs one value per request",
                t.query,
                kind.name()
            ))),
        }
    }

    /// Takes one measurement: queries both revisions for the data since the previous
    /// measurement, feeds it to the test, and decides. Returns the result and the test's new
    /// state, to be saved with the measurement.
    pub(crate) async fn measure(
        &self,
        ctx: &AnalysisContext,
        now: Timestamp,
        input: SequentialInput,
    ) -> Result<(AnalysisResult, SequentialState), ProviderError> {
        let name = ctx.analysis.as_str();
        let mut state = match input.state {
            Some(state) => state,
            None => SequentialState {
                data_start: input.data_start,
                covered_until: input.data_start,
                windows: 0,
                requests: [0, 0],
                test: self
                    .new_test(input.canary_weight)
                    .map_err(|e| invalid(name, &e))?,
            },
        };
        let window = now.saturating_since(state.covered_until);
        let (control, canary) = if window.is_zero() {
            (None, None)
        } else {
            (
                Some(self.window(&ctx.revisions.stable, window).await?),
                Some(self.window(&ctx.revisions.candidate, window).await?),
            )
        };
        let fed = match (&control, &canary) {
            (Some(c), Some(t)) if c.size() > 0 && t.size() > 0 => {
                feed(&mut state.test, c, t).map_err(|e| invalid(name, &e))?;
                true
            }
            _ => false,
        };
        let counts = self.template.test == SequentialKind::Counts;
        if fed {
            state.windows += 1;
            if counts {
                for (total, w) in state.requests.iter_mut().zip([&control, &canary]) {
                    *total = total.saturating_add(w.as_ref().map_or(0, Window::size));
                }
            }
        }
        state.covered_until = state.covered_until.max(now);
        let evidence = state.test.evidence();
        let elapsed = now.saturating_since(state.data_start);
        let seen = |w: &Option<Window>, total: u64, requests: u64| Seen {
            total,
            requests: counts.then_some(requests),
            window: w.as_ref().map_or(0, Window::observations),
            window_requests: counts.then(|| w.as_ref().map_or(0, Window::size)),
        };
        let seen = (
            seen(&control, evidence.control_n, state.requests[0]),
            seen(&canary, evidence.canary_n, state.requests[1]),
        );
        let result = self.judge(&evidence, fed, elapsed, input.min_duration, window, seen);
        Ok((result, state))
    }

    /// The verdict and the record's numbers for `evidence`.
    #[allow(clippy::cast_precision_loss)]
    fn judge(
        &self,
        e: &Evidence,
        fed: bool,
        elapsed: Duration,
        min_duration: Option<Duration>,
        window: Duration,
        (stable, candidate): (Seen, Seen),
    ) -> AnalysisResult {
        let t = &self.template;
        let tolerance = t.effective_tolerance().unwrap_or(f64::NAN);
        let decision = e.decide(tolerance - e.effect.null_value());
        let time_up = min_duration.is_some_and(|d| elapsed >= d);
        let effect = t.test.effect();
        let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        let unit = match t.test {
            SequentialKind::Counts => "events",
            SequentialKind::Distribution | SequentialKind::Mean => "values",
        };
        let last = secs(window).to_string();
        let numbers = format!(
            "p = {} (alpha {}), e-value {}, {effect} {:.4} in [{:.4}, {:.4}], tolerance {tolerance}; \
             stable: {}, candidate: {}",
            format_p(e.p_value),
            t.alpha,
            format_e_value(e.log_e_value),
            e.estimate,
            e.lower,
            e.upper,
            stable.describe(unit, &last),
            candidate.describe(unit, &last),
        );
        let (verdict, why) = match decision {
            Decision::Reject => (
                Verdict::Fail,
                format!("rejected: the candidate is worse ({numbers})"),
            ),
            _ if !fed => (
                Verdict::Inconclusive,
                format!("no new data for both revisions, going on ({numbers})"),
            ),
            Decision::RuledOut if time_up => (
                Verdict::Pass,
                format!(
                    "passed after {}: the confidence sequence rules out a {effect} above {tolerance} ({numbers})",
                    secs(elapsed)
                ),
            ),
            Decision::RuledOut => (
                Verdict::Inconclusive,
                format!(
                    "no degradation above the tolerance, but the step's time is not up ({} of {}), going on ({numbers})",
                    secs(elapsed),
                    min_duration
                        .map_or_else(|| "until promotion".to_owned(), |d| secs(d).to_string())
                ),
            ),
            Decision::Undecided => (
                Verdict::Inconclusive,
                format!(
                    "undecided after {}: not rejected (p = {} above alpha {}), and a {effect} above \
                     {tolerance} is not ruled out yet (the confidence sequence reaches {:.4}); it \
                     narrows as data comes in{}, going on ({numbers})",
                    secs(elapsed),
                    format_p(e.p_value),
                    t.alpha,
                    e.upper,
                    self.time_to_pass((stable, candidate), elapsed, window)
                        .map_or_else(String::new, |s| format!("; {s}")),
                ),
            ),
        };
        let summary = format!("{} ({} test): {why}", t.query, t.test.name());
        let mut map = BTreeMap::new();
        for (key, value) in [
            ("p_value", e.p_value),
            ("log_e_value", e.log_e_value),
            ("estimate", e.estimate),
            ("lower", e.lower),
            ("upper", e.upper),
            ("tolerance", tolerance),
            ("alpha", t.alpha),
            ("stable_n", e.control_n as f64),
            ("candidate_n", e.canary_n as f64),
            (
                "window_stable_n",
                stable.window_requests.unwrap_or(stable.window) as f64,
            ),
            (
                "window_candidate_n",
                candidate.window_requests.unwrap_or(candidate.window) as f64,
            ),
            ("elapsed_s", elapsed.as_secs_f64()),
        ]
        .into_iter()
        .chain(
            [
                ("stable_requests", stable.requests),
                ("candidate_requests", candidate.requests),
                (
                    "window_stable_events",
                    stable.requests.map(|_| stable.window),
                ),
                (
                    "window_candidate_events",
                    candidate.requests.map(|_| candidate.window),
                ),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v as f64))),
        ) {
            // JSON has no infinities or NaN: an unbounded end is left out.
            if value.is_finite() {
                map.insert(key.to_owned(), value);
            }
        }
        AnalysisResult {
            verdict,
            summary,
            metrics: vec![MetricResult {
                name: t.query.clone(),
                verdict,
                value: Some(e.estimate).filter(|v| v.is_finite()),
                samples: e.canary_n,
                detail: why,
            }],
            comparison: Some(Comparison {
                winner: None,
                effect: if e.estimate.is_finite() {
                    e.estimate
                } else {
                    e.effect.null_value()
                },
                confidence: 1.0 - e.p_value,
                numbers: map,
            }),
        }
    }
}

/// Feeds one window of both revisions to the test.
fn feed(test: &mut SequentialTest, control: &Window, canary: &Window) -> Result<(), AnalysisError> {
    match (test, control, canary) {
        (
            SequentialTest::Counts(t),
            Window::Counts { events: c, .. },
            Window::Counts { events: x, .. },
        ) => t.observe(*c, *x).map(drop),
        (
            SequentialTest::ObservedShare(t),
            Window::Counts {
                events: c,
                total: nc,
            },
            Window::Counts {
                events: x,
                total: nx,
            },
        ) => t.observe_window(*c, *x, *nc, *nx).map(drop),
        (SequentialTest::Distribution(t), Window::Values(c), Window::Values(x)) => {
            t.observe_control(c)?;
            t.observe_canary(x)?;
            t.check();
            Ok(())
        }
        (SequentialTest::Mean(t), Window::Values(c), Window::Values(x)) => {
            // The mSPRT pairs values in arrival order, but a window's values may come in any
            // order (the local proxy's come sorted, from a histogram): pair a random
            // selection of equally many values of each arm, so pairs are as independent as
            // the requests and nothing waits unpaired into the next window.
            let n = c.len().min(x.len());
            // Seeded, so a measurement repeated after a crash pairs the same way.
            let mut rng = SplitMix64::new(seed(c.len(), x.len(), t.evidence().control_n));
            t.observe_control(&sample(c, n, &mut rng))?;
            t.observe_canary(&sample(x, n, &mut rng))
        }
        (
            SequentialTest::StationaryCounts { counts, stationary },
            Window::Counts {
                events: c,
                total: nc,
            },
            Window::Counts {
                events: x,
                total: nx,
            },
        ) => {
            // Check the window before either test takes it, so a bad one changes neither.
            if c > nc || x > nx {
                return Err(AnalysisError::Invalid(format!(
                    "events exceed requests: stable {c} of {nc}, candidate {x} of {nx}"
                )));
            }
            feed(counts, control, canary)?;
            stationary.observe_window(*c, *nc, *x, *nx)
        }
        _ => Err(AnalysisError::Invalid(
            "the saved test does not match the template's kind".into(),
        )),
    }
}

/// A seed for the pairing of one window, fixed by the window's sizes and the test's progress
/// (never by the values).
fn seed(control: usize, canary: usize, seen: u64) -> u64 {
    (control as u64).rotate_left(40) ^ (canary as u64).rotate_left(20) ^ seen
}

/// `n` of `values` chosen at random, in random order (a partial Fisher-Yates shuffle).
fn sample(values: &[f64], n: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let mut v = values.to_vec();
    for i in 0..n.min(v.len()) {
        #[allow(clippy::cast_possible_truncation)] // below v.len()
        let j = i + rng.below((v.len() - i) as u64) as usize;
        v.swap(i, j);
    }
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn fed(template: &SequentialTemplate) -> SequentialState {
        let analysis = SequentialAnalysis::new(template.clone(), Sources::new());
        let mut test = analysis.new_test(0.2).unwrap();
        let (control, canary) = if template.test == SequentialKind::Counts {
            (
                Window::Counts {
                    events: 12,
                    total: 800,
                },
                Window::Counts {
                    events: 5,
                    total: 200,
                },
            )
        } else {
            let values = |offset: f64| (0..50).map(|i| offset + f64::from(i) / 100.0).collect();
            (Window::Values(values(0.1)), Window::Values(values(0.12)))
        };
        for _ in 0..3 {
            feed(&mut test, &control, &canary).unwrap();
        }
        let at = Timestamp::from_unix_millis(1_700_000_000_000);
        SequentialState {
            data_start: at,
            covered_until: at,
            windows: 3,
            requests: [2400, 600],
            test,
        }
    }

    /// The state is saved as JSON (file and ConfigMap stores), which has no infinities: every
    /// kind of test must come back exactly as it was.
    #[test]
    fn every_test_survives_json() {
        for template in [
            SequentialTemplate::counts("s", "q"),
            SequentialTemplate::counts("s", "q").with_canary_share(0.2),
            SequentialTemplate::distribution("s", "q"),
            SequentialTemplate::mean("s", "q").with_tolerance(0.01),
            SequentialTemplate::counts("s", "q")
                .with_alternative(cutover_analysis::Alternative::TwoSided),
            SequentialTemplate::counts("s", "q").with_stationary(true),
        ] {
            let state = fed(&template);
            let json = serde_json::to_string(&state).unwrap();
            let back: SequentialState =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{template:?}: {e}"));
            assert_eq!(back, state, "{template:?}");
        }
    }

    #[test]
    fn mean_pairs_equal_random_selections() {
        let mut rng = SplitMix64::new(seed(10, 4, 0));
        let sorted: Vec<f64> = (0..10).map(f64::from).collect();
        let picked = sample(&sorted, 4, &mut rng);
        assert_eq!(picked.len(), 4);
        assert!(picked.iter().all(|v| sorted.contains(v)));
        assert_ne!(
            picked,
            sorted[..4],
            "a random selection, not the smallest values"
        );
        let mut again = SplitMix64::new(seed(10, 4, 0));
        assert_eq!(sample(&sorted, 4, &mut again), picked, "deterministic");
    }

    #[test]
    fn numbers_read_as_numbers() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(191), "191");
        assert_eq!(grouped(19_100), "19,100");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(format_p(0.0123), "0.0123");
        assert_eq!(format_p(1.0), "1.0000");
        assert_eq!(format_p(3.14e-62), "3.1e-62");
        assert_eq!(format_p(0.0), "0.0000");
        assert_eq!(format_e_value(20f64.ln()), "20.000");
        // ln e = 322.3: the e-value has 140 digits; printed from the log, without overflow.
        assert_eq!(format_e_value(322.3), "9.4e139");
        assert_eq!(format_e_value(2000.0), "3.9e868", "beyond f64");
        assert_eq!(format_e_value(-322.3), "1.1e-140");
        assert_eq!(format_e_value(99_999f64.ln()), "1.0e5", "rounding carries");
        assert_eq!(format_e_value(f64::NEG_INFINITY), "0");
    }

    /// The summary of a rejection names what each count is and keeps the e-value short
    /// (issue 25: it printed a 140-digit number and "stable n = 191" counted errors).
    #[test]
    #[allow(clippy::float_cmp)] // counts, exact in f64
    fn a_rejection_summary_names_its_counts() {
        let template = SequentialTemplate::counts("s", "errors");
        let analysis = SequentialAnalysis::new(template, Sources::new());
        let mut test = CountTest::new(0.5, CountSettings::default()).unwrap();
        test.observe(191, 1200).unwrap();
        let e = test.evidence();
        assert!(e.log_e_value > 300.0, "{}", e.log_e_value);
        let seen = |total, requests, window, window_requests| Seen {
            total,
            requests: Some(requests),
            window,
            window_requests: Some(window_requests),
        };
        let result = analysis.judge(
            &e,
            true,
            secs(600),
            Some(secs(300)),
            secs(60),
            (seen(191, 19_100, 12, 1_900), seen(1200, 19_050, 130, 1_905)),
        );
        assert_eq!(result.verdict, Verdict::Fail);
        let s = &result.summary;
        assert!(
            s.contains("p = 4.2e-175 (alpha 0.05), e-value 2.4e174,"),
            "{s}"
        );
        assert!(!s.contains("000000"), "{s}");
        assert!(
            s.contains("stable: 191 events in 19,100 requests (12 in 1,900 in the last 1m)"),
            "{s}"
        );
        assert!(
            s.contains("candidate: 1,200 events in 19,050 requests (130 in 1,905 in the last 1m)"),
            "{s}"
        );
        let numbers = &result.comparison.unwrap().numbers;
        assert_eq!(numbers["stable_requests"], 19_100.0);
        assert_eq!(numbers["window_candidate_events"], 130.0);
        assert_eq!(numbers["stable_n"], 191.0);
    }

    /// Issue 25: at a 1 % error rate, 2,000 requests per arm per interval and tolerance 1.2
    /// the counts test stayed "undecided, going on" for minutes, unexplained. The summary says
    /// what is missing and how long it takes at this traffic.
    #[test]
    fn an_undecided_summary_says_what_is_missing_and_for_how_long() {
        let template = SequentialTemplate::counts("s", "errors").with_tolerance(1.2);
        let analysis = SequentialAnalysis::new(template, Sources::new());
        let SequentialTest::ObservedShare(mut test) = analysis.new_test(0.5).unwrap() else {
            panic!("the default counts test weighs the realised share");
        };
        // Five 1-minute windows of 2,000 requests per arm and 20 errors each.
        for _ in 0..5 {
            test.observe_window(20, 20, 2000, 2000).unwrap();
        }
        let e = test.evidence();
        let seen = Seen {
            total: 100,
            requests: Some(10_000),
            window: 20,
            window_requests: Some(2_000),
        };
        let result = analysis.judge(&e, true, secs(300), Some(secs(600)), secs(60), (seen, seen));
        assert_eq!(result.verdict, Verdict::Inconclusive);
        let s = &result.summary;
        assert!(
            s.contains(
                "a rate ratio above 1.2 is not ruled out yet (the confidence sequence reaches 1."
            ),
            "{s}"
        );
        let pass = durations(
            &Model::Counts {
                settings: analysis.count_settings(),
                base_rate: 0.01,
                observed_share: true,
            },
            &Traffic::per_arm(2000.0, secs(60)),
            1.2,
            1.0,
            secs(86_400),
        )
        .unwrap()
        .pass
        .unwrap();
        assert!(pass > secs(20 * 60), "{pass:?}");
        let minutes = pass.as_secs() / 60;
        assert!(
            s.contains(&format!(
                "at the traffic so far (2,000 and 2,000 requests per 1m, 1.00 % events), ruling \
                 it out takes about {minutes}m in all (docs/analysis-durations.md), going on"
            )),
            "{s}"
        );
        assert!(
            s.contains("stable: 100 events in 10,000 requests (20 in 2,000 in the last 1m)"),
            "{s}"
        );
        // Too little traffic for a week: the summary says what to change.
        let trickle = Seen {
            total: 1,
            requests: Some(1000),
            window: 0,
            window_requests: Some(20),
        };
        let slow = analysis.judge(
            &e,
            true,
            secs(3000),
            Some(secs(600)),
            secs(60),
            (trickle, trickle),
        );
        assert!(
            slow.summary.contains(
                "ruling it out takes more than a week: widen the tolerance or send more traffic"
            ),
            "{}",
            slow.summary
        );
        // A mean test's time depends on the spread of the values: no estimate.
        let mean = SequentialAnalysis::new(
            SequentialTemplate::mean("s", "latency").with_tolerance(0.01),
            Sources::new(),
        );
        let values = Seen {
            total: 100,
            window: 20,
            ..Seen::default()
        };
        let mut m = MeanTest::new(MeanSettings::default()).unwrap();
        m.observe_control(&[0.1, 0.3, 0.2]).unwrap();
        m.observe_canary(&[0.2, 0.1, 0.3]).unwrap();
        let r = mean.judge(
            &m.evidence(),
            true,
            secs(300),
            Some(secs(600)),
            secs(60),
            (values, values),
        );
        assert!(
            r.summary.contains("undecided") && !r.summary.contains("in all"),
            "{}",
            r.summary
        );
    }

    /// The template's `restarts` reaches every kind of test: on by default, off when the plan
    /// says so.
    #[test]
    fn the_template_turns_restarts_on_and_off() {
        let restarts = |template: SequentialTemplate| {
            let analysis = SequentialAnalysis::new(template, Sources::new());
            match analysis.new_test(0.2).unwrap() {
                SequentialTest::Counts(t) => t.settings().restarts,
                SequentialTest::ObservedShare(t) => t.settings().restarts,
                SequentialTest::Mean(t) => t.settings().restarts,
                SequentialTest::Distribution(t) => {
                    // Only visible in the saved state: a restarted tail e-process.
                    serde_json::to_string(&t).unwrap().contains("\"restarts\"")
                }
                SequentialTest::StationaryCounts { counts, stationary } => {
                    let json = serde_json::to_string(&stationary).unwrap();
                    let inner = match *counts {
                        SequentialTest::ObservedShare(t) => t.settings().restarts,
                        other => panic!("not an observed-share test inside: {other:?}"),
                    };
                    assert_eq!(json.contains("\"restarts\":{"), inner, "{json}");
                    inner
                }
            }
        };
        for template in [
            SequentialTemplate::counts("s", "q"),
            SequentialTemplate::counts("s", "q").with_canary_share(0.2),
            SequentialTemplate::distribution("s", "q"),
            SequentialTemplate::mean("s", "q").with_tolerance(0.01),
            SequentialTemplate::counts("s", "q").with_stationary(true),
        ] {
            assert!(restarts(template.clone()), "{template:?}");
            assert!(
                !restarts(template.clone().with_restarts(false)),
                "{template:?}"
            );
        }
        let yaml: SequentialTemplate =
            serde_saphyr::from_str("{ test: counts, source: s, query: q, restarts: false }")
                .unwrap();
        assert_eq!(yaml.restarts, Some(false));
    }

    /// The template's `stationary` on a counts test runs the stationary counts test beside
    /// it, each at half the alpha: a doubling of the candidate's error rate after ten minutes
    /// of equal rates is rejected sooner than by the counts test alone, and it is the
    /// stationary test that rejects.
    #[test]
    fn the_template_adds_the_stationary_counts_test() {
        let windows_to_reject = |template: SequentialTemplate| {
            let analysis = SequentialAnalysis::new(template, Sources::new());
            let mut test = analysis.new_test(0.5).unwrap();
            let window = |events, total| Window::Counts { events, total };
            for _ in 0..60 {
                feed(&mut test, &window(10, 1000), &window(10, 1000)).unwrap();
                assert!(!test.evidence().rejected);
            }
            for w in 1..=30 {
                feed(&mut test, &window(10, 1000), &window(20, 1000)).unwrap();
                if test.evidence().rejected {
                    return (w, test);
                }
            }
            panic!("not rejected in 30 windows");
        };
        let yaml: SequentialTemplate =
            serde_saphyr::from_str("{ test: counts, source: s, query: q, stationary: true }")
                .unwrap();
        let (with, test) = windows_to_reject(yaml);
        let (without, _) = windows_to_reject(SequentialTemplate::counts("s", "q"));
        assert!(with < without, "{with} windows with, {without} without");
        let SequentialTest::StationaryCounts { counts, stationary } = &test else {
            panic!("not the pair: {test:?}");
        };
        assert!(stationary.evidence().rejected && !counts.evidence().rejected);
        let e = test.evidence();
        assert!((e.p_value - 2.0 * stationary.evidence().p_value).abs() < 1e-12);
        assert!(e.p_value <= 0.05, "{}", e.p_value);
        // The estimate and confidence sequence stay the counts test's (alpha / 2).
        assert_eq!(e.upper.to_bits(), counts.evidence().upper.to_bits());
        // A bad window changes neither test.
        let mut after = test.clone();
        let bad = feed(
            &mut after,
            &Window::Counts {
                events: 5,
                total: 4,
            },
            &Window::Counts {
                events: 0,
                total: 10,
            },
        );
        assert!(bad.is_err());
        assert_eq!(after, test);
    }

    /// The template's `stationary` turns the exceedance test of a distribution test on; it is
    /// off by default (it assumes latency does not drift).
    #[test]
    fn the_template_turns_the_exceedance_test_on() {
        let exceedance_on = |template: SequentialTemplate| {
            let analysis = SequentialAnalysis::new(template, Sources::new());
            let SequentialTest::Distribution(mut t) = analysis.new_test(0.2).unwrap() else {
                panic!("not a distribution test");
            };
            // A slower canary tail: only the exceedance test's p-value moves below 1.
            let control: Vec<f64> = (0..400).map(|i| f64::from(i % 100)).collect();
            let canary: Vec<f64> = (0..400).map(|i| f64::from(i % 100) * 3.0).collect();
            t.observe_control(&control).unwrap();
            t.observe_canary(&canary).unwrap();
            t.check();
            t.exceedance_p_value() < 1.0
        };
        let yaml: SequentialTemplate =
            serde_saphyr::from_str("{ test: distribution, source: s, query: q, stationary: true }")
                .unwrap();
        assert_eq!(yaml.stationary, Some(true));
        assert!(exceedance_on(yaml));
        assert!(!exceedance_on(SequentialTemplate::distribution("s", "q")));
        assert!(exceedance_on(
            SequentialTemplate::distribution("s", "q").with_stationary(true)
        ));
    }
}
