//! See a rollout: a self-contained HTML [`Report`] of what it did and why, and a live
//! [`Dashboard`] with controls over any [`StateStore`](cutover_core::StateStore).
#![forbid(unsafe_code)]

mod report;
mod server;

pub use self::report::{Report, load};
pub use self::server::{
    Dashboard, DashboardBuilder, DashboardError, MIN_TOKEN_LEN, Running, Secret, hash_password,
};
