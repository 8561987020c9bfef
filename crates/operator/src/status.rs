//! The status of a Rollout, read from the state store: what `cutover status ID` shows, in the
//! shape of the CRD's `status`.

use cutover::state::{Final, Phase};
use cutover::{Outcome, RolloutId, StateStore, Summary};

use crate::Error;
use crate::crd::RolloutStatus;

/// The status of rollout `id` as the store has it: `None` while nothing is stored yet.
pub async fn from_store(
    store: &dyn StateStore,
    id: &RolloutId,
) -> Result<Option<RolloutStatus>, Error> {
    let failed = |e: cutover::StoreError| Error::Store(e.to_string());
    let Some(stored) = store.load(id).await.map_err(failed)? else {
        return Ok(None);
    };
    let lease = store.lease(id).await.map_err(failed)?;
    let last = stored.state.last_seq;
    let latest = store
        .records(id, last.saturating_sub(1), 1)
        .await
        .map_err(failed)?;
    let summary = Summary::of(&stored.state, stored.version, lease);
    Ok(Some(RolloutStatus {
        rollout_id: Some(id.to_string()),
        phase: Some(phase(&summary).to_owned()),
        step: (summary.outcome.is_none()).then(|| {
            format!(
                "{}/{} {}",
                summary.step,
                summary.steps,
                summary.step_kind.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_owned()
        }),
        candidate_weight: summary
            .split
            .as_ref()
            .map(|s| s.weight(&summary.revisions.candidate).to_string()),
        owner: summary.lease.as_ref().map(|l| l.owner.clone()),
        message: latest.last().map(|r| r.summary.clone()),
        observed_generation: None,
        last_command: None,
        conditions: Vec::new(),
    }))
}

/// The CRD's phase for a summary.
fn phase(summary: &Summary) -> &'static str {
    match &summary.outcome {
        Some(Final::Outcome(Outcome::Promoted)) => "Promoted",
        Some(Final::Outcome(Outcome::RolledBack(_))) => "RolledBack",
        Some(Final::Outcome(Outcome::Aborted { .. })) => "Aborted",
        Some(Final::Outcome(Outcome::Refused { .. })) => "Refused",
        Some(Final::Outcome(_)) => "Concluded",
        Some(Final::Failed { .. }) => "Failed",
        None if summary.paused.is_some() => "Paused",
        None => match summary.phase {
            Phase::PreFlight => "PreFlight",
            Phase::Expanding => "Expanding",
            Phase::Promoting => "Promoting",
            Phase::RollingBack => "RollingBack",
            Phase::Done => "Done",
            Phase::Progressing => "Progressing",
        },
    }
}

/// Whether a phase is final: the engine has nothing left to do.
pub fn is_final(phase: Option<&str>) -> bool {
    matches!(
        phase,
        Some("Promoted" | "RolledBack" | "Aborted" | "Concluded" | "Failed" | "Done")
    )
}
