//! PromQL templates for Istio's standard metrics, per revision: pure data for the Prometheus
//! metric source.
//!
//! Each [`Template`] is a PromQL string with named placeholders in braces:
//!
//! | placeholder | meaning | Istio label |
//! |---|---|---|
//! | `{namespace}` | namespace of the workloads | `destination_workload_namespace` |
//! | `{service}` | the Service's short name (host-based routing: the revision's Service) | `destination_service_name` |
//! | `{revision}` | the revision's `version` pod label (what a subset selects on) | `destination_version` |
//! | `{window}` | a PromQL range, like `1m` or `5m` | |
//! | `{quantile}` | for latency, a number in 0..1, like `0.99` | |
//!
//! The queries use `reporter="destination"` (the sidecar of the serving pod reports, so
//! requests that never reached the revision are not counted against it).
//!
//! **Escaping is the caller's job.** [`Template::fill`] substitutes the values as given. A
//! value that comes from a user (a revision name, a namespace) must be escaped for a PromQL
//! double-quoted string (backslash and double quote) by the Prometheus metric source before it
//! is passed in; that crate owns the escaping, this one only holds the text.
//!
//! ```
//! use cutover_istio::metrics::REQUEST_SUCCESS_RATE;
//! let query = REQUEST_SUCCESS_RATE.fill(&[
//!     ("namespace", "prod"), ("service", "reviews"), ("revision", "v2"), ("window", "1m"),
//! ]);
//! assert!(query.starts_with("sum(rate(istio_requests_total{reporter=\"destination\""));
//! assert!(!query.contains('{') || !query.contains("{revision}"));
//! ```

/// A PromQL query with named placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// A short name, like `request-success-rate`.
    pub name: &'static str,
    /// What the query measures and its unit.
    pub description: &'static str,
    /// The PromQL text with `{placeholder}`s.
    pub query: &'static str,
    /// The placeholders the query uses.
    pub placeholders: &'static [&'static str],
}

impl Template {
    /// The query with each `{name}` replaced by its value, **unescaped** (see the module docs).
    /// Placeholders without a value are left as they are.
    pub fn fill(&self, values: &[(&str, &str)]) -> String {
        let mut query = self.query.to_owned();
        for (name, value) in values {
            query = query.replace(&format!("{{{name}}}"), value);
        }
        query
    }
}

macro_rules! selector {
    () => {
        "reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_service_name=\"{service}\",destination_version=\"{revision}\""
    };
}

/// The share of requests whose response code matches `$codes`, as PromQL text.
macro_rules! share {
    ($codes:literal) => {
        concat!(
            "sum(rate(istio_requests_total{",
            selector!(),
            ",response_code",
            $codes,
            "}[{window}])) / sum(rate(istio_requests_total{",
            selector!(),
            "}[{window}]))"
        )
    };
}

/// Share of requests to the revision that did not fail with a 5xx, 0..1, over `{window}`.
/// No requests gives no sample (0/0), which the analysis counts as inconclusive.
pub const REQUEST_SUCCESS_RATE: Template = Template {
    name: "request-success-rate",
    description: "share of requests without a 5xx response (0..1)",
    query: share!("!~\"5..\""),
    placeholders: &["namespace", "service", "revision", "window"],
};

/// Share of requests to the revision that failed with a 5xx, 0..1, over `{window}`.
pub const REQUEST_ERROR_RATE: Template = Template {
    name: "request-error-rate",
    description: "share of requests with a 5xx response (0..1)",
    query: share!("=~\"5..\""),
    placeholders: &["namespace", "service", "revision", "window"],
};

/// Requests per second to the revision, over `{window}`.
pub const REQUEST_RATE: Template = Template {
    name: "request-rate",
    description: "requests per second",
    query: concat!(
        "sum(rate(istio_requests_total{",
        selector!(),
        "}[{window}]))"
    ),
    placeholders: &["namespace", "service", "revision", "window"],
};

/// The `{quantile}` (0..1) of request duration in milliseconds, over `{window}`, from
/// Istio's duration histogram.
pub const LATENCY_QUANTILE: Template = Template {
    name: "latency-quantile",
    description: "request duration quantile, milliseconds",
    query: concat!(
        "histogram_quantile({quantile}, sum by (le) (rate(istio_request_duration_milliseconds_bucket{",
        selector!(),
        "}[{window}])))"
    ),
    placeholders: &["namespace", "service", "revision", "window", "quantile"],
};

/// Every template.
pub const ALL: [Template; 4] = [
    REQUEST_SUCCESS_RATE,
    REQUEST_ERROR_RATE,
    REQUEST_RATE,
    LATENCY_QUANTILE,
];

#[cfg(test)]
mod tests {
    use super::*;

    const SELECTOR: &str = selector!();

    #[test]
    fn every_placeholder_is_declared_and_filled() {
        for t in ALL {
            assert!(t.query.contains(SELECTOR), "{}", t.name);
            let values: Vec<_> = t.placeholders.iter().map(|p| (*p, "X")).collect();
            let filled = t.fill(&values);
            for p in t.placeholders {
                assert!(
                    t.query.contains(&format!("{{{p}}}")),
                    "{} lacks {p}",
                    t.name
                );
            }
            // Only PromQL's own label braces remain.
            let leftover = filled.replace("{reporter=", "").matches('{').count();
            assert_eq!(leftover, 0, "{}: {filled}", t.name);
        }
    }

    #[test]
    fn success_rate_is_the_exact_promql() {
        let q = REQUEST_SUCCESS_RATE.fill(&[
            ("namespace", "prod"),
            ("service", "reviews"),
            ("revision", "v2"),
            ("window", "5m"),
        ]);
        let sel = "reporter=\"destination\",destination_workload_namespace=\"prod\",destination_service_name=\"reviews\",destination_version=\"v2\"";
        assert_eq!(
            q,
            format!(
                "sum(rate(istio_requests_total{{{sel},response_code!~\"5..\"}}[5m])) / sum(rate(istio_requests_total{{{sel}}}[5m]))"
            )
        );
        let p99 = LATENCY_QUANTILE.fill(&[("quantile", "0.99"), ("window", "1m")]);
        assert!(p99.starts_with(
            "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{"
        ));
    }
}
