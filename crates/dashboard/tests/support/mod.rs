//! What the dashboard's tests share: rollouts that wait in a store, a served dashboard, and a
//! signed-in HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::checklist::{CheckResult, ChecklistItem, Exemption};
use cutover_core::planner::Setup;
use cutover_core::{
    Checklist, Clock, GateStage, MemoryStateStore, Outcome, Plan, Revisions, Rollout, RolloutState,
    StateStore, TokioClock,
};
use cutover_dashboard::{Dashboard, Running, Secret};
use cutover_test::{ColdCache, FakeRouter, FixedCheck};

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A canary that sets 20 % and then waits in a one-hour pause step, and another at 50 %.
pub const WAITING_PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 20
      - pause: { duration: 1h }
      - set_weight: 50
      - pause: { duration: 1h }
";

/// Starts a rollout on `store` that waits in its pause step; returns once the store shows it
/// there. The rollout runs until the runtime ends.
pub async fn waiting_rollout(
    store: &Arc<MemoryStateStore>,
    id: &str,
) -> tokio::task::JoinHandle<()> {
    let plan = Plan::from_yaml(WAITING_PLAN).unwrap();
    let rollout = Rollout::builder(id, plan)
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .state_store(store.clone())
        .build()
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = rollout.run().await;
    });
    let rid = id.parse().unwrap();
    wait_for(Duration::from_secs(10), || async {
        store
            .load(&rid)
            .await
            .unwrap()
            .is_some_and(|s| s.state.step == 1)
    })
    .await;
    task
}

/// Stores `n` rollouts that no engine runs (for listing), named `{prefix}-00001`...
pub async fn stored_rollouts(store: &MemoryStateStore, prefix: &str, n: usize) {
    let plan = Plan::from_yaml(WAITING_PLAN).unwrap();
    let setup = Arc::new(Setup::new(plan, Revisions::new("v1", "v2").unwrap()));
    let now = TokioClock::new().now();
    for i in 1..=n {
        let id = format!("{prefix}-{i:05}").parse().unwrap();
        let state = RolloutState::new(id, setup.clone(), now);
        store.save(&state.id.clone(), &state, None).await.unwrap();
    }
}

/// Polls `check` until it holds, failing after `deadline`.
pub async fn wait_for<F, Fut>(deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves a dashboard over `store` on a free loopback port.
pub async fn serve(store: Arc<MemoryStateStore>) -> Running {
    Dashboard::builder(store)
        .token(Secret::new(TOKEN))
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap()
}

/// An HTTP client that follows no redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in browser: its session cookie and CSRF token.
pub struct Browser {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub http: reqwest::Client,
}

impl Browser {
    /// Signs in as `name` and reads the CSRF token from a page.
    pub async fn sign_in(running: &Running, name: &str) -> Browser {
        let base = running.url().trim_end_matches('/').to_owned();
        let http = client();
        let response = http
            .post(format!("{base}/login"))
            .header("origin", &base)
            .form(&[("name", name), ("secret", TOKEN), ("next", "/rollouts")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "sign-in redirects");
        let set = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        let page = http
            .get(format!("{base}/rollouts"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let doc = scraper::Html::parse_document(&page);
        let selector = scraper::Selector::parse("input[name=csrf]").unwrap();
        let csrf = doc
            .select(&selector)
            .next()
            .and_then(|e| e.value().attr("value"))
            .expect("the sign-out form carries the CSRF token")
            .to_owned();
        Browser {
            base,
            cookie,
            csrf,
            http,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// Posts a command form as the live page does.
    pub async fn command(&self, id: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}/rollouts/{id}/commands", self.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.base)
            .header("accept", "application/json")
            .form(fields)
            .send()
            .await
            .unwrap()
    }
}

/// Runs rollout `id` on `store` behind a pre-flight checklist `preflight` that keeps its
/// audit document in the store and refuses it: `health` passes, `cache` is fixed, `secrets`
/// fails but is exempted by alice, `tls` fails (with `<b>` in its message, to see it escaped).
pub async fn refused_rollout(store: &Arc<MemoryStateStore>, id: &str) {
    let cache = ColdCache::default();
    let expires = TokioClock::new().now() + Duration::from_hours(24);
    let checklist = Checklist::new("preflight")
        .allow_fixes(true)
        .audit_to(store.clone())
        .item(ChecklistItem::new(
            "health",
            "infrastructure",
            FixedCheck::new(CheckResult::pass("GET /healthz answered 200")),
        ))
        .item(ChecklistItem::new("cache", "configuration", cache.clone()).fix(cache))
        .item(ChecklistItem::new(
            "secrets",
            "security",
            FixedCheck::new(CheckResult::fail("not set: API_TOKEN").hint("set API_TOKEN")),
        ))
        .item(ChecklistItem::new(
            "tls",
            "security",
            FixedCheck::new(
                CheckResult::fail("certificate <b>expired</b> 3 days ago").hint("renew it"),
            ),
        ))
        .exemption(Exemption::new(
            "secrets",
            "secrets move to the vault in CHG-2041",
            "alice",
            expires,
        ));
    let outcome = gated_rollout(store, id, checklist).await;
    assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome:?}");
}

/// Runs rollout `id` on `store` to its end behind `checklist` as its pre-flight gate.
pub async fn gated_rollout(
    store: &Arc<MemoryStateStore>,
    id: &str,
    checklist: Checklist,
) -> Outcome {
    let plan = Plan::from_yaml("strategy: { canary: { steps: [ { set_weight: 100 } ] } }").unwrap();
    Rollout::builder(id, plan)
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .state_store(store.clone())
        .gate(GateStage::PreFlight, checklist)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}
