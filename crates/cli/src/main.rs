//! `cutover`: run, watch and steer rollouts from the command line; lint plans; import Argo
//! Rollouts, Flagger and Kayenta configs; drill rollbacks. See docs/cli.md.
#![forbid(unsafe_code)]

mod check;
mod cli;
mod control;
mod drill;
mod exit;
mod import;
mod lint;
mod progress;
mod providers;
mod report;
mod run;
mod runfile;
mod status;
mod store;
mod yaml;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
use cutover::Command as Verb;

use crate::cli::{Cli, Command};
use crate::exit::{Exit, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cutover: cannot start the async runtime: {e}");
            return Exit::Failed.into();
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            eprintln!("cutover: {failure}");
            failure.exit.into()
        }
    }
}

/// Who acts: `--by`, else the operating-system user.
fn who(cli: &Cli) -> String {
    cli.by
        .clone()
        .or_else(|| whoami::username().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn dispatch(cli: Cli) -> Result<Exit, Failure> {
    let by = who(&cli);
    match &cli.command {
        Command::Lint(args) => lint::lint(args),
        Command::Import(args) => import::import(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "cutover",
                &mut std::io::stdout(),
            );
            Ok(Exit::Ok)
        }
        Command::Drill(args) => drill::drill(args).await,
        Command::Check(args) => {
            // The store only for the approvals of `--rollout`.
            let store = match &args.rollout {
                Some(_) => Some(cli.store.open().await?),
                None => None,
            };
            check::check(args, store).await
        }
        command => {
            let store = cli.store.open().await?;
            match command {
                Command::Run(args) => Box::pin(run::run(args, store, &by)).await,
                Command::Status(args) => status::status(args, store).await,
                Command::Pause(args) => control::send(store, Verb::Pause, args, &by).await,
                Command::Resume(args) => control::send(store, Verb::Resume, args, &by).await,
                Command::Abort(args) => control::send(store, Verb::Abort, args, &by).await,
                Command::Promote(args) => {
                    let verb = if args.full {
                        Verb::PromoteFull
                    } else {
                        Verb::Promote
                    };
                    control::send(store, verb, &args.common, &by).await
                }
                Command::Approve(args) => control::gate(store, Verb::Approve, args, &by).await,
                Command::Reject(args) => control::gate(store, Verb::Reject, args, &by).await,
                Command::Rollback(args) => Box::pin(control::rollback(store, args, &by)).await,
                Command::Report(args) => report::report(args, store).await,
                Command::Lint(_)
                | Command::Import(_)
                | Command::Completions { .. }
                | Command::Drill(_)
                | Command::Check(_) => unreachable!("handled above"),
            }
        }
    }
}
