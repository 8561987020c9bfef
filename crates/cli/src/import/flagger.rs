//! Flagger: a `Canary` (and the `MetricTemplate`s its metrics use).
//!
//! Flagger checks every metric each `interval` and rolls back once `threshold` checks have
//! failed, moving the weight after each passing check. The plan:
//!
//! | Flagger | cutover |
//! |---|---|
//! | `stepWeights`, or `stepWeight` up to `maxWeight` | `set_weight` steps, each followed by a `pause` of `interval` |
//! | `match` with `iterations` (A/B testing) | a `set_header_route` step and a `pause` of `iterations` x `interval` |
//! | `iterations` without `match` (blue/green) | `blue_green` with a pre-promotion analysis of `iterations` measurements |
//! | `metrics`, `interval`, `threshold` | a `threshold` analysis run in the background every `interval`, failing on the `threshold`-th failed check (`failure_limit: threshold - 1`) |
//! | `request-success-rate` / `request-duration` | the Prometheus templates `<mesh>/success-rate` (min as a share) and `<mesh>/latency-p99` (max in seconds) |
//! | `MetricTemplate` (Prometheus) | its query, `{{ interval }}` as `{window}`, `{{ namespace }}`, `{{ target }}` as `{namespace}`, `{service}` |
//! | `progressDeadlineSeconds` | `progress_deadline` |

use serde_json::{Value, json};

use super::{Imported, Node, PlanOut, Tracker, duration, envelope, label, number, of_kind};

const SOURCE: &str = "prometheus";

pub(super) fn convert(docs: &[Value]) -> Result<Imported, String> {
    let canaries = of_kind(docs, "Canary");
    let Some(canary) = canaries.first() else {
        return Err("no `kind: Canary` among the documents".into());
    };
    let mut t = Tracker::default();
    let mut roots = Vec::new();
    let mut templates = Vec::new();
    for doc in docs {
        let root = t.root(doc, &label(doc));
        roots.push(root.clone());
        if std::ptr::eq(doc, *canary) {
            continue;
        }
        if doc.get("kind").and_then(Value::as_str) == Some("MetricTemplate") {
            let name = envelope(&mut t, &root).unwrap_or_default();
            templates.push((name, root));
        } else {
            t.note(&root, "not a Canary or a MetricTemplate; not imported");
        }
    }
    let root = t.root(canary, &label(canary));
    let name = envelope(&mut t, &root).unwrap_or_else(|| "canary".to_owned());
    let mut cx = Context {
        t,
        templates,
        name,
        mesh: "istio",
    };
    let Some(spec) = cx.t.field(&root, "spec") else {
        return Err("the Canary has no `spec`".into());
    };
    let mut plan = PlanOut::default();
    cx.spec(&spec, &mut plan)?;
    let notes = cx.t.finish(&roots);
    Ok(Imported { plan, notes })
}

struct Context<'a> {
    t: Tracker,
    templates: Vec<(String, Node<'a>)>,
    name: String,
    /// The family of built-in Prometheus templates: `istio` or `nginx`.
    mesh: &'static str,
}

impl<'a> Context<'a> {
    fn spec(&mut self, spec: &Node<'a>, plan: &mut PlanOut) -> Result<(), String> {
        if let Some(provider) = self.t.field(spec, "provider") {
            let mesh = provider.value.as_str().unwrap_or_default().to_owned();
            self.mesh = if mesh == "nginx" { "nginx" } else { "istio" };
            self.t.note(
                &provider,
                format!(
                    "the run file's providers say what moves traffic ({mesh}); the built-in \
                     metrics use the `{}/` Prometheus templates",
                    self.mesh
                ),
            );
        }
        for (key, why) in [
            (
                "targetRef",
                "the workload: give its Deployments to the run file's providers",
            ),
            ("autoscalerRef", "cutover does not manage autoscalers"),
            (
                "ingressRef",
                "the run file's providers say what moves traffic",
            ),
            (
                "routeRef",
                "the run file's providers say what moves traffic",
            ),
            (
                "upstreamRef",
                "the run file's providers say what moves traffic",
            ),
            (
                "service",
                "Services and gateways: part of the providers, not of a plan",
            ),
            (
                "skipAnalysis",
                "cutover always analyses; `cutover promote --full` skips the steps of one rollout",
            ),
            (
                "revertOnDeletion",
                "the operator's finalizer returns traffic to stable when a Rollout is deleted",
            ),
            ("suspend", "pause a running rollout with `cutover pause`"),
        ] {
            self.t.note_field(spec, key, why);
        }
        if let Some(deadline) = self.t.field(spec, "progressDeadlineSeconds") {
            plan.progress_deadline = duration(deadline.value);
            self.t.take(&deadline);
        }
        let analysis = self
            .t
            .field(spec, "analysis")
            .or_else(|| self.t.field(spec, "canaryAnalysis"))
            .ok_or("the Canary has no `spec.analysis`")?;
        self.analysis(&analysis, plan);
        Ok(())
    }

    fn analysis(&mut self, a: &Node<'a>, plan: &mut PlanOut) {
        let interval = self
            .t
            .field(a, "interval")
            .and_then(|n| {
                let d = duration(n.value);
                if d.is_some() {
                    self.t.take(&n);
                }
                d
            })
            .unwrap_or_else(|| "1m".to_owned());
        let threshold = self.t.number(a, "threshold").unwrap_or(1.0).max(1.0);
        #[allow(clippy::cast_possible_truncation)]
        let failure_limit = threshold as i64 - 1;
        let metrics = self.metrics(a);
        let defined = !metrics.is_empty();
        if defined {
            plan.analyses.insert(
                self.name.clone(),
                json!({ "threshold": { "metrics": metrics } }),
            );
        }
        let run = json!({
            "name": self.name,
            "interval": interval,
            "failure_limit": failure_limit,
        });
        let iterations = self.t.number(a, "iterations");
        let matches = self.t.field(a, "match").map(|m| self.t.items(&m));
        self.webhooks(a);
        for (key, why) in [
            (
                "alerts",
                "alerts go to notifications, which plans do not configure",
            ),
            (
                "stepWeightPromotion",
                "cutover switches all traffic at once when it promotes",
            ),
            (
                "primaryReadyThreshold",
                "readiness is the health probe's concern",
            ),
            (
                "canaryReadyThreshold",
                "readiness is the health probe's concern",
            ),
            (
                "sessionAffinity",
                "sticky sessions are set on the router in code",
            ),
            (
                "mirrorWeight",
                "mirroring is a canary step in cutover (`set_mirror`)",
            ),
            (
                "mirror",
                "blue/green with mirroring: cutover mirrors in canary steps (`set_mirror`), not in blue-green",
            ),
        ] {
            self.t.note_field(a, key, why);
        }
        plan.strategy = match (iterations, matches) {
            (Some(n), Some(matches)) if !matches.is_empty() => {
                let route = self.routes(&matches);
                let pause = times(&interval, n);
                let mut steps = Vec::new();
                if let Some(route) = route {
                    steps.push(json!({ "set_header_route": route }));
                }
                steps.push(json!({ "pause": { "duration": pause } }));
                json!({ "canary": {
                    "steps": steps,
                    "background_analysis": { "starting_step": 0, "analysis": run },
                }})
            }
            (Some(n), _) => {
                let mut run = run;
                // More than u32::MAX iterations never end either way.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let count = n.clamp(1.0, f64::from(u32::MAX)) as u64;
                run["count"] = Value::from(count);
                json!({ "blue_green": { "pre_promotion_analysis": run } })
            }
            (None, _) => {
                self.t.remark(
                    "strategy",
                    "Flagger holds the weight while checks fail, up to `threshold`; cutover \
                     moves on every `interval` and rolls back at the `threshold`-th failed check",
                );
                let weights = self.weights(a);
                let mut steps = Vec::new();
                for w in weights {
                    steps.push(json!({ "set_weight": number(w) }));
                    steps.push(json!({ "pause": { "duration": interval } }));
                }
                if steps.is_empty() {
                    steps.push(json!({ "set_weight": 100 }));
                }
                json!({ "canary": {
                    "steps": steps,
                    "background_analysis": { "starting_step": 0, "analysis": run },
                }})
            }
        };
        if !defined {
            self.t.remark(
                "analyses",
                format!(
                    "no metric could be carried over: analysis `{}` must be registered in code",
                    self.name
                ),
            );
        }
    }

    /// `stepWeights`, or `stepWeight` steps up to `maxWeight` (default 100).
    fn weights(&mut self, a: &Node<'a>) -> Vec<f64> {
        if let Some(list) = self.t.field(a, "stepWeights") {
            let weights: Vec<f64> = list
                .value
                .as_array()
                .map(|ws| ws.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            self.t.take(&list);
            self.t.note_field(
                a,
                "stepWeight",
                "stepWeights is given; stepWeight is ignored",
            );
            self.t.take_field(a, "maxWeight");
            return weights
                .into_iter()
                .filter(|w| (0.0..=100.0).contains(w))
                .collect();
        }
        let step = self.t.number(a, "stepWeight").unwrap_or(0.0);
        let max = self.t.number(a, "maxWeight").unwrap_or(100.0).min(100.0);
        let mut out = Vec::new();
        if step > 0.0 {
            let mut w = step;
            while w <= max && out.len() < 100 {
                out.push(w);
                w += step;
            }
        }
        out
    }

    /// `match` as a header route to the candidate.
    fn routes(&mut self, matches: &[Node<'a>]) -> Option<Value> {
        let mut out = Vec::new();
        for m in matches {
            if let Some(headers) = self.t.field(m, "headers") {
                for (name, value) in self.t.entries(&headers) {
                    if let Some(v) = string_match(&mut self.t, &value) {
                        out.push(json!({ "header": { "name": name, "value": v } }));
                    }
                }
            }
            for key in ["sourceLabels", "uri", "method", "queryParams", "port"] {
                self.t
                    .note_field(m, key, "cutover routes match on headers and cookies only");
            }
        }
        (!out.is_empty()).then(|| json!({ "name": "ab-test", "match": out }))
    }

    fn metrics(&mut self, a: &Node<'a>) -> Vec<Value> {
        let mut out = Vec::new();
        for m in self
            .t
            .field(a, "metrics")
            .map(|n| self.t.items(&n))
            .unwrap_or_default()
        {
            if let Some(metric) = self.metric(&m) {
                out.push(metric);
            }
        }
        out
    }

    fn metric(&mut self, m: &Node<'a>) -> Option<Value> {
        let name = self.t.string(m, "name")?;
        let window = self
            .t
            .field(m, "interval")
            .and_then(|n| {
                let d = duration(n.value);
                if d.is_some() {
                    self.t.take(&n);
                }
                d
            })
            .unwrap_or_else(|| "1m".to_owned());
        let range = self.t.field(m, "thresholdRange");
        let (mut min, mut max) = match &range {
            Some(r) => (self.t.number(r, "min"), self.t.number(r, "max")),
            None => (None, None),
        };
        let query = if let Some(template) = self.t.field(m, "templateRef") {
            self.template_query(&template, m)?
        } else if let Some(query) = self.t.string(m, "query") {
            translate(&query)
        } else {
            match name.as_str() {
                "request-success-rate" => {
                    // Flagger: a percentage; the template: a share of requests (counts).
                    min = min.map(|p| p / 100.0);
                    max = max.map(|p| p / 100.0);
                    format!("{}/success-rate", self.mesh)
                }
                "request-duration" => {
                    // Flagger: milliseconds (p99); the template: seconds.
                    min = min.map(|ms| ms / 1000.0);
                    max = max.map(|ms| ms / 1000.0);
                    format!("{}/latency-p99", self.mesh)
                }
                _ => {
                    self.t.note(
                        m,
                        format!("metric `{name}` is neither built in nor has a query; dropped"),
                    );
                    return None;
                }
            }
        };
        if min.is_none() && max.is_none() {
            self.t.note(
                m,
                format!("metric `{name}` has no thresholdRange: it could never fail; dropped"),
            );
            return None;
        }
        let mut out = json!({ "name": name, "source": SOURCE, "query": query, "window": window });
        if let Some(min) = min {
            out["min"] = number(min);
        }
        if let Some(max) = max {
            out["max"] = number(max);
        }
        Some(out)
    }

    /// The query of a MetricTemplate referenced by `templateRef`, with the metric's
    /// `templateVariables` substituted.
    fn template_query(&mut self, reference: &Node<'a>, metric: &Node<'a>) -> Option<String> {
        let name = self.t.string(reference, "name")?;
        self.t.take_field(reference, "namespace");
        let Some((_, template)) = self.templates.iter().find(|(n, _)| *n == name).cloned() else {
            self.t.note(
                reference,
                format!("no MetricTemplate `{name}` among the input files; metric dropped"),
            );
            return None;
        };
        let spec = self.t.field(&template, "spec")?;
        let provider = self.t.field(&spec, "provider");
        if let Some(provider) = &provider {
            let kind = self.t.string(provider, "type").unwrap_or_default();
            if kind != "prometheus" {
                self.t.note(
                    provider,
                    format!(
                        "provider `{kind}` has no cutover metric source in a plan; metric dropped"
                    ),
                );
                return None;
            }
            if let Some(address) = self.t.field(provider, "address") {
                let url = address.value.as_str().unwrap_or_default().to_owned();
                self.t.note(
                    &address,
                    format!("goes in the run file: providers.prometheus.{SOURCE}.url: {url}"),
                );
            }
            for key in ["secretRef", "insecureSkipVerify"] {
                self.t.note_field(
                    provider,
                    key,
                    "credentials and TLS go in the run file's providers, never in a plan",
                );
            }
        }
        let mut query = self.t.string(&spec, "query")?;
        if let Some(vars) = self.t.field(metric, "templateVariables") {
            for (k, node) in self.t.entries(&vars) {
                if let Some(v) = node.value.as_str() {
                    query = query
                        .replace(&format!("{{{{ variables.{k} }}}}"), v)
                        .replace(&format!("{{{{variables.{k}}}}}"), v);
                    self.t.take(&node);
                }
            }
        }
        Some(translate(&query))
    }

    fn webhooks(&mut self, a: &Node<'a>) {
        for hook in self
            .t
            .field(a, "webhooks")
            .map(|n| self.t.items(&n))
            .unwrap_or_default()
        {
            let kind = hook
                .value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("rollout")
                .to_owned();
            let stage = match kind.as_str() {
                "confirm-rollout" | "pre-rollout" => "a pre-flight Gate (GateStage::PreFlight)",
                "confirm-promotion" => "a confirm-promotion Gate (GateStage::ConfirmPromotion)",
                "confirm-traffic-increase" => "a Gate, or a `pause: {}` step resumed by a person",
                "rollback" => "`cutover abort` from the hook's caller",
                _ => "an event subscriber in code (Rollout::subscribe)",
            };
            self.t.note(
                &hook,
                format!(
                    "`{kind}` webhooks are written as {stage} in cutover; webhooks are not part \
                     of a plan"
                ),
            );
        }
    }
}

/// A Flagger (Istio-style) string match as cutover writes it.
fn string_match(t: &mut Tracker, node: &Node<'_>) -> Option<Value> {
    for kind in ["exact", "prefix", "regex"] {
        if let Some(v) = t.string(node, kind) {
            return Some(json!({ kind: v }));
        }
    }
    None
}

/// Flagger's template variables as cutover Prometheus placeholders.
fn translate(query: &str) -> String {
    let mut out = query.to_owned();
    for (flagger, ours) in [
        ("interval", "{window}"),
        ("namespace", "{namespace}"),
        ("target", "{service}"),
        ("service", "{service}"),
    ] {
        out = out
            .replace(&format!("{{{{ {flagger} }}}}"), ours)
            .replace(&format!("{{{{{flagger}}}}}"), ours);
    }
    out
}

/// `n` times a duration like `1m`, as a duration.
fn times(interval: &str, n: f64) -> String {
    let one = humantime::parse_duration(interval).unwrap_or(std::time::Duration::from_mins(1));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = n.max(1.0) as u32;
    humantime::format_duration(one * n)
        .to_string()
        .replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_variables_become_placeholders() {
        assert_eq!(
            translate(r#"sum(rate(x{ns="{{ namespace }}",app="{{ target }}"}[{{ interval }}]))"#),
            r#"sum(rate(x{ns="{namespace}",app="{service}"}[{window}]))"#
        );
        assert_eq!(times("1m", 10.0), "10m");
        assert_eq!(times("30s", 3.0), "1m30s");
    }

    #[test]
    fn a_linear_ramp_stops_at_max_weight() {
        let doc = json!({ "stepWeight": 20, "maxWeight": 50 });
        let mut t = Tracker::default();
        let root = t.root(&doc, "a");
        let mut cx = Context {
            t,
            templates: Vec::new(),
            name: "x".into(),
            mesh: "istio",
        };
        assert_eq!(cx.weights(&root), [20.0, 40.0]);
    }
}
