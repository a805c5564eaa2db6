//! Outgoing stream state: sequence numbers, media timestamps and the SR counters.

use crate::{write_rtp, RtpHeader};

/// The sending side of one RTP stream (one SSRC).
///
/// The SSRC and the initial sequence number and timestamp should be random (RFC 3550 section
/// 5.1); the caller draws them from its RNG so this type stays deterministic.
#[derive(Debug, Clone)]
pub struct RtpSender {
    pub ssrc: u32,
    sequence: u16,
    timestamp: u32,
    packets: u32,
    octets: u32,
}

impl RtpSender {
    pub fn new(ssrc: u32, initial_seq: u16, initial_ts: u32) -> Self {
        RtpSender {
            ssrc,
            sequence: initial_seq,
            timestamp: initial_ts,
            packets: 0,
            octets: 0,
        }
    }

    /// Header for the next media packet carrying `samples` samples; then advances the sequence
    /// number by one and the timestamp by `samples` (both wrap). Counts one packet; the payload
    /// octets are counted by [`RtpSender::count_payload`] (or use [`RtpSender::write_packet`]).
    pub fn next_header(&mut self, payload_type: u8, samples: u32, marker: bool) -> RtpHeader {
        let header = self.header_with(payload_type, self.timestamp, marker);
        self.timestamp = self.timestamp.wrapping_add(samples);
        header
    }

    /// Header for a packet whose timestamp is fixed by the caller, as telephone-events are
    /// (RFC 4733: every packet of an event carries the event's start timestamp). Advances only the
    /// sequence number.
    pub fn next_header_at(&mut self, payload_type: u8, timestamp: u32, marker: bool) -> RtpHeader {
        self.header_with(payload_type, timestamp, marker)
    }

    fn header_with(&mut self, payload_type: u8, timestamp: u32, marker: bool) -> RtpHeader {
        let header = RtpHeader {
            payload_type,
            marker,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        header
    }

    /// Moves the media clock on without sending, e.g. for a 20 ms tick with nothing to send, so
    /// the next packet's timestamp still reflects elapsed time.
    pub fn advance_timestamp(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Adds payload octets to the SR octet count (RFC 3550: payload only, no header or padding).
    pub fn count_payload(&mut self, payload_len: usize) {
        // Truncation is fine: the SR field is a wrapping 32-bit counter.
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }

    /// Builds the next media packet into `out` (replacing its contents) and counts it fully.
    pub fn write_packet(
        &mut self,
        payload_type: u8,
        samples: u32,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> RtpHeader {
        let header = self.next_header(payload_type, samples, marker);
        self.count_payload(payload.len());
        write_rtp(&header, payload, out);
        header
    }

    /// The sequence number the next packet will carry.
    pub fn sequence(&self) -> u16 {
        self.sequence
    }

    /// The timestamp the next media packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Packets sent so far (SR "sender's packet count").
    pub fn packet_count(&self) -> u32 {
        self.packets
    }

    /// Payload octets sent so far (SR "sender's octet count").
    pub fn octet_count(&self) -> u32 {
        self.octets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_and_timestamp_advance_and_wrap() {
        let mut s = RtpSender::new(0x1234, 0xfffe, u32::MAX - 159);
        let a = s.next_header(0, 160, true);
        let b = s.next_header(0, 160, false);
        let c = s.next_header(0, 160, false);
        assert_eq!((a.sequence, a.timestamp, a.marker), (0xfffe, u32::MAX - 159, true));
        assert_eq!((b.sequence, b.timestamp, b.marker), (0xffff, 0, false));
        assert_eq!((c.sequence, c.timestamp), (0, 160));
        assert_eq!(c.ssrc, 0x1234);
        assert_eq!(s.packet_count(), 3);
    }

    #[test]
    fn fixed_timestamp_headers_only_move_sequence() {
        let mut s = RtpSender::new(1, 10, 1000);
        let e = s.next_header_at(101, 1000, true);
        assert_eq!((e.sequence, e.timestamp), (10, 1000));
        assert_eq!(s.timestamp(), 1000);
        s.advance_timestamp(160);
        let m = s.next_header(0, 160, false);
        assert_eq!((m.sequence, m.timestamp), (11, 1160));
    }

    #[test]
    fn write_packet_counts_octets() {
        let mut s = RtpSender::new(7, 0, 0);
        let mut out = Vec::new();
        s.write_packet(0, 160, false, &[0xff; 160], &mut out);
        s.write_packet(0, 160, false, &[0xff; 160], &mut out);
        assert_eq!(out.len(), 172);
        assert_eq!(s.packet_count(), 2);
        assert_eq!(s.octet_count(), 320);
        assert_eq!(s.sequence(), 2);
        assert_eq!(s.timestamp(), 320);
    }
}
