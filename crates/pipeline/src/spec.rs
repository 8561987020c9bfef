//! Pipelines as written (YAML or JSON) and the checked [`Pipeline`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cutover_core::{Plan, RolloutId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::calendar::{FreezeWindow, FreezeWindowSpec};
use crate::verification::{StageVerification, VerificationSpec};

/// Why a pipeline file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The text is not valid YAML or JSON.
    #[error("pipeline is not valid {format}: {message}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field is wrong: a type, an unknown name, a cycle, a missing stage.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where, like `stages[2].upstreams[0]`.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl SpecError {
    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The path of the field at fault, if the error is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { path, .. } => Some(path),
            SpecError::Syntax { .. } => None,
        }
    }
}

/// A pipeline as written.
///
/// ```yaml
/// name: shop
/// plan:                      # shared by every stage unless it has its own or overrides it
///   strategy: { canary: { steps: [ { set_weight: 20 }, { pause: { duration: 1m } } ] } }
/// stages:
///   - { name: dev, providers: [dev] }
///   - { name: staging, upstreams: [dev], soak: 10m, providers: [staging] }
///   - name: prod
///     upstreams: [staging]
///     soak: 1h
///     promotion: manual
///     freeze: [ { timezone: Europe/Berlin, days: [sat, sun] } ]
///     overrides: { progress_deadline: 30m }
///     providers: [prod]
///     verification:          # measured after the rollout promoted, before prod counts as verified
///       runs: [ { name: smoke, interval: 1m, count: 10 } ]   # `prod` registers `smoke`
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name; also the id of its document in the state store.
    pub name: String,
    /// The plan every stage's rollout follows unless the stage has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Value>,
    /// The stages.
    pub stages: Vec<StageSpec>,
}

/// How a stage with several upstreams takes freight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Verified (and soaked) in every upstream: fan-in. The default.
    #[default]
    All,
    /// Verified (and soaked) in any one upstream.
    OneOf,
}

/// How freight that is available to a stage gets promoted there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionPolicy {
    /// At once, when it is available, soaked, and no freeze window holds. The default.
    #[default]
    Auto,
    /// As for `auto`, and then a person approves the stage's rollout through the store
    /// ([`PipelineHandle::approve`](crate::PipelineHandle::approve), or `Command::Approve` of
    /// gate `promote-<stage>` on the stage's rollout).
    Manual,
}

/// A stage as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Unique within the pipeline (the rules of a rollout id).
    pub name: String,
    /// The stages it takes freight from once they verified it; none: it takes every freight
    /// submitted to the pipeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    /// With several upstreams: verified in all of them (default) or in one.
    #[serde(default)]
    pub availability: Availability,
    /// How long freight must have stayed verified in its upstream before it comes here (`30m`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "duration")]
    pub soak: Option<Duration>,
    /// Automatic or manual.
    #[serde(default)]
    pub promotion: PromotionPolicy,
    /// Calendar windows that hold promotion here (rollbacks still run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<FreezeWindowSpec>,
    /// The stage's own plan, instead of the pipeline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Value>,
    /// Changes to the pipeline's plan for this stage, as a JSON merge patch (RFC 7396): the
    /// fields given replace the shared plan's, `null` removes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Value>,
    /// The names of the environments (registered with the executor) whose providers the
    /// stage's rollout runs on, and which verify it afterwards. At least one.
    pub providers: Vec<String>,
    /// Analyses measured after the stage's rollout promoted freight, before it counts as
    /// verified here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSpec>,
}

mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // the signature serde's `with` expects
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                humantime::parse_duration(text.trim()).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "invalid duration `{text}`: {e} (write it like 30s, 5m, 1h 30m)"
                    ))
                })
            })
            .transpose()
    }
}

/// A checked stage.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stage {
    /// Its name.
    pub name: String,
    /// The stages it takes freight from.
    pub upstreams: Vec<String>,
    /// All or one of them.
    pub availability: Availability,
    /// Soak time in the upstreams.
    pub soak: Duration,
    /// Automatic or manual.
    pub promotion: PromotionPolicy,
    /// Freeze windows.
    pub freeze: Vec<FreezeWindow>,
    /// The plan its rollouts follow (its own, or the shared plan with its overrides).
    pub plan: Plan,
    /// The environments it runs on.
    pub providers: Vec<String>,
    /// The analyses measured after its rollout promoted freight.
    pub verification: Option<StageVerification>,
    /// Every stage upstream of it, near or far.
    pub ancestors: BTreeSet<String>,
}

impl Stage {
    /// The approval gate of a manual stage's rollouts.
    pub fn approval_gate(&self) -> Option<String> {
        (self.promotion == PromotionPolicy::Manual).then(|| format!("promote-{}", self.name))
    }
}

/// A checked pipeline: names unique, upstreams known, no cycles, every stage with providers and
/// a valid plan. Stages are kept upstream-first.
#[derive(Debug, Clone)]
pub struct Pipeline {
    id: RolloutId,
    spec: PipelineSpec,
    stages: Vec<Stage>,
}

impl Pipeline {
    /// Reads and checks a pipeline written in YAML.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        let value: Value = serde_saphyr::from_str(text).map_err(|e| SpecError::Syntax {
            format: "YAML",
            message: e.to_string(),
        })?;
        Self::from_value(value)
    }

    /// Reads and checks a pipeline written in JSON.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let value: Value = serde_json::from_str(text).map_err(|e| SpecError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?;
        Self::from_value(value)
    }

    fn from_value(value: Value) -> Result<Self, SpecError> {
        let spec: PipelineSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "pipeline".to_owned()
            } else {
                path
            };
            SpecError::invalid(path, e.inner().to_string())
        })?;
        Self::new(spec)
    }

    /// Checks a pipeline.
    pub fn new(spec: PipelineSpec) -> Result<Self, SpecError> {
        let id = RolloutId::new(spec.name.clone())
            .map_err(|e| SpecError::invalid("name", e.to_string()))?;
        if spec.stages.is_empty() {
            return Err(SpecError::invalid(
                "stages",
                "empty: a pipeline needs at least one stage",
            ));
        }
        let shared = match &spec.plan {
            Some(plan) => Some(plan_from(plan, "plan")?),
            None => None,
        };
        let mut index = BTreeMap::new();
        for (i, stage) in spec.stages.iter().enumerate() {
            let path = format!("stages[{i}].name");
            RolloutId::new(stage.name.clone())
                .map_err(|e| SpecError::invalid(&path, e.to_string()))?;
            if let Some(first) = index.insert(stage.name.as_str(), i) {
                return Err(SpecError::invalid(
                    path,
                    format!(
                        "duplicate stage name `{}` (also stages[{first}])",
                        stage.name
                    ),
                ));
            }
        }
        let mut stages = Vec::with_capacity(spec.stages.len());
        for (i, s) in spec.stages.iter().enumerate() {
            let at = |field: &str| format!("stages[{i}].{field}");
            let mut seen = BTreeSet::new();
            for (j, up) in s.upstreams.iter().enumerate() {
                if !index.contains_key(up.as_str()) {
                    return Err(SpecError::invalid(
                        at(&format!("upstreams[{j}]")),
                        format!(
                            "unknown stage `{up}`; stages are: {}",
                            index.keys().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if up == &s.name {
                    return Err(SpecError::invalid(
                        at(&format!("upstreams[{j}]")),
                        format!("stage `{up}` cannot be its own upstream"),
                    ));
                }
                if !seen.insert(up) {
                    return Err(SpecError::invalid(
                        at(&format!("upstreams[{j}]")),
                        format!("upstream `{up}` is listed twice"),
                    ));
                }
            }
            if s.providers.is_empty() {
                return Err(SpecError::invalid(
                    at("providers"),
                    format!(
                        "stage `{}` has no providers: name the environment its rollouts run on",
                        s.name
                    ),
                ));
            }
            let mut seen = BTreeSet::new();
            for (j, p) in s.providers.iter().enumerate() {
                if !seen.insert(p) {
                    return Err(SpecError::invalid(
                        at(&format!("providers[{j}]")),
                        format!("provider `{p}` is listed twice"),
                    ));
                }
            }
            let plan = match (&s.plan, &s.overrides, &shared) {
                (Some(_), Some(_), _) => {
                    return Err(SpecError::invalid(
                        at("overrides"),
                        "give the stage either its own `plan` or `overrides` of the pipeline's plan, not both",
                    ));
                }
                (Some(own), None, _) => plan_from(own, &at("plan"))?,
                (None, Some(_), None) => {
                    return Err(SpecError::invalid(
                        at("overrides"),
                        "the pipeline has no `plan` to override",
                    ));
                }
                (None, Some(patch), Some(_)) => {
                    let mut merged = spec.plan.clone().unwrap_or(Value::Null);
                    json_patch::merge(&mut merged, patch);
                    plan_from(&merged, &at("overrides"))?
                }
                (None, None, Some(plan)) => plan.clone(),
                (None, None, None) => {
                    return Err(SpecError::invalid(
                        at("plan"),
                        format!(
                            "stage `{}` has no plan: give the pipeline a `plan` or the stage its own",
                            s.name
                        ),
                    ));
                }
            };
            let mut freeze = Vec::with_capacity(s.freeze.len());
            for (j, w) in s.freeze.iter().enumerate() {
                freeze.push(FreezeWindow::compile(w).map_err(|(field, reason)| {
                    SpecError::invalid(at(&format!("freeze[{j}].{field}")), reason)
                })?);
            }
            let verification = match &s.verification {
                Some(v) => Some(StageVerification::check(v, &plan, &at("verification"))?),
                None => None,
            };
            stages.push(Stage {
                name: s.name.clone(),
                upstreams: s.upstreams.clone(),
                availability: s.availability,
                soak: s.soak.unwrap_or_default(),
                promotion: s.promotion,
                freeze,
                plan,
                providers: s.providers.clone(),
                verification,
                ancestors: BTreeSet::new(),
            });
        }
        let order = topological(&spec, &index)?;
        let mut sorted: Vec<Stage> = Vec::with_capacity(stages.len());
        for i in order {
            let mut stage = stages[i].clone();
            let mut ancestors = BTreeSet::new();
            for up in &stage.upstreams {
                ancestors.insert(up.clone());
                if let Some(u) = sorted.iter().find(|s| &s.name == up) {
                    ancestors.extend(u.ancestors.iter().cloned());
                }
            }
            stage.ancestors = ancestors;
            sorted.push(stage);
        }
        Ok(Pipeline {
            id,
            spec,
            stages: sorted,
        })
    }

    /// The pipeline's name, the id of its document in the store.
    pub fn id(&self) -> &RolloutId {
        &self.id
    }

    /// The pipeline as written.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// The stages, every stage after its upstreams.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

fn plan_from(value: &Value, path: &str) -> Result<Plan, SpecError> {
    Plan::from_json(&value.to_string()).map_err(|e| match e.path() {
        Some(inner) if inner != "plan" => {
            SpecError::invalid(format!("{path}.{inner}"), strip_path(&e.to_string(), inner))
        }
        _ => SpecError::invalid(path, strip_path(&e.to_string(), "plan")),
    })
}

fn strip_path(message: &str, path: &str) -> String {
    message
        .strip_prefix(&format!("{path}: "))
        .unwrap_or(message)
        .to_owned()
}

/// Stage indexes in an order where every stage comes after its upstreams (Kahn's algorithm,
/// ties in file order), or the error naming a cycle.
fn topological(
    spec: &PipelineSpec,
    index: &BTreeMap<&str, usize>,
) -> Result<Vec<usize>, SpecError> {
    let n = spec.stages.len();
    let mut pending: Vec<usize> = spec.stages.iter().map(|s| s.upstreams.len()).collect();
    let mut order = Vec::with_capacity(n);
    let mut done = vec![false; n];
    while order.len() < n {
        let Some(next) = (0..n).find(|&i| !done[i] && pending[i] == 0) else {
            // Every stage left has an upstream left: walk upstreams until one repeats.
            let start = (0..n).find(|&i| !done[i]).unwrap_or(0);
            let mut path = vec![start];
            loop {
                let cur = *path.last().unwrap_or(&start);
                let Some(up) = spec.stages[cur]
                    .upstreams
                    .iter()
                    .map(|u| index[u.as_str()])
                    .find(|&u| !done[u])
                else {
                    break;
                };
                if let Some(pos) = path.iter().position(|&p| p == up) {
                    let mut cycle: Vec<&str> = path[pos..]
                        .iter()
                        .rev()
                        .map(|&i| spec.stages[i].name.as_str())
                        .collect();
                    cycle.push(cycle[0]);
                    return Err(SpecError::invalid(
                        format!("stages[{up}].upstreams"),
                        format!("stages form a cycle: {}", cycle.join(" -> ")),
                    ));
                }
                path.push(up);
            }
            return Err(SpecError::invalid("stages", "stages form a cycle"));
        };
        done[next] = true;
        order.push(next);
        for (i, s) in spec.stages.iter().enumerate() {
            if s.upstreams.iter().any(|u| index[u.as_str()] == next) {
                pending[i] -= 1;
            }
        }
    }
    Ok(order)
}
