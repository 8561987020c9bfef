//! Kayenta: a canary config (JSON), alone or as the standalone canary analysis request
//! (`{ "canaryConfig": ..., "executionRequest": ... }`).
//!
//! The config becomes a `judge` analysis: cutover's judge reads Kayenta's metric settings
//! (`analysisConfigurations.canary`) and group weights as they are. Each metric's `query`
//! becomes an entry of the judge's `queries`: Prometheus queries go to the metric source
//! `prometheus` (`${scope}` as `{revision}`, `${location}` as `{namespace}`); other stores go
//! to a source named after their type, which must be registered in code. The execution
//! request's lifetime, interval and delay become the analysis run; without one, the plan has
//! a placeholder canary to edit.

use serde_json::{Map, Value, json};

use super::{Imported, Node, PlanOut, Tracker};

const CANARY_KEYS: [&str; 7] = [
    "direction",
    "nanStrategy",
    "critical",
    "mustHaveData",
    "muted",
    "effectSize",
    "outliers",
];

pub(super) fn convert(docs: &[Value]) -> Result<Imported, String> {
    let Some(doc) = docs.first() else {
        return Err("no canary config in the input".into());
    };
    let mut t = Tracker::default();
    let mut roots = Vec::new();
    for extra in &docs[1..] {
        let root = t.root(extra, "document");
        t.note(&root, "only the first document is imported");
        roots.push(root);
    }
    let root = t.root(doc, "canary-config");
    roots.push(root.clone());
    let (config, request) = match t.field(&root, "canaryConfig") {
        Some(config) => (config, t.field(&root, "executionRequest")),
        None => (root.clone(), None),
    };
    if t.field(&config, "metrics").is_none() {
        return Err("not a Kayenta canary config: no `metrics`".into());
    }
    let name = t
        .string(&config, "name")
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "kayenta".to_owned());
    let mut cx = Context { t };
    let (metrics, queries) = cx.metrics(&config);
    if metrics.is_empty() {
        return Err("the canary config has no metric that can be carried over".into());
    }
    let mut judge_config = json!({ "name": name, "metrics": metrics });
    if let Some(classifier) = cx.t.field(&config, "classifier") {
        if let Some(weights) = cx.t.field(&classifier, "groupWeights") {
            let mut kept = Map::new();
            for (group, weight) in cx.t.entries(&weights) {
                match weight.value.as_f64() {
                    Some(w) if w >= 0.0 => {
                        cx.t.take(&weight);
                        kept.insert(group.to_owned(), super::number(w));
                    }
                    _ => cx.t.note(
                        &weight,
                        "a group weight is a number of 0 or more; not carried over",
                    ),
                }
            }
            if !weights.value.is_object() {
                cx.t.note(
                    &weights,
                    "expected a map of group names to weights; not carried over",
                );
            }
            judge_config["classifier"] = json!({ "groupWeights": kept });
        }
        if let Some(thresholds) = cx.t.field(&classifier, "scoreThresholds") {
            judge_config["classifier"]["scoreThresholds"] = cx.thresholds(&thresholds);
        }
    }
    cx.config_fields(&config);
    let mut judge = json!({ "config": judge_config, "queries": queries });
    let mut run = json!({ "name": name });
    let strategy = if let Some(request) = &request {
        cx.request(request, &mut judge, &mut run)
    } else {
        cx.t.remark(
            "strategy",
            "a canary config has no rollout steps: the plan has a placeholder canary \
             (10 %, then one judgement); edit its steps",
        );
        json!({ "canary": { "steps": [ { "set_weight": 10 }, { "analysis": run } ] } })
    };
    let mut plan = PlanOut {
        strategy,
        ..PlanOut::default()
    };
    plan.analyses.insert(name, json!({ "judge": judge }));
    let notes = cx.t.finish(&roots);
    Ok(Imported { plan, notes })
}

struct Context {
    t: Tracker,
}

impl Context {
    /// The config's metrics without their queries, and the queries by metric name.
    fn metrics(&mut self, config: &Node<'_>) -> (Vec<Value>, Map<String, Value>) {
        let mut metrics = Vec::new();
        let mut queries = Map::new();
        let nodes = self
            .t
            .field(config, "metrics")
            .map(|m| self.t.items(&m))
            .unwrap_or_default();
        for m in &nodes {
            let Some(name) = self.t.string(m, "name").filter(|n| !n.is_empty()) else {
                self.t.note(m, "a metric without a name; dropped");
                continue;
            };
            if queries.contains_key(&name) {
                self.t
                    .note(m, format!("metric `{name}` appears twice; dropped"));
                continue;
            }
            let Some(query) = self.t.field(m, "query").and_then(|q| self.query(&q, &name)) else {
                self.t.note(
                    m,
                    format!("metric `{name}` has no query cutover can use; dropped"),
                );
                continue;
            };
            let mut metric = json!({ "name": name });
            if let Some(groups) = self.t.field(m, "groups") {
                match groups.value.as_array() {
                    Some(names) if names.iter().all(Value::is_string) => {
                        metric["groups"] = self.t.take(&groups).clone();
                    }
                    _ => self
                        .t
                        .note(&groups, "expected a list of group names; not carried over"),
                }
            }
            if let Some(scope) = self.t.string(m, "scopeName") {
                metric["scopeName"] = Value::from(scope);
            }
            if let Some(ac) = self.t.field(m, "analysisConfigurations")
                && let Some(canary) = self.t.field(&ac, "canary")
            {
                let mut settings = Map::new();
                for key in CANARY_KEYS {
                    if let Some(v) = self.t.field(&canary, key) {
                        settings.insert(key.into(), self.settings(&v, key));
                    }
                }
                let settings = Value::Object(settings);
                if serde_json::from_value::<cutover::analysis::kayenta::MetricConfig>(
                    settings.clone(),
                )
                .is_ok()
                {
                    metric["analysisConfigurations"] = json!({ "canary": settings });
                } else {
                    self.t.note(
                        &canary,
                        "these judge settings are not valid for NetflixACAJudge-v1.0; the \
                         metric keeps the defaults",
                    );
                }
            }
            queries.insert(name, query);
            metrics.push(metric);
        }
        (metrics, queries)
    }

    /// A judge setting, its known parts carried over.
    fn settings(&mut self, node: &Node<'_>, key: &str) -> Value {
        let known: &[&str] = match key {
            "effectSize" => &[
                "measure",
                "allowedIncrease",
                "allowedDecrease",
                "criticalIncrease",
                "criticalDecrease",
            ],
            "outliers" => &["strategy", "outlierFactor"],
            _ => return self.t.take(node).clone(),
        };
        let mut out = Map::new();
        for k in known {
            if let Some(v) = self.t.take_field(node, k) {
                out.insert((*k).into(), v.clone());
            }
        }
        Value::Object(out)
    }

    /// Where a metric comes from: `{ source, query }`.
    fn query(&mut self, q: &Node<'_>, metric: &str) -> Option<Value> {
        let kind = self.t.string(q, "type").unwrap_or_default();
        self.t.note_field(
            q,
            "serviceType",
            "the metric source's type is the run file's concern",
        );
        if kind == "prometheus" {
            if let Some(template) = self.t.string(q, "customInlineTemplate") {
                let promql = template
                    .trim()
                    .strip_prefix("PromQL:")
                    .unwrap_or(&template)
                    .trim()
                    .replace("${scope}", "{revision}")
                    .replace("${location}", "{namespace}");
                self.t.note_field(
                    q,
                    "metricName",
                    "customInlineTemplate is the query; the metric name is in it",
                );
                return Some(json!({ "source": "prometheus", "query": promql }));
            }
            let name_node = self.t.field(q, "metricName")?;
            let name = name_node.value.as_str()?.to_owned();
            self.t.note(
                &name_node,
                format!(
                    "Kayenta selects each scope by labels; the query selects each revision with \
                     version=\"{{revision}}\": check that label for `{metric}`"
                ),
            );
            return Some(json!({
                "source": "prometheus",
                "query": format!("{name}{{version=\"{{revision}}\"}}"),
            }));
        }
        let text = [
            "q",
            "customInlineTemplate",
            "customFilter",
            "metricName",
            "query",
        ]
        .into_iter()
        .find_map(|k| self.t.string(q, k))?;
        let source = if kind.is_empty() { "metrics" } else { &kind };
        self.t.note(
            q,
            format!(
                "the `{source}` metric store has no cutover metric source in a plan: register \
                 one named `{source}` in code (RolloutBuilder::metric_source); its query is kept"
            ),
        );
        Some(json!({ "source": source, "query": text }))
    }

    fn thresholds(&mut self, node: &Node<'_>) -> Value {
        let pass = self.t.number(node, "pass").unwrap_or(95.0);
        let marginal = self.t.number(node, "marginal").unwrap_or(75.0);
        if !(0.0..=100.0).contains(&pass) || !(0.0..=pass).contains(&marginal) {
            self.t.note(
                node,
                format!(
                    "pass {pass} and marginal {marginal}: scores are 0 to 100 and marginal is at \
                     most pass; not carried over, the judge's defaults (pass 95, marginal 75) \
                     apply"
                ),
            );
            return json!({ "pass": 95, "marginal": 75 });
        }
        json!({ "pass": super::number(pass), "marginal": super::number(marginal) })
    }

    /// Config fields with no place in a plan.
    fn config_fields(&mut self, config: &Node<'_>) {
        for (key, why) in [
            ("description", "a description; not part of a plan"),
            (
                "configVersion",
                "Kayenta's config version; not part of a plan",
            ),
            ("applications", "Spinnaker applications; not part of a plan"),
            ("createdTimestamp", "bookkeeping; not part of a plan"),
            ("updatedTimestamp", "bookkeeping; not part of a plan"),
            ("createdTimestampIso", "bookkeeping; not part of a plan"),
            ("updatedTimestampIso", "bookkeeping; not part of a plan"),
            ("id", "bookkeeping; not part of a plan"),
            (
                "templates",
                "filter templates are filled in the queries of the run file's metric source",
            ),
        ] {
            self.t.note_field(config, key, why);
        }
        if let Some(judge) = self.t.field(config, "judge") {
            let name = judge
                .value
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name.starts_with("NetflixACAJudge") {
                self.t.take(&judge);
            } else {
                self.t.note(
                    &judge,
                    format!("judge `{name}`: cutover judges with NetflixACAJudge-v1.0"),
                );
            }
        }
    }

    /// The standalone execution request: the run's timing and the thresholds.
    fn request(&mut self, request: &Node<'_>, judge: &mut Value, run: &mut Value) -> Value {
        let minutes = |m: f64| format!("{}m", m.max(1.0).round());
        let interval = self.t.number(request, "analysisIntervalMins");
        let lifetime = self.t.number(request, "lifetimeDurationMins");
        if let Some(i) = interval {
            run["interval"] = Value::from(minutes(i));
        }
        match (lifetime, interval) {
            (Some(l), Some(i)) if i > 0.0 => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let count = (l / i).floor().max(1.0) as u64;
                run["count"] = Value::from(count);
            }
            _ => {}
        }
        if let Some(b) = self.t.number(request, "beginAfterMins")
            && b > 0.0
        {
            run["initial_delay"] = Value::from(minutes(b));
        }
        let window = self.t.number(request, "lookbackMins").or(interval);
        if let Some(w) = window {
            judge["window"] = Value::from(minutes(w));
        }
        if let Some(thresholds) = self.t.field(request, "thresholds") {
            judge["thresholds"] = self.thresholds(&thresholds);
        }
        self.t.note_field(
            request,
            "scopes",
            "scopes are the rollout's revisions (stable as control, candidate as experiment)",
        );
        self.t.note_field(
            request,
            "siteLocal",
            "site-local data is not part of a plan",
        );
        json!({ "canary": { "steps": [ { "set_weight": 10 }, { "analysis": run.clone() } ] } })
    }
}
