//! Unleash feature flags as a cutover traffic router.
//!
//! A rollout can move users instead of requests: [`UnleashRouter`] sets a flag's gradual
//! rollout percentage (the `flexibleRollout` strategy, with its stickiness and group id) in
//! one environment through Unleash's admin API, 1 % -> 5 % -> 25 % -> 100 % as the plan says,
//! and back to 0 % (flag off) when the analysis fails. With
//! [`variants`](UnleashRouterBuilder::variants) it splits users between the flag's variants
//! for an A/B test instead.
//!
//! It reads the flag back after every change, and reports a flag that someone else changed
//! meanwhile (in the Unleash UI, say) as a conflict instead of overwriting it. The admin
//! token ([`AdminToken`]) never appears in `Debug`, logs or errors.
//!
//! Tested against a real `unleash-server` 6.x with its PostgreSQL (`scripts/test-deps`
//! installs both; `tests/unleash.rs` starts them on free loopback ports).
#![forbid(unsafe_code)]

mod api;
mod router;
mod token;

pub use router::{UnleashRouter, UnleashRouterBuilder};
pub use token::AdminToken;
