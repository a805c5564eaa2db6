//! Any fetched file, with the Content-Types `<Play>` sees most: decoding never panics and
//! whatever decodes is bounded by the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Files are fetched whole; past this the fuzzer spends its time decoding, not exploring.
const MAX_INPUT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    for hint in [None, Some("audio/wav"), Some("audio/mpeg")] {
        if let Ok(samples) = media::decode_audio(data, hint) {
            // Output is 8 kHz mono and the input is capped at MAX_DECODED_SECONDS.
            assert!(samples.len() as u64 <= (media::MAX_DECODED_SECONDS + 1) * 8000);
        }
    }
});
