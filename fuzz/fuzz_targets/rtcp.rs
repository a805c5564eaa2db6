//! Any datagram: compound RTCP parsing never panics, and the sender and receiver reports it
//! finds survive being rebuilt with this crate's writers and parsed again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp::rtcp::{build_bye, build_receiver_report, build_sender_report, parse_compound, RtcpPacket};

/// The CNAME of the first SDES chunk, if one fits an SDES item unchanged.
fn first_cname(packets: &[RtcpPacket]) -> String {
    packets
        .iter()
        .find_map(|p| match p {
            RtcpPacket::SourceDescription { chunks } => chunks.iter().find_map(|c| c.cname.clone()),
            _ => None,
        })
        .filter(|c| c.len() <= 255)
        .unwrap_or_else(|| "fuzz@example.com".to_owned())
}

fn cname_of(packets: &[RtcpPacket]) -> Option<&str> {
    match packets.get(1) {
        Some(RtcpPacket::SourceDescription { chunks }) => chunks.first()?.cname.as_deref(),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = parse_compound(data) else { return };
    let cname = first_cname(&packets);
    let mut out = Vec::new();
    for packet in &packets {
        match packet {
            RtcpPacket::SenderReport { ssrc, info, reports } => {
                build_sender_report(*ssrc, info, reports.first(), &cname, &mut out);
                let again = parse_compound(&out).expect("a built SR must parse");
                let expected = RtcpPacket::SenderReport {
                    ssrc: *ssrc,
                    info: *info,
                    reports: reports.iter().take(1).copied().collect(),
                };
                assert_eq!(again.first(), Some(&expected));
                assert_eq!(cname_of(&again), Some(cname.as_str()));
            }
            RtcpPacket::ReceiverReport { ssrc, reports } => {
                build_receiver_report(*ssrc, reports.first(), &cname, &mut out);
                let again = parse_compound(&out).expect("a built RR must parse");
                let expected = RtcpPacket::ReceiverReport {
                    ssrc: *ssrc,
                    reports: reports.iter().take(1).copied().collect(),
                };
                assert_eq!(again.first(), Some(&expected));
                assert_eq!(cname_of(&again), Some(cname.as_str()));
            }
            RtcpPacket::Bye { ssrcs, .. } => {
                let Some(&ssrc) = ssrcs.first() else { continue };
                build_bye(ssrc, &cname, &mut out);
                let again = parse_compound(&out).expect("a built BYE must parse");
                assert_eq!(again.len(), 3);
                assert_eq!(again.last(), Some(&RtcpPacket::Bye { ssrcs: vec![ssrc], reason: None }));
            }
            _ => {}
        }
    }
});
