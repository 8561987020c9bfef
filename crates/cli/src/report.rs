//! `cutover report`: a rollout's HTML report (the report of cutover-dashboard), read from the
//! store: its stored state and its whole decision log.

use std::path::Path;
use std::sync::Arc;

use cutover::StateStore;

use crate::cli::ReportArgs;
use crate::exit::{Exit, Failure};

/// Runs `report`: writes the report to `--output`, or to standard output.
#[cfg(feature = "dashboard")]
pub(crate) async fn report(args: &ReportArgs, store: Arc<dyn StateStore>) -> Result<Exit, Failure> {
    use cutover::StoreError;
    use cutover::dashboard::{Report, load};

    use crate::exit::{chain, store_error};
    use crate::run::parse_id;

    let id = parse_id(&args.id)?;
    let (state, records) = load(store.as_ref(), &id).await.map_err(|e| match e {
        StoreError::UnknownRollout { .. } => Failure::store(format!(
            "{}; `cutover status` lists the rollouts",
            chain(&e)
        )),
        e => store_error(&e),
    })?;
    let html = Report::new(&records).state(&state).id(id.as_str()).render();
    match output(args) {
        None => {
            print!("{html}");
            Ok(Exit::Ok)
        }
        Some(path) => {
            write(path, &html)?;
            println!(
                "report of rollout `{id}` ({} decisions): {}",
                records.len(),
                path.display()
            );
            Ok(Exit::Ok)
        }
    }
}

/// Without the `dashboard` feature there is no report to write.
#[cfg(not(feature = "dashboard"))]
pub(crate) async fn report(
    _args: &ReportArgs,
    _store: Arc<dyn StateStore>,
) -> Result<Exit, Failure> {
    Err(Failure::invalid(
        "`cutover report` needs the `dashboard` feature, which this build of cutover lacks \
         (cargo install --path crates/cli --features dashboard)",
    ))
}

/// Where the report goes: a file, or standard output for none or `-`.
#[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
fn output(args: &ReportArgs) -> Option<&Path> {
    args.output.as_deref().filter(|p| *p != Path::new("-"))
}

/// Writes `html` to `path` through a temporary file beside it, so that a reader never sees
/// half a report and a failed write leaves an older report whole.
#[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
fn write(path: &Path, html: &str) -> Result<(), Failure> {
    let cannot = |e: std::io::Error| {
        Failure::failed(format!(
            "cannot write the report to {}: {e}",
            path.display()
        ))
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    let partial = path.with_file_name(name);
    std::fs::write(&partial, html).map_err(cannot)?;
    std::fs::rename(&partial, path).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        cannot(e)
    })
}
