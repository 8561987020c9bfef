//! Metrics by flag variant: the application records each request's outcome under the variant
//! it was served, and the rollout's analyses query them per revision.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{MetricQuery, MetricSource, ProviderError, RevisionId, Samples};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::time::Instant;

/// How many one-second slots a variant keeps: queries reach back at most this far.
pub const WINDOW_SLOTS: u64 = 300;

/// Latencies are kept in microseconds, from 1 µs to 60 s, at two significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;

/// The queries [`VariantMetrics`] answers, for error messages and docs.
pub const QUERIES: &str = "requests, error_rate (or errors), success_rate, conversions, latency, latency_mean, latency_p50, latency_p90, latency_p95, latency_p99";

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("static histogram bounds are valid")
}

/// What happened to one request.
///
/// ```
/// use std::time::Duration;
/// use cutover_openfeature::Outcome;
/// let ok = Outcome::ok(Duration::from_millis(12));
/// let failed = Outcome::error(Duration::from_millis(40));
/// let bought = Outcome::ok(Duration::from_millis(15)).converted();
/// # let _ = (ok, failed, bought);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    error: bool,
    conversion: bool,
    latency: Duration,
}

impl Outcome {
    /// A request that succeeded after `latency`.
    pub fn ok(latency: Duration) -> Self {
        Outcome {
            error: false,
            conversion: false,
            latency,
        }
    }

    /// A request that failed after `latency`.
    pub fn error(latency: Duration) -> Self {
        Outcome {
            error: true,
            ..Outcome::ok(latency)
        }
    }

    /// Marks the request as a conversion (a purchase, a sign-up: what an A/B test counts).
    pub fn converted(mut self) -> Self {
        self.conversion = true;
        self
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    requests: u64,
    errors: u64,
    conversions: u64,
    latency_sum_us: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.conversions += other.conversions;
        self.latency_sum_us += other.latency_sum_us;
    }
}

#[derive(Debug)]
struct Slot {
    second: u64,
    counts: Counts,
    latency: Histogram<u64>,
}

/// One variant's last [`WINDOW_SLOTS`] seconds.
#[derive(Debug)]
struct Series {
    slots: Vec<Slot>,
}

impl Series {
    fn new() -> Self {
        Series {
            slots: (0..WINDOW_SLOTS)
                .map(|_| Slot {
                    second: u64::MAX,
                    counts: Counts::default(),
                    latency: new_histogram(),
                })
                .collect(),
        }
    }

    fn record(&mut self, second: u64, outcome: Outcome) {
        #[allow(clippy::cast_possible_truncation)]
        let slot = &mut self.slots[(second % WINDOW_SLOTS) as usize];
        if slot.second != second {
            slot.second = second;
            slot.counts = Counts::default();
            slot.latency.reset();
        }
        let micros = u64::try_from(outcome.latency.as_micros())
            .unwrap_or(MAX_LATENCY_US)
            .clamp(1, MAX_LATENCY_US);
        slot.counts.requests += 1;
        slot.counts.errors += u64::from(outcome.error);
        slot.counts.conversions += u64::from(outcome.conversion);
        slot.counts.latency_sum_us += micros;
        slot.latency.saturating_record(micros);
    }

    /// The requests that ended in the trailing `span` seconds up to second `now` (included).
    fn window(&self, now: u64, span: u64) -> (Counts, Histogram<u64>) {
        let mut counts = Counts::default();
        let mut latency = new_histogram();
        for slot in &self.slots {
            if slot.second <= now && now - slot.second < span {
                counts.add(&slot.counts);
                let _ = latency.add(&slot.latency);
            }
        }
        (counts, latency)
    }
}

#[derive(Debug)]
struct Shared {
    epoch: Instant,
    series: Mutex<HashMap<String, Series>>,
}

impl Shared {
    fn second(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_secs()
    }
}

/// The handle an application records through: clone it into every request handler.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use cutover_openfeature::{Outcome, VariantMetrics};
/// let metrics = VariantMetrics::new("flags");
/// let recorder = metrics.recorder();
/// // In a request handler, after evaluating the flag (`details.variant`):
/// recorder.record("new", Outcome::ok(Duration::from_millis(12)));
/// assert_eq!(metrics.counts("new", Duration::from_secs(60)), (1, 0));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct VariantRecorder {
    shared: Arc<Shared>,
}

impl VariantRecorder {
    /// Records one request served by `variant` (the evaluation's variant: a revision's name).
    /// One short lock; no allocation but the first time a variant is seen.
    pub fn record(&self, variant: &str, outcome: Outcome) {
        let second = self.shared.second();
        let mut series = self.shared.series.lock();
        if let Some(s) = series.get_mut(variant) {
            s.record(second, outcome);
        } else {
            let mut s = Series::new();
            s.record(second, outcome);
            series.insert(variant.to_owned(), s);
        }
    }
}

/// Per-variant request counts and latency histograms as a [`MetricSource`], so the judges and
/// sequential tests compare the users who got each variant (flag on against flag off). Each
/// revision's numbers are those recorded under its name.
///
/// | query | samples |
/// |---|---|
/// | `requests` | `Values([n])`: requests recorded (empty when none) |
/// | `error_rate`, `errors` | `Counts { events: failed requests, total: requests }` |
/// | `success_rate` | `Counts { events: requests that did not fail, total }` |
/// | `conversions` | `Counts { events: converted requests, total }` |
/// | `latency` | `Values`: one latency per request in seconds (two significant digits) |
/// | `latency_mean`, `latency_p50`, `latency_p90`, `latency_p95`, `latency_p99` | `Values([seconds])` |
///
/// Time is tokio's ([`tokio::time::Instant`]), in whole seconds: a query's window covers the
/// current second and the ones before it, at most [`WINDOW_SLOTS`]. Under paused time (tests,
/// simulations) the windows follow the paused clock. No requests is empty samples, never zero.
#[derive(Debug, Clone)]
pub struct VariantMetrics {
    name: String,
    shared: Arc<Shared>,
}

impl VariantMetrics {
    /// Metrics called `name` (for records and errors), starting now.
    pub fn new(name: impl Into<String>) -> Self {
        VariantMetrics {
            name: name.into(),
            shared: Arc::new(Shared {
                epoch: Instant::now(),
                series: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A handle to record through.
    pub fn recorder(&self) -> VariantRecorder {
        VariantRecorder {
            shared: Arc::clone(&self.shared),
        }
    }

    fn window(&self, variant: &str, window: Duration) -> (Counts, Histogram<u64>) {
        let now = self.shared.second();
        let span = window.as_secs().clamp(1, WINDOW_SLOTS);
        self.shared.series.lock().get(variant).map_or_else(
            || (Counts::default(), new_histogram()),
            |s| s.window(now, span),
        )
    }

    /// Requests recorded for `variant` over the trailing `window`, and how many failed.
    pub fn counts(&self, variant: &str, window: Duration) -> (u64, u64) {
        let (counts, _) = self.window(variant, window);
        (counts.requests, counts.errors)
    }

    /// The samples for one query: see the table on [`VariantMetrics`].
    pub fn samples(
        &self,
        query: &str,
        revision: &RevisionId,
        window: Duration,
    ) -> Result<Samples, ProviderError> {
        let (counts, latency) = self.window(revision.as_str(), window);
        let total = counts.requests;
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
                events: counts.errors,
                total,
            },
            "success_rate" => Samples::Counts {
                events: total - counts.errors,
                total,
            },
            "conversions" => Samples::Counts {
                events: counts.conversions,
                total,
            },
            "latency" => {
                let mut values = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
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
                    "variant metrics `{}` have no query `{other}`; they answer {QUERIES}",
                    self.name
                )));
            }
        };
        Ok(samples)
    }
}

#[async_trait]
impl MetricSource for VariantMetrics {
    fn name(&self) -> &str {
        &self.name
    }

    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError> {
        self.samples(&query.query, &query.revision, query.window)
    }
}

#[cfg(test)]
mod tests {
    use cutover_core::ErrorKind;

    use super::*;

    fn q(metrics: &VariantMetrics, query: &str, rev: &str, secs: u64) -> Samples {
        metrics
            .samples(query, &rev.parse().unwrap(), Duration::from_secs(secs))
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn counts_and_latencies_per_variant_over_the_window() {
        let metrics = VariantMetrics::new("flags");
        let rec = metrics.recorder();
        assert!(q(&metrics, "error_rate", "on", 10).is_empty());
        assert!(q(&metrics, "requests", "on", 10).is_empty());
        rec.record("on", Outcome::error(Duration::from_millis(30)));
        rec.record("on", Outcome::ok(Duration::from_millis(10)).converted());
        rec.record("off", Outcome::ok(Duration::from_millis(20)));
        tokio::time::advance(Duration::from_secs(5)).await;
        rec.record("on", Outcome::ok(Duration::from_millis(10)));

        assert_eq!(
            q(&metrics, "error_rate", "on", 10),
            Samples::Counts {
                events: 1,
                total: 3
            }
        );
        assert_eq!(
            q(&metrics, "success_rate", "on", 10),
            Samples::Counts {
                events: 2,
                total: 3
            }
        );
        assert_eq!(
            q(&metrics, "conversions", "on", 10),
            Samples::Counts {
                events: 1,
                total: 3
            }
        );
        // Only the last second's request is in a 1 s window.
        assert_eq!(
            q(&metrics, "errors", "on", 1),
            Samples::Counts {
                events: 0,
                total: 1
            }
        );
        let Samples::Values(latencies) = q(&metrics, "latency", "on", 10) else {
            panic!("latency is values")
        };
        assert_eq!(latencies.len(), 3);
        assert!(
            (latencies.iter().sum::<f64>() - 0.050).abs() < 0.001,
            "{latencies:?}"
        );
        let Samples::Values(mean) = q(&metrics, "latency_mean", "on", 10) else {
            panic!("mean is values")
        };
        assert!((mean[0] - 0.050 / 3.0).abs() < 1e-9, "{mean:?}");
        assert_eq!(
            q(&metrics, "requests", "off", 10),
            Samples::Values(vec![1.0])
        );
        assert_eq!(metrics.counts("off", Duration::from_secs(10)), (1, 0));

        // Slots older than the window are reused, not added up.
        tokio::time::advance(Duration::from_secs(WINDOW_SLOTS)).await;
        rec.record("on", Outcome::ok(Duration::from_millis(10)));
        assert_eq!(
            q(&metrics, "errors", "on", WINDOW_SLOTS),
            Samples::Counts {
                events: 0,
                total: 1
            }
        );
    }

    #[tokio::test]
    async fn an_unknown_query_names_the_known_ones() {
        let metrics = VariantMetrics::new("flags");
        let err = metrics
            .samples("p99", &"on".parse().unwrap(), Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains("latency_p99"), "{err}");
    }
}
