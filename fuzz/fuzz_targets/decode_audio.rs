//! Any fetched file, with no Content-Type and with the two `<Play>` sees most: decoding never
//! panics and its output stays within the decoder's length cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::{decode_audio, DecodeError, MAX_DECODED_SECONDS, SAMPLE_RATE};

/// Files are fetched whole; past this the fuzzer spends its time decoding, not exploring.
const MAX_INPUT: usize = 64 * 1024;

/// 8 kHz mono output for at most MAX_DECODED_SECONDS of input, plus the resampler's tail.
fn check(result: &Result<Vec<i16>, DecodeError>) {
    if let Ok(samples) = result {
        let cap = (MAX_DECODED_SECONDS + 1) * u64::from(SAMPLE_RATE);
        assert!(samples.len() as u64 <= cap, "{} samples", samples.len());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let sniffed = decode_audio(data, None);
    check(&sniffed);
    // Bytes that sniff as WAV or MP3 are decoded the same whatever the hint says, so only
    // input the sniffer could not place is worth decoding again under each hint (this keeps
    // the target three times faster on real audio).
    if matches!(sniffed, Err(DecodeError::Unsupported(_))) {
        for hint in ["audio/wav", "audio/mpeg"] {
            check(&decode_audio(data, Some(hint)));
        }
    }
});
