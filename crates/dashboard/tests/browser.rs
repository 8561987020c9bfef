//! The dashboard in a real headless Chromium, driven over WebDriver (chromedriver from Debian,
//! started here on a free loopback port): sign in, open the list, open a rollout, pause it and
//! see the page change without reloading, resume it; follow a refused rollout's link to its
//! pre-flight checklist, where the failing check stands out; screenshots of the live page, the
//! report and the checklist go to `target/dashboard/`.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::MemoryStateStore;
use fantoccini::{Client, ClientBuilder, Locator};
use support::{TOKEN, refused_rollout, serve, waiting_rollout};

/// `target/dashboard/`, where the screenshots go.
fn shots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = free_port();
        let child = tokio::process::Command::new(&bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (scripts/test-deps installs it): {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { _child: child, url }
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,1400",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The text of `css`, polled until `ok` holds or `deadline` passes.
async fn text_until(
    client: &Client,
    css: &str,
    deadline: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let text = match client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ok(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "`{css}` is {text:?} after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types a reason, presses a control, and confirms.
async fn press(client: &Client, button: &str, reason: &str) {
    let field = client.find(Locator::Id("reason")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(reason).await.unwrap();
    client
        .find(Locator::Id(button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.accept_alert().await.is_err() {
        assert!(
            tokio::time::Instant::now() < until,
            "no confirmation for {button}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium: scripts/test-deps"]
async fn pause_and_resume_in_a_real_browser() {
    let store = Arc::new(MemoryStateStore::new());
    let _checkout = waiting_rollout(&store, "checkout").await;
    let _search = waiting_rollout(&store, "search").await;
    refused_rollout(&store, "refused").await;
    let running = serve(store.clone()).await;
    let base = running.url().trim_end_matches('/').to_owned();
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;

    // Sign in: the list sends us to the sign-in page and back.
    client.goto(&format!("{base}/rollouts")).await.unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/login")
    );
    client
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    client
        .find(Locator::Id("secret"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    client
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let list = client
        .wait()
        .for_element(Locator::Id("rollouts"))
        .await
        .unwrap();
    let rows = list.find_all(Locator::Css("a.rollout-link")).await.unwrap();
    assert_eq!(rows.len(), 3);

    // Open a rollout; its live stream connects.
    client
        .find(Locator::LinkText("checkout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Id("command-form"))
        .await
        .unwrap();
    text_until(&client, "#live-state", Duration::from_secs(10), |t| {
        t.starts_with("live: ")
    })
    .await;
    let phase = client
        .find(Locator::Id("phase"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(phase, "progressing");
    // A mark that a reload would wipe.
    client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();

    press(&client, "pause", "checking the error budget").await;
    let phase = text_until(&client, "#phase", Duration::from_secs(10), |t| {
        t.contains("paused")
    })
    .await;
    assert_eq!(phase, "progressing, paused");
    let paused = client
        .find(Locator::Id("paused"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        paused.contains("alice") && paused.contains("checking the error budget"),
        "{paused}"
    );
    let flash = client
        .find(Locator::Id("flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        flash.contains("pause sent as command #1 by alice"),
        "{flash}"
    );
    let kept = client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        kept,
        serde_json::json!(true),
        "the page changed without a reload"
    );
    std::fs::write(
        shots().join("live-paused.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    press(&client, "resume", "budget is fine").await;
    text_until(&client, "#phase", Duration::from_secs(10), |t| {
        t == "progressing"
    })
    .await;
    let markers = client
        .find(Locator::Css("table.markers"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        markers.contains("pause by alice: checking the error budget"),
        "{markers}"
    );
    assert!(
        markers.contains("resume by alice: budget is fine"),
        "{markers}"
    );
    let kept = client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, serde_json::json!(true));
    std::fs::write(shots().join("live.png"), client.screenshot().await.unwrap()).unwrap();

    // The report, with its inline stylesheet allowed by the page's policy (by hash).
    client
        .goto(&format!("{base}/rollouts/checkout/report"))
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("figure[data-chart=traffic] svg"))
        .await
        .unwrap();
    let width = client
        .execute(
            "return getComputedStyle(document.querySelector('main')).maxWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        width,
        serde_json::json!("1100px"),
        "the report's stylesheet applies"
    );
    std::fs::write(
        shots().join("report.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // A refused rollout's page links to its checklist; the failing check stands out there.
    client
        .goto(&format!("{base}/rollouts/refused"))
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Id("checklist-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("table.checklist"))
        .await
        .unwrap();
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/rollouts/refused/checklist"
    );
    let backgrounds = client
        .execute(
            "return [...document.querySelectorAll('table.checklist tbody tr')].map(r => \
             [r.dataset.check, getComputedStyle(r.cells[0]).backgroundColor]);",
            vec![],
        )
        .await
        .unwrap();
    let red = "rgb(251, 227, 227)";
    for row in backgrounds.as_array().unwrap() {
        let (check, color) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
        assert_eq!(color == red, check == "tls", "{check}: {color}");
    }
    let exemption = client
        .find(Locator::Css("tr[data-check=secrets] td.exemption"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(exemption.contains("by alice"), "{exemption}");
    std::fs::write(
        shots().join("checklist.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    client.close().await.unwrap();
    drop(driver);
    running.shutdown().await;
}
