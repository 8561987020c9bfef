//! Owner leases in the columns of `cutover_rollouts`.
//!
//! `acquire` and `renew` decide liveness on the claimant's clock (`Claim::now`), as every
//! store does; each also sets `lease_deadline` on the database's clock, which fenced writes
//! and fleet claims go by. The epoch is never reset: a release keeps it, and the next owner
//! gets the one after.

use cutover_core::store::kit::{grant, renewed};
use cutover_core::{Acquired, Claim, Lease, ProviderError, RolloutId, StoreError, Timestamp};

use super::PgStateStore;
use super::sql::{big, millis, unbig};

/// The lease in a row's columns, if one is held.
pub(super) fn from_columns(
    owner: Option<String>,
    epoch: i64,
    ttl_ms: Option<i64>,
    expires_ms: Option<i64>,
) -> Option<Lease> {
    owner.map(|owner| Lease {
        owner,
        epoch: unbig(epoch),
        expires_at: expires_ms.map(|ms| Timestamp::from_unix_millis(unbig(ms))),
        ttl: std::time::Duration::from_millis(ttl_ms.map_or(0, unbig)),
    })
}

pub(super) async fn acquire(
    store: &PgStateStore,
    id: &RolloutId,
    claim: &Claim,
) -> Result<Acquired, StoreError> {
    const ATTEMPTS: u32 = 5;
    for _ in 0..ATTEMPTS {
        let row = store
            .db()
            .query_opt(
                "taking the lease",
                "WITH ins AS ( \
                   INSERT INTO cutover_rollouts (id) VALUES ($1) ON CONFLICT (id) DO NOTHING \
                   RETURNING lease_owner, lease_epoch, lease_ttl_ms, lease_expires_ms) \
                 SELECT * FROM ins \
                 UNION ALL \
                 SELECT lease_owner, lease_epoch, lease_ttl_ms, lease_expires_ms \
                 FROM cutover_rollouts WHERE id = $1",
                &[&id.as_str()],
            )
            .await?
            .ok_or_else(|| {
                StoreError::Provider(ProviderError::transient(
                    "PostgreSQL: the rollout's row vanished while taking its lease",
                ))
            })?;
        let owner: Option<String> = row.get(0);
        let stored_epoch = unbig(row.get(1));
        let current = from_columns(owner.clone(), row.get(1), row.get(2), row.get(3));
        let (mut lease, previous) = grant(
            id,
            current.as_ref().map(|l| (l, l.is_live_at(claim.now))),
            claim,
            true,
        )?;
        if current.as_ref().is_none_or(|c| c.owner != claim.owner) {
            // A new owner: the epoch after every one ever given out, even released ones.
            lease.epoch = stored_epoch + 1;
        }
        let expires = lease.expires_at.map(|t| big(t.unix_millis()));
        let updated = store
            .db()
            .query(
                "taking the lease",
                "UPDATE cutover_rollouts SET lease_owner = $2, lease_epoch = $3, \
                   lease_ttl_ms = $4, lease_expires_ms = $5, \
                   lease_deadline = now() + $4::bigint * interval '1 millisecond' \
                 WHERE id = $1 AND lease_epoch = $6 AND lease_owner IS NOT DISTINCT FROM $7 \
                 RETURNING 1",
                &[
                    &id.as_str(),
                    &lease.owner,
                    &big(lease.epoch),
                    &millis(lease.ttl),
                    &expires,
                    &big(stored_epoch),
                    &owner,
                ],
            )
            .await?;
        if !updated.is_empty() {
            return Ok(Acquired::new(lease, previous));
        }
        // Another claimant changed the lease between the read and the write: look again.
    }
    Err(StoreError::Provider(ProviderError::transient(format!(
        "PostgreSQL: the lease of `{id}` kept changing while taking it ({ATTEMPTS} attempts)"
    ))))
}

pub(super) async fn renew(
    store: &PgStateStore,
    id: &RolloutId,
    lease: &Lease,
    now: Timestamp,
) -> Result<Lease, StoreError> {
    let row = store
        .db()
        .query_opt(
            "renewing the lease",
            "UPDATE cutover_rollouts SET lease_expires_ms = $4 + lease_ttl_ms, \
               lease_deadline = now() + lease_ttl_ms * interval '1 millisecond' \
             WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 \
               AND lease_deadline > now() \
             RETURNING lease_owner, lease_epoch, lease_ttl_ms, lease_expires_ms",
            &[
                &id.as_str(),
                &lease.owner,
                &big(lease.epoch),
                &big(now.unix_millis()),
            ],
        )
        .await?;
    if let Some(lease) = row.and_then(|r| from_columns(r.get(0), r.get(1), r.get(2), r.get(3))) {
        return Ok(lease);
    }
    // Lost: taken by another owner, released, or past its deadline on the database's clock
    // (a lease that lapsed is gone even if nobody took it: its owner must claim again).
    let now_held = current(store, id).await?;
    match renewed(id, now_held.as_ref(), lease, now) {
        Err(e) => Err(e),
        Ok(_) => Err(StoreError::LeaseLost {
            id: id.clone(),
            owner: lease.owner.clone(),
            now_held_by: None,
        }),
    }
}

pub(super) async fn current(
    store: &PgStateStore,
    id: &RolloutId,
) -> Result<Option<Lease>, StoreError> {
    let row = store
        .db()
        .query_opt(
            "reading the lease",
            "SELECT lease_owner, lease_epoch, lease_ttl_ms, lease_expires_ms \
             FROM cutover_rollouts WHERE id = $1 AND lease_owner IS NOT NULL",
            &[&id.as_str()],
        )
        .await?;
    Ok(row.and_then(|r| from_columns(r.get(0), r.get(1), r.get(2), r.get(3))))
}

pub(super) async fn release(
    store: &PgStateStore,
    id: &RolloutId,
    lease: &Lease,
) -> Result<(), StoreError> {
    let rows = store
        .db()
        .query(
            "releasing the lease",
            "WITH released AS ( \
               UPDATE cutover_rollouts \
               SET lease_owner = NULL, lease_expires_ms = NULL, lease_deadline = NULL \
               WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 RETURNING id) \
             SELECT released.id FROM released \
             CROSS JOIN LATERAL (SELECT pg_notify('cutover_fleet', released.id)) AS n",
            &[&id.as_str(), &lease.owner, &big(lease.epoch)],
        )
        .await?;
    if !rows.is_empty() {
        store.listener().fleet_changed();
    }
    Ok(())
}
