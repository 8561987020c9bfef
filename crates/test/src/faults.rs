use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use cutover_core::{ErrorKind, ProviderError};
use parking_lot::Mutex;

/// Errors injected into named operations: queued for the next calls, or pinned to a call number.
///
/// ```
/// use cutover_core::ErrorKind;
/// use cutover_test::Faults;
/// let faults = Faults::default();
/// faults.fail("set_split", ErrorKind::Transient, 2);   // the next two calls fail
/// faults.fail_call("set_split", 4, ErrorKind::Permanent); // so does the fourth
/// assert!(faults.check("set_split").is_err());
/// assert!(faults.check("set_split").is_err());
/// assert!(faults.check("set_split").is_ok());
/// assert!(faults.check("set_split").is_err());
/// assert_eq!(faults.calls("set_split"), 4);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultsInner>>,
}

#[derive(Debug, Default)]
struct FaultsInner {
    queued: BTreeMap<String, VecDeque<ErrorKind>>,
    pinned: BTreeMap<(String, u64), ErrorKind>,
    always: BTreeMap<String, ErrorKind>,
    calls: BTreeMap<String, u64>,
}

impl Faults {
    /// The next `times` calls of `op` fail with an error of `kind`.
    pub fn fail(&self, op: &str, kind: ErrorKind, times: usize) {
        let mut inner = self.inner.lock();
        let queue = inner.queued.entry(op.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(kind, times));
    }

    /// Call number `call` (counting every call of `op` from 1, past and future) fails with
    /// `kind`.
    pub fn fail_call(&self, op: &str, call: u64, kind: ErrorKind) {
        self.inner.lock().pinned.insert((op.to_owned(), call), kind);
    }

    /// Every call of `op` fails with `kind` from now on (until [`clear`](Self::clear)).
    pub fn fail_always(&self, op: &str, kind: ErrorKind) {
        self.inner.lock().always.insert(op.to_owned(), kind);
    }

    /// Removes every injected error.
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.queued.clear();
        inner.pinned.clear();
        inner.always.clear();
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: &str) -> u64 {
        self.inner.lock().calls.get(op).copied().unwrap_or(0)
    }

    /// Counts a call of `op` and returns the error injected for it, if any.
    pub fn check(&self, op: &str) -> Result<(), ProviderError> {
        let mut inner = self.inner.lock();
        let call = {
            let count = inner.calls.entry(op.to_owned()).or_default();
            *count += 1;
            *count
        };
        let kind = match inner.pinned.remove(&(op.to_owned(), call)) {
            Some(kind) => Some(kind),
            None => inner
                .queued
                .get_mut(op)
                .and_then(VecDeque::pop_front)
                .or_else(|| inner.always.get(op).copied()),
        };
        match kind {
            Some(kind) => Err(ProviderError::new(
                kind,
                format!("injected {kind} error in {op} (call {call})"),
            )),
            None => Ok(()),
        }
    }
}
