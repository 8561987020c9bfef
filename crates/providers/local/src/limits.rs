//! What a client connection may cost: the three client timeouts and the cap on open
//! connections, the counters of what they refused or closed, and the watchdog that enforces the
//! timeouts.
//!
//! The timeouts cost no timer and no clock read per request. Each connection keeps its
//! [`Activity`]: the phase it is in and the watchdog round in which that phase last made
//! progress, written with plain atomic stores by the connection's own task. One watchdog task
//! per serving loop counts rounds, ten per shortest timeout, closes the connections that are
//! late and wakes the requests whose upstream is late (they answer 504), so a deadline is kept
//! to within two rounds: a fifth of the shortest timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::Context;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::task::AbortHandle;

/// The limits on a listener's client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// From a connection's accept, or a request's first byte, to the end of its headers.
    pub(crate) header_read: Duration,
    /// How long a connection may sit between requests (and a response may make no progress).
    pub(crate) idle: Duration,
    /// How long a request body may go without a byte.
    pub(crate) body_idle: Duration,
    /// Open client connections at most; more are answered 503 and closed at once.
    pub(crate) max_connections: usize,
    /// How long an upstream has to send response headers, from the end of the request.
    pub(crate) upstream: Duration,
}

/// The defaults, documented on the builder and in docs/providers/local.md.
pub(crate) const DEFAULT_LIMITS: Limits = Limits {
    header_read: Duration::from_secs(10),
    idle: Duration::from_mins(1),
    body_idle: Duration::from_secs(30),
    max_connections: 4096,
    upstream: Duration::from_secs(10),
};

impl Default for Limits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

impl Limits {
    /// How often the watchdog looks: a tenth of the shortest timeout, between 5 ms and 1 s. A
    /// deadline is kept to within two rounds.
    fn round(&self) -> Duration {
        (self
            .header_read
            .min(self.idle)
            .min(self.body_idle)
            .min(self.upstream)
            / 10)
            .clamp(Duration::from_millis(5), Duration::from_secs(1))
    }
}

/// What the limits did, shared by every serving loop of a listener (atomics, no lock).
#[derive(Debug, Default)]
pub(crate) struct ConnectionStats {
    open: AtomicUsize,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

/// A snapshot of the client connections of a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConnectionCounts {
    /// Client connections open now.
    pub open: usize,
    /// Connections refused because `max_connections` were open (each answered 503).
    pub refused: u64,
    /// Connections closed because a request's headers took longer than the header-read timeout.
    pub header_timeouts: u64,
    /// Connections closed because a request body sent no byte for the body idle timeout.
    pub body_timeouts: u64,
    /// Connections closed after the idle timeout between requests (or of a stalled response).
    pub idle_timeouts: u64,
}

impl ConnectionStats {
    /// Counts a new connection in, unless `max` are open already.
    pub(crate) fn try_open(self: &Arc<Self>, max: usize) -> Option<OpenConnection> {
        let previous = self.open.fetch_add(1, Ordering::Relaxed);
        if previous >= max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(OpenConnection(self.clone()))
    }

    fn timed_out(&self, phase: Phase) {
        let counter = match phase {
            Phase::Head => &self.header_timeouts,
            Phase::Body => &self.body_timeouts,
            Phase::Idle | Phase::Busy => &self.idle_timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub(crate) fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: self.open.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            header_timeouts: self.header_timeouts.load(Ordering::Relaxed),
            body_timeouts: self.body_timeouts.load(Ordering::Relaxed),
            idle_timeouts: self.idle_timeouts.load(Ordering::Relaxed),
        }
    }
}

/// One open connection, counted out when dropped (also when its task is aborted).
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<ConnectionStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a connection is in its request cycle, and so which timeout applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Between requests, or writing a response: the idle timeout, from the last progress.
    Idle = 0,
    /// Reading a request's headers: the header-read timeout, from their first byte.
    Head = 1,
    /// Reading a request body: the body idle timeout, from its last byte.
    Body = 2,
    /// Waiting for the upstream's answer: the upstream timeout, from the end of the request,
    /// which the request answers with 504 itself.
    Busy = 3,
}

/// The watchdog's clock: rounds counted since it started, one every [`Limits::round`]. A
/// connection reads it with one atomic load where a clock read would be a system call's worth
/// of work, and deadlines only need to be as fine as the watchdog's rounds anyway.
#[derive(Debug, Default)]
pub(crate) struct Rounds(AtomicU64);

impl Rounds {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A connection's phase and when it last made progress, written by the connection's own task
/// and read by the watchdog.
#[derive(Debug)]
pub(crate) struct Activity {
    phase: AtomicU8,
    /// Whether the current request has its response (which may come before its body ends).
    answered: AtomicBool,
    /// The watchdog round of the last progress.
    since: AtomicU64,
    rounds: Arc<Rounds>,
    /// Set by the watchdog when the upstream is late; reset by each request.
    upstream_late: AtomicBool,
    /// The task waiting for the upstream's answer, woken when it is late.
    waiting: AtomicWaker,
}

impl Activity {
    fn new(rounds: Arc<Rounds>) -> Self {
        Activity {
            phase: AtomicU8::new(Phase::Head as u8),
            answered: AtomicBool::new(false),
            since: AtomicU64::new(rounds.now()),
            rounds,
            upstream_late: AtomicBool::new(false),
            waiting: AtomicWaker::new(),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Idle,
            1 => Phase::Head,
            2 => Phase::Body,
            _ => Phase::Busy,
        }
    }

    /// Enters `phase`, which starts now.
    pub(crate) fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.touch();
    }

    /// Marks progress in the current phase.
    pub(crate) fn touch(&self) {
        self.since.store(self.rounds.now(), Ordering::Relaxed);
    }

    /// A request's headers are in: its body is read next, or the upstream is waited for.
    pub(crate) fn request_started(&self, has_body: bool) {
        self.answered.store(false, Ordering::Relaxed);
        self.upstream_late.store(false, Ordering::Relaxed);
        self.enter(if has_body { Phase::Body } else { Phase::Busy });
    }

    /// The request body has ended: the connection waits for the answer, or is idle if the
    /// answer came first.
    pub(crate) fn body_ended(&self) {
        if self.answered.load(Ordering::Relaxed) {
            self.enter(Phase::Idle);
        } else {
            self.enter(Phase::Busy);
        }
    }

    /// The response is on its way: the connection is idle, unless the request body is still
    /// coming (then its timeout still applies).
    pub(crate) fn answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
        if self.phase() != Phase::Body {
            self.enter(Phase::Idle);
        }
    }

    /// Whether the upstream has taken longer than the upstream timeout; if not yet, `cx` is
    /// woken when it has.
    pub(crate) fn poll_upstream_late(&self, cx: &mut Context<'_>) -> bool {
        if self.upstream_late.load(Ordering::Acquire) {
            return true;
        }
        self.waiting.register(cx.waker());
        self.upstream_late.load(Ordering::Acquire)
    }

    /// The phase, if its timeout (in rounds) has passed at round `now`.
    fn late(&self, timeouts: &Timeouts, now: u64) -> Option<Phase> {
        let phase = self.phase();
        let timeout = match phase {
            Phase::Idle => timeouts.idle,
            Phase::Head => timeouts.header_read,
            Phase::Body => timeouts.body_idle,
            Phase::Busy => timeouts.upstream,
        };
        let since = self.since.load(Ordering::Relaxed);
        (now.saturating_sub(since) > timeout).then_some(phase)
    }
}

/// The timeouts in watchdog rounds, each rounded up.
#[derive(Debug)]
struct Timeouts {
    header_read: u64,
    idle: u64,
    body_idle: u64,
    upstream: u64,
}

impl Timeouts {
    fn new(limits: &Limits) -> Self {
        let round = limits.round().as_nanos();
        let rounds = |d: Duration| u64::try_from(d.as_nanos().div_ceil(round)).unwrap_or(u64::MAX);
        Timeouts {
            header_read: rounds(limits.header_read),
            idle: rounds(limits.idle),
            body_idle: rounds(limits.body_idle),
            upstream: rounds(limits.upstream),
        }
    }
}

/// The connections of one serving loop and the task that closes the late ones.
#[derive(Debug)]
pub(crate) struct Watchdog {
    limits: Limits,
    timeouts: Timeouts,
    stats: Arc<ConnectionStats>,
    rounds: Arc<Rounds>,
    connections: Mutex<Vec<Watched>>,
}

#[derive(Debug)]
struct Watched {
    activity: Arc<Activity>,
    task: AbortHandle,
}

impl Watchdog {
    pub(crate) fn new(limits: Limits, stats: Arc<ConnectionStats>) -> Arc<Self> {
        Arc::new(Watchdog {
            timeouts: Timeouts::new(&limits),
            limits,
            stats,
            rounds: Arc::default(),
            connections: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    /// The activity of a connection accepted now, reading its first request's headers.
    pub(crate) fn activity(&self) -> Arc<Activity> {
        Arc::new(Activity::new(self.rounds.clone()))
    }

    /// Watches the connection served by `task`.
    pub(crate) fn watch(&self, activity: Arc<Activity>, task: AbortHandle) {
        self.connections.lock().push(Watched { activity, task });
    }

    /// Closes late connections until `stopped` resolves, forgets the finished ones, and calls
    /// `also` on every round (for other sweeping that may be a little late).
    pub(crate) async fn run(
        self: Arc<Self>,
        stopped: impl Future<Output = ()>,
        mut also: impl FnMut(),
    ) {
        let mut ticks = tokio::time::interval(self.limits.round());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    self.rounds.0.fetch_add(1, Ordering::Relaxed);
                    self.sweep();
                    also();
                }
                () = &mut stopped => return,
            }
        }
    }

    fn sweep(&self) {
        let now = self.rounds.now();
        self.connections.lock().retain(|c| {
            if c.task.is_finished() {
                return false;
            }
            match c.activity.late(&self.timeouts, now) {
                // A late upstream is answered 504 by the request itself.
                Some(Phase::Busy) => {
                    if !c.activity.upstream_late.swap(true, Ordering::AcqRel) {
                        c.activity.waiting.wake();
                    }
                    true
                }
                Some(phase) => {
                    c.task.abort();
                    self.stats.timed_out(phase);
                    false
                }
                None => true,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_has_its_own_timeout() {
        let limits = Limits {
            header_read: Duration::from_secs(1),
            idle: Duration::from_secs(3),
            body_idle: Duration::from_secs(2),
            max_connections: 1,
            upstream: Duration::from_millis(1500),
        };
        assert_eq!(limits.round(), Duration::from_millis(100));
        let timeouts = Timeouts::new(&limits);
        let rounds = Arc::new(Rounds::default());
        let activity = Activity::new(rounds.clone());
        rounds.0.store(50, Ordering::Relaxed);
        for (phase, timeout) in [
            (Phase::Head, 10),
            (Phase::Body, 20),
            (Phase::Idle, 30),
            (Phase::Busy, 15),
        ] {
            activity.enter(phase);
            assert_eq!(activity.late(&timeouts, 50 + timeout), None, "{phase:?}");
            assert_eq!(
                activity.late(&timeouts, 50 + timeout + 1),
                Some(phase),
                "{phase:?}"
            );
        }
    }

    #[test]
    fn a_body_still_coming_keeps_its_timeout_after_the_answer() {
        let activity = Activity::new(Arc::default());
        activity.request_started(true);
        assert_eq!(activity.phase(), Phase::Body);
        activity.answered();
        assert_eq!(activity.phase(), Phase::Body);
        activity.body_ended();
        assert_eq!(activity.phase(), Phase::Idle);

        activity.enter(Phase::Head);
        activity.request_started(true);
        activity.body_ended();
        assert_eq!(activity.phase(), Phase::Busy);
        activity.answered();
        assert_eq!(activity.phase(), Phase::Idle);

        activity.enter(Phase::Head);
        activity.request_started(false);
        assert_eq!(activity.phase(), Phase::Busy);
        activity.answered();
        assert_eq!(activity.phase(), Phase::Idle);
    }

    #[test]
    fn the_cap_refuses_and_counts() {
        let stats = Arc::new(ConnectionStats::default());
        let first = stats.try_open(2).unwrap();
        let second = stats.try_open(2).unwrap();
        assert!(stats.try_open(2).is_none());
        assert_eq!(stats.counts().open, 2);
        assert_eq!(stats.counts().refused, 1);
        drop(first);
        let third = stats.try_open(2).unwrap();
        assert_eq!(stats.counts().open, 2);
        drop((second, third));
        assert_eq!(stats.counts().open, 0);
    }

    #[test]
    fn a_round_is_a_tenth_of_the_shortest_timeout() {
        let mut limits = DEFAULT_LIMITS;
        assert_eq!(limits.round(), Duration::from_secs(1));
        limits.body_idle = Duration::from_millis(400);
        assert_eq!(limits.round(), Duration::from_millis(40));
        limits.upstream = Duration::from_millis(200);
        assert_eq!(limits.round(), Duration::from_millis(20));
        limits.header_read = Duration::from_millis(1);
        assert_eq!(limits.round(), Duration::from_millis(5));
    }
}
