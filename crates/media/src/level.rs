//! Signal level and silence detection, for `<Record timeout>` and trimming.

use std::time::Duration;

/// The level reported for digital silence (and empty input) instead of minus infinity.
pub const FLOOR_DBFS: f32 = -100.0;

/// RMS level of `samples` in dBFS, where 0 dBFS is a full-scale square wave (a full-scale sine is
/// about -3 dBFS). Returns [`FLOOR_DBFS`] for silence or an empty slice.
pub fn rms_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return FLOOR_DBFS;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return FLOOR_DBFS;
    }
    ((20.0 * rms.log10()) as f32).max(FLOOR_DBFS)
}

/// The level of one frequency in `samples` in dBFS (a full-scale sine at `freq_hz` reads about
/// -3 dBFS, as [`rms_dbfs`] would read it alone), by the Goertzel filter: to tell which tones a
/// mix holds (conference tests, tone detection). Frequencies within about
/// `sample_rate / samples.len()` Hz of each other are not told apart.
pub fn tone_dbfs(samples: &[i16], freq_hz: f64, sample_rate: u32) -> f32 {
    if samples.is_empty() {
        return FLOOR_DBFS;
    }
    let w = 2.0 * std::f64::consts::PI * freq_hz / f64::from(sample_rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    // A sine of amplitude A gives |X| = A * N / 2; its RMS is A / sqrt(2).
    let amplitude = 2.0 * power.sqrt() / samples.len() as f64;
    let rms = amplitude / std::f64::consts::SQRT_2;
    if rms <= 0.0 {
        return FLOOR_DBFS;
    }
    ((20.0 * rms.log10()) as f32).max(FLOOR_DBFS)
}

/// Tracks how long the input has been silent, frame by frame, for `<Record timeout>`.
///
/// A frame is loud when its RMS level is at or above the threshold (default
/// [`SilenceDetector::DEFAULT_THRESHOLD_DBFS`]). [`SilenceDetector::silent_for`] is the time since
/// the last loud frame (or since the start) and [`SilenceDetector::timed_out`] says whether that
/// has reached the timeout. The hangover only affects [`SilenceDetector::is_speech`], which stays
/// true for a while after the last loud frame so the gaps between words are not the end of speech.
#[derive(Debug, Clone)]
pub struct SilenceDetector {
    sample_rate: u32,
    threshold_dbfs: f32,
    timeout_samples: u64,
    hangover_samples: u64,
    silent_samples: u64,
    speech_seen: bool,
}

impl SilenceDetector {
    /// Default threshold: quieter than this is line noise. Speech on a phone line is typically
    /// -40 to -15 dBFS; idle lines and comfort noise sit below -50.
    pub const DEFAULT_THRESHOLD_DBFS: f32 = -45.0;
    /// Default hangover.
    pub const DEFAULT_HANGOVER: Duration = Duration::from_millis(300);

    /// A detector for audio at `sample_rate` that times out after `timeout` of silence.
    pub fn new(sample_rate: u32, timeout: Duration) -> Self {
        let sample_rate = sample_rate.max(1);
        SilenceDetector {
            sample_rate,
            threshold_dbfs: Self::DEFAULT_THRESHOLD_DBFS,
            timeout_samples: samples_in(timeout, sample_rate),
            hangover_samples: samples_in(Self::DEFAULT_HANGOVER, sample_rate),
            silent_samples: 0,
            speech_seen: false,
        }
    }

    pub fn with_threshold_dbfs(mut self, threshold_dbfs: f32) -> Self {
        self.threshold_dbfs = threshold_dbfs;
        self
    }

    pub fn with_hangover(mut self, hangover: Duration) -> Self {
        self.hangover_samples = samples_in(hangover, self.sample_rate);
        self
    }

    /// Accounts for one frame (any length) and returns [`Self::silent_for`].
    pub fn handle_frame(&mut self, frame: &[i16]) -> Duration {
        self.is_silent(frame);
        self.silent_for()
    }

    /// Accounts for one frame (any length) and returns whether it was below the threshold.
    pub fn is_silent(&mut self, frame: &[i16]) -> bool {
        let silent = rms_dbfs(frame) < self.threshold_dbfs;
        if silent {
            self.silent_samples = self.silent_samples.saturating_add(frame.len() as u64);
        } else {
            self.silent_samples = 0;
            self.speech_seen = true;
        }
        silent
    }

    /// Accounts for `samples` known to be silent without looking at them (lost or suppressed
    /// packets) and returns [`Self::timed_out`].
    pub fn handle_silence(&mut self, samples: usize) -> bool {
        self.silent_samples = self.silent_samples.saturating_add(samples as u64);
        self.timed_out()
    }

    /// How long the input has been continuously below the threshold.
    pub fn silent_for(&self) -> Duration {
        Duration::from_micros(
            (u128::from(self.silent_samples) * 1_000_000 / u128::from(self.sample_rate))
                .min(u128::from(u64::MAX)) as u64,
        )
    }

    /// Whether the silence has lasted the timeout.
    pub fn timed_out(&self) -> bool {
        self.silent_samples >= self.timeout_samples
    }

    /// Whether speech is in progress: a loud frame was seen within the hangover.
    pub fn is_speech(&self) -> bool {
        self.speech_seen && self.silent_samples <= self.hangover_samples
    }

    /// Whether any loud frame has been seen since creation or the last reset.
    pub fn speech_seen(&self) -> bool {
        self.speech_seen
    }

    pub fn reset(&mut self) {
        self.silent_samples = 0;
        self.speech_seen = false;
    }
}

fn samples_in(d: Duration, sample_rate: u32) -> u64 {
    (d.as_micros() * u128::from(sample_rate) / 1_000_000).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_level_picks_one_frequency_out_of_a_mix() {
        let n = 8000;
        let mix: Vec<i16> = (0..n)
            .map(|i| {
                let t = i as f64 / 8000.0;
                (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * t).sin()
                    + 4000.0 * (2.0 * std::f64::consts::PI * 1300.0 * t).sin())
                    as i16
            })
            .collect();
        let l500 = tone_dbfs(&mix, 500.0, 8000);
        let l1300 = tone_dbfs(&mix, 1300.0, 8000);
        let l900 = tone_dbfs(&mix, 900.0, 8000);
        // 8000/32768 peak = -12.2 dBFS peak, -15.3 dBFS RMS; half that is 6 dB less.
        assert!((l500 + 15.3).abs() < 0.5, "{l500}");
        assert!((l1300 + 21.3).abs() < 0.5, "{l1300}");
        assert!(l900 < -60.0, "{l900}");
    }
    use crate::{tone, FRAME_SAMPLES};

    #[test]
    fn rms_levels() {
        assert_eq!(rms_dbfs(&[]), FLOOR_DBFS);
        assert_eq!(rms_dbfs(&[0; 160]), FLOOR_DBFS);
        let square: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert!(rms_dbfs(&square).abs() < 0.01);
        // A sine with peak at -9 dBFS has RMS 3 dB lower.
        let sine = tone::sine(1000.0, 100, -9.0);
        let level = rms_dbfs(&sine[40..760]);
        assert!((level - (-12.01)).abs() < 0.1, "{level}");
        let half = vec![16384i16; 160];
        assert!((rms_dbfs(&half) + 6.02).abs() < 0.01);
    }

    #[test]
    fn silence_is_timed_from_the_last_loud_frame() {
        let mut det = SilenceDetector::new(8000, Duration::from_secs(5))
            .with_threshold_dbfs(-40.0)
            .with_hangover(Duration::from_millis(200));
        let loud = tone::sine(440.0, 20, -10.0);
        let quiet = vec![3i16; FRAME_SAMPLES];
        assert_eq!(det.handle_frame(&quiet), Duration::from_millis(20));
        assert!(!det.speech_seen());
        assert_eq!(det.handle_frame(&loud[..FRAME_SAMPLES]), Duration::ZERO);
        assert!(det.is_speech());
        for _ in 0..10 {
            det.handle_frame(&quiet);
        }
        assert_eq!(det.silent_for(), Duration::from_millis(200));
        assert!(det.is_speech(), "still within the hangover");
        det.handle_frame(&quiet);
        assert!(!det.is_speech());
        for _ in 0..238 {
            det.handle_frame(&quiet);
        }
        assert!(!det.timed_out());
        assert!(det.is_silent(&quiet));
        assert_eq!(det.silent_for(), Duration::from_secs(5));
        assert!(det.timed_out());
        assert!(det.speech_seen());
        det.reset();
        assert_eq!(det.silent_for(), Duration::ZERO);
        assert!(!det.speech_seen());
        assert!(!det.handle_silence(8000 * 4));
        assert!(det.handle_silence(8000));
        assert!(!det.is_silent(&loud[..FRAME_SAMPLES]));
        assert!(!det.timed_out());
    }
}
