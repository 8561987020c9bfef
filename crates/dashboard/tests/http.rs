//! The dashboard's routes over real HTTP on loopback, with rollouts running on a memory store:
//! sign-in, every route, commands through the store, CSRF, hostile input, listing 10,000,
//! the checklist pages of a refused rollout.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cutover_core::checklist::{CheckResult, ChecklistItem};
use cutover_core::state::PauseReason;
use cutover_core::{
    Checklist, Command, Entry, Gate, GateContext, GateStage, GateVerdict, MemoryStateStore,
    Outcome, Revisions, RolloutId, StateStore,
};
use scraper::{Html, Selector};
use support::{
    Browser, TOKEN, client, gated_rollout, refused_rollout, serve, stored_rollouts, wait_for,
    waiting_rollout,
};

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_controls_need_credentials() {
    let store = Arc::new(MemoryStateStore::new());
    let _rollout = waiting_rollout(&store, "checkout").await;
    let running = serve(store.clone()).await;
    let base = running.url().trim_end_matches('/').to_owned();
    let http = client();

    let page = http
        .get(format!("{base}/rollouts/checkout"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/login?next=/rollouts/checkout");
    for path in ["/rollouts", "/rollouts/checkout/report"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
    }
    let events = http
        .get(format!("{base}/rollouts/checkout/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 401);
    let api = http
        .get(format!("{base}/api/rollouts"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    assert_eq!(api.headers()["www-authenticate"], "Bearer");
    let wrong = http
        .get(format!("{base}/api/rollouts"))
        .bearer_auth("test-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(format!("{base}/api/rollouts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let body: serde_json::Value = right.json().await.unwrap();
    assert_eq!(body["rollouts"][0]["id"], "checkout");

    // Controls: no credentials, a wrong token, a form without a session.
    let anonymous = http
        .post(format!("{base}/rollouts/checkout/commands"))
        .form(&[("command", "abort"), ("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let api = |token: &'static str| {
        http.post(format!("{base}/api/rollouts/checkout/commands"))
            .bearer_auth(token)
            .json(&serde_json::json!({"command": "abort", "by": "mallory", "reason": "x"}))
            .send()
    };
    assert_eq!(
        api("not-the-token-at-all-0000").await.unwrap().status(),
        401
    );
    let id: RolloutId = "checkout".parse().unwrap();
    assert!(
        store.commands(&id, 0).await.unwrap().is_empty(),
        "nothing was queued"
    );

    // Signing in: a wrong token, a cross-site form, a bad name, then the right token.
    let sign_in = |origin: &str, name: &str, secret: &str| {
        http.post(format!("{base}/login"))
            .header("origin", origin)
            .form(&[
                ("name", name),
                ("secret", secret),
                ("next", "//evil.example/"),
            ])
            .send()
    };
    let r = sign_in(&base, "alice", "wrong").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(!r.text().await.unwrap().contains(TOKEN));
    let r = sign_in("http://evil.example", "alice", TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = sign_in(&base, "al\u{7}ice", TOKEN).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = sign_in(&base, "alice", TOKEN).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/rollouts",
        "never redirected off the site"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers() {
    let store = Arc::new(MemoryStateStore::new());
    let _rollout = waiting_rollout(&store, "checkout").await;
    let running = serve(store.clone()).await;
    let browser = Browser::sign_in(&running, "alice").await;

    let home = browser.get("/").await;
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()["location"], "/rollouts");

    let list = browser.get("/rollouts").await;
    assert_eq!(list.status(), 200);
    let csp = list.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(list.headers()["x-frame-options"], "DENY");
    assert_eq!(list.headers()["x-content-type-options"], "nosniff");
    let doc = Html::parse_document(&list.text().await.unwrap());
    let links: Vec<_> = select(&doc, "a.rollout-link")
        .iter()
        .map(|a| a.text().collect::<String>())
        .collect();
    assert_eq!(links, ["checkout"]);
    assert_eq!(select(&doc, "#who")[0].text().collect::<String>(), "alice");

    let page = browser.get("/rollouts/checkout").await;
    assert_eq!(page.status(), 200);
    let doc = Html::parse_document(&page.text().await.unwrap());
    assert_eq!(
        select(&doc, "#phase")[0].value().attr("data-phase"),
        Some("progressing")
    );
    assert_eq!(select(&doc, "figure[data-chart=traffic] svg").len(), 1);
    for button in ["pause", "resume", "promote", "promote-full", "abort"] {
        assert_eq!(
            select(&doc, &format!("button#{button}")).len(),
            1,
            "{button}"
        );
    }
    assert_eq!(
        select(&doc, "script").len(),
        1,
        "one script, from the dashboard itself"
    );
    assert_eq!(
        select(&doc, "script")[0].value().attr("src"),
        Some("/assets/live.js")
    );

    let report = browser.get("/rollouts/checkout/report").await;
    assert_eq!(report.status(), 200);
    let csp = report.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("style-src 'sha256-") && !csp.contains("script-src"),
        "{csp}"
    );
    let html = report.text().await.unwrap();
    assert!(html.contains("<style>") && !html.contains("<script"));

    let events = browser.get("/rollouts/checkout/events").await;
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = events;
    let first = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("event: update\n"), "{first}");
    assert!(first.contains("data-phase=\"progressing\""), "{first}");
    // A decision reaches the open page within a second on the memory store: pause through the
    // store, then read the stream until the paused page arrives.
    let sent = tokio::time::Instant::now();
    store
        .send(
            &RolloutId::new("checkout").unwrap(),
            &cutover_core::CommandRequest::new(Command::Pause, "bob").reason("look"),
            cutover_core::Timestamp::from_unix_millis(0),
        )
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains(", paused</dd>") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .expect("an update within 5 s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let delay = sent.elapsed();
    assert!(delay < Duration::from_secs(1), "the update took {delay:?}");
    drop(events);

    let api = browser.get("/api/rollouts?phase=active").await;
    assert_eq!(api.status(), 200);
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["rollouts"][0]["phase"], "progressing");
    let api = browser.get("/api/rollouts/checkout?after=1&limit=2").await;
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["summary"]["id"], "checkout");
    assert_eq!(body["records"][0]["seq"], 2);
    assert_eq!(body["records"].as_array().unwrap().len(), 2);

    assert_eq!(browser.get("/assets/style.css").await.status(), 200);
    let js = browser.get("/assets/live.js").await;
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(browser.get("/nowhere").await.status(), 404);
    assert_eq!(browser.get("/rollouts/unknown").await.status(), 404);
    assert_eq!(browser.get("/api/rollouts/unknown").await.status(), 404);
    assert_eq!(browser.get("/rollouts/unknown/events").await.status(), 404);
    assert_eq!(browser.get("/rollouts?phase=sideways").await.status(), 400);

    // Signing out ends the session, and needs the CSRF token too.
    let out = browser
        .http
        .post(format!("{}/logout", browser.base))
        .header("cookie", &browser.cookie)
        .header("origin", &browser.base)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 403);
    let out = browser
        .http
        .post(format!("{}/logout", browser.base))
        .header("cookie", &browser.cookie)
        .header("origin", &browser.base)
        .form(&[("csrf", browser.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(browser.get("/rollouts").await.status(), 303, "signed out");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_through_the_store_with_who_and_why() {
    let store = Arc::new(MemoryStateStore::new());
    let _rollout = waiting_rollout(&store, "checkout").await;
    let running = serve(store.clone()).await;
    let browser = Browser::sign_in(&running, "alice").await;
    let id: RolloutId = "checkout".parse().unwrap();

    let r = browser
        .command(
            "checkout",
            &[
                ("csrf", &browser.csrf),
                ("command", "pause"),
                ("reason", "error budget alert"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(body["seq"], 1);
    wait_for(Duration::from_secs(5), || async {
        let state = store.load(&id).await.unwrap().unwrap().state;
        matches!(state.pause.map(|p| p.reason), Some(PauseReason::Manual { by, reason }) if by == "alice" && reason == "error budget alert")
    })
    .await;

    // Without a reason, nothing is sent.
    let r = browser
        .command(
            "checkout",
            &[
                ("csrf", &browser.csrf),
                ("command", "resume"),
                ("reason", " "),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(store.commands(&id, 0).await.unwrap().len(), 1);

    // Without JavaScript the form redirects back to the page.
    let r = browser
        .http
        .post(format!("{}/rollouts/checkout/commands", browser.base))
        .header("cookie", &browser.cookie)
        .header("origin", &browser.base)
        .form(&[
            ("csrf", browser.csrf.as_str()),
            ("command", "resume"),
            ("reason", "alert cleared"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/rollouts/checkout");
    wait_for(Duration::from_secs(5), || async {
        store
            .load(&id)
            .await
            .unwrap()
            .unwrap()
            .state
            .pause
            .is_none()
    })
    .await;

    // A program with the bearer token; the idempotency key queues the command once.
    let send = || {
        browser
            .http
            .post(format!("{}/api/rollouts/checkout/commands", browser.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"command": "promote", "by": "deploy-bot", "reason": "green for an hour", "key": "bot-1"}))
            .send()
    };
    let first: serde_json::Value = send().await.unwrap().json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), 202);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(first["command"]["seq"], 3);
    assert_eq!(again["command"]["seq"], 3);

    // The decision log records each command with who and why.
    wait_for(Duration::from_secs(5), || async {
        let records = store.records(&id, 0, 1000).await.unwrap();
        let commands: Vec<(Command, String, String)> = records
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Command { command, .. } => Some((
                    command.command(),
                    command.request.by.clone(),
                    command.request.reason.clone(),
                )),
                _ => None,
            })
            .collect();
        commands
            == [
                (
                    Command::Pause,
                    "alice".to_owned(),
                    "error budget alert".to_owned(),
                ),
                (
                    Command::Resume,
                    "alice".to_owned(),
                    "alert cleared".to_owned(),
                ),
                (
                    Command::Promote,
                    "deploy-bot".to_owned(),
                    "green for an hour".to_owned(),
                ),
            ]
    })
    .await;

    // A finished rollout takes no more commands.
    let r = browser
        .command(
            "checkout",
            &[
                ("csrf", &browser.csrf),
                ("command", "promote-full"),
                ("reason", "ship it"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    wait_for(Duration::from_secs(5), || async {
        store
            .load(&id)
            .await
            .unwrap()
            .unwrap()
            .state
            .outcome
            .is_some()
    })
    .await;
    let r = browser
        .command(
            "checkout",
            &[
                ("csrf", &browser.csrf),
                ("command", "abort"),
                ("reason", "too late"),
            ],
        )
        .await;
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("has finished"),
        "{body}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_the_csrf_token_and_the_same_origin() {
    let store = Arc::new(MemoryStateStore::new());
    let _rollout = waiting_rollout(&store, "checkout").await;
    let running = serve(store.clone()).await;
    let browser = Browser::sign_in(&running, "alice").await;
    let id: RolloutId = "checkout".parse().unwrap();

    let r = browser
        .command("checkout", &[("command", "abort"), ("reason", "no token")])
        .await;
    assert_eq!(r.status(), 403);
    let r = browser
        .command(
            "checkout",
            &[
                ("csrf", "forged"),
                ("command", "abort"),
                ("reason", "wrong token"),
            ],
        )
        .await;
    assert_eq!(r.status(), 403);
    let cross_site = browser
        .http
        .post(format!("{}/rollouts/checkout/commands", browser.base))
        .header("cookie", &browser.cookie)
        .header("origin", "http://evil.example")
        .form(&[
            ("csrf", browser.csrf.as_str()),
            ("command", "abort"),
            ("reason", "cross site"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    // The JSON API takes the bearer token only, never the session cookie.
    let with_cookie = browser
        .http
        .post(format!("{}/api/rollouts/checkout/commands", browser.base))
        .header("cookie", &browser.cookie)
        .json(&serde_json::json!({"command": "abort", "by": "alice", "reason": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 401);
    assert!(
        store.commands(&id, 0).await.unwrap().is_empty(),
        "nothing was queued"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_reasons_are_rendered_inert() {
    let store = Arc::new(MemoryStateStore::new());
    let _rollout = waiting_rollout(&store, "checkout").await;
    let running = serve(store.clone()).await;
    let script = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";
    let browser = Browser::sign_in(&running, "<b onmouseover=alert(3)>mallory</b>").await;
    let r = browser
        .command(
            "checkout",
            &[
                ("csrf", &browser.csrf),
                ("command", "pause"),
                ("reason", script),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let id: RolloutId = "checkout".parse().unwrap();
    wait_for(Duration::from_secs(5), || async {
        store
            .load(&id)
            .await
            .unwrap()
            .unwrap()
            .state
            .pause
            .is_some()
    })
    .await;

    for path in [
        "/rollouts/checkout",
        "/rollouts/checkout/report",
        "/rollouts",
    ] {
        let html = browser.get(path).await.text().await.unwrap();
        let doc = Html::parse_document(&html);
        assert!(doc.errors.is_empty(), "{path}: {:?}", doc.errors);
        assert!(
            select(&doc, "img").is_empty(),
            "{path}: an injected element"
        );
        assert!(select(&doc, "b").is_empty(), "{path}: an injected element");
        assert!(
            select(&doc, "script:not([src='/assets/live.js'])").is_empty(),
            "{path}"
        );
        assert!(
            !html.contains("onerror=alert(2)>") && !html.contains("<b onmouseover"),
            "{path}"
        );
        if path != "/rollouts" {
            let text: String = doc.root_element().text().collect();
            assert!(text.contains(script), "{path}: the reason is shown as text");
        }
    }

    // Ids and reasons the store would never take.
    let long = "x".repeat(3000);
    let r = browser
        .command(
            "checkout",
            &[
                ("csrf", &browser.csrf),
                ("command", "resume"),
                ("reason", &long),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 2048"),
        "{body}"
    );
    let r = browser
        .command(
            "checkout",
            &[
                ("csrf", &browser.csrf),
                ("command", "<script>"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
    for path in [
        "/rollouts/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &format!("/rollouts/{}", "a".repeat(5000)),
    ] {
        let r = browser.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let html = r.text().await.unwrap();
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(
            html.len() < 20_000,
            "{path}: the error quotes a shortened id"
        );
    }
    let r = browser
        .get("/rollouts?q=%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("value=\"&#60;script&#62;alert(1)&#60;/script&#62;\"")
            || html.contains("value=\"&lt;script&gt;"),
        "{html}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_ten_thousand_rollouts_a_page_at_a_time() {
    let store = Arc::new(MemoryStateStore::new());
    stored_rollouts(&store, "svc", 10_000).await;
    let running = serve(store.clone()).await;
    let browser = Browser::sign_in(&running, "alice").await;
    let ids = |html: &str| -> Vec<String> {
        let doc = Html::parse_document(html);
        select(&doc, "a.rollout-link")
            .iter()
            .map(|a| a.text().collect())
            .collect()
    };
    let next = |html: &str| -> Option<String> {
        let doc = Html::parse_document(html);
        select(&doc, "#next-page")
            .first()
            .and_then(|a| a.value().attr("href"))
            .map(str::to_owned)
    };

    let first = browser.get("/rollouts").await.text().await.unwrap();
    let page = ids(&first);
    assert_eq!(page.len(), 50);
    assert_eq!(
        (page[0].as_str(), page[49].as_str()),
        ("svc-00001", "svc-00050")
    );
    let second = browser
        .get(&next(&first).unwrap())
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(ids(&second)[0], "svc-00051");

    let last = browser
        .get("/rollouts?after=svc-09990")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(ids(&last).len(), 10);
    assert!(next(&last).is_none(), "the last page has no next page");

    let found = browser.get("/rollouts?q=09999").await.text().await.unwrap();
    assert_eq!(ids(&found), ["svc-09999"]);
    let found = browser
        .get("/rollouts?q=SVC-0999")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        ids(&found).len(),
        10,
        "case-insensitive, svc-09990..svc-09999"
    );
    // A search pages like the list: 50 matches a page, the next link keeps the search.
    let searched = browser
        .get("/rollouts?q=svc-001")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(ids(&searched).len(), 50);
    let more = browser
        .get(&next(&searched).unwrap())
        .await
        .text()
        .await
        .unwrap();
    let more = ids(&more);
    assert_eq!(
        (more.len(), more[0].as_str(), more[49].as_str()),
        (50, "svc-00150", "svc-00199"),
        "the second page of the 100 ids svc-00100..svc-00199"
    );
    let none = browser
        .get("/rollouts?phase=done")
        .await
        .text()
        .await
        .unwrap();
    assert!(ids(&none).is_empty());
    let active = browser.get("/api/rollouts?phase=active&limit=1000").await;
    let body: serde_json::Value = active.json().await.unwrap();
    assert_eq!(body["rollouts"].as_array().unwrap().len(), 1000);
    assert_eq!(body["next"], "svc-01000");
    running.shutdown().await;
}

/// The text of the first element matching `css`.
fn text(doc: &Html, css: &str) -> String {
    select(doc, css)
        .first()
        .unwrap_or_else(|| panic!("no `{css}`"))
        .text()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checklist_pages_show_each_check_exemption_and_fix_of_a_refused_rollout() {
    let store = Arc::new(MemoryStateStore::new());
    refused_rollout(&store, "refused").await;
    // A checklist that keeps no audit document: only its decision log has its runs.
    let passing = Checklist::new("smoke").item(ChecklistItem::new(
        "health",
        "infrastructure",
        cutover_test::FixedCheck::new(CheckResult::pass("fine")),
    ));
    assert_eq!(
        gated_rollout(&store, "passing", passing).await,
        Outcome::Promoted
    );
    let _plain = waiting_rollout(&store, "plain").await;
    // Two runs kept for `twice`: the first fails, the latest (its fix allowed) passes.
    let cache = cutover_test::ColdCache::default();
    let twice = Checklist::new("cache")
        .audit_to(store.clone())
        .item(ChecklistItem::new("cache", "configuration", cache.clone()).fix(cache));
    let ctx = GateContext::new(
        "twice".parse().unwrap(),
        Revisions::new("v1", "v2").unwrap(),
        GateStage::PreFlight,
    );
    assert!(matches!(
        twice.check(&ctx).await.unwrap(),
        GateVerdict::Closed { .. }
    ));
    let fixed = twice.allow_fixes(true);
    assert_eq!(fixed.check(&ctx).await.unwrap(), GateVerdict::Open);
    let running = serve(store.clone()).await;
    let base = running.url().trim_end_matches('/').to_owned();
    let http = client();

    // Reads need credentials.
    let r = http.get(format!("{base}/checklists")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let r = http
        .get(format!("{base}/api/checklists"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // JSON: the latest run of every rollout that keeps an audit document.
    let api = |path: &str| http.get(format!("{base}{path}")).bearer_auth(TOKEN).send();
    let body: serde_json::Value = api("/api/checklists").await.unwrap().json().await.unwrap();
    let list = body["checklists"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    assert_eq!(list[1]["rollout"], "twice");
    assert_eq!(list[1]["passed"], true, "the latest run is listed");
    let body: serde_json::Value = api("/api/rollouts/twice/checklist")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let passed: Vec<&serde_json::Value> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["passed"])
        .collect();
    assert_eq!(passed, [true, false], "latest first");
    let run = &list[0];
    assert_eq!(run["rollout"], "refused");
    assert_eq!(run["source"], "audit");
    assert_eq!(run["passed"], false);
    assert_eq!(run["blocking"], serde_json::json!(["tls"]));
    let checks = run["record"]["checks"].as_array().unwrap();
    let by_id = |id: &str| checks.iter().find(|c| c["id"] == id).unwrap().clone();
    assert_eq!(by_id("health")["status"], "pass");
    assert_eq!(by_id("tls")["status"], "fail");
    assert_eq!(by_id("tls")["category"], "security");
    assert_eq!(by_id("tls")["hint"], "renew it");
    let exempted = &by_id("secrets")["exempted"];
    assert_eq!(exempted["by"], "alice");
    assert_eq!(exempted["check"], "secrets");
    assert_eq!(exempted["reason"], "secrets move to the vault in CHG-2041");
    assert!(exempted["expires"].is_string());
    let fix = &by_id("cache")["fix"];
    assert_eq!(fix["description"], "warm the cache");
    assert_eq!(fix["applied"], true);
    assert_eq!(fix["message"], "cache warmed");
    assert_eq!(fix["status_before"], "fail");
    assert_eq!(by_id("cache")["status"], "pass");
    assert!(run["record"]["finished_at"].is_string());

    // One rollout's runs: from its audit document, or else from its decision log.
    let body: serde_json::Value = api("/api/rollouts/passing/checklist")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["runs"][0]["source"], "log");
    assert_eq!(body["runs"][0]["passed"], true);
    assert_eq!(body["runs"][0]["record"]["checklist"], "smoke");
    let body: serde_json::Value = api("/api/rollouts/plain/checklist")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["runs"], serde_json::json!([]));
    assert_eq!(
        api("/api/rollouts/nosuch/checklist")
            .await
            .unwrap()
            .status(),
        404
    );

    // HTML: the list page, the failing check standing out, everything escaped.
    let alice = Browser::sign_in(&running, "alice").await;
    let page = alice.get("/checklists").await;
    assert_eq!(page.status(), 200);
    let raw = page.text().await.unwrap();
    assert!(!raw.contains("<b>expired"), "check text is escaped");
    let doc = Html::parse_document(&raw);
    let sections = select(&doc, "section.checklist-run");
    assert_eq!(sections.len(), 2);
    assert_eq!(sections[0].value().attr("data-rollout"), Some("refused"));
    assert_eq!(sections[0].value().attr("data-passed"), Some("false"));
    assert_eq!(sections[1].value().attr("data-passed"), Some("true"));
    assert!(text(&doc, "#checklist-summary").contains("2 runs shown, 1 not passed"));
    let blocking: Vec<&str> = select(&doc, "tr.blocks")
        .iter()
        .filter_map(|r| r.value().attr("data-check"))
        .collect();
    assert_eq!(
        blocking,
        ["tls"],
        "only the failing, unexempted check stands out"
    );
    let cells = |id: &str| -> Vec<String> {
        select(&doc, &format!("tr[data-check={id}] td"))
            .iter()
            .map(|td| td.text().collect::<String>())
            .collect()
    };
    let tls = cells("tls");
    assert_eq!(tls[0], "security");
    assert_eq!(tls[2], "fail");
    assert_eq!(tls[3], "certificate <b>expired</b> 3 days ago");
    assert_eq!(tls[4], "renew it");
    let secrets = cells("secrets");
    assert_eq!(secrets[2], "fail (exempted)");
    assert!(
        secrets[5].starts_with("by alice until ")
            && secrets[5].ends_with(": secrets move to the vault in CHG-2041"),
        "{secrets:?}"
    );
    let cache = cells("cache");
    assert_eq!(cache[2], "pass (fixed)");
    assert_eq!(
        cache[6],
        "warm the cache — applied (cache warmed; was fail)"
    );
    assert_eq!(
        select(&doc, "a.run-link")[0].value().attr("href"),
        Some("/rollouts/refused/checklist")
    );

    // Each rollout's page links to its checklist, marked when it did not pass.
    let doc = Html::parse_document(&alice.get("/rollouts/refused").await.text().await.unwrap());
    let link = select(&doc, "#checklist-link");
    assert_eq!(
        link[0].value().attr("href"),
        Some("/rollouts/refused/checklist")
    );
    assert_eq!(link[0].value().attr("class"), Some("blocked"));
    assert!(text(&doc, "#checklist-link").contains("not passed"));
    let doc = Html::parse_document(&alice.get("/rollouts/passing").await.text().await.unwrap());
    assert!(
        select(&doc, "#checklist-link")[0]
            .value()
            .attr("class")
            .is_none()
    );
    let doc = Html::parse_document(&alice.get("/rollouts/plain").await.text().await.unwrap());
    assert!(
        select(&doc, "#checklist-link").is_empty(),
        "no checklist, no link"
    );

    // One rollout's checklist page.
    let doc = Html::parse_document(
        &alice
            .get("/rollouts/refused/checklist")
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(select(&doc, "section.checklist-run").len(), 1);
    assert_eq!(select(&doc, "tr[data-check]").len(), 4);
    assert_eq!(
        select(&doc, "#rollout-link")[0].value().attr("href"),
        Some("/rollouts/refused")
    );
    let doc = Html::parse_document(
        &alice
            .get("/rollouts/plain/checklist")
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(text(&doc, "#checklist-note").contains("No checklist ran"));
    assert_eq!(alice.get("/rollouts/nosuch/checklist").await.status(), 404);

    // The standalone report lists each check of the refused rollout's checklist under its gate.
    let report = Html::parse_document(
        &alice
            .get("/rollouts/refused/report")
            .await
            .text()
            .await
            .unwrap(),
    );
    let rows: Vec<Vec<String>> = select(&report, "#checks tbody tr")
        .iter()
        .map(|tr| {
            tr.select(&Selector::parse("td").unwrap())
                .map(|td| td.text().collect::<String>())
                .collect()
        })
        .collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[2] == name)
            .unwrap_or_else(|| panic!("no row for `{name}` in {rows:?}"))
            .clone()
    };
    assert!(row("tls")[1].starts_with("check of"), "{rows:?}");
    assert!(row("tls")[3].starts_with("fail"), "{rows:?}");
    assert!(row("health")[3].starts_with("pass"), "{rows:?}");
    assert!(row("secrets")[3].contains("exempted by alice"), "{rows:?}");
    let failing: Vec<String> = select(&report, "#checks tbody td.fail")
        .iter()
        .map(|td| td.text().collect())
        .collect();
    assert!(
        failing.iter().any(|t| t.starts_with("fail")),
        "the blocking check is marked: {failing:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_hash_signs_in_the_right_password_only() {
    let store = Arc::new(MemoryStateStore::new());
    let _rollout = waiting_rollout(&store, "checkout").await;
    let password = "correct horse battery staple";
    let hash = cutover_dashboard::hash_password(password).unwrap();
    let running = cutover_dashboard::Dashboard::builder(store.clone())
        .password_hash(hash.clone())
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let base = running.url().trim_end_matches('/').to_owned();
    let http = client();
    let sign_in = |secret: &str| {
        http.post(format!("{base}/login"))
            .header("origin", &base)
            .form(&[("name", "alice"), ("secret", secret), ("next", "/rollouts")])
            .send()
    };
    for wrong in ["correct horse battery", "", &hash, TOKEN] {
        let r = sign_in(wrong).await.unwrap();
        assert_eq!(r.status(), 401, "signed in with {wrong:?}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(
            !r.text().await.unwrap().contains(&hash),
            "the hash is never shown"
        );
    }
    let r = sign_in(password).await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = http
        .get(format!("{base}/rollouts/checkout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "the session opens the rollout's page");
    assert!(!page.text().await.unwrap().contains(&hash));
    running.shutdown().await;
}
