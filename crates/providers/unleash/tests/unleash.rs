//! `UnleashRouter` against a real unleash-server 6.x with its PostgreSQL (see `common`).

mod common;

use common::UnleashServer;
use cutover_core::{ErrorKind, RevisionId, TrafficRouter, TrafficSplit, Weight};
use cutover_test::router_contract;
use cutover_unleash::{AdminToken, UnleashRouter};
use reqwest::Method;
use serde_json::{Value, json};

fn rev(name: &str) -> RevisionId {
    name.parse().unwrap()
}

fn canary(percent: u8) -> TrafficSplit {
    TrafficSplit::canary(
        &rev("old"),
        &rev("new"),
        Weight::from_percent(percent).unwrap(),
    )
    .unwrap()
}

fn rollout_router(server: &UnleashServer, flag: &str) -> UnleashRouter {
    UnleashRouter::builder(&server.url, AdminToken::new(&server.token), flag)
        .stickiness("userId")
        .rollout(&rev("old"), &rev("new"))
        .build()
        .unwrap()
}

/// The `cutover` strategy of the flag in production.
fn strategy(env: &Value) -> &Value {
    let strategies = env["strategies"].as_array().expect("strategies");
    let ours: Vec<&Value> = strategies
        .iter()
        .filter(|s| s["title"] == "cutover")
        .collect();
    assert_eq!(ours.len(), 1, "{env}");
    ours[0]
}

#[tokio::test]
#[ignore = "needs unleash-server: scripts/test-deps"]
async fn a_flag_rolls_out_by_percentage_and_back_to_off() {
    let server = UnleashServer::shared();
    server.create_flag("rollout.round-trip").await;
    let router = rollout_router(server, "rollout.round-trip");

    // A new flag is off with no strategy: everyone is on `old`.
    assert_eq!(router.current_split().await.unwrap(), Some(canary(0)));
    for percent in [1, 5, 25, 100] {
        router.set_split(&canary(percent)).await.unwrap();
        assert_eq!(router.current_split().await.unwrap(), Some(canary(percent)));
        let env = server.production("rollout.round-trip").await;
        assert_eq!(env["enabled"], true, "{env}");
        let s = strategy(&env);
        assert_eq!(s["name"], "flexibleRollout");
        assert_eq!(s["parameters"]["rollout"], percent.to_string());
        assert_eq!(s["parameters"]["stickiness"], "userId");
        assert_eq!(s["parameters"]["groupId"], "rollout.round-trip");
    }
    // Rollback: the flag is turned off and the percentage is 0.
    router.set_split(&canary(0)).await.unwrap();
    let env = server.production("rollout.round-trip").await;
    assert_eq!(env["enabled"], false, "{env}");
    assert_eq!(strategy(&env)["parameters"]["rollout"], "0");
    assert_eq!(router.current_split().await.unwrap(), Some(canary(0)));
    // And out again from there.
    router.set_split(&canary(5)).await.unwrap();
    assert_eq!(
        server.production("rollout.round-trip").await["enabled"],
        true
    );
}

#[tokio::test]
#[ignore = "needs unleash-server: scripts/test-deps"]
async fn the_rollout_router_meets_the_contract() {
    let server = UnleashServer::shared();
    server.create_flag("rollout.contract").await;
    let router = rollout_router(server, "rollout.contract");
    let report = router_contract(&router, &rev("old"), &rev("new"))
        .await
        .unwrap();
    assert_eq!(report.unsupported.len(), 4, "{report}");
    assert_eq!(
        server.production("rollout.contract").await["enabled"],
        false
    );
}

#[tokio::test]
#[ignore = "needs unleash-server: scripts/test-deps"]
async fn an_edit_by_someone_else_is_a_conflict_not_overwritten() {
    let server = UnleashServer::shared();
    let flag = "rollout.conflict";
    server.create_flag(flag).await;
    let router = rollout_router(server, flag);
    router.set_split(&canary(5)).await.unwrap();

    // Someone raises the percentage in the UI.
    let id = strategy(&server.production(flag).await)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = server
        .admin(
            Method::PATCH,
            &format!("features/{flag}/environments/production/strategies/{id}"),
            Some(json!([{"op": "replace", "path": "/parameters/rollout", "value": "50"}])),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let err = router.set_split(&canary(25)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("conflict"), "{err}");
    assert!(err.message().contains("rollout 5 "), "{err}");
    assert!(err.message().contains("rollout 50 "), "{err}");
    // Not overwritten, even by a rollback.
    assert!(router.set_split(&canary(0)).await.is_err());
    let env = server.production(flag).await;
    assert_eq!(strategy(&env)["parameters"]["rollout"], "50");
    assert_eq!(env["enabled"], true);
    // The engine reads the truth.
    assert_eq!(router.current_split().await.unwrap(), Some(canary(50)));

    // Once a person has looked, the router adopts the flag as it is.
    router.adopt().await;
    router.set_split(&canary(25)).await.unwrap();
    assert_eq!(
        strategy(&server.production(flag).await)["parameters"]["rollout"],
        "25"
    );

    // Turning the flag off in the UI is a change too.
    let (status, _) = server
        .admin(
            Method::POST,
            &format!("features/{flag}/environments/production/off"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let err = router.set_split(&canary(100)).await.unwrap_err();
    assert!(err.message().contains("it is now off"), "{err}");
    assert_eq!(server.production(flag).await["enabled"], false);
}

#[tokio::test]
#[ignore = "needs unleash-server: scripts/test-deps"]
async fn variants_split_users_for_an_ab_test() {
    let server = UnleashServer::shared();
    let flag = "ab.button";
    server.create_flag(flag).await;
    let (blue, green) = (rev("blue"), rev("green"));
    let router = UnleashRouter::builder(&server.url, AdminToken::new(&server.token), flag)
        .group_id("checkout-experiments")
        .variants([&blue, &green])
        .build()
        .unwrap();
    assert_eq!(router.current_split().await.unwrap(), None);
    for tenths in [0u16, 1, 333, 500, 1000] {
        let split = TrafficSplit::new([
            (
                blue.clone(),
                Weight::from_basis_points(10_000 - tenths * 10).unwrap(),
            ),
            (
                green.clone(),
                Weight::from_basis_points(tenths * 10).unwrap(),
            ),
        ])
        .unwrap();
        router.set_split(&split).await.unwrap();
        let actual = router.current_split().await.unwrap().unwrap();
        assert!(actual.same_traffic(&split), "{actual} != {split}");
        let env = server.production(flag).await;
        assert_eq!(env["enabled"], true);
        let s = strategy(&env);
        assert_eq!(s["parameters"]["rollout"], "100");
        assert_eq!(s["parameters"]["groupId"], "checkout-experiments");
        let weight = |name: &str| {
            s["variants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == name)
                .map(|v| v["weight"].as_u64().unwrap())
        };
        assert_eq!(weight("green"), Some(u64::from(tenths)), "{s}");
        assert_eq!(weight("blue"), Some(u64::from(1000 - tenths)), "{s}");
    }
    // 0.05 % is finer than Unleash's per-mille weights.
    let fine = TrafficSplit::new([
        (blue.clone(), Weight::from_basis_points(9_995).unwrap()),
        (green.clone(), Weight::from_basis_points(5).unwrap()),
    ])
    .unwrap();
    assert_eq!(
        router.set_split(&fine).await.unwrap_err().kind(),
        ErrorKind::Permanent
    );
}

#[tokio::test]
#[ignore = "needs unleash-server: scripts/test-deps"]
async fn a_wrong_token_or_a_missing_flag_is_permanent_and_the_token_never_shows() {
    let server = UnleashServer::shared();
    server.create_flag("rollout.denied").await;
    let wrong = UnleashRouter::builder(
        &server.url,
        AdminToken::new("*:*.not-the-secret"),
        "rollout.denied",
    )
    .rollout(&rev("old"), &rev("new"))
    .build()
    .unwrap();
    let err = wrong.set_split(&canary(5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("denied access (HTTP 401"), "{err}");
    for shown in [err.chain(), format!("{err:?}"), format!("{wrong:?}")] {
        assert!(!shown.contains("not-the-secret"), "{shown}");
    }
    let router = rollout_router(server, "rollout.denied");
    assert!(!format!("{router:?}").contains(&server.token[5..]));

    let missing = rollout_router(server, "no.such.flag");
    let err = missing.set_split(&canary(5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("no.such.flag"), "{err}");

    // Nothing listens: transient, worth retrying.
    let gone = UnleashRouter::builder("http://127.0.0.1:9", AdminToken::new("x"), "f")
        .rollout(&rev("old"), &rev("new"))
        .build()
        .unwrap();
    assert_eq!(
        gone.current_split().await.unwrap_err().kind(),
        ErrorKind::Transient
    );
}

#[tokio::test]
#[ignore = "needs unleash-server: scripts/test-deps"]
async fn a_strategy_cutover_does_not_own_is_reported() {
    let server = UnleashServer::shared();
    let flag = "rollout.foreign";
    server.create_flag(flag).await;
    let (status, body) = server
        .admin(
            Method::POST,
            &format!("features/{flag}/environments/production/strategies"),
            Some(json!({"name": "default", "title": "everyone"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let router = rollout_router(server, flag);
    let err = router.set_split(&canary(5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("default (everyone)"), "{err}");
    let env = server.production(flag).await;
    assert_eq!(env["strategies"].as_array().unwrap().len(), 1, "{env}");
}
