//! Any datagram on a browser leg's port once SRTP is keyed: opening it never panics and refuses
//! what was not protected with the session's keys; a packet we protect opens to itself on the
//! other side, once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srtp::{Srtp, SrtpKeys};
use str0m::crypto::dtls::SrtpProfile;

fn keys(profile: SrtpProfile, active: bool) -> SrtpKeys {
    let len = match profile {
        SrtpProfile::AES128_CM_SHA1_80 => 60,
        SrtpProfile::AEAD_AES_128_GCM => 56,
        _ => 88,
    };
    SrtpKeys {
        profile,
        material: (0..len).map(|i| (i * 13 + 1) as u8).collect(),
        active,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, packet)) = data.split_first() else { return };
    let profile = match choice % 3 {
        0 => SrtpProfile::AES128_CM_SHA1_80,
        1 => SrtpProfile::AEAD_AES_128_GCM,
        _ => SrtpProfile::AEAD_AES_256_GCM,
    };
    let crypto = srtp::capture_provider();
    let mut ours = Srtp::new(&crypto, &keys(profile, false)).expect("keys of the right length");
    let mut peer = Srtp::new(&crypto, &keys(profile, true)).expect("keys of the right length");
    let mut out = Vec::new();
    // Arbitrary bytes are forgeries: the tag cannot match.
    assert!(!ours.unprotect(packet, &mut out));

    if srtp::rtp_header_len(packet).is_some() {
        let mut sealed = Vec::new();
        assert!(peer.protect(packet, &mut sealed));
        assert!(ours.unprotect(&sealed, &mut out), "a protected packet opens");
        assert_eq!(out, packet);
        assert!(!ours.unprotect(&sealed, &mut out), "a replay is refused");
    }
});
