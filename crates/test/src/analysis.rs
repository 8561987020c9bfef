use std::collections::{HashMap, VecDeque};
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
    /// The rollouts (and their revisions) the calls were for, usually one, and where each is.
    rollouts: Vec<(cutover_core::RolloutId, cutover_core::Revisions)>,
    index: HashMap<(cutover_core::RolloutId, cutover_core::Revisions), usize>,
    calls: Vec<Call>,
}

/// One evaluation's context, kept small: thousands of rollouts in one process (the scale
/// benchmark) each keep every call. The rollout is an index into the world's `rollouts`; the
/// analysis name is shared with the previous call when it is the same.
#[derive(Debug)]
struct Call {
    rollout: usize,
    analysis: Arc<str>,
    measurement: u32,
    elapsed: std::time::Duration,
}

impl AnalysisWorld {
    fn context(&self, call: &Call) -> AnalysisContext {
        let (rollout, revisions) = &self.rollouts[call.rollout];
        AnalysisContext::new(
            rollout.clone(),
            revisions.clone(),
            call.analysis.as_ref(),
            call.measurement,
            call.elapsed,
        )
    }
}

impl ScriptedAnalysis {
    /// Returns these results in turn; the last repeats. An empty script is always inconclusive.
    pub fn new(results: impl IntoIterator<Item = AnalysisResult>) -> Self {
        ScriptedAnalysis {
            faults: Faults::default(),
            world: Arc::new(Mutex::new(AnalysisWorld {
                script: results.into_iter().collect(),
                rollouts: Vec::new(),
                index: HashMap::new(),
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
        let world = self.world.lock();
        world.calls.iter().map(|c| world.context(c)).collect()
    }
}

#[async_trait]
impl Analysis for ScriptedAnalysis {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        {
            let mut world = self.world.lock();
            let analysis = match world.calls.last() {
                Some(last) if *last.analysis == *ctx.analysis => last.analysis.clone(),
                _ => Arc::from(ctx.analysis.as_str()),
            };
            let key = (ctx.rollout.clone(), ctx.revisions.clone());
            let next = world.rollouts.len();
            let rollout = *world.index.entry(key.clone()).or_insert(next);
            if rollout == next {
                world.rollouts.push(key);
            }
            world.calls.push(Call {
                rollout,
                analysis,
                measurement: ctx.measurement,
                elapsed: ctx.elapsed,
            });
        }
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
