//! Benchmarks of the statistics: the Kayenta judge (preprocessing, Mann-Whitney interval,
//! effect size, label) on 10^4, 10^5 and 10^6 samples per arm, and the Mann-Whitney U /
//! p-value alone. Targets (issue 3): the judge on 10^6 vs 10^6 under 0.5 s; Mann-Whitney at
//! least 10x faster than SciPy (compare with `scripts/bench-analysis`).
//!
//! `cargo bench -p cutover-benches --bench analysis`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use cutover_analysis::kayenta::{JudgeSettings, MetricConfig, classify};
use cutover_analysis::{Alternative, Method, mann_whitney, shift_interval};
use cutover_benches::lognormal;

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

fn judge(c: &mut Criterion) {
    let mut group = c.benchmark_group("judge");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    let config = MetricConfig::default();
    for n in SIZES {
        let control = lognormal(n, 1, 1.0);
        let experiment = lognormal(n, 2, 1.01);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                classify(
                    black_box(&control),
                    black_box(&experiment),
                    &config,
                    JudgeSettings::default(),
                )
            });
        });
    }
    group.finish();
}

fn mann_whitney_alone(c: &mut Criterion) {
    let mut group = c.benchmark_group("mann_whitney");
    group.sample_size(10);
    for n in SIZES {
        let x = lognormal(n, 3, 1.01);
        let y = lognormal(n, 4, 1.0);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                mann_whitney(
                    black_box(&x),
                    black_box(&y),
                    Alternative::TwoSided,
                    Method::Asymptotic,
                    true,
                )
            });
        });
    }
    group.finish();
}

fn interval_alone(c: &mut Criterion) {
    let mut group = c.benchmark_group("shift_interval");
    group.sample_size(10);
    for n in [10_000, 100_000] {
        let x = lognormal(n, 5, 1.01);
        let y = lognormal(n, 6, 1.0);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| shift_interval(black_box(&x), black_box(&y), 0.98));
        });
    }
    group.finish();
}

criterion_group!(benches, judge, mann_whitney_alone, interval_alone);
criterion_main!(benches);
