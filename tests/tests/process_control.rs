//! A rollout run by one OS process is seen and steered from another through a file store:
//! pause, resume and abort with who and why; one live owner at a time; commands sent while no
//! process runs the rollout are applied, once, when one resumes it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cutover::{
    FileStateStore, RolloutHandle, RolloutId, StateStore as _, StoreError, Summary, Weight,
};
use cutover_tests::FileRouter;

fn spawn_child(state: &Path, world: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_control-child"))
        .arg(state)
        .arg(world)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts")
}

/// The child's stdout lines, once it has exited.
fn lines(child: Child) -> Vec<String> {
    let output = child.wait_with_output().expect("the child exits");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn id() -> RolloutId {
    RolloutId::new("steered").unwrap()
}

fn handle(state: &Path, who: &str) -> RolloutHandle {
    RolloutHandle::new(FileStateStore::new(state).unwrap(), id()).by(who)
}

/// Polls the rollout's summary until `done` holds; fails after 15 s.
async fn wait_for(state: &Path, what: &str, done: impl Fn(&Summary) -> bool) -> Summary {
    let handle = handle(state, "observer");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(summary) = handle.summary().await.unwrap() {
            if done(&summary) {
                return summary;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last summary: {summary:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn candidate_percent(summary: &Summary) -> Option<f64> {
    summary
        .split
        .as_ref()
        .map(|s| s.weight(&summary.revisions.candidate).percent())
}

#[tokio::test(flavor = "current_thread")]
async fn another_process_pauses_resumes_and_aborts_a_running_rollout() {
    let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state, world) = (state.path(), world.path());
    let child = spawn_child(state, world);

    let at_timed_pause = wait_for(state, "the timed pause", |s| s.step == 1).await;
    assert_eq!(candidate_percent(&at_timed_pause), Some(10.0));
    let owner = at_timed_pause
        .lease
        .expect("the child holds the lease")
        .owner;

    // A second process on the same rollout waits for the owner instead of taking over.
    let second = spawn_child(state, world);

    handle(state, "alice")
        .pause("checking dashboards")
        .await
        .unwrap();
    let paused = wait_for(state, "alice's pause", |s| s.paused.is_some()).await;
    assert_eq!(
        paused.paused.as_deref(),
        Some("paused by alice: checking dashboards")
    );
    // The timed pause (2 s) runs out while paused by hand: the rollout must not move on.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let held = wait_for(state, "the state", |_| true).await;
    assert_eq!((held.step, held.paused.is_some()), (1, true), "{held:?}");

    handle(state, "bob")
        .resume("dashboards fine")
        .await
        .unwrap();
    let at_second_pause = wait_for(state, "the untimed pause", |s| s.step == 3).await;
    assert_eq!(candidate_percent(&at_second_pause), Some(40.0));
    assert_eq!(
        at_second_pause.lease.map(|l| l.owner),
        Some(owner.clone()),
        "the first process still owns the rollout"
    );

    handle(state, "carol").abort("p99 too high").await.unwrap();
    let out = lines(child);
    assert!(
        out.contains(&"outcome aborted by carol: p99 too high".to_owned()),
        "{out:?}"
    );
    let stable = FileRouter::current(world).expect("a split was set");
    assert_eq!(stable.weight(&"v1".parse().unwrap()), Weight::FULL);

    // The second process got the lease once the first let go, found the rollout finished and
    // did nothing.
    let second_out = lines(second);
    assert!(
        second_out
            .iter()
            .any(|l| l.starts_with(&format!("waiting for the lease of {owner}"))),
        "{second_out:?}"
    );
    assert_eq!(
        second_out.last().map(String::as_str),
        Some("outcome aborted by carol: p99 too high")
    );

    // The first process's decision log shows each command with who and why.
    let records = handle(state, "auditor").records().await.unwrap();
    let summaries: Vec<&str> = records.iter().map(|r| r.summary.as_str()).collect();
    for expected in [
        "command pause by alice (checking dashboards): paused",
        "command resume by bob (dashboards fine): resumed (paused by alice: checking dashboards)",
        "command abort by carol (p99 too high): rolling back",
    ] {
        assert_eq!(
            summaries.iter().filter(|s| **s == expected).count(),
            1,
            "{expected:?} in {summaries:#?}"
        );
    }
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());

    // Bad input gets clear errors.
    let err = handle(state, "dave").resume("too late").await.unwrap_err();
    assert!(matches!(err, StoreError::Finished { .. }), "{err:?}");
    assert!(
        err.to_string().contains("has finished (aborted by carol"),
        "{err}"
    );
    let unknown = RolloutHandle::new(
        FileStateStore::new(state).unwrap(),
        RolloutId::new("no-such-rollout").unwrap(),
    );
    let err = unknown.pause("?").await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownRollout { .. }), "{err:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_command_sent_while_the_owner_is_down_is_applied_once_on_resume() {
    let (state, world) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state, world) = (state.path(), world.path());
    let mut child = spawn_child(state, world);
    wait_for(state, "the untimed pause", |s| s.step == 3).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    // Sent twice with one idempotency key (a retrying client): queued once.
    let resume = cutover::CommandRequest::new(cutover::Command::Resume, "dave")
        .reason("owner is down, go on")
        .key("resume-after-outage");
    let first = handle(state, "dave").send(resume.clone()).await.unwrap();
    let again = handle(state, "dave").send(resume).await.unwrap();
    assert_eq!(first, again);
    let store = FileStateStore::new(state).unwrap();
    assert_eq!(store.commands(&id(), 0).await.unwrap().len(), 1);

    // A new process waits for the dead one's lease to expire, then resumes the rollout.
    let out = lines(spawn_child(state, world));
    assert_eq!(
        out.last().map(String::as_str),
        Some("outcome promoted"),
        "{out:?}"
    );
    let records = handle(state, "auditor").records().await.unwrap();
    let summaries: Vec<&str> = records.iter().map(|r| r.summary.as_str()).collect();
    assert_eq!(
        summaries
            .iter()
            .filter(|s| s.starts_with("command resume by dave (owner is down, go on)"))
            .count(),
        1,
        "{summaries:#?}"
    );
    assert_eq!(
        summaries
            .iter()
            .filter(|s| s.starts_with("resumed by"))
            .count(),
        1
    );
    let done = FileRouter::current(world).expect("a split was set");
    assert_eq!(done.weight(&"v2".parse().unwrap()), Weight::FULL);
}
