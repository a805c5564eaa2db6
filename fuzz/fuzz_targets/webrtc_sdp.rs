//! A browser's session description, as a browser leg takes it: str0m parses the offer and an
//! ICE-lite, PCMU/PCMA session like a browser leg's answers it. Neither may panic, and an
//! answer, when there is one, parses again.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use str0m::change::SdpOffer;
use str0m::{Candidate, RtcConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = SdpOffer::from_sdp_string(text) else { return };
    let mut rtc = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_pcmu(true, false)
        .enable_pcma(true, false)
        .build(Instant::now());
    let local = Candidate::host("127.0.0.1:20000".parse().unwrap(), "udp").unwrap();
    rtc.add_local_candidate(local);
    if let Ok(answer) = rtc.sdp_api().accept_offer(offer) {
        let again = answer.to_sdp_string();
        assert!(str0m::change::SdpAnswer::from_sdp_string(&again).is_ok(), "{again}");
    }
});
