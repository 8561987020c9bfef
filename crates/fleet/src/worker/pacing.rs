//! How often a worker claims: a token bucket bounds the claim rate, an idle worker looks every
//! poll interval (at once when notified), and a failing database is retried with back-off.

use std::time::Duration;

use tokio::time::Instant;

/// The claim schedule of one worker.
#[derive(Debug)]
pub(crate) struct Pacing {
    /// Rollouts claimed per second, at most.
    rate: f64,
    /// Rollouts claimed at once, at most (the bucket's size).
    batch: usize,
    tokens: f64,
    refilled: Instant,
    /// No claim before this.
    next_at: Instant,
    poll: Duration,
    /// Database errors in a row.
    errors: u32,
    /// The last claim stopped because the worker was full, not because the queue was empty.
    full: bool,
}

/// The longest back-off after database errors.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Pacing {
    pub(crate) fn new(rate: f64, batch: usize, poll: Duration, now: Instant) -> Self {
        Pacing {
            rate,
            batch,
            tokens: count(batch),
            refilled: now,
            next_at: now,
            poll,
            errors: 0,
            full: false,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(count(self.batch));
        self.refilled = now;
    }

    /// How many rollouts to claim now, given `room` free slots (0: not now).
    pub(crate) fn allowance(&mut self, now: Instant, room: usize) -> usize {
        self.refill(now);
        if now < self.next_at {
            return 0;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let tokens = self.tokens.floor() as usize;
        room.min(self.batch).min(tokens)
    }

    /// When to look again, given `room` free slots.
    pub(crate) fn next(&mut self, now: Instant, room: usize) -> Instant {
        self.refill(now);
        if room == 0 {
            // A finished rollout wakes the worker; until then, look now and then anyway.
            return now + self.poll;
        }
        let token_at = if self.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        };
        self.next_at.max(token_at)
    }

    /// A claim asked for `asked` and got `got`; `room` slots were free before it.
    pub(crate) fn claimed(&mut self, now: Instant, asked: usize, got: usize, room: usize) {
        self.tokens -= count(got);
        self.errors = 0;
        self.full = got == room;
        self.next_at = if got == asked {
            // There may be more: claim again as soon as the bucket allows.
            now
        } else {
            now + jittered(self.poll)
        };
    }

    /// A claim failed: back off, doubling up to [`MAX_BACKOFF`] (at least the poll interval).
    pub(crate) fn failed(&mut self, now: Instant) {
        self.errors = self.errors.saturating_add(1);
        let max = MAX_BACKOFF.max(self.poll);
        let backoff = Duration::from_millis(100)
            .saturating_mul(1 << self.errors.min(16))
            .min(max);
        self.next_at = now + jittered(backoff);
    }

    /// A rollout may have become claimable.
    pub(crate) fn notified(&mut self, now: Instant) {
        if self.errors == 0 {
            // A small spread, so that workers notified together do not claim in lockstep.
            self.next_at = self
                .next_at
                .min(now + self.poll.mul_f64(fastrand::f64() * 0.05));
        }
    }

    /// A rollout of this worker ended: if the worker was full, there may be more to claim.
    pub(crate) fn slot_freed(&mut self, now: Instant) {
        if self.full && self.errors == 0 {
            self.full = false;
            self.next_at = self.next_at.min(now);
        }
    }
}

/// A count as a number of tokens (counts here are far below 2^52).
#[allow(clippy::cast_precision_loss)]
fn count(n: usize) -> f64 {
    n as f64
}

/// `d` plus up to a tenth, so that workers spread out.
fn jittered(d: Duration) -> Duration {
    d + d.mul_f64(fastrand::f64() * 0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_bounds_the_claim_rate() {
        let t0 = Instant::now();
        let mut p = Pacing::new(10.0, 5, Duration::from_secs(1), t0);
        assert_eq!(p.allowance(t0, 100), 5);
        p.claimed(t0, 5, 5, 100);
        // Emptied: nothing until a token has refilled (0.1 s at 10/s).
        assert_eq!(p.allowance(t0, 100), 0);
        assert_eq!(p.next(t0, 100), t0 + Duration::from_millis(100));
        let later = t0 + Duration::from_millis(300);
        assert_eq!(p.allowance(later, 100), 3);
        // Never more than the room left.
        assert_eq!(p.allowance(later, 2), 2);
    }

    #[test]
    fn an_empty_queue_waits_a_poll_and_a_notification_cuts_it_short() {
        let t0 = Instant::now();
        let poll = Duration::from_secs(1);
        let mut p = Pacing::new(100.0, 10, poll, t0);
        p.claimed(t0, 10, 3, 100);
        assert_eq!(p.allowance(t0 + Duration::from_millis(500), 100), 0);
        assert!(p.next(t0, 100) >= t0 + poll);
        p.notified(t0);
        assert!(p.next(t0, 100) <= t0 + poll / 20);
    }

    #[test]
    fn errors_back_off_up_to_a_bound() {
        let t0 = Instant::now();
        let mut p = Pacing::new(100.0, 10, Duration::from_secs(1), t0);
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            p.failed(t0);
            let wait = p.next(t0, 10) - t0;
            assert!(wait >= last.min(MAX_BACKOFF), "{wait:?} after {last:?}");
            assert!(wait <= MAX_BACKOFF + MAX_BACKOFF / 10, "{wait:?}");
            last = wait;
        }
        // While failing, notifications do not bring the next attempt forward.
        p.notified(t0);
        assert!(p.next(t0, 10) - t0 >= MAX_BACKOFF);
    }
}
