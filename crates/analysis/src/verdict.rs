use std::fmt;

use serde::{Deserialize, Serialize};

/// The answer of an analysis: did the candidate do well enough?
///
/// `Inconclusive` means the analysis could not tell (too little data, no data, a marginal
/// score). It is never treated as a pass: a rollout waits, extends or stops on it, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The candidate met every criterion.
    Pass,
    /// The candidate was measured and found worse than allowed.
    Fail,
    /// The data did not support either conclusion.
    Inconclusive,
}

impl Verdict {
    /// Combines verdicts of independent checks that must all pass: any `Fail` fails, otherwise
    /// any `Inconclusive` makes the whole inconclusive, otherwise it passes. An empty set of
    /// checks is `Inconclusive`: nothing was shown to be good.
    ///
    /// ```
    /// use cutover_analysis::Verdict;
    /// assert_eq!(Verdict::all([Verdict::Pass, Verdict::Inconclusive]), Verdict::Inconclusive);
    /// assert_eq!(Verdict::all([Verdict::Inconclusive, Verdict::Fail]), Verdict::Fail);
    /// assert_eq!(Verdict::all([]), Verdict::Inconclusive);
    /// ```
    pub fn all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut any = false;
        let mut inconclusive = false;
        for verdict in verdicts {
            any = true;
            match verdict {
                Verdict::Fail => return Verdict::Fail,
                Verdict::Inconclusive => inconclusive = true,
                Verdict::Pass => {}
            }
        }
        if !any || inconclusive {
            Verdict::Inconclusive
        } else {
            Verdict::Pass
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        })
    }
}
