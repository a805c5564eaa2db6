//! The RTP port range: a free-list of even ports shared by every worker.
//!
//! RTP takes the even port and RTCP the odd one above it (RFC 3550 §11). A port
//! comes back to the free-list only when the [`PortLease`] drops, which happens
//! in the worker right after it closed both sockets, so a port is never handed
//! out while a socket is still bound to it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Free even ports of the configured range.
#[derive(Debug)]
pub(crate) struct PortPool {
    // Taken from the front, returned at the back: a released port is reused as
    // late as possible, so stray packets of a finished call rarely reach the
    // next stream bound to the same port.
    free: Mutex<VecDeque<u16>>,
    leased: AtomicUsize,
}

impl PortPool {
    /// Every even port `p` with `min <= p` and `p + 1 <= max`. Empty if the
    /// range holds no such pair.
    pub(crate) fn new(min: u16, max: u16) -> PortPool {
        let first = min.saturating_add(min % 2);
        // `first..max` excludes `max` itself, so `p + 1 <= max` holds for every
        // element (and `first` is only odd when it saturated at 65535: empty).
        let free = (first..max).step_by(2).collect();
        PortPool {
            free: Mutex::new(free),
            leased: AtomicUsize::new(0),
        }
    }

    /// Ports currently free (pairs).
    pub(crate) fn free_pairs(&self) -> usize {
        self.lock().len()
    }

    /// Pairs currently leased.
    pub(crate) fn leased_pairs(&self) -> usize {
        self.leased.load(Ordering::Relaxed)
    }

    /// Takes the next free even port, if any.
    pub(crate) fn take(self: &Arc<Self>) -> Option<PortLease> {
        let port = self.lock().pop_front()?;
        self.leased.fetch_add(1, Ordering::Relaxed);
        Some(PortLease {
            pool: Arc::clone(self),
            port,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
        // The queue stays consistent even if a holder panicked: every critical
        // section is a single push or pop.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An even port taken from the pool; returned to it on drop.
#[derive(Debug)]
pub(crate) struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl PortLease {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.lock().push_back(self.port);
        self.pool.leased.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_holds_even_ports_with_their_odd_neighbour() {
        let pool = Arc::new(PortPool::new(10001, 10010));
        assert_eq!(pool.free_pairs(), 4); // 10002, 10004, 10006, 10008 (10010 has no 10011)
        let a = pool.take().expect("free port");
        assert_eq!(a.port(), 10002);
        assert_eq!(pool.leased_pairs(), 1);
        drop(a);
        assert_eq!(pool.leased_pairs(), 0);
        assert_eq!(pool.free_pairs(), 4);
    }

    #[test]
    fn released_port_goes_to_the_back() {
        let pool = Arc::new(PortPool::new(20000, 20005));
        let a = pool.take().expect("free port");
        assert_eq!(a.port(), 20000);
        drop(a);
        let b = pool.take().expect("free port");
        assert_eq!(b.port(), 20002);
    }

    #[test]
    fn empty_and_exhausted_ranges() {
        assert_eq!(PortPool::new(5000, 5000).free_pairs(), 0);
        assert_eq!(PortPool::new(5001, 5002).free_pairs(), 0);
        assert_eq!(PortPool::new(65534, 65535).free_pairs(), 1);
        let pool = Arc::new(PortPool::new(30000, 30001));
        let held = pool.take().expect("one pair");
        assert!(pool.take().is_none());
        drop(held);
        assert!(pool.take().is_some());
    }
}
