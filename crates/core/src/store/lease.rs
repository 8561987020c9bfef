//! Owner leases: one engine drives a rollout at a time.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::{RolloutId, Timestamp};

/// An engine's request for a rollout's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Who asks (the engine's instance id).
    pub owner: String,
    /// How long the lease lasts without renewal, for stores whose leases expire.
    pub ttl: Duration,
    /// Now, on the engine's clock.
    pub now: Timestamp,
    /// Take the lease even from a live owner.
    pub force: bool,
}

/// A rollout's owner lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it.
    pub owner: String,
    /// Rises with every acquisition by a new owner: a fencing token.
    pub epoch: u64,
    /// When it expires unless renewed; `None` for leases that live as long as their
    /// [`LeaseGuard`] (in-process stores), which need no renewal.
    pub expires_at: Option<Timestamp>,
    /// How far a renewal extends it.
    #[serde(with = "crate::time::serde_duration")]
    pub ttl: Duration,
}

impl Lease {
    /// Whether it still holds at `now` (a lease without expiry always does; its store checks
    /// its guard).
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }

    /// How often its owner should renew it: every third of its time-to-live, or never for
    /// leases that do not expire.
    pub fn renew_every(&self) -> Option<Duration> {
        self.expires_at.map(|_| self.ttl / 3)
    }
}

/// What [`StateStore::acquire`](super::StateStore::acquire) gives.
#[derive(Debug)]
#[non_exhaustive]
pub struct Acquired {
    /// The lease now held.
    pub lease: Lease,
    /// The live lease of another owner that the claim took by force, if any.
    pub previous: Option<Lease>,
    /// Keep it while you hold the lease: in-process stores free the lease when it is dropped.
    pub guard: LeaseGuard,
}

impl Acquired {
    /// A lease with no guard (stores whose leases expire by time).
    pub fn new(lease: Lease, previous: Option<Lease>) -> Self {
        Acquired {
            lease,
            previous,
            guard: LeaseGuard(None),
        }
    }

    /// A lease that lives as long as the returned guard; the store keeps the liveness.
    pub fn guarded(lease: Lease, previous: Option<Lease>) -> (Self, LeaseLiveness) {
        let guard = Arc::new(());
        let liveness = LeaseLiveness(Arc::downgrade(&guard));
        (
            Acquired {
                lease,
                previous,
                guard: LeaseGuard(Some(guard)),
            },
            liveness,
        )
    }
}

/// Held by the owner of a lease; in-process stores free the lease when it is dropped (the
/// owner's task ended, or was dropped with its future).
#[derive(Debug)]
pub struct LeaseGuard(#[allow(dead_code)] Option<Arc<()>>);

/// The store's side of a [`LeaseGuard`].
#[derive(Debug, Clone)]
pub struct LeaseLiveness(Weak<()>);

impl LeaseLiveness {
    /// Whether the guard still exists.
    pub fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// The lease a claim gets, given the current lease and whether it is still live; the same
/// rules for every store. Returns the new lease and the live lease it took by force.
///
/// A free or expired lease goes to the claimant with the next epoch; the current owner
/// claiming again keeps its epoch; a live lease of another owner is taken only by force
/// (next epoch, and the old lease returned), otherwise the claim fails with
/// [`StoreError::Owned`]. `expires` says whether the store's leases expire by time.
pub fn grant(
    id: &RolloutId,
    current: Option<(&Lease, bool)>,
    claim: &Claim,
    expires: bool,
) -> Result<(Lease, Option<Lease>), StoreError> {
    let expires_at = expires.then(|| claim.now + claim.ttl);
    let new = |epoch| Lease {
        owner: claim.owner.clone(),
        epoch,
        expires_at,
        ttl: claim.ttl,
    };
    match current {
        None => Ok((new(1), None)),
        Some((lease, _)) if lease.owner == claim.owner => Ok((new(lease.epoch), None)),
        Some((lease, false)) => Ok((new(lease.epoch + 1), None)),
        Some((lease, true)) if claim.force => Ok((new(lease.epoch + 1), Some(lease.clone()))),
        Some((lease, true)) => Err(StoreError::Owned {
            id: id.clone(),
            owner: lease.owner.clone(),
            until: lease.expires_at,
        }),
    }
}

/// The renewed lease, if `lease` (same owner, same epoch) is still the current one;
/// otherwise [`StoreError::LeaseLost`].
pub fn renewed(
    id: &RolloutId,
    current: Option<&Lease>,
    lease: &Lease,
    now: Timestamp,
) -> Result<Lease, StoreError> {
    match current {
        Some(c) if c.owner == lease.owner && c.epoch == lease.epoch => Ok(Lease {
            expires_at: c.expires_at.map(|_| now + c.ttl),
            ..c.clone()
        }),
        other => Err(StoreError::LeaseLost {
            id: id.clone(),
            owner: lease.owner.clone(),
            now_held_by: other.map(|c| c.owner.clone()),
        }),
    }
}
