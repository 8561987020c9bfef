//! A canary that renames a column and adds another on a real PostgreSQL, without downtime.
//!
//! ```text
//! cargo run --example postgres_migration --features postgres -- --url "host=127.0.0.1 user=postgres dbname=demo"
//! cargo run --example postgres_migration --features postgres -- --url ... --abort   # aborted: schema reverted
//! DATABASE_URL=postgresql://postgres@127.0.0.1/demo cargo run --example postgres_migration --features postgres
//! ```
//!
//! The example (re)creates table `cutover_demo_users(id, name)` in the database, then runs a
//! canary from v1 to v2 whose expand steps add `status` and rename `name` to `full_name`
//! (new column, dual-write triggers, batched backfill). During the canary each version reads
//! its own shape through schema `demo_v1` or `demo_v2`. Promoted, the contract step drops the
//! old column; aborted, the expand steps are reverted in reverse order. Traffic is simulated
//! by the in-memory router from `cutover::test`; time is real but the pauses are short.
//! Without a database URL it says what it needs and exits 0.

use std::process::ExitCode;
use std::time::Duration;

use cutover::postgres::{Operation, Postgres};
use cutover::test::FakeRouter;
use cutover::{Canary, CanaryStep, Clock as _, Outcome, Plan, Rollout, TokioClock};
use cutover_examples::{chain, print_progress};

const TABLE: &str = "cutover_demo_users";

fn main() -> ExitCode {
    let mut url = std::env::var("DATABASE_URL").ok();
    let mut abort = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--abort" => abort = true,
            "--url" => url = args.next(),
            other => {
                eprintln!("unknown argument {other}; use --url URL and --abort");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(url) = url else {
        println!(
            "postgres_migration needs a PostgreSQL database it may change (it recreates table \
             `{TABLE}`): pass --url \"host=... user=... dbname=...\" or set DATABASE_URL. Skipping."
        );
        return ExitCode::SUCCESS;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(&url, abort))
}

async fn run(url: &str, abort: bool) -> ExitCode {
    let (client, connection) = match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("cannot connect to {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(connection);
    let setup = format!(
        "DROP SCHEMA IF EXISTS demo_v1 CASCADE; DROP SCHEMA IF EXISTS demo_v2 CASCADE;
         DO $$ BEGIN IF to_regclass('cutover.migrations') IS NOT NULL THEN
             DELETE FROM cutover.migrations WHERE migration LIKE 'demo-%'; END IF; END $$;
         DROP TABLE IF EXISTS {TABLE};
         CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, name text NOT NULL);
         INSERT INTO {TABLE} (name) SELECT 'user-' || g FROM generate_series(1, 10000) g;"
    );
    if let Err(e) = client.batch_execute(&setup).await {
        eprintln!("cannot create {TABLE}: {e}");
        return ExitCode::FAILURE;
    }

    let db = match Postgres::new(url) {
        Ok(db) => db.versioned_views("demo"),
        Err(e) => {
            eprintln!("{}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let status = db.migration(
        "demo-add-status",
        Operation::add_column(TABLE, "status", "text").with_default("'active'"),
    );
    let rename = db.migration(
        "demo-rename-name",
        Operation::rename_column(TABLE, "name", "full_name"),
    );
    let second = if abort {
        CanaryStep::pause_until_resumed()
    } else {
        CanaryStep::pause(Duration::from_secs(1))
    };
    let plan = Plan::new(Canary::new([
        CanaryStep::set_weight(10).expect("valid"),
        second,
        CanaryStep::set_weight(50).expect("valid"),
        CanaryStep::pause(Duration::from_secs(1)),
    ]))
    .with_bake_time(Duration::from_secs(1));
    let clock = TokioClock::new();
    let start = clock.now();
    let rollout = Rollout::builder("demo", plan)
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .migration(status.expand())
        .migration(rename.expand())
        .migration(rename.contract())
        .clock(clock)
        .build();
    let rollout = match rollout {
        Ok(rollout) => rollout,
        Err(e) => {
            eprintln!("cannot build the rollout: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    println!("canary of demo, v1 -> v2, renaming {TABLE}.name to full_name");
    let handle = rollout.handle();
    let printer = print_progress(&rollout, start);
    let mut events = rollout.subscribe();
    let run = tokio::spawn(rollout.run());
    if abort {
        use futures_util::StreamExt as _;
        while let Some(event) = events.next().await {
            if let cutover::RolloutEvent::Record(cutover::DecisionRecord {
                entry:
                    cutover::Entry::Decision {
                        decision: cutover::planner::Decision::Pause(_),
                        ..
                    },
                ..
            }) = event
            {
                let v1 = client
                    .query_one(&format!("SELECT count(*) FROM demo_v1.{TABLE}"), &[])
                    .await
                    .map(|r| r.get::<_, i64>(0));
                println!("         v1 reads {v1:?} rows through demo_v1 (name); aborting");
                if let Err(e) = handle.abort("operator abort").await {
                    eprintln!("could not abort: {e}");
                }
                break;
            }
        }
    }
    let outcome = run.await.expect("the rollout task");
    let _ = printer.await;
    let columns: Vec<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            &[&TABLE],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    println!("{TABLE} columns now: {}", columns.join(", "));
    match (outcome, abort) {
        (Ok(Outcome::Promoted), false) if columns == ["id", "status", "full_name"] => {
            println!("PROMOTED: schema contracted");
            ExitCode::SUCCESS
        }
        (Ok(Outcome::Aborted { .. }), true) if columns == ["id", "name"] => {
            println!("ABORTED: traffic and schema rolled back");
            ExitCode::SUCCESS
        }
        (outcome, _) => {
            eprintln!("unexpected: {outcome:?}");
            ExitCode::FAILURE
        }
    }
}
