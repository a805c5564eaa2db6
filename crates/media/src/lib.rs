//! Audio signal processing for Dialtone's media plane, without I/O.
//!
//! This crate owns what happens to samples: G.711 companding ([`g711`], [`Codec`]), decoding
//! audio files that `<Play>` fetches into 8 kHz mono ([`decode_audio`]), the band-limited
//! resampler behind it ([`resample`]), tones such as the `<Record>` beep ([`tone`]), signal level
//! and silence detection ([`level`]), in-band DTMF detection ([`dtmf`]) and conference mixing with
//! a limiter ([`mix`]).
//!
//! It is driven by the media worker in `node` once per 20 ms frame of [`FRAME_SAMPLES`] samples,
//! and by the audio cache once per fetched file. Everything works on caller-provided slices and
//! buffers; the per-frame paths do not allocate once the caller's buffers have grown. Nothing here
//! reads a clock, file or socket: durations are counted in samples.

mod decode;
pub mod dtmf;
pub mod g711;
pub mod level;
pub mod mix;
pub mod resample;
pub mod tone;

pub use decode::{decode_audio, DecodeError, MAX_DECODED_SECONDS};

/// The sample rate of everything this crate produces and consumes (narrowband telephony).
pub const SAMPLE_RATE: u32 = 8000;

/// Samples in one 20 ms frame at 8 kHz, the packetisation interval of the media worker.
pub const FRAME_SAMPLES: usize = 160;

/// The G.711 variants negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law, RTP payload type 0.
    Pcmu,
    /// G.711 A-law, RTP payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(&self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Encodes `pcm` into `out`, replacing its contents (one byte per sample). Reusing `out`
    /// across frames avoids allocation.
    pub fn encode(&self, pcm: &[i16], out: &mut Vec<u8>) {
        out.clear();
        out.resize(pcm.len(), 0);
        self.encode_into(pcm, out);
    }

    /// Decodes `payload` into `out`, replacing its contents (one sample per byte).
    pub fn decode(&self, payload: &[u8], out: &mut Vec<i16>) {
        out.clear();
        out.resize(payload.len(), 0);
        self.decode_into(payload, out);
    }

    /// Encodes into a fixed slice; converts `min(pcm.len(), out.len())` samples and returns that
    /// count.
    pub fn encode_into(&self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = pcm.len().min(out.len());
        let encode = match self {
            Codec::Pcmu => g711::ulaw_encode,
            Codec::Pcma => g711::alaw_encode,
        };
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = encode(s);
        }
        n
    }

    /// Decodes into a fixed slice; converts `min(payload.len(), out.len())` bytes and returns
    /// that count.
    pub fn decode_into(&self, payload: &[u8], out: &mut [i16]) -> usize {
        let n = payload.len().min(out.len());
        let decode = match self {
            Codec::Pcmu => g711::ulaw_decode,
            Codec::Pcma => g711::alaw_decode,
        };
        for (o, &b) in out.iter_mut().zip(payload) {
            *o = decode(b);
        }
        n
    }

    /// The code word for digital silence, for filling gaps without computing it.
    pub fn silence_byte(&self) -> u8 {
        match self {
            Codec::Pcmu => 0xff,
            Codec::Pcma => 0xd5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_round_trip_frames() {
        let pcm: Vec<i16> = (0..FRAME_SAMPLES as i32)
            .map(|i| ((i * 397) % 20000 - 10000) as i16)
            .collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut enc = vec![1, 2, 3];
            codec.encode(&pcm, &mut enc);
            assert_eq!(enc.len(), FRAME_SAMPLES);
            let mut dec = Vec::new();
            codec.decode(&enc, &mut dec);
            assert_eq!(dec.len(), FRAME_SAMPLES);
            for (a, b) in pcm.iter().zip(&dec) {
                let err = (i32::from(*a) - i32::from(*b)).abs();
                assert!(err <= i32::from(*a).abs() / 16 + 16, "{a} -> {b}");
            }
            assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
            let mut silent = Vec::new();
            codec.decode(&[codec.silence_byte(); 4], &mut silent);
            assert!(silent.iter().all(|s| s.abs() <= 8));
        }
        assert_eq!(Codec::from_payload_type(18), None);
    }

    #[test]
    fn slice_variants_stop_at_the_shorter_side() {
        let mut out = [0u8; 2];
        assert_eq!(Codec::Pcmu.encode_into(&[0, 0, 0], &mut out), 2);
        assert_eq!(out, [0xff, 0xff]);
        let mut pcm = [1i16; 3];
        assert_eq!(Codec::Pcma.decode_into(&[0xd5, 0x55], &mut pcm), 2);
        assert_eq!(pcm, [8, -8, 1]);
    }
}
