//! The providers a run file describes, built and given to the rollout builder. Each kind
//! needs the build feature of the same name; without it the run fails with a clear message.

use cutover::RolloutBuilder;

use crate::exit::Failure;
use crate::runfile::Providers;

/// What the providers leave running beside the rollout: the local proxy, which serves only
/// while this process lives.
#[derive(Debug, Default)]
pub(crate) struct Running {
    /// The local proxy, if the run file has one.
    #[cfg(feature = "local")]
    pub(crate) proxy: Option<cutover::local::LocalProxy>,
}

/// Starts and connects every provider of `providers` and adds it to `builder`.
/// `revisions` is (stable, candidate).
pub(crate) async fn attach(
    providers: &Providers,
    revisions: &(String, String),
    mut builder: RolloutBuilder,
) -> Result<(RolloutBuilder, Running), Failure> {
    let mut running = Running::default();
    if let Some(spec) = &providers.local_proxy {
        builder = local::proxy(spec, revisions, builder, &mut running).await?;
    }
    if let Some(spec) = &providers.http_probe {
        builder = local::probe(spec, builder)?;
    }
    for (name, spec) in &providers.prometheus {
        builder = prometheus::source(name, spec, builder)?;
    }
    if let Some(spec) = &providers.kubernetes {
        builder = kubernetes::attach(spec, builder).await?;
    }
    if let Some(spec) = &providers.istio {
        builder = istio::router(spec, builder).await?;
    }
    if let Some(spec) = &providers.aws_alb {
        builder = alb::router(spec, builder).await?;
    }
    if let Some(spec) = &providers.postgres {
        builder = postgres::migrations(spec, builder)?;
    }
    Ok((builder, running))
}

#[cfg_attr(
    all(
        feature = "local",
        feature = "prometheus",
        feature = "kubernetes",
        feature = "istio",
        feature = "aws-alb",
        feature = "postgres"
    ),
    allow(dead_code)
)]
fn missing(feature: &str) -> Failure {
    Failure::invalid(format!(
        "providers.{feature} needs the `{feature}` feature, which this build of cutover lacks \
         (cargo install --path crates/cli --features {feature})",
        feature = feature.replace('_', "-")
    ))
}

fn revision(name: &str, at: &str) -> Result<cutover::RevisionId, Failure> {
    name.parse()
        .map_err(|e| Failure::invalid(format!("{at}: invalid revision `{name}`: {e}")))
}

#[cfg(feature = "local")]
mod local {
    use super::{Failure, RolloutBuilder, Running, revision};
    use crate::exit::chain;
    use crate::runfile::{HttpProbeSpec, LocalProxySpec};
    use cutover::local::{HttpProbe, LocalProxy};

    pub(super) async fn proxy(
        spec: &LocalProxySpec,
        revisions: &(String, String),
        builder: RolloutBuilder,
        running: &mut Running,
    ) -> Result<RolloutBuilder, Failure> {
        let mut proxy = LocalProxy::builder("local-proxy").listen(spec.listen);
        if let Some(admin) = spec.admin {
            proxy = proxy.admin(admin);
        }
        if let Some(timeout) = spec.upstream_timeout {
            proxy = proxy.upstream_timeout(timeout);
        }
        let (stable, candidate) = upstreams(spec, revisions)?;
        // The stable revision's upstream first: it takes all traffic at start.
        for name in [&stable, &candidate] {
            proxy = proxy.upstream(name.clone(), spec.upstreams[name]);
        }
        let proxy = proxy.start().await.map_err(|e| {
            Failure::failed(format!(
                "cannot start the local proxy on {}: {}",
                spec.listen,
                chain(&e)
            ))
        })?;
        let builder = builder
            .router(proxy.router())
            .metric_source(spec.metrics.clone(), proxy.metrics());
        running.proxy = Some(proxy);
        Ok(builder)
    }

    /// The rollout's (stable, candidate), once checked to be exactly the proxy's upstreams.
    fn upstreams(
        spec: &LocalProxySpec,
        revisions: &(String, String),
    ) -> Result<(String, String), Failure> {
        let (stable, candidate) = revisions.clone();
        for name in [&stable, &candidate] {
            if !spec.upstreams.contains_key(name) {
                return Err(Failure::invalid(format!(
                    "providers.local_proxy.upstreams has no entry for revision `{name}`"
                )));
            }
        }
        if let Some(extra) = spec
            .upstreams
            .keys()
            .find(|k| **k != stable && **k != candidate)
        {
            return Err(Failure::invalid(format!(
                "providers.local_proxy.upstreams.{extra} is neither the stable ({stable}) nor the candidate ({candidate}) revision"
            )));
        }
        Ok((stable, candidate))
    }

    pub(super) fn probe(
        spec: &HttpProbeSpec,
        builder: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        let mut probe = HttpProbe::new("http-probe");
        for (name, url) in &spec.urls {
            revision(name, "providers.http_probe.urls")?;
            let uri = url.parse().map_err(|e| {
                Failure::invalid(format!(
                    "providers.http_probe.urls.{name}: invalid URL `{url}`: {e}"
                ))
            })?;
            probe = probe.url(name.clone(), uri);
        }
        if let Some(timeout) = spec.timeout {
            probe = probe.timeout(timeout);
        }
        if let Some(status) = spec.expect_status {
            probe = probe.expect_status(status);
        }
        if let Some(body) = &spec.body_contains {
            probe = probe.body_contains(body.clone());
        }
        Ok(builder.health_probe(probe))
    }
}

#[cfg(not(feature = "local"))]
mod local {
    use super::{Failure, RolloutBuilder, Running, missing};
    use crate::runfile::{HttpProbeSpec, LocalProxySpec};

    pub(super) async fn proxy(
        _: &LocalProxySpec,
        _: &(String, String),
        _: RolloutBuilder,
        _: &mut Running,
    ) -> Result<RolloutBuilder, Failure> {
        Err(missing("local"))
    }

    pub(super) fn probe(_: &HttpProbeSpec, _: RolloutBuilder) -> Result<RolloutBuilder, Failure> {
        Err(missing("local"))
    }
}

#[cfg(feature = "prometheus")]
mod prometheus {
    use super::{Failure, RolloutBuilder, revision};
    use crate::exit::chain;
    use crate::runfile::PrometheusSpec;
    use cutover::prometheus::{PrometheusClient, PrometheusSource};

    pub(super) fn source(
        name: &str,
        spec: &PrometheusSpec,
        builder: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        let at = format!("providers.prometheus.{name}");
        let mut client = PrometheusClient::builder(spec.url.clone());
        if let Some(timeout) = spec.timeout {
            client = client.timeout(timeout);
        }
        if let Some(var) = &spec.bearer_token_env {
            let token = std::env::var(var).map_err(|_| {
                Failure::invalid(format!(
                    "{at}.bearer_token_env: the environment variable `{var}` is not set"
                ))
            })?;
            client = client.bearer_token(token);
        }
        let client = client
            .build()
            .map_err(|e| Failure::invalid(format!("{at}: {}", chain(&e))))?;
        let mut source = PrometheusSource::new(name, client);
        for (k, v) in &spec.args {
            source = source.arg(k.clone(), v.clone());
        }
        for (r, v) in &spec.revision_values {
            source = source.revision_value(revision(r, &format!("{at}.revision_values"))?, v);
        }
        Ok(builder.metric_source(name, source))
    }
}

#[cfg(not(feature = "prometheus"))]
mod prometheus {
    use super::{Failure, RolloutBuilder, missing};
    use crate::runfile::PrometheusSpec;

    pub(super) fn source(
        _: &str,
        _: &PrometheusSpec,
        _: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        Err(missing("prometheus"))
    }
}

#[cfg(any(feature = "kubernetes", feature = "istio"))]
async fn kube_client() -> Result<cutover::kubernetes::kube::Client, Failure> {
    cutover::kubernetes::kube::Client::try_default()
        .await
        .map_err(|e| {
            Failure::failed(format!(
                "no Kubernetes client (KUBECONFIG or in-cluster): {}",
                crate::exit::chain(&e)
            ))
        })
}

#[cfg(feature = "kubernetes")]
mod kubernetes {
    use super::{Failure, RolloutBuilder, kube_client, revision};
    use crate::runfile::{KubernetesRouter, KubernetesSpec};
    use cutover::kubernetes::{
        DeploymentWorkload, HttpRouteRouter, PodProbe, ReplicaRatioRouter, ServiceSelectorRouter,
    };

    pub(super) async fn attach(
        spec: &KubernetesSpec,
        mut builder: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        let client = kube_client().await?;
        let ns = spec.namespace.as_str();
        match &spec.router {
            Some(KubernetesRouter::ReplicaRatio { total, deployments }) => {
                let mut router = ReplicaRatioRouter::new(client.clone(), ns, *total);
                for (r, d) in deployments {
                    let at = "providers.kubernetes.router.replica_ratio.deployments";
                    router = router.revision(revision(r, at)?, d.clone());
                }
                builder = builder.router(router);
            }
            Some(KubernetesRouter::ServiceSelector { service, label }) => {
                builder = builder.router(ServiceSelectorRouter::new(
                    client.clone(),
                    ns,
                    service,
                    label,
                ));
            }
            Some(KubernetesRouter::HttpRoute {
                name,
                rule,
                backends,
            }) => {
                let mut router = HttpRouteRouter::new(client.clone(), ns, name, rule);
                for (r, b) in backends {
                    let at = "providers.kubernetes.router.http_route.backends";
                    router = router.backend(revision(r, at)?, &b.service, b.port);
                }
                builder = builder.router(router);
            }
            None => {}
        }
        if !spec.deployments.is_empty() {
            let mut workload = DeploymentWorkload::new(client.clone(), ns);
            for (r, d) in &spec.deployments {
                workload =
                    workload.revision(revision(r, "providers.kubernetes.deployments")?, d.clone());
            }
            builder = builder.workload(workload);
        }
        if !spec.pods.is_empty() {
            let mut probe = PodProbe::new(client, ns);
            for (r, selector) in &spec.pods {
                probe = probe.revision(revision(r, "providers.kubernetes.pods")?, selector.clone());
            }
            builder = builder.health_probe(probe);
        }
        Ok(builder)
    }
}

#[cfg(not(feature = "kubernetes"))]
mod kubernetes {
    use super::{Failure, RolloutBuilder, missing};
    use crate::runfile::KubernetesSpec;

    pub(super) async fn attach(
        _: &KubernetesSpec,
        _: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        Err(missing("kubernetes"))
    }
}

#[cfg(all(feature = "istio", feature = "kubernetes"))]
mod istio {
    use super::{Failure, RolloutBuilder, kube_client, revision};
    use crate::runfile::IstioSpec;
    use cutover::istio::{Destination, IstioRouter};

    pub(super) async fn router(
        spec: &IstioSpec,
        builder: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        let client = kube_client().await?;
        let mut router =
            IstioRouter::new(client, &spec.namespace, &spec.virtual_service, &spec.route);
        for (r, d) in &spec.destinations {
            let mut destination = match &d.subset {
                Some(subset) => Destination::subset(d.host.clone(), subset.clone()),
                None => Destination::host(d.host.clone()),
            };
            if let Some(port) = d.port {
                destination = destination.with_port(port);
            }
            router = router.destination(revision(r, "providers.istio.destinations")?, destination);
        }
        Ok(builder.router(router))
    }
}

#[cfg(not(all(feature = "istio", feature = "kubernetes")))]
mod istio {
    use super::{Failure, RolloutBuilder, missing};
    use crate::runfile::IstioSpec;

    pub(super) async fn router(
        _: &IstioSpec,
        _: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        Err(missing("istio"))
    }
}

#[cfg(feature = "aws-alb")]
mod alb {
    use super::{Failure, RolloutBuilder};
    use crate::exit::chain;
    use crate::runfile::AlbSpec;
    use cutover::aws_alb::{AlbRouter, client_from_env};

    pub(super) async fn router(
        spec: &AlbSpec,
        builder: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        let client = client_from_env().await;
        let mut router = AlbRouter::builder(client);
        if let Some(listener) = &spec.listener {
            router = router.listener(listener.clone());
        }
        if let Some(rule) = &spec.rule {
            router = router.rule(rule.clone());
        }
        for (r, arn) in &spec.target_groups {
            router = router.target_group(r.clone(), arn.clone());
        }
        let router = router
            .build()
            .map_err(|e| Failure::invalid(format!("providers.aws_alb: {}", chain(&e))))?;
        Ok(builder.router(router))
    }
}

#[cfg(not(feature = "aws-alb"))]
mod alb {
    use super::{Failure, RolloutBuilder, missing};
    use crate::runfile::AlbSpec;

    pub(super) async fn router(_: &AlbSpec, _: RolloutBuilder) -> Result<RolloutBuilder, Failure> {
        Err(missing("aws_alb"))
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::collections::BTreeSet;

    use super::{Failure, RolloutBuilder};
    use crate::runfile::{OperationSpec, PostgresSpec};
    use cutover::postgres::{Batch, Operation, Postgres};

    /// The database of `spec` and its migrations: every expand step, then every contract step,
    /// each in the order written.
    pub(super) fn migrations(
        spec: &PostgresSpec,
        mut builder: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        let var = &spec.connection_env;
        // Never the variable's value in a message: it holds a password.
        let connection = std::env::var(var).map_err(|_| {
            Failure::invalid(format!(
                "providers.postgres.connection_env: the environment variable `{var}` is not set"
            ))
        })?;
        let mut db = Postgres::new(&connection).map_err(|_| {
            Failure::invalid(format!(
                "providers.postgres.connection_env: `{var}` does not hold a PostgreSQL \
                 connection string (postgresql://USER@HOST:PORT/DB or host=... user=... dbname=...)"
            ))
        })?;
        if let Some(schema) = &spec.schema {
            db = db.schema(schema.clone());
        }
        if let Some(timeout) = spec.lock_timeout {
            db = db.lock_timeout(timeout);
        }
        if spec.lock_retries.is_some() || spec.retry_pause.is_some() {
            db = db.lock_retries(
                spec.lock_retries.unwrap_or(10),
                spec.retry_pause
                    .unwrap_or(std::time::Duration::from_millis(200)),
            );
        }
        let default = Batch::default();
        db = db.batch(Batch {
            size: spec.batch_size.unwrap_or(default.size),
            pause: spec.batch_pause.unwrap_or(default.pause),
        });
        if let Some(prefix) = &spec.versioned_views {
            db = db.versioned_views(prefix.clone());
        }
        if spec.migrations.is_empty() {
            return Err(Failure::invalid(
                "providers.postgres.migrations: list at least one migration",
            ));
        }
        let mut ids = BTreeSet::new();
        let mut migrations = Vec::with_capacity(spec.migrations.len());
        for (i, m) in spec.migrations.iter().enumerate() {
            if !ids.insert(m.id.as_str()) {
                return Err(Failure::invalid(format!(
                    "providers.postgres.migrations[{i}].id: `{}` is the id of an earlier migration",
                    m.id
                )));
            }
            migrations.push((
                db.migration(m.id.clone(), operation(&m.operation)),
                m.contract,
            ));
        }
        for (migration, _) in &migrations {
            builder = builder.migration(migration.expand());
        }
        for (migration, contract) in &migrations {
            if *contract {
                builder = builder.migration(migration.contract());
            }
        }
        Ok(builder)
    }

    fn operation(spec: &OperationSpec) -> Operation {
        match spec.clone() {
            OperationSpec::AddColumn {
                table,
                column,
                data_type,
                default,
                backfill,
            } => {
                let mut op = Operation::add_column(table, column, data_type);
                if let Some(default) = default {
                    op = op.with_default(default);
                }
                if let Some(expr) = backfill {
                    op = op.backfill(expr);
                }
                op
            }
            OperationSpec::RenameColumn { table, from, to } => {
                Operation::rename_column(table, from, to)
            }
            OperationSpec::CreateIndex {
                table,
                name,
                columns,
                unique,
            } => {
                let op = Operation::create_index(table, name, columns);
                if unique { op.unique() } else { op }
            }
            OperationSpec::CheckConstraint { table, name, check } => {
                Operation::check_constraint(table, name, check)
            }
            OperationSpec::SetNotNull { table, column } => Operation::set_not_null(table, column),
            OperationSpec::CreateTable { table, columns } => {
                Operation::create_table(table, columns)
            }
            OperationSpec::DropColumn { table, column } => Operation::drop_column(table, column),
            OperationSpec::RawSql {
                up,
                revert,
                contract,
            } => {
                let mut op = Operation::raw_sql(up);
                if let Some(sql) = revert {
                    op = op.revert_sql(sql);
                }
                if let Some(sql) = contract {
                    op = op.contract_sql(sql);
                }
                op
            }
        }
    }
}

#[cfg(not(feature = "postgres"))]
mod postgres {
    use super::{Failure, RolloutBuilder, missing};
    use crate::runfile::PostgresSpec;

    pub(super) fn migrations(
        _: &PostgresSpec,
        _: RolloutBuilder,
    ) -> Result<RolloutBuilder, Failure> {
        Err(missing("postgres"))
    }
}
