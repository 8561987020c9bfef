//! cutover's anytime-valid sequential tests (`cutover_analysis::sequential`), fed window by
//! window with the same traffic as every other detector: the count tests read each window's
//! error events (and requests), the distribution test every latency, the mSPRT every
//! log-latency in arrival order. A test rolls back at the first check where it has rejected.

use cutover_analysis::Alternative;
use cutover_analysis::sequential::{
    CountSettings, CountTest, DistributionSettings, DistributionTest, ExceedanceSettings,
    ExceedanceTest, MeanSettings, MeanTest, ObservedShareCountTest, StationaryCountSettings,
    StationaryCountTest,
};

use super::{Detector, Metric};
use crate::sim::Spec;
use crate::traffic::{CANARY, CONTROL, Window};

/// One cutover test.
pub(crate) enum Sequential {
    /// Dirichlet-multinomial counts test with the configured split (1/2).
    Counts(CountTest),
    /// The counts test with the realised request share per window.
    ObservedShare(ObservedShareCountTest),
    /// The CDF-band (and tail exceedance) test.
    Distribution(DistributionTest),
    /// The mSPRT on log-latency pairs.
    Mean(MeanTest),
    /// The exceedance test on latencies (stationary null).
    Exceedance(ExceedanceTest),
    /// The conformal counts test on error indicators (stationary null).
    Stationary(StationaryCountTest),
}

impl Sequential {
    /// A counts test, or the observed-share variant.
    pub(crate) fn counts(settings: CountSettings, observed_share: bool) -> Self {
        if observed_share {
            Sequential::ObservedShare(
                ObservedShareCountTest::new(0.5, settings).expect("valid count settings"),
            )
        } else {
            Sequential::Counts(CountTest::new(0.5, settings).expect("valid count settings"))
        }
    }

    /// A distribution test.
    pub(crate) fn distribution(settings: DistributionSettings) -> Self {
        Sequential::Distribution(DistributionTest::new(settings).expect("valid settings"))
    }

    /// An mSPRT.
    pub(crate) fn mean(settings: MeanSettings) -> Self {
        Sequential::Mean(MeanTest::new(settings).expect("valid mean settings"))
    }
}

fn logs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.ln()).collect()
}

impl Detector for Sequential {
    fn check(&mut self, w: &Window) -> bool {
        let (c, t) = (CONTROL, CANARY);
        let evidence = match self {
            Sequential::Counts(test) => test
                .observe(w.errors[c], w.errors[t])
                .map(|()| test.evidence()),
            Sequential::ObservedShare(test) => test
                .observe_window(w.errors[c], w.errors[t], w.requests[c], w.requests[t])
                .map(|()| test.evidence()),
            Sequential::Stationary(test) => test
                .observe_window(w.errors[c], w.requests[c], w.errors[t], w.requests[t])
                .map(|()| test.evidence()),
            Sequential::Distribution(test) => test
                .observe_control(&w.latency[c])
                .and_then(|()| test.observe_canary(&w.latency[t]))
                .map(|()| test.check()),
            Sequential::Exceedance(test) => test
                .observe_control(&w.latency[c])
                .and_then(|()| test.observe_canary(&w.latency[t]))
                .map(|()| test.check()),
            Sequential::Mean(test) => test
                .observe_control(&logs(&w.latency[c]))
                .and_then(|()| test.observe_canary(&logs(&w.latency[t])))
                .map(|()| test.evidence()),
        };
        // The inputs are valid by construction; an error would be a bug worth seeing.
        evidence
            .expect("sequential test rejected simulated input")
            .rejected
    }
}

fn spec(name: String, make: impl Fn() -> Sequential + Sync + 'static) -> Spec<'static> {
    Spec {
        name,
        max_reps: usize::MAX,
        make: Box::new(move || Box::new(make())),
    }
}

/// The cutover detectors for `metric` with their default settings (names end in `/tag`).
pub(crate) fn specs(metric: Metric, tag: &str) -> Vec<Spec<'static>> {
    let greater = Alternative::Greater;
    match metric {
        Metric::Errors => vec![
            spec(format!("seq-counts-2s/{tag}"), || {
                Sequential::counts(CountSettings::default(), false)
            }),
            spec(format!("seq-counts-gt/{tag}"), move || {
                Sequential::counts(
                    CountSettings {
                        alternative: greater,
                        ..Default::default()
                    },
                    false,
                )
            }),
            spec(format!("seq-counts-obs-2s/{tag}"), || {
                Sequential::counts(CountSettings::default(), true)
            }),
            spec(format!("seq-counts-obs-gt/{tag}"), move || {
                Sequential::counts(
                    CountSettings {
                        alternative: greater,
                        ..Default::default()
                    },
                    true,
                )
            }),
            spec(format!("seq-counts-st/{tag}"), || {
                Sequential::Stationary(
                    StationaryCountTest::new(StationaryCountSettings::default())
                        .expect("valid settings"),
                )
            }),
        ],
        Metric::Latency => vec![
            spec(format!("seq-dist-2s/{tag}"), || {
                Sequential::distribution(DistributionSettings::default())
            }),
            spec(format!("seq-dist-gt/{tag}"), move || {
                Sequential::distribution(DistributionSettings {
                    alternative: greater,
                    ..Default::default()
                })
            }),
            spec(format!("seq-dist-st-gt/{tag}"), move || {
                Sequential::distribution(DistributionSettings {
                    alternative: greater,
                    stationary: true,
                    ..Default::default()
                })
            }),
            spec(format!("seq-band-gt/{tag}"), move || {
                Sequential::distribution(DistributionSettings {
                    alternative: greater,
                    tail_quantiles: Vec::new(),
                    ..Default::default()
                })
            }),
            spec(format!("seq-exceed-gt/{tag}"), || {
                Sequential::Exceedance(
                    ExceedanceTest::new(ExceedanceSettings::default()).expect("valid settings"),
                )
            }),
            spec(format!("seq-exceed-notm-gt/{tag}"), || {
                Sequential::Exceedance(
                    ExceedanceTest::new(ExceedanceSettings {
                        tail_mixture: false,
                        ..ExceedanceSettings::default()
                    })
                    .expect("valid settings"),
                )
            }),
            spec(format!("seq-msprt-2s/{tag}"), || {
                Sequential::mean(MeanSettings::default())
            }),
            spec(format!("seq-msprt-gt/{tag}"), move || {
                Sequential::mean(MeanSettings {
                    alternative: greater,
                    ..Default::default()
                })
            }),
        ],
    }
}
