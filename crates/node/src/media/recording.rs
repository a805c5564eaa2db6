//! Recording into WAV files (8 kHz 16-bit): [`Recording`] keeps what the far
//! end sends (the `<Record>` verb, mono, by RTP timestamp, with silence
//! trimming); [`CallRecording`] keeps both directions of a call (bridged
//! or not), by arrival time, mixed or as two channels.
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

use super::events::RecordStop;

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
                    self.append_silence(delta as usize);
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
            let duration = samples_to_duration(self.written);
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

    fn append_silence(&mut self, samples: usize) {
        let samples = samples.min(self.room());
        match self.silence.as_mut() {
            Some(silence) => {
                silence.held.resize(silence.held.len() + samples, 0);
                silence.timed_out |= silence.detector.handle_silence(samples);
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

/// Which side of the call a sample belongs to in a call recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// What the far end sends us (left channel).
    Received,
    /// What we send the far end (right channel): the other leg of a bridge,
    /// or what plays.
    Sent,
}

/// Audio a channel may lag wall time by before the gap counts as silence:
/// three frames of network jitter, so packets that arrive a little late are
/// not padded in front of.
const JITTER_SAMPLES: u64 = 3 * media::FRAME_SAMPLES as u64;

/// Audio a channel may run ahead of wall time (a far end sending faster
/// than real time); beyond it packets are dropped so memory stays bounded.
const MAX_AHEAD_SAMPLES: u64 = SAMPLE_RATE as u64;

/// A whole-call recording of both directions, placed by arrival time: each
/// side's audio goes at the position wall time says it arrived (less its
/// own length), gaps (silence suppression, loss, hold) become silence, and
/// the two sides stay aligned however their RTP clocks run. One channel is
/// the sum of both sides; two channels keep them apart (left: received,
/// right: sent), as Twilio's dual-channel recordings.
pub(crate) struct CallRecording {
    id: u64,
    path: PathBuf,
    temp_path: PathBuf,
    channels: u16,
    writer: Option<Writer>,
    error: Option<hound::Error>,
    started: Instant,
    last_flush: Instant,
    /// Sample frames in the file (one sample per channel each).
    written: u64,
    /// Per side, audio placed but not written yet (written once the other
    /// side has reached the same position).
    pending: [Vec<i16>; 2],
}

impl std::fmt::Debug for CallRecording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecording")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("channels", &self.channels)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl CallRecording {
    /// `channels` other than 1 or 2 is taken as 2.
    pub(crate) fn start(
        id: u64,
        path: PathBuf,
        channels: u16,
        now: Instant,
    ) -> Result<CallRecording, hound::Error> {
        let channels = if channels == 1 { 1 } else { 2 };
        let temp_path = temp_path_of(&path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let spec = hound::WavSpec {
            channels,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&temp_path, spec)?;
        Ok(CallRecording {
            id,
            path,
            temp_path,
            channels,
            writer: Some(writer),
            error: None,
            started: now,
            last_flush: now,
            written: 0,
            pending: [Vec::new(), Vec::new()],
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn elapsed_samples(&self, now: Instant) -> u64 {
        let micros = now.saturating_duration_since(self.started).as_micros();
        u64::try_from(micros * u128::from(SAMPLE_RATE) / 1_000_000).unwrap_or(u64::MAX)
    }

    /// Audio of one side that arrived (or was sent) at `now`.
    pub(crate) fn handle_audio(&mut self, now: Instant, side: Side, pcm: &[i16]) {
        let len = pcm.len() as u64;
        let end_now = self.elapsed_samples(now);
        let start = end_now.saturating_sub(len);
        let position = self.written + self.pending[side as usize].len() as u64;
        if position > end_now + MAX_AHEAD_SAMPLES {
            return;
        }
        if position + JITTER_SAMPLES < start {
            self.pad(side, start);
        }
        self.pending[side as usize].extend_from_slice(pcm);
    }

    /// Pads silent sides up to wall time and writes what both sides cover.
    /// Called every tick.
    pub(crate) fn handle_tick(&mut self, now: Instant) {
        let due = self.elapsed_samples(now).saturating_sub(JITTER_SAMPLES);
        self.pad(Side::Received, due);
        self.pad(Side::Sent, due);
        self.write_common();
        if now >= self.last_flush + FLUSH_EVERY {
            self.last_flush = now;
            if let Some(writer) = self.writer.as_mut() {
                if let Err(e) = writer.flush() {
                    self.error = Some(e);
                }
            }
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.error.is_some()
    }

    fn pad(&mut self, side: Side, to: u64) {
        let buffer = &mut self.pending[side as usize];
        let position = self.written + buffer.len() as u64;
        if let Ok(missing) = usize::try_from(to.saturating_sub(position)) {
            buffer.resize(buffer.len() + missing, 0);
        }
    }

    fn write_common(&mut self) {
        let common = self.pending[0].len().min(self.pending[1].len());
        if common == 0 {
            return;
        }
        if let (Some(writer), None) = (self.writer.as_mut(), self.error.as_ref()) {
            let [received, sent] = &self.pending;
            let mut result = Ok(());
            for (&r, &s) in received[..common].iter().zip(&sent[..common]) {
                result = if self.channels == 1 {
                    writer.write_sample(r.saturating_add(s))
                } else {
                    writer.write_sample(r).and_then(|()| writer.write_sample(s))
                };
                if result.is_err() {
                    break;
                }
            }
            if let Err(e) = result {
                self.error = Some(e);
            }
        }
        self.written += common as u64;
        for buffer in &mut self.pending {
            buffer.drain(..common);
        }
    }

    /// Writes what is pending (the shorter side padded with silence),
    /// completes the file and moves it to its final path.
    pub(crate) fn finish(mut self) -> Result<(Duration, PathBuf), hound::Error> {
        let end = self.written + self.pending.iter().map(Vec::len).max().unwrap_or(0) as u64;
        self.pad(Side::Received, end);
        self.pad(Side::Sent, end);
        self.write_common();
        let result = (|| {
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            if let Some(writer) = self.writer.take() {
                writer.finalize()?;
            }
            std::fs::rename(&self.temp_path, &self.path)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.temp_path);
        }
        result.map(|()| {
            (
                samples_to_duration(self.written),
                std::mem::take(&mut self.path),
            )
        })
    }
}

/// Exact: one sample at 8 kHz is 125 µs.
fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_micros(samples.saturating_mul(1_000_000 / u64::from(SAMPLE_RATE)))
}

/// Where a recording is written until it ends.
pub(super) fn temp_path_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = media::FRAME_SAMPLES;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("dialtone-recording-test-{}", std::process::id()))
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn loud() -> Vec<i16> {
        (0..FRAME)
            .map(|i| if i % 2 == 0 { 8000 } else { -8000 })
            .collect()
    }

    fn read(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path)
            .expect("valid WAV")
            .samples::<i16>()
            .map(|s| s.expect("sample"))
            .collect()
    }

    #[test]
    fn written_under_a_temporary_name_then_renamed() {
        let path = dir("rename").join("nested").join("a.wav");
        let now = Instant::now();
        let mut r =
            Recording::start(1, path.clone(), Duration::from_secs(60), None, now).expect("start");
        r.handle_audio(now, 1, 0, &loud());
        assert!(temp_path_of(&path).exists() && !path.exists());
        let (duration, done) = r.finish().expect("finish");
        assert_eq!((duration, &done), (Duration::from_millis(20), &path));
        assert!(!temp_path_of(&path).exists());
        assert_eq!(read(&path), loud());
    }

    #[test]
    fn header_is_valid_while_recording() {
        let path = dir("flush").join("b.wav");
        let now = Instant::now();
        let mut r =
            Recording::start(1, path.clone(), Duration::from_secs(60), None, now).expect("start");
        for n in 0..10u32 {
            r.handle_audio(now, 1, n * 160, &loud());
        }
        assert_eq!(r.poll_stop(now + Duration::from_millis(1100)), None);
        // The .part file as a crash would leave it.
        assert_eq!(read(&temp_path_of(&path)).len(), 10 * FRAME);
        r.finish().expect("finish");
    }

    #[test]
    fn timestamp_gaps_become_silence_late_packets_are_dropped() {
        let path = dir("gaps").join("c.wav");
        let now = Instant::now();
        let mut r =
            Recording::start(1, path.clone(), Duration::from_secs(60), None, now).expect("start");
        r.handle_audio(now, 7, 1000, &loud());
        r.handle_audio(now, 7, 1320, &loud()); // one packet lost
        r.handle_audio(now, 7, 1160, &loud()); // ... arriving late: already covered
        r.handle_audio(now, 7, 1480, &loud()); // duplicate of nothing, in order
        r.handle_audio(now, 7, 1480 + 160 + 10 * 8000 * 60, &loud()); // clock jump: no fill
        r.handle_audio(now, 8, 5, &loud()); // new source: no fill
        let (duration, _) = r.finish().expect("finish");
        let samples = read(&path);
        assert_eq!(samples.len(), 6 * FRAME);
        assert_eq!(duration, Duration::from_millis(120));
        assert!(samples[FRAME..2 * FRAME].iter().all(|&s| s == 0));
        assert_eq!(&samples[2 * FRAME..3 * FRAME], &loud()[..]);
    }

    #[test]
    fn timestamps_wrap() {
        let path = dir("wrap").join("d.wav");
        let now = Instant::now();
        let mut r =
            Recording::start(1, path.clone(), Duration::from_secs(60), None, now).expect("start");
        r.handle_audio(now, 7, u32::MAX - 159, &loud());
        r.handle_audio(now, 7, 160, &loud()); // one lost across the wrap
        r.finish().expect("finish");
        assert_eq!(read(&path).len(), 3 * FRAME);
    }

    #[test]
    fn trailing_silence_is_trimmed_and_times_out() {
        let path = dir("silence").join("e.wav");
        let now = Instant::now();
        let timeout = Duration::from_millis(200);
        let mut r = Recording::start(1, path.clone(), Duration::from_secs(60), Some(timeout), now)
            .expect("start");
        let quiet = vec![3i16; FRAME];
        let mut ts = 0;
        let mut feed = |r: &mut Recording, frame: &[i16]| {
            r.handle_audio(now, 1, ts, frame);
            ts += FRAME as u32;
        };
        feed(&mut r, &loud());
        feed(&mut r, &quiet); // a pause between words is kept...
        feed(&mut r, &loud());
        for _ in 0..9 {
            feed(&mut r, &quiet);
            assert_eq!(r.poll_stop(now), None);
        }
        feed(&mut r, &quiet); // 200 ms of silence
        assert_eq!(r.poll_stop(now), Some(RecordStop::Silence));
        let (duration, _) = r.finish().expect("finish");
        // ...the trailing silence is not.
        assert_eq!(duration, Duration::from_millis(60));
        assert_eq!(read(&path).len(), 3 * FRAME);
    }

    #[test]
    fn no_packets_at_all_times_out_by_wall_clock() {
        let path = dir("quiet").join("f.wav");
        let now = Instant::now();
        let timeout = Duration::from_secs(3);
        let mut r = Recording::start(1, path.clone(), Duration::from_secs(60), Some(timeout), now)
            .expect("start");
        assert_eq!(r.poll_stop(now + Duration::from_millis(2900)), None);
        assert_eq!(r.poll_stop(now + timeout), Some(RecordStop::Silence));
        assert_eq!(r.finish().expect("finish").0, Duration::ZERO);
        assert!(read(&path).is_empty());
    }

    #[test]
    fn max_length_cuts_the_audio() {
        let path = dir("max").join("g.wav");
        let now = Instant::now();
        let mut r =
            Recording::start(1, path.clone(), Duration::from_millis(50), None, now).expect("start");
        for n in 0..3u32 {
            r.handle_audio(now, 1, n * 160, &loud());
        }
        assert_eq!(r.poll_stop(now), Some(RecordStop::MaxLength));
        assert_eq!(r.finish().expect("finish").0, Duration::from_millis(50));
        assert_eq!(read(&path).len(), 400);

        let path = dir("max-wall").join("h.wav");
        let mut r = Recording::start(1, path, Duration::from_secs(1), None, now).expect("start");
        assert_eq!(
            r.poll_stop(now + Duration::from_secs(1)),
            Some(RecordStop::MaxLength)
        );
        r.finish().expect("finish");
    }

    fn read_stereo(path: &Path) -> (Vec<i16>, Vec<i16>) {
        let samples = read(path);
        let left = samples.iter().step_by(2).copied().collect();
        let right = samples.iter().skip(1).step_by(2).copied().collect();
        (left, right)
    }

    #[test]
    fn call_recording_places_each_side_by_arrival() {
        let path = dir("call-stereo").join("i.wav");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = CallRecording::start(1, path.clone(), 2, t0).expect("start");
        // Received audio 0-100 ms; sent audio only from 200 ms (silence before).
        for n in 1..=5 {
            r.handle_audio(at(20 * n), Side::Received, &loud());
            r.handle_tick(at(20 * n));
        }
        for n in 6..=9 {
            r.handle_tick(at(20 * n));
        }
        for n in 11..=15 {
            r.handle_audio(at(20 * n), Side::Sent, &[1000; FRAME]);
            r.handle_tick(at(20 * n));
        }
        let (duration, done) = r.finish().expect("finish");
        assert_eq!(done, path);
        let (left, right) = read_stereo(&path);
        assert_eq!(left.len(), right.len());
        assert_eq!(duration, Duration::from_millis(300));
        assert_eq!(&left[..FRAME], &loud()[..]);
        assert!(left[5 * FRAME..].iter().all(|&s| s == 0));
        assert!(
            right[..10 * FRAME].iter().all(|&s| s == 0),
            "sent side silent at first"
        );
        assert!(right[10 * FRAME..].iter().all(|&s| s == 1000));
    }

    #[test]
    fn mono_call_recording_mixes_both_sides() {
        let path = dir("call-mono").join("j.wav");
        let t0 = Instant::now();
        let mut r = CallRecording::start(2, path.clone(), 1, t0).expect("start");
        let now = t0 + Duration::from_millis(20);
        r.handle_audio(now, Side::Received, &[100; FRAME]);
        r.handle_audio(now, Side::Sent, &[20; FRAME]);
        r.handle_tick(now);
        r.finish().expect("finish");
        assert_eq!(read(&path), vec![120; FRAME]);
    }

    #[test]
    fn unwritable_path_fails_to_start() {
        let base = dir("unwritable");
        std::fs::create_dir_all(&base).expect("dir");
        let file = base.join("plain-file");
        std::fs::write(&file, b"x").expect("write");
        let now = Instant::now();
        let under_a_file = file.join("r.wav");
        assert!(Recording::start(1, under_a_file, Duration::from_secs(1), None, now).is_err());
    }
}
