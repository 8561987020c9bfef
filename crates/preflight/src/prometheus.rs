//! Prometheus: no firing alerts, a query's value within bounds ("monitoring active"), and an
//! SLO burn rate over two windows.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::Deserialize;

use crate::SecretUrl;

/// GETs `path` on the Prometheus at `base` and returns the `data` of a `success` answer.
async fn api(
    base: &SecretUrl,
    path: &str,
    query: &[(&str, &str)],
) -> Result<serde_json::Value, String> {
    let client = crate::client()?;
    let url = format!("{}{path}", base.expose().trim_end_matches('/'));
    let response = client
        .get(url)
        .query(query)
        .send()
        .await
        .map_err(|e| format!("Prometheus at {base}: {}", e.without_url()))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| {
        format!(
            "Prometheus at {base} answered {status} without JSON: {}",
            e.without_url()
        )
    })?;
    if body["status"] != "success" {
        return Err(format!(
            "Prometheus at {base} answered {status}: {}",
            body["error"].as_str().unwrap_or("no error message")
        ));
    }
    Ok(body["data"].clone())
}

/// The values of an instant query's vector (or scalar) result, with each series' labels.
async fn values(
    base: &SecretUrl,
    promql: &str,
) -> Result<Vec<(BTreeMap<String, String>, f64)>, String> {
    let data = api(base, "/api/v1/query", &[("query", promql)]).await?;
    let parse = |v: &serde_json::Value| v[1].as_str().and_then(|s| s.parse::<f64>().ok());
    match data["resultType"].as_str() {
        Some("vector") => Ok(data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let labels = serde_json::from_value(s["metric"].clone()).unwrap_or_default();
                parse(&s["value"]).map(|v| (labels, v))
            })
            .collect()),
        Some("scalar") => Ok(parse(&data["result"])
            .map(|v| vec![(BTreeMap::new(), v)])
            .unwrap_or_default()),
        other => Err(format!(
            "`{promql}` gave a {} result; use an instant vector or scalar",
            other.unwrap_or("missing")
        )),
    }
}

/// No alert matching `labels` is firing.
///
/// ```yaml
/// prometheus_alerts: { url: "http://prometheus:9090", labels: { service: checkout } }
/// ```
#[derive(Debug, Clone)]
pub struct AlertsCheck {
    url: SecretUrl,
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsParams {
    url: SecretUrl,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl AlertsCheck {
    /// No firing alert at `url` whose labels include all of `labels`.
    pub fn new(url: impl Into<String>, labels: BTreeMap<String, String>) -> Self {
        AlertsCheck {
            url: SecretUrl::new(url),
            labels,
        }
    }

    #[allow(clippy::unnecessary_wraps)] // the registry's factory signature
    pub(crate) fn from_params(p: AlertsParams) -> Result<Self, (String, String)> {
        Ok(AlertsCheck {
            url: p.url,
            labels: p.labels,
        })
    }
}

#[async_trait]
impl Check for AlertsCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let data = match api(&self.url, "/api/v1/alerts", &[]).await {
            Ok(d) => d,
            Err(e) => return CheckResult::error(e).hint("check that Prometheus is reachable"),
        };
        let firing: Vec<String> = data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .filter(|a| {
                self.labels
                    .iter()
                    .all(|(k, v)| a["labels"][k].as_str() == Some(v.as_str()))
            })
            .map(|a| a["labels"]["alertname"].as_str().unwrap_or("?").to_owned())
            .collect();
        let result = if firing.is_empty() {
            CheckResult::pass("no matching alert is firing")
        } else {
            CheckResult::fail(format!("firing: {}", firing.join(", ")))
                .hint("deal with the firing alerts first: a rollout now would hide or worsen them")
        };
        result
            .evidence("url", self.url.redacted())
            .evidence("labels", &self.labels)
            .evidence("firing", firing)
    }
}

/// An instant PromQL query returns at least one series, each within `min`..`max`. With only
/// `min: 1` on `up{job="..."}` it says monitoring is active; an empty result fails.
///
/// ```yaml
/// prometheus_query: { url: "http://prometheus:9090", query: 'up{job="checkout"}', min: 1 }
/// ```
#[derive(Debug, Clone)]
pub struct QueryCheck {
    url: SecretUrl,
    query: String,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryParams {
    url: SecretUrl,
    query: String,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
}

impl QueryCheck {
    pub(crate) fn from_params(p: QueryParams) -> Result<Self, (String, String)> {
        if p.min.is_none() && p.max.is_none() {
            return Err((String::new(), "give `min`, `max` or both".into()));
        }
        Ok(QueryCheck {
            url: p.url,
            query: p.query,
            min: p.min,
            max: p.max,
        })
    }
}

#[async_trait]
impl Check for QueryCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let series = match values(&self.url, &self.query).await {
            Ok(s) => s,
            Err(e) => {
                return CheckResult::error(e)
                    .hint("check the query and that Prometheus is reachable");
            }
        };
        let evidence = |r: CheckResult, values: Vec<f64>| {
            r.evidence("query", &self.query).evidence("values", values)
        };
        if series.is_empty() {
            return evidence(
                CheckResult::fail(format!("`{}` returned no data", self.query)),
                Vec::new(),
            )
            .hint("the service is not being scraped (or the query is wrong): fix monitoring before deploying");
        }
        let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
        let out: Vec<String> = series
            .iter()
            .filter(|(_, v)| self.min.is_some_and(|m| *v < m) || self.max.is_some_and(|m| *v > m))
            .map(|(labels, v)| {
                let name: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{{{}}} = {v}", name.join(","))
            })
            .collect();
        let bounds = match (self.min, self.max) {
            (Some(a), Some(b)) => format!("between {a} and {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => String::new(),
        };
        if out.is_empty() {
            evidence(
                CheckResult::pass(format!("{} series, all {bounds}", values.len())),
                values,
            )
        } else {
            evidence(
                CheckResult::fail(format!("not {bounds}: {}", out.join("; "))),
                values,
            )
            .hint("look at the series out of bounds before deploying")
        }
    }
}

/// The SLO error budget is not burning too fast: the burn rate over a short and a long window
/// (two PromQL queries, each giving one number) is not above `max` in *both* (the multiwindow
/// rule: a short spike alone or an old one alone does not stop a rollout).
///
/// ```yaml
/// burn_rate:
///   url: "http://prometheus:9090"
///   short: 'sum(rate(http_errors[5m])) / sum(rate(http_requests[5m])) / 0.001'
///   long: 'sum(rate(http_errors[1h])) / sum(rate(http_requests[1h])) / 0.001'
///   max: 14.4
/// ```
#[derive(Debug, Clone)]
pub struct BurnRateCheck {
    url: SecretUrl,
    short: String,
    long: String,
    max: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BurnRateParams {
    url: SecretUrl,
    short: String,
    long: String,
    max: f64,
}

impl BurnRateCheck {
    #[allow(clippy::unnecessary_wraps)] // the registry's factory signature
    pub(crate) fn from_params(p: BurnRateParams) -> Result<Self, (String, String)> {
        Ok(BurnRateCheck {
            url: p.url,
            short: p.short,
            long: p.long,
            max: p.max,
        })
    }

    async fn one(&self, promql: &str) -> Result<f64, String> {
        let series = values(&self.url, promql).await?;
        match series.as_slice() {
            [(_, v)] => Ok(*v),
            [] => Err(format!("`{promql}` returned no data")),
            _ => Err(format!(
                "`{promql}` returned {} series; aggregate it to one number",
                series.len()
            )),
        }
    }
}

#[async_trait]
impl Check for BurnRateCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let (short, long) = match (self.one(&self.short).await, self.one(&self.long).await) {
            (Ok(s), Ok(l)) => (s, l),
            (Err(e), _) | (_, Err(e)) => {
                return CheckResult::error(e)
                    .hint("check the burn-rate queries and that Prometheus is reachable");
            }
        };
        let result = if short > self.max && long > self.max {
            CheckResult::fail(format!(
                "error budget burning at {short:.2}× (short window) and {long:.2}× (long window), above {}",
                self.max
            ))
            .hint("the service is already burning its error budget: find out why before deploying")
        } else {
            CheckResult::pass(format!(
                "burn rate {short:.2}× (short), {long:.2}× (long); limit {}",
                self.max
            ))
        };
        result
            .evidence("short", short)
            .evidence("long", long)
            .evidence("max", self.max)
    }
}
