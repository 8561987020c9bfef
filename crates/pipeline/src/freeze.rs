//! The gate that holds a stage's rollout while one of the stage's freeze windows is on, so
//! that a promotion started before a window (a manual stage waiting for its approval, or one
//! started a moment before the window began) does not move traffic inside it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{Clock, Gate, GateContext, GateVerdict, ProviderError};

use crate::calendar::{self, FreezeWindow};

/// How often a held rollout asks again (each time a "pending" line in its record): the rollout
/// moves at most this long after its window ended.
pub(crate) const FREEZE_POLL: Duration = Duration::from_mins(1);

/// A pre-flight gate, after the approval gate of a manual stage: pending while a window is on.
#[derive(Debug, Clone)]
pub(crate) struct FreezeGate {
    name: String,
    windows: Vec<FreezeWindow>,
    clock: Arc<dyn Clock>,
}

impl FreezeGate {
    /// The gate of stage `stage` with these windows.
    pub(crate) fn new(stage: &str, windows: Vec<FreezeWindow>, clock: Arc<dyn Clock>) -> Self {
        FreezeGate {
            name: format!("freeze-{stage}"),
            windows,
            clock,
        }
    }
}

#[async_trait]
impl Gate for FreezeGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_interval(&self) -> Duration {
        FREEZE_POLL
    }

    async fn check(&self, _ctx: &GateContext) -> Result<GateVerdict, ProviderError> {
        Ok(match calendar::frozen(&self.windows, self.clock.now()) {
            None => GateVerdict::Open,
            Some((until, reason)) => GateVerdict::Pending {
                detail: if reason.is_empty() {
                    format!("frozen until {until}")
                } else {
                    format!("frozen until {until}: {reason}")
                },
            },
        })
    }
}
