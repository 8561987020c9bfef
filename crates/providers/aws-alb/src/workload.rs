//! [`TargetGroupWorkload`]: replicas of a revision are its targets registered in a target
//! group, for rolling replacement of targets.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthDescription};
use cutover_core::{ProviderError, ReplicaStatus, RevisionId, Workload};

use crate::arn::{ElbArn, ResourceKind};
use crate::probe::{TargetState, target_state};
use crate::{AlbError, classify};

/// One target: an instance id, an IP address or a Lambda function ARN, with an optional port
/// and availability zone (`all` for IP targets outside the VPC).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Instance id (`i-...`), IP address, or Lambda function ARN.
    pub id: String,
    /// The port; `None` uses the target group's.
    pub port: Option<u16>,
    /// The availability zone; `None` lets AWS choose.
    pub availability_zone: Option<String>,
}

impl Target {
    /// A target on the target group's port.
    pub fn new(id: impl Into<String>) -> Self {
        Target {
            id: id.into(),
            port: None,
            availability_zone: None,
        }
    }

    /// The same target on `port`.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    fn check(&self) -> Result<(), AlbError> {
        let bad = |why: &str| AlbError::InvalidTarget(self.id.clone(), why.to_owned());
        let instance = self.id.strip_prefix("i-").is_some_and(|hex| {
            (8..=17).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        let lambda = self.id.starts_with("arn:") && self.id.contains(":lambda:");
        if !instance && !lambda && self.id.parse::<IpAddr>().is_err() {
            return Err(bad("not an instance id, IP address or Lambda ARN"));
        }
        if self.port == Some(0) {
            return Err(bad("port 0"));
        }
        Ok(())
    }

    fn description(&self) -> TargetDescription {
        TargetDescription::builder()
            .id(&self.id)
            .set_port(self.port.map(i32::from))
            .set_availability_zone(self.availability_zone.clone())
            .build()
    }

    fn matches(&self, description: &TargetHealthDescription) -> bool {
        description.target().is_some_and(|t| {
            t.id() == Some(self.id.as_str())
                && (self.port.is_none() || t.port() == self.port.map(i32::from))
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.id),
            None => f.write_str(&self.id),
        }
    }
}

/// Each revision is a fixed, ordered pool of targets; scaling a revision to `n` registers the
/// first `n` of its pool in the target group and deregisters the rest. With a rolling plan
/// the engine replaces targets batch by batch within `max_surge` / `max_unavailable`, and waits
/// for new targets to turn healthy before taking old ones out.
///
/// - [`status`](Workload::status) asks `DescribeTargetHealth` about the revision's pool:
///   `desired` and `updated` are its registered targets that are not draining, `ready` and
///   `available` those that are `healthy`. Nothing is kept in memory, so a restarted process
///   sees the same thing.
/// - [`scale`](Workload::scale) registers and deregisters, then waits until the targets it
///   deregistered have finished draining (polling every `drain_poll`, up to `drain_timeout`;
///   after that it fails with a transient error and the engine calls it again). So a batch of
///   old targets is gone before the next one starts.
/// - Targets of the target group outside every pool are never touched.
#[derive(Clone)]
pub struct TargetGroupWorkload {
    client: Client,
    name: String,
    group: ElbArn,
    pools: BTreeMap<RevisionId, Vec<Target>>,
    drain_poll: Duration,
    drain_timeout: Duration,
}

impl TargetGroupWorkload {
    /// A workload over the target group `group` with a pool of targets per revision. The ARN
    /// and every target are checked here, before any call; a target in two pools is refused.
    pub fn new<R: Into<String>>(
        client: Client,
        group: &str,
        pools: impl IntoIterator<Item = (R, Vec<Target>)>,
    ) -> Result<Self, AlbError> {
        let group = ElbArn::parse(group, ResourceKind::TargetGroup)?;
        let mut map: BTreeMap<RevisionId, Vec<Target>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for (revision, targets) in pools {
            let revision: String = revision.into();
            let id: RevisionId = revision.parse().map_err(|e: cutover_core::IdError| {
                AlbError::InvalidRevision(revision.clone(), e.to_string())
            })?;
            if map.contains_key(&id) {
                return Err(AlbError::DuplicateRevision(id));
            }
            for t in &targets {
                t.check()?;
                if !seen.insert((t.id.clone(), t.port)) {
                    return Err(AlbError::InvalidTarget(
                        t.to_string(),
                        "given twice".to_owned(),
                    ));
                }
            }
            map.insert(id, targets);
        }
        if map.is_empty() {
            return Err(AlbError::NoTargetGroups);
        }
        Ok(TargetGroupWorkload {
            client,
            name: format!("alb/{}", group.resource()),
            group,
            pools: map,
            drain_poll: Duration::from_secs(5),
            drain_timeout: Duration::from_mins(10),
        })
    }

    /// How often [`scale`](Workload::scale) checks whether deregistered targets have drained,
    /// and how long it waits in all (defaults: 5 s and 10 min; the target group's
    /// deregistration delay defaults to 300 s).
    #[must_use]
    pub fn with_drain_wait(mut self, poll: Duration, timeout: Duration) -> Self {
        self.drain_poll = poll;
        self.drain_timeout = timeout;
        self
    }

    fn pool(&self, revision: &RevisionId) -> Result<&[Target], ProviderError> {
        self.pools.get(revision).map(Vec::as_slice).ok_or_else(|| {
            ProviderError::permanent(format!(
                "workload `{}` has no targets for revision `{revision}`",
                self.name
            ))
        })
    }

    /// The health of each target of `targets`, in order.
    async fn describe(&self, targets: &[Target]) -> Result<Vec<TargetState>, ProviderError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(self.group.as_str())
            .set_targets(Some(targets.iter().map(Target::description).collect()))
            .send()
            .await
            .map_err(|e| classify("DescribeTargetHealth", self.group.as_str(), e))?;
        let described = out.target_health_descriptions();
        Ok(targets
            .iter()
            .map(|t| {
                described
                    .iter()
                    .find(|d| t.matches(d))
                    .map_or(TargetState::Absent, target_state)
            })
            .collect())
    }

    async fn wait_drained(&self, targets: &[Target]) -> Result<(), ProviderError> {
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        loop {
            let states = self.describe(targets).await?;
            let leaving: Vec<String> = targets
                .iter()
                .zip(&states)
                .filter(|(_, s)| **s == TargetState::Leaving)
                .map(|(t, _)| t.to_string())
                .collect();
            if leaving.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::transient(format!(
                    "target group `{}`: {} still draining after {:?}",
                    self.group,
                    leaving.join(", "),
                    self.drain_timeout
                )));
            }
            tokio::time::sleep(self.drain_poll).await;
        }
    }
}

fn registered(state: &TargetState) -> bool {
    !matches!(state, TargetState::Absent | TargetState::Leaving)
}

#[async_trait]
impl Workload for TargetGroupWorkload {
    fn name(&self) -> &str {
        &self.name
    }

    async fn scale(&self, revision: &RevisionId, replicas: u32) -> Result<(), ProviderError> {
        let pool = self.pool(revision)?;
        let n = usize::try_from(replicas).unwrap_or(usize::MAX);
        if n > pool.len() {
            return Err(ProviderError::permanent(format!(
                "workload `{}`: revision `{revision}` has {} targets, cannot scale to {replicas}",
                self.name,
                pool.len()
            )));
        }
        let states = self.describe(pool).await?;
        let register: Vec<TargetDescription> = pool[..n]
            .iter()
            .zip(&states[..n])
            .filter(|(_, s)| !registered(s))
            .map(|(t, _)| t.description())
            .collect();
        let deregister: Vec<Target> = pool[n..]
            .iter()
            .zip(&states[n..])
            .filter(|(_, s)| registered(s))
            .map(|(t, _)| t.clone())
            .collect();
        if !register.is_empty() {
            tracing::debug!(workload = %self.name, %revision, count = register.len(), "RegisterTargets");
            self.client
                .register_targets()
                .target_group_arn(self.group.as_str())
                .set_targets(Some(register))
                .send()
                .await
                .map_err(|e| classify("RegisterTargets", self.group.as_str(), e))?;
        }
        if !deregister.is_empty() {
            tracing::debug!(workload = %self.name, %revision, count = deregister.len(), "DeregisterTargets");
            self.client
                .deregister_targets()
                .target_group_arn(self.group.as_str())
                .set_targets(Some(deregister.iter().map(Target::description).collect()))
                .send()
                .await
                .map_err(|e| classify("DeregisterTargets", self.group.as_str(), e))?;
        }
        // Also waits for targets a previous, interrupted call deregistered.
        let beyond: Vec<Target> = pool[n..].to_vec();
        self.wait_drained(&beyond).await
    }

    async fn status(&self, revision: &RevisionId) -> Result<ReplicaStatus, ProviderError> {
        let pool = self.pool(revision)?;
        let states = self.describe(pool).await?;
        let count = |f: fn(&TargetState) -> bool| {
            u32::try_from(states.iter().filter(|s| f(s)).count()).unwrap_or(u32::MAX)
        };
        let desired = count(registered);
        let healthy = count(|s| *s == TargetState::Healthy);
        Ok(ReplicaStatus {
            desired,
            updated: desired,
            ready: healthy,
            available: healthy,
        })
    }
}

/// Leaves the client out: its configuration is no business of logs.
impl std::fmt::Debug for TargetGroupWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetGroupWorkload")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("pools", &self.pools)
            .field("drain_poll", &self.drain_poll)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}
