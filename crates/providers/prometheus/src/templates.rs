//! Built-in templates: request success and error rates, request rate and latency quantiles per
//! revision, for the cutover-local proxy's `/metrics`, Istio's standard metrics and the NGINX
//! ingress controller.
//!
//! [`PrometheusSource`](crate::PrometheusSource) registers all of them by name ([`all`]).
//! Every latency is in **seconds**. The `*/error-rate` and `*/success-rate` templates yield
//! counts (requests with and without a 5xx out of all requests, from `increase()` over the
//! window); `*/error-ratio` is the same share as one number.

use crate::Template;

/// The cutover-local proxy (`cutover_proxy_*` on its admin listener's `/metrics`). Arguments:
/// `{revision}` (the proxy's revision name), `{window}`, and `{quantile}` for
/// [`LATENCY_QUANTILE`](local::LATENCY_QUANTILE).
pub mod local {
    use super::Template;

    macro_rules! requests {
        ($extra:literal) => {
            concat!(
                "sum(increase(cutover_proxy_requests_total{revision=\"{revision}\"",
                $extra,
                "}[{window}]))"
            )
        };
    }

    macro_rules! latency {
        ($q:literal) => {
            concat!(
                "histogram_quantile(",
                $q,
                ", sum by (le) (rate(cutover_proxy_request_duration_seconds_bucket{revision=\"{revision}\"}[{window}])))"
            )
        };
    }

    /// Requests answered with a 5xx (502/504 made by the proxy included) out of all requests.
    pub const ERROR_RATE: Template = Template::counts(
        "local/error-rate",
        "5xx responses out of all responses (counts)",
        requests!(",code_class=\"5xx\""),
        requests!(""),
    );
    /// Requests answered without a 5xx out of all requests.
    pub const SUCCESS_RATE: Template = Template::counts(
        "local/success-rate",
        "non-5xx responses out of all responses (counts)",
        requests!(",code_class!=\"5xx\""),
        requests!(""),
    );
    /// The share of 5xx responses as one number, 0..1.
    pub const ERROR_RATIO: Template = Template::value(
        "local/error-ratio",
        "share of 5xx responses (0..1)",
        concat!(
            "sum(rate(cutover_proxy_requests_total{revision=\"{revision}\",code_class=\"5xx\"}[{window}]))",
            " / sum(rate(cutover_proxy_requests_total{revision=\"{revision}\"}[{window}]))"
        ),
    );
    /// Requests per second.
    pub const REQUEST_RATE: Template = Template::value(
        "local/request-rate",
        "requests per second",
        "sum(rate(cutover_proxy_requests_total{revision=\"{revision}\"}[{window}]))",
    );
    /// The `{quantile}` of request duration, seconds.
    pub const LATENCY_QUANTILE: Template = Template::value(
        "local/latency-quantile",
        "request duration quantile {quantile}, seconds",
        latency!("{quantile}"),
    );
    /// Median request duration, seconds.
    pub const LATENCY_P50: Template = Template::value(
        "local/latency-p50",
        "median request duration, seconds",
        latency!("0.5"),
    );
    /// 95th percentile of request duration, seconds.
    pub const LATENCY_P95: Template = Template::value(
        "local/latency-p95",
        "95th percentile request duration, seconds",
        latency!("0.95"),
    );
    /// 99th percentile of request duration, seconds.
    pub const LATENCY_P99: Template = Template::value(
        "local/latency-p99",
        "99th percentile request duration, seconds",
        latency!("0.99"),
    );

    /// Every cutover-local template.
    pub const ALL: [Template; 8] = [
        ERROR_RATE,
        SUCCESS_RATE,
        ERROR_RATIO,
        REQUEST_RATE,
        LATENCY_QUANTILE,
        LATENCY_P50,
        LATENCY_P95,
        LATENCY_P99,
    ];
}

/// Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`),
/// reported by the serving side (`reporter="destination"`, so requests that never reached the
/// revision are not counted against it). Arguments:
///
/// | placeholder | Istio label |
/// |---|---|
/// | `{namespace}` | `destination_workload_namespace` |
/// | `{service}` | `destination_service_name` (host-based routing: the revision's Service) |
/// | `{revision}` | `destination_version`, the pod's `version` label a subset selects on |
/// | `{window}`, `{quantile}` | |
pub mod istio {
    use super::Template;

    macro_rules! selector {
        () => {
            "reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_service_name=\"{service}\",destination_version=\"{revision}\""
        };
    }

    macro_rules! requests {
        ($f:literal, $extra:literal) => {
            concat!(
                "sum(",
                $f,
                "(istio_requests_total{",
                selector!(),
                $extra,
                "}[{window}]))"
            )
        };
    }

    macro_rules! latency {
        ($q:literal) => {
            concat!(
                "histogram_quantile(",
                $q,
                ", sum by (le) (rate(istio_request_duration_milliseconds_bucket{",
                selector!(),
                "}[{window}]))) / 1000"
            )
        };
    }

    /// Requests with a 5xx response code out of all requests.
    pub const ERROR_RATE: Template = Template::counts(
        "istio/error-rate",
        "5xx responses out of all responses (counts)",
        requests!("increase", ",response_code=~\"5..\""),
        requests!("increase", ""),
    );
    /// Requests without a 5xx response code out of all requests.
    pub const SUCCESS_RATE: Template = Template::counts(
        "istio/success-rate",
        "non-5xx responses out of all responses (counts)",
        requests!("increase", ",response_code!~\"5..\""),
        requests!("increase", ""),
    );
    /// The share of 5xx responses as one number, 0..1.
    pub const ERROR_RATIO: Template = Template::value(
        "istio/error-ratio",
        "share of 5xx responses (0..1)",
        concat!(
            requests!("rate", ",response_code=~\"5..\""),
            " / ",
            requests!("rate", "")
        ),
    );
    /// Requests per second.
    pub const REQUEST_RATE: Template = Template::value(
        "istio/request-rate",
        "requests per second",
        requests!("rate", ""),
    );
    /// The `{quantile}` of request duration, seconds (Istio records milliseconds).
    pub const LATENCY_QUANTILE: Template = Template::value(
        "istio/latency-quantile",
        "request duration quantile {quantile}, seconds",
        latency!("{quantile}"),
    );
    /// Median request duration, seconds.
    pub const LATENCY_P50: Template = Template::value(
        "istio/latency-p50",
        "median request duration, seconds",
        latency!("0.5"),
    );
    /// 95th percentile of request duration, seconds.
    pub const LATENCY_P95: Template = Template::value(
        "istio/latency-p95",
        "95th percentile request duration, seconds",
        latency!("0.95"),
    );
    /// 99th percentile of request duration, seconds.
    pub const LATENCY_P99: Template = Template::value(
        "istio/latency-p99",
        "99th percentile request duration, seconds",
        latency!("0.99"),
    );

    /// Every Istio template.
    pub const ALL: [Template; 8] = [
        ERROR_RATE,
        SUCCESS_RATE,
        ERROR_RATIO,
        REQUEST_RATE,
        LATENCY_QUANTILE,
        LATENCY_P50,
        LATENCY_P95,
        LATENCY_P99,
    ];
}

/// The ingress-nginx controller (`nginx_ingress_controller_requests`,
/// `nginx_ingress_controller_request_duration_seconds`). A revision is told apart by the
/// backend Service the ingress sent the request to (the stable and the canary Service).
/// Arguments: `{namespace}` (the Ingress's namespace), `{ingress}` (the Ingress's name; with
/// a canary Ingress, use a regular expression in your own template), `{revision}` (the
/// revision's backend Service: map revisions to Service names with
/// [`PrometheusSource::revision_value`](crate::PrometheusSource::revision_value)), `{window}`,
/// `{quantile}`.
pub mod nginx {
    use super::Template;

    macro_rules! selector {
        () => {
            "namespace=\"{namespace}\",ingress=\"{ingress}\",service=\"{revision}\""
        };
    }

    macro_rules! requests {
        ($f:literal, $extra:literal) => {
            concat!(
                "sum(",
                $f,
                "(nginx_ingress_controller_requests{",
                selector!(),
                $extra,
                "}[{window}]))"
            )
        };
    }

    macro_rules! latency {
        ($q:literal) => {
            concat!(
                "histogram_quantile(",
                $q,
                ", sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{",
                selector!(),
                "}[{window}])))"
            )
        };
    }

    /// Requests with a 5xx status out of all requests.
    pub const ERROR_RATE: Template = Template::counts(
        "nginx/error-rate",
        "5xx responses out of all responses (counts)",
        requests!("increase", ",status=~\"5..\""),
        requests!("increase", ""),
    );
    /// Requests without a 5xx status out of all requests.
    pub const SUCCESS_RATE: Template = Template::counts(
        "nginx/success-rate",
        "non-5xx responses out of all responses (counts)",
        requests!("increase", ",status!~\"5..\""),
        requests!("increase", ""),
    );
    /// The share of 5xx responses as one number, 0..1.
    pub const ERROR_RATIO: Template = Template::value(
        "nginx/error-ratio",
        "share of 5xx responses (0..1)",
        concat!(
            requests!("rate", ",status=~\"5..\""),
            " / ",
            requests!("rate", "")
        ),
    );
    /// Requests per second.
    pub const REQUEST_RATE: Template = Template::value(
        "nginx/request-rate",
        "requests per second",
        requests!("rate", ""),
    );
    /// The `{quantile}` of request duration, seconds.
    pub const LATENCY_QUANTILE: Template = Template::value(
        "nginx/latency-quantile",
        "request duration quantile {quantile}, seconds",
        latency!("{quantile}"),
    );
    /// Median request duration, seconds.
    pub const LATENCY_P50: Template = Template::value(
        "nginx/latency-p50",
        "median request duration, seconds",
        latency!("0.5"),
    );
    /// 95th percentile of request duration, seconds.
    pub const LATENCY_P95: Template = Template::value(
        "nginx/latency-p95",
        "95th percentile request duration, seconds",
        latency!("0.95"),
    );
    /// 99th percentile of request duration, seconds.
    pub const LATENCY_P99: Template = Template::value(
        "nginx/latency-p99",
        "99th percentile request duration, seconds",
        latency!("0.99"),
    );

    /// Every NGINX ingress template.
    pub const ALL: [Template; 8] = [
        ERROR_RATE,
        SUCCESS_RATE,
        ERROR_RATIO,
        REQUEST_RATE,
        LATENCY_QUANTILE,
        LATENCY_P50,
        LATENCY_P95,
        LATENCY_P99,
    ];
}

/// Every built-in template.
pub fn all() -> impl Iterator<Item = Template> {
    local::ALL.into_iter().chain(istio::ALL).chain(nginx::ALL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Args, Filled};

    fn args() -> Args {
        Args::new()
            .set("namespace", "prod")
            .set("service", "reviews")
            .set("ingress", "web")
            .set("revision", "v2")
            .set("window", "5m")
            .set("quantile", "0.9")
    }

    #[test]
    fn every_built_in_fills_with_only_its_label_braces_left() {
        let mut names = std::collections::BTreeSet::new();
        for t in all() {
            assert!(names.insert(t.name().to_owned()), "duplicate {}", t.name());
            let filled = t.fill(&args()).unwrap();
            let texts = match &filled {
                Filled::Value(q) => vec![q.clone()],
                Filled::Counts { events, total } => vec![events.clone(), total.clone()],
            };
            for q in texts {
                // Every `{` opens a label matcher with a quoted value: nothing unfilled.
                for (at, _) in q.match_indices('{') {
                    let next = &q[at + 1..];
                    assert!(
                        next.split_once('=').is_some_and(|(label, _)| label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_')),
                        "{}: {q}",
                        t.name()
                    );
                }
                assert_eq!(q.matches('{').count(), q.matches('}').count());
                assert_eq!(q.matches('(').count(), q.matches(')').count());
                assert!(q.contains("\"v2\"") && q.contains("[5m]"), "{q}");
            }
        }
        assert_eq!(names.len(), 24);
    }

    #[test]
    fn istio_success_rate_is_the_exact_promql() {
        let Filled::Counts { events, total } = istio::SUCCESS_RATE.fill(&args()).unwrap() else {
            panic!("counts")
        };
        let sel = "reporter=\"destination\",destination_workload_namespace=\"prod\",destination_service_name=\"reviews\",destination_version=\"v2\"";
        assert_eq!(
            events,
            format!("sum(increase(istio_requests_total{{{sel},response_code!~\"5..\"}}[5m]))")
        );
        assert_eq!(
            total,
            format!("sum(increase(istio_requests_total{{{sel}}}[5m]))")
        );
        let p = istio::LATENCY_QUANTILE.fill(&args()).unwrap();
        assert!(p.value().unwrap().starts_with(
            "histogram_quantile(0.9, sum by (le) (rate(istio_request_duration_milliseconds_bucket{"
        ));
        assert!(p.value().unwrap().ends_with("[5m]))) / 1000"));
    }

    #[test]
    fn local_error_rate_selects_the_5xx_class_of_the_revision() {
        let Filled::Counts { events, total } = local::ERROR_RATE.fill(&args()).unwrap() else {
            panic!("counts")
        };
        assert_eq!(
            events,
            "sum(increase(cutover_proxy_requests_total{revision=\"v2\",code_class=\"5xx\"}[5m]))"
        );
        assert_eq!(
            total,
            "sum(increase(cutover_proxy_requests_total{revision=\"v2\"}[5m]))"
        );
    }
}
