//! Joining the parts of a long incoming message, whether tied by a UDH or by SAR TLVs.
//!
//! Parts are kept per (source, destination, reference, total) until every one has come or
//! the set's deadline (first part + timeout) passes. Memory is bounded twice: by the number
//! of open sets and by the octets held; over either bound the oldest sets are dropped.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::pdu::{esm_class, Address, Sm};
use crate::segment::{Concatenation, Udh};
use crate::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblerConfig {
    /// How long a set may stay incomplete.
    pub timeout: Duration,
    pub max_sets: usize,
    /// Octets of user data held across all sets.
    pub max_bytes: usize,
}

impl Default for ReassemblerConfig {
    fn default() -> ReassemblerConfig {
        ReassemblerConfig { timeout: Duration::from_secs(300), max_sets: 1024, max_bytes: 4 << 20 }
    }
}

/// One part of a long message, its header removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub source: Address,
    pub destination: Address,
    pub concatenation: Concatenation,
    pub data_coding: u8,
    pub user_data: Vec<u8>,
}

impl Fragment {
    /// The part a deliver_sm carries, or `None` if it is a whole message (or its UDH is
    /// broken: then it is best shown as it is).
    pub fn from_sm(sm: &Sm) -> Option<Fragment> {
        let (concatenation, user_data) = if sm.esm_class & esm_class::UDHI != 0 {
            let (udh, body) = Udh::parse(sm.payload()).ok()?;
            (udh.concatenation()?, body.to_vec())
        } else {
            let reference = sm.tlvs.sar_msg_ref_num()?;
            let total = sm.tlvs.sar_total_segments()?;
            let seq = sm.tlvs.sar_segment_seqnum()?;
            (Concatenation { reference, total, seq }, sm.payload().to_vec())
        };
        Some(Fragment {
            source: sm.source.clone(),
            destination: sm.destination.clone(),
            concatenation,
            data_coding: sm.data_coding,
            user_data,
        })
    }
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    pub source: Address,
    pub destination: Address,
    pub data_coding: u8,
    /// The parts' user data in order. Joined before decoding, so an escape or surrogate
    /// pair a sender split across parts still reads.
    pub user_data: Vec<u8>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReassemblyError {
    #[error("part {seq} of {total} cannot exist")]
    InvalidPart { seq: u8, total: u8 },
    #[error("part {0} was already received")]
    Duplicate(u8),
}

/// A set given up on, for the count of lost messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub source: Address,
    pub destination: Address,
    pub reference: u16,
    pub received: usize,
    pub total: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: Address,
    destination: Address,
    reference: u16,
    total: u8,
}

#[derive(Debug)]
struct PartSet {
    deadline: (Instant, u64),
    parts: Vec<Option<(u8, Vec<u8>)>>,
    received: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
pub struct Reassembler {
    config: ReassemblerConfig,
    sets: HashMap<Key, PartSet>,
    /// Deadlines in order; the counter keeps equal instants apart.
    deadlines: BTreeMap<(Instant, u64), Key>,
    next_id: u64,
    bytes: usize,
    /// Sets dropped to stay within the bounds (not by timeout).
    evicted: u64,
}

impl Reassembler {
    pub fn new(config: ReassemblerConfig) -> Reassembler {
        Reassembler { config, ..Reassembler::default() }
    }

    /// Adds a part; the whole message once its last part is in.
    pub fn push(&mut self, now: Instant, fragment: Fragment) -> Result<Option<Reassembled>, ReassemblyError> {
        let Concatenation { reference, total, seq } = fragment.concatenation;
        if total == 0 || seq == 0 || seq > total {
            return Err(ReassemblyError::InvalidPart { seq, total });
        }
        let key = Key { source: fragment.source, destination: fragment.destination, reference, total };
        let len = fragment.user_data.len();
        if !self.sets.contains_key(&key) {
            let deadline = (now + self.config.timeout, self.next_id);
            self.next_id += 1;
            self.deadlines.insert(deadline, key.clone());
            self.sets.insert(
                key.clone(),
                PartSet { deadline, parts: vec![None; usize::from(total)], received: 0, bytes: 0 },
            );
        }
        // Just inserted, or present.
        let set = self.sets.get_mut(&key).expect("set exists");
        let slot = &mut set.parts[usize::from(seq - 1)];
        if slot.is_some() {
            return Err(ReassemblyError::Duplicate(seq));
        }
        *slot = Some((fragment.data_coding, fragment.user_data));
        set.received += 1;
        set.bytes += len;
        self.bytes += len;
        if set.received == usize::from(total) {
            let set = self.remove(&key).expect("set exists");
            let mut parts = set.parts.into_iter().flatten();
            let (data_coding, mut user_data) = parts.next().unwrap_or_default();
            for (_, data) in parts {
                user_data.extend_from_slice(&data);
            }
            let text = text::decode(data_coding, &user_data);
            return Ok(Some(Reassembled {
                source: key.source,
                destination: key.destination,
                data_coding,
                user_data,
                text,
            }));
        }
        self.enforce_bounds(&key);
        Ok(None)
    }

    /// When the oldest incomplete set expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|&(at, _)| at)
    }

    /// Drops the sets whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Expired> {
        let mut expired = Vec::new();
        while let Some((&(at, id), _)) = self.deadlines.first_key_value() {
            if at > now {
                break;
            }
            let Some(key) = self.deadlines.remove(&(at, id)) else { break };
            if let Some(set) = self.remove(&key) {
                expired.push(Expired {
                    source: key.source,
                    destination: key.destination,
                    reference: key.reference,
                    received: set.received,
                    total: key.total,
                });
            }
        }
        expired
    }

    /// Incomplete sets held.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Octets of user data held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn remove(&mut self, key: &Key) -> Option<PartSet> {
        let set = self.sets.remove(key)?;
        self.deadlines.remove(&set.deadline);
        self.bytes -= set.bytes;
        Some(set)
    }

    /// Drops the oldest sets (never `keep`, the one just added to) while over a bound.
    fn enforce_bounds(&mut self, keep: &Key) {
        while self.sets.len() > self.config.max_sets.max(1) || self.bytes > self.config.max_bytes {
            let victim = self.deadlines.values().find(|k| *k != keep).cloned();
            let victim = match victim {
                Some(v) => v,
                // Only `keep` is left and it alone is over the byte bound: drop it too.
                None if self.bytes > self.config.max_bytes => keep.clone(),
                None => break,
            };
            self.remove(&victim);
            self.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(reference: u16, total: u8, seq: u8, data: &[u8]) -> Fragment {
        Fragment {
            source: Address::international("15550001"),
            destination: Address::international("15550002"),
            concatenation: Concatenation { reference, total, seq },
            data_coding: 0,
            user_data: data.to_vec(),
        }
    }

    #[test]
    fn any_order_and_duplicates() {
        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default());
        assert_eq!(r.push(now, part(7, 3, 3, b"!")), Ok(None));
        assert_eq!(r.push(now, part(7, 3, 1, b"hello ")), Ok(None));
        assert_eq!(r.push(now, part(7, 3, 1, b"again")), Err(ReassemblyError::Duplicate(1)));
        // Another message with the same reference but another total is another set.
        assert_eq!(r.push(now, part(7, 2, 1, b"other")), Ok(None));
        assert_eq!(r.len(), 2);
        let whole = r.push(now, part(7, 3, 2, b"world")).unwrap().unwrap();
        assert_eq!(whole.text, "hello world!");
        assert_eq!(r.len(), 1);
        assert_eq!(r.bytes(), 5);
        assert_eq!(r.push(now, part(1, 1, 1, b"solo")).unwrap().unwrap().text, "solo");
        assert_eq!(r.push(now, part(1, 2, 3, b"x")), Err(ReassemblyError::InvalidPart { seq: 3, total: 2 }));
        assert_eq!(r.push(now, part(1, 0, 0, b"x")), Err(ReassemblyError::InvalidPart { seq: 0, total: 0 }));
    }

    #[test]
    fn ucs2_pair_split_by_sender_still_reads() {
        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default());
        let bytes = text::ucs2_encode("a😀");
        let mut first = part(1, 2, 1, &bytes[..4]);
        first.data_coding = 8;
        let mut second = part(1, 2, 2, &bytes[4..]);
        second.data_coding = 8;
        r.push(now, second).unwrap();
        assert_eq!(r.push(now, first).unwrap().unwrap().text, "a😀");
    }

    #[test]
    fn expiry() {
        let t0 = Instant::now();
        let config = ReassemblerConfig { timeout: Duration::from_secs(60), ..ReassemblerConfig::default() };
        let mut r = Reassembler::new(config);
        r.push(t0, part(1, 2, 1, b"a")).unwrap();
        r.push(t0 + Duration::from_secs(30), part(2, 2, 1, b"b")).unwrap();
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        assert!(r.handle_timeout(t0 + Duration::from_secs(59)).is_empty());
        let gone = r.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].reference, gone[0].received, gone[0].total), (1, 1, 2));
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        // The late second part starts a new set instead of completing the expired one.
        assert_eq!(r.push(t0 + Duration::from_secs(61), part(1, 2, 2, b"z")), Ok(None));
        assert_eq!(r.handle_timeout(t0 + Duration::from_secs(200)).len(), 2);
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn bounded() {
        let now = Instant::now();
        let config = ReassemblerConfig { timeout: Duration::from_secs(60), max_sets: 3, max_bytes: 100 };
        let mut r = Reassembler::new(config);
        for reference in 0..10 {
            r.push(now, part(reference, 2, 1, b"x")).unwrap();
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.evicted(), 7);
        r.push(now, part(50, 2, 1, &[0; 99])).unwrap();
        assert!(r.bytes() <= 100);
        r.push(now, part(51, 3, 1, &[0; 101])).unwrap();
        assert_eq!(r.bytes(), 0);
        assert!(r.is_empty());
    }

    #[test]
    fn fragments_from_pdus() {
        let mut sm = Sm { esm_class: esm_class::UDHI, short_message: vec![5, 0, 3, 9, 2, 1, b'h', b'i'], ..Sm::default() };
        let f = Fragment::from_sm(&sm).unwrap();
        assert_eq!(f.concatenation, Concatenation { reference: 9, total: 2, seq: 1 });
        assert_eq!(f.user_data, b"hi");
        sm.short_message = vec![9, 9];
        assert_eq!(Fragment::from_sm(&sm), None);
        let mut sar = Sm { short_message: b"yo".to_vec(), ..Sm::default() };
        assert_eq!(Fragment::from_sm(&sar), None);
        sar.tlvs.set(crate::pdu::tag::SAR_MSG_REF_NUM, vec![1, 2]);
        sar.tlvs.set(crate::pdu::tag::SAR_TOTAL_SEGMENTS, vec![2]);
        sar.tlvs.set(crate::pdu::tag::SAR_SEGMENT_SEQNUM, vec![2]);
        let f = Fragment::from_sm(&sar).unwrap();
        assert_eq!(f.concatenation, Concatenation { reference: 0x0102, total: 2, seq: 2 });
        assert_eq!(f.user_data, b"yo");
    }
}
