//! Which detectors run in which cell, and on how many replications.

use crate::detectors::argo::Argo;
use crate::detectors::cusum::Cusum;
use crate::detectors::group_sequential::GroupSequential;
use crate::detectors::kayenta::Kayenta;
use crate::detectors::mann_whitney::NaiveMannWhitney;
use crate::detectors::sprt::{Sprt, TwoSampleTailSprt};
use crate::detectors::{Metric, View, cutover};
use crate::sim::Spec;
use crate::traffic::{Effect, Scenario};

/// Replication caps for the baselines that re-sort every raw value at every check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Kayenta and Mann-Whitney on 10 s points.
    pub(crate) baseline: usize,
    /// Kayenta and Mann-Whitney on raw latencies (run at 5 req/s only).
    pub(crate) raw: usize,
}

fn spec<'a>(
    name: String,
    max_reps: usize,
    make: impl Fn() -> Box<dyn crate::detectors::Detector> + Sync + 'a,
) -> Spec<'a> {
    Spec {
        name,
        max_reps,
        make: Box::new(make),
    }
}

/// The lineup of one cell. The SPRT limit comes first (named `sprt-limit`) when the scenario
/// has an effect, then the CUSUM that does not know the onset (`sprt-cusum`) when its
/// threshold is given.
pub(crate) fn lineup(
    scenario: &Scenario,
    rate: f64,
    caps: Caps,
    cusum_threshold: Option<f64>,
) -> Vec<Spec<'_>> {
    let all = usize::MAX;
    let mut out = Vec::new();
    if scenario.effect != Effect::None {
        out.push(spec("sprt-limit".into(), all, move || {
            Box::new(Sprt::new(scenario))
        }));
        if let Some(h) = cusum_threshold {
            out.push(spec("sprt-cusum".into(), all, move || {
                Box::new(Cusum::new(scenario.effect, h))
            }));
        }
    }
    if matches!(scenario.effect, Effect::Tail { .. }) {
        out.push(spec("sprt-2s-limit".into(), all, move || {
            Box::new(TwoSampleTailSprt::new(scenario))
        }));
    }
    let mut metrics = Vec::new();
    if scenario.effect.has_errors() {
        metrics.push((Metric::Errors, "err"));
    }
    if scenario.effect.has_latency() {
        metrics.push((Metric::Latency, "lat"));
    }
    for (m, tag) in metrics {
        out.extend(cutover::specs(m, tag));
        out.push(spec(
            format!("kayenta-10s/{tag}"),
            caps.baseline,
            move || Box::new(Kayenta::new(m, View::Points, true)),
        ));
        out.push(spec(
            format!("kayenta-10s-nogates/{tag}"),
            caps.baseline,
            move || Box::new(Kayenta::new(m, View::Points, false)),
        ));
        out.push(spec(
            format!("mw-peek-10s/{tag}"),
            caps.baseline,
            move || Box::new(NaiveMannWhitney::new(m, View::Points)),
        ));
        if m == Metric::Latency && rate <= 5.0 {
            out.push(spec(format!("kayenta-raw/{tag}"), caps.raw, move || {
                Box::new(Kayenta::new(m, View::Raw, true))
            }));
            out.push(spec(format!("mw-peek-raw/{tag}"), caps.raw, move || {
                Box::new(NaiveMannWhitney::new(m, View::Raw))
            }));
        }
        for limit in [0, 2] {
            out.push(spec(format!("argo-fl{limit}/{tag}"), all, move || {
                Box::new(Argo::new(m, limit))
            }));
        }
        out.push(spec(format!("obf-k180/{tag}"), all, move || {
            Box::new(GroupSequential::new(m))
        }));
    }
    out
}
