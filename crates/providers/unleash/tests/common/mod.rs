//! A real `unleash-server` for tests: the npm package that `scripts/test-deps` installs (under
//! `~/.cache/cutover-unleash/<version>`, or `UNLEASH_SERVER_DIR`), on the machine's Node, with
//! its own PostgreSQL (`cutover_fleet::testing::PgServer`), both on free loopback ports.
//!
//! One server per test binary, started on first use; each test uses its own flags. Readiness
//! is polled (`/health`) against a deadline; if the server exits first, the panic shows its
//! log. The server reads its standard input and exits when it closes, which the OS does when
//! the test process ends, however it ends; PostgreSQL has the fleet harness's watchdog.

#![allow(dead_code, clippy::disallowed_methods)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cutover_fleet::testing::PgServer;
use serde_json::{Value, json};

/// The unleash-server version `scripts/test-deps` installs.
pub(crate) const VERSION: &str = "6.10.1";
/// How long start-up (migrations on an empty database included) may take.
const STARTUP_DEADLINE: Duration = Duration::from_mins(2);

pub(crate) struct UnleashServer {
    pub(crate) url: String,
    pub(crate) token: String,
    port: u16,
    _pg: PgServer,
    _dir: tempfile::TempDir,
    _child: Mutex<(Child, ChildStdin)>,
}

fn install_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UNLEASH_SERVER_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home)
        .join(".cache/cutover-unleash")
        .join(VERSION)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `GET path` on 127.0.0.1:`port`; the status code, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

const SCRIPT: &str = "\
process.stdin.on('end', () => process.exit(0)); process.stdin.resume();\
require('unleash-server').start({}).catch((e) => { console.error(e); process.exit(1); });";

impl UnleashServer {
    pub(crate) fn shared() -> &'static UnleashServer {
        static SERVER: OnceLock<UnleashServer> = OnceLock::new();
        SERVER.get_or_init(|| UnleashServer::start().unwrap_or_else(|e| panic!("{e}")))
    }

    fn start() -> Result<UnleashServer, String> {
        let install = install_dir();
        if !install
            .join("node_modules/unleash-server/package.json")
            .exists()
        {
            return Err(format!(
                "no unleash-server in {}: run scripts/test-deps (or set UNLEASH_SERVER_DIR)",
                install.display()
            ));
        }
        let pg = PgServer::start().map_err(|e| e.to_string())?;
        let dir = tempfile::Builder::new()
            .prefix("cutover-unleash-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = free_port();
        let token = format!("*:*.{:032x}", fastrand::u128(..));
        let log =
            std::fs::File::create(dir.path().join("unleash.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new("node")
            .args(["-e", SCRIPT])
            .current_dir(&install)
            .env("NODE_PATH", install.join("node_modules"))
            .env(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port()),
            )
            .env("DATABASE_SSL", "false")
            .env("HTTP_HOST", "127.0.0.1")
            .env("HTTP_PORT", port.to_string())
            .env("INIT_ADMIN_API_TOKENS", &token)
            .env(
                "UNLEASH_DEFAULT_ADMIN_PASSWORD",
                format!("{:032x}", fastrand::u128(..)),
            )
            .env("LOG_LEVEL", "warn")
            .env("SEND_TELEMETRY", "false")
            .env("CHECK_VERSION", "false")
            .env("SCARF_ANALYTICS", "false")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run node (install Node 20: scripts/test-deps): {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if http_status(port, "/health") == Some(200) {
                break;
            }
            let log =
                || std::fs::read_to_string(dir.path().join("unleash.log")).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "unleash-server exited ({status}) before it was ready:\n{}",
                    log()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "unleash-server not ready within {STARTUP_DEADLINE:?}:\n{}",
                    log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(UnleashServer {
            url: format!("http://127.0.0.1:{port}"),
            token,
            port,
            _pg: pg,
            _dir: dir,
            _child: Mutex::new((child, stdin)),
        })
    }

    /// The admin API, for what a person would do in the UI.
    pub(crate) async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(
                method,
                format!("{}/api/admin/projects/default/{path}", self.url),
            )
            .header("Authorization", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("unleash answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a release flag called `name`.
    pub(crate) async fn create_flag(&self, name: &str) {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "features",
                Some(json!({"name": name, "type": "release"})),
            )
            .await;
        assert_eq!(status, 201, "create flag {name}: {body}");
    }

    /// The flag in `production`.
    pub(crate) async fn production(&self, flag: &str) -> Value {
        let (status, body) = self
            .admin(
                reqwest::Method::GET,
                &format!("features/{flag}/environments/production"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}
