//! [`AlbRouter`]: weighted forward actions on a listener's default action or a listener rule.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupStickinessConfig, TargetGroupTuple,
};
use cutover_core::{
    ProviderError, RevisionId, RouterCapabilities, StickySession, TrafficRouter, TrafficSplit,
};

use crate::arn::{ElbArn, ResourceKind};
use crate::weights::{self, MAX_WEIGHT};
use crate::{AlbError, classify};

/// The most target groups one forward action may hold (an AWS limit).
pub const MAX_TARGET_GROUPS: usize = 5;

/// The longest target-group stickiness AWS accepts: 7 days.
pub const MAX_STICKINESS_SECS: u64 = 604_800;

/// Where the weighted forward action lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// The default action of a listener (`ModifyListener`).
    Listener(ElbArn),
    /// The actions of a listener rule (`ModifyRule`); its conditions and priority are left alone.
    Rule(ElbArn),
}

impl ForwardTarget {
    fn arn(&self) -> &ElbArn {
        match self {
            ForwardTarget::Listener(arn) | ForwardTarget::Rule(arn) => arn,
        }
    }
}

impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardTarget::Listener(arn) => write!(f, "listener `{arn}`"),
            ForwardTarget::Rule(arn) => write!(f, "listener rule `{arn}`"),
        }
    }
}

/// Splits traffic between revisions through the weights of an ALB forward action, one target
/// group per revision.
///
/// Every change is a read-modify-write of the listener's default actions (or the rule's
/// actions): only the weights of the target groups this router manages (and, with
/// [`set_sticky_sessions`](TrafficRouter::set_sticky_sessions), the target-group stickiness)
/// change. Other actions (authentication, their order), other target groups in the forward
/// action and their weights, the stickiness duration, and a rule's conditions and priority
/// are kept. After each change the router reads the action back and fails if AWS reports
/// anything else than what it wrote. ELBv2 has no conditional writes, so a concurrent writer
/// between the read and the write is detected by that read-back, not prevented.
///
/// Weights: granularity 0.1 %, `weight = bp / 10`, 100 % written as 999; see
/// [`weights`](crate::weights).
///
/// Sticky sessions: ALB pins a client to a target group with its own cookie (`AWSALBTG`), so
/// [`set_sticky_sessions`](TrafficRouter::set_sticky_sessions) with `cookie: None` turns
/// target-group stickiness on for the duration, and a named cookie is
/// [`Unsupported`](cutover_core::ErrorKind::Unsupported). The capability is therefore not
/// declared.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_aws_alb::AlbRouter;
/// let client = cutover_aws_alb::client_from_env().await;
/// let router = AlbRouter::builder(client)
///     .listener("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2")
///     .target_group("v1", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-v1/73e2d6bc24d8a067")
///     .target_group("v2", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-v2/83e2d6bc24d8a068")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AlbRouter {
    client: Client,
    name: String,
    target: ForwardTarget,
    groups: BTreeMap<RevisionId, ElbArn>,
}

/// Builds an [`AlbRouter`]; every ARN is checked in [`build`](AlbRouterBuilder::build), before
/// any call to AWS.
#[derive(Debug)]
#[must_use]
pub struct AlbRouterBuilder {
    client: Client,
    name: Option<String>,
    listener: Option<String>,
    rule: Option<String>,
    groups: Vec<(String, String)>,
}

impl AlbRouterBuilder {
    /// Manage the default action of this listener.
    pub fn listener(mut self, arn: impl Into<String>) -> Self {
        self.listener = Some(arn.into());
        self
    }

    /// Manage the actions of this listener rule.
    pub fn rule(mut self, arn: impl Into<String>) -> Self {
        self.rule = Some(arn.into());
        self
    }

    /// The target group that serves `revision`.
    pub fn target_group(mut self, revision: impl Into<String>, arn: impl Into<String>) -> Self {
        self.groups.push((revision.into(), arn.into()));
        self
    }

    /// The name in records and spans (default `alb/<load balancer>/<listener or rule id>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks the ARNs: well-formed, of the right kind, an Application Load Balancer's
    /// listener or rule, all in one partition, region and account, no revision or target group
    /// twice, at most 5 target groups.
    pub fn build(self) -> Result<AlbRouter, AlbError> {
        let target = match (self.listener, self.rule) {
            (Some(l), None) => ForwardTarget::Listener(ElbArn::parse(&l, ResourceKind::Listener)?),
            (None, Some(r)) => ForwardTarget::Rule(ElbArn::parse(&r, ResourceKind::ListenerRule)?),
            _ => return Err(AlbError::NoForwardTarget),
        };
        let groups = target_groups(target.arn(), self.groups)?;
        if groups.len() > MAX_TARGET_GROUPS {
            return Err(AlbError::TooManyTargetGroups(groups.len()));
        }
        let name = self.name.unwrap_or_else(|| {
            let resource = target.arn().resource();
            let parts: Vec<&str> = resource.split('/').collect();
            // listener/app/NAME/LB-ID/LISTENER-ID[/RULE-ID]
            match (&target, parts.as_slice()) {
                (ForwardTarget::Listener(_), [_, _, lb, _, id]) => format!("alb/{lb}/{id}"),
                (ForwardTarget::Rule(_), [_, _, lb, _, _, id]) => format!("alb/{lb}/rule-{id}"),
                _ => format!("alb/{resource}"),
            }
        });
        Ok(AlbRouter {
            client: self.client,
            name,
            target,
            groups,
        })
    }
}

/// Parses `(revision, target group ARN)` pairs: no duplicates, every ARN in `anchor`'s scope.
pub(crate) fn target_groups(
    anchor: &ElbArn,
    pairs: Vec<(String, String)>,
) -> Result<BTreeMap<RevisionId, ElbArn>, AlbError> {
    let mut groups = BTreeMap::new();
    for (revision, arn) in pairs {
        let revision: RevisionId = revision.parse().map_err(|e: cutover_core::IdError| {
            AlbError::InvalidRevision(revision.clone(), e.to_string())
        })?;
        let arn = ElbArn::parse(&arn, ResourceKind::TargetGroup)?;
        if arn.scope() != anchor.scope() {
            return Err(AlbError::ForeignResource {
                kind: ResourceKind::TargetGroup,
                arn: arn.to_string(),
                anchor: anchor.to_string(),
            });
        }
        if groups.values().any(|a| a == &arn) {
            return Err(AlbError::DuplicateTargetGroup(arn.to_string()));
        }
        if groups.contains_key(&revision) {
            return Err(AlbError::DuplicateRevision(revision));
        }
        groups.insert(revision, arn);
    }
    if groups.is_empty() {
        return Err(AlbError::NoTargetGroups);
    }
    Ok(groups)
}

/// The part of a forward action cutover reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forward {
    /// Target group ARN and weight, in AWS's order.
    groups: Vec<(String, i32)>,
    /// Stickiness: `None` when off, else the duration in seconds.
    sticky: Option<i32>,
}

impl Forward {
    fn of(action: &Action) -> Forward {
        let config = action.forward_config();
        let mut groups: Vec<(String, i32)> = config
            .map(|c| {
                c.target_groups()
                    .iter()
                    .filter_map(|t| {
                        // AWS and moto report an unset weight as 1.
                        t.target_group_arn()
                            .map(|arn| (arn.to_owned(), t.weight().unwrap_or(1)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if groups.is_empty()
            && let Some(arn) = action.target_group_arn()
        {
            groups.push((arn.to_owned(), 1));
        }
        let sticky = config
            .and_then(ForwardActionConfig::target_group_stickiness_config)
            .filter(|s| s.enabled() == Some(true))
            .map(|s| s.duration_seconds().unwrap_or(0));
        Forward { groups, sticky }
    }

    fn weight(&self, arn: &ElbArn) -> i32 {
        self.groups
            .iter()
            .find(|(a, _)| a == arn.as_str())
            .map_or(0, |(_, w)| *w)
    }

    fn set_weight(&mut self, arn: &ElbArn, weight: i32) {
        match self.groups.iter_mut().find(|(a, _)| a == arn.as_str()) {
            Some(entry) => entry.1 = weight,
            None => self.groups.push((arn.to_string(), weight)),
        }
    }

    /// The same groups and weights, in any order, and the same stickiness.
    fn same_as(&self, other: &Forward) -> bool {
        let sorted = |f: &Forward| {
            let mut g = f.groups.clone();
            g.sort();
            g
        };
        sorted(self) == sorted(other) && self.sticky == other.sticky
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (arn, w)) in self.groups.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{arn}={w}")?;
        }
        match self.sticky {
            Some(d) => write!(f, "; sticky {d}s"),
            None => f.write_str("; not sticky"),
        }
    }
}

impl AlbRouter {
    /// A builder using `client` (see [`client_from_env`](crate::client_from_env)).
    pub fn builder(client: Client) -> AlbRouterBuilder {
        AlbRouterBuilder {
            client,
            name: None,
            listener: None,
            rule: None,
            groups: Vec::new(),
        }
    }

    /// The listener or rule this router changes.
    pub fn target(&self) -> &ForwardTarget {
        &self.target
    }

    /// The target group of each revision.
    pub fn target_groups(&self) -> &BTreeMap<RevisionId, ElbArn> {
        &self.groups
    }

    /// The actions of the listener (default actions) or the rule.
    async fn read_actions(&self) -> Result<Vec<Action>, ProviderError> {
        match &self.target {
            ForwardTarget::Listener(arn) => {
                let out = self
                    .client
                    .describe_listeners()
                    .listener_arns(arn.as_str())
                    .send()
                    .await
                    .map_err(|e| classify("DescribeListeners", arn.as_str(), e))?;
                let listener = out.listeners().first().ok_or_else(|| {
                    ProviderError::permanent(format!("listener `{arn}` not found"))
                })?;
                Ok(listener.default_actions().to_vec())
            }
            ForwardTarget::Rule(arn) => {
                let out = self
                    .client
                    .describe_rules()
                    .rule_arns(arn.as_str())
                    .send()
                    .await
                    .map_err(|e| classify("DescribeRules", arn.as_str(), e))?;
                let rule = out.rules().first().ok_or_else(|| {
                    ProviderError::permanent(format!("listener rule `{arn}` not found"))
                })?;
                if rule.is_default() == Some(true) {
                    return Err(ProviderError::permanent(format!(
                        "listener rule `{arn}` is its listener's default rule; give the listener instead"
                    )));
                }
                Ok(rule.actions().to_vec())
            }
        }
    }

    async fn write_actions(&self, actions: Vec<Action>) -> Result<(), ProviderError> {
        match &self.target {
            ForwardTarget::Listener(arn) => self
                .client
                .modify_listener()
                .listener_arn(arn.as_str())
                .set_default_actions(Some(actions))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("ModifyListener", arn.as_str(), e)),
            ForwardTarget::Rule(arn) => self
                .client
                .modify_rule()
                .rule_arn(arn.as_str())
                .set_actions(Some(actions))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("ModifyRule", arn.as_str(), e)),
        }
    }

    /// The index of the single forward action, and its target groups and stickiness.
    fn forward(&self, actions: &[Action]) -> Result<(usize, Forward), ProviderError> {
        let forwards: Vec<usize> = actions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.r#type() == Some(&ActionTypeEnum::Forward))
            .map(|(i, _)| i)
            .collect();
        match forwards.as_slice() {
            [i] => Ok((*i, Forward::of(&actions[*i]))),
            [] => Err(ProviderError::permanent(format!(
                "{} has no forward action",
                self.target
            ))),
            _ => Err(ProviderError::permanent(format!(
                "{} has {} forward actions; cutover needs exactly one",
                self.target,
                forwards.len()
            ))),
        }
    }

    /// Read, change the forward action with `change`, check, write, read back and compare.
    async fn update(
        &self,
        operation: &str,
        change: impl FnOnce(&mut Forward),
    ) -> Result<(), ProviderError> {
        let mut actions = self.read_actions().await?;
        let (index, current) = self.forward(&actions)?;
        let mut wanted = current.clone();
        change(&mut wanted);
        if wanted.same_as(&current) {
            tracing::debug!(router = %self.name, "{operation}: already in place");
            return Ok(());
        }
        self.check(&wanted)?;
        actions[index] = forward_action(&actions[index], &wanted);
        tracing::debug!(router = %self.name, target = %self.target, forward = %wanted, "{operation}");
        self.write_actions(actions).await?;
        let read = self.read_actions().await?;
        let (_, got) = self.forward(&read)?;
        if !got.same_as(&wanted) {
            return Err(ProviderError::transient(format!(
                "{} after {operation}: wrote {wanted}, AWS reports {got}",
                self.target
            )));
        }
        Ok(())
    }

    /// What AWS would reject (moto accepts it), refused before the write.
    fn check(&self, forward: &Forward) -> Result<(), ProviderError> {
        if forward.groups.len() > MAX_TARGET_GROUPS {
            return Err(ProviderError::permanent(format!(
                "{} would forward to {} target groups; AWS allows {MAX_TARGET_GROUPS}",
                self.target,
                forward.groups.len()
            )));
        }
        if let Some((arn, w)) = forward
            .groups
            .iter()
            .find(|(_, w)| !(0..=MAX_WEIGHT).contains(w))
        {
            return Err(ProviderError::permanent(format!(
                "{}: target group `{arn}` has weight {w}, outside the 0..=999 AWS accepts",
                self.target
            )));
        }
        if forward.groups.iter().all(|(_, w)| *w == 0) {
            return Err(ProviderError::permanent(format!(
                "{}: every target group would have weight 0",
                self.target
            )));
        }
        if let Some(d) = forward.sticky
            && !(1..=604_800).contains(&d)
        {
            return Err(ProviderError::permanent(format!(
                "{}: stickiness of {d} s is outside the 1..=604800 s AWS accepts",
                self.target
            )));
        }
        Ok(())
    }
}

/// `original` with its forward config replaced by `forward`; its order is kept.
fn forward_action(original: &Action, forward: &Forward) -> Action {
    let tuples = forward
        .groups
        .iter()
        .map(|(arn, w)| {
            TargetGroupTuple::builder()
                .target_group_arn(arn)
                .weight(*w)
                .build()
        })
        .collect();
    let sticky = match forward.sticky {
        Some(d) => TargetGroupStickinessConfig::builder()
            .enabled(true)
            .duration_seconds(d)
            .build(),
        None => TargetGroupStickinessConfig::builder()
            .enabled(false)
            .build(),
    };
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .set_order(original.order())
        .forward_config(
            ForwardActionConfig::builder()
                .set_target_groups(Some(tuples))
                .target_group_stickiness_config(sticky)
                .build(),
        )
        .build()
}

#[async_trait]
impl TrafficRouter for AlbRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(weights::granularity())
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        if let Some((revision, _)) = split.iter().find(|(r, _)| !self.groups.contains_key(*r)) {
            return Err(ProviderError::permanent(format!(
                "router `{}` has no target group for revision `{revision}`",
                self.name
            )));
        }
        let alb = weights::to_alb(split)?;
        let weight_of = |revision: &RevisionId| {
            alb.iter()
                .find(|(r, _)| r == revision)
                .map_or(0, |(_, w)| *w)
        };
        self.update("set split", |forward| {
            for (revision, arn) in &self.groups {
                forward.set_weight(arn, weight_of(revision));
            }
        })
        .await
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        let actions = self.read_actions().await?;
        let (_, forward) = self.forward(&actions)?;
        let managed: Vec<(RevisionId, i32)> = self
            .groups
            .iter()
            .map(|(revision, arn)| (revision.clone(), forward.weight(arn)))
            .collect();
        weights::from_alb(&managed, &format!("forward action of {}", self.target)).map(Some)
    }

    async fn set_sticky_sessions(
        &self,
        sticky: Option<StickySession>,
    ) -> Result<(), ProviderError> {
        let seconds = match &sticky {
            None => None,
            Some(StickySession {
                cookie: Some(cookie),
                ..
            }) => {
                return Err(ProviderError::unsupported(format!(
                    "sticky sessions on a named cookie (`{cookie}`; ALB pins target groups with its own AWSALBTG cookie)"
                )));
            }
            Some(StickySession { duration, .. }) => {
                let secs = duration.as_secs();
                if duration.subsec_nanos() != 0 || !(1..=MAX_STICKINESS_SECS).contains(&secs) {
                    return Err(ProviderError::permanent(format!(
                        "{}: stickiness must be whole seconds in 1..=604800, got {duration:?}",
                        self.target
                    )));
                }
                Some(i32::try_from(secs).unwrap_or(i32::MAX))
            }
        };
        self.update("set sticky sessions", |forward| forward.sticky = seconds)
            .await
    }
}

/// Leaves the client out: its configuration is no business of logs.
impl std::fmt::Debug for AlbRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlbRouter")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}
