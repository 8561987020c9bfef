//! A rollout whose process is killed (SIGKILL) at any point resumes from its state file and ends
//! where an uninterrupted run ends: same outcome, same final split, every migration applied (and
//! reverted) exactly as often.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use cutover_tests::{FileMigration, FileRouter};

struct Run {
    outcome: String,
    final_split: String,
    expand: Vec<String>,
    contract: Vec<String>,
}

fn child(state: &Path, world: &Path, verdict: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crash-child"));
    cmd.arg(state).arg(world).arg(verdict).stdout(Stdio::piped()).stderr(Stdio::inherit());
    cmd
}

/// Runs the child to the end and reads the world it left.
fn finish(state: &Path, world: &Path, verdict: &str) -> Run {
    let output = child(state, world, verdict).output().expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    let outcome = stdout
        .lines()
        .find_map(|l| l.strip_prefix("outcome "))
        .unwrap_or_else(|| panic!("no outcome in {stdout}"))
        .to_owned();
    Run {
        outcome,
        final_split: FileRouter::current(world).map(|s| s.to_string()).unwrap_or_default(),
        expand: FileMigration::calls(world, "expand"),
        contract: FileMigration::calls(world, "contract"),
    }
}

/// Starts the child, kills it with SIGKILL right after its `kill_after`-th record, and returns
/// how many records it printed (fewer when it finished first).
fn kill_after(state: &Path, world: &Path, verdict: &str, kill_after: usize) -> usize {
    let mut process = child(state, world, verdict).spawn().expect("the child starts");
    let stdout = process.stdout.take().expect("piped stdout");
    let mut seen = 0;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.starts_with("record ") {
            seen += 1;
            if seen == kill_after {
                process.kill().expect("SIGKILL");
                break;
            }
        }
    }
    process.wait().expect("the child exits");
    seen
}

fn check_every_kill_point(verdict: &str) {
    let reference = {
        let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        finish(state.path(), world.path(), verdict)
    };
    let records = {
        let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        kill_after(state.path(), world.path(), verdict, usize::MAX)
    };
    assert!(records > 5, "the rollout makes several decisions ({records})");
    for k in 1..records {
        let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        kill_after(state.path(), world.path(), verdict, k);
        let resumed = finish(state.path(), world.path(), verdict);
        let at = format!("killed after record {k} of {records}");
        assert_eq!(resumed.outcome, reference.outcome, "{at}");
        assert_eq!(resumed.final_split, reference.final_split, "{at}");
        assert_eq!(resumed.expand, reference.expand, "{at}: expand calls");
        assert_eq!(resumed.contract, reference.contract, "{at}: contract calls");
    }
}

#[test]
fn killed_promotions_resume_to_the_same_end() {
    check_every_kill_point("pass");
}

#[test]
fn killed_rollbacks_resume_to_the_same_end() {
    check_every_kill_point("fail");
}

#[test]
fn the_reference_runs_end_as_planned() {
    let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let promoted = finish(state.path(), world.path(), "pass");
    assert_eq!(promoted.outcome, "promoted");
    assert_eq!(promoted.final_split, "v1 0%, v2 100%");
    assert_eq!((promoted.expand.as_slice(), promoted.contract.as_slice()), (&["apply".to_owned()][..], &["apply".to_owned()][..]));

    let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rolled_back = finish(state.path(), world.path(), "fail");
    assert_eq!(rolled_back.outcome, "rolled-back");
    assert_eq!(rolled_back.final_split, "v1 100%, v2 0%");
    assert_eq!(rolled_back.expand, ["apply", "revert"]);
    assert!(rolled_back.contract.is_empty());
}
