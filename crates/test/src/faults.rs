use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use cutover_core::{ErrorKind, ProviderError};
use parking_lot::Mutex;

/// Errors queued for named operations: the next calls of an operation fail with them, in order.
///
/// ```
/// use cutover_core::ErrorKind;
/// use cutover_test::Faults;
/// let faults = Faults::default();
/// faults.fail("set_split", ErrorKind::Transient, 2);
/// assert!(faults.check("set_split").is_err());
/// assert!(faults.check("set_split").is_err());
/// assert!(faults.check("set_split").is_ok());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Faults {
    queued: Arc<Mutex<BTreeMap<String, VecDeque<ErrorKind>>>>,
}

impl Faults {
    /// The next `times` calls of `op` fail with an error of `kind`.
    pub fn fail(&self, op: &str, kind: ErrorKind, times: usize) {
        let mut queued = self.queued.lock();
        let queue = queued.entry(op.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(kind, times));
    }

    /// Every call of `op` fails with `kind` from now on (until [`clear`](Self::clear)).
    pub fn fail_always(&self, op: &str, kind: ErrorKind) {
        self.fail(op, kind, usize::MAX / 2);
    }

    /// Removes every queued error.
    pub fn clear(&self) {
        self.queued.lock().clear();
    }

    /// Takes the next queued error of `op`, if any.
    pub fn check(&self, op: &str) -> Result<(), ProviderError> {
        let kind = self.queued.lock().get_mut(op).and_then(VecDeque::pop_front);
        match kind {
            Some(kind) => Err(ProviderError::new(kind, format!("injected {kind} error in {op}"))),
            None => Ok(()),
        }
    }
}
