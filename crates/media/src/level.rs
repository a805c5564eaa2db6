//! Signal level and silence detection, for `<Record timeout>` and trimming.

use std::time::Duration;

use crate::SAMPLE_RATE;

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

/// Tracks how long the input has been silent, frame by frame.
///
/// A frame is loud when its RMS level is at or above the threshold. [`SilenceDetector::silent_for`]
/// is the time since the last loud frame (or since the start), which `<Record timeout>` compares
/// with its limit. The hangover keeps [`SilenceDetector::is_speech`] true for a while after the
/// last loud frame, so the gaps between words do not count as the end of speech.
#[derive(Debug, Clone)]
pub struct SilenceDetector {
    threshold_dbfs: f32,
    hangover_samples: u64,
    silent_samples: u64,
    speech_seen: bool,
}

impl SilenceDetector {
    /// Default threshold: quieter than this is treated as line noise. Speech is typically -40 to
    /// -15 dBFS on a phone line.
    pub const DEFAULT_THRESHOLD_DBFS: f32 = -45.0;
    /// Default hangover.
    pub const DEFAULT_HANGOVER: Duration = Duration::from_millis(300);

    pub fn new(threshold_dbfs: f32, hangover: Duration) -> Self {
        SilenceDetector {
            threshold_dbfs,
            hangover_samples: samples_in(hangover),
            silent_samples: 0,
            speech_seen: false,
        }
    }

    /// Accounts for one frame of 8 kHz samples (any length) and returns [`Self::silent_for`].
    pub fn handle_frame(&mut self, frame: &[i16]) -> Duration {
        if rms_dbfs(frame) >= self.threshold_dbfs {
            self.silent_samples = 0;
            self.speech_seen = true;
        } else {
            self.silent_samples = self.silent_samples.saturating_add(frame.len() as u64);
        }
        self.silent_for()
    }

    /// How long the input has been continuously below the threshold.
    pub fn silent_for(&self) -> Duration {
        Duration::from_micros(self.silent_samples * 1_000_000 / u64::from(SAMPLE_RATE))
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

impl Default for SilenceDetector {
    fn default() -> Self {
        SilenceDetector::new(Self::DEFAULT_THRESHOLD_DBFS, Self::DEFAULT_HANGOVER)
    }
}

fn samples_in(d: Duration) -> u64 {
    (d.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tone, FRAME_SAMPLES};

    #[test]
    fn rms_levels() {
        assert_eq!(rms_dbfs(&[]), FLOOR_DBFS);
        assert_eq!(rms_dbfs(&[0; 160]), FLOOR_DBFS);
        let square: Vec<i16> = (0..160).map(|i| if i % 2 == 0 { 32767 } else { -32767 }).collect();
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
        let mut det = SilenceDetector::new(-40.0, Duration::from_millis(200));
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
        for _ in 0..239 {
            det.handle_frame(&quiet);
        }
        assert_eq!(det.silent_for(), Duration::from_secs(5));
        assert!(det.speech_seen());
        det.reset();
        assert_eq!(det.silent_for(), Duration::ZERO);
        assert!(!det.speech_seen());
    }
}
