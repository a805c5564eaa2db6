//! Reception statistics for one source: RFC 3550 appendix A.1 (sequence validation), A.3 (expected
//! and lost packets) and A.8 (interarrival jitter), producing the report block for SR/RR.

use std::time::{Duration, Instant};

use crate::rtcp::ReportBlock;
use crate::RtpHeader;

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u32 = 3000;
const MAX_MISORDER: u32 = 100;
const MIN_SEQUENTIAL: u32 = 2;

/// Statistics about the packets received from one SSRC. A packet from a different SSRC restarts
/// them (a new source, e.g. after a re-INVITE to another media server).
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    ssrc: Option<u32>,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Epoch for converting arrival instants into timestamp units.
    epoch: Option<Instant>,
    transit: Option<u32>,
    last_timestamp: Option<u32>,
    /// Jitter scaled by 16 (the integer form of A.8).
    jitter_q4: u32,
    last_sr: u32,
    last_sr_at: Option<Instant>,
}

impl ReceiverStats {
    /// `clock_rate` is the RTP clock of the stream (8000 for G.711).
    pub fn new(clock_rate: u32) -> Self {
        ReceiverStats {
            clock_rate: clock_rate.max(1),
            ssrc: None,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            epoch: None,
            transit: None,
            last_timestamp: None,
            jitter_q4: 0,
            last_sr: 0,
            last_sr_at: None,
        }
    }

    /// The source being tracked, once a packet has been seen.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Accounts for one received packet. Returns whether A.1 considers it valid; a source is on
    /// probation until two packets arrive in sequence. The result is advisory: a media worker can
    /// still play a packet that is not yet valid.
    pub fn handle_packet(&mut self, now: Instant, header: &RtpHeader) -> bool {
        if self.ssrc != Some(header.ssrc) {
            *self = ReceiverStats::new(self.clock_rate);
            self.ssrc = Some(header.ssrc);
            self.init_seq(header.sequence);
            self.max_seq = header.sequence.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let valid = self.update_seq(header.sequence);
        if valid {
            self.update_jitter(now, header.timestamp);
        }
        valid
    }

    /// Records the arrival of a sender report from this source, for LSR/DLSR in our next report.
    /// `ntp_timestamp` is the 64-bit NTP time from the SR.
    pub fn handle_sender_report(&mut self, now: Instant, ntp_timestamp: u64) {
        self.last_sr = (ntp_timestamp >> 16) as u32;
        self.last_sr_at = Some(now);
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    // RFC 3550 A.1, kept close to the reference code so it can be checked against it.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = u32::from(seq.wrapping_sub(self.max_seq));
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= RTP_SEQ_MOD - MAX_MISORDER {
            // A very large jump: believe it only if the next packet follows on (the source
            // restarted its sequence numbering).
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered packet, counted as received.
        self.received = self.received.wrapping_add(1);
        true
    }

    // RFC 3550 A.8 in its integer form. Packets that repeat the previous timestamp (the
    // continuation packets of a telephone-event) carry no new timing information and are skipped.
    fn update_jitter(&mut self, now: Instant, timestamp: u32) {
        if self.last_timestamp == Some(timestamp) {
            return;
        }
        self.last_timestamp = Some(timestamp);
        let epoch = *self.epoch.get_or_insert(now);
        let elapsed = now.saturating_duration_since(epoch);
        // Wrapping arithmetic in timestamp units, as the RTP timestamp itself wraps.
        let arrival = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(prev) = self.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            // J += (|D| - J) / 16, with J kept scaled by 16.
            self.jitter_q4 = self
                .jitter_q4
                .wrapping_add(d)
                .wrapping_sub((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected since the source became valid (A.3).
    pub fn expected(&self) -> u32 {
        self.extended_highest_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets received and counted since the source became valid.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Cumulative number of packets lost, clamped to the 24-bit signed field of a report block;
    /// negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i32 {
        let lost = i64::from(self.expected()) - i64::from(self.received);
        lost.clamp(-0x80_0000, 0x7f_ffff) as i32
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// The report block for our next SR or RR about this source, or `None` if no packet has
    /// been validated yet. Resets the interval used for the fraction lost (A.3), so call it once
    /// per report.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        if self.probation > 0 {
            return None;
        }
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let delay_since_last_sr = match self.last_sr_at {
            Some(at) => to_1_65536(now.saturating_duration_since(at)),
            None => 0,
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost(),
            extended_highest_seq: self.extended_highest_seq(),
            jitter: self.jitter(),
            last_sr: if self.last_sr_at.is_some() {
                self.last_sr
            } else {
                0
            },
            delay_since_last_sr,
        })
    }
}

/// A duration in units of 1/65536 s, saturating, as DLSR is expressed.
fn to_1_65536(d: Duration) -> u32 {
    let v = d.as_micros() * 65536 / 1_000_000;
    v.min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            payload_type: 0,
            marker: false,
            sequence: seq,
            timestamp: ts,
            ssrc: 99,
        }
    }

    #[test]
    fn probation_then_counts_without_loss() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(8000);
        assert!(!s.handle_packet(t0, &h(1000, 0)));
        assert!(s.report_block(t0).is_none());
        for i in 1..50u16 {
            let t = t0 + Duration::from_millis(20 * u64::from(i));
            assert!(s.handle_packet(t, &h(1000 + i, 160 * u32::from(i))));
        }
        let rb = s.report_block(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(rb.ssrc, 99);
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.cumulative_lost, 0);
        assert_eq!(rb.extended_highest_seq, 1049);
        assert_eq!(rb.jitter, 0);
        assert_eq!(s.expected(), 49);
        assert_eq!(s.received(), 49);
    }

    #[test]
    fn loss_fraction_and_wrap() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(8000);
        let mut seq: u16 = 65500;
        let mut sent = 0u32;
        // 200 packets across the sequence wrap, every 4th one lost after probation.
        for i in 0..200u32 {
            let t = t0 + Duration::from_millis(20 * u64::from(i));
            if i < 2 || i % 4 != 0 {
                s.handle_packet(t, &h(seq, i * 160));
            }
            seq = seq.wrapping_add(1);
            sent += 1;
        }
        assert_eq!(sent, 200);
        let rb = s.report_block(t0 + Duration::from_secs(4)).unwrap();
        // Valid from the 2nd packet (65501) to the last (65500 + 199): 199 expected, 49 lost.
        assert_eq!(rb.extended_highest_seq, (1 << 16) + u32::from(65500u16.wrapping_add(199)));
        assert_eq!(s.expected(), 199);
        assert_eq!(rb.cumulative_lost, 49);
        assert_eq!(rb.fraction_lost, (49u32 * 256 / 199) as u8);
        // Next interval with no packets: nothing expected, fraction 0.
        let rb2 = s.report_block(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(rb2.fraction_lost, 0);
        assert_eq!(rb2.cumulative_lost, 49);
    }

    #[test]
    fn duplicates_make_loss_negative() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(8000);
        for i in 0..10u16 {
            s.handle_packet(t0, &h(i, 0));
        }
        s.handle_packet(t0, &h(9, 0));
        s.handle_packet(t0, &h(8, 0));
        assert_eq!(s.cumulative_lost(), -2);
    }

    #[test]
    fn big_jump_needs_two_packets_to_resync() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(8000);
        for i in 0..5u16 {
            s.handle_packet(t0, &h(i, 0));
        }
        assert!(!s.handle_packet(t0, &h(30000, 0)));
        assert!(s.handle_packet(t0, &h(30001, 0)));
        assert_eq!(s.extended_highest_seq(), 30001);
        assert_eq!(s.expected(), 1);
    }

    #[test]
    fn jitter_follows_a8() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(8000);
        // Alternate 10 ms early/late around the 20 ms grid: |D| = 160 samples for each packet
        // after the first two, so J converges towards 160.
        for i in 0..400u32 {
            let offset_ms: i64 = if i % 2 == 0 { 0 } else { 20 };
            let t = t0 + Duration::from_millis((20 * i64::from(i) + offset_ms) as u64);
            s.handle_packet(t, &h(i as u16, i * 160));
        }
        let j = s.jitter();
        assert!((150..=160).contains(&j), "jitter {j}");
        // Exact A.8 steps from zero: J1 = 160/16 = 10 (integer form: 160 - 0).
        let mut s = ReceiverStats::new(8000);
        s.handle_packet(t0, &h(0, 0));
        s.handle_packet(t0 + Duration::from_millis(20), &h(1, 160));
        s.handle_packet(t0 + Duration::from_millis(60), &h(2, 320));
        assert_eq!(s.jitter_q4, 160);
        assert_eq!(s.jitter(), 10);
    }

    #[test]
    fn lsr_and_dlsr() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(8000);
        s.handle_packet(t0, &h(1, 0));
        s.handle_packet(t0, &h(2, 160));
        s.handle_sender_report(t0, 0x1122_3344_5566_7788);
        let rb = s.report_block(t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(rb.last_sr, 0x3344_5566);
        assert_eq!(rb.delay_since_last_sr, 32768);
    }

    #[test]
    fn new_ssrc_restarts() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(8000);
        for i in 0..5u16 {
            s.handle_packet(t0, &h(i, 0));
        }
        let mut other = h(500, 0);
        other.ssrc = 7;
        assert!(!s.handle_packet(t0, &other));
        assert_eq!(s.ssrc(), Some(7));
    }
}
