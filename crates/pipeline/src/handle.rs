//! [`PipelineHandle`]: submit freight, approve, roll back and look, from any process that
//! reaches the store.

use std::sync::Arc;

use cutover_core::{Clock, RevisionId, RolloutHandle, StateStore, StoreError};

use crate::doc;
use crate::error::PipelineError;
use crate::freight::{Freight, FreightId};
use crate::planner::{Decision, decide, previous_verified};
use crate::spec::Pipeline;
use crate::state::{Event, FreightEntry, PipelineState, PromotionStep, Verified};

/// A stage's rollout waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingApproval {
    /// The stage.
    pub stage: String,
    /// The freight it would promote.
    pub freight: FreightId,
    /// The freight's name.
    pub freight_name: String,
    /// The stage's rollout.
    pub rollout: cutover_core::RolloutId,
    /// The gate to approve on it.
    pub gate: String,
}

/// Reads and changes a pipeline through its store, without the executor: every change is a
/// compare-and-swap edit of the pipeline's document (or, for approvals, a command to the
/// stage's rollout), which the executor picks up.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    store: Arc<dyn StateStore>,
    pipeline: Pipeline,
    clock: Arc<dyn Clock>,
    by: String,
}

impl PipelineHandle {
    /// A handle on `pipeline` in `store`, acting as `cutover`.
    pub fn new(store: Arc<dyn StateStore>, pipeline: Pipeline, clock: Arc<dyn Clock>) -> Self {
        PipelineHandle {
            store,
            pipeline,
            clock,
            by: "cutover".to_owned(),
        }
    }

    /// The same handle acting as `who` (kept with what it does).
    pub fn by(mut self, who: impl Into<String>) -> Self {
        self.by = who.into();
        self
    }

    /// The pipeline's state (empty if nothing was saved yet).
    pub async fn state(&self) -> Result<PipelineState, PipelineError> {
        Ok(doc::load(&*self.store, self.pipeline.id()).await?.0)
    }

    /// What every stage would do next now.
    pub async fn next(&self) -> Result<Decision, PipelineError> {
        let state = self.state().await?;
        Ok(decide(&self.pipeline, &state, self.clock.now()))
    }

    /// Submits freight (Kargo's warehouse). Stages without upstreams take it first. Submitting
    /// the same contents again changes nothing.
    pub async fn submit(&self, freight: Freight) -> Result<FreightId, PipelineError> {
        self.add(freight, false).await
    }

    /// Records that every stage that runs nothing yet already runs `freight`, verified: how an
    /// existing deployment comes under a pipeline.
    pub async fn adopt(&self, freight: Freight) -> Result<FreightId, PipelineError> {
        self.add(freight, true).await
    }

    async fn add(&self, freight: Freight, adopt: bool) -> Result<FreightId, PipelineError> {
        RevisionId::new(freight.revision.clone()).map_err(|e| PipelineError::InvalidFreight {
            name: freight.name.clone(),
            reason: e.to_string(),
        })?;
        let id = freight.id();
        let now = self.clock.now();
        let stages: Vec<String> = self
            .pipeline
            .stages()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        doc::update(&*self.store, self.pipeline.id(), |state| {
            let mut changed = false;
            if state.freight(&id).is_none() {
                state.freight.push(FreightEntry {
                    id: id.clone(),
                    freight: freight.clone(),
                    by: self.by.clone(),
                    at: now,
                });
                changed = true;
            }
            if adopt {
                for stage in &stages {
                    let here = state.stage_mut(stage);
                    if here.current.is_none() && here.promotion.is_none() {
                        here.switch_to(id.clone(), now);
                        here.verified.insert(
                            id.clone(),
                            Verified {
                                at: now,
                                left: None,
                            },
                        );
                        here.log(now, id.clone(), Event::Verified);
                        changed = true;
                    }
                }
            }
            Ok(changed.then_some(()))
        })
        .await?;
        Ok(id)
    }

    /// Rolls stage `stage` back: the freight it runs is marked failed there (so it never goes
    /// downstream from here, nor comes back), and the executor promotes the stage's previous
    /// verified freight.
    pub async fn rollback(&self, stage: &str, reason: &str) -> Result<FreightId, PipelineError> {
        self.known(stage)?;
        let now = self.clock.now();
        let by = self.by.clone();
        let result = doc::update(&*self.store, self.pipeline.id(), |state| {
            let here = state.stage_mut(stage);
            let cannot = |reason: &str| PipelineError::CannotRollBack {
                stage: stage.to_owned(),
                reason: reason.to_owned(),
            };
            if here.promotion.is_some() {
                return Err(cannot("a promotion is in progress; wait for it to end"));
            }
            let Some(current) = here.current_id().cloned() else {
                return Err(cannot("it runs no freight"));
            };
            if here.failed.contains_key(&current) {
                return Err(cannot(
                    "its freight already failed; the rollback is under way",
                ));
            }
            let Some(to) = previous_verified(here, &current) else {
                return Err(cannot("no earlier verified freight to go back to"));
            };
            let reason = if reason.is_empty() {
                format!("rolled back by {by}")
            } else {
                format!("rolled back by {by}: {reason}")
            };
            here.fail(current, now, reason);
            Ok(Some(to))
        })
        .await?;
        result.ok_or_else(|| PipelineError::CannotRollBack {
            stage: stage.to_owned(),
            reason: "nothing changed".to_owned(),
        })
    }

    /// Approves stage `stage`'s pending promotion: an `approve` command for its gate, sent to
    /// the stage's rollout through the store (what `cutover approve ROLLOUT GATE` or a
    /// dashboard sends too). Who and why are kept in the rollout's record and the stage's
    /// history.
    pub async fn approve(&self, stage: &str, reason: &str) -> Result<(), PipelineError> {
        self.answer(stage, reason, true).await
    }

    /// Rejects stage `stage`'s pending promotion: its rollout stops and the freight is marked
    /// failed there.
    pub async fn reject(&self, stage: &str, reason: &str) -> Result<(), PipelineError> {
        self.answer(stage, reason, false).await
    }

    async fn answer(&self, stage: &str, reason: &str, approve: bool) -> Result<(), PipelineError> {
        self.known(stage)?;
        let pending = self.pending_approvals().await?;
        let Some(p) = pending.into_iter().find(|p| p.stage == stage) else {
            return Err(PipelineError::NotAwaitingApproval {
                stage: stage.to_owned(),
                detail: None,
            });
        };
        let handle = RolloutHandle::new(self.store.clone(), p.rollout.clone()).by(self.by.clone());
        let sent = if approve {
            handle.approve(p.gate, reason).await
        } else {
            handle.reject(p.gate, reason).await
        };
        match sent {
            Ok(_) => Ok(()),
            Err(StoreError::UnknownRollout { .. }) => Err(PipelineError::NotAwaitingApproval {
                stage: stage.to_owned(),
                detail: Some(format!(
                    "its rollout `{}` has not started yet; try again",
                    p.rollout
                )),
            }),
            Err(StoreError::Finished { outcome, .. }) => Err(PipelineError::NotAwaitingApproval {
                stage: stage.to_owned(),
                detail: Some(format!(
                    "its rollout `{}` has finished ({outcome})",
                    p.rollout
                )),
            }),
            Err(source) => Err(PipelineError::Store {
                id: self.pipeline.id().clone(),
                source,
            }),
        }
    }

    /// Promotions whose rollout waits for an approval (or will, once it starts).
    pub async fn pending_approvals(&self) -> Result<Vec<PendingApproval>, PipelineError> {
        let state = self.state().await?;
        let mut pending = Vec::new();
        for stage in self.pipeline.stages() {
            let Some(p) = state
                .stages
                .get(&stage.name)
                .and_then(|s| s.promotion.as_ref())
            else {
                continue;
            };
            let (Some(gate), PromotionStep::RollingOut) = (&p.approval, p.step) else {
                continue;
            };
            let answered = match self.store.load(&p.rollout).await {
                Ok(Some(stored)) => stored.state.approvals.contains_key(gate),
                Ok(None) => false,
                Err(source) => {
                    return Err(PipelineError::Store {
                        id: self.pipeline.id().clone(),
                        source,
                    });
                }
            };
            if !answered {
                pending.push(PendingApproval {
                    stage: stage.name.clone(),
                    freight: p.freight.clone(),
                    freight_name: state
                        .freight(&p.freight)
                        .map(|f| f.freight.name.clone())
                        .unwrap_or_default(),
                    rollout: p.rollout.clone(),
                    gate: gate.clone(),
                });
            }
        }
        Ok(pending)
    }

    fn known(&self, stage: &str) -> Result<(), PipelineError> {
        match self.pipeline.stage(stage) {
            Some(_) => Ok(()),
            None => Err(PipelineError::UnknownStage {
                id: self.pipeline.id().clone(),
                stage: stage.to_owned(),
            }),
        }
    }
}
