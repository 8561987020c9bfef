use async_trait::async_trait;
use cutover_analysis::{Verdict, quantile_r7};

use super::{Analysis, AnalysisContext, AnalysisResult, MetricResult, Sources, query_target};
use crate::plan::{Aggregate, ThresholdMetric, ThresholdTemplate};
use crate::{ProviderError, Samples};

/// Bounds on metric values, built from a plan's `threshold` template.
///
/// Each metric is queried for its revision over its window and reduced to one value. Fewer
/// samples than `min_samples`, or a NaN value, is `Inconclusive`; outside the bounds is `Fail`.
/// The measurement fails if any metric fails, even when another could not be queried; it is
/// an error if a metric could not be queried and none failed.
#[derive(Debug, Clone)]
pub struct ThresholdAnalysis {
    template: ThresholdTemplate,
    sources: Sources,
}

impl ThresholdAnalysis {
    pub(crate) fn new(template: ThresholdTemplate, sources: Sources) -> Self {
        ThresholdAnalysis { template, sources }
    }
}

#[async_trait]
impl Analysis for ThresholdAnalysis {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        let mut metrics = Vec::with_capacity(self.template.metrics.len());
        let mut first_error = None;
        for metric in &self.template.metrics {
            let samples = query_target(
                &self.sources,
                ctx,
                &metric.name,
                &metric.source,
                &metric.query,
                metric.revision,
                metric.window,
            )
            .await;
            match samples {
                Ok(samples) => metrics.push(judge(metric, &samples)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let failed: Vec<&MetricResult> = metrics
            .iter()
            .filter(|m| m.verdict == Verdict::Fail)
            .collect();
        if failed.is_empty()
            && let Some(e) = first_error
        {
            return Err(e);
        }
        let verdict = Verdict::all(metrics.iter().map(|m| m.verdict));
        let summary = match verdict {
            Verdict::Fail => failed
                .iter()
                .map(|m| format!("{}: {}", m.name, m.detail))
                .collect::<Vec<_>>()
                .join("; "),
            Verdict::Inconclusive => metrics
                .iter()
                .filter(|m| m.verdict == Verdict::Inconclusive)
                .map(|m| format!("{}: {}", m.name, m.detail))
                .collect::<Vec<_>>()
                .join("; "),
            Verdict::Pass => metrics
                .iter()
                .map(|m| format!("{}: {}", m.name, m.detail))
                .collect::<Vec<_>>()
                .join("; "),
        };
        Ok(AnalysisResult {
            verdict,
            summary,
            metrics,
            comparison: None,
        })
    }
}

fn judge(metric: &ThresholdMetric, samples: &Samples) -> MetricResult {
    let size = samples.sample_size();
    let result = |verdict, value, detail: String| MetricResult {
        name: metric.name.clone(),
        verdict,
        value,
        samples: size,
        detail,
    };
    if size < metric.min_samples.max(1) {
        let need = metric.min_samples.max(1);
        return result(
            Verdict::Inconclusive,
            None,
            format!("{size} samples, need at least {need}"),
        );
    }
    let value = match samples {
        Samples::Values(values) => aggregate(metric.aggregate, values),
        #[allow(clippy::cast_precision_loss)]
        Samples::Counts { events, total } => Some(*events as f64 / *total as f64),
    };
    let Some(value) = value.filter(|v| !v.is_nan()) else {
        return result(Verdict::Inconclusive, None, "no numeric value (NaN)".into());
    };
    if let Some(max) = metric.max
        && value > max
    {
        return result(
            Verdict::Fail,
            Some(value),
            format!("{value:.6} > max {max} ({size} samples)"),
        );
    }
    if let Some(min) = metric.min
        && value < min
    {
        return result(
            Verdict::Fail,
            Some(value),
            format!("{value:.6} < min {min} ({size} samples)"),
        );
    }
    let bounds = match (metric.min, metric.max) {
        (Some(lo), Some(hi)) => format!("within [{lo}, {hi}]"),
        (Some(lo), None) => format!(">= min {lo}"),
        (None, Some(hi)) => format!("<= max {hi}"),
        (None, None) => "unbounded".into(),
    };
    result(
        Verdict::Pass,
        Some(value),
        format!("{value:.6} {bounds} ({size} samples)"),
    )
}

#[allow(clippy::cast_precision_loss)]
pub(super) fn aggregate(how: Aggregate, values: &[f64]) -> Option<f64> {
    let clean: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if clean.is_empty() {
        return None;
    }
    match how {
        Aggregate::Mean => Some(clean.iter().sum::<f64>() / clean.len() as f64),
        Aggregate::Min => clean.iter().copied().reduce(f64::min),
        Aggregate::Max => clean.iter().copied().reduce(f64::max),
        Aggregate::Last => clean.last().copied(),
        Aggregate::Sum => Some(clean.iter().sum()),
        Aggregate::P50 => quantile_r7(&clean, 0.5),
        Aggregate::P90 => quantile_r7(&clean, 0.9),
        Aggregate::P95 => quantile_r7(&clean, 0.95),
        Aggregate::P99 => quantile_r7(&clean, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(min: Option<f64>, max: Option<f64>, min_samples: u64) -> ThresholdMetric {
        ThresholdMetric {
            min,
            max,
            min_samples,
            ..ThresholdMetric::at_most("m", "s", "q", 0.0)
        }
    }

    #[test]
    fn judges_bounds_and_missing_data() {
        let m = metric(None, Some(0.01), 10);
        let counts = |events, total| Samples::Counts { events, total };
        assert_eq!(judge(&m, &counts(1, 1000)).verdict, Verdict::Pass);
        assert_eq!(judge(&m, &counts(20, 1000)).verdict, Verdict::Fail);
        assert_eq!(judge(&m, &counts(0, 5)).verdict, Verdict::Inconclusive);
        assert_eq!(judge(&m, &Samples::empty()).verdict, Verdict::Inconclusive);
        let nan = judge(
            &metric(Some(1.0), None, 1),
            &Samples::Values(vec![f64::NAN]),
        );
        assert_eq!(nan.verdict, Verdict::Inconclusive);
        let low = judge(&metric(Some(1.0), None, 1), &Samples::Values(vec![0.5]));
        assert_eq!((low.verdict, low.value), (Verdict::Fail, Some(0.5)));
    }

    #[test]
    fn aggregates() {
        let v = [1.0, 2.0, 3.0, 4.0, f64::NAN];
        assert_eq!(aggregate(Aggregate::Mean, &v), Some(2.5));
        assert_eq!(aggregate(Aggregate::Min, &v), Some(1.0));
        assert_eq!(aggregate(Aggregate::Max, &v), Some(4.0));
        assert_eq!(aggregate(Aggregate::Last, &v), Some(4.0));
        assert_eq!(aggregate(Aggregate::Sum, &v), Some(10.0));
        assert_eq!(aggregate(Aggregate::P50, &v), Some(2.5));
        assert_eq!(aggregate(Aggregate::Mean, &[f64::NAN]), None);
    }
}
