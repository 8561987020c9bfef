use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use cutover_core::{ProviderError, ReplicaStatus, RevisionId, Workload};
use parking_lot::Mutex;

use crate::Faults;

/// A [`Workload`] that simulates replicas: after a scale, a revision's replicas become ready
/// one status poll later (configurable), or never when the revision is stuck. Operations for
/// [`Faults`]: `scale`, `status`.
///
/// ```
/// use cutover_test::FakeWorkload;
/// let workload = FakeWorkload::new("deployments");
/// workload.set_replicas(&"v1".parse().unwrap(), 10); // stable runs 10 ready replicas
/// ```
#[derive(Debug, Clone)]
pub struct FakeWorkload {
    name: String,
    faults: Faults,
    world: Arc<Mutex<WorkloadWorld>>,
}

#[derive(Debug, Default)]
struct WorkloadWorld {
    revisions: BTreeMap<RevisionId, Replicas>,
    ready_after_polls: u32,
    stuck: BTreeMap<RevisionId, u32>,
    scales: Vec<(RevisionId, u32)>,
    ready_after_scale: Vec<u32>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Replicas {
    desired: u32,
    ready: u32,
    polls_since_scale: u32,
}

impl FakeWorkload {
    /// A workload whose scaled revisions become ready at the first status poll after a scale.
    pub fn new(name: impl Into<String>) -> Self {
        FakeWorkload {
            name: name.into(),
            faults: Faults::default(),
            world: Arc::new(Mutex::new(WorkloadWorld {
                ready_after_polls: 1,
                ..WorkloadWorld::default()
            })),
        }
    }

    /// Replicas become ready only after this many status polls following a scale (0: at once).
    pub fn ready_after_polls(self, polls: u32) -> Self {
        self.world.lock().ready_after_polls = polls;
        self
    }

    /// `revision` runs `replicas` ready replicas now.
    pub fn set_replicas(&self, revision: &RevisionId, replicas: u32) {
        self.world.lock().revisions.insert(
            revision.clone(),
            Replicas {
                desired: replicas,
                ready: replicas,
                polls_since_scale: 0,
            },
        );
    }

    /// At most `ready` replicas of `revision` ever become ready (a crash-looping pod, say).
    pub fn stuck(&self, revision: &RevisionId, ready: u32) {
        self.world.lock().stuck.insert(revision.clone(), ready);
    }

    /// The injected errors.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every scale call, in order.
    pub fn scales(&self) -> Vec<(RevisionId, u32)> {
        self.world.lock().scales.clone()
    }

    /// Ready replicas of all revisions together, right after each scale call. A rolling update
    /// that keeps enough capacity never lets this drop below its minimum.
    pub fn ready_after_each_scale(&self) -> Vec<u32> {
        self.world.lock().ready_after_scale.clone()
    }

    /// Desired replicas of `revision` now.
    pub fn desired(&self, revision: &RevisionId) -> u32 {
        self.world
            .lock()
            .revisions
            .get(revision)
            .map_or(0, |r| r.desired)
    }
}

#[async_trait]
impl Workload for FakeWorkload {
    fn name(&self) -> &str {
        &self.name
    }

    async fn scale(&self, revision: &RevisionId, replicas: u32) -> Result<(), ProviderError> {
        self.faults.check("scale")?;
        let mut world = self.world.lock();
        world.scales.push((revision.clone(), replicas));
        let entry = world.revisions.entry(revision.clone()).or_default();
        if entry.desired != replicas {
            entry.desired = replicas;
            entry.ready = entry.ready.min(replicas);
            entry.polls_since_scale = 0;
        }
        let ready = world.revisions.values().map(|r| r.ready).sum();
        world.ready_after_scale.push(ready);
        Ok(())
    }

    async fn status(&self, revision: &RevisionId) -> Result<ReplicaStatus, ProviderError> {
        self.faults.check("status")?;
        let mut world = self.world.lock();
        let after = world.ready_after_polls;
        let cap = world.stuck.get(revision).copied();
        let entry = world.revisions.entry(revision.clone()).or_default();
        entry.polls_since_scale += 1;
        if entry.polls_since_scale >= after {
            entry.ready = entry.desired;
        }
        if let Some(cap) = cap {
            entry.ready = entry.ready.min(cap);
        }
        Ok(ReplicaStatus {
            desired: entry.desired,
            updated: entry.desired,
            ready: entry.ready,
            available: entry.ready,
        })
    }
}
