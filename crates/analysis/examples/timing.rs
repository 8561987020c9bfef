//! Times one computation on data from files, for `scripts/bench-analysis` (which times SciPy on
//! the same data in the same run).
//!
//! ```text
//! cargo run --release -q -p cutover-analysis --example timing -- mann_whitney x.f64 y.f64 5
//! ```
//!
//! `x.f64` and `y.f64` hold little-endian f64 values back to back. Prints one JSON line with
//! the best time of the repeats (seconds) and the result, so the script can check both sides
//! agree. Criterion benches in `benches/` are the reference numbers; this exists only to put
//! SciPy and cutover side by side in one run.

use std::process::ExitCode;

use cutover_analysis::kayenta::{self, JudgeSettings, MetricConfig};
use cutover_analysis::{Alternative, Method, mann_whitney};

fn read(path: &str) -> Result<Vec<f64>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() % 8 != 0 {
        return Err(format!(
            "{path}: length {} is not a multiple of 8",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

// Wall-clock timing is the point of this tool; the engine's clock rules do not apply here.
#[allow(clippy::disallowed_methods)]
fn time<T>(repeats: u32, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..repeats.max(1) {
        let start = std::time::Instant::now();
        let r = f();
        best = best.min(start.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("at least one repeat"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [op, x, y, repeats] = args.as_slice() else {
        eprintln!("usage: timing <mann_whitney|judge> X.f64 Y.f64 REPEATS");
        return ExitCode::FAILURE;
    };
    let (x, y) = match (read(x), read(y)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let repeats: u32 = repeats.parse().unwrap_or(3);
    match op.as_str() {
        "mann_whitney" => {
            let (secs, r) = time(repeats, || {
                mann_whitney(&x, &y, Alternative::TwoSided, Method::Asymptotic, true)
            });
            match r {
                Ok(r) => println!(
                    "{{\"seconds\":{secs},\"u\":{},\"p_value\":{}}}",
                    r.u, r.p_value
                ),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        "judge" => {
            let config = MetricConfig::default();
            let (secs, c) = time(repeats, || {
                kayenta::classify(&y, &x, &config, JudgeSettings::default())
            });
            println!(
                "{{\"seconds\":{secs},\"label\":\"{}\",\"estimate\":{}}}",
                c.label,
                c.estimate.unwrap_or(f64::NAN)
            );
        }
        other => {
            eprintln!("unknown op `{other}`");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
