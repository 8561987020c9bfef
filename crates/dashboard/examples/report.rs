//! Writes the HTML report of a decision log exported as JSON (what the examples' `--out`
//! writes):
//!
//! ```text
//! cargo run -p cutover-dashboard --example report -- target/canary-decisions.json target/canary-report.html
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: report RECORDS.json REPORT.html");
        return ExitCode::FAILURE;
    };
    let records: Vec<cutover_core::DecisionRecord> = match std::fs::read(input)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(records) => records,
        Err(e) => {
            eprintln!("cannot read the decision records in {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let id = std::path::Path::new(input).file_stem().map_or_else(
        || "rollout".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let html = cutover_dashboard::Report::new(&records).id(id).render();
    if let Err(e) = std::fs::write(output, html) {
        eprintln!("cannot write {output}: {e}");
        return ExitCode::FAILURE;
    }
    println!("report of {} decisions: {output}", records.len());
    ExitCode::SUCCESS
}
