//! Commands through annotations: `cutover.dev/command: promote` (or `pause`, `resume`,
//! `abort`), with an optional reason after a colon (`abort: p99 too high`) and who asks in
//! `cutover.dev/by`. The operator removes the annotations, then queues the command in the
//! rollout's inbox in the store, exactly as `cutover promote ID` does.

use std::collections::BTreeMap;

use cutover::{Clock as _, Command, CommandRequest, RolloutId, StateStore, TokioClock};

use crate::Error;

/// The annotation that carries a command.
pub const COMMAND: &str = "cutover.dev/command";

/// The annotation that says who sends it (default: `kubernetes`).
pub const BY: &str = "cutover.dev/by";

/// A command read from the annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotated {
    /// The command.
    pub command: Command,
    /// Why, if given.
    pub reason: Option<String>,
    /// Who.
    pub by: String,
}

/// The command in `annotations`: `None` without [`COMMAND`], an error naming the annotation
/// when its value is not a command.
pub fn parse(annotations: &BTreeMap<String, String>) -> Option<Result<Annotated, Error>> {
    let value = annotations.get(COMMAND)?;
    let (name, reason) = match value.split_once(':') {
        Some((name, reason)) => (name.trim(), Some(reason.trim().to_owned())),
        None => (value.trim(), None),
    };
    let command = match name {
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "promote" => Command::Promote,
        "abort" => Command::Abort,
        other => {
            return Some(Err(Error::InvalidSpec(format!(
                "annotation {COMMAND}: `{other}` is not one of pause, resume, promote, abort"
            ))));
        }
    };
    let by = annotations
        .get(BY)
        .map_or("kubernetes", String::as_str)
        .to_owned();
    Some(Ok(Annotated {
        command,
        reason: reason.filter(|r| !r.is_empty()),
        by,
    }))
}

/// Queues `command` for rollout `id` in `store`.
pub async fn send(
    store: &dyn StateStore,
    id: &RolloutId,
    command: &Annotated,
) -> Result<(), Error> {
    let mut request = CommandRequest::new(command.command, command.by.clone());
    if let Some(reason) = &command.reason {
        request = request.reason(reason.clone());
    }
    store
        .send(id, &request, TokioClock::new().now())
        .await
        .map(|_| ())
        .map_err(|e| Error::Store(format!("cannot queue {}: {e}", command.command)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn commands_parse_with_reason_and_author() {
        assert_eq!(
            parse(&annotations(&[("other", "x")])).map(|r| r.is_ok()),
            None
        );
        let abort = parse(&annotations(&[
            (COMMAND, "abort: p99 too high"),
            (BY, "alice"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            abort,
            Annotated {
                command: Command::Abort,
                reason: Some("p99 too high".into()),
                by: "alice".into()
            }
        );
        let promote = parse(&annotations(&[(COMMAND, " promote ")]))
            .unwrap()
            .unwrap();
        assert_eq!(promote.command, Command::Promote);
        assert_eq!(promote.reason, None);
        assert_eq!(promote.by, "kubernetes");
        let bad = parse(&annotations(&[(COMMAND, "launch")]))
            .unwrap()
            .unwrap_err();
        assert!(bad.to_string().contains("`launch` is not one of"), "{bad}");
    }
}
