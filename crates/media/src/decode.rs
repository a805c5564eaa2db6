//! Decoding fetched audio files (WAV, MP3) to 8 kHz mono for playback.

use std::io::Cursor;

use crate::resample::Resampler;
use crate::{g711, SAMPLE_RATE};

/// Longest audio accepted, in seconds of input, to bound memory and time spent on one file.
pub const MAX_DECODED_SECONDS: u64 = 30 * 60;

/// Why a file could not be decoded. All of these are the fault of the file (or its server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("the audio file is empty")]
    Empty,
    #[error("unsupported audio format: {0}")]
    Unsupported(String),
    #[error("malformed audio file: {0}")]
    Malformed(String),
    #[error("the audio is longer than {MAX_DECODED_SECONDS} seconds")]
    TooLong,
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_ALAW: u16 = 6;
const WAVE_FORMAT_MULAW: u16 = 7;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xfffe;

/// Decodes a WAV or MP3 file to 8 kHz mono 16-bit samples.
///
/// `hint` is the Content-Type or file name/extension, if known (e.g. `audio/mpeg`, `x.mp3`); the
/// bytes are sniffed first, so a wrong hint does no harm. WAV may be 8/16/24/32-bit integer PCM,
/// 32-bit float, mu-law or A-law, at any rate and channel count; channels are averaged and the
/// result is resampled with a low-pass filter.
pub fn decode_audio(bytes: &[u8], hint: Option<&str>) -> Result<Vec<i16>, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let hint = hint.unwrap_or("").to_ascii_lowercase();
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return decode_wav(bytes);
    }
    let mp3_sync = bytes.len() >= 2 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0;
    if bytes.starts_with(b"ID3") || mp3_sync || hint.contains("mp3") || hint.contains("mpeg") {
        return decode_mp3(bytes);
    }
    if hint.contains("wav") {
        return Err(DecodeError::Malformed("not a RIFF/WAVE file".into()));
    }
    Err(DecodeError::Unsupported(if hint.is_empty() {
        "not WAV or MP3".into()
    } else {
        format!("not WAV or MP3 ({hint})")
    }))
}

/// Mixes interleaved frames to mono, resamples and collects the output.
struct Pipeline {
    channels: usize,
    rate: u32,
    resampler: Resampler,
    mono: Vec<f32>,
    out: Vec<f32>,
    frames: u64,
    max_frames: u64,
}

impl Pipeline {
    fn new(channels: usize, rate: u32) -> Result<Self, DecodeError> {
        if channels == 0 {
            return Err(DecodeError::Malformed("zero channels".into()));
        }
        let resampler = Resampler::new(rate, SAMPLE_RATE)
            .ok_or_else(|| DecodeError::Unsupported(format!("sample rate {rate} Hz")))?;
        Ok(Pipeline {
            channels,
            rate,
            resampler,
            mono: Vec::new(),
            out: Vec::new(),
            frames: 0,
            max_frames: MAX_DECODED_SECONDS * u64::from(rate),
        })
    }

    /// Takes interleaved samples in -1.0..1.0; a trailing partial frame is dropped.
    fn push(&mut self, interleaved: &[f32]) -> Result<(), DecodeError> {
        self.mono.clear();
        let scale = 1.0 / self.channels as f32;
        self.mono.extend(
            interleaved
                .chunks_exact(self.channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
        self.frames += self.mono.len() as u64;
        if self.frames > self.max_frames {
            return Err(DecodeError::TooLong);
        }
        self.resampler.process(&self.mono, &mut self.out);
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<i16>, DecodeError> {
        if self.frames == 0 {
            return Err(DecodeError::Empty);
        }
        self.resampler.finish(&mut self.out);
        Ok(self
            .out
            .iter()
            .map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .collect())
    }
}

struct WavFormat<'a> {
    format_tag: u16,
    channels: u16,
    sample_rate: u32,
    bits: u16,
    block_align: u16,
    data: &'a [u8],
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Walks the RIFF chunks for `fmt ` and `data`. A data chunk whose size runs past the end of the
/// file (written by a streaming encoder that never patched it) is cut to what is present.
fn parse_riff(bytes: &[u8]) -> Result<WavFormat<'_>, DecodeError> {
    let bad = |m: &str| DecodeError::Malformed(m.to_string());
    let mut at = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4]; // in bounds: at + 8 <= len
        let size = le32(bytes, at + 4).ok_or_else(|| bad("chunk header"))? as usize;
        let body_start = at + 8;
        let body_end = body_start.saturating_add(size).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                let field = |off| le16(body, off).ok_or_else(|| bad("short fmt chunk"));
                let mut tag = field(0)?;
                let channels = field(2)?;
                let rate = le32(body, 4).ok_or_else(|| bad("short fmt chunk"))?;
                let block_align = field(12)?;
                let bits = field(14)?;
                if tag == WAVE_FORMAT_EXTENSIBLE {
                    // The real format is the first two bytes of the SubFormat GUID.
                    tag = le16(body, 24).ok_or_else(|| bad("short extensible fmt chunk"))?;
                }
                fmt = Some((tag, channels, rate, bits, block_align));
            }
            b"data" => {
                let (format_tag, channels, sample_rate, bits, block_align) =
                    fmt.ok_or_else(|| bad("data chunk before fmt chunk"))?;
                return Ok(WavFormat {
                    format_tag,
                    channels,
                    sample_rate,
                    bits,
                    block_align,
                    data: body,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body_start.saturating_add(size).saturating_add(size & 1);
    }
    Err(bad(if fmt.is_some() {
        "no data chunk"
    } else {
        "no fmt chunk"
    }))
}

fn decode_wav(bytes: &[u8]) -> Result<Vec<i16>, DecodeError> {
    let wav = parse_riff(bytes)?;
    match wav.format_tag {
        WAVE_FORMAT_MULAW | WAVE_FORMAT_ALAW => decode_g711_wav(&wav),
        WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT => decode_pcm_wav(bytes),
        other => Err(DecodeError::Unsupported(format!(
            "WAV format tag {other:#06x}"
        ))),
    }
}

fn decode_g711_wav(wav: &WavFormat<'_>) -> Result<Vec<i16>, DecodeError> {
    if wav.bits != 8 || wav.block_align != wav.channels {
        return Err(DecodeError::Malformed(format!(
            "G.711 WAV with {} bits and block align {}",
            wav.bits, wav.block_align
        )));
    }
    let mut pipeline = Pipeline::new(usize::from(wav.channels), wav.sample_rate)?;
    let decode = if wav.format_tag == WAVE_FORMAT_MULAW {
        g711::ulaw_decode
    } else {
        g711::alaw_decode
    };
    let mut buf = Vec::with_capacity(4096);
    // Chunks that hold whole frames, so a frame is never split between two pushes.
    let chunk = 4096 / pipeline.channels * pipeline.channels;
    for part in wav.data.chunks(chunk.max(pipeline.channels)) {
        buf.clear();
        buf.extend(part.iter().map(|&b| f32::from(decode(b)) / 32768.0));
        pipeline.push(&buf)?;
    }
    pipeline.finish()
}

fn decode_pcm_wav(bytes: &[u8]) -> Result<Vec<i16>, DecodeError> {
    let reader = hound::WavReader::new(Cursor::new(bytes))
        .map_err(|e| DecodeError::Malformed(format!("WAV: {e}")))?;
    let spec = reader.spec();
    let mut pipeline = Pipeline::new(usize::from(spec.channels), spec.sample_rate)?;
    let frame = usize::from(spec.channels);
    let batch = (4096 / frame).max(1) * frame;
    let mut buf: Vec<f32> = Vec::with_capacity(batch);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            // A read error part-way is a truncated file: play what arrived.
            for s in reader.into_samples::<i32>().map_while(Result::ok) {
                buf.push(s as f32 * scale);
                if buf.len() == batch {
                    pipeline.push(&buf)?;
                    buf.clear();
                }
            }
        }
        (hound::SampleFormat::Float, 32) => {
            for s in reader.into_samples::<f32>().map_while(Result::ok) {
                buf.push(if s.is_finite() { s } else { 0.0 });
                if buf.len() == batch {
                    pipeline.push(&buf)?;
                    buf.clear();
                }
            }
        }
        (format, bits) => {
            return Err(DecodeError::Unsupported(format!(
                "{bits}-bit {format:?} WAV"
            )))
        }
    }
    pipeline.push(&buf)?;
    pipeline.finish()
}

fn decode_mp3(bytes: &[u8]) -> Result<Vec<i16>, DecodeError> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
    use symphonia::core::errors::Error;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let malformed = |e: Error| DecodeError::Malformed(format!("MP3: {e}"));
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    // A probe that knows MP3 alone: the default one also scans the bytes for other formats'
    // markers and would hand a RIFF header buried in the data to its WAV reader, which panics
    // on a sample rate of 0 (found by the decode_audio fuzz target). WAV is read by
    // `decode_wav`, which checks its header.
    let mut probe = symphonia::core::probe::Probe::default();
    probe.register_all::<symphonia::default::formats::MpaReader>();
    let probed = probe
        .format(
            &hint,
            source,
            // Gapless trims the encoder delay and padding the LAME header records, so the
            // decoded length matches the original.
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(malformed)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| DecodeError::Malformed("no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| DecodeError::Unsupported(format!("MP3: {e}")))?;

    let mut pipeline: Option<Pipeline> = None;
    let mut samples: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(Error::ResetRequired) => break,
            Err(e) => return Err(malformed(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A corrupt frame is skipped, as players do.
            Err(Error::DecodeError(_)) => continue,
            Err(e) => return Err(malformed(e)),
        };
        let spec = *decoded.spec();
        let p = match pipeline.as_mut() {
            Some(p) => p,
            None => pipeline.insert(Pipeline::new(spec.channels.count(), spec.rate)?),
        };
        if p.rate != spec.rate || p.channels != spec.channels.count() {
            return Err(DecodeError::Unsupported(
                "MP3 whose sample rate or channel count changes".into(),
            ));
        }
        let capacity = decoded.capacity() as u64;
        let buf = match samples.as_mut() {
            Some(b) if b.capacity() as u64 >= capacity => b,
            _ => samples.insert(SampleBuffer::new(capacity, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        p.push(buf.samples())?;
    }
    pipeline
        .ok_or_else(|| DecodeError::Malformed("MP3 without decodable frames".into()))?
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the decode_audio fuzz target): a RIFF/WAVE header with a sample
    /// rate of 0 one byte into data taken as MP3 reached symphonia's WAV reader through the
    /// default probe, which panicked.
    #[test]
    fn a_wav_header_inside_mp3_data_is_an_error_not_a_panic() {
        let data = include_bytes!("../testdata/riff_in_mp3_sample_rate_0.bin");
        for hint in [None, Some("audio/mpeg"), Some("mp3")] {
            assert!(decode_audio(data, hint).is_err(), "{hint:?}");
        }
    }
    use std::f64::consts::PI;

    fn tone_wav(
        freq: f64,
        rate: u32,
        channels: u16,
        seconds: f64,
        spec_bits: u16,
        float: bool,
    ) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: spec_bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        let n = (f64::from(rate) * seconds) as usize;
        let full = ((1i64 << (spec_bits - 1)) - 1) as f64;
        for i in 0..n {
            let v = 0.5 * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin();
            for _ in 0..channels {
                if float {
                    w.write_sample(v as f32).unwrap();
                } else {
                    w.write_sample((v * full).round() as i32).unwrap();
                }
            }
        }
        w.finalize().unwrap();
        cursor.into_inner()
    }

    /// A WAV of G.711 code words, written by hand (hound cannot).
    fn g711_wav(tag: u16, rate: u32, channels: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(4 + 26 + 8 + 12 + 8 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(channels)).to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&8u16.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        // A chunk the decoder must skip, with odd size and its pad byte.
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&[1, 2, 3, 0]);
        v.extend_from_slice(b"fact");
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    /// Relative power of `freq` in `x` (Goertzel), normalised so a full-amplitude sine gives ~1.
    fn goertzel(x: &[i16], freq: f64) -> f64 {
        let w = 2.0 * PI * freq / 8000.0;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) / 32768.0 + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        power / (x.len() as f64 / 2.0).powi(2)
    }

    fn rising_zero_crossings(x: &[i16]) -> usize {
        x.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count()
    }

    fn middle(x: &[i16]) -> &[i16] {
        &x[x.len() / 4..x.len() * 3 / 4]
    }

    #[test]
    fn wav_44k_stereo_440hz_tone() {
        let wav = tone_wav(440.0, 44100, 2, 1.0, 16, false);
        let pcm = decode_audio(&wav, Some("audio/wav")).unwrap();
        assert!((pcm.len() as i64 - 8000).abs() <= 160, "len {}", pcm.len());
        // 440 Hz over the middle 0.5 s: 220 rising zero crossings.
        let zc = rising_zero_crossings(middle(&pcm));
        assert!((219..=221).contains(&zc), "{zc} crossings");
        let p440 = goertzel(middle(&pcm), 440.0);
        assert!((p440 - 0.25).abs() < 0.02, "440 Hz power {p440}");
        assert!(goertzel(middle(&pcm), 1000.0) < 1e-4);
    }

    #[test]
    fn high_tone_is_attenuated_and_nothing_aliases() {
        let wav = tone_wav(3900.0, 44100, 2, 0.5, 16, false);
        let pcm = decode_audio(&wav, None).unwrap();
        let level = crate::level::rms_dbfs(middle(&pcm));
        // A 0.5 amplitude sine is -9 dBFS RMS; 3.9 kHz sits in the transition band.
        assert!(level < -30.0, "3.9 kHz at {level} dBFS");
        let wav = tone_wav(4500.0, 44100, 1, 0.5, 16, false);
        let pcm = decode_audio(&wav, None).unwrap();
        let level = crate::level::rms_dbfs(middle(&pcm));
        assert!(level < -70.0, "4.5 kHz (alias at 3.5 kHz) at {level} dBFS");
    }

    #[test]
    fn wav_rates_and_sample_formats() {
        for (rate, bits, float) in [
            (8000, 16, false),
            (11025, 8, false),
            (16000, 24, false),
            (22050, 32, false),
            (48000, 32, true),
        ] {
            let wav = tone_wav(1000.0, rate, 1, 0.5, bits, float);
            let pcm = decode_audio(&wav, Some("file.wav")).unwrap();
            assert!(
                (pcm.len() as i64 - 4000).abs() <= 160,
                "{rate}/{bits}: {}",
                pcm.len()
            );
            let p = goertzel(middle(&pcm), 1000.0);
            assert!((p - 0.25).abs() < 0.03, "{rate}/{bits}/{float}: power {p}");
        }
    }

    #[test]
    fn mulaw_and_alaw_wav() {
        let pcm8k = crate::tone::sine(440.0, 500, -6.0);
        for (tag, enc) in [
            (WAVE_FORMAT_MULAW, g711::ulaw_encode as fn(i16) -> u8),
            (WAVE_FORMAT_ALAW, g711::alaw_encode),
        ] {
            let data: Vec<u8> = pcm8k.iter().map(|&s| enc(s)).collect();
            let out = decode_audio(&g711_wav(tag, 8000, 1, &data), None).unwrap();
            assert_eq!(out.len(), pcm8k.len());
            for (a, b) in out.iter().zip(&pcm8k) {
                assert!((i32::from(*a) - i32::from(*b)).abs() <= i32::from(*b).abs() / 16 + 16);
            }
            // Stereo at 16 kHz is mixed and resampled. The 8 kHz-generated 440 Hz tone played at
            // 16 kHz is 880 Hz: 220 rising crossings in the middle 0.25 s.
            let stereo: Vec<u8> = crate::tone::sine(440.0, 1000, -6.0)
                .iter()
                .flat_map(|&s| [enc(s), enc(s)])
                .collect();
            let out = decode_audio(&g711_wav(tag, 16000, 2, &stereo), None).unwrap();
            assert_eq!(out.len(), 4000);
            let zc = rising_zero_crossings(middle(&out));
            assert!((219..=221).contains(&zc), "{zc}");
        }
    }

    const MP3_440: &[u8] = include_bytes!("../testdata/tone440_44k1_stereo_1s.mp3");

    #[test]
    fn mp3_440hz_tone() {
        let pcm = decode_audio(MP3_440, Some("audio/mpeg")).unwrap();
        assert!((pcm.len() as i64 - 8000).abs() <= 160, "len {}", pcm.len());
        let zc = rising_zero_crossings(middle(&pcm));
        assert!((219..=221).contains(&zc), "{zc} crossings");
        let p440 = goertzel(middle(&pcm), 440.0);
        assert!((p440 - 0.25).abs() < 0.03, "440 Hz power {p440}");
        // Sniffed without a hint too.
        assert_eq!(decode_audio(MP3_440, None).unwrap(), pcm);
        // A truncated download still gives what was there, or an error, never a panic.
        for cut in [10, 100, 1000, 3000] {
            let _ = decode_audio(&MP3_440[..cut], Some("x.mp3"));
        }
    }

    /// Deterministic header mutations of valid files: decoding may fail, never panic.
    #[test]
    fn mutated_headers_never_panic() {
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let pcm = tone_wav(440.0, 8000, 2, 0.02, 16, false);
        let ulaw = g711_wav(WAVE_FORMAT_MULAW, 8000, 1, &[0xff; 64]);
        for base in [&pcm, &ulaw] {
            for _ in 0..3000 {
                let mut m = base.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % 60;
                    m[at] = next() as u8;
                }
                let _ = decode_audio(&m, None);
            }
        }
        for _ in 0..20 {
            // A prefix keeps this fast; the frames that matter are at the start.
            let mut m = MP3_440[..2500].to_vec();
            for _ in 0..8 {
                let at = (next() as usize) % m.len();
                m[at] = next() as u8;
            }
            let _ = decode_audio(&m, Some("audio/mpeg"));
        }
    }

    #[test]
    fn truncated_data_chunk_plays_what_is_there() {
        let data = vec![0xffu8; 800];
        let mut wav = g711_wav(WAVE_FORMAT_MULAW, 8000, 1, &data);
        wav.truncate(wav.len() - 400);
        assert_eq!(decode_audio(&wav, None).unwrap().len(), 400);
        let mut pcm = tone_wav(440.0, 8000, 1, 0.1, 16, false);
        pcm.truncate(pcm.len() - 200);
        assert_eq!(decode_audio(&pcm, None).unwrap().len(), 700);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(decode_audio(&[], None), Err(DecodeError::Empty));
        assert!(matches!(
            decode_audio(b"hello world", None),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            decode_audio(b"hello world", Some("audio/x-wav")),
            Err(DecodeError::Malformed(_))
        ));
        let wav = g711_wav(WAVE_FORMAT_ALAW, 8000, 1, &[0xd5; 64]);
        for len in 0..wav.len() {
            let _ = decode_audio(&wav[..len], None);
        }
        let pcm = tone_wav(440.0, 44100, 2, 0.01, 16, false);
        for len in 0..100 {
            let _ = decode_audio(&pcm[..len], None);
        }
        let mut bad_rate = g711_wav(WAVE_FORMAT_MULAW, 8000, 1, &[0xff; 64]);
        bad_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode_audio(&bad_rate, None).is_err());
        let mut zero_channels = g711_wav(WAVE_FORMAT_MULAW, 8000, 1, &[0xff; 64]);
        zero_channels[22..24].copy_from_slice(&0u16.to_le_bytes());
        assert!(decode_audio(&zero_channels, None).is_err());
        let mut adpcm = g711_wav(WAVE_FORMAT_MULAW, 8000, 1, &[0xff; 64]);
        adpcm[20..22].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(
            decode_audio(&adpcm, None),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(decode_audio(&[0xff, 0xfb, 0x90, 0x00, 1, 2, 3], None).is_err());
    }
}
