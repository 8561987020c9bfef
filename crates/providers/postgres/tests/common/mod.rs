//! A PostgreSQL server for the tests: one per test binary, a database per test.
//!
//! The server runs from Debian's packages (`/usr/lib/postgresql/15/bin`, or `PG_BIN`) in a
//! temporary directory on a free loopback port. PostgreSQL refuses to run as root, so as root
//! the binaries run as the `postgres` user through `setpriv`. `pg_ctl start -w` returns once
//! the server accepts connections (with a 60 s deadline). A watchdog shell holds the read end
//! of a pipe from this process: when the test binary exits (statics are never dropped), the
//! pipe closes and the watchdog stops the server and removes its directory.
#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use tokio_postgres::{Client, NoTls};

/// The running server.
pub struct Server {
    port: u16,
    watchdog: Mutex<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(child) = self.watchdog.get_mut() {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(b"stop\n");
            }
            let _ = child.wait();
        }
    }
}

fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PG_BIN").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    );
    dir.join(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A command that runs `program` as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            "postgres",
            "--regid",
            "postgres",
            "--clear-groups",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Server {
    fn start() -> Server {
        // Kept by the watchdog, which removes it after stopping the server.
        let dir = tempfile::Builder::new()
            .prefix("cutover-pg-")
            .tempdir()
            .expect("a temp dir")
            .keep();
        if is_root() {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown",
            );
        }
        let data = dir.join("data");
        run(
            as_postgres(&bin("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
        );
        let port = free_port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.display()
        );
        run(
            as_postgres(&bin("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-w", "-t", "60", "-l"])
                .arg(dir.join("log"))
                .arg("start"),
            "pg_ctl start",
        );
        let stop = format!(
            "read _; {} {} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            if is_root() {
                "setpriv --reuid postgres --regid postgres --clear-groups"
            } else {
                ""
            },
            bin("pg_ctl").display(),
            data.display(),
            dir.display()
        );
        let watchdog = Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::piped())
            .spawn()
            .expect("the watchdog shell");
        Server {
            port,
            watchdog: Mutex::new(watchdog),
        }
    }

    /// The connection string of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={name}",
            self.port
        )
    }

    /// A fresh, empty database called `name`; returns its connection string.
    pub async fn database(&self, name: &str) -> String {
        let admin = connect(&self.url("postgres")).await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create the test database");
        }
        self.url(name)
    }
}

/// The server of this test binary, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start)
}

/// A plain client on `url`.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The context the engine gives a step of rollout `checkout` from v1 to v2.
pub fn ctx(promoted: bool) -> cutover_core::MigrationContext {
    cutover_core::MigrationContext::new(
        cutover_core::RolloutId::new("checkout").unwrap(),
        cutover_core::Revisions::new("v1", "v2").unwrap(),
    )
    .with_promoted(promoted)
}

/// The columns of `schema.table` (a table or a view), in order; empty when it does not exist.
pub async fn columns(client: &Client, schema: &str, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A single value from `sql`.
pub async fn value<T: for<'a> tokio_postgres::types::FromSql<'a>>(client: &Client, sql: &str) -> T {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The rows of `sql` as pairs of strings.
pub async fn pairs(client: &Client, sql: &str) -> Vec<(String, String)> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}
