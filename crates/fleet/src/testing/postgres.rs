//! A PostgreSQL server for tests and benchmarks, from Debian's packages.
//!
//! The server runs from `/usr/lib/postgresql/<version>/bin` (or `PG_BIN`), installed by
//! `scripts/test-deps`, in a temporary directory on a free loopback port, with `trust`
//! authentication and without fsync. PostgreSQL refuses to run as root, so as root the
//! binaries run as the `postgres` user through `setpriv`. `pg_ctl start -w` returns once the
//! server accepts connections (60 s at most). It can be stopped and started again on the same
//! port and data, to test what a lost database does. A watchdog shell holds a pipe from this
//! process: when the process exits, however it exits, the pipe closes and the watchdog stops
//! the server and removes its directory. [`PgServer::start_replica`] adds a streaming replica
//! of a server, for tests of replication.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::DatabaseUrl;

/// A PostgreSQL server of this process.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    /// More `postgres` options, like `-c cluster_name=replica1`.
    extra: String,
    watchdog: Mutex<Child>,
}

/// Why the server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL test server: {0} (run scripts/test-deps to install PostgreSQL)")]
pub struct ServerError(String);

fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir).join(name);
    }
    // The newest installed version.
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .last()
        .map_or_else(|| PathBuf::from("/usr/lib/postgresql/15"), Clone::clone)
        .join("bin")
        .join(name)
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

fn run(cmd: &mut Command, what: &str) -> Result<(), ServerError> {
    let out = cmd
        .output()
        .map_err(|e| ServerError(format!("{what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(ServerError(format!(
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

fn free_port() -> Result<u16, ServerError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ServerError(format!("no free port: {e}")))
}

/// A fresh temporary directory the server's user owns, kept by the watchdog.
fn server_dir() -> Result<PathBuf, ServerError> {
    let dir = tempfile::Builder::new()
        .prefix("cutover-fleet-pg-")
        .tempdir()
        .map_err(|e| ServerError(format!("no temporary directory: {e}")))?
        .keep();
    if is_root() {
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
            "chown",
        )?;
    }
    Ok(dir)
}

/// The shell that stops the server in `dir` and removes `dir` when its stdin closes.
fn watchdog(dir: &Path) -> Result<Child, ServerError> {
    let stop = format!(
        "read _; {} {} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
        if is_root() {
            "setpriv --reuid postgres --regid postgres --clear-groups"
        } else {
            ""
        },
        bin("pg_ctl").display(),
        dir.join("data").display(),
        dir.display()
    );
    Command::new("sh")
        .args(["-c", &stop])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| ServerError(format!("the watchdog shell: {e}")))
}

impl PgServer {
    /// Creates a cluster and starts it.
    pub fn start() -> Result<PgServer, ServerError> {
        Self::start_with("")
    }

    /// Creates a cluster and starts it with more `postgres` options, like
    /// `-c shared_preload_libraries=pg_stat_statements`.
    pub fn start_with(options: &str) -> Result<PgServer, ServerError> {
        let dir = server_dir()?;
        // The watchdog first: it removes the directory whatever happens next.
        let watchdog = watchdog(&dir)?;
        run(
            as_postgres(&bin("initdb"))
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
            "initdb",
        )?;
        let server = PgServer {
            dir,
            port: free_port()?,
            extra: format!(" {options}"),
            watchdog: Mutex::new(watchdog),
        };
        server.resume()?;
        Ok(server)
    }

    /// Starts a streaming replica of this server, called `name` (its `application_name` in
    /// the primary's `pg_stat_replication`; letters, digits and `_`), on another free port:
    /// `pg_basebackup -R` copies the data directory and configures the standby, and this
    /// returns once the primary shows the replica `streaming` (60 s at most). initdb's
    /// `pg_hba.conf` already lets local replication connections in (`trust`), and the
    /// default `wal_level` is `replica`.
    pub async fn start_replica(&self, name: &str) -> Result<PgServer, ServerError> {
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "a replica name of letters, digits and underscores"
        );
        let dir = server_dir()?;
        let watchdog = watchdog(&dir)?;
        run(
            as_postgres(&bin("pg_basebackup"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]),
            "pg_basebackup",
        )?;
        let replica = PgServer {
            dir,
            port: free_port()?,
            extra: format!(" -c cluster_name={name}"),
            watchdog: Mutex::new(watchdog),
        };
        replica.resume()?;
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(|e| ServerError(format!("cannot connect to the primary: {e}")))?;
        let task = tokio::spawn(connection);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_mins(1);
        loop {
            let streaming: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication \
                     WHERE application_name = $1 AND state = 'streaming'",
                    &[&name],
                )
                .await
                .map_err(|e| ServerError(format!("reading pg_stat_replication: {e}")))?
                .get(0);
            if streaming > 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError(format!(
                    "replica {name} not streaming after 60 s"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(client);
        let _ = task.await;
        Ok(replica)
    }

    /// The server of this process, started on first use.
    pub fn shared() -> &'static PgServer {
        static SERVER: OnceLock<PgServer> = OnceLock::new();
        SERVER.get_or_init(|| PgServer::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection string of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={name}",
            self.port
        )
    }

    /// A fresh, empty database called `name` (letters, digits and `_`).
    pub async fn database(&self, name: &str) -> Result<DatabaseUrl, ServerError> {
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "a database name of letters, digits and underscores"
        );
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(|e| ServerError(format!("cannot connect: {e}")))?;
        let task = tokio::spawn(connection);
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| ServerError(format!("cannot create database {name}: {e}")))?;
        }
        drop(client);
        let _ = task.await;
        DatabaseUrl::parse(&self.url(name)).map_err(|e| ServerError(e.to_string()))
    }

    /// Stops the server at once (`-m immediate`: every connection is cut, as in a crash or a
    /// partition).
    pub fn stop(&self) -> Result<(), ServerError> {
        run(
            as_postgres(&bin("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        )
    }

    /// Starts it again, on the same port and data.
    pub fn resume(&self) -> Result<(), ServerError> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400{}",
            self.port,
            self.dir.display(),
            self.extra
        );
        run(
            as_postgres(&bin("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-o", &options, "-w", "-t", "60", "-l"])
                .arg(self.dir.join("log"))
                .arg("start"),
            "pg_ctl start",
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Ok(child) = self.watchdog.get_mut() {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(b"stop\n");
            }
            let _ = child.wait();
        }
    }
}
