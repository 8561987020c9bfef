//! The pure planner: `decide(setup, state, observation) -> Decision`, with no I/O and no clock.
//!
//! Every strategy compiles into a list of [steps](Setup::step_kinds) that one generic planner
//! walks. Around the steps sit the phases every rollout shares: pre-flight gates, expand
//! migrations, promotion (switch, post-promotion analysis, scale-down, bake, contract) and
//! rollback (traffic to stable, routes removed, candidate scaled down, expand reverted).
//!
//! The engine carries out each [`Decision`], then folds its result into the state with
//! [`apply_decision`], [`apply_result`] and [`apply_command`], which are pure too. Because the
//! planner reads only the state and the time, a fresh engine given the stored state continues
//! exactly where the last one stopped.

pub(crate) mod fold;
mod phases;
mod steps;
mod wait;

pub use self::fold::{apply_command, apply_decision, apply_result};
pub use crate::action::{Action, ActionResult, Decision, Slot};
pub use crate::command::{Command, CommandEffect};
pub use crate::setup::{GateInfo, MigrationInfo, Setup};
use crate::state::RolloutState;
use crate::status::Phase;
use crate::{GateStage, Timestamp};

/// What the planner is told besides the state: the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Now.
    pub now: Timestamp,
}

/// Decides the next thing to do. Pure: the same setup, state and time always give the same
/// decision.
///
/// An effect the state shows as pending is not re-decided here: the engine carries it out first.
pub fn decide(setup: &Setup, state: &RolloutState, observation: &Observation) -> Decision {
    let now = observation.now;
    match state.phase {
        Phase::PreFlight => {
            phases::gates(setup, state, now, GateStage::PreFlight).unwrap_or(Decision::Advance)
        }
        Phase::Expanding => phases::expand(setup, state),
        Phase::Progressing => steps::progressing(setup, state, now),
        Phase::Promoting => phases::promoting(setup, state, now),
        Phase::RollingBack => phases::rolling_back(setup, state, now),
        Phase::Done => Decision::Wait(None),
    }
}
