//! A failover guard's records in the store's decision log: more than the document keeps, all
//! readable in order with a cursor, none lost or written twice when the guard process dies at
//! any write and another one takes over.

use std::sync::Arc;
use std::time::Duration;

use cutover_core::guard::{
    FailoverCommand, FailoverGuard, FailoverPolicy, GuardEntry, GuardError, GuardHandle,
    GuardRecord, LOG_KEEP, Target, log_id,
};
use cutover_core::planner::Setup;
use cutover_core::state::RolloutState;
use cutover_core::{
    Canary, CanaryStep, FileStateStore, MemoryStateStore, Plan, RevisionId, Revisions, RolloutId,
    StateStore, Timestamp, Weight,
};
use cutover_test::{CrashMode, CrashingStore, FakeProbe, FakeRouter};

const SECOND: Duration = Duration::from_secs(1);

fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

fn pct(p: u8) -> Weight {
    Weight::from_percent(p).unwrap()
}

fn id() -> RolloutId {
    "regions".parse().unwrap()
}

fn policy() -> FailoverPolicy {
    FailoverPolicy::new(vec![
        Target::new(rev("eu"), pct(50), pct(100)),
        Target::new(rev("us"), pct(50), pct(100)),
    ])
    .unwrap()
}

fn guard(store: Arc<dyn StateStore>, instance: &str) -> FailoverGuard {
    guard_polling(store, instance, SECOND)
}

fn guard_polling(store: Arc<dyn StateStore>, instance: &str, poll: Duration) -> FailoverGuard {
    FailoverGuard::builder(id(), policy())
        .router(FakeRouter::new("proxy"))
        .probe(FakeProbe::new())
        .store(store)
        .instance(instance)
        .probe_every(10 * SECOND, 2 * SECOND)
        .command_poll(poll)
        .build()
        .unwrap()
}

/// Sends commands `from..to` (pause and resume in turn), `batch` a second, then waits until
/// the guard has applied them all.
async fn send_commands(handle: &GuardHandle, from: u64, to: u64, batch: u64) {
    send_commands_every(handle, from, to, batch, SECOND).await;
}

/// The same, `batch` per `poll`; gives up after 3,000 polls.
async fn send_commands_every(handle: &GuardHandle, from: u64, to: u64, batch: u64, poll: Duration) {
    for tries in 0.. {
        if handle.document().await.unwrap().is_some() {
            break;
        }
        assert!(tries < 3000, "the guard never saved its document");
        tokio::time::sleep(poll).await;
    }
    for n in from..to {
        let command = if n % 2 == 0 {
            FailoverCommand::Pause
        } else {
            FailoverCommand::Resume
        };
        handle.send(command, &format!("command {n}")).await.unwrap();
        if (n + 1) % batch == 0 {
            tokio::time::sleep(poll).await;
        }
    }
    for _ in 0..3000 {
        let doc = handle.document().await.unwrap().unwrap();
        if doc.last_command == to {
            return;
        }
        tokio::time::sleep(poll).await;
    }
    panic!("the guard did not apply command {to}");
}

/// Checks the log is `1..=n` without gap or repeat, ends where the document says, and holds
/// every command `1..=commands` exactly once; returns it.
async fn check_log(store: &Arc<dyn StateStore>, commands: u64) -> Vec<GuardRecord> {
    let handle = GuardHandle::new(store.clone(), id());
    let log = handle.records(0).await.unwrap();
    let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "the log is gap-free and in order");
    let doc = handle.document().await.unwrap().unwrap();
    assert_eq!(
        doc.next_seq,
        log.len() as u64 + 1,
        "every record is in the log"
    );
    let applied: Vec<u64> = log
        .iter()
        .filter_map(|r| match &r.entry {
            GuardEntry::Command { command, .. } => Some(command.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        applied,
        (1..=commands).collect::<Vec<_>>(),
        "each command is recorded once, in order"
    );
    log
}

/// `poll`: how often the guard looks at its inbox and the test sends a batch.
async fn keeps_every_record(store: Arc<dyn StateStore>, poll: Duration) {
    const COMMANDS: u64 = 1000;
    let guard = Arc::new(guard_polling(store.clone(), "one", poll));
    let running = guard.spawn();
    let handle = GuardHandle::new(store.clone(), id());
    let sent = tokio::spawn({
        let handle = handle.clone();
        async move { send_commands_every(&handle, 0, COMMANDS, 100, poll).await }
    });
    while !sent.is_finished() {
        assert!(
            !running.is_finished(),
            "the guard stopped: {:?}",
            running.stop().await
        );
        tokio::time::sleep(poll).await;
    }
    sent.await.unwrap();
    running.stop().await.unwrap();

    let log = check_log(&store, COMMANDS).await;
    assert!(log.len() > 1000, "{} records", log.len());
    let doc = handle.document().await.unwrap().unwrap();
    assert_eq!(doc.log.len(), LOG_KEEP, "the document keeps only a tail");
    assert_eq!(doc.log[..], log[log.len() - LOG_KEEP..]);

    // Read with a cursor, a page at a time.
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let page = handle.records_page(after, 97).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, log);
    // In the store's log, under the guard's log id, with a summary for people.
    let raw = store.records(&log_id(&id()).unwrap(), 0, 3).await.unwrap();
    assert_eq!(raw.len(), 3);
    assert_eq!(raw[0].summary, "started by one");
}

#[tokio::test(start_paused = true)]
async fn keeps_more_than_a_thousand_records_in_the_memory_store() {
    keeps_every_record(Arc::new(MemoryStateStore::new()), SECOND).await;
}

/// On real time: the file store works on blocking threads, which paused time would run ahead
/// of. Waits at most 3,000 polls of 20 ms for the guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_more_than_a_thousand_records_in_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    keeps_every_record(
        Arc::new(FileStateStore::new(dir.path()).unwrap()),
        Duration::from_millis(20),
    )
    .await;
}

/// A guard process dies at its `crash_at`-th write (before or after it), at any point of its
/// saves and appends; another takes over on the same store. No record is lost or written
/// twice, and every command is applied and recorded once.
#[tokio::test(start_paused = true)]
async fn a_restart_at_any_write_loses_and_doubles_no_record() {
    const FIRST: u64 = 16;
    const ALL: u64 = 24;
    let mut crashed = 0;
    for crash_at in 1..=24 {
        for mode in [CrashMode::AfterWrite, CrashMode::BeforeWrite] {
            let crashing = CrashingStore::new(crash_at, mode);
            let store: Arc<dyn StateStore> = Arc::new(crashing.inner());
            let handle = GuardHandle::new(store.clone(), id());
            {
                let first = guard(Arc::new(crashing.clone()), "first");
                tokio::select! {
                    result = first.run_until(std::future::pending()) => panic!("stopped: {result:?}"),
                    () = crashing.crashed() => {}
                    () = send_commands(&handle, 0, FIRST, 1) => {}
                }
            }
            crashed += u32::from(crashing.has_crashed());
            let second = Arc::new(guard(store.clone(), "second"));
            let running = second.spawn();
            send_commands(&handle, queued(&handle).await, ALL, 3).await;
            running.stop().await.unwrap();

            let log = check_log(&store, ALL).await;
            let started: Vec<&str> = log
                .iter()
                .filter_map(|r| match &r.entry {
                    GuardEntry::Started { instance, .. } => Some(instance.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(
                started.last(),
                Some(&"second"),
                "crash at {crash_at} {mode:?}"
            );
        }
    }
    assert_eq!(crashed, 48, "every run crashed");
}

/// Commands queued so far.
async fn queued(handle: &GuardHandle) -> u64 {
    handle
        .document()
        .await
        .unwrap()
        .and_then(|d| d.inbox.last().map(|c| c.seq))
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn refuses_a_log_id_a_rollout_is_stored_under() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let log = log_id(&id()).unwrap();
    assert_eq!(log.as_str(), "guard.regions");
    let setup = Setup::new(
        Plan::from(Canary::new([CanaryStep::SetWeight(pct(10))])),
        Revisions::new("v1", "v2").unwrap(),
    );
    let state = RolloutState::new(log.clone(), setup, Timestamp::from_unix_millis(0));
    store.save(&log, &state, None).await.unwrap();
    let err = guard(store, "one")
        .run_until(std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GuardError::LogTaken { log: l, .. } if *l == log),
        "{err}"
    );
}
