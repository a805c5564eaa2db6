//! Any text: SDP parsing and negotiation never panic, and an answer built from a
//! negotiated offer parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::sdp::{answer, negotiate, Codec, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = SessionDescription::parse(text) else { return };
    if let Ok(n) = negotiate(&offer, &[Codec::Pcmu, Codec::Pcma]) {
        let text = answer(&n, "192.0.2.1".parse().unwrap(), 4000, 1, 1);
        let ans = SessionDescription::parse(&text).expect("our answer must parse");
        assert_eq!(ans.media.len(), offer.media.len().max(1));
    }
});
