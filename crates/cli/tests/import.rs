//! `cutover import` on manifests written here in the shapes of the upstream projects'
//! documented examples, against golden plans (`*.plan.yaml` beside each input). Each plan
//! must also pass `cutover lint` without errors.
//!
//! After a deliberate change, rewrite the golden files with
//! `UPDATE_GOLDEN=1 cargo test -p cutover-cli --test import` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cutover(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .output()
        .expect("cutover runs")
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import")
}

/// Imports `input` from `tool`, compares the plan with its golden file and lints it; returns
/// standard error (the list of what was not carried over).
fn golden(tool: &str, input: &str) -> String {
    let path = dir().join(tool).join(input);
    let out = cutover(&["import", tool, path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "import {tool} {input} failed: {stderr}"
    );
    let plan = String::from_utf8(out.stdout).unwrap();
    let stem = input.rsplit_once('.').unwrap().0;
    let golden = dir().join(tool).join(format!("{stem}.plan.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &plan).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with UPDATE_GOLDEN=1", golden.display()));
    assert_eq!(plan, want, "{} differs from the import", golden.display());

    let lint = cutover(&["lint", golden.to_str().unwrap()]);
    assert!(
        lint.status.success(),
        "the imported plan {} does not lint: {}{}",
        golden.display(),
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    stderr
}

/// Every line of the plan's header and of standard error that says `field` was not carried
/// over.
fn dropped(stderr: &str, field: &str) -> bool {
    stderr
        .lines()
        .any(|l| l.starts_with("not carried over: ") && l.contains(field))
}

#[test]
fn argo_canary() {
    let stderr = golden("argo", "canary.yaml");
    for field in [
        "spec.strategy.canary.trafficRouting",
        "spec.strategy.canary.steps[11].experiment",
        "spec.strategy.canary.steps[13].setCanaryScale",
        "spec.template",
        "metrics[1].successCondition",
        "metrics[2].provider",
        "prometheus.address",
        "spec.progressDeadlineAbort",
        "metadata.namespace",
        "metrics[0].provider.prometheus.timeout",
        "steps[2].setMirrorRoute.match[0].method",
    ] {
        assert!(
            dropped(&stderr, field),
            "{field} is not listed in:\n{stderr}"
        );
    }
}

#[test]
fn argo_blue_green() {
    let stderr = golden("argo", "bluegreen.yaml");
    for field in [
        "spec.workloadRef",
        "blueGreen.activeService",
        "blueGreen.previewService",
        "prePromotionAnalysis.args[0].valueFrom",
        "prePromotionAnalysis.templates[0]",
        "scaleDownDelayRevisionLimit",
    ] {
        assert!(
            dropped(&stderr, field),
            "{field} is not listed in:\n{stderr}"
        );
    }
}

#[test]
fn flagger_canary() {
    let stderr = golden("flagger", "canary.yaml");
    for field in [
        "spec.analysis.webhooks[0]",
        "spec.analysis.webhooks[2]",
        "spec.analysis.alerts",
        "spec.analysis.stepWeightPromotion",
        "spec.targetRef",
        "spec.service",
        "spec.provider.address",
    ] {
        assert!(
            dropped(&stderr, field),
            "{field} is not listed in:\n{stderr}"
        );
    }
}

#[test]
fn flagger_ab_testing() {
    golden("flagger", "ab-testing.yaml");
}

#[test]
fn flagger_blue_green() {
    let stderr = golden("flagger", "blue-green.yaml");
    assert!(dropped(&stderr, "webhooks[0]"), "{stderr}");
}

#[test]
fn flagger_step_weights() {
    golden("flagger", "step-weights.yaml");
}

#[test]
fn kayenta_canary_config() {
    let stderr = golden("kayenta", "canary-config.json");
    for field in [
        "metrics[2].query",
        "description",
        "applications",
        "metrics[1].query",
        "labelBindings",
    ] {
        assert!(
            dropped(&stderr, field),
            "{field} is not listed in:\n{stderr}"
        );
    }
}

#[test]
fn kayenta_standalone_request() {
    let stderr = golden("kayenta", "standalone.json");
    assert!(dropped(&stderr, "executionRequest.scopes"), "{stderr}");
}

#[test]
fn input_that_is_not_a_config_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let not_yaml = dir.path().join("bad.yaml");
    std::fs::write(&not_yaml, "kind: Rollout\nspec: [\n").unwrap();
    let out = cutover(&["import", "argo", not_yaml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");

    let wrong_kind = dir.path().join("deploy.yaml");
    std::fs::write(&wrong_kind, "apiVersion: apps/v1\nkind: Deployment\n").unwrap();
    let out = cutover(&["import", "argo", wrong_kind.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no `kind: Rollout`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
