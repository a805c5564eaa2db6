//! Tone generation: the `<Record>` beep and DTMF tones, at 8 kHz.

use std::f64::consts::PI;

use crate::SAMPLE_RATE;

/// Frequency of the record beep.
pub const BEEP_HZ: f64 = 1000.0;
/// Length of the record beep: 400 ms, i.e. 20 frames.
pub const BEEP_MS: u32 = 400;
/// Level of the record beep.
pub const BEEP_DBFS: f64 = -9.0;

/// Length of the raised-cosine fade at each end of a tone, so it starts and stops without a click.
const FADE_MS: u32 = 5;

/// The beep played before `<Record>` starts recording: a 1 kHz sine, 400 ms (a whole number of
/// 20 ms frames), at -9 dBFS, with 5 ms fades. Twilio does not document its beep; this is the
/// conventional answering-machine beep, short enough not to eat into the caller's message.
pub fn beep() -> Vec<i16> {
    sine(BEEP_HZ, BEEP_MS, BEEP_DBFS)
}

fn amplitude(dbfs: f64) -> f64 {
    32767.0 * 10f64.powf(dbfs / 20.0)
}

fn fade_gain(i: usize, len: usize) -> f64 {
    let fade = (SAMPLE_RATE * FADE_MS / 1000) as usize;
    let edge = i.min(len - 1 - i);
    if edge >= fade {
        1.0
    } else {
        0.5 - 0.5 * (PI * edge as f64 / fade as f64).cos()
    }
}

/// A sine tone of `freq_hz` lasting `duration_ms`, with peak level `dbfs` (0 = full scale) and
/// short fades at both ends.
pub fn sine(freq_hz: f64, duration_ms: u32, dbfs: f64) -> Vec<i16> {
    mix(&[freq_hz], duration_ms, dbfs)
}

/// A DTMF tone pair for `digit` (`0-9 * # A-D`) lasting `duration_ms`, each component at -10 dBFS
/// peak. `None` for other characters.
pub fn dtmf(digit: char, duration_ms: u32) -> Option<Vec<i16>> {
    let (row, col) = crate::dtmf::frequencies(digit)?;
    Some(mix(&[row, col], duration_ms, -10.0))
}

fn mix(freqs: &[f64], duration_ms: u32, dbfs: f64) -> Vec<i16> {
    let len = (u64::from(SAMPLE_RATE) * u64::from(duration_ms) / 1000) as usize;
    let amp = amplitude(dbfs);
    (0..len)
        .map(|i| {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let v: f64 = freqs.iter().map(|f| (2.0 * PI * f * t).sin()).sum();
            (v * amp * fade_gain(i, len)).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FRAME_SAMPLES;

    #[test]
    fn beep_is_whole_frames_of_1khz() {
        let b = beep();
        assert_eq!(b.len(), 20 * FRAME_SAMPLES);
        // 1 kHz at 8 kHz: 8 samples per period, so 2 rising zero crossings per 16 samples.
        let rising = b.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        assert!((398..=401).contains(&rising), "{rising}");
        let peak = b.iter().map(|s| s.unsigned_abs()).max().unwrap();
        let expected = amplitude(BEEP_DBFS);
        assert!((f64::from(peak) - expected).abs() < expected * 0.01);
        // Fades: the first and last samples are near zero.
        assert!(b[0].abs() < 100 && b[b.len() - 1].abs() < 100);
    }

    #[test]
    fn dtmf_tones_exist_only_for_dtmf_digits() {
        assert_eq!(dtmf('5', 100).unwrap().len(), 800);
        assert!(dtmf('x', 100).is_none());
    }
}
