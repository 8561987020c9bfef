//! One flag evaluation: `Flags::evaluate` (the hot path) and the whole OpenFeature client call,
//! next to `unleash-api-client`'s `is_enabled` on the same flag (a gradual rollout at 25 %,
//! sticky on the user id) and the same user, in the same run.
//!
//! `cargo bench -p cutover-openfeature --bench evaluate`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use cutover_core::{TrafficSplit, Weight};
use cutover_openfeature::open_feature::{EvaluationContext, OpenFeature};
use cutover_openfeature::{CutoverProvider, FlagDefinition, Flags};

fn flags() -> Flags {
    let flags = Flags::new();
    flags
        .define(FlagDefinition::boolean("checkout.new-path", "old", "new").unwrap())
        .unwrap();
    let split = TrafficSplit::canary(
        &"old".parse().unwrap(),
        &"new".parse().unwrap(),
        Weight::from_percent(25).unwrap(),
    )
    .unwrap();
    flags.set_split("checkout.new-path", &split).unwrap();
    flags
}

fn evaluate(c: &mut Criterion) {
    let flags = flags();
    c.bench_function("Flags::evaluate (split flag, 25 %)", |b| {
        b.iter(|| {
            flags
                .evaluate(black_box("checkout.new-path"), Some(black_box("user-4711")))
                .unwrap()
                .as_bool()
                .unwrap()
        });
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let mut api = OpenFeature::singleton_mut().await;
        api.set_provider(CutoverProvider::new(flags.clone())).await;
        api.create_client()
    });
    let user = EvaluationContext::default().with_targeting_key("user-4711");
    c.bench_function("OpenFeature client get_bool_value (CutoverProvider)", |b| {
        b.iter(|| {
            runtime
                .block_on(client.get_bool_value(black_box("checkout.new-path"), Some(&user), None))
                .unwrap()
        });
    });
}

/// Unleash's Rust SDK, fed the flag from memory (`memoize`): no server and no network.
mod unleash {
    use std::sync::Arc;

    use unleash_api_client::client::FeatureKey;
    use unleash_api_client::http::{Request, Response, Transport};
    use unleash_api_client::{Client, ClientBuilder};

    /// The one flag, as the SDK's typed feature key.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Flag {
        NewPath,
    }

    impl FeatureKey for Flag {
        fn name(self) -> &'static str {
            match self {
                Flag::NewPath => "checkout.new-path",
            }
        }
    }

    /// A transport that is never called: the features are memoized, nothing is polled.
    struct NoNetwork;

    #[async_trait::async_trait]
    impl Transport for NoNetwork {
        async fn execute(&self, _: Request) -> Result<Response, anyhow::Error> {
            Err(anyhow::anyhow!("no network in a benchmark"))
        }
    }

    /// A client holding `checkout.new-path` at 25 % by `flexibleRollout`, sticky on `userId`.
    pub(crate) fn client() -> Client<Flag> {
        let client = ClientBuilder::default()
            .disable_metric_submission()
            .into_client_with_transport::<Flag>(
                "http://127.0.0.1:1/api/",
                "bench",
                "bench-1",
                None,
                Arc::new(NoNetwork),
            )
            .unwrap();
        let features = serde_json::json!({
            "version": 2,
            "features": [{
                "name": "checkout.new-path",
                "enabled": true,
                "strategies": [{
                    "name": "flexibleRollout",
                    "parameters": {
                        "rollout": "25",
                        "stickiness": "userId",
                        "groupId": "checkout.new-path"
                    }
                }]
            }]
        });
        client
            .memoize(serde_json::from_value(features).unwrap())
            .unwrap();
        client
    }
}

fn unleash_reference(c: &mut Criterion) {
    let client = unleash::client();
    let user = unleash_api_client::Context {
        user_id: Some("user-4711".into()),
        ..Default::default()
    };
    // The flag answers, and for about a quarter of users: the same question as above.
    let on = (0..1000)
        .filter(|i| {
            let ctx = unleash_api_client::Context {
                user_id: Some(format!("user-{i}")),
                ..Default::default()
            };
            client.is_enabled(unleash::Flag::NewPath, Some(&ctx), false)
        })
        .count();
    assert!(
        (150..=350).contains(&on),
        "{on} of 1000 users have the flag"
    );
    c.bench_function(
        "unleash-api-client is_enabled (flexibleRollout, 25 %)",
        |b| {
            b.iter(|| {
                client.is_enabled(
                    black_box(unleash::Flag::NewPath),
                    Some(black_box(&user)),
                    false,
                )
            });
        },
    );
}

criterion_group!(benches, evaluate, unleash_reference);
criterion_main!(benches);
