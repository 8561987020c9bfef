use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{Gate, GateContext, GateVerdict, ProviderError};
use parking_lot::Mutex;

use crate::Faults;

/// A [`Gate`] that answers from a script; the last answer repeats. Operation for [`Faults`]:
/// `check`.
///
/// ```
/// use cutover_core::GateVerdict;
/// use cutover_test::FakeGate;
/// let approval = FakeGate::new("change-approved", [
///     GateVerdict::Pending { detail: "waiting for approval".into() },
///     GateVerdict::Open,
/// ]);
/// ```
#[derive(Debug, Clone)]
pub struct FakeGate {
    name: String,
    poll_interval: Duration,
    timeout: Option<Duration>,
    faults: Faults,
    world: Arc<Mutex<GateWorld>>,
}

#[derive(Debug, Default)]
struct GateWorld {
    script: VecDeque<GateVerdict>,
    checks: u32,
}

impl FakeGate {
    /// A gate with these answers, polled every 10 s, without timeout.
    pub fn new(name: impl Into<String>, answers: impl IntoIterator<Item = GateVerdict>) -> Self {
        FakeGate {
            name: name.into(),
            poll_interval: Duration::from_secs(10),
            timeout: None,
            faults: Faults::default(),
            world: Arc::new(Mutex::new(GateWorld {
                script: answers.into_iter().collect(),
                checks: 0,
            })),
        }
    }

    /// A gate that is always open.
    pub fn open(name: impl Into<String>) -> Self {
        Self::new(name, [GateVerdict::Open])
    }

    /// Sets how long it may stay pending.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets how often it is asked while pending.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Replaces the answers.
    pub fn set_script(&self, answers: impl IntoIterator<Item = GateVerdict>) {
        self.world.lock().script = answers.into_iter().collect();
    }

    /// The injected errors.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// How many times it was asked.
    pub fn checks(&self) -> u32 {
        self.world.lock().checks
    }
}

#[async_trait]
impl Gate for FakeGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    async fn check(&self, _ctx: &GateContext) -> Result<GateVerdict, ProviderError> {
        self.world.lock().checks += 1;
        self.faults.check("check")?;
        let mut world = self.world.lock();
        let answer = if world.script.len() > 1 {
            world.script.pop_front()
        } else {
            world.script.front().cloned()
        };
        Ok(answer.unwrap_or(GateVerdict::Open))
    }
}
