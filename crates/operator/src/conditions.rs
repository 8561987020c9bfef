//! A Rollout's conditions, from its phase, in the shape of Kubernetes conditions:
//!
//! - `Ready`: `True` once the candidate serves all traffic (`Promoted`).
//! - `Progressing`: `True` while the engine moves the rollout on (`Pending`, `PreFlight`,
//!   `Expanding`, `Progressing`, `Promoting`, `RollingBack`); `False` when paused, finished,
//!   invalid or stalled.
//! - `Degraded`: `True` when the rollout cannot reach its goal without someone acting: the
//!   spec is `Invalid`, the rollout `Failed`, was `Refused` or `RolledBack` by its analysis,
//!   or it is `Stalled` (its engine cannot start on this replica). An `Aborted` rollout was
//!   stopped on purpose: not degraded.
//!
//! The reason of each is the phase (or `Stalled`, `AsExpected`), its message the status's
//! message. `lastTransitionTime` changes only when a condition's `status` does.

use crate::crd::{Condition, RolloutStatus};

/// The condition types, in the order they are written.
pub const TYPES: [&str; 3] = ["Ready", "Progressing", "Degraded"];

/// The conditions for `status` (its phase and message), given whether its engine is
/// `stalled`, keeping the transition times of `previous` whose status did not change; `now`
/// (RFC 3339) for those that did.
pub fn conditions(
    status: &RolloutStatus,
    stalled: bool,
    generation: Option<i64>,
    previous: &[Condition],
    now: &str,
) -> Vec<Condition> {
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let moving = matches!(
        phase,
        "Pending" | "PreFlight" | "Expanding" | "Progressing" | "Promoting" | "RollingBack"
    );
    let degraded = matches!(phase, "Invalid" | "Failed" | "Refused" | "RolledBack");
    let stuck = stalled && moving;
    let reason = if stuck { "Stalled" } else { phase };
    let states = [
        (phase == "Promoted", reason),
        (moving && !stalled, reason),
        (
            degraded || stuck,
            if degraded || stuck {
                reason
            } else {
                "AsExpected"
            },
        ),
    ];
    TYPES
        .iter()
        .zip(states)
        .map(|(type_, (true_, reason))| {
            let value = if true_ { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == *type_ && c.status == value)
                .map_or(now, |c| c.last_transition_time.as_str());
            Condition {
                type_: (*type_).to_owned(),
                status: value.to_owned(),
                reason: reason.to_owned(),
                message: status.message.clone().unwrap_or_default(),
                last_transition_time: since.to_owned(),
                observed_generation: generation,
            }
        })
        .collect()
}

/// The condition of `type_` in `status`, if set.
pub fn get<'a>(status: &'a RolloutStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: &str) -> RolloutStatus {
        RolloutStatus {
            phase: Some(phase.into()),
            message: Some("the latest decision".into()),
            ..RolloutStatus::default()
        }
    }

    fn summary(conditions: &[Condition]) -> Vec<(String, String, String)> {
        conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect()
    }

    fn row(type_: &str, status: &str, reason: &str) -> (String, String, String) {
        (type_.into(), status.into(), reason.into())
    }

    #[test]
    fn each_phase_sets_the_conditions_it_should() {
        let at = "2026-12-04T12:00:00.000Z";
        let of = |phase: &str, stalled: bool| {
            summary(&conditions(&status(phase), stalled, Some(3), &[], at))
        };
        assert_eq!(
            of("Progressing", false),
            [
                row("Ready", "False", "Progressing"),
                row("Progressing", "True", "Progressing"),
                row("Degraded", "False", "AsExpected"),
            ]
        );
        assert_eq!(
            of("Progressing", true),
            [
                row("Ready", "False", "Stalled"),
                row("Progressing", "False", "Stalled"),
                row("Degraded", "True", "Stalled"),
            ]
        );
        assert_eq!(
            of("Promoted", false),
            [
                row("Ready", "True", "Promoted"),
                row("Progressing", "False", "Promoted"),
                row("Degraded", "False", "AsExpected"),
            ]
        );
        assert_eq!(
            of("Invalid", false),
            [
                row("Ready", "False", "Invalid"),
                row("Progressing", "False", "Invalid"),
                row("Degraded", "True", "Invalid"),
            ]
        );
        assert_eq!(
            of("Paused", false)[1],
            row("Progressing", "False", "Paused")
        );
        assert_eq!(
            of("Aborted", false)[2],
            row("Degraded", "False", "AsExpected")
        );
        assert_eq!(
            of("RolledBack", false)[2],
            row("Degraded", "True", "RolledBack")
        );
        let one = conditions(&status("Paused"), false, Some(3), &[], at);
        assert!(one.iter().all(|c| c.observed_generation == Some(3)
            && c.message == "the latest decision"
            && c.last_transition_time == at));
    }

    #[test]
    fn transition_times_change_only_with_the_status() {
        let t0 = "2026-12-04T12:00:00.000Z";
        let t1 = "2026-12-04T12:00:05.000Z";
        let before = conditions(&status("Progressing"), false, Some(1), &[], t0);
        let paused = conditions(&status("Paused"), false, Some(1), &before, t1);
        let times: Vec<&str> = paused
            .iter()
            .map(|c| c.last_transition_time.as_str())
            .collect();
        // Ready stays False, Progressing turns False, Degraded stays False.
        assert_eq!(times, [t0, t1, t0]);
    }
}
