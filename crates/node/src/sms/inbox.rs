//! Incoming messages of one SMSC: whole messages pass straight; the parts of a long one are
//! joined by an `smpp::Reassembler`, and the acknowledgement of every part is held until the
//! joined message is handed over (then they all travel in its [`DeliverAck`]). A set that
//! expires has its held parts refused with ESME_RX_T_APPN, so the SMSC sends them again.
//!
//! Shared by the binds of the SMSC (parts may come on different connections) behind a mutex;
//! plain data, no I/O: the bind task hands deliveries in and carries what comes out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use smpp::reassembly::ReassemblyError;
use smpp::segment::Udh;
use smpp::{pdu::esm_class, Address, Fragment, Reassembler, ReassemblerConfig, Sm};

use super::AckTarget;

/// The reassembler's identity of a set of parts.
type SetKey = (Address, Address, u16, u8);

/// A message ready for the consumer, or parts to refuse.
#[derive(Debug)]
pub(super) enum Delivered {
    Message { from: Address, to: Address, text: String, segments: usize, targets: Vec<AckTarget> },
    /// A part held until the rest of its message comes.
    Held,
    /// Cannot take it now (too many incomplete sets): refuse with ESME_RX_T_APPN.
    Refuse(AckTarget),
}

pub(super) struct Inbox {
    reassembler: Reassembler,
    held: HashMap<SetKey, Vec<AckTarget>>,
    max_sets: usize,
}

impl Inbox {
    pub fn new(timeout: Duration, max_sets: usize) -> Inbox {
        // The reassembler's own bounds sit above ours, so it never drops a set whose parts'
        // acknowledgements we hold: we refuse new sets first.
        let config = ReassemblerConfig { timeout, max_sets: max_sets + 1, max_bytes: usize::MAX };
        Inbox { reassembler: Reassembler::new(config), held: HashMap::new(), max_sets }
    }

    /// A deliver_sm that is a message (not a receipt).
    pub fn handle_deliver(&mut self, now: Instant, sm: &Sm, target: AckTarget) -> Delivered {
        let Some(fragment) = Fragment::from_sm(sm) else {
            return Delivered::Message {
                from: sm.source.clone(),
                to: sm.destination.clone(),
                text: whole_text(sm),
                segments: 1,
                targets: vec![target],
            };
        };
        let c = fragment.concatenation;
        let key: SetKey = (fragment.source.clone(), fragment.destination.clone(), c.reference, c.total);
        if !self.held.contains_key(&key) && self.held.len() >= self.max_sets {
            return Delivered::Refuse(target);
        }
        let single = Delivered::Message {
            from: fragment.source.clone(),
            to: fragment.destination.clone(),
            text: smpp::text::decode(fragment.data_coding, &fragment.user_data),
            segments: 1,
            targets: Vec::new(),
        };
        match self.reassembler.push(now, fragment) {
            Ok(Some(whole)) => {
                let mut targets = self.held.remove(&key).unwrap_or_default();
                targets.push(target);
                Delivered::Message {
                    from: whole.source,
                    to: whole.destination,
                    text: whole.text,
                    segments: usize::from(c.total),
                    targets,
                }
            }
            // Held; a duplicate (the SMSC sent a part again) is answered with the set.
            Ok(None) | Err(ReassemblyError::Duplicate(_)) => {
                self.held.entry(key).or_default().push(target);
                Delivered::Held
            }
            // A header no set can have (part 0, or 3 of 2): shown as the message it carries
            // rather than lost.
            Err(_) => match single {
                Delivered::Message { from, to, text, segments, .. } => {
                    Delivered::Message { from, to, text, segments, targets: vec![target] }
                }
                other => other,
            },
        }
    }

    /// When the oldest incomplete set expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reassembler.poll_timeout()
    }

    /// The held parts of the sets that expired, to refuse.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<AckTarget> {
        let mut refuse = Vec::new();
        for e in self.reassembler.handle_timeout(now) {
            let key: SetKey = (e.source, e.destination, e.reference, e.total);
            refuse.extend(self.held.remove(&key).unwrap_or_default());
        }
        refuse
    }

    /// Incomplete sets held.
    #[cfg(test)]
    pub fn sets(&self) -> usize {
        self.held.len()
    }
}

/// The text of a message that is not a part: after its UDH if it has one (a port address,
/// say), decoded by its data_coding.
fn whole_text(sm: &Sm) -> String {
    let payload = sm.payload();
    let body = if sm.esm_class & esm_class::UDHI != 0 {
        Udh::parse(payload).map_or(payload, |(_, body)| body)
    } else {
        payload
    };
    smpp::text::decode(sm.data_coding, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smpp::PeerSeqNo;
    use tokio::sync::mpsc;

    fn target(seq: u32, tx: &mpsc::UnboundedSender<super::super::bind::Command>) -> AckTarget {
        AckTarget { bind: tx.clone(), conn: 1, seq: PeerSeqNo(seq) }
    }

    fn part(reference: u8, total: u8, seq: u8, text: &str) -> Sm {
        let mut short_message = vec![0x05, 0x00, 0x03, reference, total, seq];
        short_message.extend_from_slice(&smpp::text::gsm7_encode(text).unwrap());
        Sm {
            source: Address::international("+15550001111"),
            destination: Address::international("+15550002222"),
            esm_class: esm_class::UDHI,
            short_message,
            ..Sm::default()
        }
    }

    #[test]
    fn parts_are_held_then_acknowledged_together_or_refused_on_expiry() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let mut inbox = Inbox::new(Duration::from_secs(60), 2);
        assert!(matches!(inbox.handle_deliver(t0, &part(7, 3, 2, "lo "), target(1, &tx)), Delivered::Held));
        // The SMSC repeats part 2: held too, answered with the set.
        assert!(matches!(inbox.handle_deliver(t0, &part(7, 3, 2, "lo "), target(2, &tx)), Delivered::Held));
        assert!(matches!(inbox.handle_deliver(t0, &part(7, 3, 1, "Hel"), target(3, &tx)), Delivered::Held));
        let Delivered::Message { text, segments, targets, from, .. } =
            inbox.handle_deliver(t0, &part(7, 3, 3, "world"), target(4, &tx))
        else {
            panic!("not complete")
        };
        assert_eq!((text.as_str(), segments, from.addr.as_str()), ("Hello world", 3, "15550001111"));
        let seqs: Vec<u32> = targets.iter().map(|t| t.seq.0).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(inbox.sets(), 0);

        // Two sets open: a third is refused at once; an expired one gives back its parts.
        assert!(matches!(inbox.handle_deliver(t0, &part(8, 2, 1, "a"), target(5, &tx)), Delivered::Held));
        let later = t0 + Duration::from_secs(30);
        assert!(matches!(inbox.handle_deliver(later, &part(9, 2, 1, "b"), target(6, &tx)), Delivered::Held));
        assert!(matches!(inbox.handle_deliver(later, &part(10, 2, 1, "c"), target(7, &tx)), Delivered::Refuse(_)));
        assert_eq!(inbox.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        let refused: Vec<u32> =
            inbox.handle_timeout(t0 + Duration::from_secs(60)).iter().map(|t| t.seq.0).collect();
        assert_eq!(refused, [5]);
        assert_eq!(inbox.sets(), 1);
    }

    #[test]
    fn whole_messages_and_broken_headers_pass_straight() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let mut inbox = Inbox::new(Duration::from_secs(60), 2);
        let sm = Sm {
            source: Address::international("+15550001111"),
            data_coding: 8,
            short_message: smpp::text::ucs2_encode("héllo 👋"),
            ..Sm::default()
        };
        let Delivered::Message { text, segments, .. } = inbox.handle_deliver(t0, &sm, target(1, &tx)) else {
            panic!()
        };
        assert_eq!((text.as_str(), segments), ("héllo 👋", 1));
        // Part 3 of 2 cannot be joined: its text is shown alone.
        let Delivered::Message { text, .. } = inbox.handle_deliver(t0, &part(1, 2, 3, "odd"), target(2, &tx)) else {
            panic!()
        };
        assert_eq!(text, "odd");
        assert_eq!(inbox.sets(), 0);
    }
}
