//! The owner lease an engine holds while it drives a rollout.

use std::sync::Arc;

use tracing::warn;

use super::exec::{Retrier, with_retries};
use super::{Ownership, RolloutError};
use crate::store::{Claim, Lease, LeaseGuard};
use crate::{RolloutId, StateStore, StoreError, Timestamp};

/// The owner lease this engine holds.
pub(super) struct Held {
    lease: Lease,
    /// Frees the lease of an in-process store when the engine goes away.
    _guard: LeaseGuard,
    renewed_at: Timestamp,
}

impl Held {
    /// Takes the rollout's lease. Returns the live lease of another owner taken by force.
    pub(super) async fn acquire(
        store: &Arc<dyn StateStore>,
        id: &RolloutId,
        instance: &str,
        ownership: &Ownership,
        now: Timestamp,
    ) -> Result<(Held, Option<Lease>), RolloutError> {
        let claim = Claim {
            owner: instance.to_owned(),
            ttl: ownership.lease_ttl,
            now,
            force: ownership.takeover.is_some(),
        };
        match store.acquire(id, &claim).await {
            Ok(acquired) => Ok((
                Held {
                    lease: acquired.lease,
                    _guard: acquired.guard,
                    renewed_at: now,
                },
                acquired.previous,
            )),
            Err(StoreError::Owned { id, owner, until }) => {
                Err(RolloutError::Owned { id, owner, until })
            }
            Err(e) => Err(RolloutError::Store(e)),
        }
    }

    /// When the lease must be renewed next, for leases that expire.
    pub(super) fn renew_at(&self) -> Option<Timestamp> {
        self.lease
            .renew_every()
            .map(|every| self.renewed_at + every)
    }

    /// Renews the lease if it is due. A lease lost to another engine stops this one.
    pub(super) async fn renew_if_due(
        &mut self,
        store: &Arc<dyn StateStore>,
        id: &RolloutId,
        now: Timestamp,
        retrier: &Retrier,
    ) -> Result<(), RolloutError> {
        if self.renew_at().is_none_or(|at| now < at) {
            return Ok(());
        }
        let lease = self.lease.clone();
        match with_retries(retrier, 3, "renewing the lease", || {
            store.renew(id, &lease, now)
        })
        .await
        {
            Ok(lease) => {
                self.lease = lease;
                self.renewed_at = now;
                Ok(())
            }
            Err(StoreError::LeaseLost { now_held_by, .. }) => {
                warn!(now_held_by = ?now_held_by, "lost the lease; stopping");
                Err(RolloutError::Superseded { id: id.clone() })
            }
            Err(e) => Err(RolloutError::Store(e)),
        }
    }

    /// Gives the lease up; a failure only delays the next owner until the lease expires.
    pub(super) async fn release(&self, store: &Arc<dyn StateStore>, id: &RolloutId) {
        if let Err(e) = store.release(id, &self.lease).await {
            warn!(error = %e, "could not release the lease; it expires on its own");
        }
    }
}
