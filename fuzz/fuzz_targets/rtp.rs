//! Any datagram: RTP parsing never panics, accounts for every octet, and a parsed packet
//! written back out parses to the same header and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rtp::is_rtcp(data);
    let Ok(pkt) = rtp::parse_rtp(data) else { return };
    let extension = pkt.extension.map_or(0, |e| 4 + e.data.len());
    assert_eq!(pkt.header.payload_type & 0x80, 0);
    assert_eq!(pkt.csrcs.iter().count(), pkt.csrcs.len());
    assert_eq!(
        rtp::FIXED_HEADER_LEN
            + pkt.csrcs.len() * 4
            + extension
            + pkt.payload.len()
            + usize::from(pkt.padding),
        data.len()
    );

    // The writer reuses the caller's buffer: start from junk to check it is replaced.
    let mut out = vec![0xa5; 7];
    rtp::write_rtp(&pkt.header, pkt.payload, &mut out);
    assert_eq!(out.len(), rtp::FIXED_HEADER_LEN + pkt.payload.len());
    let again = rtp::parse_rtp(&out).expect("a written packet must parse");
    assert_eq!(again.header, pkt.header);
    assert_eq!(again.payload, pkt.payload);
    assert!(again.csrcs.is_empty());
    assert_eq!(again.extension, None);
    assert_eq!(again.padding, 0);
});
