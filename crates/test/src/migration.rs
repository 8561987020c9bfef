use std::sync::Arc;

use async_trait::async_trait;
use cutover_core::{MigrationContext, MigrationPhase, MigrationStep, ProviderError};
use parking_lot::Mutex;

use crate::Faults;

/// A [`MigrationStep`] that counts how often it was applied and reverted, and knows whether it
/// is applied (like a step that checks its own table). Operations for [`Faults`]: `apply`,
/// `revert`, `is_applied`.
///
/// ```
/// use cutover_core::MigrationPhase;
/// use cutover_test::FakeMigration;
/// let add_column = FakeMigration::new("add-status", MigrationPhase::Expand).reversible();
/// assert_eq!(add_column.applies(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct FakeMigration {
    id: String,
    phase: MigrationPhase,
    reversible: bool,
    knows_state: bool,
    faults: Faults,
    world: Arc<Mutex<MigrationWorld>>,
}

#[derive(Debug, Default)]
struct MigrationWorld {
    applied: bool,
    applies: u32,
    reverts: u32,
}

impl FakeMigration {
    /// An irreversible step.
    pub fn new(id: impl Into<String>, phase: MigrationPhase) -> Self {
        FakeMigration {
            id: id.into(),
            phase,
            reversible: false,
            knows_state: true,
            faults: Faults::default(),
            world: Arc::default(),
        }
    }

    /// Makes the step reversible.
    pub fn reversible(mut self) -> Self {
        self.reversible = true;
        self
    }

    /// Makes `is_applied` answer "cannot tell", like a step without its own bookkeeping.
    pub fn without_state(mut self) -> Self {
        self.knows_state = false;
        self
    }

    /// The injected errors.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Whether the step is applied now.
    pub fn is_applied_now(&self) -> bool {
        self.world.lock().applied
    }

    /// How many times `apply` changed something (applying an applied step does not count).
    pub fn applies(&self) -> u32 {
        self.world.lock().applies
    }

    /// How many times `revert` changed something.
    pub fn reverts(&self) -> u32 {
        self.world.lock().reverts
    }
}

#[async_trait]
impl MigrationStep for FakeMigration {
    fn id(&self) -> &str {
        &self.id
    }

    fn phase(&self) -> MigrationPhase {
        self.phase
    }

    fn reversible(&self) -> bool {
        self.reversible
    }

    async fn apply(&self, _ctx: &MigrationContext) -> Result<(), ProviderError> {
        self.faults.check("apply")?;
        let mut world = self.world.lock();
        if !world.applied {
            world.applied = true;
            world.applies += 1;
        }
        Ok(())
    }

    async fn revert(&self, _ctx: &MigrationContext) -> Result<(), ProviderError> {
        if !self.reversible {
            return Err(ProviderError::unsupported(format!(
                "reverting `{}`",
                self.id
            )));
        }
        self.faults.check("revert")?;
        let mut world = self.world.lock();
        if world.applied {
            world.applied = false;
            world.reverts += 1;
        }
        Ok(())
    }

    async fn is_applied(&self, _ctx: &MigrationContext) -> Result<Option<bool>, ProviderError> {
        self.faults.check("is_applied")?;
        Ok(self.knows_state.then(|| self.world.lock().applied))
    }
}
