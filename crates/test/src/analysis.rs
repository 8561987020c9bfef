use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use cutover_core::{Analysis, AnalysisContext, AnalysisResult, ProviderError, Verdict};
use parking_lot::Mutex;

use crate::Faults;

/// An [`Analysis`] that returns scripted results in turn; the last repeats. For engine tests that
/// care about verdicts, not metrics. Operation for [`Faults`]: `evaluate`.
///
/// ```
/// use cutover_core::Verdict;
/// use cutover_test::ScriptedAnalysis;
/// let analysis = ScriptedAnalysis::verdicts([Verdict::Pass, Verdict::Pass, Verdict::Fail]);
/// ```
#[derive(Debug, Clone)]
pub struct ScriptedAnalysis {
    faults: Faults,
    world: Arc<Mutex<AnalysisWorld>>,
}

#[derive(Debug, Default)]
struct AnalysisWorld {
    script: VecDeque<AnalysisResult>,
    calls: Vec<AnalysisContext>,
}

impl ScriptedAnalysis {
    /// Returns these results in turn; the last repeats. An empty script is always inconclusive.
    pub fn new(results: impl IntoIterator<Item = AnalysisResult>) -> Self {
        ScriptedAnalysis {
            faults: Faults::default(),
            world: Arc::new(Mutex::new(AnalysisWorld {
                script: results.into_iter().collect(),
                calls: Vec::new(),
            })),
        }
    }

    /// Returns results with these verdicts in turn; the last repeats.
    pub fn verdicts(verdicts: impl IntoIterator<Item = Verdict>) -> Self {
        Self::new(
            verdicts
                .into_iter()
                .map(|v| AnalysisResult::new(v, format!("scripted {v}"))),
        )
    }

    /// Replaces the script.
    pub fn set_script(&self, results: impl IntoIterator<Item = AnalysisResult>) {
        self.world.lock().script = results.into_iter().collect();
    }

    /// The injected errors.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The context of every evaluation, in order.
    pub fn calls(&self) -> Vec<AnalysisContext> {
        self.world.lock().calls.clone()
    }
}

#[async_trait]
impl Analysis for ScriptedAnalysis {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        self.world.lock().calls.push(ctx.clone());
        self.faults.check("evaluate")?;
        let mut world = self.world.lock();
        let result = if world.script.len() > 1 {
            world.script.pop_front()
        } else {
            world.script.front().cloned()
        };
        Ok(result.unwrap_or_else(|| AnalysisResult::new(Verdict::Inconclusive, "empty script")))
    }
}
