//! RTP fixed header, CSRC list, header extension and padding (RFC 3550 section 5.1).

use crate::RtpError;

/// Length of the fixed RTP header without CSRCs or extension.
pub const FIXED_HEADER_LEN: usize = 12;

/// The fields of the fixed RTP header that a telephony stream uses.
///
/// The version is always 2; CSRCs, extension and padding are only seen on receive and are carried by
/// [`RtpPacket`], so a header can be built with a struct literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A header extension (RFC 3550 section 5.3.1): the 16-bit profile field and its data words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    pub profile: u16,
    /// The extension data, a multiple of 4 bytes, not including the 4-byte extension header.
    pub data: &'a [u8],
}

/// The CSRC list of a received packet, kept as the raw bytes so parsing does not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Csrcs<'a> {
    raw: &'a [u8],
}

impl<'a> Csrcs<'a> {
    pub fn len(&self) -> usize {
        self.raw.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// A parsed RTP packet borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    /// The payload with any padding removed.
    pub payload: &'a [u8],
    pub csrcs: Csrcs<'a>,
    pub extension: Option<HeaderExtension<'a>>,
    /// Number of padding octets that were stripped (0 when the P bit is clear).
    pub padding: u8,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

pub(crate) fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    be16(b, at)
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    be32(b, at)
}

/// Parses one RTP packet. Never panics; every malformation is an [`RtpError`].
pub fn parse_rtp(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if buf.len() < FIXED_HEADER_LEN {
        return Err(RtpError::TooShort(buf.len()));
    }
    let b0 = buf[0]; // length checked above
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let has_padding = b0 & 0x20 != 0;
    let has_extension = b0 & 0x10 != 0;
    let csrc_count = usize::from(b0 & 0x0f);
    let b1 = buf[1];
    let header = RtpHeader {
        payload_type: b1 & 0x7f,
        marker: b1 & 0x80 != 0,
        // The three reads cannot fail: the buffer holds at least 12 bytes.
        sequence: be16(buf, 2).unwrap_or(0),
        timestamp: be32(buf, 4).unwrap_or(0),
        ssrc: be32(buf, 8).unwrap_or(0),
    };

    let mut offset = FIXED_HEADER_LEN;
    let csrc_end = offset + csrc_count * 4;
    let csrc_raw = buf.get(offset..csrc_end).ok_or(RtpError::TruncatedCsrc)?;
    offset = csrc_end;

    let extension = if has_extension {
        let profile = be16(buf, offset).ok_or(RtpError::TruncatedExtension)?;
        let words = be16(buf, offset + 2).ok_or(RtpError::TruncatedExtension)?;
        let start = offset + 4;
        let end = start + usize::from(words) * 4;
        let data = buf.get(start..end).ok_or(RtpError::TruncatedExtension)?;
        offset = end;
        Some(HeaderExtension { profile, data })
    } else {
        None
    };

    let mut end = buf.len();
    let mut padding = 0u8;
    if has_padding {
        // The buffer is at least 12 bytes, so a last byte exists.
        let count = buf.last().copied().unwrap_or(0);
        let available = end - offset;
        if count == 0 || usize::from(count) > available {
            return Err(RtpError::BadPadding {
                padding: count,
                available,
            });
        }
        padding = count;
        end -= usize::from(count);
    }

    Ok(RtpPacket {
        header,
        payload: &buf[offset..end], // offset <= end: checked by the gets and the padding test
        csrcs: Csrcs { raw: csrc_raw },
        extension,
        padding,
    })
}

/// Writes a packet with no CSRCs, extension or padding. Replaces the contents of `out`
/// (its capacity is kept, so a reused buffer does not allocate).
pub fn write_rtp(header: &RtpHeader, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(FIXED_HEADER_LEN + payload.len());
    out.push(0x80);
    out.push((u8::from(header.marker) << 7) | (header.payload_type & 0x7f));
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// True when the datagram looks like RTCP rather than RTP (RFC 5761 section 4: the second octet
/// of SR, RR, SDES, BYE and APP is 200..=204), for demultiplexing a shared port.
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(200..=204))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_packet() {
        let bytes = [
            0x80, 0x00, 0x12, 0x34, 0x00, 0x00, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef, 0xff, 0x7f,
        ];
        let p = parse_rtp(&bytes).unwrap();
        assert_eq!(
            p.header,
            RtpHeader {
                payload_type: 0,
                marker: false,
                sequence: 0x1234,
                timestamp: 320,
                ssrc: 0xdeadbeef
            }
        );
        assert_eq!(p.payload, &[0xff, 0x7f]);
        assert!(p.csrcs.is_empty());
        assert_eq!(p.extension, None);
        assert_eq!(p.padding, 0);
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        let bytes = [
            0xb2, 0xe5, 0x00, 0x01, // V=2 P=1 X=1 CC=2, M=1 PT=101
            0x00, 0x00, 0x00, 0x0a, // timestamp 10
            0x00, 0x00, 0x00, 0x07, // ssrc 7
            0x00, 0x00, 0x00, 0x01, // csrc 1
            0x00, 0x00, 0x00, 0x02, // csrc 2
            0xbe, 0xde, 0x00, 0x01, // extension profile 0xBEDE, 1 word
            0x10, 0xaa, 0x00, 0x00, // extension data
            0x05, 0x0a, 0x00, 0xa0, // payload
            0x00, 0x00, 0x03, // padding, count 3
        ];
        let p = parse_rtp(&bytes).unwrap();
        assert!(p.header.marker);
        assert_eq!(p.header.payload_type, 101);
        assert_eq!(p.header.timestamp, 10);
        assert_eq!(p.header.ssrc, 7);
        assert_eq!(p.csrcs.iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.csrcs.len(), 2);
        let ext = p.extension.unwrap();
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(ext.data, &[0x10, 0xaa, 0, 0]);
        assert_eq!(p.payload, &[0x05, 0x0a, 0x00, 0xa0]);
        assert_eq!(p.padding, 3);
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(parse_rtp(&[0x80; 11]), Err(RtpError::TooShort(11)));
        let mut v1 = [0u8; 12];
        v1[0] = 0x40;
        assert_eq!(parse_rtp(&v1), Err(RtpError::BadVersion(1)));
        let mut cc = [0u8; 16];
        cc[0] = 0x82; // two CSRCs but room for one
        assert_eq!(parse_rtp(&cc), Err(RtpError::TruncatedCsrc));
        let mut ext = [0u8; 16];
        ext[0] = 0x90;
        ext[15] = 1; // one extension word that is not there
        assert_eq!(parse_rtp(&ext), Err(RtpError::TruncatedExtension));
        let mut pad = [0u8; 14];
        pad[0] = 0xa0;
        pad[13] = 3; // 3 padding octets but only 2 after the header
        assert_eq!(
            parse_rtp(&pad),
            Err(RtpError::BadPadding {
                padding: 3,
                available: 2
            })
        );
        pad[13] = 0;
        assert!(matches!(parse_rtp(&pad), Err(RtpError::BadPadding { .. })));
    }

    #[test]
    fn parse_never_panics_on_prefixes_and_flags() {
        let base = [
            0xb2, 0xe5, 0x00, 0x01, 0, 0, 0, 10, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde,
            0x00, 0x01, 0x10, 0xaa, 0, 0, 5, 0x0a, 0, 0xa0, 0, 0, 3,
        ];
        for len in 0..=base.len() {
            for first in [0x80u8, 0x9f, 0xbf, 0xaf, 0xa0] {
                let mut b = base[..len].to_vec();
                if let Some(x) = b.first_mut() {
                    *x = first;
                }
                let _ = parse_rtp(&b);
            }
        }
    }

    #[test]
    fn writes_byte_exact_header() {
        let h = RtpHeader {
            payload_type: 8,
            marker: true,
            sequence: 0xfffe,
            timestamp: 0x01020304,
            ssrc: 0xcafebabe,
        };
        let mut out = vec![9, 9, 9];
        write_rtp(&h, &[0xd5, 0xd5], &mut out);
        assert_eq!(
            out,
            vec![
                0x80, 0x88, 0xff, 0xfe, 0x01, 0x02, 0x03, 0x04, 0xca, 0xfe, 0xba, 0xbe, 0xd5, 0xd5
            ]
        );
        let back = parse_rtp(&out).unwrap();
        assert_eq!(back.header, h);
        assert_eq!(back.payload, &[0xd5, 0xd5]);
    }

    #[test]
    fn recognises_rtcp() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201, 0, 7]));
        assert!(!is_rtcp(&[0x80, 0x00]));
        assert!(!is_rtcp(&[]));
    }
}
