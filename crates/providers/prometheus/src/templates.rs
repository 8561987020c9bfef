//! Built-in templates: request success and error rates, request rate and latency quantiles per
//! revision, for the cutover-local proxy's `/metrics`, Istio's standard metrics and the NGINX
//! ingress controller.
//!
//! [`PrometheusSource`](crate::PrometheusSource) registers all of them by name ([`all`]).
//! Every latency is in **seconds**. The `*/error-rate` and `*/success-rate` templates yield
//! counts (requests with and without a 5xx out of all requests, from `increase()` over the
//! window); `*/error-ratio` is the same share as one number.

use crate::Template;

/// Defines the eight templates of one family: counts for errors and successes, the error
/// ratio, the request rate, and latency quantiles (`{quantile}`, p50, p95, p99).
macro_rules! family {
    (
        prefix: $prefix:literal,
        requests: $requests:literal,
        selector: $selector:literal,
        errors: $errors:literal,
        successes: $successes:literal,
        buckets: $buckets:literal,
        to_seconds: $to_seconds:literal $(,)?
    ) => {
        use super::Template;

        macro_rules! requests {
            ($f:literal, $extra:literal) => {
                concat!(
                    "sum(",
                    $f,
                    "(",
                    $requests,
                    "{",
                    $selector,
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
                    ", sum by (le) (rate(",
                    $buckets,
                    "{",
                    $selector,
                    "}[{window}])))",
                    $to_seconds
                )
            };
        }

        /// Requests answered with a 5xx out of all requests (counts).
        pub const ERROR_RATE: Template = Template::counts(
            concat!($prefix, "/error-rate"),
            "5xx responses out of all responses (counts)",
            requests!("increase", $errors),
            requests!("increase", ""),
        );
        /// Requests answered without a 5xx out of all requests (counts).
        pub const SUCCESS_RATE: Template = Template::counts(
            concat!($prefix, "/success-rate"),
            "non-5xx responses out of all responses (counts)",
            requests!("increase", $successes),
            requests!("increase", ""),
        );
        /// The share of 5xx responses as one number, 0..1.
        pub const ERROR_RATIO: Template = Template::value(
            concat!($prefix, "/error-ratio"),
            "share of 5xx responses (0..1)",
            concat!(requests!("rate", $errors), " / ", requests!("rate", "")),
        );
        /// Requests per second.
        pub const REQUEST_RATE: Template = Template::value(
            concat!($prefix, "/request-rate"),
            "requests per second",
            requests!("rate", ""),
        );
        /// The `{quantile}` of request duration, seconds.
        pub const LATENCY_QUANTILE: Template = Template::value(
            concat!($prefix, "/latency-quantile"),
            "request duration quantile {quantile}, seconds",
            latency!("{quantile}"),
        );
        /// Median request duration, seconds.
        pub const LATENCY_P50: Template = Template::value(
            concat!($prefix, "/latency-p50"),
            "median request duration, seconds",
            latency!("0.5"),
        );
        /// 95th percentile of request duration, seconds.
        pub const LATENCY_P95: Template = Template::value(
            concat!($prefix, "/latency-p95"),
            "95th percentile request duration, seconds",
            latency!("0.95"),
        );
        /// 99th percentile of request duration, seconds.
        pub const LATENCY_P99: Template = Template::value(
            concat!($prefix, "/latency-p99"),
            "99th percentile request duration, seconds",
            latency!("0.99"),
        );

        /// Every template of this family.
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
    };
}

/// The cutover-local proxy (`cutover_proxy_requests_total`,
/// `cutover_proxy_request_duration_seconds` on its admin listener's `/metrics`). Arguments:
/// `{revision}` (the proxy's revision name), `{window}`, and `{quantile}` for
/// [`LATENCY_QUANTILE`](local::LATENCY_QUANTILE). 502/504 responses the proxy made itself
/// count as 5xx.
pub mod local {
    family! {
        prefix: "local",
        requests: "cutover_proxy_requests_total",
        selector: "revision=\"{revision}\"",
        errors: ",code_class=\"5xx\"",
        successes: ",code_class!=\"5xx\"",
        buckets: "cutover_proxy_request_duration_seconds_bucket",
        to_seconds: "",
    }
}

/// Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
/// converted to seconds), reported by the serving side (`reporter="destination"`, so requests
/// that never reached the revision are not counted against it). Arguments:
///
/// | placeholder | Istio label |
/// |---|---|
/// | `{namespace}` | `destination_workload_namespace` |
/// | `{service}` | `destination_service_name` (host-based routing: the revision's Service) |
/// | `{revision}` | `destination_version`, the pod's `version` label a subset selects on |
/// | `{window}`, `{quantile}` | |
pub mod istio {
    family! {
        prefix: "istio",
        requests: "istio_requests_total",
        selector: "reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_service_name=\"{service}\",destination_version=\"{revision}\"",
        errors: ",response_code=~\"5..\"",
        successes: ",response_code!~\"5..\"",
        buckets: "istio_request_duration_milliseconds_bucket",
        to_seconds: " / 1000",
    }
}

/// The ingress-nginx controller (`nginx_ingress_controller_requests`,
/// `nginx_ingress_controller_request_duration_seconds`). A revision is told apart by the
/// backend Service the ingress sent the request to (the stable and the canary Service).
/// Arguments: `{namespace}` (the Ingress's namespace), `{ingress}` (the Ingress's name; with
/// a separate canary Ingress, write your own template with a regular expression),
/// `{revision}` (the revision's backend Service: map revisions to Service names with
/// [`PrometheusSource::revision_value`](crate::PrometheusSource::revision_value)), `{window}`,
/// `{quantile}`.
pub mod nginx {
    family! {
        prefix: "nginx",
        requests: "nginx_ingress_controller_requests",
        selector: "namespace=\"{namespace}\",ingress=\"{ingress}\",service=\"{revision}\"",
        errors: ",status=~\"5..\"",
        successes: ",status!~\"5..\"",
        buckets: "nginx_ingress_controller_request_duration_seconds_bucket",
        to_seconds: "",
    }
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
