//! The Kubernetes checks on kube-fake-client: a Deployment with or without a
//! PodDisruptionBudget, resources, and an autoscaler at various replicas; the 403 of a missing
//! RBAC permission injected at the HTTP layer (`cutover_kube::testing::failing`).
#![cfg(feature = "kubernetes")]

mod common;

use std::collections::BTreeMap;

use common::run;
use cutover_core::checklist::{CheckResult, CheckStatus};
use cutover_preflight::{HpaCheck, PdbCheck, ResourcesCheck};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    HorizontalPodAutoscalerStatus,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_fake_client::ClientBuilder;

const NS: &str = "prod";

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..ObjectMeta::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// A container with the requests and limits given as `cpu`/`memory` pairs.
fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(format!("{name}:1")),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(requests)),
            limits: Some(quantities(limits)),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    }
}

fn full(name: &str) -> Container {
    container(
        name,
        &[("cpu", "100m"), ("memory", "128Mi")],
        &[("cpu", "500m"), ("memory", "256Mi")],
    )
}

/// Deployment `web` in `prod`: selector `app=web`, pods labelled `app=web, tier=api`.
fn deployment(replicas: i32, containers: Vec<Container>) -> Deployment {
    Deployment {
        metadata: meta("web", NS),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "web"), ("tier", "api")])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn pdb(name: &str, namespace: &str, selector: LabelSelector, rule: PdbRule) -> PodDisruptionBudget {
    let (min_available, max_unavailable) = match rule {
        PdbRule::MinAvailable(v) => (Some(v), None),
        PdbRule::MaxUnavailable(v) => (None, Some(v)),
    };
    PodDisruptionBudget {
        metadata: meta(name, namespace),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(selector),
            min_available,
            max_unavailable,
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// A budget `name` in `namespace` over pods with `pairs`, one pod at a time.
fn one_at_a_time(name: &str, namespace: &str, pairs: &[(&str, &str)]) -> PodDisruptionBudget {
    pdb(
        name,
        namespace,
        match_labels(pairs),
        PdbRule::MaxUnavailable(IntOrString::Int(1)),
    )
}

enum PdbRule {
    MinAvailable(IntOrString),
    MaxUnavailable(IntOrString),
}

fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(pairs)),
        ..LabelSelector::default()
    }
}

fn hpa(name: &str, target: &str, max: i32, current: Option<i32>) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: meta(name, NS),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: target.to_owned(),
            },
            min_replicas: Some(2),
            max_replicas: max,
            ..HorizontalPodAutoscalerSpec::default()
        }),
        status: Some(HorizontalPodAutoscalerStatus {
            current_replicas: current,
            desired_replicas: current.unwrap_or(0),
            ..HorizontalPodAutoscalerStatus::default()
        }),
    }
}

/// A fake API server holding `deployment` (if any) and the other objects.
async fn cluster(
    deployment: Option<Deployment>,
    budgets: Vec<PodDisruptionBudget>,
    hpas: Vec<HorizontalPodAutoscaler>,
) -> kube::Client {
    let mut builder = ClientBuilder::new()
        .with_objects(budgets)
        .with_objects(hpas);
    if let Some(d) = deployment {
        builder = builder.with_object(d);
    }
    builder.build().await.unwrap()
}

/// A fake API server with Deployment `web` (3 replicas, one fully set container) and these.
async fn web(
    budgets: Vec<PodDisruptionBudget>,
    hpas: Vec<HorizontalPodAutoscaler>,
) -> kube::Client {
    cluster(Some(deployment(3, vec![full("web")])), budgets, hpas).await
}

fn assert_status(result: &CheckResult, status: CheckStatus) {
    assert_eq!(result.status, status, "{result:?}");
}

#[tokio::test]
async fn pdb_covering_the_pods_passes_with_its_rule() {
    let client = web(
        vec![
            one_at_a_time("other", NS, &[("app", "billing")]),
            pdb(
                "web",
                NS,
                match_labels(&[("app", "web")]),
                PdbRule::MinAvailable(IntOrString::String("50%".into())),
            ),
        ],
        vec![],
    )
    .await;
    let result = run(&PdbCheck::new(NS, "web").client(client)).await;
    assert_status(&result, CheckStatus::Pass);
    assert!(result.message.contains("`web`"), "{}", result.message);
    assert!(
        result.message.contains("minAvailable \"50%\""),
        "{}",
        result.message
    );
    assert_eq!(result.evidence["pdb"], "web");
    assert_eq!(result.evidence["min_available"], "50%");
    assert_eq!(result.evidence["max_unavailable"], serde_json::Value::Null);
    assert_eq!(result.evidence["deployment"], "prod/web");
}

#[tokio::test]
async fn pdb_selecting_by_expression_passes() {
    let selector = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: Some(vec!["api".into(), "worker".into()]),
        }]),
        ..LabelSelector::default()
    };
    let client = web(
        vec![pdb(
            "tiers",
            NS,
            selector,
            PdbRule::MaxUnavailable(IntOrString::Int(1)),
        )],
        vec![],
    )
    .await;
    let result = run(&PdbCheck::new(NS, "web").client(client)).await;
    assert_status(&result, CheckStatus::Pass);
    assert_eq!(result.evidence["pdb"], "tiers");
    assert_eq!(result.evidence["max_unavailable"], 1);
}

#[tokio::test]
async fn no_pdb_for_the_pods_fails_with_one_to_apply() {
    // One in another namespace with the right labels, one here with other labels.
    let client = web(
        vec![
            one_at_a_time("web", "staging", &[("app", "web")]),
            one_at_a_time("web-v2", NS, &[("app", "web"), ("tier", "worker")]),
        ],
        vec![],
    )
    .await;
    let result = run(&PdbCheck::new(NS, "web").client(client)).await;
    assert_status(&result, CheckStatus::Fail);
    assert!(
        result.message.contains("app=web,tier=api"),
        "{}",
        result.message
    );
    let hint = result.hint.as_deref().unwrap();
    assert!(
        hint.contains("kubectl create poddisruptionbudget web --namespace prod --selector app=web --max-unavailable 1"),
        "{hint}"
    );
    let suggested = &result.evidence["suggested_pdb"];
    assert_eq!(suggested["kind"], "PodDisruptionBudget");
    assert_eq!(suggested["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(
        result.evidence["pdbs_in_namespace"],
        serde_json::json!(["web-v2"])
    );
}

#[tokio::test]
async fn pdb_that_allows_no_eviction_warns_and_two_pdbs_fail() {
    let blocking = web(
        vec![pdb(
            "web",
            NS,
            match_labels(&[("app", "web")]),
            PdbRule::MinAvailable(IntOrString::Int(3)),
        )],
        vec![],
    )
    .await;
    let result = run(&PdbCheck::new(NS, "web").client(blocking)).await;
    assert_status(&result, CheckStatus::Warn);
    assert!(
        result.message.contains("allows no eviction"),
        "{}",
        result.message
    );

    let two = web(
        vec![
            one_at_a_time("a", NS, &[("app", "web")]),
            one_at_a_time("b", NS, &[("tier", "api")]),
        ],
        vec![],
    )
    .await;
    let result = run(&PdbCheck::new(NS, "web").client(two)).await;
    assert_status(&result, CheckStatus::Fail);
    assert_eq!(result.evidence["pdbs"], serde_json::json!(["a", "b"]));
}

#[tokio::test]
async fn a_missing_deployment_is_an_error_for_each_check() {
    let pdbs = vec![one_at_a_time("web", NS, &[("app", "web")])];
    let client = cluster(None, pdbs, vec![hpa("web", "web", 10, Some(3))]).await;
    for result in [
        run(&PdbCheck::new(NS, "web").client(client.clone())).await,
        run(&ResourcesCheck::new(NS, "web").client(client.clone())).await,
        run(&HpaCheck::new(NS, "web").client(client.clone())).await,
    ] {
        assert_status(&result, CheckStatus::Error);
        assert_eq!(result.message, "Deployment prod/web not found");
        assert!(result.hint.is_some());
    }
}

#[tokio::test]
async fn a_forbidden_list_names_the_rbac_verb() {
    let inner = web(vec![], vec![]).await;
    let client = cutover_kube::testing::failing(inner, NS, 403, |_, path| {
        path.contains("poddisruptionbudgets")
    });
    let result = run(&PdbCheck::new(NS, "web").client(client)).await;
    assert_status(&result, CheckStatus::Error);
    assert!(
        result
            .message
            .contains("grant the RBAC verb `list` on `poddisruptionbudgets.policy`"),
        "{}",
        result.message
    );
}

#[tokio::test]
async fn resources_pass_when_every_container_sets_them() {
    // Limits alone give the pods requests equal to them.
    let limited = container("proxy", &[], &[("cpu", "200m"), ("memory", "64Mi")]);
    let client = cluster(
        Some(deployment(3, vec![full("web"), limited])),
        vec![],
        vec![],
    )
    .await;
    let result = run(&ResourcesCheck::new(NS, "web").client(client)).await;
    assert_status(&result, CheckStatus::Pass);
    assert!(
        result.message.starts_with("all 2 containers"),
        "{}",
        result.message
    );
    assert_eq!(result.evidence["missing"], serde_json::json!({}));
}

#[tokio::test]
async fn resources_fail_listing_what_each_container_lacks() {
    let client = cluster(
        Some(deployment(
            3,
            vec![
                full("web"),
                container(
                    "proxy",
                    &[("cpu", "50m"), ("memory", "64Mi")],
                    &[("memory", "64Mi")],
                ),
                container("log-shipper", &[], &[]),
            ],
        )),
        vec![],
        vec![],
    )
    .await;
    let result = run(&ResourcesCheck::new(NS, "web").client(client.clone())).await;
    assert_status(&result, CheckStatus::Fail);
    assert_eq!(
        result.evidence["missing"],
        serde_json::json!({
            "proxy": ["limits.cpu"],
            "log-shipper": ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"],
        })
    );
    assert!(
        result.message.contains("`proxy` lacks limits.cpu"),
        "{}",
        result.message
    );
    assert!(result.hint.as_deref().unwrap().contains(
        "kubectl set resources deployment web --namespace prod --containers log-shipper"
    ));

    // A team that does not set CPU limits on purpose says so; the shipper still fails.
    let relaxed = cutover_preflight::load_yaml(
        "name: p\nchecks:\n  - { id: r, category: c, kubernetes_resources: { namespace: prod, deployment: web, require: [requests.cpu, requests.memory, limits.memory] } }\n",
    )
    .unwrap();
    assert_eq!(relaxed.items().len(), 1);
    let only = container(
        "proxy",
        &[("cpu", "50m"), ("memory", "64Mi")],
        &[("memory", "64Mi")],
    );
    let client = cluster(Some(deployment(3, vec![full("web"), only])), vec![], vec![]).await;
    let check = ResourcesCheck::new(NS, "web")
        .client(client)
        .require(&["requests.cpu", "requests.memory", "limits.memory"])
        .unwrap();
    assert_status(&run(&check).await, CheckStatus::Pass);
}

#[tokio::test]
async fn hpa_below_max_passes_near_max_warns_at_max_fails() {
    for (current, headroom, status) in [
        (Some(3), 1, CheckStatus::Pass),
        (Some(8), 1, CheckStatus::Pass),
        (Some(9), 1, CheckStatus::Warn),
        (Some(8), 2, CheckStatus::Warn),
        (Some(10), 1, CheckStatus::Fail),
        (Some(10), 0, CheckStatus::Fail),
        (None, 1, CheckStatus::Error),
    ] {
        let client = cluster(
            Some(deployment(3, vec![full("web")])),
            vec![],
            vec![
                hpa("other", "billing", 5, Some(5)),
                hpa("web", "web", 10, current),
            ],
        )
        .await;
        let check = HpaCheck::new(NS, "web").headroom(headroom).client(client);
        let result = run(&check).await;
        assert_eq!(
            result.status, status,
            "{current:?} of 10 with headroom {headroom}: {result:?}"
        );
        assert_eq!(result.evidence["hpa"], "web");
        assert_eq!(result.evidence["max_replicas"], 10);
        if status == CheckStatus::Fail {
            assert!(
                result.message.contains("at its maximum: 10 of 10"),
                "{}",
                result.message
            );
            assert!(result.hint.as_deref().unwrap().contains("maxReplicas"));
        }
    }
}

#[tokio::test]
async fn hpa_headroom_as_a_share_of_max() {
    let yaml = |headroom: &str| {
        format!(
            "name: p\nchecks:\n  - {{ id: h, category: c, kubernetes_hpa: {{ namespace: prod, deployment: web, headroom: {headroom} }} }}\n"
        )
    };
    // 20 % of 10 is 2: 8 of 10 warns, 7 of 10 passes.
    for (current, status) in [(8, CheckStatus::Warn), (7, CheckStatus::Pass)] {
        let client = cluster(
            Some(deployment(3, vec![full("web")])),
            vec![],
            vec![hpa("web", "web", 10, Some(current))],
        )
        .await;
        let parsed = cutover_preflight::load_yaml(&yaml("\"20%\"")).unwrap();
        assert_eq!(parsed.items().len(), 1);
        let check = HpaCheck::new(NS, "web")
            .headroom_percent(20.0)
            .client(client);
        assert_eq!(run(&check).await.status, status, "{current} of 10");
    }
}

#[tokio::test]
async fn no_hpa_for_the_deployment_fails() {
    let client = web(vec![], vec![hpa("billing", "billing", 10, Some(3))]).await;
    let result = run(&HpaCheck::new(NS, "web").client(client)).await;
    assert_status(&result, CheckStatus::Fail);
    assert!(
        result
            .hint
            .as_deref()
            .unwrap()
            .contains("kubectl autoscale deployment web"),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unknown_context_is_an_error_naming_it() {
    let result = run(&PdbCheck::new(NS, "web").context("no-such-context")).await;
    assert_status(&result, CheckStatus::Error);
    assert!(
        result.message.contains("`no-such-context`"),
        "{}",
        result.message
    );
    assert_eq!(result.evidence["context"], "no-such-context");
}

#[test]
fn bad_parameters_name_the_field() {
    let err = |params: &str| {
        cutover_preflight::load_yaml(&format!(
            "name: p\nchecks:\n  - {{ id: k, category: c, {params} }}\n"
        ))
        .unwrap_err()
        .to_string()
    };
    let e = err("kubernetes_pdb: { deployment: web }");
    assert!(
        e.contains("checks[0].kubernetes_pdb") && e.contains("missing field `namespace`"),
        "{e}"
    );
    let e = err("kubernetes_pdb: { namespace: Prod, deployment: web }");
    assert!(
        e.contains("checks[0].kubernetes_pdb.namespace") && e.contains("`Prod`"),
        "{e}"
    );
    let e = err("kubernetes_resources: { namespace: prod, deployment: \"web app\" }");
    assert!(e.contains("kubernetes_resources.deployment"), "{e}");
    let e =
        err("kubernetes_resources: { namespace: prod, deployment: web, require: [limits.gpu] }");
    assert!(
        e.contains("kubernetes_resources.require") && e.contains("`limits.gpu`"),
        "{e}"
    );
    let e = err("kubernetes_hpa: { namespace: prod, deployment: web, headroom: \"120%\" }");
    assert!(
        e.contains("kubernetes_hpa.headroom") && e.contains("120%"),
        "{e}"
    );
    let e = err("kubernetes_hpa: { namespace: prod, deployment: web, headroom: -1 }");
    assert!(e.contains("kubernetes_hpa.headroom"), "{e}");
    let e = err("kubernetes_hpa: { namespace: prod, deployment: web, context: \"\" }");
    assert!(e.contains("kubernetes_hpa.context"), "{e}");
    let e = err("kubernetes_hpa: { namespace: prod, deployment: web, replicas: 3 }");
    assert!(e.contains("unknown field `replicas`"), "{e}");
}
