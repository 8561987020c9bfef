//! The run file: a plan with two more sections, `rollout` (id and revisions) and `providers`
//! (what moves traffic, what measures it, what scales it).
//!
//! ```yaml
//! rollout: { id: checkout, stable: v1, candidate: v2 }
//! providers:
//!   local_proxy: { listen: 127.0.0.1:8080, upstreams: { v1: 127.0.0.1:9001, v2: 127.0.0.1:9002 } }
//! strategy:
//!   canary: { steps: [ { set_weight: 10 }, { pause: { duration: 1m } } ] }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cutover::Plan;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::exit::Failure;

/// A parsed run file.
#[derive(Debug)]
pub(crate) struct RunFile {
    /// The rollout section.
    pub(crate) rollout: RolloutSection,
    /// The providers section.
    pub(crate) providers: Providers,
    /// The plan.
    pub(crate) plan: Plan,
}

/// `rollout:`: the id and the revisions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolloutSection {
    /// The rollout's id (default: the file name without extension).
    #[serde(default)]
    pub(crate) id: Option<String>,
    /// The stable revision.
    #[serde(default)]
    pub(crate) stable: Option<String>,
    /// The candidate.
    #[serde(default)]
    pub(crate) candidate: Option<String>,
    /// How long the owner lease lasts without renewal: another process can take the rollout
    /// over this long after its runner died (default 15s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) lease_ttl: Option<Duration>,
}

/// `providers:`. Each section needs the build feature of the same name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Providers {
    /// The embedded local proxy: a router, and a metric source (`metrics`, default `proxy`).
    #[serde(default)]
    pub(crate) local_proxy: Option<LocalProxySpec>,
    /// An HTTP health check per revision.
    #[serde(default)]
    pub(crate) http_probe: Option<HttpProbeSpec>,
    /// Prometheus metric sources, by the name the plan's analyses use.
    #[serde(default)]
    pub(crate) prometheus: BTreeMap<String, PrometheusSpec>,
    /// Kubernetes: a router, Deployments as the workload, pods as the health probe.
    #[serde(default)]
    pub(crate) kubernetes: Option<KubernetesSpec>,
    /// An Istio VirtualService router.
    #[serde(default)]
    pub(crate) istio: Option<IstioSpec>,
    /// An AWS ALB router (credentials and region from the environment).
    #[serde(default)]
    pub(crate) aws_alb: Option<AlbSpec>,
    /// Expand/contract schema migrations on a PostgreSQL database.
    #[serde(default)]
    pub(crate) postgres: Option<PostgresSpec>,
}

/// `providers.local_proxy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalProxySpec {
    /// Where the proxy listens.
    #[serde(default = "default_listen")]
    pub(crate) listen: SocketAddr,
    /// Where `/metrics` and `/healthz` are served, if anywhere.
    #[serde(default)]
    pub(crate) admin: Option<SocketAddr>,
    /// The upstream of each revision.
    pub(crate) upstreams: BTreeMap<String, SocketAddr>,
    /// The name the plan's analyses use for the proxy's metrics.
    #[serde(default = "default_metrics")]
    pub(crate) metrics: String,
    /// How long an upstream has to answer before the proxy answers 504.
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) upstream_timeout: Option<Duration>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_metrics() -> String {
    "proxy".to_owned()
}

/// `providers.http_probe`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpProbeSpec {
    /// The URL that tells each revision's health.
    pub(crate) urls: BTreeMap<String, String>,
    /// How long one check may take.
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) timeout: Option<Duration>,
    /// The status a healthy revision answers (default: any 2xx).
    #[serde(default)]
    pub(crate) expect_status: Option<u16>,
    /// A string a healthy answer's body contains.
    #[serde(default)]
    pub(crate) body_contains: Option<String>,
}

/// `providers.prometheus.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrometheusSpec {
    /// Prometheus' base URL.
    pub(crate) url: String,
    /// Values of template placeholders (`namespace`, `service`, ...).
    #[serde(default)]
    pub(crate) args: BTreeMap<String, String>,
    /// What `{revision}` becomes for each revision (default: the revision's name).
    #[serde(default)]
    pub(crate) revision_values: BTreeMap<String, String>,
    /// The environment variable holding a bearer token (never the token itself).
    #[serde(default)]
    pub(crate) bearer_token_env: Option<String>,
    /// How long one query may take.
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) timeout: Option<Duration>,
}

/// `providers.kubernetes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KubernetesSpec {
    /// The namespace of the objects.
    pub(crate) namespace: String,
    /// What moves traffic.
    #[serde(default)]
    pub(crate) router: Option<KubernetesRouter>,
    /// The Deployment of each revision, scaled as the workload.
    #[serde(default)]
    pub(crate) deployments: BTreeMap<String, String>,
    /// A label selector of each revision's pods, checked as the health probe.
    #[serde(default)]
    pub(crate) pods: BTreeMap<String, String>,
}

/// `providers.kubernetes.router`: one of three.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum KubernetesRouter {
    /// A canary without a mesh: replica counts of each revision's Deployment behind one
    /// Service.
    ReplicaRatio {
        /// Replicas in all.
        total: u32,
        /// The Deployment of each revision.
        deployments: BTreeMap<String, String>,
    },
    /// Blue-green: one selector label of a Service switches between revisions.
    ServiceSelector {
        /// The Service.
        service: String,
        /// The selector key whose value is the revision's name.
        label: String,
    },
    /// Gateway API: weights on a named rule of an HTTPRoute.
    HttpRoute {
        /// The HTTPRoute.
        name: String,
        /// The rule's name.
        rule: String,
        /// The Service (and port) of each revision.
        backends: BTreeMap<String, Backend>,
    },
}

/// A Service and port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Backend {
    /// The Service.
    pub(crate) service: String,
    /// Its port.
    #[serde(default)]
    pub(crate) port: Option<i32>,
}

/// `providers.istio`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IstioSpec {
    /// The namespace of the VirtualService.
    pub(crate) namespace: String,
    /// The VirtualService.
    pub(crate) virtual_service: String,
    /// The name of its HTTP route.
    pub(crate) route: String,
    /// Each revision's destination.
    pub(crate) destinations: BTreeMap<String, IstioDestination>,
}

/// An Istio destination: a host and a subset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IstioDestination {
    /// The host.
    pub(crate) host: String,
    /// The subset, if any.
    #[serde(default)]
    pub(crate) subset: Option<String>,
    /// The port, if any.
    #[serde(default)]
    pub(crate) port: Option<u32>,
}

/// `providers.aws_alb`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlbSpec {
    /// The listener whose default action is managed.
    #[serde(default)]
    pub(crate) listener: Option<String>,
    /// Or the listener rule whose action is managed.
    #[serde(default)]
    pub(crate) rule: Option<String>,
    /// The target group of each revision.
    pub(crate) target_groups: BTreeMap<String, String>,
}

/// `providers.postgres`: a database and the migrations the rollout carries out on it. Expand
/// steps run before the candidate takes traffic (an aborted rollout reverts them, in reverse
/// order); contract steps after promotion and the plan's `bake_time`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct PostgresSpec {
    /// The environment variable holding the connection string (`postgresql://...` or
    /// `host=... user=... dbname=...`): never the string itself, which holds a password.
    pub(crate) connection_env: String,
    /// The schema of the tables (default `public`).
    #[serde(default)]
    pub(crate) schema: Option<String>,
    /// How long a statement waits for a lock before it is retried (default 2s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) lock_timeout: Option<Duration>,
    /// How often a statement that hit the lock timeout is tried again (default 10).
    #[serde(default)]
    pub(crate) lock_retries: Option<u32>,
    /// The pause between those tries (default 200ms).
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) retry_pause: Option<Duration>,
    /// Rows per backfill batch (default 1000).
    #[serde(default)]
    pub(crate) batch_size: Option<u32>,
    /// The pause after each backfill batch (default 10ms).
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) batch_pause: Option<Duration>,
    /// A schema of views per revision, `{prefix}_{revision}`, each showing the columns that
    /// revision expects.
    #[serde(default)]
    pub(crate) versioned_views: Option<String>,
    /// The migrations, in the order they expand (and contract).
    pub(crate) migrations: Vec<MigrationSpec>,
}

/// One migration: an id, exactly one operation, and whether its contract step runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "MigrationFields")]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct MigrationSpec {
    /// The migration's id, kept in `cutover.migrations` in the database.
    pub(crate) id: String,
    /// What it does.
    pub(crate) operation: OperationSpec,
    /// Whether its contract step runs after promotion (default true).
    pub(crate) contract: bool,
}

/// The operations of cutover-postgres, as written in a run file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum OperationSpec {
    /// A nullable column, with a default and a batched backfill if given.
    AddColumn {
        /// The table.
        table: String,
        /// The new column.
        column: String,
        /// Its SQL type.
        #[serde(rename = "type")]
        data_type: String,
        /// Its default (SQL).
        #[serde(default)]
        default: Option<String>,
        /// An SQL expression over the row that fills it.
        #[serde(default)]
        backfill: Option<String>,
    },
    /// A rename through a new column kept in step by triggers; contract drops the old one.
    RenameColumn {
        /// The table.
        table: String,
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// `CREATE INDEX CONCURRENTLY`.
    CreateIndex {
        /// The table.
        table: String,
        /// The index.
        name: String,
        /// Its columns (SQL).
        columns: String,
        /// Whether it is unique.
        #[serde(default)]
        unique: bool,
    },
    /// A `CHECK` constraint, added `NOT VALID` and then validated.
    CheckConstraint {
        /// The table.
        table: String,
        /// The constraint.
        name: String,
        /// Its condition (SQL).
        check: String,
    },
    /// `NOT NULL`: a validated check on expand, `SET NOT NULL` on contract.
    SetNotNull {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A new table.
    CreateTable {
        /// The table.
        table: String,
        /// Its columns (SQL).
        columns: String,
    },
    /// Hidden from the candidate's views on expand, dropped on contract.
    DropColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// SQL of your own: `up` on expand, `revert` when rolled back, `contract` on contract.
    RawSql {
        /// Run on expand, in one transaction; must be idempotent.
        up: String,
        /// Undoes `up` (without it the expand is irreversible).
        #[serde(default)]
        revert: Option<String>,
        /// Run on contract.
        #[serde(default)]
        contract: Option<String>,
    },
}

/// A migration as written: `id`, `contract` and one operation key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationFields {
    id: String,
    #[serde(default = "yes")]
    contract: bool,
    add_column: Option<Value>,
    rename_column: Option<Value>,
    create_index: Option<Value>,
    check_constraint: Option<Value>,
    set_not_null: Option<Value>,
    create_table: Option<Value>,
    drop_column: Option<Value>,
    raw_sql: Option<Value>,
}

fn yes() -> bool {
    true
}

impl TryFrom<MigrationFields> for MigrationSpec {
    type Error = String;

    fn try_from(m: MigrationFields) -> Result<Self, String> {
        let given: Vec<(&str, Value)> = [
            ("add_column", m.add_column),
            ("rename_column", m.rename_column),
            ("create_index", m.create_index),
            ("check_constraint", m.check_constraint),
            ("set_not_null", m.set_not_null),
            ("create_table", m.create_table),
            ("drop_column", m.drop_column),
            ("raw_sql", m.raw_sql),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let mut given = given.into_iter();
        let (Some((kind, fields)), None) = (given.next(), given.next()) else {
            return Err(format!(
                "migration `{}` needs exactly one operation: add_column, rename_column, \
                 create_index, check_constraint, set_not_null, create_table, drop_column or \
                 raw_sql",
                m.id
            ));
        };
        let operation = serde_json::from_value(serde_json::json!({ kind: fields }))
            .map_err(|e| format!("migration `{}`: {kind}: {e}", m.id))?;
        Ok(MigrationSpec {
            id: m.id,
            operation,
            contract: m.contract,
        })
    }
}

fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| {
        humantime::parse_duration(&t)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration `{t}`: {e}")))
    })
    .transpose()
}

/// Reads a run file (or a bare plan) from `path`.
pub(crate) fn read(path: &Path) -> Result<RunFile, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", path.display())))?;
    parse(&text, path)
}

/// Parses a run file; errors name the file and the field (`cutover lint` gives line and
/// column).
pub(crate) fn parse(text: &str, path: &Path) -> Result<RunFile, Failure> {
    let at = |what: String| {
        Failure::invalid(format!(
            "{}: {what} (run `cutover lint {}` for every error with its line)",
            path.display(),
            path.display()
        ))
    };
    let mut value: Value = serde_saphyr::from_str(text).map_err(|e| at(e.to_string()))?;
    let Some(map) = value.as_object_mut() else {
        return Err(at("a plan must be a mapping with a `strategy`".into()));
    };
    let rollout = map.remove("rollout").unwrap_or(Value::Null);
    let providers = map.remove("providers").unwrap_or(Value::Null);
    let rollout: RolloutSection = section("rollout", rollout).map_err(at)?;
    let providers: Providers = section("providers", providers).map_err(at)?;
    let plan = Plan::from_json(&value.to_string()).map_err(|e| at(e.to_string()))?;
    Ok(RunFile {
        rollout,
        providers,
        plan,
    })
}

/// Deserializes one section (null: its default), naming the field at fault.
pub(crate) fn section<T: for<'de> Deserialize<'de> + Default>(
    name: &str,
    value: Value,
) -> Result<T, String> {
    if value.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("{name}: {}", e.inner())
        } else {
            format!("{name}.{path}: {}", e.inner())
        }
    })
}

impl RunFile {
    /// The rollout id: `--id`, else `rollout.id`, else the file's stem.
    pub(crate) fn id(&self, flag: Option<&str>, path: &Path) -> String {
        flag.map(str::to_owned)
            .or_else(|| self.rollout.id.clone())
            .unwrap_or_else(|| {
                path.file_stem().map_or_else(
                    || "rollout".to_owned(),
                    |s| s.to_string_lossy().into_owned(),
                )
            })
    }

    /// The stable and candidate revisions.
    pub(crate) fn revisions(&self) -> Result<(String, String), Failure> {
        match (&self.rollout.stable, &self.rollout.candidate) {
            (Some(s), Some(c)) => Ok((s.clone(), c.clone())),
            _ => Err(Failure::invalid(
                "the run file needs `rollout: { stable: NAME, candidate: NAME }`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_file_has_a_plan_and_providers() {
        let file = parse(
            r"
rollout: { id: checkout, stable: v1, candidate: v2 }
providers:
  local_proxy: { listen: 127.0.0.1:0, upstreams: { v1: 127.0.0.1:9001, v2: 127.0.0.1:9002 } }
  prometheus: { prom: { url: 'http://127.0.0.1:9090', bearer_token_env: PROM_TOKEN } }
  kubernetes: { namespace: shop, router: { replica_ratio: { total: 4, deployments: { v1: a, v2: b } } } }
strategy: { canary: { steps: [ { set_weight: 10 } ] } }
",
            Path::new("checkout.yaml"),
        )
        .unwrap();
        assert_eq!(file.id(None, Path::new("x.yaml")), "checkout");
        assert_eq!(file.revisions().unwrap(), ("v1".into(), "v2".into()));
        assert_eq!(file.providers.local_proxy.unwrap().metrics, "proxy");
        assert!(matches!(
            file.providers.kubernetes.unwrap().router,
            Some(KubernetesRouter::ReplicaRatio { total: 4, .. })
        ));
    }

    #[test]
    fn errors_name_the_section_and_field() {
        let err = parse(
            "providers: { local_proxy: { upstream: {} } }\nstrategy: { rolling: { replicas: 1 } }",
            Path::new("p.yaml"),
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("providers.local_proxy.upstream: unknown field"),
            "{err}"
        );
        let err = parse("strategy: { canary: { steps: [] } }", Path::new("p.yaml")).unwrap_err();
        assert!(err.message.contains("strategy.canary.steps"), "{err}");
    }

    #[test]
    fn postgres_migrations_name_one_operation_each() {
        let file = parse(
            r"
rollout: { stable: v1, candidate: v2 }
providers:
  postgres:
    connection_env: DATABASE_URL
    migrations:
      - { id: add-email, add_column: { table: users, column: email, type: text, backfill: 'lower(name)' } }
      - { id: rename, contract: false, rename_column: { table: users, from: name, to: full_name } }
strategy: { canary: { steps: [ { set_weight: 10 } ] } }
",
            Path::new("p.yaml"),
        )
        .unwrap();
        let pg = file.providers.postgres.unwrap();
        assert_eq!(pg.connection_env, "DATABASE_URL");
        assert_eq!(pg.migrations.len(), 2);
        assert!(pg.migrations[0].contract, "contract by default");
        assert!(!pg.migrations[1].contract);
        assert_eq!(
            pg.migrations[1].operation,
            OperationSpec::RenameColumn {
                table: "users".into(),
                from: "name".into(),
                to: "full_name".into()
            }
        );
        let err = |migration: &str| {
            parse(
                &format!(
                    "providers: {{ postgres: {{ connection_env: DB, migrations: [ {migration} ] }} }}\n\
                     strategy: {{ canary: {{ steps: [ {{ set_weight: 10 }} ] }} }}"
                ),
                Path::new("p.yaml"),
            )
            .unwrap_err()
            .message
        };
        let two = err(
            "{ id: x, drop_column: { table: t, column: c }, create_table: { table: t, columns: 'id int' } }",
        );
        assert!(
            two.contains(
                "providers.postgres.migrations[0]: migration `x` needs exactly one operation"
            ),
            "{two}"
        );
        let none = err("{ id: x }");
        assert!(none.contains("needs exactly one operation"), "{none}");
        let field = err("{ id: x, drop_column: { table: t, col: c } }");
        assert!(
            field.contains("migration `x`: drop_column: unknown field `col`"),
            "{field}"
        );
        let secret = parse(
            "providers: { postgres: { connection: 'postgresql://u:pw@h/db', migrations: [] } }\n\
             strategy: { canary: { steps: [ { set_weight: 10 } ] } }",
            Path::new("p.yaml"),
        )
        .unwrap_err()
        .message;
        assert!(
            secret.contains("providers.postgres.connection: unknown field `connection`"),
            "{secret}"
        );
        assert!(!secret.contains("pw@"), "{secret}");
    }
}
