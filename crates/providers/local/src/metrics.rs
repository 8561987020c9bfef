//! Proxy-recorded metrics: per revision, requests by status class, proxy errors and a latency
//! histogram ([`hdrhistogram`]), kept in one-second slots for windowed queries and as running
//! totals for the Prometheus text on the admin listener.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cutover_core::{MetricQuery, MetricSource, ProviderError, RevisionId, Samples};
use hdrhistogram::Histogram;
use parking_lot::{Mutex, RwLock};

use crate::limits::{ConnectionCounts, ConnectionStats};

/// How many one-second slots a revision keeps: queries reach back at most this far.
pub const WINDOW_SLOTS: u64 = 300;

/// Latencies are recorded in microseconds, from 1 µs to this (60 s), two significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Bucket bounds of `cutover_proxy_request_duration_seconds`, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The conversion header the proxy counts by default: an upstream marks a response as a
/// conversion (for A/B tests) by setting it.
pub const DEFAULT_CONVERSION_HEADER: &str = "x-conversion";

/// The queries [`ProxyMetrics`] answers, for error messages and docs.
pub const QUERIES: &str = "requests, error_rate (or errors), success_rate, conversions, latency, latency_mean, latency_p50, latency_p90, latency_p95, latency_p99";

/// The current wall-clock instant. The proxy measures real request latencies and real
/// one-second slots, which tokio's (possibly paused) clock cannot give.
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_now() -> Instant {
    Instant::now()
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("static histogram bounds are valid")
}

/// Counts for one period.
#[derive(Debug, Clone, Default)]
struct Counts {
    /// Responses by status class: index 0 is 1xx ... index 4 is 5xx.
    classes: [u64; 5],
    /// Responses that carried the conversion header.
    conversions: u64,
    /// 502s from refused or failed upstream connections.
    connect_errors: u64,
    /// 504s from upstream timeouts.
    timeouts: u64,
    /// Sum of latencies in microseconds.
    latency_sum_us: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.classes.iter().sum()
    }

    fn add(&mut self, other: &Counts) {
        for (a, b) in self.classes.iter_mut().zip(other.classes) {
            *a += b;
        }
        self.conversions += other.conversions;
        self.connect_errors += other.connect_errors;
        self.timeouts += other.timeouts;
        self.latency_sum_us += other.latency_sum_us;
    }
}

#[derive(Debug)]
struct Slot {
    second: u64,
    counts: Counts,
    latency: Option<Histogram<u64>>,
}

#[derive(Debug)]
struct Window {
    slots: Vec<Slot>,
    totals: Counts,
    total_latency: Histogram<u64>,
}

/// What happened to one proxied request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) latency: Duration,
    pub(crate) conversion: bool,
    pub(crate) error: Option<ProxyFailure>,
}

/// A response the proxy made itself because the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyFailure {
    /// Refused or broken connection: 502.
    Connect,
    /// No response headers in time: 504.
    Timeout,
}

/// A shard on cache lines of its own, so that two threads' shards never share one.
#[derive(Debug)]
#[repr(align(128))]
struct Shard(Mutex<Window>);

/// One revision's numbers, in one shard per serving thread so that threads never write to
/// the same memory; queries add the shards up.
#[derive(Debug)]
pub(crate) struct RevisionStats {
    pub(crate) revision: RevisionId,
    epoch: Instant,
    shards: Vec<Shard>,
}

impl RevisionStats {
    pub(crate) fn new(revision: RevisionId, epoch: Instant, shards: usize) -> Self {
        let window = || {
            Shard(Mutex::new(Window {
                slots: (0..WINDOW_SLOTS)
                    .map(|_| Slot {
                        second: u64::MAX,
                        counts: Counts::default(),
                        latency: None,
                    })
                    .collect(),
                totals: Counts::default(),
                total_latency: new_histogram(),
            }))
        };
        RevisionStats {
            revision,
            epoch,
            shards: (0..shards.max(1)).map(|_| window()).collect(),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs()
    }

    /// Records one request that ended at `at`. One short uncontended lock; no allocation
    /// except the first time a slot is used.
    pub(crate) fn record(&self, shard: usize, at: Instant, outcome: Outcome) {
        let second = self.second(at);
        let micros = u64::try_from(outcome.latency.as_micros())
            .unwrap_or(MAX_LATENCY_US)
            .clamp(1, MAX_LATENCY_US);
        let class = usize::from((outcome.status / 100).clamp(1, 5)) - 1;
        let mut w = self.shards[shard % self.shards.len()].0.lock();
        let w = &mut *w;
        #[allow(clippy::cast_possible_truncation)]
        let slot = &mut w.slots[(second % WINDOW_SLOTS) as usize];
        if slot.second != second {
            slot.second = second;
            slot.counts = Counts::default();
            if let Some(h) = &mut slot.latency {
                h.reset();
            }
        }
        for counts in [&mut slot.counts, &mut w.totals] {
            counts.classes[class] += 1;
            counts.conversions += u64::from(outcome.conversion);
            counts.latency_sum_us += micros;
            match outcome.error {
                Some(ProxyFailure::Connect) => counts.connect_errors += 1,
                Some(ProxyFailure::Timeout) => counts.timeouts += 1,
                None => {}
            }
        }
        slot.latency
            .get_or_insert_with(new_histogram)
            .saturating_record(micros);
        w.total_latency.saturating_record(micros);
    }

    /// Counts and latencies of the requests that ended in the trailing `window` before `now`,
    /// in whole seconds (the current second included).
    fn window(&self, now: Instant, window: Duration) -> (Counts, Histogram<u64>) {
        let now_s = self.second(now);
        let span = window.as_secs().clamp(1, WINDOW_SLOTS);
        let mut counts = Counts::default();
        let mut latency = new_histogram();
        for shard in &self.shards {
            let w = shard.0.lock();
            for slot in &w.slots {
                if slot.second <= now_s && now_s - slot.second < span {
                    counts.add(&slot.counts);
                    if let Some(h) = &slot.latency {
                        let _ = latency.add(h);
                    }
                }
            }
        }
        (counts, latency)
    }

    /// Counts of the last complete second before `now`.
    fn last_second(&self, now: Instant) -> Counts {
        let Some(second) = self.second(now).checked_sub(1) else {
            return Counts::default();
        };
        let mut counts = Counts::default();
        for shard in &self.shards {
            let w = shard.0.lock();
            #[allow(clippy::cast_possible_truncation)]
            let slot = &w.slots[(second % WINDOW_SLOTS) as usize];
            if slot.second == second {
                counts.add(&slot.counts);
            }
        }
        counts
    }

    fn totals(&self) -> (Counts, Histogram<u64>) {
        let mut counts = Counts::default();
        let mut latency = new_histogram();
        for shard in &self.shards {
            let w = shard.0.lock();
            counts.add(&w.totals);
            let _ = latency.add(&w.total_latency);
        }
        (counts, latency)
    }
}

/// The proxy's numbers as a [`MetricSource`]: ask with the query names below, per revision,
/// over the query's window (whole seconds, at most [`WINDOW_SLOTS`] seconds back).
///
/// | query | samples |
/// |---|---|
/// | `requests` | `Values([n])`: requests answered (empty when none) |
/// | `error_rate`, `errors` | `Counts { events: 5xx responses (502/504 made by the proxy included), total: requests }` |
/// | `success_rate` | `Counts { events: non-5xx responses, total: requests }` |
/// | `conversions` | `Counts { events: responses with the conversion header, total: requests }` |
/// | `latency` | `Values`: one latency per request in seconds (histogram resolution, 2 significant digits); use `aggregate: p99` |
/// | `latency_mean`, `latency_p50`, `latency_p90`, `latency_p95`, `latency_p99` | `Values([seconds])`: one number, so set `min_samples: 1` |
///
/// Latency is the time from the request's arrival to the upstream's response headers.
/// No requests in the window is empty samples (inconclusive), never zero.
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    name: String,
    revisions: Arc<RwLock<Vec<Arc<RevisionStats>>>>,
    connections: Arc<ConnectionStats>,
}

impl ProxyMetrics {
    pub(crate) fn new(name: String) -> Self {
        ProxyMetrics {
            name,
            revisions: Arc::default(),
            connections: Arc::default(),
        }
    }

    /// The client connections' counters, shared by the proxy's serving loops.
    pub(crate) fn connection_stats(&self) -> Arc<ConnectionStats> {
        self.connections.clone()
    }

    /// The proxy's client connections now: open, refused over the cap, and closed by each
    /// timeout.
    pub fn connections(&self) -> ConnectionCounts {
        self.connections.counts()
    }

    pub(crate) fn register(&self, stats: Arc<RevisionStats>) {
        self.revisions.write().push(stats);
    }

    fn stats(&self, revision: &RevisionId) -> Option<Arc<RevisionStats>> {
        self.revisions
            .read()
            .iter()
            .find(|s| s.revision == *revision)
            .cloned()
    }

    /// Requests answered for `revision` over the trailing `window`, and how many were 5xx.
    pub fn counts(&self, revision: &RevisionId, window: Duration) -> Option<(u64, u64)> {
        let stats = self.stats(revision)?;
        let (counts, _) = stats.window(wall_now(), window);
        Some((counts.total(), counts.classes[4]))
    }

    /// Requests answered for `revision` in the last complete second, and how many were 5xx:
    /// a rate per second for live displays.
    pub fn last_second(&self, revision: &RevisionId) -> Option<(u64, u64)> {
        let counts = self.stats(revision)?.last_second(wall_now());
        Some((counts.total(), counts.classes[4]))
    }

    /// Requests answered for `revision` since the proxy started, and how many were 5xx.
    pub fn total(&self, revision: &RevisionId) -> Option<(u64, u64)> {
        let stats = self.stats(revision)?;
        let (counts, _) = stats.totals();
        Some((counts.total(), counts.classes[4]))
    }

    /// The samples for one query: see the table on [`ProxyMetrics`].
    pub fn samples(
        &self,
        query: &str,
        revision: &RevisionId,
        window: Duration,
    ) -> Result<Samples, ProviderError> {
        let stats = self.stats(revision).ok_or_else(|| {
            ProviderError::permanent(format!(
                "proxy `{}` has no upstream for revision `{revision}`",
                self.name
            ))
        })?;
        let (counts, latency) = stats.window(wall_now(), window);
        let total = counts.total();
        let seconds = |us: u64| Duration::from_micros(us).as_secs_f64();
        let one = |v: f64| {
            if total == 0 {
                Samples::empty()
            } else {
                Samples::Values(vec![v])
            }
        };
        #[allow(clippy::cast_precision_loss)]
        let samples = match query {
            "requests" => one(total as f64),
            "error_rate" | "errors" => Samples::Counts {
                events: counts.classes[4],
                total,
            },
            "success_rate" => Samples::Counts {
                events: total - counts.classes[4],
                total,
            },
            "conversions" => Samples::Counts {
                events: counts.conversions,
                total,
            },
            "latency" => {
                let mut values = Vec::with_capacity(usize::try_from(latency.len()).unwrap_or(0));
                for v in latency.iter_recorded() {
                    let s = seconds(latency.median_equivalent(v.value_iterated_to()));
                    let n = usize::try_from(v.count_at_value()).unwrap_or(0);
                    values.extend(std::iter::repeat_n(s, n));
                }
                Samples::Values(values)
            }
            "latency_mean" => one(seconds(counts.latency_sum_us) / total.max(1) as f64),
            "latency_p50" => one(seconds(latency.value_at_quantile(0.50))),
            "latency_p90" => one(seconds(latency.value_at_quantile(0.90))),
            "latency_p95" => one(seconds(latency.value_at_quantile(0.95))),
            "latency_p99" => one(seconds(latency.value_at_quantile(0.99))),
            other => {
                return Err(ProviderError::permanent(format!(
                    "proxy `{}` has no metric `{other}`; it answers {QUERIES}",
                    self.name
                )));
            }
        };
        Ok(samples)
    }

    /// The Prometheus text exposition of every revision's running totals (format 0.0.4);
    /// the crate README lists the metric names.
    pub fn prometheus_text(&self) -> String {
        let revisions = self.revisions.read().clone();
        let mut out = String::with_capacity(4096);
        let totals: Vec<(RevisionId, Counts, Histogram<u64>)> = revisions
            .iter()
            .map(|s| {
                let (c, h) = s.totals();
                (s.revision.clone(), c, h)
            })
            .collect();
        out.push_str("# HELP cutover_proxy_requests_total Requests answered through the proxy, by revision and status class.\n# TYPE cutover_proxy_requests_total counter\n");
        for (rev, c, _) in &totals {
            for (i, n) in c.classes.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "cutover_proxy_requests_total{{revision=\"{rev}\",code_class=\"{}xx\"}} {n}",
                    i + 1
                );
            }
        }
        out.push_str("# HELP cutover_proxy_upstream_errors_total Responses the proxy made because the upstream failed: connect (502) or timeout (504).\n# TYPE cutover_proxy_upstream_errors_total counter\n");
        for (rev, c, _) in &totals {
            for (kind, n) in [("connect", c.connect_errors), ("timeout", c.timeouts)] {
                let _ = writeln!(
                    out,
                    "cutover_proxy_upstream_errors_total{{revision=\"{rev}\",kind=\"{kind}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP cutover_proxy_conversions_total Responses that carried the conversion header.\n# TYPE cutover_proxy_conversions_total counter\n");
        for (rev, c, _) in &totals {
            let _ = writeln!(
                out,
                "cutover_proxy_conversions_total{{revision=\"{rev}\"}} {}",
                c.conversions
            );
        }
        out.push_str("# HELP cutover_proxy_request_duration_seconds Time from request arrival to upstream response headers.\n# TYPE cutover_proxy_request_duration_seconds histogram\n");
        for (rev, c, h) in &totals {
            for le in LATENCY_BUCKETS {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let bound = (le * 1e6) as u64;
                let _ = writeln!(
                    out,
                    "cutover_proxy_request_duration_seconds_bucket{{revision=\"{rev}\",le=\"{le}\"}} {}",
                    h.count_between(0, bound)
                );
            }
            let total = c.total();
            let _ = writeln!(
                out,
                "cutover_proxy_request_duration_seconds_bucket{{revision=\"{rev}\",le=\"+Inf\"}} {total}"
            );
            let _ = writeln!(
                out,
                "cutover_proxy_request_duration_seconds_sum{{revision=\"{rev}\"}} {}",
                Duration::from_micros(c.latency_sum_us).as_secs_f64()
            );
            let _ = writeln!(
                out,
                "cutover_proxy_request_duration_seconds_count{{revision=\"{rev}\"}} {total}"
            );
        }
        let conns = self.connections.counts();
        let _ = write!(
            out,
            "# HELP cutover_proxy_connections_open Client connections open now.\n# TYPE cutover_proxy_connections_open gauge\ncutover_proxy_connections_open {}\n\
             # HELP cutover_proxy_connections_refused_total Client connections answered 503 and closed because the connection cap was reached.\n# TYPE cutover_proxy_connections_refused_total counter\ncutover_proxy_connections_refused_total {}\n\
             # HELP cutover_proxy_client_timeouts_total Client connections closed by a timeout: headers too slow, a request body idle, or the connection idle.\n# TYPE cutover_proxy_client_timeouts_total counter\n\
             cutover_proxy_client_timeouts_total{{kind=\"header\"}} {}\ncutover_proxy_client_timeouts_total{{kind=\"body\"}} {}\ncutover_proxy_client_timeouts_total{{kind=\"idle\"}} {}\n",
            conns.open,
            conns.refused,
            conns.header_timeouts,
            conns.body_timeouts,
            conns.idle_timeouts
        );
        out
    }
}

#[async_trait]
impl MetricSource for ProxyMetrics {
    fn name(&self) -> &str {
        &self.name
    }

    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError> {
        self.samples(&query.query, &query.revision, query.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, ms: u64) -> Outcome {
        Outcome {
            status,
            latency: Duration::from_millis(ms),
            conversion: status == 201,
            error: None,
        }
    }

    #[test]
    fn windows_count_only_recent_seconds() {
        let epoch = wall_now();
        let rev: RevisionId = "v2".parse().unwrap();
        let stats = Arc::new(RevisionStats::new(rev.clone(), epoch, 2));
        let metrics = ProxyMetrics::new("m".into());
        metrics.register(stats.clone());
        // 10 requests 20 s ago (500s), then 4 now: a 5 s window sees only the last 4.
        let now = epoch + Duration::from_secs(20);
        for i in 0..10 {
            stats.record(i, epoch, outcome(500, 5));
        }
        for (i, (s, ms)) in [(200, 1), (200, 2), (201, 3), (503, 100)]
            .into_iter()
            .enumerate()
        {
            stats.record(i, now, outcome(s, ms));
        }
        let (c, h) = stats.window(now, Duration::from_secs(5));
        assert_eq!((c.total(), c.classes[4], c.conversions), (4, 1, 1));
        assert_eq!(h.len(), 4);
        assert!(h.max() >= 99_000, "max latency {}", h.max());
        let (c, _) = stats.window(now, Duration::from_secs(30));
        assert_eq!((c.total(), c.classes[4]), (14, 11));
        let text = metrics.prometheus_text();
        assert!(
            text.contains("cutover_proxy_requests_total{revision=\"v2\",code_class=\"5xx\"} 11"),
            "{text}"
        );
        assert!(
            text.contains(
                "cutover_proxy_request_duration_seconds_bucket{revision=\"v2\",le=\"0.0025\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("cutover_proxy_request_duration_seconds_count{revision=\"v2\"} 14"),
            "{text}"
        );
    }

    #[test]
    fn slots_are_reused_after_the_ring_wraps() {
        let epoch = wall_now();
        let stats = RevisionStats::new("v1".parse().unwrap(), epoch, 1);
        stats.record(0, epoch, outcome(500, 1));
        let later = epoch + Duration::from_secs(WINDOW_SLOTS);
        stats.record(0, later, outcome(200, 1));
        let (c, h) = stats.window(later, Duration::from_secs(WINDOW_SLOTS));
        assert_eq!((c.total(), c.classes[4], h.len()), (1, 0, 1));
    }

    #[test]
    fn unknown_queries_and_revisions_are_permanent_errors() {
        let metrics = ProxyMetrics::new("m".into());
        metrics.register(Arc::new(RevisionStats::new(
            "v1".parse().unwrap(),
            wall_now(),
            1,
        )));
        let v1 = "v1".parse().unwrap();
        let err = metrics
            .samples("nope", &v1, Duration::from_secs(1))
            .unwrap_err();
        assert!(err.to_string().contains("no metric `nope`"), "{err}");
        let err = metrics
            .samples("errors", &"v9".parse().unwrap(), Duration::from_secs(1))
            .unwrap_err();
        assert!(err.to_string().contains("revision `v9`"), "{err}");
        assert!(
            metrics
                .samples("latency_p99", &v1, Duration::from_secs(1))
                .unwrap()
                .is_empty()
        );
    }
}
