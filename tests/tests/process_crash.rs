//! A rollout whose process is killed (SIGKILL) at any point resumes from its state file and ends
//! where an uninterrupted run ends: same outcome, same final split, and every migration applied
//! (and reverted) exactly as often.
//!
//! The child stops at checkpoints (after each save, and right after each effect a provider made,
//! before the engine saved its result) and waits for the test to say go; the test kills it at
//! every checkpoint in turn, so every window between an effect and its record is hit.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use cutover::{FileStateStore, RolloutId, StateStore as _};
use cutover_tests::{FileMigration, FileRouter};

#[derive(Debug, PartialEq)]
struct Run {
    outcome: String,
    final_split: String,
    expand: Vec<String>,
    contract: Vec<String>,
}

fn child(state: &Path, world: &Path, verdict: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crash-child"));
    cmd.arg(state)
        .arg(world)
        .arg(verdict)
        .stderr(Stdio::inherit());
    cmd
}

/// Runs the child freely to the end (taking the rollout over from a killed child when
/// `takeover`) and reads the world it left.
fn finish(state: &Path, world: &Path, verdict: &str, takeover: bool) -> Run {
    let mut cmd = child(state, world, verdict);
    if takeover {
        cmd.arg("takeover");
    }
    let output = cmd.output().expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    let outcome = stdout
        .lines()
        .find_map(|l| l.strip_prefix("outcome "))
        .unwrap_or_else(|| panic!("no outcome in {stdout}"))
        .to_owned();
    check_log(state);
    Run {
        outcome,
        final_split: FileRouter::current(world)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        expand: FileMigration::calls(world, "expand"),
        contract: FileMigration::calls(world, "contract"),
    }
}

/// The decision log is complete: gap-free from 1 to the state's last record, one `finished`.
fn check_log(state: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = FileStateStore::new(state).unwrap();
        let id = RolloutId::new("crashy").unwrap();
        let last = store.load(&id).await.unwrap().unwrap().state.last_seq;
        let log = store.records(&id, 0, usize::MAX).await.unwrap();
        let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
        assert_eq!(
            log.iter()
                .filter(|r| r.summary.starts_with("finished"))
                .count(),
            1
        );
    });
}

/// Runs the child in stepped mode, lets it pass `kill_at - 1` checkpoints and kills it with
/// SIGKILL at checkpoint `kill_at`. Returns the checkpoints it reached.
fn kill_at(state: &Path, world: &Path, verdict: &str, kill_at: usize) -> Vec<String> {
    let mut process = child(state, world, verdict)
        .arg("stepped")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the child starts");
    let mut stdin = process.stdin.take().expect("piped stdin");
    let stdout = BufReader::new(process.stdout.take().expect("piped stdout"));
    let mut points = Vec::new();
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        let Some(point) = line.strip_prefix("point ") else {
            continue;
        };
        points.push(point.to_owned());
        if points.len() == kill_at {
            process.kill().expect("SIGKILL");
            break;
        }
        writeln!(stdin, "go").expect("the child waits for go");
    }
    drop(stdin);
    process.wait().expect("the child exits");
    points
}

fn check_every_kill_point(verdict: &str) {
    let reference = {
        let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        finish(state.path(), world.path(), verdict, false)
    };
    let points = {
        let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        kill_at(state.path(), world.path(), verdict, usize::MAX)
    };
    assert!(
        points.iter().any(|p| p.starts_with("applied")),
        "{points:?}"
    );
    for (k, point) in points.iter().enumerate() {
        let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let reached = kill_at(state.path(), world.path(), verdict, k + 1);
        assert_eq!(
            reached.last(),
            Some(point),
            "the run is deterministic up to the kill"
        );
        let resumed = finish(state.path(), world.path(), verdict, true);
        assert_eq!(
            resumed,
            reference,
            "killed at checkpoint {} of {} ({point})",
            k + 1,
            points.len()
        );
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
    let promoted = finish(state.path(), world.path(), "pass", false);
    assert_eq!(promoted.outcome, "promoted");
    assert_eq!(promoted.final_split, "v1 0%, v2 100%");
    assert_eq!(promoted.expand, ["apply"]);
    assert_eq!(promoted.contract, ["apply"]);

    let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rolled_back = finish(state.path(), world.path(), "fail", false);
    assert_eq!(rolled_back.outcome, "rolled-back");
    assert_eq!(rolled_back.final_split, "v1 100%, v2 0%");
    assert_eq!(rolled_back.expand, ["apply", "revert"]);
    assert!(rolled_back.contract.is_empty());
}
