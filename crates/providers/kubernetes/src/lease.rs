//! [`LeaseLock`]: one owner per rollout through a `coordination.k8s.io/v1` Lease, and
//! [`LeasedStateStore`], which stops an engine that lost it.
//!
//! See the crate docs, "What the Lease guarantees".

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{
    Acquired, Claim, Clock, CommandRequest, DecisionRecord, ListFilter, ProviderError,
    QueuedCommand, RolloutId, RolloutState, StateStore, StoreError, Stored, Summary, Timestamp,
    TokioClock, Watch,
};
use cutover_kube::{Target, classify, is_conflict, is_not_found};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::names::object_name;

const LEASES: &str = "leases.coordination.k8s.io";

/// Timing of a [`LeaseLock`], as in client-go's leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long others wait after the last change of the Lease before taking it over. Written
    /// to `spec.leaseDurationSeconds` (rounded up to whole seconds).
    pub lease_duration: Duration,
    /// How long after its last successful renewal the holder still considers the lock held.
    /// Must be shorter than `lease_duration`; the difference is the safety margin.
    pub renew_deadline: Duration,
    /// How often the holder renews and others retry.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    /// 15 s, 10 s and 2 s: client-go's defaults.
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The Lease record last seen held by someone else, and when it was first seen.
#[derive(Debug, Clone)]
struct Observed {
    resource_version: Option<String>,
    since: Instant,
}

#[derive(Debug, Default)]
struct LockState {
    /// When the last successful acquire or renew request was sent.
    renewed_at: Option<Instant>,
    observed: Option<Observed>,
    /// Set by `release`: background renewal stops instead of taking the Lease again.
    released: bool,
}

/// A lock on one `coordination.k8s.io/v1` Lease, held by `identity` (unique per replica, e.g.
/// the pod name). See the [crate docs](crate#what-the-lease-guarantees) for exactly what holding it
/// guarantees.
///
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use cutover_kubernetes::LeaseLock;
/// let lock = Arc::new(LeaseLock::for_rollout(client, "cutover-system", &"checkout".parse()?, "pod-a"));
/// lock.acquire().await?;
/// let _renewal = lock.spawn_renewal();
/// assert!(lock.is_held());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeaseLock {
    api: Api<Lease>,
    target: Target,
    identity: String,
    timing: LeaseTiming,
    clock: Arc<dyn Clock>,
    state: Mutex<LockState>,
}

impl LeaseLock {
    /// A lock on the Lease `name` in `namespace`, for the holder `identity`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            target: Target::new("get", LEASES, namespace, name),
            identity: identity.to_owned(),
            timing: LeaseTiming::default(),
            clock: Arc::new(TokioClock::new()),
            state: Mutex::new(LockState::default()),
        }
    }

    /// A lock on the Lease `cutover-<rollout id>` that owns one rollout.
    pub fn for_rollout(
        client: Client,
        namespace: &str,
        rollout: &RolloutId,
        identity: &str,
    ) -> Self {
        Self::new(
            client,
            namespace,
            &object_name("cutover-", rollout.as_str()),
            identity,
        )
    }

    /// Changes the timing.
    pub fn with_timing(mut self, timing: LeaseTiming) -> Self {
        self.timing = timing;
        self
    }

    /// The clock for the `acquireTime` and `renewTime` written to the Lease (informational:
    /// expiry is measured on tokio's monotonic clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The holder identity of this lock.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The Lease's name.
    pub fn lease_name(&self) -> &str {
        &self.target.name
    }

    /// Whether the lock is held: the last successful renewal was sent less than
    /// `renew_deadline` ago.
    pub fn is_held(&self) -> bool {
        self.state
            .lock()
            .renewed_at
            .is_some_and(|at| Instant::now() < at + self.timing.renew_deadline)
    }

    fn now(&self) -> MicroTime {
        let millis = i64::try_from(self.clock.now().unix_millis()).unwrap_or(i64::MAX);
        MicroTime(k8s_openapi::jiff::Timestamp::from_millisecond(millis).unwrap_or_default())
    }

    /// Acquires the Lease if it is free or expired, or renews it if held by this identity.
    /// Returns whether the lock is held afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, ProviderError> {
        let lease = match self.api.get(&self.target.name).await {
            Ok(lease) => Some(lease),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(classify(e, &self.target)),
        };
        let seen_at = Instant::now();
        let Some(mut lease) = lease else {
            return self.create().await;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        match holder {
            Some(holder) if holder == self.identity => {}
            None => {}
            Some(holder) => {
                let version = lease.metadata.resource_version.clone();
                let record_duration = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map(Duration::from_secs)
                    .unwrap_or_default();
                let wait = self.timing.lease_duration.max(record_duration);
                let mut state = self.state.lock();
                state.renewed_at = None;
                let since = match &state.observed {
                    Some(o) if o.resource_version == version => o.since,
                    _ => {
                        state.observed = Some(Observed {
                            resource_version: version,
                            since: seen_at,
                        });
                        seen_at
                    }
                };
                if seen_at < since + wait {
                    debug!(lease = %self.target.name, %holder, "lease held by another replica");
                    return Ok(false);
                }
                drop(state);
                debug!(lease = %self.target.name, %holder, "taking over an expired lease");
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.acquire_time = Some(self.now());
            }
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(self.now());
        }
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.renew_time = Some(self.now());
        let sent = Instant::now();
        // `lease` carries the resourceVersion read above: a write in between is a 409.
        match self
            .api
            .replace(&self.target.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                let mut state = self.state.lock();
                state.renewed_at = Some(sent);
                state.observed = None;
                Ok(true)
            }
            Err(e) if is_conflict(&e) => {
                self.state.lock().renewed_at = None;
                Ok(false)
            }
            Err(e) => Err(classify(e, &self.target.with_verb("update"))),
        }
    }

    fn duration_seconds(&self) -> i32 {
        let d = self.timing.lease_duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }

    async fn create(&self) -> Result<bool, ProviderError> {
        let now = self.now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.target.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        let sent = Instant::now();
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                self.state.lock().renewed_at = Some(sent);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(classify(e, &self.target.with_verb("create"))),
        }
    }

    /// Waits until the lock is acquired, retrying every `retry_period`. Errors are returned
    /// (the caller decides whether to try again).
    pub async fn acquire(&self) -> Result<(), ProviderError> {
        self.state.lock().released = false;
        while !self.try_acquire_or_renew().await? {
            tokio::time::sleep(self.timing.retry_period).await;
        }
        Ok(())
    }

    /// Renews the lock every `retry_period` in a background task until the task is dropped,
    /// the lock is lost to another replica, or it is [released](Self::release). Failed renewals are retried; the lock stops
    /// counting as held `renew_deadline` after the last successful one.
    pub fn spawn_renewal(self: &Arc<Self>) -> Renewal {
        let lock = Arc::clone(self);
        Renewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lock.timing.retry_period).await;
                if lock.state.lock().released {
                    return;
                }
                match lock.try_acquire_or_renew().await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(lease = %lock.target.name, "lease lost to another replica");
                        return;
                    }
                    Err(e) => {
                        warn!(lease = %lock.target.name, error = %e.chain(), "renewing the lease failed");
                    }
                }
            }
        }))
    }

    /// Gives the Lease up, if held, so another replica can take it at once, and stops the
    /// background renewal.
    pub async fn release(&self) -> Result<(), ProviderError> {
        let held = self.is_held();
        {
            let mut state = self.state.lock();
            state.released = true;
            state.renewed_at = None;
        }
        if !held {
            return Ok(());
        }
        let mut lease = self
            .api
            .get(&self.target.name)
            .await
            .map_err(|e| classify(e, &self.target))?;
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(&self.target.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(classify(e, &self.target.with_verb("update"))),
        }
    }
}

/// The background renewal of a [`LeaseLock`]; dropping it stops renewing.
#[derive(Debug)]
pub struct Renewal(JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`StateStore`] that writes for the engine only while a [`LeaseLock`] is held.
///
/// The lock decides who owns the rollout; the inner store's own owner lease follows it:
///
/// - `save` and `append` check the lock before and after writing, and fail (a permanent store
///   error, which stops the engine at once) if it is not held. The engine saves before every
///   effect, so an engine that lost the Lease stops before its next effect (see the
///   [crate docs](crate#what-the-lease-guarantees) for the exact guarantee).
/// - `acquire` needs the lock, and then takes the inner store's lease even from a live owner
///   (which can only be an engine that lost the lock, and whose saves now fail); `renew` needs
///   the lock too, so an engine that lost it stops at its next renewal even while it waits.
/// - Reading (`load`, `records`, `commands`, `list`, `lease`), sending commands and `release`
///   are not guarded: anyone may read and steer a rollout, and a lease is always given up.
#[derive(Debug)]
pub struct LeasedStateStore<S> {
    inner: S,
    lock: Arc<LeaseLock>,
    name: String,
}

impl<S: StateStore> LeasedStateStore<S> {
    /// Guards `inner` with `lock`.
    pub fn new(inner: S, lock: Arc<LeaseLock>) -> Self {
        let name = format!("{} (lease {})", inner.name(), lock.lease_name());
        LeasedStateStore { inner, lock, name }
    }

    /// Fails unless the lock is held, `when` (`before` or `after`) `what` (`saving`...).
    fn check(&self, id: &RolloutId, when: &str, what: &str) -> Result<(), StoreError> {
        if self.lock.is_held() {
            return Ok(());
        }
        Err(StoreError::Provider(ProviderError::permanent(format!(
            "lease `{}` is not held by `{}` {when} {what} rollout `{id}`: another replica may own \
             it now, so this engine stops",
            self.lock.lease_name(),
            self.lock.identity()
        ))))
    }

    /// Runs a write for the engine between two checks of the lock: the write may have taken
    /// long, and the engine acts right after it returns.
    async fn guarded<T>(
        &self,
        id: &RolloutId,
        what: &str,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.check(id, "before", what)?;
        let value = write.await?;
        self.check(id, "after", what)?;
        Ok(value)
    }
}

#[async_trait]
impl<S: StateStore> StateStore for LeasedStateStore<S> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        self.inner.load(id).await
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.guarded(id, "saving", self.inner.save(id, state, expected))
            .await
    }

    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        self.guarded(
            id,
            "appending to the decision log of",
            self.inner.append(id, records),
        )
        .await
    }

    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        self.inner.records(id, after, limit).await
    }

    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        self.inner.send(id, request, now).await
    }

    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        self.inner.commands(id, after).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        self.inner.list(filter).await
    }

    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        self.check(id, "before", "taking the owner lease of")?;
        let forced = Claim {
            force: true,
            ..claim.clone()
        };
        self.inner.acquire(id, &forced).await
    }

    async fn renew(
        &self,
        id: &RolloutId,
        lease: &cutover_core::Lease,
        now: Timestamp,
    ) -> Result<cutover_core::Lease, StoreError> {
        self.check(id, "before", "renewing the owner lease of")?;
        self.inner.renew(id, lease, now).await
    }

    async fn lease(&self, id: &RolloutId) -> Result<Option<cutover_core::Lease>, StoreError> {
        self.inner.lease(id).await
    }

    async fn release(&self, id: &RolloutId, lease: &cutover_core::Lease) -> Result<(), StoreError> {
        self.inner.release(id, lease).await
    }

    fn watch(&self, id: &RolloutId) -> Watch {
        self.inner.watch(id)
    }
}
