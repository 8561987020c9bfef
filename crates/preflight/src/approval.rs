//! People: an approval through the store, and attestations written in the checklist.

use async_trait::async_trait;
use cutover_core::Timestamp;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::Deserialize;

/// Someone approved the gate through the rollout's store (`cutover approve ROLLOUT GATE`, or
/// [`RolloutHandle::approve`](cutover_core::RolloutHandle::approve)); pending until then,
/// failed if rejected. The gate is the checklist's own unless `gate` names another.
///
/// ```yaml
/// approval: { gate: preflight }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ApprovalCheck {
    gate: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalParams {
    #[serde(default)]
    gate: Option<String>,
}

impl ApprovalCheck {
    /// Waits for an approval of the checklist's gate.
    pub fn new() -> Self {
        ApprovalCheck::default()
    }

    #[allow(clippy::unnecessary_wraps)] // the registry's factory signature
    pub(crate) fn from_params(p: ApprovalParams) -> Result<Self, (String, String)> {
        Ok(ApprovalCheck { gate: p.gate })
    }
}

#[async_trait]
impl Check for ApprovalCheck {
    async fn run(&self, ctx: &CheckContext) -> CheckResult {
        let gate = self.gate.as_deref().unwrap_or(&ctx.checklist);
        match ctx.approvals.get(gate) {
            Some(a) if a.approved => CheckResult::pass(format!("approved by {} at {}", a.by, a.at))
                .evidence("by", &a.by)
                .evidence("reason", &a.reason),
            Some(a) => CheckResult::fail(format!("rejected by {}: {}", a.by, a.reason))
                .hint("address the reviewer's reason and ask again")
                .evidence("by", &a.by),
            None => CheckResult::pending(format!("waiting for someone to approve `{gate}`")).hint(
                match &ctx.rollout {
                    Some(r) => format!("cutover approve {r} {gate}"),
                    None => format!("approve gate `{gate}` on the rollout"),
                },
            ),
        }
    }
}

/// A manual item a person confirmed, recorded in the checklist itself: who and when. Missing,
/// or older than `max_age`, it fails with the item's `instructions` as the hint.
///
/// ```yaml
/// attestation: { confirmed_by: alice, confirmed_at: 2026-12-01T10:00:00Z, max_age: 30d,
///                instructions: "walk through the runbook with on-call" }
/// ```
#[derive(Debug, Clone)]
pub struct AttestationCheck {
    confirmed_by: Option<String>,
    confirmed_at: Option<Timestamp>,
    max_age: Option<std::time::Duration>,
    instructions: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttestationParams {
    #[serde(default)]
    confirmed_by: Option<String>,
    #[serde(default)]
    confirmed_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "crate::duration")]
    max_age: Option<std::time::Duration>,
    #[serde(default)]
    instructions: String,
}

impl AttestationCheck {
    pub(crate) fn from_params(p: AttestationParams) -> Result<Self, (String, String)> {
        if p.confirmed_by.is_some() != p.confirmed_at.is_some() {
            return Err((
                if p.confirmed_by.is_some() {
                    "confirmed_at"
                } else {
                    "confirmed_by"
                }
                .into(),
                "an attestation needs both `confirmed_by` and `confirmed_at`".into(),
            ));
        }
        Ok(AttestationCheck {
            confirmed_by: p.confirmed_by,
            confirmed_at: p.confirmed_at,
            max_age: p.max_age,
            instructions: p.instructions,
        })
    }
}

#[async_trait]
impl Check for AttestationCheck {
    async fn run(&self, ctx: &CheckContext) -> CheckResult {
        let hint = if self.instructions.is_empty() {
            "do it, then set `confirmed_by` and `confirmed_at` in the checklist".to_owned()
        } else {
            format!(
                "{}; then set `confirmed_by` and `confirmed_at` in the checklist",
                self.instructions
            )
        };
        let (Some(by), Some(at)) = (&self.confirmed_by, self.confirmed_at) else {
            return CheckResult::fail("not confirmed by anyone yet").hint(hint);
        };
        let age = ctx.now.saturating_since(at);
        if let Some(max) = self.max_age
            && age > max
        {
            return CheckResult::fail(format!(
                "confirmed by {by} at {at}, {} ago: older than {}",
                humantime::format_duration(std::time::Duration::from_secs(age.as_secs())),
                humantime::format_duration(max)
            ))
            .hint(hint)
            .evidence("confirmed_by", by)
            .evidence("confirmed_at", at);
        }
        CheckResult::pass(format!("confirmed by {by} at {at}"))
            .evidence("confirmed_by", by)
            .evidence("confirmed_at", at)
    }
}
