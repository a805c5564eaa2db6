//! Recording what the far end sends into a WAV file (8 kHz mono 16-bit).
//!
//! The file is written under a temporary name (`<path>.part`) and renamed to
//! its final path when the recording ends, so a crash never leaves a
//! half-written file under the name the API will serve. The WAV header is
//! rewritten every second, so even the `.part` of a crashed node is a valid
//! file. Writes go through a `BufWriter` in the worker's tick: 16 KB/s per
//! recording into the page cache, cheaper than handing frames to another
//! thread.
//!
//! Trailing silence is held back in memory while it lasts and written only if
//! speech follows, so a recording ended by its silence timeout (or by a key,
//! or by hangup) ends with the last speech, as Twilio's `trim-silence`.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use media::level::SilenceDetector;

use super::RecordStop;

const SAMPLE_RATE: u32 = 8000;

/// Flush period of the WAV header.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Largest timestamp jump filled with silence. Above it the jump is a
/// discontinuity (the far end restarted its clock), not lost or suppressed
/// packets, and recording just continues.
const MAX_GAP_SAMPLES: u32 = 10 * SAMPLE_RATE;

type Writer = hound::WavWriter<BufWriter<File>>;

pub(crate) struct Recording {
    id: u64,
    path: PathBuf,
    temp_path: PathBuf,
    /// `None` only after `finish` took it.
    writer: Option<Writer>,
    error: Option<hound::Error>,
    started: Instant,
    last_flush: Instant,
    max_length: Duration,
    max_samples: u64,
    /// Samples in the file.
    written: u64,
    silence: Option<Silence>,
    /// Timestamp expected on the next packet of this SSRC (for gap filling).
    expected: Option<(u32, u32)>,
}

// By hand: hound's writer is not `Debug`.
impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("written", &self.written)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Silence tracking, present when the recording has a silence timeout.
#[derive(Debug)]
struct Silence {
    timeout: Duration,
    detector: SilenceDetector,
    /// Trailing silent samples not written yet.
    held: Vec<i16>,
    /// Wall time of the last speech, so a far end that stops sending packets
    /// altogether also times out.
    last_speech: Instant,
    timed_out: bool,
}

impl Recording {
    pub(crate) fn start(
        id: u64,
        path: PathBuf,
        max_length: Duration,
        silence_timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Recording, hound::Error> {
        let temp_path = temp_path_of(&path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&temp_path, spec)?;
        let max_samples = (max_length.as_secs_f64() * f64::from(SAMPLE_RATE)) as u64;
        Ok(Recording {
            id,
            path,
            temp_path,
            writer: Some(writer),
            error: None,
            started: now,
            last_flush: now,
            max_length,
            max_samples,
            written: 0,
            silence: silence_timeout.map(|timeout| Silence {
                timeout,
                detector: SilenceDetector::new(SAMPLE_RATE, timeout),
                held: Vec::new(),
                last_speech: now,
                timed_out: false,
            }),
            expected: None,
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Decoded audio of one RTP packet. A timestamp ahead of the expected one
    /// means lost or suppressed packets: the gap is filled with silence. A
    /// timestamp behind it is a late or duplicate packet, already covered.
    pub(crate) fn handle_audio(&mut self, now: Instant, ssrc: u32, timestamp: u32, pcm: &[i16]) {
        if let Some((expected_ssrc, expected_ts)) = self.expected {
            if expected_ssrc == ssrc {
                let delta = timestamp.wrapping_sub(expected_ts);
                if delta >= 1 << 31 {
                    return;
                }
                if delta > 0 && delta <= MAX_GAP_SAMPLES {
                    self.append_silence(now, delta as usize);
                }
            }
        }
        // Payloads are at most one datagram long, far below u32::MAX samples.
        self.expected = Some((ssrc, timestamp.wrapping_add(pcm.len() as u32)));
        self.append(now, pcm);
    }

    /// Why the recording must end now, if it must.
    pub(crate) fn poll_stop(&mut self, now: Instant) -> Option<RecordStop> {
        if self.error.is_some() {
            return Some(RecordStop::Stopped);
        }
        if self.kept_samples() >= self.max_samples || now >= self.started + self.max_length {
            return Some(RecordStop::MaxLength);
        }
        if let Some(silence) = &self.silence {
            if silence.timed_out || now >= silence.last_speech + silence.timeout {
                return Some(RecordStop::Silence);
            }
        }
        if now >= self.last_flush + FLUSH_EVERY {
            self.last_flush = now;
            if let Some(writer) = self.writer.as_mut() {
                if let Err(e) = writer.flush() {
                    self.error = Some(e);
                }
            }
        }
        None
    }

    /// Completes the file and moves it to its final path. Returns the duration
    /// of the audio kept (trailing silence trimmed).
    pub(crate) fn finish(mut self) -> Result<(Duration, PathBuf), hound::Error> {
        let result = self.complete();
        if result.is_err() {
            // Best effort: a failed recording leaves nothing behind.
            let _ = std::fs::remove_file(&self.temp_path);
        }
        result.map(|()| {
            let duration = Duration::from_secs_f64(self.written as f64 / f64::from(SAMPLE_RATE));
            (duration, std::mem::take(&mut self.path))
        })
    }

    fn complete(&mut self) -> Result<(), hound::Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(writer) = self.writer.take() {
            writer.finalize()?;
        }
        std::fs::rename(&self.temp_path, &self.path)?;
        Ok(())
    }

    fn kept_samples(&self) -> u64 {
        self.written + self.silence.as_ref().map_or(0, |s| s.held.len() as u64)
    }

    fn room(&self) -> usize {
        usize::try_from(self.max_samples.saturating_sub(self.kept_samples())).unwrap_or(usize::MAX)
    }

    fn append_silence(&mut self, now: Instant, samples: usize) {
        let samples = samples.min(self.room());
        match self.silence.as_mut() {
            Some(silence) => {
                silence.held.resize(silence.held.len() + samples, 0);
                silence.timed_out |= silence.detector.handle_silence(samples);
                let _ = now;
            }
            None => {
                for _ in 0..samples {
                    self.write_sample(0);
                }
            }
        }
    }

    fn append(&mut self, now: Instant, pcm: &[i16]) {
        let pcm = pcm.get(..self.room()).unwrap_or(pcm);
        let Some(silence) = self.silence.as_mut() else {
            self.write(pcm);
            return;
        };
        let speech = !silence.detector.is_silent(pcm);
        if speech {
            silence.last_speech = now;
            let held = std::mem::take(&mut silence.held);
            self.write(&held);
            self.write(pcm);
            if let Some(silence) = self.silence.as_mut() {
                // Give the buffer back (cleared) so it is reused, not reallocated.
                silence.held = held;
                silence.held.clear();
            }
        } else {
            silence.held.extend_from_slice(pcm);
            if silence.detector.timed_out() {
                silence.timed_out = true;
            }
        }
    }

    fn write(&mut self, pcm: &[i16]) {
        for &sample in pcm {
            self.write_sample(sample);
        }
    }

    fn write_sample(&mut self, sample: i16) {
        if self.error.is_some() {
            return;
        }
        if let Some(writer) = self.writer.as_mut() {
            match writer.write_sample(sample) {
                Ok(()) => self.written += 1,
                Err(e) => self.error = Some(e),
            }
        }
    }
}

/// Where a recording is written until it ends.
pub(super) fn temp_path_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}
