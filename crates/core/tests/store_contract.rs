//! The store contract suite of `cutover-test` against the memory and file stores, and the file
//! store's handling of damaged files.

use cutover_core::{FileStateStore, MemoryStateStore, RolloutId, StateStore, StoreError};
use cutover_test::store_contract;

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    let report = store_contract(&MemoryStateStore::new(), "contract-")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.notifies && !report.leases_expire && report.documents,
        "{report}"
    );
    assert_eq!(report.passed.len(), 8, "{report:?}");
}

#[tokio::test]
async fn the_file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path()).unwrap();
    let report = store_contract(&store, "contract-")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !report.notifies && report.leases_expire && report.documents,
        "{report}"
    );
    assert_eq!(report.passed.len(), 8, "{report:?}");
    // Running it again on the same files finds its own data and still passes with a new prefix.
    store_contract(&store, "again-")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A rollout with a decision log of `n` records, on a file store.
async fn logged(n: u64) -> (tempfile::TempDir, FileStateStore, RolloutId) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path()).unwrap();
    let memory = MemoryStateStore::new();
    let id = RolloutId::new("logged").unwrap();
    // Real records: run a canary on a memory store, then copy its state and log.
    let rollout = cutover_core::Rollout::builder(
        "logged",
        cutover_core::Canary::new(
            (1..=n)
                .map(|i| cutover_core::CanaryStep::set_weight(u8::try_from(i).unwrap()).unwrap())
                .collect::<Vec<_>>(),
        ),
    )
    .revisions("v1", "v2")
    .router(cutover_test::FakeRouter::new("mesh"))
    .state_store(memory.clone())
    .build()
    .unwrap();
    rollout.run().await.unwrap();
    let stored = memory.load(&id).await.unwrap().unwrap();
    store.save(&id, &stored.state, None).await.unwrap();
    let records = memory.records(&id, 0, usize::MAX).await.unwrap();
    store.append(&id, &records).await.unwrap();
    (dir, store, id)
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_log_line_is_named_and_the_rest_still_reads() {
    let (_dir, store, id) = logged(3).await;
    let log = store.rollout_dir(&id).join("log.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let total = text.lines().count();
    assert!(total > 5, "{total} records");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = "{\"seq\": 4, garbage".to_owned();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();

    let err = store.records(&id, 0, usize::MAX).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("log.jsonl line 4"),
        "the error names the file and line: {message}"
    );
    // Before and after the bad line, the log reads.
    assert_eq!(store.records(&id, 0, 3).await.unwrap().len(), 3);
    let rest = store.records(&id, 4, usize::MAX).await.unwrap();
    assert_eq!(rest.len(), total - 4);
    assert_eq!(rest[0].seq, 5);
}

#[tokio::test(start_paused = true)]
async fn a_torn_last_line_is_ignored_and_replaced_by_the_next_append() {
    let (_dir, store, id) = logged(2).await;
    let log = store.rollout_dir(&id).join("log.jsonl");
    let records = store.records(&id, 0, usize::MAX).await.unwrap();
    let last = records.last().unwrap().clone();
    // A crash in the middle of appending the next record leaves half a line.
    let mut torn = serde_json::to_string(&last).unwrap();
    torn.truncate(torn.len() / 2);
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, torn.as_bytes()).unwrap();
    drop(file);

    assert_eq!(store.records(&id, 0, usize::MAX).await.unwrap(), records);
    let mut next = last.clone();
    next.seq += 1;
    store
        .append(&id, std::slice::from_ref(&next))
        .await
        .unwrap();
    let after = store.records(&id, 0, usize::MAX).await.unwrap();
    assert_eq!(after.len(), records.len() + 1);
    assert_eq!(after.last(), Some(&next));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.ends_with('\n') && !text.contains(&format!("{torn}{{")),
        "{text}"
    );
}
