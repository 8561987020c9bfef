use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use cutover_core::{Health, HealthProbe, ProviderError, RevisionId};
use parking_lot::Mutex;

use crate::Faults;

/// A [`HealthProbe`] that answers from a script per revision: each check takes the next answer,
/// and the last answer repeats. Revisions without a script are `Ready`. Operation for
/// [`Faults`]: `check`.
#[derive(Debug, Clone, Default)]
pub struct FakeProbe {
    faults: Faults,
    world: Arc<Mutex<ProbeWorld>>,
}

#[derive(Debug, Default)]
struct ProbeWorld {
    scripts: BTreeMap<RevisionId, VecDeque<Health>>,
    checks: Vec<RevisionId>,
}

impl FakeProbe {
    /// A probe that reports every revision ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// `revision` reports `health` from now on.
    pub fn set(&self, revision: &RevisionId, health: Health) {
        self.script(revision, [health]);
    }

    /// `revision` reports these answers in turn; the last repeats.
    pub fn script(&self, revision: &RevisionId, answers: impl IntoIterator<Item = Health>) {
        self.world
            .lock()
            .scripts
            .insert(revision.clone(), answers.into_iter().collect());
    }

    /// The injected errors.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The revisions checked, in order.
    pub fn checks(&self) -> Vec<RevisionId> {
        self.world.lock().checks.clone()
    }
}

#[async_trait]
impl HealthProbe for FakeProbe {
    fn name(&self) -> &'static str {
        "fake-probe"
    }

    async fn check(&self, revision: &RevisionId) -> Result<Health, ProviderError> {
        self.world.lock().checks.push(revision.clone());
        self.faults.check("check")?;
        let mut world = self.world.lock();
        let Some(script) = world.scripts.get_mut(revision) else {
            return Ok(Health::Ready);
        };
        let health = if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        };
        Ok(health.unwrap_or(Health::Ready))
    }
}
