//! Argo Rollouts: a `Rollout` (canary or blue-green) and the `AnalysisTemplate`s and
//! `ClusterAnalysisTemplate`s it uses.
//!
//! | Argo Rollouts | cutover |
//! |---|---|
//! | `setWeight`, `pause`, `setCanaryScale.replicas` | `set_weight`, `pause`, `scale` |
//! | `setHeaderRoute`, `setMirrorRoute` (without `match`: removal) | `set_header_route` / `remove_header_route`, `set_mirror` / `remove_mirror` |
//! | `analysis` step, `canary.analysis` (background) | `analysis` step, `background_analysis` |
//! | `blueGreen` auto-promotion, pre/post-promotion analysis, delays | `blue_green` |
//! | AnalysisTemplate metrics with a `prometheus` provider | a `conditions` analysis on the metric source `prometheus` |
//! | `interval`, `count`, `initialDelay`, limits (of the first metric) | the analysis run's settings |
//! | `{{args.NAME}}` | the argument's value, else the placeholder `{NAME}` filled by the Prometheus source's `args` |

use std::collections::{BTreeMap, BTreeSet};

use cutover::analysis::Condition;
use serde_json::{Map, Value, json};

use super::{Imported, Node, PlanOut, Tracker, duration, envelope, label, number, of_kind};

const PROVIDERS: &str = "the run file's providers say what moves traffic";
const SOURCE: &str = "prometheus";

pub(super) fn convert(docs: &[Value]) -> Result<Imported, String> {
    let rollouts = of_kind(docs, "Rollout");
    let Some(rollout) = rollouts.first() else {
        return Err("no `kind: Rollout` among the documents".into());
    };
    let mut t = Tracker::default();
    let mut roots = Vec::new();
    let templates: Vec<(String, Node<'_>)> = docs
        .iter()
        .filter(|d| {
            matches!(
                d.get("kind").and_then(Value::as_str),
                Some("AnalysisTemplate" | "ClusterAnalysisTemplate")
            )
        })
        .map(|d| {
            let root = t.root(d, &label(d));
            roots.push(root.clone());
            let name = envelope(&mut t, &root).unwrap_or_default();
            (name, root)
        })
        .collect();
    for other in docs.iter().filter(|d| {
        !matches!(
            d.get("kind").and_then(Value::as_str),
            Some("AnalysisTemplate" | "ClusterAnalysisTemplate")
        ) && !std::ptr::eq(*d, *rollout)
    }) {
        let root = t.root(other, &label(other));
        t.note(&root, "not a Rollout or an analysis template; not imported");
        roots.push(root);
    }
    let root = t.root(rollout, &label(rollout));
    roots.push(root.clone());
    envelope(&mut t, &root);
    let mut cx = Context {
        t,
        templates,
        analyses: Map::new(),
        header_routes: BTreeSet::new(),
        mirrors: BTreeSet::new(),
    };
    let spec = cx.t.field(&root, "spec");
    let mut plan = PlanOut::default();
    if let Some(spec) = &spec {
        plan.strategy = cx.spec(spec);
    }
    if plan.strategy.is_null() {
        return Err(
            "the Rollout has no `spec.strategy.canary` or `spec.strategy.blueGreen`".into(),
        );
    }
    if let Some(spec) = &spec
        && let Some(deadline) = cx.t.field(spec, "progressDeadlineSeconds")
    {
        plan.progress_deadline = duration(deadline.value);
        cx.t.take(&deadline);
    }
    plan.analyses = cx.analyses;
    let notes = cx.t.finish(&roots);
    Ok(Imported { plan, notes })
}

struct Context<'a> {
    t: Tracker,
    templates: Vec<(String, Node<'a>)>,
    analyses: Map<String, Value>,
    /// The header routes and mirrors earlier steps set, which later steps may remove.
    header_routes: BTreeSet<String>,
    mirrors: BTreeSet<String>,
}

impl<'a> Context<'a> {
    fn spec(&mut self, spec: &Node<'a>) -> Value {
        let t = &mut self.t;
        for (key, why) in [
            (
                "replicas",
                "the workload's size: the run file's providers scale it",
            ),
            (
                "selector",
                "the workload's pods: part of the providers, not of a plan",
            ),
            (
                "template",
                "the pod template: the workload itself, not part of a plan",
            ),
            (
                "workloadRef",
                "the workload: give its Deployments to the run file's providers",
            ),
            (
                "revisionHistoryLimit",
                "Kubernetes history, not part of a plan",
            ),
            (
                "minReadySeconds",
                "pod readiness is the health probe's concern in cutover",
            ),
            ("paused", "pause a running rollout with `cutover pause`"),
            ("restartAt", "no restart in cutover; roll out again"),
            (
                "rollbackWindow",
                "cutover has no rollback window; `cutover rollback` goes back at once",
            ),
            (
                "analysis",
                "AnalysisRun history limits: cutover keeps every decision in its log",
            ),
        ] {
            t.note_field(spec, key, why);
        }
        t.note_field(
            spec,
            "progressDeadlineAbort",
            "cutover always rolls back when the progress deadline passes",
        );
        let Some(strategy) = t.field(spec, "strategy") else {
            return Value::Null;
        };
        if let Some(canary) = t.field(&strategy, "canary") {
            let canary = self.canary(&canary);
            return json!({ "canary": canary });
        }
        if let Some(bg) = t.field(&strategy, "blueGreen") {
            let bg = self.blue_green(&bg, spec);
            return json!({ "blue_green": bg });
        }
        Value::Null
    }

    fn canary(&mut self, canary: &Node<'a>) -> Value {
        let mut out = Map::new();
        let mut steps = Vec::new();
        // Where each Argo step's steps start in the plan: some Argo steps have no equivalent.
        let mut starts = Vec::new();
        let step_nodes = self
            .t
            .field(canary, "steps")
            .map(|s| self.t.items(&s))
            .unwrap_or_default();
        for step in &step_nodes {
            starts.push(steps.len());
            steps.extend(self.step(step));
        }
        if steps.is_empty() {
            // Argo promotes at once without steps; so does `set_weight: 100`.
            steps.push(json!({ "set_weight": 100 }));
        }
        let last = steps.len() - 1;
        out.insert("steps".into(), Value::Array(steps));
        if let Some(bg) = self.t.field(canary, "analysis") {
            let starting = self.t.number(&bg, "startingStep").unwrap_or(0.0);
            if let Some(run) = self.run(&bg, true) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let argo = starting.max(0.0) as usize;
                let starting = match starts.get(argo) {
                    Some(&at) if at <= last => at,
                    _ => {
                        self.t.remark(
                            "strategy.canary.background_analysis.starting_step",
                            format!(
                                "startingStep {starting} is past the last step that could be \
                                 carried over; the background analysis starts with the last step"
                            ),
                        );
                        last
                    }
                };
                out.insert(
                    "background_analysis".into(),
                    json!({ "starting_step": starting, "analysis": run }),
                );
            }
        }
        self.delays(canary, &mut out);
        let t = &mut self.t;
        for (key, why) in [
            ("canaryService", PROVIDERS),
            ("stableService", PROVIDERS),
            ("trafficRouting", PROVIDERS),
            (
                "maxSurge",
                "replica surge: the providers' workload decides how pods come up",
            ),
            (
                "maxUnavailable",
                "replica availability: the providers' workload decides it",
            ),
            (
                "canaryMetadata",
                "pod labels: part of the workload, not of a plan",
            ),
            (
                "stableMetadata",
                "pod labels: part of the workload, not of a plan",
            ),
            (
                "dynamicStableScale",
                "cutover scales stable only through its workload provider",
            ),
            ("antiAffinity", "pod scheduling: part of the workload"),
            ("pingPong", "ping-pong Services: part of the providers"),
            (
                "minPodsPerReplicaSet",
                "replica economy: part of the workload",
            ),
            (
                "replicaProgressThreshold",
                "replica readiness: the health probe's concern",
            ),
        ] {
            t.note_field(canary, key, why);
        }
        Value::Object(out)
    }

    /// `scaleDownDelaySeconds` and `abortScaleDownDelaySeconds` (0: keep running).
    fn delays(&mut self, node: &Node<'a>, out: &mut Map<String, Value>) {
        if let Some(d) = self.t.number(node, "scaleDownDelaySeconds") {
            out.insert("scale_down_delay".into(), Value::from(seconds(d)));
        }
        if let Some(d) = self.t.number(node, "abortScaleDownDelaySeconds") {
            let keep = d <= 0.0;
            out.insert(
                "abort_scale_down_delay".into(),
                if keep {
                    Value::Null
                } else {
                    Value::from(seconds(d))
                },
            );
        }
        self.t.note_field(
            node,
            "scaleDownDelayRevisionLimit",
            "cutover keeps one old revision, scaled down after the delay",
        );
    }

    fn step(&mut self, step: &Node<'a>) -> Option<Value> {
        let t = &mut self.t;
        if let Some(w) = t.number(step, "setWeight") {
            return Some(json!({ "set_weight": number(w) }));
        }
        if let Some(pause) = t.field(step, "pause") {
            let d = t.field(&pause, "duration");
            t.take(&pause);
            return Some(match d.as_ref().and_then(|d| duration(d.value)) {
                Some(d) => json!({ "pause": { "duration": d } }),
                None => json!({ "pause": {} }),
            });
        }
        if let Some(analysis) = t.field(step, "analysis") {
            let run = self.run(&analysis, false)?;
            return Some(json!({ "analysis": run }));
        }
        if let Some(scale) = t.field(step, "setCanaryScale") {
            if let Some(replicas) = t.number(&scale, "replicas") {
                return Some(json!({ "scale": { "replicas": number(replicas) } }));
            }
            t.note(
                &scale,
                "cutover scales to a replica count (`scale: { replicas }`); weight and \
                 matchTrafficWeight have no equivalent; step dropped",
            );
            return None;
        }
        if let Some(route) = t.field(step, "setHeaderRoute") {
            return self.header_route(&route);
        }
        if let Some(mirror) = t.field(step, "setMirrorRoute") {
            return self.mirror(&mirror);
        }
        for (key, why) in [
            (
                "experiment",
                "experiments (baseline and canary ReplicaSets) have no cutover equivalent; compare revisions with a `judge` or `sequential` analysis; step dropped",
            ),
            (
                "plugin",
                "step plugins have no cutover equivalent; write a Gate in code; step dropped",
            ),
        ] {
            if let Some(node) = t.field(step, key) {
                t.note(&node, why);
                return None;
            }
        }
        t.note(step, "unknown step; dropped");
        None
    }

    fn header_route(&mut self, route: &Node<'a>) -> Option<Value> {
        let t = &mut self.t;
        let name = t.string(route, "name")?;
        let matches = t
            .field(route, "match")
            .map(|m| t.items(&m))
            .unwrap_or_default();
        if matches.is_empty() {
            if !self.header_routes.contains(&name) {
                t.note(
                    route,
                    format!(
                        "removes header route `{name}`, which no earlier step sets; step dropped"
                    ),
                );
                return None;
            }
            return Some(json!({ "remove_header_route": name }));
        }
        let mut out = Vec::new();
        for m in &matches {
            let header = t.string(m, "headerName");
            let value = t.field(m, "headerValue").and_then(|v| string_match(t, &v));
            match (header, value) {
                (Some(name), Some(value)) => {
                    out.push(json!({ "header": { "name": name, "value": value } }));
                }
                _ => t.note(m, "needs headerName and headerValue; match dropped"),
            }
        }
        if out.is_empty() {
            return None;
        }
        let step = json!({ "set_header_route": { "name": name, "match": out } });
        self.header_routes.insert(name);
        Some(step)
    }

    fn mirror(&mut self, mirror: &Node<'a>) -> Option<Value> {
        let t = &mut self.t;
        let name = t.string(mirror, "name")?;
        let Some(percentage) = t.number(mirror, "percentage") else {
            if !self.mirrors.contains(&name) {
                t.note(
                    mirror,
                    format!("removes mirror `{name}`, which no earlier step sets; step dropped"),
                );
                return None;
            }
            return Some(json!({ "remove_mirror": name }));
        };
        let mut out = Vec::new();
        for m in t
            .field(mirror, "match")
            .map(|m| t.items(&m))
            .unwrap_or_default()
        {
            if let Some(headers) = t.field(&m, "headers") {
                for (header, value) in t.entries(&headers) {
                    if let Some(value) = string_match(t, &value) {
                        out.push(json!({ "header": { "name": header, "value": value } }));
                    }
                }
            }
            t.note_field(
                &m,
                "method",
                "cutover mirrors match on headers and cookies only",
            );
            t.note_field(
                &m,
                "path",
                "cutover mirrors match on headers and cookies only",
            );
        }
        let mut set = json!({ "name": name, "percentage": number(percentage) });
        if !out.is_empty() {
            set["match"] = Value::Array(out);
        }
        self.mirrors.insert(name);
        Some(json!({ "set_mirror": set }))
    }

    fn blue_green(&mut self, bg: &Node<'a>, spec: &Node<'a>) -> Value {
        let mut out = Map::new();
        let auto = self.t.boolean(bg, "autoPromotionEnabled");
        let after = self.t.number(bg, "autoPromotionSeconds");
        match (auto, after) {
            (Some(false), _) => {
                out.insert("auto_promotion".into(), json!("disabled"));
            }
            (_, Some(s)) => {
                out.insert("auto_promotion".into(), json!({ "after": seconds(s) }));
            }
            _ => {}
        }
        for (argo, ours) in [
            ("prePromotionAnalysis", "pre_promotion_analysis"),
            ("postPromotionAnalysis", "post_promotion_analysis"),
        ] {
            if let Some(node) = self.t.field(bg, argo)
                && let Some(run) = self.run(&node, false)
            {
                out.insert(ours.into(), run);
            }
        }
        if let Some(preview) = self.t.number(bg, "previewReplicaCount") {
            let replicas = self
                .t
                .field(spec, "replicas")
                .and_then(|r| r.value.as_f64());
            match replicas {
                Some(replicas) if replicas >= preview => {
                    out.insert("replicas".into(), number(replicas));
                    out.insert("preview_replicas".into(), number(preview));
                }
                _ => self.t.note_field(
                    bg,
                    "previewReplicaCount",
                    "needs spec.replicas of at least this many; not carried over",
                ),
            }
        }
        self.delays(bg, &mut out);
        let t = &mut self.t;
        for (key, why) in [
            ("activeService", PROVIDERS),
            (
                "previewService",
                "a preview Service: cutover previews through a header route (`preview_route`) on the providers' router",
            ),
            (
                "maxUnavailable",
                "replica availability: part of the workload",
            ),
            ("antiAffinity", "pod scheduling: part of the workload"),
            ("previewMetadata", "pod labels: part of the workload"),
            ("activeMetadata", "pod labels: part of the workload"),
        ] {
            t.note_field(bg, key, why);
        }
        Value::Object(out)
    }

    /// An analysis run (`templates`, `args`): defines the analysis from the templates and
    /// returns the run.
    fn run(&mut self, node: &Node<'a>, background: bool) -> Option<Value> {
        let t = &mut self.t;
        let refs = t
            .field(node, "templates")
            .map(|n| t.items(&n))
            .unwrap_or_default();
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        for arg in t
            .field(node, "args")
            .map(|n| t.items(&n))
            .unwrap_or_default()
        {
            let Some(name) = t.string(&arg, "name") else {
                continue;
            };
            if let Some(value) = t.string(&arg, "value") {
                args.insert(name, value);
            } else {
                t.note_field(
                    &arg,
                    "valueFrom",
                    format!(
                        "pod-template hashes and field references do not exist outside the \
                         cluster; the query keeps the placeholder {{{}}}: set it in the run \
                         file (providers.prometheus.{SOURCE}.args)",
                        placeholder(&name)
                    ),
                );
            }
        }
        for (key, why) in [
            (
                "dryRun",
                "dry-run metrics have no cutover equivalent; they are judged like the others",
            ),
            (
                "analysisRunMetadata",
                "AnalysisRun labels: cutover has no AnalysisRun objects",
            ),
            (
                "measurementRetention",
                "cutover keeps every measurement in its decision log",
            ),
        ] {
            t.note_field(node, key, why);
        }
        let mut names = Vec::new();
        let mut metrics = Vec::new();
        let mut settings: Option<Map<String, Value>> = None;
        for r in &refs {
            let Some(name) = self.t.string(r, "templateName") else {
                continue;
            };
            self.t.take_field(r, "clusterScope");
            names.push(name.clone());
            let Some((_, template)) = self.templates.iter().find(|(n, _)| *n == name).cloned()
            else {
                self.t.note(
                    r,
                    format!(
                        "no AnalysisTemplate `{name}` among the input files: pass it to \
                         `cutover import` too, or define analysis `{name}` in the plan or in code"
                    ),
                );
                continue;
            };
            let (m, s) = self.template(&template, &args);
            metrics.extend(m);
            if settings.is_none() {
                settings = s;
            }
        }
        let t = &mut self.t;
        if names.is_empty() {
            t.note(node, "names no template; dropped");
            return None;
        }
        let base = names.join("-");
        let name = if metrics.is_empty() {
            base
        } else {
            let template = json!({ "conditions": { "metrics": metrics } });
            unique_name(&mut self.analyses, &base, template)
        };
        let mut run = settings.unwrap_or_default();
        run.insert("name".into(), Value::from(name));
        if !background && !run.contains_key("count") && run.contains_key("interval") {
            // Argo: an interval without a count measures until the run is stopped, which in a
            // step means until it fails. cutover's step analysis measures once by default.
            run.insert("count".into(), Value::from(1));
        }
        Some(Value::Object(run))
    }

    /// The metrics of an AnalysisTemplate as conditions metrics, and the run settings of its
    /// first metric.
    fn template(
        &mut self,
        template: &Node<'a>,
        rollout_args: &BTreeMap<String, String>,
    ) -> (Vec<Value>, Option<Map<String, Value>>) {
        let t = &mut self.t;
        let Some(spec) = t.field(template, "spec") else {
            return (Vec::new(), None);
        };
        let mut args = BTreeMap::new();
        for arg in t
            .field(&spec, "args")
            .map(|n| t.items(&n))
            .unwrap_or_default()
        {
            let Some(name) = t.string(&arg, "name") else {
                continue;
            };
            if let Some(value) = rollout_args.get(&name) {
                args.insert(name.clone(), value.clone());
            }
            if let Some(value) = t.string(&arg, "value") {
                args.entry(name).or_insert(value);
            } else if t.field(&arg, "valueFrom").is_some() {
                t.note_field(
                    &arg,
                    "valueFrom",
                    "secrets and field references are not read by `cutover import`; the query \
                     keeps the placeholder: set it in the run file's prometheus args",
                );
            }
        }
        for (key, why) in [
            ("dryRun", "dry-run metrics have no cutover equivalent"),
            (
                "measurementRetention",
                "cutover keeps every measurement in its decision log",
            ),
            (
                "templates",
                "nested templates are not imported; import them as templates of their own",
            ),
        ] {
            t.note_field(&spec, key, why);
        }
        let mut metrics = Vec::new();
        let mut settings: Option<Map<String, Value>> = None;
        for metric in t
            .field(&spec, "metrics")
            .map(|n| t.items(&n))
            .unwrap_or_default()
        {
            let s = self.settings(&metric);
            match &settings {
                None => settings = Some(s),
                Some(first) if *first != s => self.t.note(
                    &metric,
                    "its interval, count or limits differ from the first metric's; a cutover \
                     analysis run has one set, the first metric's",
                ),
                Some(_) => {}
            }
            if let Some(m) = self.metric(&metric, &args) {
                metrics.push(m);
            }
        }
        (metrics, settings)
    }

    /// The run settings of one metric.
    fn settings(&mut self, metric: &Node<'a>) -> Map<String, Value> {
        let t = &mut self.t;
        let mut out = Map::new();
        for (argo, ours) in [("interval", "interval"), ("initialDelay", "initial_delay")] {
            if let Some(node) = t.field(metric, argo) {
                match duration(node.value) {
                    Some(d) => {
                        t.take(&node);
                        out.insert(ours.into(), Value::from(d));
                    }
                    None => t.note(&node, "not a duration; not carried over"),
                }
            }
        }
        // Argo's counts may be written as strings; cutover wants whole numbers in range.
        let most = f64::from(u32::MAX);
        for (argo, ours, least, most) in [
            ("count", "count", 1.0, most),
            ("failureLimit", "failure_limit", -1.0, f64::from(i32::MAX)),
            ("inconclusiveLimit", "inconclusive_limit", 0.0, most),
            (
                "consecutiveErrorLimit",
                "consecutive_error_limit",
                0.0,
                most,
            ),
            (
                "consecutiveSuccessLimit",
                "consecutive_success_limit",
                0.0,
                most,
            ),
        ] {
            let Some(n) = t.number(metric, argo) else {
                continue;
            };
            if n.fract() == 0.0 && (least..=most).contains(&n) {
                #[allow(clippy::cast_possible_truncation)]
                out.insert(ours.into(), Value::from(n as i64));
            } else if let Some(node) = t.field(metric, argo) {
                t.note(
                    &node,
                    format!("{n} is not a whole number from {least} to {most}; not carried over"),
                );
            }
        }
        out
    }

    fn metric(&mut self, metric: &Node<'a>, args: &BTreeMap<String, String>) -> Option<Value> {
        let t = &mut self.t;
        let name = t.string(metric, "name")?;
        let provider = t.field(metric, "provider")?;
        let Some(prometheus) = t.field(&provider, "prometheus") else {
            let kinds: Vec<&str> = provider
                .value
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            t.note(
                &provider,
                format!(
                    "provider {} has no cutover metric source in a plan; metric `{name}` \
                     dropped: register a MetricSource in code, or use Prometheus",
                    kinds.join(", ")
                ),
            );
            return None;
        };
        let query = t.string(&prometheus, "query")?;
        if let Some(address) = t.field(&prometheus, "address") {
            let url = address.value.as_str().unwrap_or_default().to_owned();
            t.note(
                &address,
                format!("goes in the run file: providers.prometheus.{SOURCE}.url: {url}"),
            );
        }
        for (key, why) in [
            (
                "authentication",
                "credentials go in the run file (providers.prometheus.*.bearer_token_env), never in a plan",
            ),
            ("headers", "request headers are not set from a plan"),
            (
                "timeout",
                "goes in the run file: providers.prometheus.*.timeout",
            ),
            ("insecure", "cutover always verifies TLS"),
            (
                "rangeQuery",
                "range queries are registered in code (PrometheusSource::register)",
            ),
        ] {
            t.note_field(&prometheus, key, why);
        }
        let mut out = json!({
            "name": name,
            "source": SOURCE,
            "query": substitute(&query, args),
        });
        let mut conditions = 0;
        for (argo, ours) in [
            ("successCondition", "success_condition"),
            ("failureCondition", "failure_condition"),
        ] {
            let Some(node) = t.field(metric, argo) else {
                continue;
            };
            let text = node.value.as_str().unwrap_or_default();
            match Condition::parse(text) {
                Ok(_) => {
                    t.take(&node);
                    out[ours] = Value::from(text);
                    conditions += 1;
                }
                Err(e) => t.note(
                    &node,
                    format!(
                        "cutover's conditions are a subset of Argo's expressions and this one \
                         is outside it ({e}); not carried over"
                    ),
                ),
            }
        }
        if conditions == 0 {
            t.note(
                metric,
                format!("metric `{name}` has no condition cutover can evaluate; dropped"),
            );
            return None;
        }
        Some(out)
    }
}

/// An Argo string match (`exact`, `prefix`, `regex`) as cutover writes it.
fn string_match(t: &mut Tracker, node: &Node<'_>) -> Option<Value> {
    for kind in ["exact", "prefix", "regex"] {
        if let Some(v) = t.string(node, kind) {
            return Some(json!({ kind: v }));
        }
    }
    None
}

/// A name under which `template` is defined: `base`, or `base-2`... if `base` is taken by
/// another definition.
fn unique_name(analyses: &mut Map<String, Value>, base: &str, template: Value) -> String {
    let mut name = base.to_owned();
    let mut n = 1;
    loop {
        match analyses.get(&name) {
            None => {
                analyses.insert(name.clone(), template);
                return name;
            }
            Some(existing) if *existing == template => return name,
            Some(_) => {
                n += 1;
                name = format!("{base}-{n}");
            }
        }
    }
}

/// Whole seconds as a cutover duration.
fn seconds(s: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = s.max(0.0) as u64;
    format!("{s}s")
}

/// An argument name as a cutover placeholder name: letters, digits and `_`.
fn placeholder(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `{{args.NAME}}` replaced by the argument's value, or by the placeholder `{NAME}` when it
/// has none.
fn substitute(query: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = after[..close].trim();
        if let Some(name) = inner.strip_prefix("args.") {
            if let Some(value) = args.get(name) {
                out.push_str(value);
            } else {
                out.push('{');
                out.push_str(&placeholder(name));
                out.push('}');
            }
        } else {
            out.push_str(&rest[open..open + 2 + close + 2]);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_substituted_or_become_placeholders() {
        let args = BTreeMap::from([("service-name".to_owned(), "checkout".to_owned())]);
        assert_eq!(
            substitute(
                r#"sum(rate(x{service="{{args.service-name}}",ns="{{ args.namespace }}"}[5m]))"#,
                &args
            ),
            r#"sum(rate(x{service="checkout",ns="{namespace}"}[5m]))"#
        );
        assert_eq!(substitute("a {{ b", &args), "a {{ b");
    }
}
