//! The provider through the OpenFeature client, as an application calls it: values, variants,
//! reasons and metadata per the spec, and error codes on failures.

use cutover_core::{TrafficRouter, TrafficSplit, Weight};
use cutover_openfeature::{
    CutoverProvider, FlagDefinition, FlagRouter, Flags, METADATA_BUCKET, METADATA_WEIGHT,
};
use open_feature::{
    EvaluationContext, EvaluationErrorCode, EvaluationReason, FlagMetadataValue, OpenFeature,
};

fn user(key: &str) -> EvaluationContext {
    EvaluationContext::default().with_targeting_key(key)
}

#[tokio::test]
async fn the_client_sees_values_variants_reasons_and_errors() {
    let flags = Flags::new();
    flags
        .define(FlagDefinition::boolean("new-path", "old", "new").unwrap())
        .unwrap();
    flags
        .define(FlagDefinition::strings("button", [("blue", "#00f"), ("green", "#0f0")]).unwrap())
        .unwrap();
    let client = {
        let mut api = OpenFeature::singleton_mut().await;
        api.set_named_provider("cutover-test", CutoverProvider::new(flags.clone()))
            .await;
        api.create_named_client("cutover-test")
    };

    // All users on `old`: STATIC, no bucket.
    let d = client
        .get_bool_details("new-path", Some(&user("u1")), None)
        .await
        .unwrap();
    assert!(!d.value);
    assert_eq!(d.variant.as_deref(), Some("old"));
    assert_eq!(d.reason, Some(EvaluationReason::Static));
    assert_eq!(
        d.flag_metadata.values.get(METADATA_WEIGHT),
        Some(&FlagMetadataValue::Int(10_000))
    );
    assert!(!d.flag_metadata.values.contains_key(METADATA_BUCKET));

    // 30 % through the router: SPLIT, and the bucket decides.
    let router = FlagRouter::new(flags.clone(), "new-path");
    let split = TrafficSplit::canary(
        &"old".parse().unwrap(),
        &"new".parse().unwrap(),
        Weight::from_percent(30).unwrap(),
    )
    .unwrap();
    router.set_split(&split).await.unwrap();
    let (mut on, mut off) = (0, 0);
    for i in 0..200 {
        let d = client
            .get_bool_details("new-path", Some(&user(&format!("user-{i}"))), None)
            .await
            .unwrap();
        assert_eq!(d.reason, Some(EvaluationReason::Split));
        let Some(FlagMetadataValue::Int(bucket)) = d.flag_metadata.values.get(METADATA_BUCKET)
        else {
            panic!(
                "a split evaluation carries its bucket: {:?}",
                d.flag_metadata
            )
        };
        assert_eq!(d.value, *bucket < 3_000, "bucket {bucket}");
        assert_eq!(
            d.variant.as_deref(),
            Some(if d.value { "new" } else { "old" })
        );
        let weight = if d.value { 3_000 } else { 7_000 };
        assert_eq!(
            d.flag_metadata.values.get(METADATA_WEIGHT),
            Some(&FlagMetadataValue::Int(weight))
        );
        if d.value { on += 1 } else { off += 1 }
    }
    assert!(on > 30 && off > 100, "{on} on, {off} off");

    // A string flag.
    let d = client
        .get_string_details("button", Some(&user("u1")), None)
        .await
        .unwrap();
    assert_eq!(
        (d.value.as_str(), d.variant.as_deref()),
        ("#00f", Some("blue"))
    );

    // Errors carry the spec's codes.
    assert_eq!(
        code(
            client
                .get_bool_details("nope", Some(&user("u1")), None)
                .await
        ),
        EvaluationErrorCode::FlagNotFound
    );
    assert_eq!(
        code(client.get_bool_details("new-path", None, None).await),
        EvaluationErrorCode::TargetingKeyMissing
    );
    assert_eq!(
        code(
            client
                .get_string_details("new-path", Some(&user("u1")), None)
                .await
        ),
        EvaluationErrorCode::TypeMismatch
    );
    assert_eq!(
        code(
            client
                .get_int_details("button", Some(&user("u1")), None)
                .await
        ),
        EvaluationErrorCode::TypeMismatch
    );
    assert_eq!(
        code(
            client
                .get_float_details("nope", Some(&user("u1")), None)
                .await
        ),
        EvaluationErrorCode::FlagNotFound
    );
}

fn code<T: std::fmt::Debug>(r: Result<T, open_feature::EvaluationError>) -> EvaluationErrorCode {
    r.unwrap_err().code
}
