//! [`PrometheusSource`]: the [`MetricSource`] that answers a plan's metrics with PromQL.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{MetricQuery, MetricSource, ProviderError, RevisionId, Samples};

use crate::response::counts;
use crate::template::{REVISION, WINDOW, promql_duration};
use crate::{Args, Filled, PrometheusClient, Template, templates};

/// How a registered query is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// One instant query at the server's current time.
    Instant,
    /// A time series over the metric's window: the filled expression `e` is sent as the
    /// subquery `(e)[<window>:<step>]`, so the samples are one value per step. `{window}`
    /// inside `e` is the step unless the query's arguments set `window` (set it to at least
    /// twice the scrape interval for `rate()`). Only for value templates.
    Range {
        /// The resolution of the series.
        step: Duration,
    },
}

/// A template registered under a name, with arguments of its own and a [`Mode`].
///
/// ```
/// use std::time::Duration;
/// use cutover_prometheus::{Query, templates};
///
/// // A p99 series, one value every 10 s, each over the last 30 s.
/// let q = Query::new(templates::local::LATENCY_QUANTILE)
///     .arg("quantile", "0.99")
///     .arg("window", "30s")
///     .range(Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    template: Template,
    args: Args,
    mode: Mode,
}

impl Query {
    /// An instant query of `template`.
    pub fn new(template: Template) -> Self {
        Query {
            template,
            args: Args::new(),
            mode: Mode::Instant,
        }
    }

    /// Sets a placeholder's value for this query only (over the source's arguments).
    pub fn arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.insert(name, value);
        self
    }

    /// Evaluates it as a series with one value per `step` ([`Mode::Range`]).
    pub fn range(mut self, step: Duration) -> Self {
        self.mode = Mode::Range { step };
        self
    }

    /// The template.
    pub fn template(&self) -> &Template {
        &self.template
    }
}

/// A [`MetricSource`] over Prometheus.
///
/// A plan's metric names a query (`query: local/error-rate`). The source looks the name up
/// among its registered queries, every built-in template ([`templates`]) to begin with, and
/// fills the template with, in increasing precedence: the source's arguments ([`arg`]), the
/// query's own, `{revision}` (the revision's name or its [`revision_value`]) and `{window}`
/// (the metric's window). A name that is not registered is taken as PromQL itself, with the
/// same placeholders, evaluated as a value template.
///
/// [`arg`]: PrometheusSource::arg
/// [`revision_value`]: PrometheusSource::revision_value
///
/// ```
/// use cutover_prometheus::{PrometheusClient, PrometheusSource, Query, Template};
///
/// let client = PrometheusClient::builder("http://127.0.0.1:9090").build()?;
/// let source = PrometheusSource::new("prometheus", client)
///     .arg("namespace", "shop")
///     .arg("service", "checkout")
///     .revision_value("v2".parse()?, "checkout-v2")
///     .register("checkout-errors", Query::new(Template::custom_counts(
///         "checkout-errors",
///         r#"sum(increase(http_requests_total{app="{service}",version="{revision}",code=~"5.."}[{window}]))"#,
///         r#"sum(increase(http_requests_total{app="{service}",version="{revision}"}[{window}]))"#,
///     )));
/// // Plan: - { name: errors, source: prometheus, query: checkout-errors, window: 2m, max: 0.01 }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    name: String,
    client: PrometheusClient,
    args: Args,
    revisions: BTreeMap<RevisionId, String>,
    queries: BTreeMap<String, Query>,
}

impl PrometheusSource {
    /// A source called `name` (for records) over `client`, with every built-in template
    /// registered under its own name.
    pub fn new(name: impl Into<String>, client: PrometheusClient) -> Self {
        let queries = templates::all()
            .map(|t| (t.name().to_owned(), Query::new(t)))
            .collect();
        PrometheusSource {
            name: name.into(),
            client,
            args: Args::new(),
            revisions: BTreeMap::new(),
            queries,
        }
    }

    /// Sets a placeholder's value for every query (`namespace`, `service`, `ingress`...).
    pub fn arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.insert(name, value);
        self
    }

    /// Fills `{revision}` with `value` instead of the revision's name for `revision` (the
    /// pod label, Service or version string the metrics carry).
    pub fn revision_value(mut self, revision: RevisionId, value: impl Into<String>) -> Self {
        self.revisions.insert(revision, value.into());
        self
    }

    /// Registers `query` under `name` (replacing a query of that name).
    pub fn register(mut self, name: impl Into<String>, query: Query) -> Self {
        self.queries.insert(name.into(), query);
        self
    }

    /// Registers `template` under its own name as an instant query.
    pub fn template(self, template: Template) -> Self {
        let name = template.name().to_owned();
        self.register(name, Query::new(template))
    }

    /// The client.
    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }

    /// The PromQL a metric query becomes, without sending it.
    pub fn promql(&self, query: &MetricQuery) -> Result<Filled, ProviderError> {
        let (registered, mode) = self.resolve(query);
        let mut args = self.args.merged(&registered.args);
        let revision = self
            .revisions
            .get(&query.revision)
            .cloned()
            .unwrap_or_else(|| query.revision.as_str().to_owned());
        args.insert(REVISION, revision);
        let window = promql_duration(query.window)?;
        match mode {
            Mode::Instant => {
                args.insert(WINDOW, window.clone());
                Ok(registered.template.fill(&args)?)
            }
            Mode::Range { step } => {
                let step = promql_duration(step)?;
                if !registered.args.contains(WINDOW) {
                    args.insert(WINDOW, step.clone());
                }
                match registered.template.fill(&args)? {
                    Filled::Value(e) => Ok(Filled::Value(format!("({e})[{window}:{step}]"))),
                    Filled::Counts { .. } => Err(ProviderError::permanent(format!(
                        "query `{}` is a counts template and cannot be a range",
                        query.query
                    ))),
                }
            }
        }
    }

    fn resolve(&self, query: &MetricQuery) -> (Query, Mode) {
        match self.queries.get(&query.query) {
            Some(q) => (q.clone(), q.mode),
            None => (
                Query::new(Template::custom_value(
                    query.metric.clone(),
                    query.query.clone(),
                )),
                Mode::Instant,
            ),
        }
    }
}

#[async_trait]
impl MetricSource for PrometheusSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError> {
        let what = format!(
            "metric `{}` (query `{}`) for revision {}",
            query.metric, query.query, query.revision
        );
        let unknown = !self.queries.contains_key(&query.query)
            && !query.query.contains(['(', '{', ' '])
            && query.query.contains('/');
        if unknown {
            return Err(ProviderError::permanent(format!(
                "{what}: no query `{}` is registered on {}; registered: {}",
                query.query,
                self.name,
                self.queries.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        match self.promql(query)? {
            Filled::Value(promql) => self.client.query(&promql).await?.to_values(&what),
            Filled::Counts { events, total } => {
                let (events, total) =
                    tokio::join!(self.client.query(&events), self.client.query(&total));
                Ok(counts(events?.to_number(&what)?, total?.to_number(&what)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> PrometheusSource {
        let client = PrometheusClient::builder("http://127.0.0.1:9")
            .build()
            .unwrap();
        PrometheusSource::new("prom", client)
            .arg("namespace", "prod")
            .arg("service", "reviews")
    }

    fn mq(query: &str, revision: &str, secs: u64) -> MetricQuery {
        MetricQuery::new(
            "m",
            query,
            revision.parse().unwrap(),
            Duration::from_secs(secs),
        )
    }

    #[test]
    fn registered_names_fill_revision_and_window() {
        let s = source().revision_value("v2".parse().unwrap(), "reviews-v2");
        let Filled::Counts { events, .. } = s.promql(&mq("istio/error-rate", "v2", 120)).unwrap()
        else {
            panic!("counts")
        };
        assert!(
            events.contains("destination_version=\"reviews-v2\""),
            "{events}"
        );
        assert!(events.contains("destination_service_name=\"reviews\""));
        assert!(events.ends_with("[120s]))"), "{events}");
    }

    #[test]
    fn inline_promql_is_a_value_template_and_hostile_revisions_stay_quoted() {
        let q = source()
            .promql(&mq(
                r#"up{version="{revision}"}"#,
                "x\"} or vector(1) #",
                60,
            ))
            .unwrap();
        assert_eq!(q.value().unwrap(), r#"up{version="x\"} or vector(1) #"}"#);
    }

    #[test]
    fn range_queries_become_subqueries() {
        let s = source().register(
            "p99",
            Query::new(templates::local::LATENCY_QUANTILE)
                .arg("quantile", "0.99")
                .range(Duration::from_secs(5)),
        );
        let q = s.promql(&mq("p99", "v1", 60)).unwrap();
        let q = q.value().unwrap();
        assert!(q.starts_with("(histogram_quantile(0.99,"), "{q}");
        assert!(q.ends_with("[5s]))))[60s:5s]"), "{q}");
        let counts = source().register(
            "c",
            Query::new(templates::local::ERROR_RATE).range(Duration::from_secs(5)),
        );
        assert!(counts.promql(&mq("c", "v1", 60)).is_err());
    }

    #[tokio::test]
    async fn unknown_names_and_bad_windows_are_permanent_without_a_request() {
        // The client points at a closed port: a request would be a transient error.
        let err = source()
            .query(&mq("local/error-rat", "v1", 60))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), cutover_core::ErrorKind::Permanent);
        assert!(err.message().contains("local/error-rate"), "{err}");
        let err = source()
            .query(&MetricQuery::new(
                "m",
                "local/error-rate",
                "v1".parse().unwrap(),
                Duration::ZERO,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), cutover_core::ErrorKind::Permanent);
        let err = source().query(&mq("istio/error-rate", "v1", 60)).await;
        assert!(err.is_err());
        let missing = PrometheusSource::new(
            "p",
            PrometheusClient::builder("http://127.0.0.1:9")
                .build()
                .unwrap(),
        )
        .query(&mq("istio/error-rate", "v1", 60))
        .await
        .unwrap_err();
        assert!(missing.message().contains("{namespace}"), "{missing}");
    }
}
