//! The command line as clap reads it: every command, its arguments and its examples.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::store::StoreUrl;

/// The exit codes, for `--help` and docs/cli.md.
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0  success: promoted, queued, no lint errors, imported, drill passed
  1  the rollout did not promote (rolled back or aborted); the drill found a problem; a
     checklist did not pass (a required check failed, erred or awaits an approval)
  2  usage: the command line itself is wrong
  3  invalid input: a plan, run file or imported config has errors
  4  store: unreachable, unknown rollout, rollout finished or owned by another engine
  5  the rollout failed: a provider error, or the plan could not be carried out; an output
     file could not be written"
    };
}

/// Progressive delivery from the command line: run, watch and steer rollouts, lint plans,
/// import Argo Rollouts, Flagger and Kayenta configs, and drill rollbacks.
#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    after_help = exit_codes!(),
    after_long_help = concat!("\
Examples:
  cutover lint plan.yaml
  cutover run plan.yaml                       # live progress on a terminal, plain lines otherwise
  cutover status                              # every rollout in ./.cutover
  cutover pause checkout --reason 'error budget alert'
  cutover abort checkout --reason 'p99 too high'
  cutover import argo rollout.yaml analysis-template.yaml -o plan.yaml
  cutover drill plan.yaml --inject errors
  cutover report checkout -o checkout.html
  cutover check preflight.yaml

", exit_codes!())
)]
pub(crate) struct Cli {
    /// Where rollouts are kept: `file:DIR` (a directory per rollout), `kubernetes:NAMESPACE`
    /// (ConfigMaps, as the operator keeps them), `postgres://USER@HOST:PORT/DB` (the
    /// cutover-fleet store; give a password through `PGPASSWORD` or `CUTOVER_STORE`, not argv).
    #[arg(
        long,
        global = true,
        env = "CUTOVER_STORE",
        default_value = "file:./.cutover",
        value_name = "URL"
    )]
    pub(crate) store: StoreUrl,

    /// Who is acting, for the decision log (default: the operating-system user).
    #[arg(long, global = true, env = "CUTOVER_BY", value_name = "NAME")]
    pub(crate) by: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a rollout whose plan and providers are described in a YAML file.
    #[command(after_help = "\
Examples:
  cutover run checkout.yaml
  cutover run checkout.yaml --id checkout-v42 --out decisions.json
  cutover run checkout.yaml --take-over 'the old runner host died'

The file is a plan (strategy, analyses, ...) with two more sections:
  rollout:   { id: checkout, stable: v1, candidate: v2 }
  providers: { local_proxy: {...}, http_probe: {...}, prometheus: {...}, kubernetes: {...}, ... }
See docs/cli.md for every provider's fields.")]
    Run(RunArgs),

    /// Show rollouts: a table of all, or one with its latest decisions.
    #[command(after_help = "\
Examples:
  cutover status
  cutover status checkout
  cutover status checkout -o json
  cutover status --watch
  cutover status checkout --watch       # follows it until it finishes")]
    Status(StatusArgs),

    /// Hold a rollout at its current step.
    #[command(after_help = "Example:\n  cutover pause checkout --reason 'error budget alert'")]
    Pause(CommandArgs),

    /// Lift a pause (a manual pause, a pause step, an inconclusive analysis, a blue-green
    /// waiting to be promoted).
    #[command(after_help = "Example:\n  cutover resume checkout --reason 'dashboards are fine'")]
    Resume(CommandArgs),

    /// Skip the current step, or with --full every remaining step.
    #[command(after_help = "\
Examples:
  cutover promote checkout --reason 'looks good'
  cutover promote checkout --full --reason 'hotfix, skip the steps'")]
    Promote(PromoteArgs),

    /// Roll back now: all traffic to stable.
    #[command(after_help = "Example:\n  cutover abort checkout --reason 'p99 too high'")]
    Abort(CommandArgs),

    /// Approve a rollout's approval gate.
    #[command(
        after_help = "Example:\n  cutover approve checkout change-board --reason 'CHG-4711 approved'"
    )]
    Approve(GateArgs),

    /// Reject a rollout's approval gate (the rollout stops).
    #[command(
        after_help = "Example:\n  cutover reject checkout change-board --reason 'freeze week'"
    )]
    Reject(GateArgs),

    /// One command back to stable: abort the rollout and wait until all traffic is on stable.
    #[command(after_help = "\
Examples:
  cutover rollback checkout --reason 'customers report errors'
  cutover rollback checkout --file checkout.yaml --reason 'the runner died mid-rollout'

Without --file the engine that runs the rollout carries the rollback out. With --file, and no
live engine on the rollout, this process resumes the rollout with the file's providers and
rolls it back itself.")]
    Rollback(RollbackArgs),

    /// Check a plan or run file without any provider: every error at once, with its line
    /// and column, and warnings.
    #[command(after_help = "\
Examples:
  cutover lint plan.yaml
  cutover lint plan.yaml --strict     # warnings fail too
  cutover lint plan.yaml -o json")]
    Lint(LintArgs),

    /// Turn an Argo Rollouts, Flagger or Kayenta config into a cutover plan, listing every
    /// field that could not be carried over.
    #[command(after_help = "\
Examples:
  cutover import argo rollout.yaml analysis-templates.yaml -o plan.yaml
  cutover import flagger canary.yaml -o plan.yaml
  cutover import kayenta canary-config.json -o plan.yaml")]
    Import(ImportArgs),

    /// Rehearse a rollback: run the plan on a local proxy with real traffic, inject a
    /// failure into the candidate, and time how long until all traffic is on stable.
    #[command(after_help = "\
Examples:
  cutover drill plan.yaml
  cutover drill plan.yaml --inject crash --at-step 2
  cutover drill plan.yaml --inject latency --latency 800ms --max-time-to-stable 30s

The plan's analyses must read metrics the local proxy answers (error_rate, latency, ...):
every metric source they name is bound to the proxy. Pauses are capped at --max-pause.")]
    Drill(DrillArgs),

    /// Run a pre-flight checklist (YAML, with the built-in checks: http, tcp, tls, disk, env,
    /// freeze, business_hours, webhook, prometheus_*, postgres_*, ...) and print its report.
    #[command(after_help = "\
Examples:
  cutover check preflight.yaml
  cutover check preflight.yaml -o json
  cutover check preflight.yaml --rollout checkout   # approval checks see checkout's approvals

A checklist:
  name: preflight
  checks:
    - { id: api, category: infrastructure, http: { url: \"http://127.0.0.1:8080/healthz\" } }
    - { id: secrets, category: security, env: { names: [DATABASE_URL] } }
    - { id: tmp, category: host, required: false, disk: { path: /tmp, min_free_mb: 100 } }
See docs/preflight.md for every check kind and its fields.
Exit codes: 0 nothing blocks (every required check passed, warned or is exempted); 1 a required
check failed, erred or awaits an approval; 3 the checklist is invalid; 4 --rollout: unknown
rollout or the store failed.")]
    Check(CheckArgs),

    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  cutover completions bash > /etc/bash_completion.d/cutover
  cutover completions zsh > \"${fpath[1]}/_cutover\"
  cutover completions fish > ~/.config/fish/completions/cutover.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },

    /// Write a rollout's HTML report: traffic over time, every analysis, commands, gates and
    /// the whole decision log, in one self-contained file.
    #[command(after_help = "\
Examples:
  cutover report checkout -o checkout.html
  cutover --store postgres://cutover@db/cutover report checkout -o checkout.html
  cutover report checkout > checkout.html       # without -o: standard output

The report needs nothing else to open: no script, stylesheet or font from anywhere, the charts
are inline SVG. A running rollout's report shows where it stands now.
Exit codes: 0 written; 3 invalid id; 4 unknown rollout or the store failed; 5 the file could not
be written.")]
    Report(ReportArgs),
}

/// `check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The checklist (YAML).
    pub(crate) file: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
    /// Run the checks for this rollout of the store: approval checks see its approvals.
    #[arg(long, value_name = "ID")]
    pub(crate) rollout: Option<String>,
}

/// `report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The rollout.
    pub(crate) id: String,
    /// Write the report here (default, or `-`: standard output).
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

/// `run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The run file: a plan with `rollout` and `providers` sections.
    pub(crate) file: PathBuf,
    /// The rollout's id (default: the file's `rollout.id`, else the file name).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Take the rollout over from a live engine, recording why.
    #[arg(long, value_name = "REASON")]
    pub(crate) take_over: Option<String>,
    /// Also write the decision log as JSON here when the rollout ends.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Plain lines even on a terminal.
    #[arg(long)]
    pub(crate) plain: bool,
    /// With a local proxy: keep it serving after the rollout ends, until interrupted.
    #[arg(long)]
    pub(crate) keep_serving: bool,
}

/// Output formats of `status` and `lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// One rollout; all of them when left out.
    pub(crate) id: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
    /// Keep watching: redraw on every change (one rollout: until it finishes).
    #[arg(short, long)]
    pub(crate) watch: bool,
    /// How many of the latest decisions to show for one rollout.
    #[arg(long, default_value_t = 10)]
    pub(crate) records: usize,
    /// Only rollouts that have not finished.
    #[arg(long)]
    pub(crate) active: bool,
}

/// The arguments every command to a rollout takes.
#[derive(Debug, Args)]
pub(crate) struct CommandArgs {
    /// The rollout.
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) delivery: Delivery,
}

/// Why, and how a command is delivered.
#[derive(Debug, Args)]
pub(crate) struct Delivery {
    /// Why, for the decision log.
    #[arg(short, long)]
    pub(crate) reason: String,
    /// An idempotency key: sending the same key again queues nothing new.
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Wait up to this long for the engine to apply the command, and show what it did.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) wait: Option<Duration>,
}

/// `promote`.
#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    #[command(flatten)]
    pub(crate) common: CommandArgs,
    /// Skip every remaining step, not only the current one.
    #[arg(long)]
    pub(crate) full: bool,
}

/// `approve` and `reject`.
#[derive(Debug, Args)]
pub(crate) struct GateArgs {
    /// The rollout.
    pub(crate) id: String,
    /// The approval gate.
    pub(crate) gate: String,
    #[command(flatten)]
    pub(crate) delivery: Delivery,
}

/// `rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The rollout.
    pub(crate) id: String,
    /// Why, for the decision log.
    #[arg(short, long)]
    pub(crate) reason: String,
    /// The run file: with it, this process rolls the rollout back itself when no live engine
    /// runs it.
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// How long to wait for all traffic to be on stable.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

/// `lint`.
#[derive(Debug, Args)]
pub(crate) struct LintArgs {
    /// Plans or run files.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Warnings fail the lint too.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Output format (`table`: `file:line:column: message` lines).
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
}

/// Where an import comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Source {
    /// Argo Rollouts: a Rollout (canary or blue-green) and its AnalysisTemplates.
    Argo,
    /// Flagger: a Canary (and MetricTemplates).
    Flagger,
    /// Kayenta: a canary config (JSON).
    Kayenta,
}

/// `import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Which tool the files come from.
    #[arg(value_enum)]
    pub(crate) from: Source,
    /// The files (YAML or JSON; several documents per file are fine).
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Write the plan here instead of to standard output.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Fail (exit 3) when any field could not be carried over.
    #[arg(long)]
    pub(crate) strict: bool,
}

/// Failures a drill can inject into the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Inject {
    /// The candidate answers 500 to a share of requests (--error-rate).
    Errors,
    /// The candidate answers slowly (--latency).
    Latency,
    /// The candidate stops: connections are refused (the proxy answers 502).
    Crash,
}

/// `drill`.
#[derive(Debug, Args)]
pub(crate) struct DrillArgs {
    /// The plan or run file (its providers are not used).
    pub(crate) file: PathBuf,
    /// The failure to inject.
    #[arg(long, value_enum, default_value_t = Inject::Errors)]
    pub(crate) inject: Inject,
    /// Inject when this step starts (default: once the candidate first gets traffic).
    #[arg(long, value_name = "STEP")]
    pub(crate) at_step: Option<usize>,
    /// Share of requests that fail with --inject errors.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) error_rate: f64,
    /// Latency added with --inject latency.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) latency: Duration,
    /// Requests per second through the proxy.
    #[arg(long, default_value_t = 500)]
    pub(crate) rate: u32,
    /// Longest pause step (0 keeps the plan's pauses).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) max_pause: Duration,
    /// Fail the drill (exit 1) when traffic takes longer than this to be back on stable.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) max_time_to_stable: Option<Duration>,
    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Also write the drill's decision log as JSON here.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

/// A duration like `30s`, `5m` or `1h30m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e} (use 30s, 5m, 1h30m)"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example() {
        for sub in Cli::command().get_subcommands() {
            if sub.is_hide_set() {
                continue;
            }
            let help = sub
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                help.contains("cutover "),
                "`{}` has no example in its --help",
                sub.get_name()
            );
        }
    }
}
