//! The JSON harness: reads one request on stdin, writes one result on stdout.
//!
//! ```text
//! echo '{"op":"mann_whitney","x":[1,2,3],"y":[4,5,6]}' | cargo run -q -p cutover-analysis --example analyze
//! ```
//!
//! The request format is in the crate README. Bad JSON or bad input exits with status 1 and
//! a message on stderr.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    match cutover_analysis::harness::run_json(&input) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
