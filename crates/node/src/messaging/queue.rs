//! The outbox in memory: the messages waiting to leave, per destination, in order.
//!
//! Each destination has at most one message with an SMSC at a time, so its messages leave in the
//! order they were queued; different destinations go at once. A destination whose head message
//! must be tried again later is held until then, and its later messages wait behind it.
//!
//! Pure bookkeeping, no I/O and no clock of its own: the sender passes `now`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use model::{MessageRecord, MessageSid};
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Destination {
    waiting: VecDeque<MessageRecord>,
    /// Its head message is with an SMSC.
    busy: bool,
    /// Held until then (a retry).
    held_until: Option<Instant>,
}

impl Destination {
    fn ready(&self) -> bool {
        !self.busy && self.held_until.is_none() && !self.waiting.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct OutboxQueue {
    destinations: HashMap<String, Destination>,
    /// Destinations with a message that can go now, in the order they became so.
    ready: VecDeque<String>,
    /// Held destinations by the time they may go again.
    held: BTreeSet<(Instant, String)>,
    /// Every message waiting or with an SMSC.
    known: HashSet<MessageSid>,
    waiting: usize,
    in_flight: usize,
}

impl OutboxQueue {
    /// Messages waiting (not with an SMSC).
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Messages handed out by [`OutboxQueue::next`] and not finished yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues a message behind its destination's others. False (and nothing changes) when the
    /// message is queued or in flight already.
    pub fn push(&mut self, message: MessageRecord) -> bool {
        if !self.known.insert(message.sid) {
            return false;
        }
        let to = message.to.clone();
        let d = self.destinations.entry(to.clone()).or_default();
        let was_ready = d.ready();
        d.waiting.push_back(message);
        self.waiting += 1;
        if !was_ready && d.ready() {
            self.ready.push_back(to);
        }
        true
    }

    /// Queues messages read from the store at start, oldest first: each goes before the
    /// messages of its destination queued meanwhile (which are newer). Known ones are skipped.
    /// Returns how many were added.
    pub fn load(&mut self, messages: Vec<MessageRecord>) -> usize {
        let mut by_destination: HashMap<String, Vec<MessageRecord>> = HashMap::new();
        for m in messages {
            if self.known.insert(m.sid) {
                by_destination.entry(m.to.clone()).or_default().push(m);
            }
        }
        let mut added = 0;
        for (to, older) in by_destination {
            added += older.len();
            self.waiting += older.len();
            let d = self.destinations.entry(to.clone()).or_default();
            let was_ready = d.ready();
            for m in older.into_iter().rev() {
                d.waiting.push_front(m);
            }
            if !was_ready && d.ready() {
                self.ready.push_back(to);
            }
        }
        added
    }

    /// The next message that may go now, its destination marked busy until
    /// [`OutboxQueue::finish`]. Held destinations whose time came are released first.
    pub fn next(&mut self, now: Instant) -> Option<MessageRecord> {
        self.release(now);
        while let Some(to) = self.ready.pop_front() {
            let Some(d) = self.destinations.get_mut(&to) else { continue };
            if !d.ready() {
                continue;
            }
            let Some(message) = d.waiting.pop_front() else { continue };
            d.busy = true;
            self.waiting -= 1;
            self.in_flight += 1;
            return Some(message);
        }
        None
    }

    /// A message from [`OutboxQueue::next`] is done with: gone for good (`retry: None`), or
    /// back at the head of its destination, which is held until `retry`.
    pub fn finish(&mut self, message: MessageRecord, retry: Option<Instant>) {
        self.in_flight -= 1;
        let to = message.to.clone();
        let Some(d) = self.destinations.get_mut(&to) else { return };
        d.busy = false;
        match retry {
            Some(at) => {
                d.waiting.push_front(message);
                self.waiting += 1;
                d.held_until = Some(at);
                self.held.insert((at, to));
            }
            None => {
                self.known.remove(&message.sid);
                if d.waiting.is_empty() {
                    self.destinations.remove(&to);
                } else if d.ready() {
                    self.ready.push_back(to);
                }
            }
        }
    }

    /// Drops a waiting message (canceled). False when it is not waiting (in flight, or unknown).
    pub fn remove(&mut self, sid: &MessageSid) -> bool {
        if !self.known.contains(sid) {
            return false;
        }
        for d in self.destinations.values_mut() {
            if let Some(i) = d.waiting.iter().position(|m| m.sid == *sid) {
                d.waiting.remove(i);
                self.waiting -= 1;
                self.known.remove(sid);
                // An emptied destination stays until `next` or `finish` passes by: harmless.
                return true;
            }
        }
        false
    }

    /// When the next held destination may go, if any is held.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.first().map(|(at, _)| *at)
    }

    fn release(&mut self, now: Instant) {
        while let Some((at, _)) = self.held.first() {
            if *at > now {
                break;
            }
            let Some((at, to)) = self.held.pop_first() else { break };
            let Some(d) = self.destinations.get_mut(&to) else { continue };
            // A later hold of the same destination replaced this one.
            if d.held_until != Some(at) {
                continue;
            }
            d.held_until = None;
            if d.ready() {
                self.ready.push_back(to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use model::{AccountSid, MessageDirection, MessageStatus};

    use super::*;

    fn message(to: &str) -> MessageRecord {
        MessageRecord::new(
            AccountSid::generate(),
            "+15550000000".into(),
            to.into(),
            "hi".into(),
            MessageStatus::Queued,
            MessageDirection::OutboundApi,
            1,
            Utc::now(),
        )
    }

    #[test]
    fn one_message_per_destination_at_a_time_in_order() {
        let now = Instant::now();
        let mut q = OutboxQueue::default();
        let (a1, a2, b1) = (message("+1"), message("+1"), message("+2"));
        for m in [&a1, &a2, &b1] {
            assert!(q.push(m.clone()));
        }
        assert!(!q.push(a1.clone()), "a message is queued once");
        assert_eq!(q.waiting(), 3);
        let first = q.next(now).unwrap();
        assert_eq!(first.sid, a1.sid);
        assert_eq!(q.next(now).unwrap().sid, b1.sid, "+1 is busy: +2 goes");
        assert!(q.next(now).is_none(), "a2 waits for a1");
        assert_eq!((q.waiting(), q.in_flight()), (1, 2));
        q.finish(first, None);
        assert_eq!(q.next(now).unwrap().sid, a2.sid);
        assert!(q.next(now).is_none());
    }

    #[test]
    fn a_retried_message_holds_its_destination_until_its_time() {
        let now = Instant::now();
        let mut q = OutboxQueue::default();
        let (a1, a2, b1) = (message("+1"), message("+1"), message("+2"));
        for m in [&a1, &a2, &b1] {
            q.push(m.clone());
        }
        let first = q.next(now).unwrap();
        let later = now + Duration::from_secs(2);
        q.finish(first, Some(later));
        assert_eq!(q.next(now).unwrap().sid, b1.sid);
        assert!(q.next(now).is_none(), "+1 is held, a2 behind a1");
        assert_eq!(q.next_release(), Some(later));
        assert_eq!(q.next(later).unwrap().sid, a1.sid, "a1 first again");
        assert_eq!(q.waiting(), 1);
    }

    #[test]
    fn loaded_messages_go_before_newer_ones_of_their_destination() {
        let now = Instant::now();
        let mut q = OutboxQueue::default();
        let (old1, old2, new) = (message("+1"), message("+1"), message("+1"));
        q.push(new.clone());
        assert_eq!(q.load(vec![old1.clone(), old2.clone(), new.clone()]), 2, "known ones skipped");
        let order: Vec<_> = std::iter::from_fn(|| {
            let m = q.next(now)?;
            let sid = m.sid;
            q.finish(m, None);
            Some(sid)
        })
        .collect();
        assert_eq!(order, vec![old1.sid, old2.sid, new.sid]);
        assert_eq!((q.waiting(), q.in_flight()), (0, 0));
        assert!(q.destinations.is_empty(), "finished destinations are forgotten");
    }

    #[test]
    fn a_canceled_message_is_dropped_unless_in_flight() {
        let now = Instant::now();
        let mut q = OutboxQueue::default();
        let (a1, a2) = (message("+1"), message("+1"));
        q.push(a1.clone());
        q.push(a2.clone());
        let first = q.next(now).unwrap();
        assert!(!q.remove(&a1.sid), "in flight: too late");
        assert!(q.remove(&a2.sid));
        assert!(!q.remove(&a2.sid));
        q.finish(first, None);
        assert!(q.next(now).is_none());
        assert_eq!(q.waiting(), 0);
    }
}
