//! Any bytes: parsing never panics, and whatever parses serializes into something that
//! parses again to the same transaction-relevant fields.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sip::parse_message_unchecked(data);
    if let Ok(msg) = sip::parse_message(data) {
        let bytes = msg.to_bytes();
        let again = sip::parse_message(&bytes).expect("serialized message must re-parse");
        let (a, b) = (msg.headers(), again.headers());
        assert_eq!(a.call_id(), b.call_id());
        assert_eq!(a.cseq(), b.cseq());
        assert_eq!(a.vias(), b.vias());
        assert_eq!(a.from(), b.from());
        assert_eq!(a.to(), b.to());
        assert_eq!(msg.body(), again.body());
        // The typed views of every header must not panic either.
        let _ = a.contact();
        let _ = a.routes("Record-Route");
        let _ = a.max_forwards();
        if let sip::Message::Request(req) = &msg {
            let _ = sip::dialog::DialogId::for_incoming(req);
        }
    }
});
