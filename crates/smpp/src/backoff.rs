//! Exponential back-off: how long to wait before the next reconnect, or before sending again
//! after an SMSC said ESME_RTHROTTLED.

use std::time::Duration;

/// Doubles from `initial` up to `max` on each failure; [`Backoff::reset`] after a success.
/// Jitter, if wanted, is the caller's: it holds the random source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max: max.max(initial), failures: 0 }
    }

    /// The delay before the next attempt, counting one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.peek();
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// The delay [`Backoff::next_delay`] would return, without counting a failure.
    pub fn peek(&self) -> Duration {
        // 2^31 times anything non-zero is past any sane max; stop doubling before overflow.
        let factor = 1u32 << self.failures.min(31);
        self.initial.checked_mul(factor).map_or(self.max, |d| d.min(self.max))
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.peek(), Duration::from_secs(10));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
