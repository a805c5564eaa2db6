//! RFC 4733 telephone-events: the 4-byte payload, a receiver that turns a packet stream into
//! digits, and a sender that produces the packet sequence for one digit.
//!
//! Both assume the 8 kHz clock that `telephone-event/8000` uses with G.711.

use std::time::Duration;

use crate::{RtpError, RtpHeader, RtpSender};

/// Samples per 20 ms packet at 8 kHz.
const PACKET_SAMPLES: u32 = 160;

/// Number of times the end packet is sent (RFC 4733 section 2.5.1.4 recommends three).
pub const END_RETRANSMISSIONS: u8 = 3;

/// The telephone-event payload (RFC 4733 section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9 digits, 10 `*`, 11 `#`, 12-15 `A`-`D`.
    pub event: u8,
    /// E bit: this packet reports the end of the event.
    pub end: bool,
    /// Power level in -dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first 4 bytes of the payload; extra bytes (redundancy, RFC 2198) are ignored.
    pub fn parse(payload: &[u8]) -> Result<Self, RtpError> {
        match payload {
            [event, flags, d0, d1, ..] => Ok(TelephoneEvent {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(RtpError::ShortTelephoneEvent(payload.len())),
        }
    }

    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// Event code to the character Twilio reports in `Digits`, for the 16 DTMF events.
pub fn event_to_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// Character (`0-9 * # A-D`, letters in either case) to the event code.
pub fn char_to_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
struct SeenEvent {
    ssrc: u32,
    timestamp: u32,
    event: u8,
    ended: bool,
    duration: u16,
}

/// Turns received telephone-event packets into digits, each exactly once.
///
/// An event is identified by its RTP timestamp (RFC 4733 section 2.5.1.1: all packets of one
/// event share the start timestamp), so continuation packets, the end-packet retransmissions
/// and duplicates are recognised without relying on the marker bit, which is lost when the first
/// packet is lost. Feed it only packets of the negotiated telephone-event payload type.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    last: Option<SeenEvent>,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the digit when this packet is the first one seen of a new event.
    pub fn handle_packet(&mut self, header: &RtpHeader, payload: &[u8]) -> Option<char> {
        let ev = TelephoneEvent::parse(payload).ok()?;
        if let Some(last) = self.last.as_mut().filter(|l| l.ssrc == header.ssrc) {
            if header.timestamp == last.timestamp {
                last.ended |= ev.end;
                last.duration = last.duration.max(ev.duration);
                return None;
            }
            // Serial-number comparison: a late packet of an earlier event is not a new one.
            if (header.timestamp.wrapping_sub(last.timestamp) as i32) < 0 {
                return None;
            }
            // A long event is split into segments of at most 0xFFFF samples, each with a new
            // timestamp (RFC 4733 section 2.5.1.3); that is still the same key press.
            let continues_long_event =
                !last.ended && last.event == ev.event && last.duration == u16::MAX;
            if continues_long_event {
                *last = SeenEvent {
                    ssrc: header.ssrc,
                    timestamp: header.timestamp,
                    event: ev.event,
                    ended: ev.end,
                    duration: ev.duration,
                };
                return None;
            }
        }
        self.last = Some(SeenEvent {
            ssrc: header.ssrc,
            timestamp: header.timestamp,
            event: ev.event,
            ended: ev.end,
            duration: ev.duration,
        });
        event_to_char(ev.event)
    }
}

/// Produces the RFC 4733 packet sequence for one digit: a first packet with the marker bit, a
/// duration update every 20 ms, then the end packet three times.
///
/// Call [`DtmfSender::poll_packet`] once per 20 ms tick instead of sending audio; it also moves
/// the sender's media clock on by one packet per call so audio resumes with the right timestamp.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    event: u8,
    volume: u8,
    payload_type: u8,
    total: u16,
    start_timestamp: Option<u32>,
    elapsed: u32,
    ends_sent: u8,
}

impl DtmfSender {
    /// `None` when `digit` is not one of `0-9 * # A-D`. The duration is rounded up to whole
    /// 20 ms packets and capped at one segment (0xFFFF samples, about 8 s).
    pub fn new(digit: char, payload_type: u8, duration: Duration) -> Option<Self> {
        let event = char_to_event(digit)?;
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let samples = millis
            .saturating_mul(8)
            .clamp(u64::from(PACKET_SAMPLES), u64::from(u16::MAX));
        let packets = samples.div_ceil(u64::from(PACKET_SAMPLES));
        let total = (packets * u64::from(PACKET_SAMPLES)).min(u64::from(u16::MAX)) as u16;
        Some(DtmfSender {
            event,
            volume: 10,
            payload_type,
            total,
            start_timestamp: None,
            elapsed: 0,
            ends_sent: 0,
        })
    }

    /// Sets the reported power level in -dBm0 (default 10), clamped to 0..=63.
    pub fn with_volume(mut self, volume: u8) -> Self {
        self.volume = volume.min(63);
        self
    }

    /// The next packet (header and payload), or `None` once the three end packets have gone.
    pub fn poll_packet(&mut self, rtp: &mut RtpSender) -> Option<(RtpHeader, [u8; 4])> {
        if self.is_done() {
            return None;
        }
        let first = self.start_timestamp.is_none();
        let start = *self.start_timestamp.get_or_insert(rtp.timestamp());
        rtp.advance_timestamp(PACKET_SAMPLES);
        self.elapsed = (self.elapsed + PACKET_SAMPLES).min(u32::from(self.total));
        let end = self.elapsed >= u32::from(self.total);
        if end {
            self.ends_sent += 1;
        }
        let payload = TelephoneEvent {
            event: self.event,
            end,
            volume: self.volume,
            // elapsed <= total <= u16::MAX
            duration: self.elapsed as u16,
        };
        let header = rtp.next_header_at(self.payload_type, start, first);
        rtp.count_payload(4);
        Some((header, payload.to_bytes()))
    }

    pub fn is_done(&self) -> bool {
        self.ends_sent >= END_RETRANSMISSIONS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            payload_type: 101,
            marker: false,
            sequence: seq,
            timestamp: ts,
            ssrc: 42,
        }
    }

    #[test]
    fn payload_round_trip_is_byte_exact() {
        // RFC 4733 figure 1 layout: event 5, E=1, volume 10, duration 800.
        let bytes = [0x05, 0x8a, 0x03, 0x20];
        let ev = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(ev.to_bytes(), bytes);
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(RtpError::ShortTelephoneEvent(3))
        );
    }

    #[test]
    fn chars_and_events_map_both_ways() {
        for (c, e) in "0123456789*#ABCD".chars().zip(0u8..) {
            assert_eq!(char_to_event(c), Some(e));
            assert_eq!(event_to_char(e), Some(c));
        }
        assert_eq!(char_to_event('b'), Some(13));
        assert_eq!(char_to_event('E'), None);
        assert_eq!(event_to_char(16), None);
    }

    fn digits_of(rx: &mut DtmfReceiver, packets: &[(RtpHeader, [u8; 4])]) -> String {
        packets
            .iter()
            .filter_map(|(h, p)| rx.handle_packet(h, p))
            .collect()
    }

    #[test]
    fn sender_sequence_is_as_rfc_4733_describes() {
        let mut rtp = RtpSender::new(42, 100, 8000);
        let mut tx = DtmfSender::new('7', 101, Duration::from_millis(100)).unwrap();
        let mut packets = Vec::new();
        while let Some(p) = tx.poll_packet(&mut rtp) {
            packets.push(p);
        }
        assert_eq!(packets.len(), 4 + 3);
        let durations: Vec<u16> = packets
            .iter()
            .map(|(_, p)| TelephoneEvent::parse(p).unwrap().duration)
            .collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<bool> = packets
            .iter()
            .map(|(_, p)| TelephoneEvent::parse(p).unwrap().end)
            .collect();
        assert_eq!(ends, vec![false, false, false, false, true, true, true]);
        assert!(packets[0].0.marker);
        assert!(packets[1..].iter().all(|(h, _)| !h.marker));
        assert!(packets.iter().all(|(h, _)| h.timestamp == 8000));
        let seqs: Vec<u16> = packets.iter().map(|(h, _)| h.sequence).collect();
        assert_eq!(seqs, (100..107).collect::<Vec<_>>());
        assert_eq!(packets[0].1, [7, 10, 0, 160]);
        // Audio after the event carries a timestamp past the event.
        assert_eq!(rtp.timestamp(), 8000 + 7 * 160);
        assert_eq!(rtp.octet_count(), 28);
        assert!(tx.poll_packet(&mut rtp).is_none());
    }

    #[test]
    fn sender_durations_are_clamped() {
        let mut rtp = RtpSender::new(1, 0, 0);
        let mut short = DtmfSender::new('1', 101, Duration::ZERO).unwrap();
        let first = short.poll_packet(&mut rtp).unwrap();
        assert_eq!(TelephoneEvent::parse(&first.1).unwrap().duration, 160);
        assert!(TelephoneEvent::parse(&first.1).unwrap().end);
        let mut long = DtmfSender::new('2', 101, Duration::MAX).unwrap();
        let mut last = None;
        while let Some(p) = long.poll_packet(&mut rtp) {
            last = Some(p);
        }
        assert_eq!(TelephoneEvent::parse(&last.unwrap().1).unwrap().duration, u16::MAX);
        assert!(DtmfSender::new('x', 101, Duration::from_millis(100)).is_none());
    }

    #[test]
    fn receiver_reports_each_digit_once() {
        let mut rtp = RtpSender::new(42, 0, 0);
        let mut all = Vec::new();
        for d in ['1', '1', '#'] {
            let mut tx = DtmfSender::new(d, 101, Duration::from_millis(60)).unwrap();
            while let Some(p) = tx.poll_packet(&mut rtp) {
                all.push(p);
            }
        }
        let mut rx = DtmfReceiver::new();
        assert_eq!(digits_of(&mut rx, &all), "11#");
    }

    #[test]
    fn receiver_survives_loss_of_first_packets_and_duplicates() {
        let mut rx = DtmfReceiver::new();
        let ev = |e: u8, end: bool, d: u16| {
            TelephoneEvent {
                event: e,
                end,
                volume: 10,
                duration: d,
            }
            .to_bytes()
        };
        // First two packets of the event lost: the continuation still yields the digit.
        assert_eq!(rx.handle_packet(&header(3, 1000), &ev(4, false, 480)), Some('4'));
        assert_eq!(rx.handle_packet(&header(3, 1000), &ev(4, false, 480)), None);
        assert_eq!(rx.handle_packet(&header(4, 1000), &ev(4, true, 640)), None);
        assert_eq!(rx.handle_packet(&header(5, 1000), &ev(4, true, 640)), None);
        // Only the end packets of the next event arrive.
        assert_eq!(rx.handle_packet(&header(9, 2000), &ev(9, true, 640)), Some('9'));
        assert_eq!(rx.handle_packet(&header(10, 2000), &ev(9, true, 640)), None);
        // A late retransmission of the previous event is not a new digit.
        assert_eq!(rx.handle_packet(&header(6, 1000), &ev(4, true, 640)), None);
        // Non-DTMF events and short payloads give nothing.
        assert_eq!(rx.handle_packet(&header(11, 3000), &ev(16, false, 160)), None);
        assert_eq!(rx.handle_packet(&header(12, 4000), &[1, 2]), None);
    }

    #[test]
    fn long_event_segments_are_one_digit() {
        let mut rx = DtmfReceiver::new();
        let ev = |end: bool, d: u16| {
            TelephoneEvent {
                event: 0,
                end,
                volume: 10,
                duration: d,
            }
            .to_bytes()
        };
        assert_eq!(rx.handle_packet(&header(1, 0), &ev(false, 160)), Some('0'));
        assert_eq!(rx.handle_packet(&header(2, 0), &ev(false, u16::MAX)), None);
        assert_eq!(rx.handle_packet(&header(3, 65535), &ev(false, 160)), None);
        assert_eq!(rx.handle_packet(&header(4, 65535), &ev(true, 320)), None);
        assert_eq!(rx.handle_packet(&header(5, 70000), &ev(false, 160)), Some('0'));
    }

    #[test]
    fn timestamp_wrap_is_a_new_event() {
        let mut rx = DtmfReceiver::new();
        let p = TelephoneEvent {
            event: 2,
            end: false,
            volume: 10,
            duration: 160,
        }
        .to_bytes();
        assert_eq!(rx.handle_packet(&header(1, u32::MAX - 100), &p), Some('2'));
        assert_eq!(rx.handle_packet(&header(9, 500), &p), Some('2'));
    }
}
