//! [`Migration`]: an operation on a database, and its expand and contract [`MigrationStep`]s.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use cutover_core::{ErrorKind, MigrationContext, MigrationPhase, MigrationStep, ProviderError};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::backfill;
use crate::db::{Postgres, pg_error};
use crate::operation::Operation;
use crate::progress::{self, SETUP, set_state_sql};
use crate::sql::{ident, literal};

impl Postgres {
    /// A migration called `id` that carries out `operation`. Add its
    /// [`expand`](Migration::expand) and [`contract`](Migration::contract) halves to the rollout.
    pub fn migration(&self, id: impl Into<String>, operation: Operation) -> Migration {
        Migration::new(self.clone(), id.into(), operation)
    }
}

/// An [`Operation`] on a database under a stable id, split into the two steps a rollout runs:
/// [`expand`](Self::expand) before the new version takes traffic and
/// [`contract`](Self::contract) after promotion and the bake time.
///
/// ```
/// use cutover_core::{MigrationPhase, MigrationStep};
/// use cutover_postgres::{Operation, Postgres};
/// let db = Postgres::new("host=127.0.0.1 user=app dbname=shop").unwrap();
/// let rename = db.migration("rename-name", Operation::rename_column("users", "name", "full_name"));
/// assert_eq!(rename.expand().id(), "rename-name");
/// assert_eq!(rename.contract().id(), "rename-name/contract");
/// assert_eq!(rename.contract().phase(), MigrationPhase::Contract);
/// ```
#[derive(Debug, Clone)]
pub struct Migration {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Postgres,
    id: String,
    contract_id: String,
    operation: Operation,
}

impl Migration {
    pub(crate) fn new(db: Postgres, id: String, operation: Operation) -> Self {
        Migration {
            inner: Arc::new(Inner {
                db,
                contract_id: format!("{id}/contract"),
                id,
                operation,
            }),
        }
    }

    /// The expand step, with the migration's id. Reversible when the operation is.
    pub fn expand(&self) -> PgStep {
        PgStep {
            inner: self.inner.clone(),
            phase: MigrationPhase::Expand,
        }
    }

    /// The contract step, with id `{id}/contract`: refused until the rollout is promoted
    /// ([`MigrationContext::promoted`]); the point of no return.
    pub fn contract(&self) -> PgStep {
        PgStep {
            inner: self.inner.clone(),
            phase: MigrationPhase::Contract,
        }
    }
}

/// One half of a [`Migration`] as a [`MigrationStep`].
///
/// Each run records its progress in `cutover.migrations` inside the database (state
/// `applying` / `applied` / `reverting` / `reverted` and the backfill cursor), every part is
/// idempotent, and a run after a crash resumes where the last one stopped.
/// [`is_applied`](MigrationStep::is_applied) answers from that table: `Some(true)` when
/// applied, `Some(false)` when never run or reverted, `None` when a run stopped half-way.
#[derive(Debug, Clone)]
pub struct PgStep {
    inner: Arc<Inner>,
    phase: MigrationPhase,
}

impl PgStep {
    fn db(&self) -> &Postgres {
        &self.inner.db
    }

    /// Connects and creates the `cutover` schema if it is missing.
    async fn connect(&self) -> Result<Client, ProviderError> {
        let db = self.db();
        let client = db.connect().await?;
        let ready = client
            .query_one(
                "SELECT to_regprocedure('cutover.rebuild_view(text,text,text)') IS NOT NULL",
                &[],
            )
            .await
            .map_err(|e| pg_error(&e, "looking for the cutover schema"))?;
        if !ready.get::<_, bool>(0) {
            db.transaction(&client, SETUP, "creating the cutover schema")
                .await?;
        }
        Ok(client)
    }

    /// The view schemas of the old and the new version, if versioned views are on.
    fn versions(&self, ctx: &MigrationContext) -> Option<(String, String)> {
        let db = self.db();
        Some((
            db.view_schema(ctx.revisions.stable.as_str())?,
            db.view_schema(ctx.revisions.candidate.as_str())?,
        ))
    }

    /// SQL that rebuilds the views of the operation's table in `versions`, after running
    /// `sql` between dropping and recreating them (a column a view shows cannot be dropped).
    fn around_views(&self, sql: &str, versions: &[&str]) -> String {
        let Some(table) = self.inner.operation.table() else {
            return sql.to_owned();
        };
        let t = ident(table);
        let mut out = String::new();
        for v in versions {
            let _ = writeln!(out, "DROP VIEW IF EXISTS {}.{t};", ident(v));
        }
        out.push_str(sql);
        for v in versions {
            let _ = writeln!(
                out,
                "SELECT cutover.rebuild_view({}, {}, {});",
                literal(&self.db().schema),
                literal(table),
                literal(v)
            );
        }
        out
    }

    fn what(&self, doing: &str) -> String {
        format!("{doing} migration `{}`", self.id())
    }

    async fn expand(&self, ctx: &MigrationContext) -> Result<(), ProviderError> {
        let (db, id) = (self.db(), self.inner.id.as_str());
        let client = self.connect().await?;
        let progress = progress::read(&client, id, self.phase).await?;
        if progress.as_ref().is_some_and(|p| p.state == "applied") {
            return Ok(());
        }
        let resuming = progress.as_ref().is_some_and(|p| p.state == "applying");
        let cursor = progress.and_then(|p| p.cursor).filter(|_| resuming);
        let work = self.inner.operation.expand_work(&db.schema, id);
        let mut sql = set_state_sql(id, self.phase, ctx.rollout.as_str(), "applying", !resuming);
        let mut body = work.sql.clone();
        let versions = self.versions(ctx);
        if let Some((old, new)) = &versions {
            for (v, hidden) in [(old, &work.hide_old), (new, &work.hide_new)] {
                for (table, column) in hidden {
                    let _ = writeln!(
                        body,
                        "INSERT INTO cutover.hidden VALUES ({}, {}, {}, {}) ON CONFLICT DO NOTHING;",
                        literal(v),
                        literal(table),
                        literal(column),
                        literal(id)
                    );
                }
            }
            sql.push_str(&self.around_views(&body, &[old, new]));
        } else {
            sql.push_str(&body);
        }
        info!(migration = id, resuming, "expanding");
        db.transaction(&client, &sql, &self.what("expanding"))
            .await?;
        if let Some(backfill) = &work.backfill {
            backfill::run(db, &client, id, backfill, cursor).await?;
        }
        if let Some((name, create)) = &work.index {
            self.create_index(&client, name, create).await?;
        }
        for statement in &work.after {
            db.transaction(&client, statement, &self.what("expanding"))
                .await?;
        }
        let done = set_state_sql(id, self.phase, ctx.rollout.as_str(), "applied", false);
        db.transaction(&client, &done, &self.what("expanding"))
            .await
    }

    /// Builds an index concurrently. A failed `CREATE INDEX CONCURRENTLY` (a lock timeout, a
    /// crash, a duplicate key) leaves an INVALID index behind that `IF NOT EXISTS` would take
    /// for done: drop it first.
    async fn create_index(
        &self,
        client: &Client,
        name: &str,
        create: &str,
    ) -> Result<(), ProviderError> {
        let db = self.db();
        let what = self.what(&format!("creating index `{name}` for"));
        let rel = format!("{}.{}", ident(&db.schema), ident(name));
        let drop_invalid = format!("DROP INDEX CONCURRENTLY IF EXISTS {rel}");
        db.retrying(&what, || async {
            let invalid = client
                .query_one(
                    "SELECT coalesce((SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)), false)",
                    &[&rel],
                )
                .await?
                .get::<_, bool>(0);
            if invalid {
                info!(index = name, "dropping an INVALID index left by a failed build");
                client.batch_execute(&drop_invalid).await?;
            }
            client.batch_execute(create).await
        })
        .await
    }

    async fn revert_expand(&self, ctx: &MigrationContext) -> Result<(), ProviderError> {
        let (db, id) = (self.db(), self.inner.id.as_str());
        let Some(work) = self.inner.operation.revert_expand(&db.schema, id) else {
            return Err(ProviderError::unsupported(format!(
                "reverting migration `{id}`: raw SQL without a revert"
            )));
        };
        let client = self.connect().await?;
        let progress = progress::read(&client, id, self.phase).await?;
        if progress.is_none_or(|p| p.state == "reverted") {
            return Ok(());
        }
        let what = self.what("reverting");
        let marking = set_state_sql(id, self.phase, ctx.rollout.as_str(), "reverting", false);
        db.transaction(&client, &marking, &what).await?;
        for statement in &work.before_outside {
            db.outside_transaction(&client, statement, &what).await?;
        }
        let mut body = work.sql.clone();
        let _ = writeln!(
            body,
            "DELETE FROM cutover.hidden WHERE migration = {};",
            literal(id)
        );
        let mut sql = match self.versions(ctx) {
            Some((old, new)) => self.around_views(&body, &[&old, &new]),
            None => body,
        };
        sql.push_str(&set_state_sql(
            id,
            self.phase,
            ctx.rollout.as_str(),
            "reverted",
            true,
        ));
        info!(migration = id, "reverting");
        db.transaction(&client, &sql, &what).await
    }

    async fn contract(&self, ctx: &MigrationContext) -> Result<(), ProviderError> {
        let (db, id) = (self.db(), self.inner.id.as_str());
        if !ctx.promoted {
            return Err(ProviderError::permanent(format!(
                "contract of migration `{id}` refused: rollout `{}` is not promoted, so instances of `{}` may still read the old schema",
                ctx.rollout, ctx.revisions.stable
            )));
        }
        let client = self.connect().await?;
        if progress::read(&client, id, self.phase)
            .await?
            .is_some_and(|p| p.state == "applied")
        {
            return Ok(());
        }
        let work = self.inner.operation.contract_work(&db.schema, id);
        let mut sql = set_state_sql(id, self.phase, ctx.rollout.as_str(), "applying", false);
        let mut body = work.sql.clone();
        let _ = writeln!(
            body,
            "DELETE FROM cutover.hidden WHERE migration = {};",
            literal(id)
        );
        if let Some((old, new)) = self.versions(ctx) {
            // No instance of the old version runs: its views go, and with them what they
            // showed of the old shape.
            let _ = write!(
                sql,
                "DROP SCHEMA IF EXISTS {} CASCADE;\nDELETE FROM cutover.hidden WHERE version_schema = {};\n",
                ident(&old),
                literal(&old)
            );
            sql.push_str(&self.around_views(&body, &[&new]));
        } else {
            sql.push_str(&body);
        }
        sql.push_str(&set_state_sql(
            id,
            self.phase,
            ctx.rollout.as_str(),
            "applied",
            false,
        ));
        info!(migration = id, "contracting");
        db.transaction(&client, &sql, &self.what("contracting"))
            .await
    }
}

#[async_trait]
impl MigrationStep for PgStep {
    fn id(&self) -> &str {
        match self.phase {
            MigrationPhase::Expand => &self.inner.id,
            MigrationPhase::Contract => &self.inner.contract_id,
        }
    }

    fn phase(&self) -> MigrationPhase {
        self.phase
    }

    fn reversible(&self) -> bool {
        self.phase == MigrationPhase::Expand && self.inner.operation.reversible()
    }

    async fn apply(&self, ctx: &MigrationContext) -> Result<(), ProviderError> {
        match self.phase {
            MigrationPhase::Expand => match self.expand(ctx).await {
                // Retrying will not help (bad SQL, data that breaks a constraint), and the
                // engine reverts only steps that finished: undo what this one did so far, so
                // the old version is left with the schema it had.
                Err(e) if e.kind() == ErrorKind::Permanent && self.reversible() => {
                    warn!(migration = self.id(), error = %e, "expand failed for good; undoing it");
                    if let Err(undo) = self.revert_expand(ctx).await {
                        warn!(migration = self.id(), error = %undo, "could not undo the failed expand");
                    }
                    Err(e)
                }
                other => other,
            },
            MigrationPhase::Contract => self.contract(ctx).await,
        }
    }

    async fn revert(&self, ctx: &MigrationContext) -> Result<(), ProviderError> {
        match self.phase {
            MigrationPhase::Expand => self.revert_expand(ctx).await,
            MigrationPhase::Contract => Err(ProviderError::unsupported(format!(
                "reverting contract step `{}`: contract is the point of no return",
                self.id()
            ))),
        }
    }

    async fn is_applied(&self, _ctx: &MigrationContext) -> Result<Option<bool>, ProviderError> {
        let client = self.db().connect().await?;
        let progress = progress::read(&client, &self.inner.id, self.phase).await?;
        // Half applied or half reverted: neither answer is true, so the engine runs the
        // pending `apply` or `revert` again, which finishes the job.
        Ok(match progress.as_ref().map(|p| p.state.as_str()) {
            Some("applied") => Some(true),
            None | Some("reverted") => Some(false),
            Some(_) => None,
        })
    }
}
