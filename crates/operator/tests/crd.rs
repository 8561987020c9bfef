//! `deploy/crd.yaml` is what the types generate, and specs are checked with the field at fault
//! named.

use cutover_operator::crd::crd_yaml;
use cutover_operator::{RolloutSpec, spec};

#[test]
fn the_checked_in_crd_is_the_generated_one() {
    let checked_in = include_str!("../deploy/crd.yaml");
    assert!(
        checked_in == crd_yaml().unwrap(),
        "deploy/crd.yaml is stale: cargo run -p cutover-operator -- crd > crates/operator/deploy/crd.yaml"
    );
}

fn spec(yaml: &str) -> RolloutSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

const VALID: &str = "
stable: { revision: v1, deployment: web-v1 }
candidate: { revision: v2, deployment: web-v2 }
traffic: { replicas: { total: 4 } }
plan: { strategy: { canary: { steps: [ { set_weight: 50 } ] } } }
";

#[test]
fn specs_are_checked_naming_the_field() {
    let checked = spec::check("web", &spec(VALID)).unwrap();
    assert_eq!(checked.id.as_str(), "web-v2");

    let bad_plan = VALID.replace("set_weight: 50", "set_weight: 150");
    let err = spec::check("web", &spec(&bad_plan))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("invalid spec: spec.plan: "), "{err}");
    assert!(err.contains("150"), "{err}");

    let two_routers = VALID.replace(
        "{ replicas: { total: 4 } }",
        "{ replicas: { total: 4 }, service: { name: web, label: version } }",
    );
    let err = spec::check("web", &spec(&two_routers))
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.traffic: set exactly one"), "{err}");

    let same = VALID.replace("revision: v2", "revision: v1");
    let err = spec::check("web", &spec(&same)).unwrap_err().to_string();
    assert!(err.contains("spec.candidate.revision"), "{err}");
}
