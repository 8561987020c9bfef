//! `cutover lint`: every problem of a plan or run file at once, with line and column, without
//! any provider.
//!
//! Type errors are found piece by piece (each top-level field, each analysis template, each
//! canary step, the run file's sections), so one bad step does not hide the next; then the
//! plan's own checks ([`Plan::problems`]) run on the pieces that parsed. Warnings: weights that
//! go down between canary steps, analyses the plan names but does not define, and metric
//! sources the run file's providers do not define.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cutover::{AnalysisRun, AnalysisTemplate, CanaryStep, Plan, Strategy, Weight};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::cli::{Format, LintArgs};
use crate::exit::{Exit, Failure};
use crate::runfile::{Providers, RolloutSection};
use crate::yaml::{Located, Position, segments};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    /// The plan cannot run.
    Error,
    /// The plan runs, but probably not as meant.
    Warning,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Diagnostic {
    /// Error or warning.
    pub(crate) severity: Severity,
    /// The field, like `strategy.canary.steps[2].set_weight` (empty: the whole document).
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) message: String,
    /// Where, when known.
    #[serde(flatten)]
    pub(crate) at: Option<Position>,
}

/// A strategy that always parses, standing in for one that does not while the rest is checked.
fn stand_in() -> Value {
    json!({ "rolling": { "replicas": 1 } })
}

/// Every problem of `text`, a plan or run file, in document order.
pub(crate) fn check(text: &str) -> Vec<Diagnostic> {
    let mut lint = Lint::default();
    let value: Value = match serde_saphyr::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            let at = e.location().and_then(|l| {
                Some(Position {
                    line: u32::try_from(l.line()).ok().filter(|l| *l > 0)?,
                    column: u32::try_from(l.column()).unwrap_or(0),
                })
            });
            return vec![Diagnostic {
                severity: Severity::Error,
                path: String::new(),
                message: format!("not valid YAML: {}", first_line(&e.to_string())),
                at,
            }];
        }
    };
    let located = Located::parse(text).ok();
    lint.document(value);
    let mut out = lint.diagnostics;
    for d in &mut out {
        d.at = located
            .as_ref()
            .and_then(|l| l.position(&segments(&d.path)));
    }
    out.sort_by_key(|d| (d.at, d.severity));
    out.dedup();
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[derive(Default)]
struct Lint {
    diagnostics: Vec<Diagnostic>,
}

impl Lint {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            at: None,
        });
    }

    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
            at: None,
        });
    }

    /// Deserializes `value` as `T`; on error records it under `prefix` and returns `None`.
    fn parse<T: DeserializeOwned>(&mut self, prefix: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let path = match (prefix, inner.as_str()) {
                    (p, ".") => p.to_owned(),
                    ("", i) => i.to_owned(),
                    (p, i) => format!("{p}.{i}"),
                };
                self.error(path, e.into_inner().to_string());
                None
            }
        }
    }

    fn document(&mut self, value: Value) {
        let Value::Object(mut map) = value else {
            self.error(
                "",
                "a plan is a mapping with a `strategy` (and `analyses`, `progress_deadline`, ...)",
            );
            return;
        };
        let providers = map
            .remove("providers")
            .map(|v| self.section::<Providers>("providers", v));
        if let Some(v) = map.remove("rollout") {
            self.section::<RolloutSection>("rollout", v);
        }
        let defined: BTreeSet<String> = map
            .get("analyses")
            .and_then(Value::as_object)
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();

        // Each piece on its own, so that one error does not hide the next.
        let mut plan = Map::new();
        let mut strategy = None;
        let mut bad_steps = BTreeSet::new();
        for (key, value) in map {
            match key.as_str() {
                "strategy" => strategy = self.strategy(value, &mut bad_steps),
                "analyses" if value.is_object() => {
                    let mut good = Map::new();
                    for (name, template) in value.as_object().into_iter().flatten() {
                        let at = format!("analyses.{name}");
                        if self
                            .parse::<AnalysisTemplate>(&at, template.clone())
                            .is_some()
                        {
                            good.insert(name.clone(), template.clone());
                        }
                    }
                    plan.insert(key, Value::Object(good));
                }
                _ => {
                    let alone = json!({ "strategy": stand_in(), key.clone(): value.clone() });
                    if self.parse::<Plan>("", alone).is_some() {
                        plan.insert(key, value);
                    }
                }
            }
        }
        let Some(strategy_value) = strategy.clone().or_else(|| {
            if !self
                .diagnostics
                .iter()
                .any(|d| d.path.starts_with("strategy"))
            {
                self.error("strategy", "missing: a plan needs a `strategy`");
            }
            None
        }) else {
            // Check the rest against a stand-in strategy.
            plan.insert("strategy".into(), stand_in());
            if let Some(plan) = self.parse::<Plan>("", Value::Object(plan)) {
                self.problems(&plan, |path| path.starts_with("strategy"));
            }
            return;
        };
        plan.insert("strategy".into(), strategy_value);
        let Some(plan) = self.parse::<Plan>("", Value::Object(plan)) else {
            return;
        };
        self.problems(&plan, |path| {
            bad_steps
                .iter()
                .any(|i| path.starts_with(&format!("strategy.canary.steps[{i}]")))
        });
        self.warnings(&plan, &defined, &bad_steps, providers.flatten().as_ref());
    }

    /// One section of a run file.
    fn section<T: DeserializeOwned>(&mut self, name: &str, value: Value) -> Option<T> {
        if value.is_null() {
            return None;
        }
        self.parse(name, value)
    }

    /// The strategy, or a stand-in for the canary whose bad steps are replaced (their
    /// indices in `bad_steps`); `None` if it cannot be checked further.
    fn strategy(&mut self, value: Value, bad_steps: &mut BTreeSet<usize>) -> Option<Value> {
        if serde_path_to_error::deserialize::<_, Strategy>(value.clone()).is_ok() {
            return Some(value);
        }
        let canary = value
            .get("canary")
            .filter(|_| value.as_object().is_some_and(|m| m.len() == 1));
        let Some(Value::Object(canary)) = canary else {
            self.parse::<Strategy>("strategy", value);
            return None;
        };
        let mut canary = canary.clone();
        let steps = match canary.remove("steps") {
            Some(Value::Array(steps)) => steps,
            Some(other) => {
                canary.insert("steps".into(), other);
                self.parse::<Strategy>("strategy", json!({ "canary": canary }));
                return None;
            }
            None => Vec::new(),
        };
        let mut kept = Vec::with_capacity(steps.len());
        for (i, step) in steps.into_iter().enumerate() {
            let at = format!("strategy.canary.steps[{i}]");
            if self.parse::<CanaryStep>(&at, step.clone()).is_some() {
                kept.push(step);
            } else {
                bad_steps.insert(i);
                kept.push(json!({ "pause": {} }));
            }
        }
        canary.insert("steps".into(), Value::Array(Vec::new()));
        let rest_ok = self
            .parse::<Strategy>("strategy", json!({ "canary": canary.clone() }))
            .is_some();
        canary.insert("steps".into(), Value::Array(kept));
        rest_ok.then(|| json!({ "canary": canary }))
    }

    /// The plan's own checks, but none about the pieces that did not parse.
    fn problems(&mut self, plan: &Plan, skip: impl Fn(&str) -> bool) {
        for problem in plan.problems() {
            let path = problem.path().unwrap_or_default().to_owned();
            if skip(&path) {
                continue;
            }
            let message = match &problem {
                cutover::PlanError::Invalid { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            self.error(path, message);
        }
    }

    fn warnings(
        &mut self,
        plan: &Plan,
        defined: &BTreeSet<String>,
        bad_steps: &BTreeSet<usize>,
        providers: Option<&Providers>,
    ) {
        let mut runs: Vec<(String, &AnalysisRun)> = Vec::new();
        match &plan.strategy {
            Strategy::Canary(c) => {
                let mut previous: Option<(usize, Weight)> = None;
                for (i, step) in c.steps.iter().enumerate() {
                    if bad_steps.contains(&i) {
                        continue;
                    }
                    match step {
                        CanaryStep::SetWeight(w) => {
                            if let Some((j, before)) = previous
                                && *w < before
                            {
                                self.warning(
                                    format!("strategy.canary.steps[{i}].set_weight"),
                                    format!(
                                        "the weight goes down from {before} (step {j}) to {w}: \
                                         traffic moves back to stable mid-rollout; if that is \
                                         meant, ignore this"
                                    ),
                                );
                            }
                            previous = Some((i, *w));
                        }
                        CanaryStep::Analysis(run) => {
                            runs.push((format!("strategy.canary.steps[{i}].analysis.name"), run));
                        }
                        _ => {}
                    }
                }
                if let Some(bg) = &c.background_analysis {
                    runs.push((
                        "strategy.canary.background_analysis.analysis.name".into(),
                        &bg.analysis,
                    ));
                }
            }
            Strategy::BlueGreen(b) => {
                for (field, run) in [
                    ("pre_promotion_analysis", &b.pre_promotion_analysis),
                    ("post_promotion_analysis", &b.post_promotion_analysis),
                ] {
                    if let Some(run) = run {
                        runs.push((format!("strategy.blue_green.{field}.name"), run));
                    }
                }
            }
            Strategy::AbTest(a) if !defined.contains(&a.analysis) => {
                self.undefined("strategy.ab_test.analysis", &a.analysis);
            }
            _ => {}
        }
        for (path, run) in runs {
            if !defined.contains(&run.name) {
                self.undefined(&path, &run.name);
            }
        }
        if let Some(providers) = providers {
            self.sources(plan, providers);
        }
    }

    fn undefined(&mut self, path: &str, name: &str) {
        self.warning(
            path,
            format!(
                "analysis `{name}` is not defined in the plan's `analyses`: it must be \
                 registered in code (RolloutBuilder::analysis), or the rollout will not build"
            ),
        );
    }

    /// Metric sources the analyses read that the run file's providers do not define.
    fn sources(&mut self, plan: &Plan, providers: &Providers) {
        let mut available: BTreeSet<&str> =
            providers.prometheus.keys().map(String::as_str).collect();
        if let Some(proxy) = &providers.local_proxy {
            available.insert(&proxy.metrics);
        }
        let mut reads: BTreeMap<String, String> = BTreeMap::new();
        for (name, template) in &plan.analyses {
            for (path, source) in template_sources(name, template) {
                reads.entry(path).or_insert(source);
            }
        }
        for (path, source) in reads {
            if !available.contains(source.as_str()) {
                self.warning(
                    path,
                    format!(
                        "metric source `{source}` is not among the run file's providers ({}): \
                         `cutover run` will refuse the plan",
                        if available.is_empty() {
                            "none defined".to_owned()
                        } else {
                            available.iter().copied().collect::<Vec<_>>().join(", ")
                        }
                    ),
                );
            }
        }
    }
}

/// The metric sources a template reads, with the path of each `source` field.
fn template_sources(name: &str, template: &AnalysisTemplate) -> Vec<(String, String)> {
    let at = format!("analyses.{name}");
    match template {
        AnalysisTemplate::Threshold(t) => t
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    format!("{at}.threshold.metrics[{i}].source"),
                    m.source.clone(),
                )
            })
            .collect(),
        AnalysisTemplate::Conditions(c) => c
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    format!("{at}.conditions.metrics[{i}].source"),
                    m.source.clone(),
                )
            })
            .collect(),
        AnalysisTemplate::Judge(j) => j
            .queries
            .iter()
            .map(|(m, q)| (format!("{at}.judge.queries.{m}.source"), q.source.clone()))
            .collect(),
        AnalysisTemplate::Proportions(p) => {
            vec![(format!("{at}.proportions.source"), p.source.clone())]
        }
        AnalysisTemplate::Sequential(s) => {
            vec![(format!("{at}.sequential.source"), s.source.clone())]
        }
        _ => Vec::new(),
    }
}

/// `cutover lint FILE...`.
pub(crate) fn lint(args: &LintArgs) -> Result<Exit, Failure> {
    let mut all: Vec<(PathBuf, Diagnostic)> = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", file.display())))?;
        all.extend(check(&text).into_iter().map(|d| (file.clone(), d)));
    }
    let errors = all
        .iter()
        .filter(|(_, d)| d.severity == Severity::Error)
        .count();
    let warnings = all.len() - errors;
    match args.output {
        Format::Table => {
            for (file, d) in &all {
                println!("{}", line(file, d));
            }
        }
        Format::Json | Format::Yaml => {
            #[derive(Serialize)]
            struct Entry<'a> {
                file: &'a Path,
                #[serde(flatten)]
                diagnostic: &'a Diagnostic,
            }
            let entries: Vec<Entry<'_>> = all
                .iter()
                .map(|(file, diagnostic)| Entry { file, diagnostic })
                .collect();
            let text = if args.output == Format::Json {
                serde_json::to_string_pretty(&entries)
                    .map(|s| s + "\n")
                    .map_err(|e| e.to_string())
            } else {
                serde_saphyr::to_string(&entries).map_err(|e| e.to_string())
            };
            print!("{}", text.map_err(Failure::failed)?);
        }
    }
    eprintln!(
        "{} file{}: {errors} error{}, {warnings} warning{}",
        args.files.len(),
        plural(args.files.len()),
        plural(errors),
        plural(warnings)
    );
    Ok(if errors > 0 || (args.strict && warnings > 0) {
        Exit::Invalid
    } else {
        Exit::Ok
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `file:line:column: error: path: message`.
fn line(file: &Path, d: &Diagnostic) -> String {
    let at = d.at.map_or_else(String::new, |p| format!("{p}:"));
    let severity = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let path = if d.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", d.path)
    };
    format!("{}:{at} {severity}: {path}{}", file.display(), d.message)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{ProptestConfig, prop_assert, proptest};
    use proptest::strategy::Strategy as _;

    use super::*;

    type Found = (Severity, String, Option<(u32, u32)>);

    fn found(text: &str) -> Vec<Found> {
        check(text)
            .into_iter()
            .map(|d| (d.severity, d.path, d.at.map(|p| (p.line, p.column))))
            .collect()
    }

    #[test]
    fn a_good_plan_has_nothing_to_say() {
        let plan = "\
strategy:
  canary:
    steps:
      - set_weight: 10
      - analysis: { name: errors }
analyses:
  errors: { threshold: { metrics: [ { name: e, source: proxy, query: error_rate, max: 0.01 } ] } }
";
        assert_eq!(check(plan), []);
    }

    #[test]
    fn every_error_is_found_at_once_with_its_position() {
        let plan = "\
strategy:
  canary:
    steps:
      - set_weight: 150
      - pause: { duration: soon }
      - set_wieght: 10
      - remove_mirror: nope
analyses:
  a: { threshold: { metrics: [ { name: m, source: s, query: q } ] } }
  b: { thresold: {} }
progress_deadline: 0s
poll_intervall: 5s
";
        assert_eq!(
            found(plan),
            [
                (
                    Severity::Error,
                    "strategy.canary.steps[0].set_weight".into(),
                    Some((4, 9))
                ),
                (
                    Severity::Error,
                    "strategy.canary.steps[1].pause.duration".into(),
                    Some((5, 18))
                ),
                (
                    Severity::Error,
                    "strategy.canary.steps[2]".into(),
                    Some((6, 9))
                ),
                (
                    Severity::Error,
                    "strategy.canary.steps[3].remove_mirror".into(),
                    Some((7, 9))
                ),
                (
                    Severity::Error,
                    "analyses.a.threshold.metrics[0]".into(),
                    Some((9, 32))
                ),
                (Severity::Error, "analyses.b".into(), Some((10, 3))),
                (Severity::Error, "progress_deadline".into(), Some((11, 1))),
                (Severity::Error, "poll_intervall".into(), Some((12, 1))),
            ]
        );
    }

    #[test]
    fn warnings_for_falling_weights_and_undefined_analyses() {
        let plan = "\
strategy:
  canary:
    steps:
      - set_weight: 50
      - set_weight: 20
      - analysis: { name: latency }
";
        assert_eq!(
            found(plan),
            [
                (
                    Severity::Warning,
                    "strategy.canary.steps[1].set_weight".into(),
                    Some((5, 9))
                ),
                (
                    Severity::Warning,
                    "strategy.canary.steps[2].analysis.name".into(),
                    Some((6, 21))
                ),
            ]
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let d = check("strategy: { canary: [\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].at.is_some(), "{d:?}");
        assert!(d[0].message.starts_with("not valid YAML"), "{d:?}");
    }

    #[test]
    fn run_files_are_checked_too() {
        let plan = "\
rollout: { id: x, stable: v1, candidat: v2 }
providers:
  prometheus: { prom: { url: 'http://p' } }
strategy: { canary: { steps: [ { analysis: { name: e } } ] } }
analyses:
  e: { threshold: { metrics: [ { name: m, source: proxy, query: q, max: 1 } ] } }
";
        assert_eq!(
            found(plan),
            [
                (Severity::Error, "rollout.candidat".into(), Some((1, 31))),
                (
                    Severity::Warning,
                    "analyses.e.threshold.metrics[0].source".into(),
                    Some((6, 43))
                ),
            ]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text: lint answers, never panics.
        #[test]
        fn lint_never_panics_on_any_text(text in "\\PC{0,200}") {
            let _ = check(&text);
        }

        /// Plans built from plan-like pieces, most of them wrong: never a panic, and every
        /// diagnostic of a parsable document has a position.
        #[test]
        fn lint_never_panics_on_plan_like_yaml(
            steps in proptest::collection::vec(step(), 0..6),
            extra in proptest::sample::select(vec![
                "", "progress_deadline: 0s", "analyses: []", "analyses: { e: 1 }",
                "retry: { max_attempts: -1 }", "strategy2: {}", "rollout: 7", "providers: { x: 1 }",
            ]),
        ) {
            let text = format!("strategy:\n  canary:\n    steps:\n{}\n{extra}\n", steps.join("\n"));
            for d in check(&text) {
                prop_assert!(d.at.is_some(), "{d:?} in\n{text}");
            }
        }
    }

    fn step() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::sample::select(vec![
            "      - set_weight: 10",
            "      - set_weight: -3",
            "      - set_weight: 101",
            "      - set_weight: x",
            "      - pause: {}",
            "      - pause: { duration: 0s }",
            "      - pause: { duration: [1] }",
            "      - analysis: { name: e, count: 0 }",
            "      - analysis: {}",
            "      - set_header_route: { name: a, match: [] }",
            "      - remove_header_route: a",
            "      - scale: { replicas: -1 }",
            "      - 7",
            "      - [1, 2]",
            "      - null",
        ])
        .prop_map(str::to_owned)
    }
}
