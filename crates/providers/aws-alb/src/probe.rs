//! [`TargetHealthProbe`]: the health of a revision from `DescribeTargetHealth` of its target
//! group.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetHealthDescription, TargetHealthReasonEnum as Reason,
    TargetHealthStateEnum as State,
};
use cutover_core::{Health, HealthProbe, ProviderError, RevisionId};

use crate::arn::{ElbArn, ResourceKind};
use crate::router::target_groups;
use crate::{AlbError, classify};

/// What one target's health means for its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetState {
    /// `healthy`.
    Healthy,
    /// Registered, not healthy yet, may still become so: `initial`, `unused` with
    /// `Target.NotInUse`, `unhealthy` with `Elb.InternalError`, unknown states.
    Starting(String),
    /// Registered and failing: `unhealthy` (failed checks, wrong codes, timeouts), `unused`
    /// with `Target.InvalidState` or `Target.IpUnusable`, `unavailable` (health checks off).
    Failed(String),
    /// Being deregistered: `draining`, `unhealthy.draining`.
    Leaving,
    /// Not registered (`Target.NotRegistered`, in any state).
    Absent,
}

/// Classifies one target (see [`TargetHealthProbe`] for the table).
pub(crate) fn target_state(description: &TargetHealthDescription) -> TargetState {
    let health = description.target_health();
    let state = health.and_then(|h| h.state());
    let reason = health.and_then(|h| h.reason());
    let detail = || {
        let mut s = state.map_or("unknown", State::as_str).to_owned();
        if let Some(r) = reason {
            let _ = write!(s, " ({})", r.as_str());
        }
        if let Some(d) = health.and_then(|h| h.description()) {
            let _ = write!(s, ": {d}");
        }
        s
    };
    if reason == Some(&Reason::NotRegistered) {
        return TargetState::Absent;
    }
    match state {
        Some(State::Healthy) => TargetState::Healthy,
        Some(State::Draining | State::UnhealthyDraining) => TargetState::Leaving,
        Some(State::Unhealthy) if reason == Some(&Reason::InternalError) => {
            TargetState::Starting(detail())
        }
        Some(State::Unhealthy | State::Unavailable) => TargetState::Failed(detail()),
        Some(State::Unused)
            if matches!(reason, Some(Reason::InvalidState | Reason::IpUnusable)) =>
        {
            TargetState::Failed(detail())
        }
        _ => TargetState::Starting(detail()),
    }
}

/// The id and port of a target, for messages.
pub(crate) fn target_label(description: &TargetHealthDescription) -> String {
    let target = description.target();
    let id = target.and_then(|t| t.id()).unwrap_or("?");
    match target.and_then(TargetDescription::port) {
        Some(port) => format!("{id}:{port}"),
        None => id.to_owned(),
    }
}

/// The health of a target group from its targets' health.
pub(crate) fn group_health(group: &ElbArn, targets: &[TargetHealthDescription]) -> Health {
    let mut healthy = 0;
    let mut starting = Vec::new();
    let mut failed = Vec::new();
    let mut leaving = 0;
    for t in targets {
        match target_state(t) {
            TargetState::Healthy => healthy += 1,
            TargetState::Starting(d) => starting.push(format!("{} {d}", target_label(t))),
            TargetState::Failed(d) => failed.push(format!("{} {d}", target_label(t))),
            TargetState::Leaving => leaving += 1,
            TargetState::Absent => {}
        }
    }
    let total = healthy + starting.len() + failed.len();
    if !failed.is_empty() {
        return Health::failed(format!(
            "target group `{group}`: {}/{total} targets failing: {}",
            failed.len(),
            failed.join("; ")
        ));
    }
    if total == 0 {
        return Health::progressing(format!(
            "target group `{group}` has no registered targets ({leaving} draining)"
        ));
    }
    if starting.is_empty() {
        return Health::Ready;
    }
    Health::progressing(format!(
        "target group `{group}`: {healthy}/{total} targets healthy; {}",
        starting.join("; ")
    ))
}

/// Whether each revision's target group is healthy, from `DescribeTargetHealth`.
///
/// | target state (reason) | counts as |
/// |---|---|
/// | `healthy` | healthy |
/// | `initial` (`Elb.RegistrationInProgress`, `Elb.InitialHealthChecking`) | starting |
/// | `unhealthy` (`Elb.InternalError`) | starting: the load balancer's fault, may pass |
/// | `unhealthy` (`Target.FailedHealthChecks`, `Target.ResponseCodeMismatch`, `Target.Timeout`, ...) | failing |
/// | `unavailable` (`Target.HealthCheckDisabled`) | failing: health cannot be known |
/// | `unused` (`Target.InvalidState`, `Target.IpUnusable`) | failing |
/// | `unused` (`Target.NotInUse`): the group is not behind a listener yet | starting |
/// | `draining`, `unhealthy.draining` | left out: being deregistered |
/// | any state with `Target.NotRegistered` | left out |
///
/// The revision is [`Health::Failed`] if any target is failing (the reasons are in the
/// message), [`Health::Ready`] if every counted target is healthy and there is at least one,
/// and [`Health::Progressing`] otherwise (with the reason codes of the targets not yet healthy).
#[derive(Clone)]
pub struct TargetHealthProbe {
    client: Client,
    name: String,
    groups: BTreeMap<RevisionId, ElbArn>,
}

impl TargetHealthProbe {
    /// A probe over the target group of each revision: `(revision, target group ARN)` pairs.
    /// The ARNs are checked here, before any call.
    pub fn new<R: Into<String>, A: Into<String>>(
        client: Client,
        groups: impl IntoIterator<Item = (R, A)>,
    ) -> Result<Self, AlbError> {
        let pairs: Vec<(String, String)> = groups
            .into_iter()
            .map(|(r, a)| (r.into(), a.into()))
            .collect();
        let anchor = pairs.first().ok_or(AlbError::NoTargetGroups)?;
        let anchor = ElbArn::parse(&anchor.1, ResourceKind::TargetGroup)?;
        Ok(TargetHealthProbe {
            client,
            name: "alb/target-health".to_owned(),
            groups: target_groups(&anchor, pairs)?,
        })
    }

    /// Sets the name in records and spans (default `alb/target-health`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

#[async_trait]
impl HealthProbe for TargetHealthProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, revision: &RevisionId) -> Result<Health, ProviderError> {
        let group = self.groups.get(revision).ok_or_else(|| {
            ProviderError::permanent(format!(
                "probe `{}` has no target group for revision `{revision}`",
                self.name
            ))
        })?;
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(group.as_str())
            .send()
            .await
            .map_err(|e| classify("DescribeTargetHealth", group.as_str(), e))?;
        Ok(group_health(group, out.target_health_descriptions()))
    }
}

/// Leaves the client out: its configuration is no business of logs.
impl std::fmt::Debug for TargetHealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetHealthProbe")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::types::TargetHealth;

    use super::*;

    fn target(id: &str, state: State, reason: Option<Reason>) -> TargetHealthDescription {
        TargetHealthDescription::builder()
            .target(TargetDescription::builder().id(id).port(80).build())
            .target_health(
                TargetHealth::builder()
                    .state(state)
                    .set_reason(reason)
                    .description("from AWS")
                    .build(),
            )
            .build()
    }

    fn group() -> ElbArn {
        ElbArn::parse(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/1a2b",
            ResourceKind::TargetGroup,
        )
        .unwrap()
    }

    #[test]
    fn maps_every_state() {
        let h = |ts: Vec<TargetHealthDescription>| group_health(&group(), &ts);
        assert_eq!(
            h(vec![target("10.0.0.1", State::Healthy, None)]),
            Health::Ready
        );
        let progressing = h(vec![
            target("10.0.0.1", State::Healthy, None),
            target(
                "10.0.0.2",
                State::Initial,
                Some(Reason::InitialHealthChecking),
            ),
        ]);
        let Health::Progressing { detail } = progressing else {
            panic!("{progressing}")
        };
        assert!(detail.contains("1/2 targets healthy"), "{detail}");
        assert!(
            detail.contains("10.0.0.2:80 initial (Elb.InitialHealthChecking)"),
            "{detail}"
        );

        let failed = h(vec![
            target("10.0.0.1", State::Healthy, None),
            target(
                "10.0.0.3",
                State::Unhealthy,
                Some(Reason::ResponseCodeMismatch),
            ),
        ]);
        let Health::Failed { reason } = failed else {
            panic!("{failed}")
        };
        assert!(reason.contains("1/2 targets failing"), "{reason}");
        assert!(reason.contains("Target.ResponseCodeMismatch"), "{reason}");

        for (state, reason) in [
            (State::Unavailable, Some(Reason::HealthCheckDisabled)),
            (State::Unused, Some(Reason::InvalidState)),
            (State::Unused, Some(Reason::IpUnusable)),
            (State::Unhealthy, Some(Reason::Timeout)),
        ] {
            assert!(matches!(
                h(vec![target("i-1", state, reason)]),
                Health::Failed { .. }
            ));
        }
        for (state, reason) in [
            (State::Unhealthy, Some(Reason::InternalError)),
            (State::Unused, Some(Reason::NotInUse)),
            (State::Initial, Some(Reason::RegistrationInProgress)),
        ] {
            assert!(matches!(
                h(vec![target("i-1", state, reason)]),
                Health::Progressing { .. }
            ));
        }
        // Draining and unregistered targets are left out.
        assert_eq!(
            h(vec![
                target("10.0.0.1", State::Healthy, None),
                target(
                    "10.0.0.4",
                    State::Draining,
                    Some(Reason::DeregistrationInProgress)
                ),
                target("10.0.0.5", State::UnhealthyDraining, None),
                target("10.0.0.6", State::Unused, Some(Reason::NotRegistered)),
            ]),
            Health::Ready
        );
        let empty = h(vec![target("10.0.0.4", State::Draining, None)]);
        assert!(
            matches!(&empty, Health::Progressing { detail } if detail.contains("no registered targets (1 draining)")),
            "{empty}"
        );
    }
}
