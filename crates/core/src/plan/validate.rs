//! Checks of a plan that need no providers. Every error names the field.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{
    AbTest, AnalysisRun, AnalysisTemplate, BlueGreen, Canary, CanaryStep, OnInconclusive, Plan,
    PlanError, Rolling, Strategy,
};
use crate::{TOTAL_BASIS_POINTS, Weight};

type Result = std::result::Result<(), PlanError>;

pub(super) fn plan(plan: &Plan) -> Result {
    match problems(plan).into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// Every problem of the plan, in the order `plan` checks them: one per field, step, metric or
/// template at most (the first found in each), so that a linter can show them all at once.
pub(super) fn problems(plan: &Plan) -> Vec<PlanError> {
    let mut out = Problems::default();
    out.check(positive("progress_deadline", plan.progress_deadline));
    out.check(positive("poll_interval", plan.poll_interval));
    out.check(
        plan.retry
            .validate()
            .map_err(|(field, reason)| PlanError::invalid(format!("retry.{field}"), reason)),
    );
    for (name, template) in &plan.analyses {
        analysis_template(&mut out, &format!("analyses.{name}"), name, template);
    }
    match &plan.strategy {
        Strategy::Canary(c) => canary(&mut out, "strategy.canary", c, plan),
        Strategy::BlueGreen(b) => blue_green(&mut out, "strategy.blue_green", b, plan),
        Strategy::Rolling(r) => out.check(rolling("strategy.rolling", r)),
        Strategy::AbTest(a) => ab_test(&mut out, "strategy.ab_test", a, plan),
    }
    out.0
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<PlanError>);

impl Problems {
    fn check(&mut self, result: Result) {
        if let Err(e) = result {
            self.0.push(e);
        }
    }
}

fn positive(path: &str, d: Duration) -> Result {
    if d.is_zero() {
        return Err(PlanError::invalid(path, "must be longer than zero"));
    }
    Ok(())
}

fn canary(out: &mut Problems, path: &str, c: &Canary, plan: &Plan) {
    if c.steps.is_empty() {
        out.check(Err(PlanError::invalid(
            format!("{path}.steps"),
            "a canary needs at least one step (`set_weight: 100` switches at once)",
        )));
    }
    let mut routes = BTreeSet::new();
    let mut mirrors = BTreeSet::new();
    for (i, step) in c.steps.iter().enumerate() {
        let at = format!("{path}.steps[{i}].{}", step.kind());
        out.check(canary_step(&at, step, plan, &mut routes, &mut mirrors));
    }
    out.check(canary_rest(path, c, plan));
}

fn canary_step(
    at: &str,
    step: &CanaryStep,
    plan: &Plan,
    routes: &mut BTreeSet<String>,
    mirrors: &mut BTreeSet<String>,
) -> Result {
    match step {
        CanaryStep::SetWeight(_) | CanaryStep::Scale(_) => {}
        CanaryStep::Pause(p) => {
            if p.duration.is_some_and(|d| d.is_zero()) {
                return Err(PlanError::invalid(
                    format!("{at}.duration"),
                    "must be longer than zero (write `pause: {}` to wait until resumed)",
                ));
            }
        }
        CanaryStep::Analysis(run) => analysis_run(at, run, plan, false)?,
        CanaryStep::SetHeaderRoute(route) => {
            routes.insert(route.name.clone());
            route
                .validate()
                .map_err(|e| PlanError::invalid(at, e.to_string()))?;
        }
        CanaryStep::RemoveHeaderRoute(name) => {
            if !routes.remove(name) {
                return Err(PlanError::invalid(
                    at,
                    format!("no earlier step sets a header route named `{name}`"),
                ));
            }
        }
        CanaryStep::SetMirror(mirror) => {
            mirrors.insert(mirror.name.clone());
            mirror
                .validate()
                .map_err(|e| PlanError::invalid(at, e.to_string()))?;
        }
        CanaryStep::RemoveMirror(name) => {
            if !mirrors.remove(name) {
                return Err(PlanError::invalid(
                    at,
                    format!("no earlier step sets a mirror named `{name}`"),
                ));
            }
        }
    }
    Ok(())
}

fn canary_rest(path: &str, c: &Canary, plan: &Plan) -> Result {
    if let Some(bg) = &c.background_analysis {
        let at = format!("{path}.background_analysis");
        if bg.starting_step >= c.steps.len() {
            return Err(PlanError::invalid(
                format!("{at}.starting_step"),
                format!(
                    "is {}, but the canary has only {} steps",
                    bg.starting_step,
                    c.steps.len()
                ),
            ));
        }
        analysis_run(&format!("{at}.analysis"), &bg.analysis, plan, true)?;
    }
    if c.replicas == Some(0) {
        return Err(PlanError::invalid(
            format!("{path}.replicas"),
            "must be at least 1",
        ));
    }
    Ok(())
}

fn blue_green(out: &mut Problems, path: &str, b: &BlueGreen, plan: &Plan) {
    if let Some(route) = &b.preview_route {
        out.check(
            route
                .validate()
                .map_err(|e| PlanError::invalid(format!("{path}.preview_route"), e.to_string())),
        );
    }
    if let Some(run) = &b.pre_promotion_analysis {
        out.check(analysis_run(
            &format!("{path}.pre_promotion_analysis"),
            run,
            plan,
            false,
        ));
    }
    if let Some(run) = &b.post_promotion_analysis {
        out.check(analysis_run(
            &format!("{path}.post_promotion_analysis"),
            run,
            plan,
            false,
        ));
    }
    if let super::AutoPromotion::After(d) = b.auto_promotion {
        out.check(positive(&format!("{path}.auto_promotion.after"), d));
    }
    out.check(blue_green_replicas(path, b));
}

fn blue_green_replicas(path: &str, b: &BlueGreen) -> Result {
    match (b.replicas, b.preview_replicas) {
        (Some(0), _) => Err(PlanError::invalid(
            format!("{path}.replicas"),
            "must be at least 1",
        )),
        (None, Some(_)) => Err(PlanError::invalid(
            format!("{path}.preview_replicas"),
            "needs `replicas`: the candidate's size once it takes all traffic",
        )),
        (Some(full), Some(preview)) if preview > full => Err(PlanError::invalid(
            format!("{path}.preview_replicas"),
            format!("{preview} is more than replicas ({full})"),
        )),
        (_, Some(0)) => Err(PlanError::invalid(
            format!("{path}.preview_replicas"),
            "must be at least 1",
        )),
        _ => Ok(()),
    }
}

fn rolling(path: &str, r: &Rolling) -> Result {
    if r.replicas == 0 {
        return Err(PlanError::invalid(
            format!("{path}.replicas"),
            "must be at least 1",
        ));
    }
    Ok(())
}

fn ab_test(out: &mut Problems, path: &str, a: &AbTest, plan: &Plan) {
    if a.split.is_none() && a.routes.is_empty() {
        out.check(Err(PlanError::invalid(
            path,
            "an A/B test needs a `split`, `routes`, or both, to send traffic to the candidate",
        )));
    }
    if let Some(split) = a.split
        && (split == Weight::ZERO || split.basis_points() == TOTAL_BASIS_POINTS)
    {
        out.check(Err(PlanError::invalid(
            format!("{path}.split"),
            format!("{split} leaves one side without traffic; use a share between 0% and 100%"),
        )));
    }
    let mut names = BTreeSet::new();
    for (i, route) in a.routes.iter().enumerate() {
        let at = format!("{path}.routes[{i}]");
        let unique = names.insert(&route.name);
        out.check(
            route
                .validate()
                .map_err(|e| PlanError::invalid(&at, e.to_string()))
                .and_then(|()| {
                    if unique {
                        Ok(())
                    } else {
                        Err(PlanError::invalid(
                            &at,
                            format!("route name `{}` is used twice", route.name),
                        ))
                    }
                }),
        );
    }
    out.check(positive(&format!("{path}.duration"), a.duration));
    out.check(ab_test_analysis(path, a, plan));
}

fn ab_test_analysis(path: &str, a: &AbTest, plan: &Plan) -> Result {
    if a.analysis.is_empty() {
        return Err(PlanError::invalid(
            format!("{path}.analysis"),
            "must name an analysis",
        ));
    }
    let kind = match plan.analyses.get(&a.analysis) {
        Some(AnalysisTemplate::Threshold(_)) => Some("threshold"),
        Some(AnalysisTemplate::Judge(_)) => Some("judge"),
        Some(AnalysisTemplate::Conditions(_)) => Some("conditions"),
        Some(AnalysisTemplate::Sequential(_)) => Some("sequential"),
        _ => None,
    };
    if let Some(kind) = kind {
        return Err(PlanError::invalid(
            format!("{path}.analysis"),
            format!(
                "`{}` is a {kind} analysis; an A/B test needs one that compares the revisions (`proportions`)",
                a.analysis
            ),
        ));
    }
    Ok(())
}

fn analysis_run(path: &str, run: &AnalysisRun, plan: &Plan, background: bool) -> Result {
    if run.name.is_empty() {
        return Err(PlanError::invalid(
            format!("{path}.name"),
            "must name an analysis",
        ));
    }
    if let Some(AnalysisTemplate::Proportions(_)) = plan.analyses.get(&run.name) {
        return Err(PlanError::invalid(
            format!("{path}.name"),
            format!(
                "`{}` compares revisions for A/B tests; use a threshold analysis here",
                run.name
            ),
        ));
    }
    if run.count == Some(0) {
        return Err(PlanError::invalid(
            format!("{path}.count"),
            "must be at least 1",
        ));
    }
    let repeats = background || run.count.is_some_and(|c| c > 1);
    if repeats && run.interval.is_zero() {
        return Err(PlanError::invalid(
            format!("{path}.interval"),
            "must be longer than zero when measuring more than once",
        ));
    }
    if run.failure_limit < -1 {
        return Err(PlanError::invalid(
            format!("{path}.failure_limit"),
            format!(
                "is {}; use -1 to never fail, or a count of 0 or more",
                run.failure_limit
            ),
        ));
    }
    if let OnInconclusive::Extend { times: 0, .. } = run.on_inconclusive {
        return Err(PlanError::invalid(
            format!("{path}.on_inconclusive.extend.times"),
            "must be at least 1",
        ));
    }
    match plan.analyses.get(&run.name) {
        Some(AnalysisTemplate::Sequential(_)) => sequential_run(path, run, background),
        _ if run.max_count.is_some() => Err(PlanError::invalid(
            format!("{path}.max_count"),
            format!(
                "applies only to sequential analyses, and `{}` is not one defined in the plan's analyses",
                run.name
            ),
        )),
        _ => Ok(()),
    }
}

/// The run settings of a sequential analysis: the test decides each measurement, so Argo's
/// tallies do not apply, and `max_count` bounds how long the step may extend.
fn sequential_run(path: &str, run: &AnalysisRun, background: bool) -> Result {
    let unused = [
        (
            "failure_limit",
            run.failure_limit != 0,
            "rolls back at the first rejection",
        ),
        (
            "inconclusive_limit",
            run.inconclusive_limit != 0,
            "goes on while undecided, up to `max_count` measurements",
        ),
        (
            "consecutive_success_limit",
            run.consecutive_success_limit != 0,
            "passes once its time is up and the confidence sequence rules out the tolerance",
        ),
    ];
    if let Some((field, _, why)) = unused.into_iter().find(|(_, set, _)| *set) {
        return Err(PlanError::invalid(
            format!("{path}.{field}"),
            format!("does not apply to a sequential analysis, which {why}; leave it out"),
        ));
    }
    if run.interval.is_zero() {
        return Err(PlanError::invalid(
            format!("{path}.interval"),
            "must be longer than zero: each measurement covers the time since the previous one",
        ));
    }
    let count = run.count.unwrap_or(1);
    match run.max_count {
        Some(max) if max < count => Err(PlanError::invalid(
            format!("{path}.max_count"),
            format!("is {max}, less than count ({count})"),
        )),
        Some(_) if background && run.count.is_none() => Err(PlanError::invalid(
            format!("{path}.max_count"),
            "needs `count`: background analysis without a count runs until promotion",
        )),
        _ => Ok(()),
    }
}

fn analysis_template(out: &mut Problems, path: &str, name: &str, template: &AnalysisTemplate) {
    if name.is_empty() {
        out.check(Err(PlanError::invalid(
            "analyses",
            "an analysis name must not be empty",
        )));
        return;
    }
    match template {
        AnalysisTemplate::Threshold(t) => {
            if t.metrics.is_empty() {
                out.check(Err(PlanError::invalid(
                    format!("{path}.threshold.metrics"),
                    "needs at least one metric",
                )));
            }
            let mut names = BTreeSet::new();
            for (i, m) in t.metrics.iter().enumerate() {
                let at = format!("{path}.threshold.metrics[{i}]");
                out.check(threshold_metric(&at, m, &mut names));
            }
        }
        AnalysisTemplate::Judge(j) => out.check(judge_template(&format!("{path}.judge"), j)),
        AnalysisTemplate::Conditions(c) => {
            conditions_template(out, &format!("{path}.conditions"), c);
        }
        AnalysisTemplate::Sequential(t) => {
            out.check(sequential_template(&format!("{path}.sequential"), t));
        }
        AnalysisTemplate::Proportions(p) => {
            out.check(proportions_template(&format!("{path}.proportions"), p));
        }
    }
}

fn threshold_metric<'a>(
    at: &str,
    m: &'a super::ThresholdMetric,
    names: &mut BTreeSet<&'a String>,
) -> Result {
    if m.name.is_empty() {
        return Err(PlanError::invalid(
            format!("{at}.name"),
            "must not be empty",
        ));
    }
    if !names.insert(&m.name) {
        return Err(PlanError::invalid(
            format!("{at}.name"),
            format!("`{}` is used twice", m.name),
        ));
    }
    source_and_query(at, &m.source, &m.query)?;
    positive(&format!("{at}.window"), m.window)?;
    match (m.min, m.max) {
        (None, None) => {
            return Err(PlanError::invalid(
                at,
                "needs `min`, `max` or both: a metric with no bound never fails",
            ));
        }
        (Some(x), _) | (_, Some(x)) if x.is_nan() => {
            return Err(PlanError::invalid(at, "bounds must be numbers, not NaN"));
        }
        (Some(lo), Some(hi)) if lo > hi => {
            return Err(PlanError::invalid(
                at,
                format!("min {lo} is above max {hi}"),
            ));
        }
        _ => {}
    }
    Ok(())
}

fn proportions_template(at: &str, p: &super::ProportionsTemplate) -> Result {
    source_and_query(at, &p.source, &p.query)?;
    if let Some(w) = p.window {
        positive(&format!("{at}.window"), w)?;
    }
    if !(p.alpha > 0.0 && p.alpha < 1.0) {
        return Err(PlanError::invalid(
            format!("{at}.alpha"),
            format!("must be between 0 and 1, got {}", p.alpha),
        ));
    }
    Ok(())
}

fn judge_template(at: &str, j: &super::JudgeTemplate) -> Result {
    if j.config.metrics.is_empty() {
        return Err(PlanError::invalid(
            format!("{at}.config.metrics"),
            "needs at least one metric",
        ));
    }
    let mut names = BTreeSet::new();
    for (i, m) in j.config.metrics.iter().enumerate() {
        let here = format!("{at}.config.metrics[{i}]");
        if m.name.is_empty() {
            return Err(PlanError::invalid(
                format!("{here}.name"),
                "must not be empty",
            ));
        }
        if !names.insert(m.name.as_str()) {
            return Err(PlanError::invalid(
                format!("{here}.name"),
                format!("`{}` is used twice", m.name),
            ));
        }
        let Some(q) = j.queries.get(&m.name) else {
            return Err(PlanError::invalid(
                format!("{at}.queries"),
                format!("has no entry for metric `{}`", m.name),
            ));
        };
        source_and_query(&format!("{at}.queries.{}", m.name), &q.source, &q.query)?;
        if m.analysis_configurations
            .canary
            .outliers
            .outlier_factor
            .is_nan()
            || m.analysis_configurations.canary.outliers.outlier_factor < 0.0
        {
            return Err(PlanError::invalid(
                format!("{here}.analysisConfigurations.canary.outliers.outlierFactor"),
                "must be a number of at least 0",
            ));
        }
    }
    if let Some(extra) = j.queries.keys().find(|k| !names.contains(k.as_str())) {
        return Err(PlanError::invalid(
            format!("{at}.queries.{extra}"),
            "is not a metric of the config",
        ));
    }
    for (g, w) in &j.config.classifier.group_weights {
        if !(w.is_finite() && *w >= 0.0) {
            return Err(PlanError::invalid(
                format!("{at}.config.classifier.groupWeights.{g}"),
                format!("must be a weight of at least 0, got {w}"),
            ));
        }
    }
    let t = j.effective_thresholds();
    if !(t.marginal.is_finite() && t.pass.is_finite() && t.marginal <= t.pass) {
        return Err(PlanError::invalid(
            format!("{at}.thresholds"),
            format!("marginal {} must be at most pass {}", t.marginal, t.pass),
        ));
    }
    if let Some(s) = j.settings {
        if !(s.conf_level > 0.0 && s.conf_level < 1.0) {
            return Err(PlanError::invalid(
                format!("{at}.settings.conf_level"),
                format!("must be between 0 and 1, got {}", s.conf_level),
            ));
        }
        if !(s.tolerance.is_finite() && s.tolerance >= 0.0) {
            return Err(PlanError::invalid(
                format!("{at}.settings.tolerance"),
                format!("must be at least 0, got {}", s.tolerance),
            ));
        }
    }
    positive(&format!("{at}.window"), j.window)
}

fn conditions_template(out: &mut Problems, at: &str, c: &super::ConditionsTemplate) {
    if c.metrics.is_empty() {
        out.check(Err(PlanError::invalid(
            format!("{at}.metrics"),
            "needs at least one metric",
        )));
    }
    let mut names = BTreeSet::new();
    for (i, m) in c.metrics.iter().enumerate() {
        let here = format!("{at}.metrics[{i}]");
        let unique = names.insert(&m.name);
        out.check(condition_metric(&here, m, unique));
    }
}

fn condition_metric(here: &str, m: &super::ConditionMetric, unique: bool) -> Result {
    if m.name.is_empty() {
        return Err(PlanError::invalid(
            format!("{here}.name"),
            "must not be empty",
        ));
    }
    if !unique {
        return Err(PlanError::invalid(
            format!("{here}.name"),
            format!("`{}` is used twice", m.name),
        ));
    }
    source_and_query(here, &m.source, &m.query)?;
    positive(&format!("{here}.window"), m.window)
}

fn sequential_template(at: &str, t: &super::SequentialTemplate) -> Result {
    use super::SequentialKind::{Counts, Distribution, Mean};
    source_and_query(at, &t.source, &t.query)?;
    let kind = t.test.name();
    if !(t.alpha > 0.0 && t.alpha < 1.0) {
        return Err(PlanError::invalid(
            format!("{at}.alpha"),
            format!("must be between 0 and 1, got {}", t.alpha),
        ));
    }
    if t.alternative == Some(cutover_analysis::Alternative::Less) {
        return Err(PlanError::invalid(
            format!("{at}.alternative"),
            "`less` is not supported: larger is worse here; use `greater` (the default) or \
             `two-sided`, and for a rate where lower is worse (successes) count the failures",
        ));
    }
    let only = |field: &str, set: bool, kinds: &str| {
        if set {
            Err(PlanError::invalid(
                format!("{at}.{field}"),
                format!("applies only to {kinds} tests, not `test: {kind}`"),
            ))
        } else {
            Ok(())
        }
    };
    only(
        "prior_strength",
        t.prior_strength.is_some() && t.test != Counts,
        "counts",
    )?;
    only(
        "canary_share",
        t.canary_share.is_some() && t.test != Counts,
        "counts",
    )?;
    only(
        "mixture_width",
        t.mixture_width.is_some() && t.test != Mean,
        "mean",
    )?;
    only(
        "stationary",
        t.stationary.is_some() && t.test == Mean,
        "counts and distribution",
    )?;
    if let Some(k) = t.prior_strength
        && !(k.is_finite() && k > 0.0)
    {
        return Err(PlanError::invalid(
            format!("{at}.prior_strength"),
            format!("must be a number above 0, got {k}"),
        ));
    }
    if let Some(share) = t.canary_share
        && !(share > 0.0 && share < 1.0)
    {
        return Err(PlanError::invalid(
            format!("{at}.canary_share"),
            format!("must be between 0 and 1 (the candidate's share of requests), got {share}"),
        ));
    }
    if let Some(tau) = t.mixture_width
        && !(tau.is_finite() && tau > 0.0)
    {
        return Err(PlanError::invalid(
            format!("{at}.mixture_width"),
            format!("must be a number above 0, got {tau}"),
        ));
    }
    let Some(tolerance) = t.effective_tolerance() else {
        return Err(PlanError::invalid(
            format!("{at}.tolerance"),
            "a mean test needs a tolerance: the largest increase of the mean, in the metric's \
             unit, that may pass",
        ));
    };
    let (ok, want) = match t.test {
        Counts => (
            tolerance.is_finite() && tolerance > 1.0,
            "a rate ratio above 1 (1.2 lets a candidate with up to 20 % more events per request pass)",
        ),
        Distribution => (
            tolerance > 0.0 && tolerance < 1.0,
            "a CDF gap between 0 and 1 (0.05 lets 5 % of requests be slower)",
        ),
        Mean => (
            tolerance.is_finite() && tolerance > 0.0,
            "a mean difference above 0, in the metric's unit",
        ),
    };
    if !ok {
        return Err(PlanError::invalid(
            format!("{at}.tolerance"),
            format!("must be {want}, got {tolerance}"),
        ));
    }
    Ok(())
}

fn source_and_query(at: &str, source: &str, query: &str) -> Result {
    if source.is_empty() {
        return Err(PlanError::invalid(
            format!("{at}.source"),
            "must name a metric source",
        ));
    }
    if query.is_empty() {
        return Err(PlanError::invalid(
            format!("{at}.query"),
            "must not be empty",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> (String, String) {
        match Plan::from_yaml(yaml).unwrap_err() {
            PlanError::Invalid { path, reason } => (path, reason),
            other @ PlanError::Syntax { .. } => panic!("expected a field error, got {other}"),
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        let (path, reason) = err(
            "strategy: { canary: { steps: [ { set_weight: 10 }, { pause: { duration: soon } } ] } }",
        );
        assert_eq!(path, "strategy.canary.steps[1].pause.duration");
        assert!(reason.contains("invalid duration `soon`"), "{reason}");

        let (path, reason) = err("strategy: { canary: { steps: [ { set_wieght: 10 } ] } }");
        assert_eq!(path, "strategy.canary.steps[0]");
        assert!(reason.contains("unknown variant `set_wieght`"), "{reason}");

        let (path, reason) = err("strategy: { canary: { steps: [] } }\nprogress_deadlin: 5m");
        assert_eq!(path, "progress_deadlin");
        assert!(
            reason.contains("unknown field `progress_deadlin`"),
            "{reason}"
        );

        let (path, _) = err("strategy: { rolling: { replicas: 3, max_surge: lots } }");
        assert_eq!(path, "strategy.rolling.max_surge");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            (
                "strategy: { canary: { steps: [] } }",
                "strategy.canary.steps",
            ),
            (
                "strategy: { canary: { steps: [ { remove_header_route: beta } ] } }",
                "strategy.canary.steps[0].remove_header_route",
            ),
            (
                "strategy: { canary: { steps: [ { analysis: { name: x, count: 0 } } ] } }",
                "strategy.canary.steps[0].analysis.count",
            ),
            (
                "strategy: { canary: { steps: [ { set_weight: 5 } ], background_analysis: { starting_step: 3, analysis: { name: x } } } }",
                "strategy.canary.background_analysis.starting_step",
            ),
            (
                "strategy: { rolling: { replicas: 0 } }",
                "strategy.rolling.replicas",
            ),
            (
                "strategy: { blue_green: { preview_replicas: 2 } }",
                "strategy.blue_green.preview_replicas",
            ),
            (
                "strategy: { ab_test: { duration: 1h, analysis: c } }",
                "strategy.ab_test",
            ),
            (
                "strategy: { ab_test: { split: 100, duration: 1h, analysis: c } }",
                "strategy.ab_test.split",
            ),
            (
                "strategy: { canary: { steps: [ { set_weight: 5 } ] } }\nanalyses: { e: { threshold: { metrics: [ { name: m, source: s, query: q } ] } } }",
                "analyses.e.threshold.metrics[0]",
            ),
            (
                "strategy: { canary: { steps: [ { set_weight: 5 } ] } }\nretry: { max_attempts: 0 }",
                "retry.max_attempts",
            ),
            (
                "strategy: { canary: { steps: [ { analysis: { name: x, on_inconclusive: { extend: { times: 0, then: abort } } } } ] } }",
                "strategy.canary.steps[0].analysis.on_inconclusive.extend.times",
            ),
            (
                "strategy: { ab_test: { split: 50, duration: 1h, analysis: e } }\nanalyses: { e: { threshold: { metrics: [ { name: m, source: s, query: q, max: 1 } ] } } }",
                "strategy.ab_test.analysis",
            ),
        ];
        for (yaml, want) in cases {
            let (path, reason) = err(yaml);
            assert_eq!(path, want, "{yaml}: {reason}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn problems_lists_every_bad_step_and_template() {
        let yaml = r"
strategy:
  canary:
    steps:
      - pause: { duration: 0s }
      - set_weight: 10
      - remove_mirror: nope
      - analysis: { name: x, count: 0 }
analyses:
  a: { threshold: { metrics: [ { name: m, source: s, query: q } ] } }
  b: { threshold: { metrics: [ { name: m, source: '', query: q, max: 1 }, { name: lat, source: s, query: q } ] } }
progress_deadline: 0s
";
        let value: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let plan: Plan = serde_json::from_value(value).unwrap();
        let paths: Vec<String> = plan
            .problems()
            .iter()
            .map(|e| e.path().unwrap().to_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "progress_deadline",
                "analyses.a.threshold.metrics[0]",
                "analyses.b.threshold.metrics[0].source",
                "analyses.b.threshold.metrics[1]",
                "strategy.canary.steps[0].pause.duration",
                "strategy.canary.steps[2].remove_mirror",
                "strategy.canary.steps[3].analysis.count",
            ]
        );
        assert_eq!(
            plan.validate().unwrap_err().path(),
            Some("progress_deadline"),
            "validate returns the first problem"
        );
    }

    #[test]
    fn yaml_syntax_errors_have_a_location() {
        let e = Plan::from_yaml("strategy: { canary: [").unwrap_err();
        assert!(
            matches!(&e, PlanError::Syntax { format: "YAML", message } if message.contains("line")),
            "{e}"
        );
    }

    #[test]
    fn json_and_yaml_agree_and_round_trip() {
        let yaml = r"
strategy:
  canary:
    steps:
      - set_weight: 12.5
      - set_header_route: { name: beta, match: [ { header: { name: x-beta, value: { exact: '1' } } } ] }
      - pause: {}
      - analysis: { name: errors, count: 2, interval: 30s, on_inconclusive: { extend: { times: 1, then: abort } } }
      - remove_header_route: beta
      - scale: { replicas: 3 }
    abort_scale_down_delay: null
analyses:
  errors: { threshold: { metrics: [ { name: e, source: proxy, query: errors, max: 0.01, aggregate: p99 } ] } }
bake_time: 1h
";
        let plan = Plan::from_yaml(yaml).unwrap();
        let json = plan.to_json();
        assert_eq!(Plan::from_json(&json).unwrap(), plan);
        let Strategy::Canary(c) = &plan.strategy else {
            panic!("canary expected")
        };
        assert_eq!(c.abort_scale_down_delay, None);
        assert_eq!(c.scale_down_delay, Duration::from_secs(30));
        assert_eq!(plan.bake_time, Duration::from_hours(1));
        assert!(matches!(c.steps[0], CanaryStep::SetWeight(w) if w.basis_points() == 1250));
    }

    #[test]
    fn json_errors_name_the_field_too() {
        let e = Plan::from_json(r#"{"strategy":{"canary":{"steps":[{"set_weight":"ten"}]}}}"#)
            .unwrap_err();
        assert_eq!(e.path(), Some("strategy.canary.steps[0].set_weight"));
        let e = Plan::from_json(r#"{"strategy":{"canary":{"steps":[{"set_weight":1}]}}} trailing"#)
            .unwrap_err();
        assert!(matches!(e, PlanError::Syntax { format: "JSON", .. }), "{e}");
    }
}
