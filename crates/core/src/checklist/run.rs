//! The checklist and its runner: concurrency limit, timeouts, exemptions, fixes, the gate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::record::ChecklistRecord;
use super::report::{CheckRun, ChecklistReport, FixRecord};
use super::{CheckContext, CheckResult, CheckStatus, ChecklistItem, Exemption};
use crate::{
    Clock, Gate, GateAnswer, GateContext, GateVerdict, ProviderError, RolloutId, StateStore,
    StoreError, TokioClock,
};

/// The document kind under which [`Checklist::audit_to`] keeps a rollout's checklist reports.
pub const AUDIT_KIND: &str = "checklist";

/// How many reports per rollout the audit document keeps (the latest).
const AUDIT_KEEP: usize = 100;

/// The default per-check timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A named list of checks, run concurrently (up to a limit) each within its timeout.
///
/// It runs standalone ([`Checklist::run`], then [`ChecklistReport::table`] or JSON) or as a
/// [`Gate`] before a rollout: open when every required check passes (or warns, or is exempted),
/// pending while an approval is awaited, closed otherwise, with the failed checks and their
/// hints as the reason. A rollout whose pre-flight gate closes ends
/// [`Outcome::Refused`](crate::Outcome::Refused), with nothing changed.
#[derive(Debug, Clone)]
pub struct Checklist {
    name: String,
    items: Vec<ChecklistItem>,
    exemptions: Vec<Exemption>,
    concurrency: usize,
    timeout: Duration,
    allow_fixes: bool,
    poll_interval: Duration,
    clock: Arc<dyn Clock>,
    audit: Option<Arc<dyn StateStore>>,
}

impl Checklist {
    /// An empty checklist called `name`: 4 checks at a time, 30 s per check, no fixes.
    pub fn new(name: impl Into<String>) -> Self {
        Checklist {
            name: name.into(),
            items: Vec::new(),
            exemptions: Vec::new(),
            concurrency: 4,
            timeout: DEFAULT_TIMEOUT,
            allow_fixes: false,
            poll_interval: Duration::from_secs(30),
            clock: Arc::new(TokioClock::new()),
            audit: None,
        }
    }

    /// Adds a check.
    pub fn item(mut self, item: ChecklistItem) -> Self {
        self.items.push(item);
        self
    }

    /// Adds an exemption.
    pub fn exemption(mut self, exemption: Exemption) -> Self {
        self.exemptions.push(exemption);
        self
    }

    /// Runs at most `limit` checks at once (at least 1).
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// The timeout of checks that set none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether automatic fixes may run.
    pub fn allow_fixes(mut self, allow: bool) -> Self {
        self.allow_fixes = allow;
        self
    }

    /// How long the gate waits before asking again while an approval is pending (30 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The clock for "now" (exemption expiry, freeze windows). Defaults to [`TokioClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Keeps every report of the gate in `store`, as a document of kind [`AUDIT_KIND`] with the
    /// rollout's id: `{"reports": [...]}`, the latest 100, each with its checks, evidence,
    /// exemptions used and fixes run. The rollout's decision log has every run too (each
    /// check's result, exemptions used, fixes run: a [`ChecklistRecord`]) but not the evidence;
    /// this has everything the checks saw, and is what the dashboard's checklist page lists. A report that cannot be saved closes the gate (after the
    /// engine's retries): no unrecorded pass.
    pub fn audit_to(mut self, store: impl StateStore + 'static) -> Self {
        self.audit = Some(Arc::new(store));
        self
    }

    /// The checklist's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its checks.
    pub fn items(&self) -> &[ChecklistItem] {
        &self.items
    }

    /// Runs every check and returns the report.
    pub async fn run(&self, ctx: &CheckContext) -> ChecklistReport {
        let started_at = self.clock.now();
        let mut ctx = ctx.clone();
        ctx.now = started_at;
        ctx.checklist.clone_from(&self.name);
        let ctx = Arc::new(ctx);

        let semaphore = Arc::new(Semaphore::new(self.concurrency));
        let mut set = JoinSet::new();
        for (index, item) in self.items.iter().enumerate() {
            let item = item.clone();
            let ctx = Arc::clone(&ctx);
            let semaphore = Arc::clone(&semaphore);
            let timeout = item.timeout.unwrap_or(self.timeout);
            let allow_fixes = self.allow_fixes;
            set.spawn(async move {
                // The semaphore is never closed.
                let _permit = semaphore.acquire_owned().await.ok();
                (index, run_item(&item, &ctx, timeout, allow_fixes).await)
            });
        }
        let mut done: Vec<Option<(CheckResult, Option<FixRecord>, Duration)>> =
            vec![None; self.items.len()];
        while let Some(joined) = set.join_next().await {
            // A check that panicked is reported as an error below (its slot stays empty).
            if let Ok((index, outcome)) = joined {
                done[index] = Some(outcome);
            }
        }

        let mut runs = Vec::with_capacity(self.items.len() + self.exemptions.len());
        let mut used = Vec::new();
        for (item, outcome) in self.items.iter().zip(done) {
            let (mut result, fix, elapsed) = outcome.unwrap_or_else(|| {
                (
                    CheckResult::error("the check panicked"),
                    None,
                    Duration::ZERO,
                )
            });
            let mut exempted = None;
            if result.status.blocks() {
                let mut expired = None;
                for e in self.exemptions.iter().filter(|e| e.check == item.id) {
                    if e.expires > started_at {
                        exempted = Some(e.clone());
                        break;
                    }
                    expired = Some(e);
                }
                if let (None, Some(e)) = (&exempted, expired) {
                    result = CheckResult::error(format!(
                        "exemption granted by {} expired at {}; the check said: {}",
                        e.by, e.expires, result.message
                    ))
                    .hint("renew the exemption with a new expiry, or fix what the check found")
                    .evidence("exemption_reason", &e.reason);
                }
            }
            if let Some(e) = &exempted {
                used.push(e.clone());
            }
            runs.push(CheckRun {
                id: item.id.clone(),
                title: item.title.clone(),
                category: item.category.clone(),
                required: item.required,
                elapsed,
                result,
                exempted,
                fix,
            });
        }
        for e in &self.exemptions {
            if !self.items.iter().any(|i| i.id == e.check) {
                runs.push(CheckRun {
                    id: format!("exemption:{}", e.check),
                    title: format!("exemption for `{}`", e.check),
                    category: "exemptions".into(),
                    required: true,
                    elapsed: Duration::ZERO,
                    result: CheckResult::error(format!(
                        "exemption granted by {} names no check of this checklist",
                        e.by
                    ))
                    .hint("fix the check id in the exemption, or remove it"),
                    exempted: None,
                    fix: None,
                });
            }
        }
        ChecklistReport {
            checklist: self.name.clone(),
            started_at,
            finished_at: self.clock.now(),
            fixes_allowed: self.allow_fixes,
            checks: runs,
            exemptions_used: used,
        }
    }
}

/// Runs one check within its timeout, and its fix if allowed and needed.
async fn run_item(
    item: &ChecklistItem,
    ctx: &CheckContext,
    timeout: Duration,
    allow_fixes: bool,
) -> (CheckResult, Option<FixRecord>, Duration) {
    let start = tokio::time::Instant::now();
    let mut result = timed(item, ctx, timeout).await;
    let mut fix_record = None;
    if let Some(fix) = &item.fix
        && matches!(result.status, CheckStatus::Fail | CheckStatus::Error)
    {
        if allow_fixes {
            let applied = match tokio::time::timeout(timeout, fix.apply(ctx)).await {
                Ok(Ok(message)) => Ok(message),
                Ok(Err(e)) => Err(e.chain()),
                Err(_) => Err(format!(
                    "the fix did not finish within {}",
                    humantime::format_duration(timeout)
                )),
            };
            let before = result.status;
            if applied.is_ok() {
                result = timed(item, ctx, timeout).await;
            }
            fix_record = Some(FixRecord {
                description: fix.describe(),
                applied: applied.is_ok(),
                message: match applied {
                    Ok(m) | Err(m) => m,
                },
                status_before: before,
            });
        } else {
            let offer = format!(
                "automatic fix available: {} (allow fixes to run it)",
                fix.describe()
            );
            result.hint = Some(match result.hint.take() {
                Some(hint) => format!("{hint}; {offer}"),
                None => offer,
            });
        }
    }
    (result, fix_record, start.elapsed())
}

async fn timed(item: &ChecklistItem, ctx: &CheckContext, timeout: Duration) -> CheckResult {
    match tokio::time::timeout(timeout, item.check.run(ctx)).await {
        Ok(result) => result,
        Err(_) => CheckResult::error(format!(
            "no answer within {}: cut off",
            humantime::format_duration(timeout)
        ))
        .hint("check that what it talks to is reachable, or raise the check's `timeout`")
        .evidence("timeout", humantime::format_duration(timeout).to_string()),
    }
}

#[async_trait]
impl Gate for Checklist {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    async fn check(&self, ctx: &GateContext) -> Result<GateVerdict, ProviderError> {
        self.answer(ctx).await.map(|a| a.verdict)
    }

    /// The verdict with the checklist's record: every check's result, the exemptions used and
    /// the fixes run, for the rollout's decision log.
    async fn answer(&self, ctx: &GateContext) -> Result<GateAnswer, ProviderError> {
        let cctx = CheckContext::for_rollout(ctx.rollout.clone(), ctx.revisions.clone())
            .with_approvals(ctx.approvals.clone());
        let report = self.run(&cctx).await;
        tracing::info!(
            checklist = %self.name,
            rollout = %ctx.rollout,
            passed = report.passed(),
            "pre-flight checklist\n{}",
            report.table()
        );
        if let Some(store) = &self.audit {
            audit(store.as_ref(), &ctx.rollout, &report)
                .await
                .map_err(|e| {
                    ProviderError::transient(format!("saving the checklist report: {e}"))
                })?;
        }
        Ok(GateAnswer::with_checklist(
            report.verdict(),
            ChecklistRecord::from(&report),
        ))
    }
}

/// Appends `report` to the rollout's audit document (compare-and-swap, retried on conflict).
async fn audit(
    store: &dyn StateStore,
    rollout: &RolloutId,
    report: &ChecklistReport,
) -> Result<(), StoreError> {
    let entry = serde_json::to_value(report).unwrap_or_default();
    loop {
        let current = store.load_document(AUDIT_KIND, rollout).await?;
        let (mut reports, expected) = match current {
            Some(doc) => (
                doc.body
                    .get("reports")
                    .and_then(serde_json::Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                Some(doc.version),
            ),
            None => (Vec::new(), None),
        };
        reports.push(entry.clone());
        if reports.len() > AUDIT_KEEP {
            reports.drain(..reports.len() - AUDIT_KEEP);
        }
        let body = serde_json::json!({ "reports": reports });
        match store
            .save_document(AUDIT_KIND, rollout, &body, expected)
            .await
        {
            Err(StoreError::Conflict { .. }) => {}
            other => return other.map(|_| ()),
        }
    }
}
