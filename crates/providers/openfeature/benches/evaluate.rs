//! One flag evaluation: `Flags::evaluate` (the hot path) and the whole OpenFeature client call.
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

criterion_group!(benches, evaluate);
criterion_main!(benches);
