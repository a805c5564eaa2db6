//! Overload control: whether the node takes one more call now.
//!
//! A node past its capacity must refuse new calls at once and cheaply (`503 Service
//! Unavailable` with `Retry-After`, so a dispatcher in front sends them elsewhere), and keep
//! serving the calls it has: their BYEs, CANCELs and ACKs are never refused, so they end on
//! time and free their ports. Capacity is:
//! - live calls: at most [`Capacity::max_calls`], derived at start from the open-file limit
//!   (raised to its hard limit by [`raise_nofile_limit`]) and the RTP port range, so the process
//!   never reaches `EMFILE` and never runs out of ports;
//! - event-loop lag: when the runtime's timers fire [`Capacity::max_lag`] late, the node is
//!   already behind (CPU-bound) and each call more makes every call later.
//!
//! [`Capacity::admit`] is the decision, without I/O; [`Overload`] holds what it reads (the lag a
//! ticker measures) and what `/metrics` shows (refusals by reason).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Descriptors the process keeps for itself (listeners, the database, logs, HTTP connections)
/// before calls are counted against the open-file limit.
const RESERVED_FDS: u64 = 512;
/// Descriptors one call may hold: its RTP and RTCP sockets, a `<Dial>` leg's two more, and a
/// webhook connection.
const FDS_PER_CALL: u64 = 5;

/// The limits a node admits calls within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Calls in progress (inbound and outbound) beyond which new ones are refused.
    pub max_calls: u64,
    /// Event-loop lag beyond which new calls are refused.
    pub max_lag: Duration,
    /// What `Retry-After` tells a refused caller, in seconds.
    pub retry_after_s: u32,
}

impl Capacity {
    /// The default capacity for an open-file limit and an RTP port range: whichever runs out
    /// first, at [`FDS_PER_CALL`] descriptors and one RTP/RTCP pair per call.
    pub fn derive(nofile: u64, rtp_ports: u64) -> Capacity {
        let by_fds = nofile.saturating_sub(RESERVED_FDS) / FDS_PER_CALL;
        let by_ports = rtp_ports / 2;
        Capacity { max_calls: by_fds.min(by_ports).max(1), max_lag: Duration::from_millis(100), retry_after_s: 1 }
    }

    pub fn admit(&self, load: Load) -> Verdict {
        if load.calls >= self.max_calls {
            Verdict::Refuse(Reason::Calls)
        } else if load.lag > self.max_lag {
            Verdict::Refuse(Reason::Lag)
        } else {
            Verdict::Admit
        }
    }
}

/// What the node carries now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    pub calls: u64,
    pub lag: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    Refuse(Reason),
}

/// Why a call was refused; a label of `dialtone_overload_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Calls,
    Lag,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Calls => "calls",
            Reason::Lag => "lag",
        }
    }
}

/// The node's overload state: its capacity, the lag last measured, and the refusals counted.
pub struct Overload {
    pub capacity: Capacity,
    lag_micros: AtomicU64,
    refused_calls: AtomicU64,
    refused_lag: AtomicU64,
    /// When a refusal was last logged: at most one line a second, with the count since.
    last_log: Mutex<(Instant, u64)>,
}

impl Overload {
    pub fn new(capacity: Capacity) -> Overload {
        Overload {
            capacity,
            lag_micros: AtomicU64::new(0),
            refused_calls: AtomicU64::new(0),
            refused_lag: AtomicU64::new(0),
            last_log: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Whether to take a new call with `calls` in progress.
    pub fn admit(&self, calls: u64) -> Verdict {
        let load = Load { calls, lag: Duration::from_micros(self.lag_micros.load(Ordering::Relaxed)) };
        let verdict = self.capacity.admit(load);
        if let Verdict::Refuse(reason) = verdict {
            self.count(reason, load);
        }
        verdict
    }

    /// Takes a place for an API-created call when the node has one, counting it in `calls` in
    /// the same step so that concurrent callers cannot overshoot. No place is not a refusal: the
    /// call waits in `queued` and asks again.
    pub fn try_reserve(&self, calls: &AtomicI64) -> bool {
        if self.lag() > self.capacity.max_lag {
            return false;
        }
        let max = self.capacity.max_calls;
        calls
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (u64::try_from(n).unwrap_or(0) < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn count(&self, reason: Reason, load: Load) {
        let counter = match reason {
            Reason::Calls => &self.refused_calls,
            Reason::Lag => &self.refused_lag,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        last.1 += 1;
        if last.0.elapsed() >= Duration::from_secs(1) {
            tracing::warn!(
                reason = reason.as_str(),
                refused = last.1,
                calls = load.calls,
                max_calls = self.capacity.max_calls,
                lag_ms = load.lag.as_millis() as u64,
                "overloaded: new calls refused with 503 (count since the last line)"
            );
            *last = (Instant::now(), 0);
        }
    }

    /// `(reason, refusals)` for `/metrics`.
    pub fn refused(&self) -> [(&'static str, u64); 2] {
        [
            (Reason::Calls.as_str(), self.refused_calls.load(Ordering::Relaxed)),
            (Reason::Lag.as_str(), self.refused_lag.load(Ordering::Relaxed)),
        ]
    }

    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_micros.load(Ordering::Relaxed))
    }

    /// Measures the event loop's lag for as long as the runtime runs: a timer asked for every
    /// [`LAG_TICK`] and how late it fires. The figure decays at once when the loop catches up.
    pub async fn measure_lag(self: std::sync::Arc<Self>) {
        loop {
            let asked = tokio::time::Instant::now() + LAG_TICK;
            tokio::time::sleep_until(asked).await;
            let late = tokio::time::Instant::now().saturating_duration_since(asked);
            self.lag_micros.store(u64::try_from(late.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

/// How often the event loop's lag is sampled.
const LAG_TICK: Duration = Duration::from_millis(20);

/// Raises the soft open-file limit to the hard limit and returns the limit now in force, so a
/// burst of calls meets the node's own capacity, not `EMFILE`.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one rlimit through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), soft = limit.rlim_cur, "could not raise the open-file limit");
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_whichever_of_descriptors_and_ports_runs_out_first() {
        // The common soft limit: 1024 descriptors hold 102 calls.
        assert_eq!(Capacity::derive(1024, 10_000).max_calls, 102);
        // Raised: the 10,000 RTP ports (5,000 pairs) are the limit.
        assert_eq!(Capacity::derive(1_048_576, 10_000).max_calls, 5_000);
        // Never zero, whatever the limits.
        assert_eq!(Capacity::derive(0, 0).max_calls, 1);
    }

    #[test]
    fn calls_beyond_capacity_and_a_late_event_loop_are_refused() {
        let c = Capacity { max_calls: 10, max_lag: Duration::from_millis(100), retry_after_s: 1 };
        assert_eq!(c.admit(Load { calls: 9, lag: Duration::ZERO }), Verdict::Admit);
        assert_eq!(c.admit(Load { calls: 10, lag: Duration::ZERO }), Verdict::Refuse(Reason::Calls));
        assert_eq!(c.admit(Load { calls: 0, lag: Duration::from_millis(100) }), Verdict::Admit);
        assert_eq!(c.admit(Load { calls: 0, lag: Duration::from_millis(101) }), Verdict::Refuse(Reason::Lag));
        let o = Overload::new(c);
        assert_eq!(o.admit(12), Verdict::Refuse(Reason::Calls));
        assert_eq!(o.admit(3), Verdict::Admit);
        assert_eq!(o.refused(), [("calls", 1), ("lag", 0)]);
        // API-created calls take places up to capacity, then wait.
        let calls = AtomicI64::new(8);
        assert!(o.try_reserve(&calls) && o.try_reserve(&calls));
        assert!(!o.try_reserve(&calls));
        assert_eq!(calls.load(Ordering::Relaxed), 10);
        assert_eq!(o.refused(), [("calls", 1), ("lag", 0)], "waiting is not a refusal");
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let soft = raise_nofile_limit().unwrap();
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!((soft, limit.rlim_cur), (limit.rlim_max, limit.rlim_max));
    }
}
