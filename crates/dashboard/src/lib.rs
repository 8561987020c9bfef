//! See a rollout: a self-contained HTML [`Report`] of what it did and why, and a live
//! [`Dashboard`] with controls over any [`StateStore`](cutover_core::StateStore).
//!
//! # Report
//!
//! [`Report`] turns a rollout's decision log (and, better, its stored state) into one HTML
//! file that needs nothing else: inline SVG charts drawn by plotters, an inline stylesheet,
//! no script. It charts traffic per revision over time with commands, pauses and the
//! promotion or rollback marked; every analysis over time (metrics against their bounds; a
//! sequential test's e-value against its rejection line and its confidence sequence; the
//! Kayenta judge's score and per-metric table); latency distributions when given; and lists
//! gates, approvals, migrations and the whole decision log.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let store = cutover_core::MemoryStateStore::new();
//! # let id: cutover_core::RolloutId = "checkout".parse()?;
//! # if false {
//! let (state, records) = cutover_dashboard::load(&store, &id).await?;
//! let html = cutover_dashboard::Report::new(&records).state(&state).render();
//! std::fs::write("checkout-report.html", html)?;
//! # }
//! # Ok(()) }
//! ```
//!
//! # Dashboard
//!
//! [`Dashboard`] serves the list of rollouts (filtered by phase, searched by id, a page at a
//! time), a live page per rollout whose charts follow each decision over server-sent events,
//! and controls that send pause, resume, promote, promote-full, abort, approve and reject
//! through the store's command inbox with who and why: it can run in another process than
//! the engines, over the same store.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cutover_dashboard::{Dashboard, Secret};
//! let store = cutover_core::FileStateStore::new("/var/lib/cutover")?;
//! let running = Dashboard::builder(store)
//!     .token(Secret::new(std::env::var("CUTOVER_DASHBOARD_TOKEN")?))
//!     .build()?
//!     .serve()
//!     .await?;
//! println!("dashboard on {}", running.url());
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! - It listens on 127.0.0.1 unless told otherwise ([`DashboardBuilder::bind`]).
//! - Signing in is needed for every page (unless [`DashboardBuilder::public_reads`]) and for
//!   every control: a token (compared in constant time) or an Argon2 password hash
//!   ([`hash_password`]). Programs send the token as `Authorization: Bearer`.
//! - Browser sessions are random 256-bit cookies (`HttpOnly`, `SameSite=Strict`), kept only as
//!   hashes; form posts need the session's CSRF token and the dashboard's own `Origin`.
//! - Every page has a strict content security policy: scripts and styles from the dashboard
//!   only, no inline script, no frames. Everything shown is escaped by askama; the charts' text
//!   is escaped by plotters.
//! - Secrets never appear in `Debug`, logs or pages.
#![forbid(unsafe_code)]

mod report;
mod server;

pub use self::report::{Report, load};
pub use self::server::{
    Dashboard, DashboardBuilder, DashboardError, MIN_TOKEN_LEN, Running, Secret, hash_password,
};
