//! Wake-up times: the planner's only vocabulary for time.

use crate::Timestamp;
use crate::action::Decision;

/// The earlier of two optional wake-up times.
pub(super) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Wait until `at`, or until a command if `at` is `None`.
pub(super) fn wait_until(now: Timestamp, at: Option<Timestamp>) -> Decision {
    Decision::Wait(at.map(|at| at.saturating_since(now)))
}
