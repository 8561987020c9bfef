//! A real Prometheus for tests and examples (feature `test-util`).
//!
//! [`PrometheusServer::start`] runs the `prometheus` binary on a free 127.0.0.1 port with a
//! temporary config (scrape and evaluation interval 1 s) and data directory, waits for
//! `/-/ready` with a deadline, and kills the process when dropped. The first scraped sample
//! appears about 5 s after start: wait for it with [`PrometheusServer::wait_for_data`], never
//! a fixed sleep.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::PrometheusClient;

/// A canary plan judged through a metric source called `prometheus` on the cutover-local
/// proxy's metrics (built-in `local/*` templates): 20 %, then 50 %, each followed by an
/// analysis of error rate (at most 5 % of at least 50 requests over 4 s) and p99 latency (at
/// most 250 ms). Shared by this crate's end-to-end test and the `prometheus_canary` example.
pub const LOCAL_CANARY_PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 20
      - analysis: { name: health, initial_delay: 3s, count: 2, interval: 1s, on_inconclusive: { extend: { times: 5, then: abort } } }
      - set_weight: 50
      - analysis: { name: health, initial_delay: 3s, count: 2, interval: 1s, on_inconclusive: { extend: { times: 5, then: abort } } }
analyses:
  health:
    threshold:
      metrics:
        - { name: error-rate, source: prometheus, query: local/error-rate, window: 4s, max: 0.05, min_samples: 50 }
        - { name: p99-latency, source: prometheus, query: local/latency-p99, window: 4s, max: 0.25 }
progress_deadline: 60s
";

/// The binary: `$PROMETHEUS_BIN` when set (`None` if it names no file), else
/// `/usr/bin/prometheus`, else `prometheus` on `PATH`.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let default = PathBuf::from("/usr/bin/prometheus");
    if default.is_file() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// A running Prometheus, killed on drop.
#[derive(Debug)]
pub struct PrometheusServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second as job
    /// `cutover`, and waits until it is ready (deadline 20 s). The error says what is missing
    /// or what Prometheus logged.
    pub async fn start(targets: &[SocketAddr]) -> Result<Self, String> {
        let bin = binary().ok_or(
            "no prometheus binary: install it (scripts/test-deps, or apt-get install prometheus) or set PROMETHEUS_BIN",
        )?;
        let mut last = String::new();
        // The free port can be taken between our probe and Prometheus's bind: try again.
        for _ in 0..3 {
            let mut server = Self::spawn(&bin, targets)?;
            match server.wait_ready(Duration::from_secs(20)).await {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn spawn(bin: &PathBuf, targets: &[SocketAddr]) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
        let addr = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cutover\n    scrape_interval: 1s\n    static_configs:\n      - targets: [",
        );
        for (i, t) in targets.iter().enumerate() {
            let _ = write!(config, "{}'{t}'", if i == 0 { "" } else { ", " });
        }
        config.push_str("]\n");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(|e| format!("cannot write config: {e}"))?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .map_err(|e| format!("cannot create log: {e}"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| format!("cannot open log: {e}"))?,
            )
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(PrometheusServer { child, addr, dir })
    }

    async fn wait_ready(&mut self, deadline: Duration) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("http://{}/-/ready", self.addr);
        let until = Instant::now() + deadline;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= until {
                return Err(format!(
                    "prometheus on {} {} within {deadline:?}; its log:\n{}",
                    self.addr,
                    if exited {
                        "exited"
                    } else {
                        "did not become ready"
                    },
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of Prometheus's log.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A client for it.
    pub fn client(&self) -> PrometheusClient {
        PrometheusClient::builder(self.url())
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a loopback URL is valid")
    }

    /// Polls `promql` every 200 ms until it returns at least one non-NaN value, or fails
    /// after `deadline` with the last answer and the log.
    pub async fn wait_for_data(&self, promql: &str, deadline: Duration) -> Result<(), String> {
        let client = self.client();
        let until = Instant::now() + deadline;
        loop {
            let last = match client.query(promql).await {
                Ok(data) => match data.to_values(promql) {
                    Ok(v) if !v.is_empty() => return Ok(()),
                    other => format!("{other:?}"),
                },
                Err(e) => e.chain(),
            };
            if Instant::now() >= until {
                return Err(format!(
                    "no data for `{promql}` within {deadline:?} (last answer: {last}); prometheus log:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind(("127.0.0.1", 0))?.local_addr()
}
