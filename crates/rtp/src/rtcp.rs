//! RTCP (RFC 3550 section 6): building SR/RR + SDES CNAME compound packets, a BYE, and parsing
//! compound packets from peers.

use crate::packet::{read_u16, read_u32};
use crate::RtpError;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;

const SDES_CNAME: u8 = 1;

/// One reception report block (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative packets lost, a 24-bit signed value.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received (LSR), 0 if none.
    pub last_sr: u32,
    /// Delay since that SR in 1/65536 s (DLSR).
    pub delay_since_last_sr: u32,
}

/// The sender information section of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// 64-bit NTP wall-clock time (seconds since 1900 in the high 32 bits). The caller reads
    /// the clock; this crate does not.
    pub ntp_timestamp: u64,
    /// The RTP timestamp corresponding to the same instant.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// One packet of a parsed compound RTCP datagram. Packet types this crate does not use
/// (APP, feedback, XR...) are skipped by [`parse_compound`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    SourceDescription {
        chunks: Vec<SdesChunk>,
    },
    Bye {
        ssrcs: Vec<u32>,
        reason: Option<String>,
    },
}

/// An SDES chunk; only the CNAME item is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: u32,
    pub cname: Option<String>,
}

fn push_header(out: &mut Vec<u8>, count: u8, packet_type: u8) -> usize {
    let start = out.len();
    out.push(0x80 | (count & 0x1f));
    out.push(packet_type);
    out.extend_from_slice(&[0, 0]); // length, patched by finish_packet
    start
}

fn finish_packet(out: &mut [u8], start: usize) {
    // Every packet is built in whole 32-bit words; the length field counts words minus one.
    let words = (out.len() - start) / 4 - 1;
    let len = (words as u16).to_be_bytes();
    out[start + 2] = len[0];
    out[start + 3] = len[1];
}

fn push_report_block(out: &mut Vec<u8>, rb: &ReportBlock) {
    out.extend_from_slice(&rb.ssrc.to_be_bytes());
    let lost = (rb.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
    out.extend_from_slice(&((u32::from(rb.fraction_lost) << 24) | lost).to_be_bytes());
    out.extend_from_slice(&rb.extended_highest_seq.to_be_bytes());
    out.extend_from_slice(&rb.jitter.to_be_bytes());
    out.extend_from_slice(&rb.last_sr.to_be_bytes());
    out.extend_from_slice(&rb.delay_since_last_sr.to_be_bytes());
}

fn push_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let start = push_header(out, 1, PT_SDES);
    out.extend_from_slice(&ssrc.to_be_bytes());
    // An item holds at most 255 octets; cut on a character boundary.
    let mut end = cname.len().min(255);
    while !cname.is_char_boundary(end) {
        end -= 1;
    }
    let text = &cname.as_bytes()[..end];
    out.push(SDES_CNAME);
    out.push(text.len() as u8);
    out.extend_from_slice(text);
    // The item list ends with at least one null octet, then pads to a 32-bit boundary.
    out.push(0);
    while out.len() & 3 != 0 {
        out.push(0);
    }
    finish_packet(out, start);
}

/// Builds a compound SR (with at most one report block) followed by SDES CNAME into `out`,
/// replacing its contents.
pub fn build_sender_report(
    ssrc: u32,
    info: &SenderInfo,
    report: Option<&ReportBlock>,
    cname: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    let start = push_header(out, u8::from(report.is_some()), PT_SR);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packet_count.to_be_bytes());
    out.extend_from_slice(&info.octet_count.to_be_bytes());
    if let Some(rb) = report {
        push_report_block(out, rb);
    }
    finish_packet(out, start);
    push_sdes_cname(out, ssrc, cname);
}

/// Builds a compound RR (with at most one report block) followed by SDES CNAME into `out`,
/// replacing its contents.
pub fn build_receiver_report(
    ssrc: u32,
    report: Option<&ReportBlock>,
    cname: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    let start = push_header(out, u8::from(report.is_some()), PT_RR);
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(rb) = report {
        push_report_block(out, rb);
    }
    finish_packet(out, start);
    push_sdes_cname(out, ssrc, cname);
}

/// Builds a compound RR (no blocks) + SDES CNAME + BYE for `ssrc`, as sent when a stream ends
/// (RFC 3550 section 6.6: a BYE must still be in a compound packet).
pub fn build_bye(ssrc: u32, cname: &str, out: &mut Vec<u8>) {
    build_receiver_report(ssrc, None, cname, out);
    let start = push_header(out, 1, PT_BYE);
    out.extend_from_slice(&ssrc.to_be_bytes());
    finish_packet(out, start);
}

fn parse_report_blocks(body: &[u8], count: usize) -> Result<Vec<ReportBlock>, RtpError> {
    let mut reports = Vec::with_capacity(count.min(31));
    for i in 0..count {
        let at = i * 24;
        let field = |off: usize| read_u32(body, at + off).ok_or(RtpError::MalformedRtcp("report block"));
        let lost_word = field(4)?;
        // Sign-extend the 24-bit cumulative loss.
        let cumulative_lost = ((lost_word << 8) as i32) >> 8;
        reports.push(ReportBlock {
            ssrc: field(0)?,
            fraction_lost: (lost_word >> 24) as u8,
            cumulative_lost,
            extended_highest_seq: field(8)?,
            jitter: field(12)?,
            last_sr: field(16)?,
            delay_since_last_sr: field(20)?,
        });
    }
    Ok(reports)
}

fn parse_sdes(body: &[u8], count: usize) -> Result<Vec<SdesChunk>, RtpError> {
    let err = RtpError::MalformedRtcp("SDES");
    let mut chunks = Vec::with_capacity(count.min(31));
    let mut at = 0usize;
    for _ in 0..count {
        let ssrc = read_u32(body, at).ok_or(err.clone())?;
        at += 4;
        let mut cname = None;
        loop {
            let item = *body.get(at).ok_or(err.clone())?;
            if item == 0 {
                at += 1;
                break;
            }
            let len = usize::from(*body.get(at + 1).ok_or(err.clone())?);
            let text = body.get(at + 2..at + 2 + len).ok_or(err.clone())?;
            if item == SDES_CNAME {
                cname = Some(String::from_utf8_lossy(text).into_owned());
            }
            at += 2 + len;
        }
        // Chunks start on 32-bit boundaries.
        at = at.div_ceil(4) * 4;
        chunks.push(SdesChunk { ssrc, cname });
    }
    Ok(chunks)
}

fn parse_bye(body: &[u8], count: usize) -> Result<(Vec<u32>, Option<String>), RtpError> {
    let err = RtpError::MalformedRtcp("BYE");
    let mut ssrcs = Vec::with_capacity(count.min(31));
    for i in 0..count {
        ssrcs.push(read_u32(body, i * 4).ok_or(err.clone())?);
    }
    let rest = body.get(count * 4..).unwrap_or(&[]);
    let reason = match rest.split_first() {
        Some((&len, text)) if len > 0 => {
            let text = text.get(..usize::from(len)).ok_or(err)?;
            Some(String::from_utf8_lossy(text).into_owned())
        }
        _ => None,
    };
    Ok((ssrcs, reason))
}

/// Parses a compound RTCP datagram. Every packet must be version 2 and fit in the datagram;
/// packet types other than SR, RR, SDES and BYE are skipped.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtpError> {
    let mut packets = Vec::new();
    let mut at = 0usize;
    if buf.len() < 4 {
        return Err(RtpError::TooShort(buf.len()));
    }
    while at < buf.len() {
        let b0 = *buf.get(at).ok_or(RtpError::TruncatedRtcp)?;
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let packet_type = *buf.get(at + 1).ok_or(RtpError::TruncatedRtcp)?;
        let words = read_u16(buf, at + 2).ok_or(RtpError::TruncatedRtcp)?;
        let len = (usize::from(words) + 1) * 4;
        let packet = buf.get(at..at + len).ok_or(RtpError::TruncatedRtcp)?;
        at += len;
        let count = usize::from(b0 & 0x1f);
        let mut body = &packet[4..]; // len >= 4
        if b0 & 0x20 != 0 {
            let pad = usize::from(*packet.last().unwrap_or(&0));
            if pad == 0 || pad > body.len() {
                return Err(RtpError::MalformedRtcp("padding"));
            }
            body = &body[..body.len() - pad];
        }
        match packet_type {
            PT_SR => {
                let field = |off| read_u32(body, off).ok_or(RtpError::MalformedRtcp("SR"));
                let ntp_hi = field(4)?;
                let ntp_lo = field(8)?;
                packets.push(RtcpPacket::SenderReport {
                    ssrc: field(0)?,
                    info: SenderInfo {
                        ntp_timestamp: (u64::from(ntp_hi) << 32) | u64::from(ntp_lo),
                        rtp_timestamp: field(12)?,
                        packet_count: field(16)?,
                        octet_count: field(20)?,
                    },
                    reports: parse_report_blocks(body.get(24..).unwrap_or(&[]), count)?,
                });
            }
            PT_RR => {
                let ssrc = read_u32(body, 0).ok_or(RtpError::MalformedRtcp("RR"))?;
                packets.push(RtcpPacket::ReceiverReport {
                    ssrc,
                    reports: parse_report_blocks(body.get(4..).unwrap_or(&[]), count)?,
                });
            }
            PT_SDES => packets.push(RtcpPacket::SourceDescription {
                chunks: parse_sdes(body, count)?,
            }),
            PT_BYE => {
                let (ssrcs, reason) = parse_bye(body, count)?;
                packets.push(RtcpPacket::Bye { ssrcs, reason });
            }
            _ => {}
        }
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: ReportBlock = ReportBlock {
        ssrc: 0x0a0b0c0d,
        fraction_lost: 0x40,
        cumulative_lost: -2,
        extended_highest_seq: 0x0001_0005,
        jitter: 0x20,
        last_sr: 0x1122_3344,
        delay_since_last_sr: 0x0000_8000,
    };

    #[test]
    fn sender_report_is_byte_exact() {
        let info = SenderInfo {
            ntp_timestamp: 0xe000_0001_8000_0000,
            rtp_timestamp: 0x0000_1f40,
            packet_count: 50,
            octet_count: 8000,
        };
        let mut out = Vec::new();
        build_sender_report(0x1234_5678, &info, Some(&BLOCK), "ab", &mut out);
        let expected: Vec<u8> = vec![
            0x81, 200, 0x00, 0x0c, // V=2 RC=1 SR, length 12 words
            0x12, 0x34, 0x56, 0x78, // ssrc
            0xe0, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00, 0x00, // NTP
            0x00, 0x00, 0x1f, 0x40, // RTP ts
            0x00, 0x00, 0x00, 0x32, // packets
            0x00, 0x00, 0x1f, 0x40, // octets
            0x0a, 0x0b, 0x0c, 0x0d, // block ssrc
            0x40, 0xff, 0xff, 0xfe, // fraction, cumulative -2
            0x00, 0x01, 0x00, 0x05, // ext highest seq
            0x00, 0x00, 0x00, 0x20, // jitter
            0x11, 0x22, 0x33, 0x44, // LSR
            0x00, 0x00, 0x80, 0x00, // DLSR
            0x81, 202, 0x00, 0x03, // SDES SC=1, length 3 words
            0x12, 0x34, 0x56, 0x78, // ssrc
            0x01, 0x02, b'a', b'b', // CNAME "ab"
            0x00, 0x00, 0x00, 0x00, // end of items + padding: 4 null octets
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn receiver_report_is_byte_exact() {
        let mut out = Vec::new();
        build_receiver_report(0x0102_0304, None, "x@y", &mut out);
        assert_eq!(
            out,
            vec![
                0x80, 201, 0x00, 0x01, 0x01, 0x02, 0x03, 0x04, // RR, no blocks
                0x81, 202, 0x00, 0x03, 0x01, 0x02, 0x03, 0x04, // SDES
                0x01, 0x03, b'x', b'@', b'y', 0x00, 0x00, 0x00, // CNAME + null + pad
            ]
        );
    }

    #[test]
    fn compound_round_trip() {
        let info = SenderInfo {
            ntp_timestamp: 0x0102_0304_0506_0708,
            rtp_timestamp: 9,
            packet_count: 10,
            octet_count: 11,
        };
        let mut out = Vec::new();
        build_sender_report(77, &info, Some(&BLOCK), "dialtone@example", &mut out);
        let parsed = parse_compound(&out).unwrap();
        assert_eq!(
            parsed,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 77,
                    info,
                    reports: vec![BLOCK]
                },
                RtcpPacket::SourceDescription {
                    chunks: vec![SdesChunk {
                        ssrc: 77,
                        cname: Some("dialtone@example".into())
                    }]
                },
            ]
        );
        build_receiver_report(78, Some(&BLOCK), "c", &mut out);
        assert_eq!(
            parse_compound(&out).unwrap()[0],
            RtcpPacket::ReceiverReport {
                ssrc: 78,
                reports: vec![BLOCK]
            }
        );
        build_bye(79, "c", &mut out);
        assert_eq!(
            parse_compound(&out).unwrap()[2],
            RtcpPacket::Bye {
                ssrcs: vec![79],
                reason: None
            }
        );
    }

    #[test]
    fn parses_bye_with_reason_and_skips_unknown() {
        let bytes = [
            0x80, 201, 0x00, 0x01, 0, 0, 0, 5, // RR
            0x80, 204, 0x00, 0x02, 0, 0, 0, 5, b'n', b'a', b'm', b'e', // APP, skipped
            0x81, 203, 0x00, 0x03, 0, 0, 0, 5, 0x04, b'd', b'o', b'n', b'e', 0, 0, 0, // BYE
        ];
        let parsed = parse_compound(&bytes).unwrap();
        assert_eq!(
            parsed,
            vec![
                RtcpPacket::ReceiverReport {
                    ssrc: 5,
                    reports: vec![]
                },
                RtcpPacket::Bye {
                    ssrcs: vec![5],
                    reason: Some("done".into())
                },
            ]
        );
    }

    #[test]
    fn rejects_malformed_compound() {
        assert_eq!(parse_compound(&[0x80, 201]), Err(RtpError::TooShort(2)));
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtpError::BadVersion(1))
        );
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 5, 0, 0, 0, 0]),
            Err(RtpError::TruncatedRtcp)
        );
        // RC says one block but none is present.
        assert_eq!(
            parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtpError::MalformedRtcp("report block"))
        );
        // SDES item length runs past the packet.
        assert_eq!(
            parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', 0]),
            Err(RtpError::MalformedRtcp("SDES"))
        );
    }

    #[test]
    fn parse_never_panics_on_truncations() {
        let mut out = Vec::new();
        build_sender_report(1, &SenderInfo::default(), Some(&BLOCK), "abc", &mut out);
        for len in 0..out.len() {
            let _ = parse_compound(&out[..len]);
            let mut m = out[..len].to_vec();
            for i in 0..m.len() {
                let saved = m[i];
                m[i] = 0xff;
                let _ = parse_compound(&m);
                m[i] = saved;
            }
        }
    }
}
