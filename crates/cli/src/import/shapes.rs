//! Property tests of the converters on documents in the shapes they read: the golden inputs of
//! `tests/import/` (every field the upstream docs describe), with fields removed, replaced by
//! values of any type, or added. An import answers (a plan or an error), never panics; a plan
//! it writes is valid and reads back; with fields only missing, it never writes an invalid
//! plan (what it cannot carry over, it lists).

use std::path::Path;

use proptest::prelude::{Just, ProptestConfig, any, prop_assert, prop_oneof, proptest};
use proptest::sample::{Index, select};
use proptest::strategy::Strategy;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{Source, convert, documents, render};

/// The golden inputs, read once.
static INPUTS: LazyLock<Vec<(Source, Vec<Value>)>> = LazyLock::new(inputs);

/// The golden inputs: the tool they come from and their documents.
fn inputs() -> Vec<(Source, Vec<Value>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import");
    let mut out = Vec::new();
    for (tool, source) in [
        ("argo", Source::Argo),
        ("flagger", Source::Flagger),
        ("kayenta", Source::Kayenta),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(tool))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with(".plan.yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            out.push((source, documents(&text).unwrap()));
        }
    }
    out
}

/// A value of any JSON type, with the edge cases converters meet: negative, zero, huge and
/// fractional numbers, empty strings, durations, percentages and nonsense.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        select(vec![
            0i64,
            -1,
            1,
            5,
            50,
            100,
            101,
            10_000,
            i64::MIN,
            i64::MAX
        ])
        .prop_map(Value::from),
        select(vec![0.0f64, 0.5, -0.5, 1e-300, 1e300, 99.99, f64::MAX]).prop_map(Value::from),
        select(vec![
            "",
            "5m",
            "30s",
            "0s",
            "-1s",
            "1h30m",
            "10",
            "25%",
            "abc",
            "${args.x}",
            "true",
            "NaN",
            "prometheus",
            "increase",
            "decrease",
            "either",
            "canary",
            "http://127.0.0.1:9090",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One change to a document.
#[derive(Debug, Clone)]
enum Change {
    /// Removes the field (or array item) at a path.
    Remove,
    /// Replaces the value at a path.
    Replace(Value),
    /// Adds a field to the object at a path (or pushes onto an array).
    Add(String, Value),
}

/// A change: which document, which path in it, and what.
fn change() -> impl Strategy<Value = (Index, Index, Change)> {
    let change = prop_oneof![
        2 => Just(Change::Remove),
        3 => value().prop_map(Change::Replace),
        1 => ("[a-zA-Z]{1,12}", value()).prop_map(|(k, v)| Change::Add(k, v)),
    ];
    (any::<Index>(), any::<Index>(), change)
}

/// A removal: which document, which path in it.
fn removal() -> impl Strategy<Value = (Index, Index, Change)> {
    (any::<Index>(), any::<Index>(), Just(Change::Remove))
}

/// Every path in `value`, as JSON pointers, the root first.
fn paths(value: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_owned());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = k.replace('~', "~0").replace('/', "~1");
                paths(v, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                paths(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(doc: &mut Value, index: Index, change: &Change) {
    let mut all = Vec::new();
    paths(doc, "", &mut all);
    let path = index.get(&all).clone();
    match change {
        Change::Replace(v) => {
            if let Some(slot) = doc.pointer_mut(&path) {
                *slot = v.clone();
            }
        }
        Change::Add(k, v) => match doc.pointer_mut(&path) {
            Some(Value::Object(map)) => {
                map.insert(k.clone(), v.clone());
            }
            Some(Value::Array(items)) => items.push(v.clone()),
            _ => {}
        },
        Change::Remove => {
            let Some((parent, last)) = path.rsplit_once('/') else {
                *doc = Value::Null;
                return;
            };
            let last = last.replace("~1", "/").replace("~0", "~");
            match doc.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
    }
}

/// What an import of a document did.
#[derive(Debug)]
enum Answer {
    /// A plan, written and read back.
    Plan,
    /// An error message.
    Refused(String),
}

/// Imports `docs` from `source` as `cutover import` does; the plan it writes must read back.
fn import(source: Source, docs: &[Value]) -> Result<Answer, String> {
    let imported = match convert(source, docs) {
        Ok(imported) => imported,
        Err(e) => return Ok(Answer::Refused(e)),
    };
    let text = render(source, &imported)?;
    cutover::Plan::from_yaml(&text)
        .map(|_| Answer::Plan)
        .map_err(|e| format!("the written plan does not read back: {e}\n{text}"))
}

/// The golden input `input`, changed by `changes`.
fn changed(input: Index, changes: &[(Index, Index, Change)]) -> (Source, Vec<Value>) {
    let (source, mut docs) = input.get(&INPUTS).clone();
    for (doc, path, change) in changes {
        let doc = doc.index(docs.len());
        apply(&mut docs[doc], *path, change);
    }
    (source, docs)
}

#[test]
fn the_golden_inputs_import() {
    assert!(INPUTS.len() >= 8, "{} inputs", INPUTS.len());
    for (source, docs) in INPUTS.iter() {
        let answer = import(*source, docs);
        assert!(matches!(answer, Ok(Answer::Plan)), "{source:?}: {answer:?}");
    }
}

/// The plan and the notes of an import of `yaml`.
fn plan_of(source: Source, yaml: &str) -> (Value, Vec<String>) {
    let imported = convert(source, &documents(yaml).unwrap()).unwrap();
    let notes = imported
        .notes
        .iter()
        .map(|n| format!("{}: {}", n.field, n.reason))
        .collect();
    (serde_json::to_value(&imported.plan).unwrap(), notes)
}

#[test]
fn a_background_analysis_starts_at_the_step_its_argo_step_became() {
    // Found by the properties below: the experiment step has no equivalent, so Argo's step 2
    // is the plan's step 1.
    let (plan, notes) = plan_of(
        Source::Argo,
        r"
kind: Rollout
metadata: { name: checkout }
spec:
  strategy:
    canary:
      analysis: { templates: [ { templateName: errors } ], startingStep: 2 }
      steps:
        - setWeight: 10
        - experiment: { templates: [ { name: baseline, specRef: stable } ] }
        - setWeight: 50
---
kind: AnalysisTemplate
metadata: { name: errors }
spec:
  metrics:
    - name: errors
      successCondition: result[0] < 0.01
      provider: { prometheus: { query: errors } }
",
    );
    let canary = &plan["strategy"]["canary"];
    assert_eq!(canary["steps"][1], serde_json::json!({ "set_weight": 50 }));
    assert_eq!(
        canary["background_analysis"]["starting_step"], 1,
        "{plan:#}"
    );
    assert!(notes.iter().any(|n| n.contains("experiment")), "{notes:#?}");
}

#[test]
fn removing_a_route_no_step_set_is_dropped_with_a_note() {
    let (plan, notes) = plan_of(
        Source::Argo,
        r"
kind: Rollout
metadata: { name: checkout }
spec:
  strategy:
    canary:
      steps:
        - setWeight: 10
        - setHeaderRoute: { name: beta }
        - setMirrorRoute: { name: shadow }
        - setHeaderRoute: { name: qa, match: [ { headerName: x-qa, headerValue: { exact: 'yes' } } ] }
        - setHeaderRoute: { name: qa }
",
    );
    let steps = &plan["strategy"]["canary"]["steps"];
    assert_eq!(
        steps,
        &serde_json::json!([
            { "set_weight": 10 },
            { "set_header_route": { "name": "qa", "match": [ { "header": { "name": "x-qa", "value": { "exact": "yes" } } } ] } },
            { "remove_header_route": "qa" },
        ]),
        "{plan:#}"
    );
    for name in ["header route `beta`", "mirror `shadow`"] {
        assert!(
            notes
                .iter()
                .any(|n| n.contains(&format!("removes {name}, which no earlier step sets"))),
            "{name}: {notes:#?}"
        );
    }
}

#[test]
fn kayenta_groups_and_weights_of_the_wrong_type_are_noted() {
    let (plan, notes) = plan_of(
        Source::Kayenta,
        r#"{
  "name": "api",
  "metrics": [
    { "name": "errors", "groups": { "errors": 1 },
      "query": { "type": "prometheus", "customInlineTemplate": "PromQL:errors{version='${scope}'}" } }
  ],
  "classifier": { "groupWeights": { "errors": "heavy", "latency": 30 }, "scoreThresholds": { "pass": 10, "marginal": 70 } }
}"#,
    );
    let config = &plan["analyses"]["api"]["judge"]["config"];
    assert!(config["metrics"][0].get("groups").is_none(), "{plan:#}");
    assert_eq!(
        config["classifier"]["groupWeights"],
        serde_json::json!({ "latency": 30 })
    );
    assert_eq!(
        plan["analyses"]["api"]["judge"]["config"]["classifier"]["scoreThresholds"],
        serde_json::json!({ "pass": 95, "marginal": 75 }),
        "{plan:#}"
    );
    for field in [
        "metrics[0].groups: expected a list of group names",
        "classifier.groupWeights.errors: a group weight is a number",
        "classifier.scoreThresholds: pass 10 and marginal 70",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(field)),
            "{field}: {notes:#?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Argo Rollouts, Flagger and Kayenta documents with fields removed, retyped or added: the
    /// import answers without a panic, and a plan it writes is valid.
    #[test]
    fn changed_documents_never_panic(
        input in any::<Index>(),
        changes in proptest::collection::vec(change(), 1..8),
        also_as in select(vec![None, Some(Source::Argo), Some(Source::Flagger), Some(Source::Kayenta)]),
    ) {
        let (source, docs) = changed(input, &changes);
        let answer = import(source, &docs);
        prop_assert!(answer.is_ok(), "{:?}", answer);
        // A document given to the wrong tool is refused or converted, never a panic.
        if let Some(other) = also_as {
            let answer = import(other, &docs);
            prop_assert!(answer.is_ok(), "{:?}", answer);
        }
    }

    /// With fields missing (each a field the upstream docs describe, or a whole step, metric
    /// or section), a converter carries over what is left or says what it lacks: it never
    /// writes a plan that is not valid.
    #[test]
    fn documents_with_missing_fields_convert_or_are_refused_with_a_reason(
        input in any::<Index>(),
        removals in proptest::collection::vec(removal(), 1..10),
    ) {
        let (source, docs) = changed(input, &removals);
        match import(source, &docs) {
            Ok(Answer::Plan) => {}
            Ok(Answer::Refused(reason)) => prop_assert!(
                !reason.contains("the converted plan is not valid"),
                "{:?}: {}\n{:#}", source, reason, Value::Array(docs.clone())
            ),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
