//! The operations: what each does on expand, on revert and on contract, as SQL.

use crate::sql::{ident, literal};

/// A schema change with an expand part, a revert of the expand part and a contract part.
///
/// | operation | expand (old version keeps working) | revert | contract (point of no return) |
/// |---|---|---|---|
/// | [`add_column`](Self::add_column) | add the column, nullable or with a default; hidden from the old version's views | drop it | — |
/// | [`backfill`](Self::backfill) on an added column | also a trigger filling it for rows the old version writes, then a batched backfill | drop trigger and column | drop the trigger |
/// | [`rename_column`](Self::rename_column) | add the new column, dual-write triggers, backfill; old views show the old name, new views the new one | drop trigger and new column | drop trigger and old column |
/// | [`create_index`](Self::create_index) | `CREATE INDEX CONCURRENTLY`, dropping an INVALID leftover first | `DROP INDEX CONCURRENTLY` | — |
/// | [`check_constraint`](Self::check_constraint) | `ADD CONSTRAINT ... NOT VALID`, then `VALIDATE` | drop it | — |
/// | [`set_not_null`](Self::set_not_null) | a `CHECK (c IS NOT NULL)` as above | drop it | `SET NOT NULL` (no scan: the check proves it), drop the check |
/// | [`create_table`](Self::create_table) | `CREATE TABLE IF NOT EXISTS`; not in the old version's views | drop it | — |
/// | [`drop_column`](Self::drop_column) | hide the column from the new version's views | show it again | drop the column |
/// | [`raw_sql`](Self::raw_sql) | your SQL | your revert SQL, if given | your contract SQL, if given |
///
/// Table, column, index and constraint names are quoted identifiers in the database's schema;
/// types, defaults, expressions and raw SQL are SQL text, trusted as written. A modifier
/// ([`with_default`](Self::with_default), [`unique`](Self::unique)...) applied to an operation it
/// does not belong to changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    AddColumn {
        table: String,
        column: String,
        data_type: String,
        default: Option<String>,
        backfill: Option<String>,
    },
    RenameColumn {
        table: String,
        from: String,
        to: String,
    },
    CreateIndex {
        table: String,
        name: String,
        columns: String,
        unique: bool,
    },
    Check {
        table: String,
        name: String,
        check: String,
        not_null: Option<String>,
    },
    CreateTable {
        table: String,
        columns: String,
    },
    DropColumn {
        table: String,
        column: String,
    },
    Raw {
        up: String,
        down: Option<String>,
        contract: Option<String>,
    },
}

/// A batched backfill: `SET column = (expr)` over `table`, by primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backfill {
    pub(crate) table: String,
    pub(crate) column: String,
    pub(crate) expr: String,
}

/// What one phase of an operation does.
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// DDL run in one transaction, together with the view rebuild and the progress row.
    pub(crate) sql: String,
    /// A backfill after the transaction.
    pub(crate) backfill: Option<Backfill>,
    /// An index to build concurrently after the transaction: (name, CREATE statement).
    pub(crate) index: Option<(String, String)>,
    /// Statements run after the transaction and the backfill, each in its own transaction.
    pub(crate) after: Vec<String>,
    /// Statements run before the transaction, outside any transaction.
    pub(crate) before_outside: Vec<String>,
    /// Columns hidden from the old version's views (`""`: the whole table).
    pub(crate) hide_old: Vec<(String, String)>,
    /// Columns hidden from the new version's views.
    pub(crate) hide_new: Vec<(String, String)>,
}

impl Operation {
    /// Adds `column` of `data_type` (`text`, `integer`...) to `table`, nullable.
    pub fn add_column(
        table: impl Into<String>,
        column: impl Into<String>,
        data_type: impl Into<String>,
    ) -> Self {
        Operation {
            kind: Kind::AddColumn {
                table: table.into(),
                column: column.into(),
                data_type: data_type.into(),
                default: None,
                backfill: None,
            },
        }
    }

    /// Gives an added column a default (SQL, e.g. `'new'`); since PostgreSQL 11 a constant
    /// default does not rewrite the table.
    pub fn with_default(mut self, default_sql: impl Into<String>) -> Self {
        if let Kind::AddColumn { default, .. } = &mut self.kind {
            *default = Some(default_sql.into());
        }
        self
    }

    /// Fills an added column from `expr`, an SQL expression over the row's columns (e.g.
    /// `lower(email)`): in batches by primary key for existing rows, and by trigger for rows
    /// the old version writes without it. The table needs a single-column primary key.
    pub fn backfill(mut self, expr: impl Into<String>) -> Self {
        if let Kind::AddColumn { backfill, .. } = &mut self.kind {
            *backfill = Some(expr.into());
        }
        self
    }

    /// Renames `from` to `to` without downtime: a new column of the same type kept in step by
    /// triggers and backfilled; each version's views show the name it expects. Contract drops
    /// `from`. The new column is nullable and has no default, index or constraint of its own:
    /// add those with further operations ([`set_not_null`](Self::set_not_null),
    /// [`create_index`](Self::create_index)) if `from` had them.
    pub fn rename_column(
        table: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
    ) -> Self {
        Operation {
            kind: Kind::RenameColumn {
                table: table.into(),
                from: from.into(),
                to: to.into(),
            },
        }
    }

    /// Creates index `name` on `table` over `columns` (SQL, e.g. `customer_id, created_at`)
    /// with `CREATE INDEX CONCURRENTLY`.
    pub fn create_index(
        table: impl Into<String>,
        name: impl Into<String>,
        columns: impl Into<String>,
    ) -> Self {
        Operation {
            kind: Kind::CreateIndex {
                table: table.into(),
                name: name.into(),
                columns: columns.into(),
                unique: false,
            },
        }
    }

    /// Makes a [`create_index`](Self::create_index) unique.
    pub fn unique(mut self) -> Self {
        if let Kind::CreateIndex { unique, .. } = &mut self.kind {
            *unique = true;
        }
        self
    }

    /// Adds check constraint `name` (`CHECK (check)`) as `NOT VALID`, then validates it
    /// without blocking writes. From expand on, the old version's writes must satisfy it too.
    pub fn check_constraint(
        table: impl Into<String>,
        name: impl Into<String>,
        check: impl Into<String>,
    ) -> Self {
        Operation {
            kind: Kind::Check {
                table: table.into(),
                name: name.into(),
                check: check.into(),
                not_null: None,
            },
        }
    }

    /// Makes `column` NOT NULL: a validated `CHECK (column IS NOT NULL)` on expand, the real
    /// `SET NOT NULL` on contract, which then needs no table scan.
    pub fn set_not_null(table: impl Into<String>, column: impl Into<String>) -> Self {
        let (table, column) = (table.into(), column.into());
        Operation {
            kind: Kind::Check {
                name: format!("{table}_{column}_not_null"),
                check: format!("{} IS NOT NULL", ident(&column)),
                table,
                not_null: Some(column),
            },
        }
    }

    /// Creates `table` with `columns` (SQL, e.g. `id bigserial PRIMARY KEY, body text`).
    pub fn create_table(table: impl Into<String>, columns: impl Into<String>) -> Self {
        Operation {
            kind: Kind::CreateTable {
                table: table.into(),
                columns: columns.into(),
            },
        }
    }

    /// Drops `column`: the new version's views stop showing it on expand; the column itself
    /// is dropped only on contract. Rows the new version inserts leave the column to its
    /// default, so a `NOT NULL` column needs a default (or to be made nullable) first.
    pub fn drop_column(table: impl Into<String>, column: impl Into<String>) -> Self {
        Operation {
            kind: Kind::DropColumn {
                table: table.into(),
                column: column.into(),
            },
        }
    }

    /// Runs `up` (SQL, one transaction) on expand. Irreversible unless given a
    /// [`revert_sql`](Self::revert_sql); must be idempotent (`IF NOT EXISTS`...).
    pub fn raw_sql(up: impl Into<String>) -> Self {
        Operation {
            kind: Kind::Raw {
                up: up.into(),
                down: None,
                contract: None,
            },
        }
    }

    /// The SQL that undoes a [`raw_sql`](Self::raw_sql) expand.
    pub fn revert_sql(mut self, sql: impl Into<String>) -> Self {
        if let Kind::Raw { down, .. } = &mut self.kind {
            *down = Some(sql.into());
        }
        self
    }

    /// The SQL a [`raw_sql`](Self::raw_sql) runs on contract.
    pub fn contract_sql(mut self, sql: impl Into<String>) -> Self {
        if let Kind::Raw { contract, .. } = &mut self.kind {
            *contract = Some(sql.into());
        }
        self
    }

    /// Whether the expand part can be reverted.
    pub fn reversible(&self) -> bool {
        match &self.kind {
            Kind::Raw { down, .. } => down.is_some(),
            _ => true,
        }
    }

    /// The table the operation changes, if one.
    pub fn table(&self) -> Option<&str> {
        match &self.kind {
            Kind::AddColumn { table, .. }
            | Kind::RenameColumn { table, .. }
            | Kind::CreateIndex { table, .. }
            | Kind::Check { table, .. }
            | Kind::CreateTable { table, .. }
            | Kind::DropColumn { table, .. } => Some(table),
            Kind::Raw { .. } => None,
        }
    }

    /// The expand part.
    pub(crate) fn expand_work(&self, schema: &str, migration: &str) -> Work {
        let s = ident(schema);
        let mut work = Work::default();
        match &self.kind {
            Kind::AddColumn {
                table,
                column,
                data_type,
                default,
                backfill,
            } => {
                let default = default
                    .as_ref()
                    .map(|d| format!(" DEFAULT {d}"))
                    .unwrap_or_default();
                work.sql = format!(
                    "ALTER TABLE {s}.{} ADD COLUMN IF NOT EXISTS {} {data_type}{default};\n",
                    ident(table),
                    ident(column),
                );
                if let Some(expr) = backfill {
                    let c = ident(column);
                    let body = format!(
                        "IF NEW.{c} IS NULL THEN NEW.{c} := (SELECT ({expr}) FROM (SELECT NEW.*) AS cutover_row); END IF;"
                    );
                    work.sql
                        .push_str(&trigger_sql(schema, table, migration, &body));
                    work.backfill = Some(Backfill {
                        table: table.clone(),
                        column: column.clone(),
                        expr: expr.clone(),
                    });
                }
                work.hide_old.push((table.clone(), column.clone()));
            }
            Kind::RenameColumn { table, from, to } => {
                let (f, t) = (ident(from), ident(to));
                work.sql = format!(
                    "DO $cutover$ BEGIN EXECUTE format('ALTER TABLE %I.%I ADD COLUMN IF NOT EXISTS %I %s', {schema_l}, {table_l}, {to_l}, \
                     (SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                      WHERE attrelid = format('%I.%I', {schema_l}, {table_l})::regclass AND attname = {from_l} AND NOT attisdropped)); END $cutover$;\n",
                    schema_l = literal(schema),
                    table_l = literal(table),
                    to_l = literal(to),
                    from_l = literal(from),
                );
                let body = format!(
                    "IF TG_OP = 'INSERT' THEN \
                       IF NEW.{t} IS NULL THEN NEW.{t} := NEW.{f}; \
                       ELSIF NEW.{f} IS NULL THEN NEW.{f} := NEW.{t}; END IF; \
                     ELSIF NEW.{f} IS DISTINCT FROM OLD.{f} THEN NEW.{t} := NEW.{f}; \
                     ELSIF NEW.{t} IS DISTINCT FROM OLD.{t} THEN NEW.{f} := NEW.{t}; \
                     END IF;"
                );
                work.sql
                    .push_str(&trigger_sql(schema, table, migration, &body));
                work.backfill = Some(Backfill {
                    table: table.clone(),
                    column: to.clone(),
                    expr: f,
                });
                work.hide_old.push((table.clone(), to.clone()));
                work.hide_new.push((table.clone(), from.clone()));
            }
            Kind::CreateIndex {
                table,
                name,
                columns,
                unique,
            } => {
                let unique = if *unique { "UNIQUE " } else { "" };
                work.index = Some((
                    name.clone(),
                    format!(
                        "CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {} ON {s}.{} ({columns})",
                        ident(name),
                        ident(table)
                    ),
                ));
            }
            Kind::Check {
                table, name, check, ..
            } => {
                work.sql = format!(
                    "DO $cutover$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {rel}::regclass AND conname = {name_l}) THEN \
                     ALTER TABLE {s}.{t} ADD CONSTRAINT {n} CHECK ({check}) NOT VALID; END IF; END $cutover$;\n",
                    rel = literal(&format!("{s}.{}", ident(table))),
                    name_l = literal(name),
                    t = ident(table),
                    n = ident(name),
                );
                work.after.push(format!(
                    "ALTER TABLE {s}.{} VALIDATE CONSTRAINT {}",
                    ident(table),
                    ident(name)
                ));
            }
            Kind::CreateTable { table, columns } => {
                work.sql = format!(
                    "CREATE TABLE IF NOT EXISTS {s}.{} ({columns});\n",
                    ident(table)
                );
                work.hide_old.push((table.clone(), String::new()));
            }
            Kind::DropColumn { table, column } => {
                work.hide_new.push((table.clone(), column.clone()));
            }
            Kind::Raw { up, .. } => {
                work.sql = format!("{up};\n");
            }
        }
        work
    }

    /// The revert of the expand part (`None` when irreversible).
    pub(crate) fn revert_expand(&self, schema: &str, migration: &str) -> Option<Work> {
        let s = ident(schema);
        let mut work = Work::default();
        match &self.kind {
            Kind::AddColumn { table, column, .. }
            | Kind::RenameColumn {
                table, to: column, ..
            } => {
                work.sql = format!(
                    "{}ALTER TABLE {s}.{} DROP COLUMN IF EXISTS {};\n",
                    drop_trigger_sql(schema, table, migration),
                    ident(table),
                    ident(column)
                );
            }
            Kind::CreateIndex { name, .. } => {
                work.before_outside.push(format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {s}.{}",
                    ident(name)
                ));
            }
            Kind::Check { table, name, .. } => {
                work.sql = format!(
                    "ALTER TABLE {s}.{} DROP CONSTRAINT IF EXISTS {};\n",
                    ident(table),
                    ident(name)
                );
            }
            Kind::CreateTable { table, .. } => {
                work.sql = format!("DROP TABLE IF EXISTS {s}.{};\n", ident(table));
            }
            Kind::DropColumn { .. } => {}
            Kind::Raw { down, .. } => work.sql = format!("{};\n", down.as_ref()?),
        }
        Some(work)
    }

    /// The contract part.
    pub(crate) fn contract_work(&self, schema: &str, migration: &str) -> Work {
        let s = ident(schema);
        let mut work = Work::default();
        match &self.kind {
            Kind::AddColumn { table, .. } => {
                work.sql = drop_trigger_sql(schema, table, migration);
            }
            Kind::RenameColumn { table, from, .. } => {
                work.sql = format!(
                    "{}ALTER TABLE {s}.{} DROP COLUMN IF EXISTS {};\n",
                    drop_trigger_sql(schema, table, migration),
                    ident(table),
                    ident(from)
                );
            }
            Kind::Check {
                table,
                name,
                not_null: Some(column),
                ..
            } => {
                let t = ident(table);
                work.sql = format!(
                    "ALTER TABLE {s}.{t} ALTER COLUMN {} SET NOT NULL;\nALTER TABLE {s}.{t} DROP CONSTRAINT IF EXISTS {};\n",
                    ident(column),
                    ident(name)
                );
            }
            Kind::DropColumn { table, column } => {
                work.sql = format!(
                    "ALTER TABLE {s}.{} DROP COLUMN IF EXISTS {};\n",
                    ident(table),
                    ident(column)
                );
            }
            Kind::Raw {
                contract: Some(sql),
                ..
            } => work.sql = format!("{sql};\n"),
            Kind::CreateIndex { .. }
            | Kind::Check { not_null: None, .. }
            | Kind::CreateTable { .. }
            | Kind::Raw { contract: None, .. } => {}
        }
        work
    }
}

/// The name of the trigger function of `migration`, in schema `cutover`.
fn trigger_name(migration: &str) -> String {
    format!("trigger_{migration}")
}

/// SQL that (re)creates a `BEFORE INSERT OR UPDATE` row trigger on `table` running `body`.
fn trigger_sql(schema: &str, table: &str, migration: &str, body: &str) -> String {
    let name = ident(&trigger_name(migration));
    format!(
        "CREATE OR REPLACE FUNCTION cutover.{name}() RETURNS trigger LANGUAGE plpgsql AS $cutover$ BEGIN {body} RETURN NEW; END $cutover$;\n\
         DROP TRIGGER IF EXISTS {name} ON {s}.{t};\n\
         CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON {s}.{t} FOR EACH ROW EXECUTE FUNCTION cutover.{name}();\n",
        s = ident(schema),
        t = ident(table),
    )
}

/// SQL that drops the trigger of `migration` on `table` and its function.
fn drop_trigger_sql(schema: &str, table: &str, migration: &str) -> String {
    let name = ident(&trigger_name(migration));
    format!(
        "DO $cutover$ BEGIN IF to_regclass({rel}) IS NOT NULL THEN DROP TRIGGER IF EXISTS {name} ON {s}.{t}; END IF; END $cutover$;\n\
         DROP FUNCTION IF EXISTS cutover.{name}();\n",
        rel = literal(&format!("{}.{}", ident(schema), ident(table))),
        s = ident(schema),
        t = ident(table),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_literals_escaped() {
        assert_eq!(ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(literal("o'clock"), "'o''clock'");
        let work = Operation::add_column("my table", "a\"b", "text").expand_work("public", "m");
        assert!(
            work.sql.contains(
                r#"ALTER TABLE "public"."my table" ADD COLUMN IF NOT EXISTS "a""b" text"#
            ),
            "{}",
            work.sql
        );
    }

    #[test]
    fn only_raw_sql_without_a_revert_is_irreversible() {
        assert!(Operation::add_column("t", "c", "int").reversible());
        assert!(Operation::drop_column("t", "c").reversible());
        assert!(!Operation::raw_sql("SELECT 1").reversible());
        assert!(
            Operation::raw_sql("SELECT 1")
                .revert_sql("SELECT 2")
                .reversible()
        );
        assert!(
            Operation::raw_sql("SELECT 1")
                .revert_expand("public", "m")
                .is_none()
        );
    }

    #[test]
    fn each_version_sees_its_own_names_during_a_rename() {
        let work =
            Operation::rename_column("users", "name", "full_name").expand_work("public", "m");
        assert_eq!(
            work.hide_old,
            [("users".to_owned(), "full_name".to_owned())]
        );
        assert_eq!(work.hide_new, [("users".to_owned(), "name".to_owned())]);
        assert_eq!(work.backfill.unwrap().expr, "\"name\"");
    }

    #[test]
    fn builders_only_touch_their_own_operation() {
        let op = Operation::create_table("t", "id int")
            .with_default("1")
            .unique();
        assert_eq!(op, Operation::create_table("t", "id int"));
        assert_eq!(op.table(), Some("t"));
        assert_eq!(Operation::raw_sql("SELECT 1").table(), None);
    }
}
