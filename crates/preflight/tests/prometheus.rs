//! The Prometheus checks against a real Prometheus (scripts/test-deps installs it), started
//! here on a free 127.0.0.1 port with alerting rules that fire at once, scraping itself.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::run;
use cutover_core::checklist::CheckStatus;
use cutover_preflight::AlertsCheck;

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RULES: &str = r"
groups:
  - name: preflight-test
    interval: 1s
    rules:
      - alert: CheckoutErrors
        expr: vector(1)
        labels: { service: checkout, severity: page }
      - alert: BillingSlow
        expr: vector(1)
        labels: { service: billing }
";

async fn start() -> Prometheus {
    let bin = std::env::var_os("PROMETHEUS_BIN").unwrap_or_else(|| "prometheus".into());
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: self\n    static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ]\n"
        ),
    )
    .unwrap();
    let child = Command::new(&bin)
        .current_dir(dir.path())
        .arg("--config.file=prometheus.yml")
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("needs prometheus: scripts/test-deps");
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    // Ready, the alerts firing and itself scraped, within a deadline.
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let alerts = http.get(format!("{}/api/v1/alerts", p.url)).send().await;
        let up = http
            .get(format!("{}/api/v1/query", p.url))
            .query(&[("query", "up{job=\"self\"}")])
            .send()
            .await;
        if let (Ok(a), Ok(u)) = (alerts, up) {
            let a = a.text().await.unwrap_or_default();
            let u = u.text().await.unwrap_or_default();
            if a.matches("\"firing\"").count() >= 2 && u.contains("\"self\"") {
                return p;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prometheus not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs prometheus: scripts/test-deps"]
async fn alerts_queries_and_burn_rates_against_a_real_prometheus() {
    let prom = start().await;
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>()
    };

    let r = run(&AlertsCheck::new(
        &prom.url,
        labels(&[("service", "checkout")]),
    ))
    .await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert_eq!(r.message, "firing: CheckoutErrors");
    let r = run(&AlertsCheck::new(
        &prom.url,
        labels(&[("service", "search")]),
    ))
    .await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");

    let load = |yaml: String| cutover_preflight::load_yaml(&yaml).unwrap();
    let query = |q: &str, bounds: &str| {
        load(format!(
            "name: p\nchecks:\n  - id: q\n    category: infrastructure\n    prometheus_query: {{ url: '{}', query: '{q}', {bounds} }}\n",
            prom.url
        ))
    };
    let status = |c: cutover_core::Checklist| async move {
        let report = c
            .run(&cutover_core::checklist::CheckContext::default())
            .await;
        (
            report.checks[0].result.status,
            report.checks[0].result.message.clone(),
        )
    };
    let (s, m) = status(query("up{job=\"self\"}", "min: 1")).await;
    assert_eq!(s, CheckStatus::Pass, "{m}");
    let (s, m) = status(query("up{job=\"nobody\"}", "min: 1")).await;
    assert_eq!(s, CheckStatus::Fail, "{m}");
    assert!(m.contains("returned no data"), "{m}");
    let (s, m) = status(query("vector(7)", "max: 5")).await;
    assert_eq!(s, CheckStatus::Fail, "{m}");
    assert!(m.contains("not at most 5: {} = 7"), "{m}");
    let (s, m) = status(query("rate(", "max: 5")).await;
    assert_eq!(s, CheckStatus::Error, "{m}");

    let burn = |short: &str, long: &str| {
        load(format!(
            "name: p\nchecks:\n  - id: b\n    category: infrastructure\n    burn_rate: {{ url: '{}', short: '{short}', long: '{long}', max: 14.4 }}\n",
            prom.url
        ))
    };
    let (s, m) = status(burn("vector(20)", "vector(15)")).await;
    assert_eq!(s, CheckStatus::Fail, "{m}");
    assert!(
        m.contains("20.00× (short window) and 15.00× (long window)"),
        "{m}"
    );
    let (s, m) = status(burn("vector(20)", "vector(2)")).await;
    assert_eq!(
        s,
        CheckStatus::Pass,
        "a short spike alone does not stop a rollout: {m}"
    );
    let (s, m) = status(burn("scalar(vector(1))", "vector(1)")).await;
    assert_eq!(s, CheckStatus::Pass, "a scalar result reads too: {m}");
}
