//! Argo Rollouts-style condition checks as an [`Analysis`], built from a plan's `conditions`
//! template.

use async_trait::async_trait;
use cutover_analysis::{ConditionInput, Verdict, assess};

use super::threshold::aggregate;
use super::{Analysis, AnalysisContext, AnalysisResult, MetricResult, Sources, query_target};
use crate::plan::{ConditionMetric, ConditionsTemplate};
use crate::{ProviderError, Samples};

/// Metrics checked with success and failure conditions, built from a plan's `conditions`
/// template.
///
/// Each metric's phase follows Argo's rules ([`assess`]). The measurement fails if any metric
/// fails; otherwise it is inconclusive if any is; otherwise it passes. A query that fails, or a
/// condition that cannot be evaluated (`result[3]` of two values), makes the measurement an
/// error, as in Argo, unless another metric failed.
#[derive(Debug, Clone)]
pub struct ConditionsAnalysis {
    template: ConditionsTemplate,
    sources: Sources,
}

impl ConditionsAnalysis {
    pub(crate) fn new(template: ConditionsTemplate, sources: Sources) -> Self {
        ConditionsAnalysis { template, sources }
    }
}

fn check(metric: &ConditionMetric, samples: &Samples) -> Result<MetricResult, ProviderError> {
    #[allow(clippy::cast_precision_loss)]
    let (value, values) = match samples {
        Samples::Values(v) => (
            aggregate(metric.aggregate, v).unwrap_or(f64::NAN),
            v.clone(),
        ),
        Samples::Counts { events, total } => {
            let rate = if *total == 0 {
                f64::NAN
            } else {
                *events as f64 / *total as f64
            };
            (rate, if *total == 0 { Vec::new() } else { vec![rate] })
        }
    };
    let input = ConditionInput {
        value,
        values: &values,
    };
    let verdict = assess(
        metric.success_condition.as_ref(),
        metric.failure_condition.as_ref(),
        &input,
    )
    .map_err(|e| ProviderError::permanent(format!("metric `{}`: {e}", metric.name)))?;
    let conditions = [
        metric
            .success_condition
            .as_ref()
            .map(|c| format!("success when `{c}`")),
        metric
            .failure_condition
            .as_ref()
            .map(|c| format!("failure when `{c}`")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    Ok(MetricResult {
        name: metric.name.clone(),
        verdict,
        value: Some(value).filter(|v| !v.is_nan()),
        samples: samples.sample_size(),
        detail: format!(
            "result {value} ({} values): {verdict}{}",
            values.len(),
            if conditions.is_empty() {
                String::new()
            } else {
                format!(" ({conditions})")
            }
        ),
    })
}

#[async_trait]
impl Analysis for ConditionsAnalysis {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        let mut metrics = Vec::with_capacity(self.template.metrics.len());
        let mut first_error = None;
        for metric in &self.template.metrics {
            let result = query_target(
                &self.sources,
                ctx,
                &metric.name,
                &metric.source,
                &metric.query,
                metric.revision,
                metric.window,
            )
            .await
            .and_then(|samples| check(metric, &samples));
            match result {
                Ok(r) => metrics.push(r),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let any_failed = metrics.iter().any(|m| m.verdict == Verdict::Fail);
        if !any_failed && let Some(e) = first_error {
            return Err(e);
        }
        let verdict = Verdict::all(metrics.iter().map(|m| m.verdict));
        let summary = metrics
            .iter()
            .filter(|m| verdict == Verdict::Pass || m.verdict == verdict)
            .map(|m| format!("{}: {}", m.name, m.detail))
            .collect::<Vec<_>>()
            .join("; ");
        Ok(AnalysisResult {
            verdict,
            summary,
            metrics,
            comparison: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(success: Option<&str>, failure: Option<&str>) -> ConditionMetric {
        ConditionMetric {
            name: "m".into(),
            source: "s".into(),
            query: "q".into(),
            revision: crate::plan::Target::Candidate,
            window: std::time::Duration::from_mins(5),
            aggregate: crate::plan::Aggregate::Mean,
            success_condition: success.map(|s| cutover_analysis::Condition::parse(s).unwrap()),
            failure_condition: failure.map(|s| cutover_analysis::Condition::parse(s).unwrap()),
        }
    }

    #[test]
    fn argo_phases_from_samples() {
        let m = metric(Some("result[0] < 0.01"), Some("result[0] >= 0.05"));
        let counts = |events, total| Samples::Counts { events, total };
        assert_eq!(check(&m, &counts(1, 1000)).unwrap().verdict, Verdict::Pass);
        assert_eq!(
            check(&m, &counts(20, 1000)).unwrap().verdict,
            Verdict::Inconclusive
        );
        assert_eq!(check(&m, &counts(60, 1000)).unwrap().verdict, Verdict::Fail);
        // No data: result[0] does not exist, which is a measurement error.
        assert!(check(&m, &counts(0, 0)).is_err());
        let mean = metric(Some("result < 2 && len(result) == 3"), None);
        let v = Samples::Values(vec![1.0, 2.0, 3.0]);
        assert_eq!(check(&mean, &v).unwrap().verdict, Verdict::Fail);
        let v = Samples::Values(vec![1.0, 1.0, 1.0]);
        assert_eq!(check(&mean, &v).unwrap().verdict, Verdict::Pass);
    }
}
