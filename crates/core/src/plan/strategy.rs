//! Strategy definitions as written in plans.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::analysis::AnalysisRun;
use crate::time::serde_duration;
use crate::{HeaderRoute, Mirror, Weight};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
fn thirty_seconds() -> Duration {
    secs(30)
}
#[allow(clippy::unnecessary_wraps)] // serde `default` for an `Option` field
fn some_thirty_seconds() -> Option<Duration> {
    Some(secs(30))
}

/// How a rollout moves from the stable revision to the candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Strategy {
    /// Shift traffic in weighted steps with pauses and analysis.
    Canary(Canary),
    /// Bring the candidate up beside stable, check it, then switch all traffic at once.
    BlueGreen(BlueGreen),
    /// Replace replicas batch by batch within max surge / max unavailable.
    Rolling(Rolling),
    /// Run both revisions side by side for a set time and compare them.
    AbTest(AbTest),
}

impl Strategy {
    /// `canary`, `blue_green`, `rolling` or `ab_test`.
    pub fn kind(&self) -> &'static str {
        match self {
            Strategy::Canary(_) => "canary",
            Strategy::BlueGreen(_) => "blue_green",
            Strategy::Rolling(_) => "rolling",
            Strategy::AbTest(_) => "ab_test",
        }
    }
}

impl From<Canary> for Strategy {
    fn from(c: Canary) -> Self {
        Strategy::Canary(c)
    }
}
impl From<BlueGreen> for Strategy {
    fn from(b: BlueGreen) -> Self {
        Strategy::BlueGreen(b)
    }
}
impl From<Rolling> for Strategy {
    fn from(r: Rolling) -> Self {
        Strategy::Rolling(r)
    }
}
impl From<AbTest> for Strategy {
    fn from(a: AbTest) -> Self {
        Strategy::AbTest(a)
    }
}

/// A canary: weighted steps, pauses and analysis, with optional background analysis.
///
/// ```yaml
/// canary:
///   steps:
///     - set_weight: 10
///     - pause: { duration: 5m }
///     - analysis: { name: error-rate, count: 3, interval: 1m }
///     - set_weight: 50
///     - pause: {}            # until resumed
///   background_analysis:
///     starting_step: 1
///     analysis: { name: latency, interval: 30s }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The steps, run in order. After the last, the candidate is promoted to 100 %.
    pub steps: Vec<CanaryStep>,
    /// Analysis that runs across steps from `starting_step` until promotion; a failure rolls
    /// back at once, whatever step is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_analysis: Option<BackgroundAnalysis>,
    /// With a workload: the candidate's replicas at promotion. The engine scales it up and
    /// waits for it to be ready before the final switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// With a workload: how long the old revision keeps running after promotion, for a fast
    /// way back, before it is scaled to zero.
    #[serde(default = "thirty_seconds", with = "serde_duration")]
    pub scale_down_delay: Duration,
    /// With a workload: how long the candidate keeps running after a rollback before it is
    /// scaled to zero; `null` keeps it running.
    #[serde(default = "some_thirty_seconds", with = "serde_duration::option")]
    pub abort_scale_down_delay: Option<Duration>,
}

impl Canary {
    /// A canary of `steps` with the default delays.
    pub fn new(steps: impl IntoIterator<Item = CanaryStep>) -> Self {
        Canary {
            steps: steps.into_iter().collect(),
            background_analysis: None,
            replicas: None,
            scale_down_delay: thirty_seconds(),
            abort_scale_down_delay: some_thirty_seconds(),
        }
    }

    /// Adds background analysis.
    pub fn with_background_analysis(mut self, starting_step: usize, analysis: AnalysisRun) -> Self {
        self.background_analysis = Some(BackgroundAnalysis {
            starting_step,
            analysis,
        });
        self
    }
}

/// Analysis that runs across canary steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackgroundAnalysis {
    /// The step index (from 0) at which it starts.
    #[serde(default)]
    pub starting_step: usize,
    /// What to run. Without `count` it runs until promotion.
    pub analysis: AnalysisRun,
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum CanaryStep {
    /// Sends this percentage of traffic to the candidate (`set_weight: 10`), then waits for it
    /// to be healthy if there is a health probe.
    SetWeight(Weight),
    /// Waits for a duration, or until resumed or promoted when none is given.
    Pause(Pause),
    /// Runs an analysis; the step ends when it succeeds.
    Analysis(AnalysisRun),
    /// Routes requests matching headers or cookies to the candidate.
    SetHeaderRoute(HeaderRoute),
    /// Removes a header route set by an earlier step.
    RemoveHeaderRoute(String),
    /// Mirrors a share of requests to the candidate.
    SetMirror(Mirror),
    /// Removes a mirror set by an earlier step.
    RemoveMirror(String),
    /// Scales the candidate (needs a workload) and waits for the replicas to be ready.
    Scale(Scale),
}

impl CanaryStep {
    /// `set_weight` at a whole percentage.
    pub fn set_weight(percent: u8) -> Result<Self, crate::SplitError> {
        Ok(CanaryStep::SetWeight(Weight::from_percent(percent)?))
    }

    /// A timed pause.
    pub fn pause(duration: Duration) -> Self {
        CanaryStep::Pause(Pause {
            duration: Some(duration),
        })
    }

    /// A pause until resumed.
    pub fn pause_until_resumed() -> Self {
        CanaryStep::Pause(Pause { duration: None })
    }

    /// The step's kind as written in plans (`set_weight`, `pause`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            CanaryStep::SetWeight(_) => "set_weight",
            CanaryStep::Pause(_) => "pause",
            CanaryStep::Analysis(_) => "analysis",
            CanaryStep::SetHeaderRoute(_) => "set_header_route",
            CanaryStep::RemoveHeaderRoute(_) => "remove_header_route",
            CanaryStep::SetMirror(_) => "set_mirror",
            CanaryStep::RemoveMirror(_) => "remove_mirror",
            CanaryStep::Scale(_) => "scale",
        }
    }
}

/// A pause step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// How long; `None` waits until resumed or promoted.
    #[serde(
        default,
        with = "serde_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
}

/// A scale step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Replicas of the candidate.
    pub replicas: u32,
}

/// Blue-green: the candidate comes up beside stable, is checked, then takes all traffic at once.
///
/// ```yaml
/// blue_green:
///   preview_route: { name: preview, match: [{ header: { name: x-preview, value: { exact: "1" } } }] }
///   pre_promotion_analysis: { name: smoke, count: 3, interval: 10s }
///   auto_promotion: { after: 5m }
///   post_promotion_analysis: { name: error-rate, count: 5, interval: 1m }
///   scale_down_delay: 30s
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreen {
    /// A header route that lets testers reach the candidate before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_route: Option<HeaderRoute>,
    /// Whether the switch happens by itself once the checks pass.
    #[serde(default)]
    pub auto_promotion: AutoPromotion,
    /// Analysis of the candidate before the switch (preview traffic, smoke tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<AnalysisRun>,
    /// Analysis after the switch; a failure switches back while the old revision still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<AnalysisRun>,
    /// With a workload: the candidate's replicas when it takes all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// With a workload: the candidate's replicas while in preview (defaults to `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_replicas: Option<u32>,
    /// With a workload: how long the old revision keeps running after the switch.
    #[serde(default = "thirty_seconds", with = "serde_duration")]
    pub scale_down_delay: Duration,
    /// With a workload: how long the candidate keeps running after a rollback; `null` keeps it.
    #[serde(default = "some_thirty_seconds", with = "serde_duration::option")]
    pub abort_scale_down_delay: Option<Duration>,
}

impl Default for BlueGreen {
    fn default() -> Self {
        BlueGreen {
            preview_route: None,
            auto_promotion: AutoPromotion::default(),
            pre_promotion_analysis: None,
            post_promotion_analysis: None,
            replicas: None,
            preview_replicas: None,
            scale_down_delay: thirty_seconds(),
            abort_scale_down_delay: some_thirty_seconds(),
        }
    }
}

/// When a blue-green rollout switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AutoPromotion {
    /// As soon as the candidate is ready and the pre-promotion analysis passed.
    #[default]
    Enabled,
    /// Only when promoted through the handle.
    Disabled,
    /// This long after the candidate became ready and passed its checks (or when promoted).
    After(#[serde(with = "serde_duration")] Duration),
}

/// A rolling update of replicas through a workload.
///
/// ```yaml
/// rolling: { replicas: 10, max_surge: 25%, max_unavailable: 0, min_ready: 10s }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rolling {
    /// Replicas of the service, before and after.
    pub replicas: u32,
    /// Replicas allowed above `replicas` during the update (count or percentage, rounded up).
    #[serde(default = "Quantity::quarter")]
    pub max_surge: Quantity,
    /// Replicas allowed below `replicas` during the update (count or percentage, rounded down).
    #[serde(default = "Quantity::quarter")]
    pub max_unavailable: Quantity,
    /// How long each batch must stay ready before the next batch starts.
    #[serde(default, with = "serde_duration")]
    pub min_ready: Duration,
}

impl Rolling {
    /// A rolling update of `replicas` with 25 % surge and 25 % unavailable.
    pub fn new(replicas: u32) -> Self {
        Rolling {
            replicas,
            max_surge: Quantity::quarter(),
            max_unavailable: Quantity::quarter(),
            min_ready: Duration::ZERO,
        }
    }

    /// Max surge and max unavailable as replica counts, as Kubernetes resolves them: surge
    /// rounds up, unavailable rounds down, and if both come to zero unavailable becomes one.
    pub fn resolved_limits(&self) -> (u32, u32) {
        let surge = self.max_surge.resolve(self.replicas, true);
        let mut unavailable = self.max_unavailable.resolve(self.replicas, false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        (surge, unavailable.min(self.replicas))
    }
}

/// A number of replicas or a percentage of the total: `2` or `"25%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantity {
    /// An absolute number of replicas.
    Count(u32),
    /// A percentage of the total, 0 to 100.
    Percent(u8),
}

impl Quantity {
    fn quarter() -> Self {
        Quantity::Percent(25)
    }

    /// The quantity as a count of `total`, rounding percentages up or down.
    pub fn resolve(self, total: u32, round_up: bool) -> u32 {
        match self {
            Quantity::Count(n) => n,
            Quantity::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p);
                let count = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(count).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Count(n) => write!(f, "{n}"),
            Quantity::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Quantity::Count(n) => serializer.serialize_u32(*n),
            Quantity::Percent(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;
        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a replica count like 2 or a percentage like \"25%\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                u32::try_from(v)
                    .map(Quantity::Count)
                    .map_err(|_| E::custom(format!("{v} replicas is too many")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                let Some(number) = v.trim().strip_suffix('%') else {
                    return v.trim().parse::<u32>().map(Quantity::Count).map_err(|_| {
                        E::custom(format!(
                            "`{v}` is neither a count nor a percentage like 25%"
                        ))
                    });
                };
                match number.trim().parse::<u8>() {
                    Ok(p) if p <= 100 => Ok(Quantity::Percent(p)),
                    _ => Err(E::custom(format!(
                        "`{v}` is not a whole percentage from 0% to 100%"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(QuantityVisitor)
    }
}

/// An A/B test: both revisions serve for a set time, then a comparison names a winner.
///
/// ```yaml
/// ab_test:
///   split: 50                     # and/or header or cookie routes
///   routes: [{ name: beta, match: [{ cookie: { name: group, value: { exact: b } } }] }]
///   duration: 2h
///   analysis: conversion          # an analysis that compares the two revisions
///   extensions: 1                 # run one more period if there is no winner yet
///   promote_winner: true
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbTest {
    /// Share of traffic to the candidate during the test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Weight>,
    /// Header or cookie routes to the candidate during the test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<HeaderRoute>,
    /// How long the test runs before the comparison.
    #[serde(with = "serde_duration")]
    pub duration: Duration,
    /// The comparison: an analysis whose result names a winner (a `proportions` template, or
    /// one registered with the builder that fills in a comparison).
    pub analysis: String,
    /// Extra periods of `duration` to run when the comparison finds no winner yet.
    #[serde(default)]
    pub extensions: u32,
    /// Promote the candidate if it wins. Otherwise the test ends with all traffic back on
    /// stable and the result reported.
    #[serde(default)]
    pub promote_winner: bool,
}

impl AbTest {
    /// A test of `duration` judged by `analysis`, with no split or routes yet.
    pub fn new(duration: Duration, analysis: impl Into<String>) -> Self {
        AbTest {
            split: None,
            routes: Vec::new(),
            duration,
            analysis: analysis.into(),
            extensions: 0,
            promote_winner: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_counts_and_percentages() {
        let q = |s: &str| serde_json::from_str::<Quantity>(s);
        assert_eq!(q("2").unwrap(), Quantity::Count(2));
        assert_eq!(q("\"25%\"").unwrap(), Quantity::Percent(25));
        assert_eq!(q("\"3\"").unwrap(), Quantity::Count(3));
        assert!(q("\"101%\"").is_err());
        assert!(q("-1").is_err());
        assert!(
            q("\"lots\"")
                .unwrap_err()
                .to_string()
                .contains("neither a count")
        );
    }

    #[test]
    fn rolling_limits_resolve_like_kubernetes() {
        let mut r = Rolling::new(10);
        assert_eq!(r.resolved_limits(), (3, 2)); // 2.5 up, 2.5 down
        r.max_surge = Quantity::Count(0);
        r.max_unavailable = Quantity::Percent(5); // 0.5 rounds down to 0
        assert_eq!(r.resolved_limits(), (0, 1));
    }
}
