//! A rollout's owner lease, as a `coordination.k8s.io/v1` Lease `<name>-owner`:
//! `holderIdentity` is the owner (none once released), `leaseTransitions` the epoch, and
//! `renewTime` + `leaseDurationSeconds` the expiry.

use std::collections::HashMap;
use std::time::Duration;

use cutover_core::store::kit::{grant, renewed};
use cutover_core::{Acquired, Claim, Lease, ProviderError, StoreError, Timestamp};
use cutover_kube::is_conflict;
use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::ListParams;

use super::{ConfigMapStateStore, LEASES, LIST_PAGE, Objects, PART_LABEL, WRITE_ATTEMPTS};

/// A time-to-live rounded up to whole seconds (at least one), as `leaseDurationSeconds` holds.
fn whole_seconds(ttl: Duration) -> Duration {
    Duration::from_secs((ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1))
}

fn micro_time(at: Timestamp) -> Option<MicroTime> {
    let millis = i64::try_from(at.unix_millis()).ok()?;
    k8s_openapi::jiff::Timestamp::from_millisecond(millis)
        .ok()
        .map(MicroTime)
}

fn timestamp(at: &MicroTime) -> Timestamp {
    Timestamp::from_unix_millis(u64::try_from(at.0.as_millisecond()).unwrap_or(0))
}

/// The lease a Lease object records, and whether it is held (not released).
fn recorded(object: &LeaseObject) -> (Lease, bool) {
    let spec = object.spec.clone().unwrap_or_default();
    let owner = spec.holder_identity.filter(|h| !h.is_empty());
    let ttl = Duration::from_secs(
        spec.lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
    );
    // A lease without a renewal time has expired long ago.
    let renewed_at = spec
        .renew_time
        .as_ref()
        .map_or(Timestamp::from_unix_millis(0), timestamp);
    let held = owner.is_some();
    let lease = Lease {
        owner: owner.unwrap_or_default(),
        epoch: spec
            .lease_transitions
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(0),
        expires_at: Some(renewed_at + ttl),
        ttl,
    };
    (lease, held)
}

/// The lease a Lease object records, if held.
fn held(object: &LeaseObject) -> Option<Lease> {
    let (lease, held) = recorded(object);
    held.then_some(lease)
}

impl ConfigMapStateStore {
    async fn get_lease(&self, objects: &Objects) -> Result<Option<LeaseObject>, StoreError> {
        self.leases
            .get_opt(&objects.owner)
            .await
            .map_err(|e| self.failed(e, "get", LEASES, &objects.owner))
    }

    /// Writes `object` (created when `existing` is false); `false` when someone wrote it first.
    async fn put_lease(
        &self,
        objects: &Objects,
        object: &LeaseObject,
        existing: bool,
    ) -> Result<bool, StoreError> {
        let (verb, result) = if existing {
            (
                "update",
                self.leases
                    .replace(&objects.owner, &Self::params(), object)
                    .await,
            )
        } else {
            ("create", self.leases.create(&Self::params(), object).await)
        };
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(self.failed(e, verb, LEASES, &objects.owner)),
        }
    }

    /// Sets the spec of `object` to record `lease`, renewed at `now`.
    fn record(
        &self,
        objects: &Objects,
        object: &mut LeaseObject,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let out_of_range = |what: &str| {
            StoreError::Provider(ProviderError::permanent(format!(
                "the owner lease of rollout `{}` cannot hold its {what} in Lease {}",
                objects.id,
                self.describe("Lease", &objects.owner)
            )))
        };
        let epoch = i32::try_from(lease.epoch).map_err(|_| out_of_range("epoch"))?;
        let seconds = i32::try_from(lease.ttl.as_secs()).map_err(|_| out_of_range("ttl"))?;
        let now = micro_time(now).ok_or_else(|| out_of_range("time"))?;
        let spec = object.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(lease.owner.as_str())
            || spec.lease_transitions != Some(epoch)
        {
            spec.acquire_time = Some(now.clone());
        }
        spec.holder_identity = Some(lease.owner.clone());
        spec.lease_transitions = Some(epoch);
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(now);
        Ok(())
    }

    pub(super) async fn acquire_owner(
        &self,
        objects: &Objects,
        claim: &Claim,
    ) -> Result<Acquired, StoreError> {
        let claim = Claim {
            ttl: whole_seconds(claim.ttl),
            ..claim.clone()
        };
        for _ in 0..WRITE_ATTEMPTS {
            let existing = self.get_lease(objects).await?;
            let current = existing.as_ref().map(recorded);
            // A released lease is free; its epoch still counts, so epochs only rise.
            let (lease, previous) = grant(
                &objects.id,
                current
                    .as_ref()
                    .map(|(lease, held)| (lease, *held && lease.is_live_at(claim.now))),
                &claim,
                true,
            )?;
            let found = existing.is_some();
            let mut object = existing.unwrap_or_else(|| LeaseObject {
                metadata: Self::metadata(objects, &objects.owner, "owner"),
                spec: None,
            });
            self.record(objects, &mut object, &lease, claim.now)?;
            if self.put_lease(objects, &object, found).await? {
                return Ok(Acquired::new(lease, previous));
            }
        }
        Err(self.busy(&objects.id, "the owner lease"))
    }

    pub(super) async fn renew_owner(
        &self,
        objects: &Objects,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(mut object) = self.get_lease(objects).await? else {
                // No Lease at all: lost.
                return renewed(&objects.id, None, lease, now);
            };
            let renewed = renewed(&objects.id, held(&object).as_ref(), lease, now)?;
            self.record(objects, &mut object, &renewed, now)?;
            if self.put_lease(objects, &object, true).await? {
                return Ok(renewed);
            }
        }
        Err(self.busy(&objects.id, "the owner lease"))
    }

    pub(super) async fn owner_of(&self, objects: &Objects) -> Result<Option<Lease>, StoreError> {
        Ok(self.get_lease(objects).await?.as_ref().and_then(held))
    }

    pub(super) async fn release_owner(
        &self,
        objects: &Objects,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(mut object) = self.get_lease(objects).await? else {
                return Ok(());
            };
            if !held(&object).is_some_and(|l| l.owner == lease.owner && l.epoch == lease.epoch) {
                return Ok(());
            }
            if let Some(spec) = object.spec.as_mut() {
                spec.holder_identity = None;
            }
            if self.put_lease(objects, &object, true).await? {
                return Ok(());
            }
        }
        Err(self.busy(&objects.id, "the owner lease"))
    }

    /// The held owner leases in the namespace, by Lease name.
    pub(super) async fn owner_leases(&self) -> Result<HashMap<String, Lease>, StoreError> {
        let mut params = ListParams::default()
            .labels(&format!("{PART_LABEL}=owner"))
            .limit(LIST_PAGE);
        let mut leases = HashMap::new();
        loop {
            let page = self
                .leases
                .list(&params)
                .await
                .map_err(|e| self.failed(e, "list", LEASES, ""))?;
            for object in &page.items {
                if let (Some(name), Some(lease)) = (&object.metadata.name, held(object)) {
                    leases.insert(name.clone(), lease);
                }
            }
            match page.metadata.continue_.as_deref() {
                Some(token) if !token.is_empty() => params = params.continue_token(token),
                _ => break,
            }
        }
        Ok(leases)
    }
}
