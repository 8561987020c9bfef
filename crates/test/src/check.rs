//! Pre-flight checks for tests: one that always answers the same, and one that fails until
//! its own fix ran.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use cutover_core::ProviderError;
use cutover_core::checklist::{Check, CheckContext, CheckResult, Remediation};

/// A check that always answers the same.
///
/// ```
/// use cutover_core::checklist::{CheckResult, ChecklistItem};
/// use cutover_test::FixedCheck;
/// let item = ChecklistItem::new("tls", "security", FixedCheck::new(CheckResult::fail("expired")));
/// # let _ = item;
/// ```
#[derive(Debug, Clone)]
pub struct FixedCheck(CheckResult);

impl FixedCheck {
    /// A check that answers `result`.
    pub fn new(result: CheckResult) -> Self {
        FixedCheck(result)
    }
}

#[async_trait]
impl Check for FixedCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        self.0.clone()
    }
}

/// A check that fails ("cache is cold") until its fix ("warm the cache") ran, then passes. The
/// same value is the check and its fix; clones share the switch.
///
/// ```
/// use cutover_core::checklist::ChecklistItem;
/// use cutover_test::ColdCache;
/// let cache = ColdCache::default();
/// let item = ChecklistItem::new("cache", "configuration", cache.clone()).fix(cache);
/// # let _ = item;
/// ```
#[derive(Debug, Clone, Default)]
pub struct ColdCache(Arc<AtomicBool>);

impl ColdCache {
    /// Whether the fix ran.
    pub fn warmed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Check for ColdCache {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        if self.warmed() {
            CheckResult::pass("cache is warm")
        } else {
            CheckResult::fail("cache is cold").hint("warm the cache")
        }
    }
}

#[async_trait]
impl Remediation for ColdCache {
    fn describe(&self) -> String {
        "warm the cache".into()
    }

    async fn apply(&self, _ctx: &CheckContext) -> Result<String, ProviderError> {
        self.0.store(true, Ordering::SeqCst);
        Ok("cache warmed".into())
    }
}
