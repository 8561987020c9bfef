//! The contract every [`StateStore`] must meet, as a suite you run against your own store.

use std::fmt;
use std::time::Duration;

use cutover_core::planner::{Decision, Setup};
use cutover_core::state::{Final, Phase, RolloutState};
use cutover_core::{
    Canary, CanaryStep, Claim, Command, CommandRequest, DecisionRecord, Entry, Inputs, ListFilter,
    Outcome, Plan, Revisions, RolloutId, StateStore, StoreError, Timestamp, Watch, Weight,
};
use thiserror::Error;

/// A check of [`store_contract`] that the store failed.
#[derive(Debug, Error)]
#[error("store `{store}` breaks the contract at `{check}`: {detail}")]
pub struct StoreContractViolation {
    /// The store.
    pub store: String,
    /// The check.
    pub check: &'static str,
    /// What went wrong.
    pub detail: String,
}

/// The checks a store passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreContractReport {
    /// Checks run, in order.
    pub passed: Vec<&'static str>,
    /// Whether the store's leases expire by time (otherwise they live with their guard).
    pub leases_expire: bool,
    /// Whether the store pushes changes (otherwise readers poll).
    pub notifies: bool,
    /// Whether the store keeps documents (pipelines, guards); a store that does not answers
    /// `Unsupported`.
    pub documents: bool,
}

impl fmt::Display for StoreContractReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} checks passed; leases {}; changes {}",
            self.passed.len(),
            if self.leases_expire {
                "expire by time"
            } else {
                "live with their guard"
            },
            if self.notifies { "pushed" } else { "polled" }
        )
    }
}

/// Runs every check of the [`StateStore`] contract against `store`: compare-and-swap saves,
/// the append-only, gap-free, idempotent decision log read with a cursor, the command inbox
/// (order, idempotency keys, refusals for unknown and finished rollouts and invalid requests),
/// the listing with phase filters and pages, owner leases (exclusive, forced takeover with a
/// rising epoch, expiry or guard release, renew and release), and watching.
///
/// It writes rollouts whose ids start with `prefix` (pick one no other data uses) and never
/// touches other ids.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let report = cutover_test::store_contract(&cutover_core::MemoryStateStore::new(), "contract-")
///     .await
///     .expect("the memory store keeps the contract");
/// assert!(report.notifies);
/// # }
/// ```
pub async fn store_contract(
    store: &dyn StateStore,
    prefix: &str,
) -> Result<StoreContractReport, StoreContractViolation> {
    let mut c = Contract {
        store,
        prefix: prefix.to_owned(),
        report: StoreContractReport {
            passed: Vec::new(),
            leases_expire: false,
            notifies: false,
            documents: false,
        },
    };
    c.unknown().await?;
    c.compare_and_swap().await?;
    c.log().await?;
    c.inbox().await?;
    c.listing().await?;
    c.leases().await?;
    c.watching().await?;
    c.documents().await?;
    Ok(c.report)
}

struct Contract<'a> {
    store: &'a dyn StateStore,
    prefix: String,
    report: StoreContractReport,
}

const T0: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

fn state(id: &RolloutId) -> RolloutState {
    let canary = Canary::new([CanaryStep::SetWeight(
        Weight::from_percent(10).expect("valid"),
    )]);
    let setup = Setup::new(
        Plan::from(canary),
        Revisions::new("v1", "v2").expect("valid revisions"),
    );
    RolloutState::new(id.clone(), setup, T0)
}

fn record(seq: u64) -> DecisionRecord {
    DecisionRecord {
        seq,
        at: T0 + Duration::from_secs(seq),
        phase: Phase::Progressing,
        step: None,
        inputs: Inputs {
            split: None,
            step_elapsed: Duration::from_secs(seq),
            analysis: None,
            background: None,
            health: None,
        },
        entry: Entry::Decision {
            decision: Decision::Advance,
            result: None,
        },
        summary: format!("record {seq}"),
    }
}

fn records(seqs: std::ops::RangeInclusive<u64>) -> Vec<DecisionRecord> {
    seqs.map(record).collect()
}

impl Contract<'_> {
    fn id(&self, name: &str) -> RolloutId {
        RolloutId::new(format!("{}{name}", self.prefix)).expect("a valid rollout id prefix")
    }

    fn fail(&self, check: &'static str, detail: impl Into<String>) -> StoreContractViolation {
        StoreContractViolation {
            store: self.store.name().to_owned(),
            check,
            detail: detail.into(),
        }
    }

    fn ok<T>(
        &self,
        check: &'static str,
        r: Result<T, StoreError>,
    ) -> Result<T, StoreContractViolation> {
        r.map_err(|e| self.fail(check, format!("unexpected error: {e} ({e:?})")))
    }

    fn expect(
        &self,
        check: &'static str,
        cond: bool,
        detail: impl Into<String>,
    ) -> Result<(), StoreContractViolation> {
        if cond {
            Ok(())
        } else {
            Err(self.fail(check, detail))
        }
    }

    async fn unknown(&mut self) -> Result<(), StoreContractViolation> {
        const CHECK: &str = "unknown rollout reads as empty";
        let id = self.id("never-saved");
        let s = self.store;
        self.expect(
            CHECK,
            self.ok(CHECK, s.load(&id).await)?.is_none(),
            "load returned a state",
        )?;
        self.expect(
            CHECK,
            self.ok(CHECK, s.records(&id, 0, 10).await)?.is_empty(),
            "records returned entries",
        )?;
        self.expect(
            CHECK,
            self.ok(CHECK, s.commands(&id, 0).await)?.is_empty(),
            "commands returned entries",
        )?;
        self.expect(
            CHECK,
            self.ok(CHECK, s.lease(&id).await)?.is_none(),
            "lease returned one",
        )?;
        let request = CommandRequest::new(Command::Pause, "contract");
        match s.send(&id, &request, T0).await {
            Err(StoreError::UnknownRollout { .. }) => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!(
                        "send to an unknown rollout must fail with UnknownRollout, got {other:?}"
                    ),
                ));
            }
        }
        self.report.passed.push(CHECK);
        Ok(())
    }

    async fn compare_and_swap(&mut self) -> Result<(), StoreContractViolation> {
        const CHECK: &str = "save is compare-and-swap";
        let id = self.id("cas");
        let s = self.store;
        let mut st = state(&id);
        let v1 = self.ok(CHECK, s.save(&id, &st, None).await)?;
        match s.save(&id, &st, None).await {
            Err(StoreError::Conflict {
                found: Some(found), ..
            }) if found == v1 => {}
            other => return Err(self.fail(
                CHECK,
                format!(
                    "creating an existing rollout must conflict with found = {v1}, got {other:?}"
                ),
            )),
        }
        st.step = 1;
        let v2 = self.ok(CHECK, s.save(&id, &st, Some(v1)).await)?;
        self.expect(CHECK, v2 > v1, format!("version went from {v1} to {v2}"))?;
        match s.save(&id, &st, Some(v1)).await {
            Err(StoreError::Conflict {
                expected: Some(e),
                found: Some(f),
                ..
            }) if e == v1 && f == v2 => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!(
                        "a stale save must conflict (expected {v1}, found {v2}), got {other:?}"
                    ),
                ));
            }
        }
        let stored = self.ok(CHECK, s.load(&id).await)?;
        match stored {
            Some(stored) if stored.version == v2 && stored.state == st => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!("load must return version {v2} and the state saved, got {other:?}"),
                ));
            }
        }
        self.report.passed.push(CHECK);
        Ok(())
    }

    async fn log(&mut self) -> Result<(), StoreContractViolation> {
        const CHECK: &str = "decision log is append-only, gap-free and idempotent";
        let id = self.id("log");
        let other = self.id("log-other");
        let s = self.store;
        self.ok(CHECK, s.save(&id, &state(&id), None).await)?;
        self.ok(CHECK, s.append(&id, &records(1..=3)).await)?;
        // A crash-resumed engine appends again what it may have appended: skipped, not doubled.
        self.ok(CHECK, s.append(&id, &records(2..=5)).await)?;
        self.ok(CHECK, s.append(&id, &records(1..=5)).await)?;
        let all = self.ok(CHECK, s.records(&id, 0, 100).await)?;
        let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
        self.expect(
            CHECK,
            seqs == [1, 2, 3, 4, 5],
            format!("read back seqs {seqs:?}, expected 1..=5"),
        )?;
        self.expect(
            CHECK,
            all == records(1..=5),
            "records read back differ from those appended",
        )?;
        match s.append(&id, &records(7..=7)).await {
            Err(StoreError::LogGap {
                last: 5, found: 7, ..
            }) => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!("appending seq 7 after 5 must fail with LogGap, got {other:?}"),
                ));
            }
        }
        let page = self.ok(CHECK, s.records(&id, 2, 2).await)?;
        let seqs: Vec<u64> = page.iter().map(|r| r.seq).collect();
        self.expect(
            CHECK,
            seqs == [3, 4],
            format!("records(after 2, limit 2) gave {seqs:?}"),
        )?;
        self.expect(
            CHECK,
            self.ok(CHECK, s.records(&id, 5, 10).await)?.is_empty(),
            "records after the last must be empty",
        )?;
        self.expect(
            CHECK,
            self.ok(CHECK, s.records(&other, 0, 10).await)?.is_empty(),
            "another rollout's log must be empty",
        )?;
        self.report.passed.push(CHECK);
        Ok(())
    }

    async fn inbox(&mut self) -> Result<(), StoreContractViolation> {
        const CHECK: &str = "inbox queues commands in order, once per key";
        let id = self.id("inbox");
        let s = self.store;
        self.ok(CHECK, s.save(&id, &state(&id), None).await)?;
        let pause = CommandRequest::new(Command::Pause, "alice")
            .reason("looking into an alert")
            .key("k-1");
        let first = self.ok(CHECK, s.send(&id, &pause, T0).await)?;
        self.expect(
            CHECK,
            first.seq == 1 && first.request == pause && first.sent_at == T0,
            format!("first command queued as {first:?}"),
        )?;
        let again = self.ok(
            CHECK,
            s.send(&id, &pause, T0 + Duration::from_secs(1)).await,
        )?;
        self.expect(
            CHECK,
            again == first,
            format!("the same key must return the queued command, got {again:?}"),
        )?;
        let resume = CommandRequest::new(Command::Resume, "bob");
        let second = self.ok(CHECK, s.send(&id, &resume, T0).await)?;
        self.expect(
            CHECK,
            second.seq == 2,
            format!("second command got seq {}", second.seq),
        )?;
        match s
            .send(
                &id,
                &CommandRequest::new(Command::Abort, "alice").key("k-1"),
                T0,
            )
            .await
        {
            Err(StoreError::KeyReused { seq: 1, .. }) => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!(
                        "a key reused for another command must fail with KeyReused, got {other:?}"
                    ),
                ));
            }
        }
        match s
            .send(&id, &CommandRequest::new(Command::Pause, ""), T0)
            .await
        {
            Err(StoreError::InvalidCommand { .. }) => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!(
                        "a command without sender must fail with InvalidCommand, got {other:?}"
                    ),
                ));
            }
        }
        let all = self.ok(CHECK, s.commands(&id, 0).await)?;
        let kinds: Vec<(u64, Command)> = all.iter().map(|c| (c.seq, c.command())).collect();
        self.expect(
            CHECK,
            kinds == [(1, Command::Pause), (2, Command::Resume)],
            format!("inbox holds {kinds:?}"),
        )?;
        let after = self.ok(CHECK, s.commands(&id, 1).await)?;
        self.expect(
            CHECK,
            after.len() == 1 && after[0].seq == 2,
            format!("commands after 1: {after:?}"),
        )?;

        let done = self.id("inbox-finished");
        let mut st = state(&done);
        st.phase = Phase::Done;
        st.outcome = Some(Final::Outcome(Outcome::Promoted));
        self.ok(CHECK, s.save(&done, &st, None).await)?;
        match s.send(&done, &pause, T0).await {
            Err(StoreError::Finished { .. }) => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!(
                        "a command to a finished rollout must fail with Finished, got {other:?}"
                    ),
                ));
            }
        }
        self.report.passed.push(CHECK);
        Ok(())
    }

    async fn listing(&mut self) -> Result<(), StoreContractViolation> {
        const CHECK: &str = "list filters by phase and id and pages in id order";
        let s = self.store;
        let ids: Vec<RolloutId> = (0..5).map(|i| self.id(&format!("list-{i}"))).collect();
        for (i, id) in ids.iter().enumerate() {
            let mut st = state(id);
            st.phase = if i % 2 == 0 {
                Phase::Progressing
            } else {
                Phase::Done
            };
            st.step = i;
            self.ok(CHECK, s.save(id, &st, None).await)?;
        }
        let mine = |summaries: Vec<cutover_core::Summary>| -> Vec<cutover_core::Summary> {
            summaries
                .into_iter()
                .filter(|x| x.id.as_str().starts_with(&format!("{}list-", self.prefix)))
                .collect()
        };
        let before = RolloutId::new(format!("{}list-", self.prefix)).expect("valid");
        let everything = mine(self.ok(
            CHECK,
            s.list(&ListFilter::default().after(before.clone())).await,
        )?);
        let got: Vec<&str> = everything.iter().map(|x| x.id.as_str()).collect();
        let want: Vec<&str> = ids.iter().map(RolloutId::as_str).collect();
        self.expect(
            CHECK,
            got == want,
            format!("listed {got:?}, expected {want:?}"),
        )?;
        let third = &everything[2];
        self.expect(
            CHECK,
            third.phase == Phase::Progressing
                && third.step == 2
                && third.version >= 1
                && third.strategy == "canary",
            format!("summary of {} is {third:?}", ids[2]),
        )?;
        let active = mine(
            self.ok(
                CHECK,
                s.list(
                    &ListFilter::default()
                        .after(before.clone())
                        .phases([Phase::Progressing]),
                )
                .await,
            )?,
        );
        let got: Vec<&str> = active.iter().map(|x| x.id.as_str()).collect();
        let want = [ids[0].as_str(), ids[2].as_str(), ids[4].as_str()];
        self.expect(
            CHECK,
            got == want,
            format!("progressing: listed {got:?}, expected {want:?}"),
        )?;
        let page = self.ok(
            CHECK,
            s.list(&ListFilter::default().after(ids[1].clone()).limit(2))
                .await,
        )?;
        let got: Vec<&str> = page.iter().map(|x| x.id.as_str()).collect();
        self.expect(
            CHECK,
            got == [ids[2].as_str(), ids[3].as_str()],
            format!("page after {} of 2: {got:?}", ids[1]),
        )?;
        // A search by id ignores ASCII case, and counts only matches towards the limit.
        let found = self.ok(
            CHECK,
            s.list(
                &ListFilter::default()
                    .after(before.clone())
                    .id_contains(format!("{}LIST-3", self.prefix).to_uppercase()),
            )
            .await,
        )?;
        let got: Vec<&str> = found.iter().map(|x| x.id.as_str()).collect();
        self.expect(
            CHECK,
            got == [ids[3].as_str()],
            format!("search for list-3: {got:?}"),
        )?;
        let found = self.ok(
            CHECK,
            s.list(
                &ListFilter::default()
                    .after(before.clone())
                    .id_contains(format!("{}list-", self.prefix))
                    .phases([Phase::Progressing])
                    .limit(2),
            )
            .await,
        )?;
        let got: Vec<&str> = found.iter().map(|x| x.id.as_str()).collect();
        self.expect(
            CHECK,
            got == [ids[0].as_str(), ids[2].as_str()],
            format!("search for list- in progressing, 2 at most: {got:?}"),
        )?;
        self.report.passed.push(CHECK);
        Ok(())
    }

    async fn leases(&mut self) -> Result<(), StoreContractViolation> {
        const CHECK: &str = "one live owner per rollout";
        let id = self.id("lease");
        let s = self.store;
        self.ok(CHECK, s.save(&id, &state(&id), None).await)?;
        let ttl = Duration::from_secs(15);
        let claim = |owner: &str, now: Timestamp, force: bool| Claim {
            owner: owner.to_owned(),
            ttl,
            now,
            force,
        };
        let a = self.ok(CHECK, s.acquire(&id, &claim("engine-a", T0, false)).await)?;
        self.report.leases_expire = a.lease.expires_at.is_some();
        self.expect(
            CHECK,
            a.lease.owner == "engine-a" && a.previous.is_none(),
            format!("first acquire gave {:?}", a.lease),
        )?;
        let held = self.ok(CHECK, s.lease(&id).await)?;
        self.expect(
            CHECK,
            held.as_ref().map(|l| l.owner.as_str()) == Some("engine-a"),
            format!("lease() shows {held:?}"),
        )?;
        match s
            .acquire(&id, &claim("engine-b", T0 + Duration::from_secs(1), false))
            .await
        {
            Err(StoreError::Owned { owner, .. }) if owner == "engine-a" => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!(
                        "a second engine must be refused with Owned by engine-a, got {other:?}"
                    ),
                ));
            }
        }
        let mine_again = self.ok(
            CHECK,
            s.acquire(&id, &claim("engine-a", T0 + Duration::from_secs(2), false))
                .await,
        )?;
        self.expect(
            CHECK,
            mine_again.lease.epoch == a.lease.epoch,
            "the owner claiming again must keep its epoch",
        )?;
        let b = self.ok(
            CHECK,
            s.acquire(&id, &claim("engine-b", T0 + Duration::from_secs(3), true))
                .await,
        )?;
        self.expect(CHECK, b.lease.epoch > a.lease.epoch && b.previous.as_ref().map(|p| p.owner.as_str()) == Some("engine-a"),
            format!("a forced takeover must raise the epoch and return engine-a's lease, got {:?} / {:?}", b.lease, b.previous))?;
        match s
            .renew(&id, &mine_again.lease, T0 + Duration::from_secs(4))
            .await
        {
            Err(StoreError::LeaseLost { .. }) => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!("renewing a lease taken over must fail with LeaseLost, got {other:?}"),
                ));
            }
        }
        let renewed = self.ok(
            CHECK,
            s.renew(&id, &b.lease, T0 + Duration::from_secs(5)).await,
        )?;
        self.expect(
            CHECK,
            renewed.epoch == b.lease.epoch && renewed.owner == "engine-b",
            format!("renewal gave {renewed:?}"),
        )?;
        if let (Some(before), Some(after)) = (b.lease.expires_at, renewed.expires_at) {
            self.expect(CHECK, after > before, "renewal must move the expiry later")?;
        }
        // Releasing a lease one no longer holds does nothing.
        self.ok(CHECK, s.release(&id, &a.lease).await)?;
        let held = self.ok(CHECK, s.lease(&id).await)?;
        self.expect(
            CHECK,
            held.as_ref().map(|l| l.owner.as_str()) == Some("engine-b"),
            format!("after a stale release, lease() shows {held:?}"),
        )?;
        if self.report.leases_expire {
            // Past its expiry, the lease is free without force.
            let late = T0 + Duration::from_secs(5) + ttl + Duration::from_millis(1);
            let c = self.ok(CHECK, s.acquire(&id, &claim("engine-c", late, false)).await)?;
            self.expect(
                CHECK,
                c.lease.epoch > b.lease.epoch && c.previous.is_none(),
                format!(
                    "taking an expired lease gave {:?} / {:?}",
                    c.lease, c.previous
                ),
            )?;
            self.ok(CHECK, s.release(&id, &c.lease).await)?;
        } else {
            // The lease lives with its guard: dropping it frees the rollout.
            drop(b);
            let c = self.ok(
                CHECK,
                s.acquire(&id, &claim("engine-c", T0 + Duration::from_secs(6), false))
                    .await,
            )?;
            self.expect(
                CHECK,
                c.previous.is_none(),
                "a lease whose guard was dropped must be free",
            )?;
            self.ok(CHECK, s.release(&id, &c.lease).await)?;
        }
        let held = self.ok(CHECK, s.lease(&id).await)?;
        self.expect(
            CHECK,
            held.is_none(),
            format!("after release, lease() shows {held:?}"),
        )?;
        self.report.passed.push(CHECK);
        Ok(())
    }

    async fn documents(&mut self) -> Result<(), StoreContractViolation> {
        const CHECK: &str = "documents are compare-and-swap, by kind";
        let s = self.store;
        let (a, b) = (self.id("doc-a"), self.id("doc-b"));
        let first = serde_json::json!({ "stage": "dev", "approvals": [] });
        let v1 = match s.save_document("pipeline", &a, &first, None).await {
            Ok(v) => v,
            Err(StoreError::Provider(e)) if e.kind() == cutover_core::ErrorKind::Unsupported => {
                return Ok(());
            }
            Err(e) => return Err(self.fail(CHECK, format!("unexpected error: {e}"))),
        };
        self.report.documents = true;
        match s.save_document("pipeline", &a, &first, None).await {
            Err(StoreError::Conflict { found: Some(f), .. }) if f == v1 => {}
            other => {
                return Err(self.fail(
                    CHECK,
                    format!("creating an existing document must conflict, got {other:?}"),
                ));
            }
        }
        let second = serde_json::json!({ "stage": "prod", "approvals": ["alice"] });
        let v2 = self.ok(
            CHECK,
            s.save_document("pipeline", &a, &second, Some(v1)).await,
        )?;
        match s.save_document("pipeline", &a, &first, Some(v1)).await {
            Err(StoreError::Conflict { .. }) => {}
            other => {
                return Err(self.fail(CHECK, format!("a stale save must conflict, got {other:?}")));
            }
        }
        let loaded = self.ok(CHECK, s.load_document("pipeline", &a).await)?;
        self.expect(
            CHECK,
            loaded
                .as_ref()
                .is_some_and(|d| d.version == v2 && d.body == second),
            format!("loaded {loaded:?}"),
        )?;
        self.ok(CHECK, s.save_document("pipeline", &b, &first, None).await)?;
        self.ok(CHECK, s.save_document("guard", &a, &first, None).await)?;
        let other_kind = self.ok(CHECK, s.load_document("guard", &b).await)?;
        self.expect(CHECK, other_kind.is_none(), "kinds are apart")?;
        let before = RolloutId::new(format!("{}doc-", self.prefix)).expect("valid");
        let listed = self.ok(
            CHECK,
            s.list_documents("pipeline", Some(before.clone()), 10).await,
        )?;
        let ids: Vec<&str> = listed
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| id.starts_with(before.as_str()))
            .collect();
        self.expect(
            CHECK,
            ids == [a.as_str(), b.as_str()],
            format!("listed {ids:?}"),
        )?;
        let page = self.ok(
            CHECK,
            s.list_documents("pipeline", Some(a.clone()), 1).await,
        )?;
        self.expect(
            CHECK,
            page.len() == 1 && page[0].0 == b,
            format!("the page after {a}: {page:?}"),
        )?;
        match s.load_document("Not A Kind", &a).await {
            Err(StoreError::Provider(_)) => {}
            other => {
                return Err(self.fail(CHECK, format!("a bad kind must be refused, got {other:?}")));
            }
        }
        self.report.passed.push(CHECK);
        Ok(())
    }

    async fn watching(&mut self) -> Result<(), StoreContractViolation> {
        const CHECK: &str = "watch reports commands";
        let id = self.id("watch");
        let s = self.store;
        self.ok(CHECK, s.save(&id, &state(&id), None).await)?;
        match s.watch(&id) {
            Watch::Notified(mut rx) => {
                rx.borrow_and_update();
                self.ok(
                    CHECK,
                    s.send(&id, &CommandRequest::new(Command::Pause, "contract"), T0)
                        .await,
                )?;
                self.expect(
                    CHECK,
                    rx.has_changed().unwrap_or(false),
                    "a command was sent but the watch did not change",
                )?;
                self.report.notifies = true;
            }
            Watch::Poll(every) => {
                self.expect(
                    CHECK,
                    every > Duration::ZERO && every <= Duration::from_mins(1),
                    format!("poll interval {every:?}"),
                )?;
            }
            other => return Err(self.fail(CHECK, format!("unknown watch {other:?}"))),
        }
        self.report.passed.push(CHECK);
        Ok(())
    }
}
