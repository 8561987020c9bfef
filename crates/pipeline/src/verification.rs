//! A stage's `verification:` as written, and checked: analyses measured after the stage's
//! rollout promoted freight, in the format of a plan's analyses and analysis steps.

use std::collections::{BTreeMap, BTreeSet};

use cutover_core::{AnalysisRun, AnalysisTemplate, Canary, CanaryStep, OnInconclusive, Plan};
use serde::{Deserialize, Serialize};

use crate::spec::SpecError;

/// What a stage measures after its rollout promoted freight (Kargo's `verification`), as
/// written: analysis templates, and the runs that measure them.
///
/// ```yaml
/// verification:
///   analyses:                 # the format of a plan's `analyses`
///     errors:
///       threshold:
///         metrics: [ { name: error-rate, source: proxy, query: error_rate, window: 1m, max: 0.01 } ]
///   runs:                     # the format of a plan's analysis step: how often, how many
///     - { name: errors, initial_delay: 30s, interval: 1m, count: 10 }   # ten minutes
///     - { name: smoke }       # a template of the stage's plan, or registered by an environment
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSpec {
    /// Analysis templates by name, written as in a plan's `analyses`. Runs may also name the
    /// stage plan's analyses, and analyses an environment registers with
    /// [`RolloutBuilder::analysis`](cutover_core::RolloutBuilder::analysis) in `attach`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub analyses: BTreeMap<String, AnalysisTemplate>,
    /// The runs, measured side by side; every one must succeed. Each is written as a plan's
    /// analysis step: `interval` between measurements, `count` of them (default 1),
    /// `initial_delay` before the first, `failure_limit` and the other limits. A run that ends
    /// inconclusive or in error fails verification (there is no one to resume it).
    pub runs: Vec<AnalysisRun>,
}

/// A checked verification: the runs, and every template they may name (the stage plan's and
/// the verification's own).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StageVerification {
    /// Templates by name: the stage plan's analyses and the verification's.
    pub analyses: BTreeMap<String, AnalysisTemplate>,
    /// The runs.
    pub runs: Vec<AnalysisRun>,
}

impl StageVerification {
    /// Checks `spec` of a stage whose rollouts follow `plan`; `at` is where it is written, like
    /// `stages[2].verification`, and starts the path of every error.
    pub(crate) fn check(spec: &VerificationSpec, plan: &Plan, at: &str) -> Result<Self, SpecError> {
        if spec.runs.is_empty() {
            return Err(SpecError::invalid(
                format!("{at}.runs"),
                "needs at least one run, like `- { name: errors, interval: 1m, count: 5 }`",
            ));
        }
        let mut analyses = plan.analyses.clone();
        for (name, template) in &spec.analyses {
            if analyses.insert(name.clone(), template.clone()).is_some() {
                return Err(SpecError::invalid(
                    format!("{at}.analyses.{name}"),
                    format!("`{name}` is also an analysis of the stage's plan; rename one"),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (j, run) in spec.runs.iter().enumerate() {
            let path = format!("{at}.runs[{j}]");
            if !seen.insert(run.name.as_str()) {
                return Err(SpecError::invalid(
                    format!("{path}.name"),
                    format!("`{}` is run twice", run.name),
                ));
            }
            if let Some(AnalysisTemplate::Sequential(_)) = analyses.get(&run.name) {
                return Err(SpecError::invalid(
                    format!("{path}.name"),
                    format!(
                        "`{}` is a sequential analysis, which runs only inside a rollout; use a threshold, judge or conditions analysis here",
                        run.name
                    ),
                ));
            }
            if let OnInconclusive::Extend { .. } = run.on_inconclusive {
                return Err(SpecError::invalid(
                    format!("{path}.on_inconclusive"),
                    "verification is not extended: an inconclusive run fails it; raise `inconclusive_limit` or `count` instead",
                ));
            }
        }
        // The checks of a plan's analysis steps and templates, on a plan made of them.
        let mut probe = Plan::new(Canary::new(
            spec.runs.iter().cloned().map(CanaryStep::Analysis),
        ));
        probe.analyses.clone_from(&analyses);
        if let Err(e) = probe.validate() {
            let message = e.to_string();
            let inner = e.path().unwrap_or_default();
            let reason = message
                .strip_prefix(&format!("{inner}: "))
                .unwrap_or(&message)
                .to_owned();
            return Err(SpecError::invalid(relocate(inner, at), reason));
        }
        Ok(StageVerification {
            analyses,
            runs: spec.runs.clone(),
        })
    }
}

/// The path in the pipeline file of `inner`, a path in the plan made of the verification.
fn relocate(inner: &str, at: &str) -> String {
    const STEPS: &str = "strategy.canary.steps[";
    if let Some(rest) = inner.strip_prefix(STEPS)
        && let Some((index, rest)) = rest.split_once(']')
    {
        let rest = rest.strip_prefix(".analysis").unwrap_or(rest);
        return format!("{at}.runs[{index}]{rest}");
    }
    if inner.starts_with("analyses.") {
        return format!("{at}.{inner}");
    }
    at.to_owned()
}
