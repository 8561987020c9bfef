//! Tell people and systems about cutover rollouts.
//!
//! - **Notifications**: a [`Notifier`] reads rollouts' decision logs from a
//!   [`StateStore`](cutover_core::StateStore), turns the records worth telling into
//!   [`Notice`]s and delivers them, through a [`Filter`], to sinks: a signed generic
//!   [`Webhook`], a [`Slack`] incoming webhook, and [`CloudEvents`] carrying CDEvents.
//!   Delivery is at-least-once, in order per sink, retried with back-off, never in the way of
//!   a rollout, and remembered in the store so a restart neither loses nor repeats what a
//!   receiver acknowledged.
//! - **Metrics**: [`RolloutMetrics`] counts rollouts, steps, verdicts and rollbacks with
//!   `prometheus-client` and serves them as OpenMetrics text.
//! - **DORA**: [`dora`] computes deployment frequency, lead time for changes, change failure
//!   rate and time to restore from the store's history.
//!
//! The notifications (the [`Notifier`], its sinks, [`SecretUrl`] and [`SigningKey`]) need the
//! default feature `sinks`, which brings reqwest and rustls; with `default-features = false`
//! the crate offers the metrics, DORA and the notices on prometheus-client alone.
#![forbid(unsafe_code)]
// Without `sinks`, the links above to the notifier and its sinks have nothing to point at.
#![cfg_attr(not(feature = "sinks"), allow(rustdoc::broken_intra_doc_links))]

pub mod dora;
mod filter;
mod metrics;
mod notice;
#[cfg(feature = "sinks")]
mod notifier;
#[cfg(feature = "pipeline")]
mod pipeline;
mod release;
mod scan;
#[cfg(feature = "sinks")]
mod secret;
#[cfg(feature = "sinks")]
mod sink;

pub use self::filter::Filter;
pub use self::metrics::{CONTENT_TYPE, RolloutMetrics};
pub use self::notice::{Notice, NoticeKind, PipelineRef, RolloutInfo, Severity};
#[cfg(feature = "sinks")]
pub use self::notifier::{
    CURSOR_KIND, DEAD_LETTER_KIND, DEAD_LETTER_LIMIT, DeadLetter, Notifier, NotifyError,
    PassReport, Running,
};
pub use self::release::{RELEASE_KIND, Release};
#[cfg(feature = "sinks")]
pub use self::secret::{ConfigError, MIN_KEY_BYTES, SecretUrl, SigningKey};
#[cfg(feature = "sinks")]
pub use self::sink::{
    CDEVENTS_SPEC_VERSION, CloudEvents, DEFAULT_TIMEOUT, DeliveryError, Sink, Slack, Webhook,
    cdevent_type,
};
