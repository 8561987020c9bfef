//! Notifications delivered to real HTTP receivers on 127.0.0.1: signatures, order, retries,
//! dead letters, restarts, hostile receivers, and the Slack and CloudEvents payload shapes.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::{FileStateStore, Outcome, StateStore};
use cutover_notify::{
    CloudEvents, Filter, NoticeKind, Notifier, Release, RolloutMetrics, SigningKey, Webhook,
};
use support::*;

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn webhook(receiver: &Receiver) -> Webhook {
    Webhook::new(&receiver.url("/hook"), SigningKey::parse(KEY).unwrap()).unwrap()
}

fn kinds(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["data"]["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_notices_are_signed_ordered_and_verifiable() {
    let store = memory();
    assert_eq!(
        run_rollout(store.clone(), "checkout-v42", PROMOTING).await,
        Outcome::Promoted
    );
    let receiver = Receiver::start().await;
    let notifier = Notifier::new(store.clone())
        .sink("hook", webhook(&receiver), Filter::default())
        .unwrap();
    let report = notifier.deliver_pending().await.unwrap();
    let received = receiver.received();
    assert_eq!(report.delivered["hook"], received.len());
    assert_eq!(
        kinds(&received),
        [
            "started",
            "weight_changed",
            "step_completed",
            "weight_changed",
            "step_completed",
            "promoting",
            "promoted"
        ]
    );
    // Verified with the Standard Webhooks reference library, not with our own code.
    let verifier = standardwebhooks::Webhook::new(KEY).unwrap();
    let mut seqs = Vec::new();
    for request in &received {
        assert_eq!(request.path, "/hook");
        assert_eq!(request.header("content-type"), "application/json");
        verifier.verify(&request.body, &request.headers).unwrap();
        let body = request.json();
        let id = body["data"]["id"].as_str().unwrap();
        assert_eq!(request.header("webhook-id"), id);
        assert_eq!(request.header("idempotency-key"), id);
        assert_eq!(
            body["type"],
            format!("cutover.rollout.{}", body["data"]["kind"].as_str().unwrap())
        );
        seqs.push(body["data"]["seq"].as_u64().unwrap());
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seqs:?}"
    );
    let weights: Vec<f64> = received
        .iter()
        .filter(|r| r.json()["data"]["kind"] == "weight_changed")
        .map(|r| r.json()["data"]["split"]["v2"].as_f64().unwrap_or(-1.0))
        .collect();
    assert_eq!(weights, [20.0, 50.0]);
    // A tampered body fails verification.
    let mut tampered = received[0].clone();
    tampered.body = tampered.body.slice(1..);
    assert!(verifier.verify(&tampered.body, &tampered.headers).is_err());
    // Nothing new: nothing sent.
    let again = notifier.deliver_pending().await.unwrap();
    assert_eq!(again.delivered["hook"], 0);
    assert_eq!(receiver.received().len(), received.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_500_and_timeout_then_delivers_once() {
    let store = memory();
    run_rollout(store.clone(), "checkout-v42", PROMOTING).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(500), Reply::Hang, Reply::Status(503)]);
    let metrics = RolloutMetrics::new();
    let sink = webhook(&receiver)
        .timeout(Duration::from_millis(300))
        .unwrap();
    let notifier = Notifier::new(store)
        .sink(
            "hook",
            sink,
            Filter::default().kinds([NoticeKind::Promoted]),
        )
        .unwrap()
        .retry(fast_retry(5))
        .metrics(metrics.clone());
    let report = notifier.deliver_pending().await.unwrap();
    assert_eq!(report.delivered["hook"], 1);
    assert_eq!(report.dead_lettered["hook"], 0);
    let received = receiver.received();
    assert_eq!(received.len(), 4, "500, timeout, 503, then 200");
    let ids: BTreeSet<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same id: {ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("checkout-v42/")));
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"cutover_notifications_total{sink="hook",kind="webhook",outcome="retried"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"cutover_notifications_total{sink="hook",kind="webhook",outcome="delivered"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_retries_and_refusals_go_to_the_dead_letter_list() {
    let store = memory();
    run_rollout(store.clone(), "checkout-v42", PROMOTING).await;
    let failing = Receiver::start().await;
    failing.otherwise(Reply::Status(500));
    let refusing = Receiver::start().await;
    refusing.otherwise(Reply::Status(410));
    let promoted = Filter::default().kinds([NoticeKind::Promoted, NoticeKind::Started]);
    let metrics = RolloutMetrics::new();
    let notifier = Notifier::new(store.clone())
        .sink("failing", webhook(&failing), promoted.clone())
        .unwrap()
        .sink("refusing", webhook(&refusing), promoted)
        .unwrap()
        .retry(fast_retry(3))
        .metrics(metrics.clone());
    let report = notifier.deliver_pending().await.unwrap();
    assert_eq!(report.dead_lettered["failing"], 2);
    assert_eq!(report.dead_lettered["refusing"], 2);
    let text = metrics.encode();
    for line in [
        r#"cutover_notifications_total{sink="failing",kind="webhook",outcome="dead_lettered"} 2"#,
        r#"cutover_notifications_total{sink="failing",kind="webhook",outcome="retried"} 4"#,
        r#"cutover_notifications_total{sink="refusing",kind="webhook",outcome="dead_lettered"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert!(
        !text.contains(r#"sink="refusing",kind="webhook",outcome="retried""#),
        "a 410 is not retried: {text}"
    );
    assert_eq!(
        failing.received().len(),
        6,
        "3 attempts for each of 2 notices"
    );
    assert_eq!(refusing.received().len(), 2, "a 410 is not retried");
    let letters = Notifier::dead_letters(store.as_ref(), &"failing".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].notice.kind, NoticeKind::Started);
    assert_eq!(letters[1].notice.kind, NoticeKind::Promoted);
    assert_eq!(letters[1].attempts, 3);
    assert_eq!(letters[1].error, "the receiver answered HTTP 500");
    let letters = Notifier::dead_letters(store.as_ref(), &"refusing".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(letters[0].attempts, 1);
    // Dead letters are done with: the next pass does not send them again.
    notifier.deliver_pending().await.unwrap();
    assert_eq!(failing.received().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_notifier_neither_loses_nor_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let open = || -> Arc<dyn StateStore> { Arc::new(FileStateStore::new(dir.path()).unwrap()) };
    let notifier = |store| {
        Notifier::new(store)
            .sink("hook", webhook(&receiver), Filter::default())
            .unwrap()
    };
    run_rollout(open(), "first-v1", PROMOTING).await;
    let first = notifier(open()).deliver_pending().await.unwrap().delivered["hook"];
    assert!(first > 0);
    // A new process: new store handle on the same files, new notifier.
    let store = open();
    assert_eq!(
        notifier(store.clone())
            .deliver_pending()
            .await
            .unwrap()
            .delivered["hook"],
        0
    );
    run_rollout(store.clone(), "second-v1", FAILING).await;
    let second = notifier(open()).deliver_pending().await.unwrap().delivered["hook"];
    let received = receiver.received();
    assert_eq!(received.len(), first + second);
    let ids: BTreeSet<String> = received
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), received.len(), "no notice was sent twice");
    assert!(
        received[first..]
            .iter()
            .all(|r| r.header("webhook-id").starts_with("second-v1/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_hold_the_rollout() {
    let store = memory();
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::Hang);
    let sink = webhook(&receiver).timeout(Duration::from_mins(10)).unwrap();
    let running = Notifier::new(store.clone())
        .sink("hook", sink, Filter::default())
        .unwrap()
        .poll_every(Duration::from_millis(20))
        .spawn();
    let rollout = tokio::spawn(run_rollout(store.clone(), "checkout-v42", FAILING));
    wait_for(Duration::from_secs(10), || !receiver.received().is_empty()).await;
    // The receiver holds the first notice for ten minutes; the rollout ends regardless.
    let outcome = rollout.await.unwrap();
    assert!(matches!(outcome, Outcome::RolledBack(_)), "{outcome:?}");
    assert_eq!(receiver.received().len(), 1);
    running.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_huge_answers_are_not_read() {
    let store = memory();
    run_rollout(store.clone(), "checkout-v42", PROMOTING).await;
    let looping = Receiver::start().await;
    looping.otherwise(Reply::Redirect);
    let huge = Receiver::start().await;
    huge.otherwise(Reply::Huge);
    let only_promoted = Filter::default().kinds([NoticeKind::Promoted]);
    let notifier = Notifier::new(store)
        .sink("looping", webhook(&looping), only_promoted.clone())
        .unwrap()
        .sink(
            "huge",
            webhook(&huge).timeout(Duration::from_secs(5)).unwrap(),
            only_promoted,
        )
        .unwrap()
        .retry(fast_retry(3));
    let report = tokio::time::timeout(Duration::from_secs(10), notifier.deliver_pending())
        .await
        .expect("a hostile receiver does not stall the notifier")
        .unwrap();
    assert_eq!(report.dead_lettered["looping"], 1);
    assert_eq!(
        looping.received().len(),
        1,
        "a 307 is neither followed nor retried"
    );
    assert_eq!(
        report.delivered["huge"], 1,
        "a 200 is enough; its endless body is not read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_carry_cdevents_as_the_schemas_require() {
    let store = memory();
    run_rollout(store.clone(), "checkout-v42", PROMOTING).await;
    run_rollout(store.clone(), "checkout-v43", FAILING).await;
    Release::new("checkout")
        .environment("production")
        .artifact("pkg:oci/checkout@sha256%3Aabc")
        .save(store.as_ref(), &"checkout-v42".parse().unwrap())
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let sink = CloudEvents::new(&receiver.url("/events"), "/cutover/test").unwrap();
    let notifier = Notifier::new(store)
        .sink(
            "events",
            sink,
            Filter::default().kinds([
                NoticeKind::Started,
                NoticeKind::Promoted,
                NoticeKind::RollingBack,
                NoticeKind::RolledBack,
            ]),
        )
        .unwrap();
    notifier.deliver_pending().await.unwrap();
    let events: Vec<serde_json::Value> = receiver
        .received()
        .iter()
        .inspect(|r| assert_eq!(r.header("content-type"), "application/cloudevents+json"))
        .map(Received::json)
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "dev.cutover.rollout.started",
            "dev.cdevents.service.deployed.0.3.0",
            "dev.cutover.rollout.started",
            "dev.cdevents.incident.detected.0.3.0",
            "dev.cdevents.service.rolledback.0.3.0",
        ]
    );
    let schemas = Schemas::load();
    for event in &events {
        // The published JSON Schemas (tests/schemas/README.md): CloudEvents 1.0.2 for the
        // envelope, CDEvents 0.5.1 for the CDEvents carried as data.
        schemas.check(event);
        // CloudEvents 1.0: required id, source, specversion, type; time is RFC 3339.
        assert_eq!(event["specversion"], "1.0");
        assert!(!event["id"].as_str().unwrap().is_empty());
        assert_eq!(event["source"], "/cutover/test");
        assert!(humantime::parse_rfc3339(event["time"].as_str().unwrap()).is_ok());
        assert_eq!(event["datacontenttype"], "application/json");
        let Some(context) = event["data"].get("context") else {
            continue;
        };
        // CDEvents 0.5.1 (schemas/servicedeployed.json and friends): context and subject
        // only, the context's required keys, no others; the binding copies id, source, type.
        let data = event["data"].as_object().unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["context", "subject"]);
        let keys: BTreeSet<&str> = context
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["specversion", "id", "source", "type", "timestamp"])
        );
        assert_eq!(context["specversion"], "0.5.1");
        assert_eq!(context["id"], event["id"]);
        assert_eq!(context["type"], event["type"]);
        assert_eq!(context["source"], event["source"]);
        assert_eq!(event["subject"], data["subject"]["id"]);
        let content = data["subject"]["content"].as_object().unwrap();
        let keys: BTreeSet<&str> = content.keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = if event["type"] == "dev.cdevents.incident.detected.0.3.0" {
            BTreeSet::from(["description", "environment", "service", "artifactId"])
        } else {
            BTreeSet::from(["environment", "artifactId"])
        };
        assert_eq!(keys, expected);
        assert!(!content["environment"]["id"].as_str().unwrap().is_empty());
    }
    let deployed = &events[1]["data"]["subject"];
    assert_eq!(deployed["id"], "checkout");
    assert_eq!(deployed["content"]["environment"]["id"], "production");
    assert_eq!(
        deployed["content"]["artifactId"],
        "pkg:oci/checkout@sha256%3Aabc"
    );
    let rolled_back = &events[4]["data"]["subject"];
    assert_eq!(rolled_back["id"], "checkout-v43");
    assert_eq!(
        rolled_back["content"]["artifactId"],
        "pkg:generic/checkout-v43@v2"
    );
}

/// A memory store that keeps no documents, as a store that implements only the rollout calls
/// does: the document calls answer `Unsupported` (the trait's defaults).
#[derive(Debug, Default)]
struct NoDocuments(cutover_core::MemoryStateStore);

#[async_trait::async_trait]
impl StateStore for NoDocuments {
    fn name(&self) -> &'static str {
        "no-documents"
    }
    async fn load(
        &self,
        id: &cutover_core::RolloutId,
    ) -> Result<Option<cutover_core::Stored>, cutover_core::StoreError> {
        self.0.load(id).await
    }
    async fn save(
        &self,
        id: &cutover_core::RolloutId,
        state: &cutover_core::RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, cutover_core::StoreError> {
        self.0.save(id, state, expected).await
    }
    async fn append(
        &self,
        id: &cutover_core::RolloutId,
        records: &[cutover_core::DecisionRecord],
    ) -> Result<(), cutover_core::StoreError> {
        self.0.append(id, records).await
    }
    async fn records(
        &self,
        id: &cutover_core::RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<cutover_core::DecisionRecord>, cutover_core::StoreError> {
        self.0.records(id, after, limit).await
    }
    async fn send(
        &self,
        id: &cutover_core::RolloutId,
        request: &cutover_core::CommandRequest,
        now: cutover_core::Timestamp,
    ) -> Result<cutover_core::QueuedCommand, cutover_core::StoreError> {
        self.0.send(id, request, now).await
    }
    async fn commands(
        &self,
        id: &cutover_core::RolloutId,
        after: u64,
    ) -> Result<Vec<cutover_core::QueuedCommand>, cutover_core::StoreError> {
        self.0.commands(id, after).await
    }
    async fn list(
        &self,
        filter: &cutover_core::ListFilter,
    ) -> Result<Vec<cutover_core::Summary>, cutover_core::StoreError> {
        self.0.list(filter).await
    }
    async fn acquire(
        &self,
        id: &cutover_core::RolloutId,
        claim: &cutover_core::Claim,
    ) -> Result<cutover_core::Acquired, cutover_core::StoreError> {
        self.0.acquire(id, claim).await
    }
    async fn renew(
        &self,
        id: &cutover_core::RolloutId,
        lease: &cutover_core::Lease,
        now: cutover_core::Timestamp,
    ) -> Result<cutover_core::Lease, cutover_core::StoreError> {
        self.0.renew(id, lease, now).await
    }
    async fn lease(
        &self,
        id: &cutover_core::RolloutId,
    ) -> Result<Option<cutover_core::Lease>, cutover_core::StoreError> {
        self.0.lease(id).await
    }
    async fn release(
        &self,
        id: &cutover_core::RolloutId,
        lease: &cutover_core::Lease,
    ) -> Result<(), cutover_core::StoreError> {
        self.0.release(id, lease).await
    }
    fn watch(&self, id: &cutover_core::RolloutId) -> cutover_core::Watch {
        self.0.watch(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_documents_still_gets_each_notice_once_per_process() {
    let store: Arc<dyn StateStore> = Arc::new(NoDocuments::default());
    run_rollout(store.clone(), "checkout-v42", PROMOTING).await;
    let receiver = Receiver::start().await;
    let notifier = Notifier::new(store.clone())
        .sink("hook", webhook(&receiver), Filter::default())
        .unwrap();
    let first = notifier.deliver_pending().await.unwrap().delivered["hook"];
    assert_eq!(first, 7);
    assert_eq!(
        notifier.deliver_pending().await.unwrap().delivered["hook"],
        0
    );
    run_rollout(store, "checkout-v43", PROMOTING).await;
    assert_eq!(
        notifier.deliver_pending().await.unwrap().delivered["hook"],
        7
    );
    assert_eq!(receiver.received().len(), 14);
}

/// The vendored CloudEvents and CDEvents JSON Schemas, compiled offline (tests/schemas/).
struct Schemas {
    cloudevents: jsonschema::Validator,
    cdevents: Vec<(&'static str, jsonschema::Validator)>,
}

impl Schemas {
    fn read(path: &str) -> serde_json::Value {
        let path = format!("{}/tests/schemas/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn load() -> Self {
        let compile = |schema: &serde_json::Value, registry: &jsonschema::Registry<'_>| {
            jsonschema::options()
                .offline()
                .should_validate_formats(true)
                .with_registry(registry)
                .build(schema)
                .unwrap()
        };
        let mut links = jsonschema::Registry::new();
        for name in [
            "embeddedlinksarray",
            "embeddedlinkend",
            "embeddedlinkpath",
            "embeddedlinkrelation",
        ] {
            links = links
                .add(
                    format!("https://cdevents.dev/0.5.1/schema/links/{name}"),
                    Self::read(&format!("cdevents-0.5.1/links/{name}.json")),
                )
                .unwrap();
        }
        let registry = links.prepare().unwrap();
        let cdevents = [
            ("dev.cdevents.service.deployed.0.3.0", "servicedeployed"),
            ("dev.cdevents.service.rolledback.0.3.0", "servicerolledback"),
            ("dev.cdevents.incident.detected.0.3.0", "incidentdetected"),
        ]
        .into_iter()
        .map(|(kind, file)| {
            let schema = Self::read(&format!("cdevents-0.5.1/{file}.json"));
            (kind, compile(&schema, &registry))
        })
        .collect();
        let cloudevents = compile(&Self::read("cloudevents-1.0.2/cloudevents.json"), &registry);
        Schemas {
            cloudevents,
            cdevents,
        }
    }

    /// Every violation of the CloudEvents schema by the event, and of the CDEvents schema by
    /// its data when its type is one of CDEvents'.
    fn violations(&self, event: &serde_json::Value) -> Vec<String> {
        let errors = |validator: &jsonschema::Validator, value: &serde_json::Value| {
            validator
                .iter_errors(value)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect::<Vec<_>>()
        };
        let mut found = errors(&self.cloudevents, event);
        if let Some((_, validator)) = self.cdevents.iter().find(|(t, _)| event["type"] == *t) {
            found.extend(errors(validator, &event["data"]));
        }
        found
    }

    fn check(&self, event: &serde_json::Value) {
        let found = self.violations(event);
        assert!(found.is_empty(), "{found:?}\n{event:#}");
    }
}

/// The schemas catch what they should: a CloudEvent without its `source`, and a CDEvent with
/// a key the schema does not know or without its artifact.
#[test]
fn the_vendored_schemas_refuse_broken_events() {
    let schemas = Schemas::load();
    let valid = serde_json::json!({
        "specversion": "1.0", "id": "r/1", "source": "/cutover/test",
        "type": "dev.cdevents.service.deployed.0.3.0", "time": "2026-12-04T06:00:00.000Z",
        "datacontenttype": "application/json",
        "data": {
            "context": { "specversion": "0.5.1", "id": "r/1", "source": "/cutover/test",
                         "type": "dev.cdevents.service.deployed.0.3.0",
                         "timestamp": "2026-12-04T06:00:00.000Z" },
            "subject": { "id": "checkout", "source": "/cutover/test",
                         "content": { "environment": { "id": "prod" }, "artifactId": "pkg:generic/checkout@v2" } }
        }
    });
    schemas.check(&valid);
    let broken = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut event = valid.clone();
        edit(&mut event);
        !schemas.violations(&event).is_empty()
    };
    assert!(broken(&|e| {
        e.as_object_mut().unwrap().remove("source");
    }));
    assert!(broken(&|e| e["data"]["context"]["extra"] = "x".into()));
    assert!(broken(&|e| {
        e["data"]["subject"]["content"]
            .as_object_mut()
            .unwrap()
            .remove("artifactId");
    }));
    assert!(broken(
        &|e| e["data"]["context"]["timestamp"] = "yesterday".into()
    ));
}
