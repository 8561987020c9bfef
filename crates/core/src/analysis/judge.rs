//! The Kayenta-compatible judge as an [`Analysis`], built from a plan's `judge` template.

use async_trait::async_trait;
use cutover_analysis::Verdict;
use cutover_analysis::kayenta::{self, Classification, Label, MetricData, ScoreLabel};

use super::{Analysis, AnalysisContext, AnalysisResult, MetricResult, Sources, source};
use crate::plan::JudgeTemplate;
use crate::{MetricQuery, ProviderError, RevisionId, Samples};

/// A Kayenta-style canary judgment of candidate (experiment) against stable (control), built
/// from a plan's `judge` template.
///
/// Each metric of the template's Kayenta config is queried for both revisions over the
/// template's window, classified, and the results scored by group weight. A score at or above
/// `pass` is `Pass`, at or above `marginal` `Inconclusive`, and below (or a critical failure)
/// `Fail`. The record gets one [`MetricResult`] per metric (value: the shift estimate; detail:
/// label, interval, ratio, arm sizes) and a last one named `score` with the score.
///
/// A query that fails makes the measurement an error (counted against
/// `consecutive_error_limit`); a source that returns counts instead of values is a permanent
/// error naming the metric.
#[derive(Debug, Clone)]
pub struct JudgeAnalysis {
    template: JudgeTemplate,
    sources: Sources,
}

impl JudgeAnalysis {
    pub(crate) fn new(template: JudgeTemplate, sources: Sources) -> Self {
        JudgeAnalysis { template, sources }
    }

    async fn values(&self, metric: &str, revision: &RevisionId) -> Result<Vec<f64>, ProviderError> {
        let Some(q) = self.template.queries.get(metric) else {
            return Err(ProviderError::permanent(format!(
                "judge metric `{metric}` has no query"
            )));
        };
        let query = MetricQuery::new(metric, &q.query, revision.clone(), self.template.window);
        match source(&self.sources, &q.source)?.query(&query).await? {
            Samples::Values(v) => Ok(v),
            Samples::Counts { .. } => Err(ProviderError::permanent(format!(
                "judge metric `{metric}`: query `{}` returned counts; the judge needs one value per observation",
                q.query
            ))),
        }
    }
}

fn metric_verdict(label: Label) -> Verdict {
    match label {
        Label::Pass => Verdict::Pass,
        Label::High | Label::Low | Label::NodataFailMetric => Verdict::Fail,
        Label::Nodata | Label::Error => Verdict::Inconclusive,
    }
}

fn detail(c: &Classification) -> String {
    let numbers = match (c.ci, c.estimate) {
        (Some([lo, hi]), Some(est)) => format!(
            "; shift {est:.6} in [{lo:.6}, {hi:.6}], ratio {}",
            c.ratio.map_or("n/a".to_owned(), |r| format!("{r:.4}"))
        ),
        _ => String::new(),
    };
    format!(
        "{}{} ({}; control n={}, candidate n={}){numbers}",
        c.label,
        if c.critical { ", critical" } else { "" },
        c.reason,
        c.control.count,
        c.experiment.count,
    )
}

#[async_trait]
impl Analysis for JudgeAnalysis {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        let t = &self.template;
        let mut data = std::collections::BTreeMap::new();
        for m in &t.config.metrics {
            let control = self.values(&m.name, &ctx.revisions.stable).await?;
            let experiment = self.values(&m.name, &ctx.revisions.candidate).await?;
            data.insert(
                m.name.clone(),
                MetricData {
                    control,
                    experiment,
                },
            );
        }
        let thresholds = t.effective_thresholds();
        let judgment = kayenta::judge(
            &t.config,
            |name| data.remove(name),
            t.settings.unwrap_or_default(),
            thresholds,
        );
        let mut metrics: Vec<MetricResult> = judgment
            .metrics
            .iter()
            .map(|m| MetricResult {
                name: m.name.clone(),
                verdict: metric_verdict(m.classification.label),
                value: m.classification.estimate,
                samples: m.classification.experiment.count,
                detail: if m.muted {
                    format!("muted: {}", detail(&m.classification))
                } else {
                    detail(&m.classification)
                },
            })
            .collect();
        let score = &judgment.score;
        let verdict = match score.label {
            ScoreLabel::Pass => Verdict::Pass,
            ScoreLabel::Marginal => Verdict::Inconclusive,
            ScoreLabel::Fail => Verdict::Fail,
        };
        let why = score
            .reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let summary = format!(
            "score {:.2} {} (pass {}, marginal {}){why}; {}",
            score.score,
            score.label,
            thresholds.pass,
            thresholds.marginal,
            judgment
                .metrics
                .iter()
                .map(|m| format!("{} {}", m.name, m.classification.label))
                .collect::<Vec<_>>()
                .join(", ")
        );
        metrics.push(MetricResult {
            name: "score".into(),
            verdict,
            value: Some(score.score),
            samples: 0,
            detail: format!("{}{why}", score.label),
        });
        Ok(AnalysisResult {
            verdict,
            summary,
            metrics,
            comparison: None,
        })
    }
}
