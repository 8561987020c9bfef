//! `cutover check`: a pre-flight checklist from YAML with the built-in checks of
//! cutover-preflight, run once; its report as a table, JSON or YAML.

use std::sync::Arc;

use cutover::StateStore;

use crate::cli::CheckArgs;
use crate::exit::{Exit, Failure};

/// Runs `check`: exit 0 when nothing blocks, 1 when a required check failed, erred or waits
/// for an approval.
#[cfg(feature = "preflight")]
pub(crate) async fn check(
    args: &CheckArgs,
    store: Option<Arc<dyn StateStore>>,
) -> Result<Exit, Failure> {
    use cutover::checklist::CheckContext;

    use crate::cli::Format;
    use crate::exit::store_error;
    use crate::run::parse_id;
    use crate::status::{json, yaml};

    let checklist = read(&args.file)?;
    let ctx = match (&args.rollout, store) {
        (Some(id), Some(store)) => {
            let id = parse_id(id)?;
            let Some(stored) = store.load(&id).await.map_err(|e| store_error(&e))? else {
                return Err(Failure::store(format!(
                    "no rollout `{id}` in {}; `cutover status` lists them",
                    store.name()
                )));
            };
            let state = stored.state;
            CheckContext::for_rollout(id, state.setup.revisions.clone())
                .with_approvals(state.approvals)
        }
        _ => CheckContext::default(),
    };
    let report = checklist.run(&ctx).await;
    let text = match args.output {
        Format::Table => report.table(),
        Format::Json => json(&report)?,
        Format::Yaml => yaml(&report)?,
    };
    print!("{text}");
    Ok(if report.passed() {
        Exit::Ok
    } else {
        Exit::NotPromoted
    })
}

/// Without the `preflight` feature there are no checks to run.
#[cfg(not(feature = "preflight"))]
pub(crate) async fn check(
    _args: &CheckArgs,
    _store: Option<Arc<dyn StateStore>>,
) -> Result<Exit, Failure> {
    Err(Failure::invalid(
        "`cutover check` needs the `preflight` feature, which this build of cutover lacks \
         (cargo install --path crates/cli --features preflight)",
    ))
}

/// Reads the checklist at `path`; errors name the file and the field at fault.
#[cfg(feature = "preflight")]
fn read(path: &std::path::Path) -> Result<cutover::Checklist, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", path.display())))?;
    cutover::preflight::load_yaml(&text)
        .map_err(|e| Failure::invalid(format!("{}: {e}", path.display())))
}
