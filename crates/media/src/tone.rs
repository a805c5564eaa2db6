//! Tone generation: the `<Record>` beep, ringback and DTMF tones, at 8 kHz.

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

/// The two frequencies of the North American ringback tone (ANSI T1.401).
pub const RINGBACK_HZ: [f64; 2] = [440.0, 480.0];
/// Ringback cadence: 2 s of tone, then 4 s of silence.
pub const RINGBACK_ON_MS: u32 = 2000;
pub const RINGBACK_OFF_MS: u32 = 4000;
/// Level of each ringback component (-19 dBm0 is the North American figure; about -16 dBFS).
pub const RINGBACK_DBFS: f64 = -16.0;

/// One ringback cadence (440 + 480 Hz for 2 s, then 4 s of silence), played in a loop to a caller
/// while the callee rings. Ringback is what North American phones (and Twilio) play; the whole
/// cadence is one buffer so looping it keeps the rhythm.
pub fn ringback() -> Vec<i16> {
    let mut samples = mix(&RINGBACK_HZ, RINGBACK_ON_MS, RINGBACK_DBFS);
    let off = (u64::from(SAMPLE_RATE) * u64::from(RINGBACK_OFF_MS) / 1000) as usize;
    samples.resize(samples.len() + off, 0);
    samples
}

/// Length of one pass of [`hold_music`]: 16 bars of 2 s.
pub const HOLD_MUSIC_MS: u32 = 32_000;
/// Peak level of the hold music: quiet enough to sit under speech, loud enough to tell the line
/// is alive (its RMS is about -24 dBFS).
pub const HOLD_MUSIC_DBFS: f64 = -12.0;

/// Dialtone's default hold music, played to callers in a queue or waiting for a conference to
/// start when the application gives no `waitUrl`: a slow arpeggio over a four-chord
/// progression (I–vi–IV–V in C, 60 beats a minute, eighth notes), synthesised here from
/// decaying sines with a soft second harmonic, so it ships with the code under the project's
/// own licence and needs no file. 32 s long, made to loop seamlessly.
pub fn hold_music() -> Vec<i16> {
    // MIDI note numbers of each chord's arpeggio (root, third, fifth, octave, fifth, third...).
    const CHORDS: [[u8; 4]; 4] = [[60, 64, 67, 72], [57, 60, 64, 69], [53, 57, 60, 65], [55, 59, 62, 67]];
    const PATTERN: [usize; 8] = [0, 1, 2, 3, 2, 1, 2, 1];
    let note_samples = (SAMPLE_RATE / 4) as usize; // an eighth note at 120 eighths a minute
    let total = (u64::from(SAMPLE_RATE) * u64::from(HOLD_MUSIC_MS) / 1000) as usize;
    let mut out = vec![0f64; total];
    let bars = total / (note_samples * PATTERN.len());
    for bar in 0..bars {
        let chord = CHORDS[bar % CHORDS.len()];
        for (step, &index) in PATTERN.iter().enumerate() {
            let freq = 440.0 * 2f64.powf((f64::from(chord[index]) - 69.0) / 12.0);
            let start = (bar * PATTERN.len() + step) * note_samples;
            // Each note rings on under the next (1.5 notes), decaying.
            let len = note_samples * 3 / 2;
            for i in 0..len {
                let Some(slot) = out.get_mut((start + i) % total) else {
                    continue;
                };
                let t = i as f64 / f64::from(SAMPLE_RATE);
                let attack = (i as f64 / 40.0).min(1.0);
                let release = ((len - i) as f64 / 200.0).min(1.0);
                let envelope = attack * release * (-3.0 * t).exp();
                let phase = 2.0 * PI * freq * t;
                *slot += envelope * (phase.sin() + 0.25 * (2.0 * phase).sin());
            }
            // A bass note on each bar's first beat.
            if step == 0 {
                let bass = freq / 2.0;
                for i in 0..(note_samples * 8) {
                    let Some(slot) = out.get_mut((start + i) % total) else {
                        continue;
                    };
                    let t = i as f64 / f64::from(SAMPLE_RATE);
                    let envelope = (i as f64 / 80.0).min(1.0) * (-1.2 * t).exp();
                    *slot += 0.6 * envelope * (2.0 * PI * bass * t).sin();
                }
            }
        }
    }
    let peak = out.iter().fold(0f64, |m, s| m.max(s.abs())).max(1e-9);
    let gain = amplitude(HOLD_MUSIC_DBFS) / peak;
    out.into_iter().map(|s| (s * gain).round() as i16).collect()
}

/// The beep a conference plays when a participant joins: a rising two-tone chime (600 then
/// 900 Hz, 120 ms each), -12 dBFS.
pub fn conference_enter_beep() -> Vec<i16> {
    let mut samples = sine(600.0, 120, -12.0);
    samples.extend(sine(900.0, 120, -12.0));
    samples
}

/// The beep a conference plays when a participant leaves: the enter chime falling (900 then
/// 600 Hz).
pub fn conference_exit_beep() -> Vec<i16> {
    let mut samples = sine(900.0, 120, -12.0);
    samples.extend(sine(600.0, 120, -12.0));
    samples
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
            (v * amp * fade_gain(i, len))
                .round()
                .clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_music_is_music_at_a_comfortable_level_and_loops() {
        let music = hold_music();
        assert_eq!(music.len(), 8 * HOLD_MUSIC_MS as usize);
        let rms = crate::level::rms_dbfs(&music);
        assert!((-30.0..-18.0).contains(&rms), "rms {rms}");
        // Every second has sound in it (no gaps a caller would take for a dead line).
        for second in music.chunks(8000) {
            assert!(crate::level::rms_dbfs(second) > -40.0);
        }
        // The loop point joins without a jump bigger than the music's own steps.
        let (first, last) = (music[0], music[music.len() - 1]);
        assert!((i32::from(first) - i32::from(last)).abs() < 3000, "{first} {last}");
    }
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
    fn ringback_is_two_seconds_of_tone_then_four_of_silence() {
        let r = ringback();
        assert_eq!(r.len(), 6 * SAMPLE_RATE as usize);
        let (on, off) = r.split_at(2 * SAMPLE_RATE as usize);
        assert!(off.iter().all(|&s| s == 0));
        // Two components at -16 dBFS each: RMS of the pair about -16 dBFS (each -19 dB RMS).
        let level = crate::level::rms_dbfs(&on[800..15200]);
        assert!((level - -16.0).abs() < 1.0, "{level}");
        // 440 and 480 Hz beat at 40 Hz: the envelope dips every 25 ms (200 samples); sample one beat.
        let window_peak = |from: usize| {
            on[from..from + 20]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap()
        };
        let peaks: Vec<u16> = (0..8).map(|k| window_peak(2000 + 25 * k)).collect();
        assert!(
            peaks.iter().max().unwrap() > &(peaks.iter().min().unwrap() * 3),
            "{peaks:?}"
        );
        // The loop boundary is smooth: the tone fades in from zero.
        assert!(r[0].abs() < 100);
    }

    #[test]
    fn dtmf_tones_exist_only_for_dtmf_digits() {
        assert_eq!(dtmf('5', 100).unwrap().len(), 800);
        assert!(dtmf('x', 100).is_none());
    }
}
