//! Wall-clock timestamps for state and records, and the clock that produces them.
//!
//! The engine waits with `tokio::time` only, so tests can pause time. Timestamps that must
//! survive a restart (when a step began, when a record was written) come from a [`Clock`];
//! the default [`TokioClock`] reads the system clock once and then advances with tokio's clock,
//! so a paused test runtime moves it too.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in wall-clock time, in milliseconds since the Unix epoch.
///
/// Serialized as RFC 3339 (`2026-11-21T20:43:11.123Z`).
///
/// ```
/// use std::time::Duration;
/// use cutover_core::Timestamp;
/// let t = Timestamp::from_unix_millis(1_000);
/// assert_eq!((t + Duration::from_secs(2)).unix_millis(), 3_000);
/// assert_eq!((t + Duration::from_secs(2)).saturating_since(t), Duration::from_secs(2));
/// assert_eq!(t.saturating_since(t + Duration::from_secs(2)), Duration::ZERO);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

/// Shown as RFC 3339, like `Display`: `Timestamp(2026-11-21T20:43:11.123Z)`.
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Timestamp {
    /// The timestamp `millis` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(millis: u64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// The timestamp of a `SystemTime`; times before the epoch become the epoch.
    pub fn from_system_time(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// The `SystemTime` of this timestamp.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        let millis = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text)
            .map(Timestamp::from_system_time)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp `{text}`: {e}")))
    }
}

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// Wall-clock time that advances with tokio's clock.
///
/// It reads the system clock once, when created, and adds the time elapsed on tokio's clock
/// since. Under `#[tokio::test(start_paused = true)]` it therefore moves with virtual time, and
/// in production it is immune to wall-clock jumps while the process runs. Create it inside the
/// runtime that will use it. To resume a rollout on a shared virtual timeline (crash tests),
/// share one clock between engines.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    anchor: Timestamp,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// A clock anchored at the current system time.
    #[allow(clippy::disallowed_methods)] // the one place the system clock is read
    pub fn new() -> Self {
        Self::starting_at(Timestamp::from_system_time(SystemTime::now()))
    }

    /// A clock that reads `anchor` now and advances with tokio's clock.
    pub fn starting_at(anchor: Timestamp) -> Self {
        TokioClock {
            anchor,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.anchor + self.started.elapsed()
    }
}

/// Durations in plans and state are written like `30s`, `5m`, `1h 30m`, `500ms`.
pub(crate) mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim()).map_err(|e| {
            format!("invalid duration `{text}`: {e} (write it like 30s, 5m, 1h 30m or 500ms)")
        })
    }

    /// The same for `Option<Duration>`; `null` is `None`.
    pub(crate) mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        #[allow(clippy::ref_option)] // the signature serde's `with` expects
        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.collect_str(&humantime::format_duration(*d)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| super::parse(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_as_rfc3339() {
        let t = Timestamp::from_unix_millis(1_763_757_791_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2025-11-21T20:43:11.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn durations_parse_human_forms() {
        let p = |s| serde_duration::parse(s).unwrap();
        assert_eq!(p("30s"), Duration::from_secs(30));
        assert_eq!(p("1h 30m"), Duration::from_mins(90));
        assert_eq!(p("1h30m"), Duration::from_mins(90));
        assert_eq!(p("500ms"), Duration::from_millis(500));
        let err = serde_duration::parse("5 minutes please").unwrap_err();
        assert!(err.contains("write it like"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::starting_at(Timestamp::from_unix_millis(0));
        tokio::time::sleep(Duration::from_mins(10)).await;
        assert_eq!(clock.now(), Timestamp::from_unix_millis(600_000));
    }
}
