//! Expand/contract migrations of cutover-postgres left pending or half-done.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::{Deserialize, Serialize};

use super::{Database, DatabaseParams};

/// No expand/contract migration of `cutover-postgres` is half-done or waiting for its
/// contract, and every migration listed in `applied` is applied.
///
/// It reads the bookkeeping table `cutover.migrations` that cutover-postgres keeps in the
/// database (one row per migration and phase, state `applying`, `applied`, `reverting` or
/// `reverted`). A migration fails the check when its expand or contract stopped part-way
/// (`applying`, `reverting`: a crash, a lock timeout that ran out of retries, a failed expand
/// whose undo failed too), or when it is expanded but not contracted, unless it is listed in
/// `allow_expanded` (an expand-only migration, or a contract knowingly left for later).
/// `applied` names migrations that must be applied, by step id: `add-status` for its
/// expand, `add-status/contract` for its contract. A database where cutover never ran a
/// migration passes (and fails any `applied` entry).
///
/// ```yaml
/// postgres_migrations: { url_env: DATABASE_URL, applied: [add-status, rename-name/contract], allow_expanded: [add-index] }
/// ```
#[derive(Debug, Clone)]
pub struct MigrationsCheck {
    db: Database,
    applied: Vec<String>,
    allow_expanded: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MigrationsParams {
    #[serde(flatten)]
    db: DatabaseParams,
    #[serde(default)]
    applied: Vec<String>,
    #[serde(default)]
    allow_expanded: Vec<String>,
}

impl MigrationsCheck {
    pub(crate) fn from_params(p: MigrationsParams) -> Result<Self, (String, String)> {
        for (field, ids) in [
            ("applied", &p.applied),
            ("allow_expanded", &p.allow_expanded),
        ] {
            if let Some(i) = ids.iter().position(|id| id.trim().is_empty()) {
                return Err((format!("{field}[{i}]"), "an empty migration id".into()));
            }
        }
        if let Some(i) = p
            .allow_expanded
            .iter()
            .position(|id| id.ends_with("/contract"))
        {
            return Err((
                format!("allow_expanded[{i}]"),
                "name the migration (`add-status`), not its contract step".into(),
            ));
        }
        Ok(MigrationsCheck {
            db: Database::from_params(p.db)?,
            applied: p.applied,
            allow_expanded: p.allow_expanded,
        })
    }
}

/// One migration as the bookkeeping table has it.
#[derive(Debug, Default, Serialize)]
struct Migration {
    /// The migration's id (its expand step's id).
    id: String,
    /// Where it stands: `expanding`, `reverting`, `contracting` (stopped part-way, unless
    /// running now), `expanded` (waiting for its contract), `contracted`, `reverted`.
    phase: String,
    /// The rollout that last moved it.
    rollout: String,
    /// The expand row's state, if any.
    expand: Option<String>,
    /// The contract row's state, if any.
    contract: Option<String>,
    /// Backfill batches done so far.
    batches: i64,
    /// Seconds since it last moved.
    idle_seconds: f64,
}

impl Migration {
    fn classify(&self) -> &'static str {
        match (self.expand.as_deref(), self.contract.as_deref()) {
            (_, Some("applied")) => "contracted",
            (_, Some("applying")) => "contracting",
            (Some("applying"), _) => "expanding",
            (Some("reverting"), _) => "reverting",
            (Some("applied"), _) => "expanded",
            (Some("reverted") | None, None) => "reverted",
            _ => "unknown",
        }
    }

    fn step_state(&self, step: &str) -> Option<&str> {
        if step.strip_suffix("/contract") == Some(self.id.as_str()) {
            self.contract.as_deref()
        } else {
            self.expand.as_deref()
        }
    }

    /// What to do about it, naming the API and the CLI command that finish or undo it.
    fn hint(&self) -> String {
        let (m, r) = (&self.id, &self.rollout);
        match self.phase.as_str() {
            "expanding" => format!(
                "`{m}`: finish the expand by resuming rollout `{r}` (`cutover resume {r}`; the step picks up at its saved backfill cursor) or by calling `Migration::expand().apply` again, or undo it with `cutover rollback {r}` / `Migration::expand().revert`"
            ),
            "reverting" => format!(
                "`{m}`: finish the revert with `cutover rollback {r}` or `Migration::expand().revert`"
            ),
            "contracting" => format!(
                "`{m}`: the contract is past the point of no return; finish it by resuming rollout `{r}` (`cutover resume {r}`) or calling `Migration::contract().apply` with a promoted context"
            ),
            "expanded" => format!(
                "`{m}`: contract it once the new version is promoted and baked (let rollout `{r}` run its contract step: `cutover promote {r}`, or `Migration::contract().apply` with a promoted context), or roll it back (`cutover rollback {r}` / `Migration::expand().revert`); list it in `allow_expanded` if it stays expanded on purpose"
            ),
            other => format!(
                "`{m}`: unknown state `{other}` in cutover.migrations; inspect the row before migrating"
            ),
        }
    }
}

#[async_trait]
impl Check for MigrationsCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let (client, target) = match self.db.connect().await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let rows = match client
            .query_one("SELECT to_regclass('cutover.migrations') IS NOT NULL", &[])
            .await
        {
            Err(e) => return CheckResult::error(format!("{target}: {e}")),
            Ok(row) if !row.get::<_, bool>(0) => Vec::new(),
            Ok(_) => match client
                .query(
                    "SELECT migration, phase, rollout, state, batches,
                            extract(epoch FROM now() - updated_at)::float8
                       FROM cutover.migrations ORDER BY migration, phase DESC",
                    &[],
                )
                .await
            {
                Ok(rows) => rows,
                Err(e) => return CheckResult::error(format!("{target}: {e}")),
            },
        };
        let mut by_id: BTreeMap<String, Migration> = BTreeMap::new();
        for row in &rows {
            let id: String = row.get(0);
            let phase: String = row.get(1);
            let m = by_id.entry(id.clone()).or_insert_with(|| Migration {
                id,
                ..Migration::default()
            });
            let state: String = row.get(3);
            // Rows come expand first: the contract's rollout and time win.
            m.rollout = row.get(2);
            m.batches += row.get::<_, i64>(4);
            m.idle_seconds = row.get(5);
            if phase == "contract" {
                m.contract = Some(state);
            } else {
                m.expand = Some(state);
            }
        }
        let migrations: Vec<Migration> = by_id
            .into_values()
            .map(|mut m| {
                m.phase = m.classify().to_owned();
                m
            })
            .collect();
        let pending: Vec<&Migration> = migrations
            .iter()
            .filter(|m| match m.phase.as_str() {
                "contracted" | "reverted" => false,
                "expanded" => !self.allow_expanded.contains(&m.id),
                _ => true,
            })
            .collect();
        let missing: Vec<String> = self
            .applied
            .iter()
            .filter_map(|step| {
                let name = step.strip_suffix("/contract").unwrap_or(step);
                let state = migrations
                    .iter()
                    .find(|m| m.id == name)
                    .and_then(|m| m.step_state(step));
                (state != Some("applied"))
                    .then(|| format!("{step} ({})", state.unwrap_or("never ran")))
            })
            .collect();
        let mut problems: Vec<String> = pending
            .iter()
            .map(|m| format!("{} is {} (rollout {})", m.id, m.phase, m.rollout))
            .collect();
        let mut hints: Vec<String> = pending.iter().map(|m| m.hint()).collect();
        if !missing.is_empty() {
            problems.push(format!("not applied: {}", missing.join(", ")));
            hints.push(
                "run the rollout that carries these migrations first (its expand steps run before traffic moves, its contract steps after promotion)"
                    .to_owned(),
            );
        }
        let result = if problems.is_empty() {
            CheckResult::pass(format!(
                "{target}: {} migrations recorded, none pending or half-done{}",
                migrations.len(),
                if self.applied.is_empty() {
                    String::new()
                } else {
                    format!("; applied: {}", self.applied.join(", "))
                }
            ))
        } else {
            CheckResult::fail(format!("{target}: {}", problems.join("; "))).hint(hints.join("; "))
        };
        let pending: Vec<&str> = pending.iter().map(|m| m.id.as_str()).collect();
        result
            .evidence("database", &target)
            .evidence("pending", pending)
            .evidence("not_applied", missing)
            .evidence("migrations", migrations)
    }
}
