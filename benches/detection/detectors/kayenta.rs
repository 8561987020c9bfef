//! Kayenta-style repeated judgment (ANALYSIS.md §1.6): the full `NetflixACAJudge-v1.0` judge
//! with production defaults on the growing window at every check, one critical metric
//! (so any High scores 0), roll back when the score is ≤ marginal.

use cutover_analysis::kayenta::{
    AnalysisConfigurations, CanaryConfig, CanaryMetric, Direction, JudgeSettings, MetricConfig,
    MetricData, ScoreThresholds, judge,
};

use super::{Detector, Metric, Samples, View};
use crate::traffic::Window;

/// The judge on growing samples.
pub(crate) struct Kayenta {
    samples: Samples,
    config: CanaryConfig,
    settings: JudgeSettings,
    thresholds: ScoreThresholds,
}

impl Kayenta {
    /// Production defaults (tolerance 0.25, confidence 0.98, effect gates 1.0, pass 95 /
    /// marginal 75), direction `increase` (the bad direction of errors and latency), one
    /// critical metric. `gates = false` disables the tolerance and effect gates.
    pub(crate) fn new(metric: Metric, view: View, gates: bool) -> Self {
        let canary = MetricConfig {
            direction: Direction::Increase,
            critical: true,
            ..MetricConfig::default()
        };
        let config = CanaryConfig {
            metrics: vec![CanaryMetric {
                name: "m".into(),
                groups: vec!["g".into()],
                scope_name: None,
                analysis_configurations: AnalysisConfigurations { canary },
            }],
            ..CanaryConfig::default()
        };
        let mut settings = JudgeSettings::default();
        if !gates {
            settings.tolerance = 0.0;
        }
        Kayenta {
            samples: Samples::new(metric, view),
            config,
            settings,
            thresholds: ScoreThresholds::default(),
        }
    }
}

impl Detector for Kayenta {
    fn check(&mut self, w: &Window) -> bool {
        self.samples.push(w);
        let s = &self.samples;
        let j = judge(
            &self.config,
            |_| {
                Some(MetricData {
                    control: s.control.clone(),
                    experiment: s.canary.clone(),
                })
            },
            self.settings,
            self.thresholds,
        );
        j.score.score <= self.thresholds.marginal
    }
}
