//! [`DatabaseUrl`]: a connection string that never shows its password.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;

use crate::error::ConnectError;
use crate::pg::sql::Detail;

/// A PostgreSQL connection string, as a URL (`postgresql://user:secret@db:5432/deploys`) or
/// as `key=value` pairs (`host=db user=deployer password=secret dbname=deploys`).
///
/// It shows only where it points (`deployer@db:5432/deploys`), in `Debug` and `Display`
/// alike, so it can be logged; the password and every other option stay inside.
///
/// ```
/// use cutover_fleet::DatabaseUrl;
/// let url: DatabaseUrl = "postgresql://deployer:hunter2@db.internal:5432/deploys".parse()?;
/// assert_eq!(url.to_string(), "deployer@db.internal:5432/deploys");
/// assert!(!format!("{url:?}").contains("hunter2"));
/// # Ok::<(), cutover_fleet::ConnectError>(())
/// ```
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    target: String,
}

impl DatabaseUrl {
    /// Parses a connection string. The error never repeats it.
    pub fn parse(text: &str) -> Result<Self, ConnectError> {
        let mut config =
            tokio_postgres::Config::from_str(text).map_err(|e| ConnectError::InvalidUrl {
                source: Detail(e.to_string()),
            })?;
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("cutover-fleet");
        }
        config.keepalives_idle(Duration::from_secs(30));
        let target = target(&config);
        Ok(DatabaseUrl { config, target })
    }

    /// The connection string in environment variable `var`, if it is set.
    pub fn from_env(var: &str) -> Result<Option<Self>, ConnectError> {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => Self::parse(&text).map(Some),
            _ => Ok(None),
        }
    }

    /// Where it points: `user@host:port/dbname`, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

fn target(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("postgres");
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{}/{db}", hosts.join(","))
}

impl FromStr for DatabaseUrl {
    type Err = ConnectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Only where it points.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.target)
    }
}

/// Only where it points.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_strings_show_no_password() {
        let url =
            DatabaseUrl::parse("host=10.0.0.7 port=6543 user=ops password=s3cret dbname=rollouts")
                .unwrap();
        assert_eq!(url.target(), "ops@10.0.0.7:6543/rollouts");
        assert!(!format!("{url:?} {url}").contains("s3cret"));
    }

    #[test]
    fn a_bad_string_is_refused_without_repeating_it() {
        let err = DatabaseUrl::parse("postgresql://ops:s3cret@db:notaport/x").unwrap_err();
        let shown = format!("{err} {err:?} {}", crate::error::chain(&err));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("invalid PostgreSQL connection string"),
            "{shown}"
        );
    }
}
