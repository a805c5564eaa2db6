//! Any stream of telephone-event packets: parsing never panics, the payload survives a
//! write/parse round trip, and the receiver reports at most one digit per packet, only the
//! digit the packet carries, and never for an exact duplicate of the packet before.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp::dtmf::{event_to_char, DtmfReceiver, TelephoneEvent};
use rtp::RtpHeader;

fuzz_target!(|data: &[u8]| {
    let mut receiver = DtmfReceiver::new();
    let mut header = RtpHeader { payload_type: 101, ..RtpHeader::default() };
    let mut rest = data;
    // Each packet is a control byte, a timestamp step byte and up to 7 payload bytes, so the
    // fuzzer can reach repeated timestamps, small steps, backward steps and wrap-around.
    while let [control, step, tail @ ..] = rest {
        let len = usize::from(control & 0x07).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        header.marker = control & 0x80 != 0;
        header.ssrc = u32::from(control & 0x40 != 0);
        header.sequence = header.sequence.wrapping_add(1);
        header.timestamp = match *step {
            0 => header.timestamp,
            0x80 => header.timestamp.wrapping_add(0x8000_0000),
            s => header.timestamp.wrapping_add((s as i8 as i32 * 160) as u32),
        };

        let parsed = TelephoneEvent::parse(payload);
        if let Ok(ev) = parsed {
            let bytes = ev.to_bytes();
            assert_eq!(TelephoneEvent::parse(&bytes), Ok(ev));
            // Only the reserved R bit is dropped.
            assert_eq!(bytes[0], payload[0]);
            assert_eq!(bytes[1], payload[1] & !0x40);
            assert_eq!(bytes[2..], payload[2..4]);
        } else {
            assert!(payload.len() < 4);
        }

        let digit = receiver.handle_packet(&header, payload);
        if let Some(d) = digit {
            let ev = parsed.expect("a digit comes from a parsable payload");
            assert_eq!(Some(d), event_to_char(ev.event));
        }
        // A retransmission of the same packet is never a new key press.
        let mut replay = receiver.clone();
        assert_eq!(replay.handle_packet(&header, payload), None);
    }
});
