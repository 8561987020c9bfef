use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use cutover_analysis::{Proportion, Verdict, two_proportion_test};

use super::{Analysis, AnalysisContext, AnalysisResult, Comparison, Sources, source};
use crate::plan::ProportionsTemplate;
use crate::{MetricQuery, ProviderError, RevisionId, Samples};

/// Compares the rate of an event between stable and candidate with a two-proportion z-test,
/// built from a plan's `proportions` template.
///
/// The verdict is `Pass` when the candidate is significantly better, `Fail` when it is
/// significantly worse, and `Inconclusive` when the data shows no difference or either revision
/// has fewer than `min_samples` requests.
#[derive(Debug, Clone)]
pub struct ProportionsAnalysis {
    template: ProportionsTemplate,
    sources: Sources,
}

impl ProportionsAnalysis {
    pub(crate) fn new(template: ProportionsTemplate, sources: Sources) -> Self {
        ProportionsAnalysis { template, sources }
    }

    async fn counts(
        &self,
        revision: &RevisionId,
        window: Duration,
    ) -> Result<Proportion, ProviderError> {
        let t = &self.template;
        let query = MetricQuery::new(&t.query, &t.query, revision.clone(), window);
        match source(&self.sources, &t.source)?.query(&query).await? {
            Samples::Counts { events, total } => Ok(Proportion::new(events, total)),
            Samples::Values(v) if v.is_empty() => Ok(Proportion::new(0, 0)),
            Samples::Values(_) => Err(ProviderError::permanent(format!(
                "query `{}` returned values; a proportions analysis needs counts (events out of a total)",
                t.query
            ))),
        }
    }
}

#[async_trait]
impl Analysis for ProportionsAnalysis {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        let t = &self.template;
        let window = t.window.unwrap_or(ctx.elapsed).max(Duration::from_secs(1));
        let stable = self.counts(&ctx.revisions.stable, window).await?;
        let candidate = self.counts(&ctx.revisions.candidate, window).await?;
        let min = t.min_samples.max(1);
        if stable.trials < min || candidate.trials < min {
            return Ok(AnalysisResult::new(
                Verdict::Inconclusive,
                format!(
                    "{} of {} requests on stable, {} on candidate; need {min} on each",
                    t.query, stable.trials, candidate.trials
                ),
            ));
        }
        let test = two_proportion_test(stable, candidate, t.alpha).map_err(|e| {
            ProviderError::permanent(format!("cannot compare `{}`", t.query)).with_source(e)
        })?;
        let significant = test.p_value < t.alpha;
        let candidate_better = (test.difference > 0.0) == t.higher_is_better;
        let (verdict, winner) = match (significant, candidate_better) {
            (false, _) => (Verdict::Inconclusive, None),
            (true, true) => (Verdict::Pass, Some(ctx.revisions.candidate.clone())),
            (true, false) => (Verdict::Fail, Some(ctx.revisions.stable.clone())),
        };
        let summary = format!(
            "{}: stable {:.4} ({}/{}), candidate {:.4} ({}/{}), difference {:+.4}, p = {:.4}{}",
            t.query,
            test.control_rate,
            stable.successes,
            stable.trials,
            test.treatment_rate,
            candidate.successes,
            candidate.trials,
            test.difference,
            test.p_value,
            winner
                .as_ref()
                .map(|w| format!(", winner {w}"))
                .unwrap_or_default(),
        );
        let numbers = BTreeMap::from([
            ("stable_rate".to_owned(), test.control_rate),
            ("candidate_rate".to_owned(), test.treatment_rate),
            ("p_value".to_owned(), test.p_value),
            ("ci_low".to_owned(), test.ci_low),
            ("ci_high".to_owned(), test.ci_high),
        ]);
        Ok(AnalysisResult {
            verdict,
            summary,
            metrics: Vec::new(),
            comparison: Some(Comparison {
                winner,
                effect: test.difference,
                confidence: test.confidence(),
                numbers,
            }),
        })
    }
}
