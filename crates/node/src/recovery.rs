//! Crash safety: a liveness mark while the node runs, and recovery at start-up of what a previous
//! run left behind when it died (`kill -9`, OOM, power cut).
//!
//! While running, the node rewrites `<data_dir>/heartbeat` every second with when this run started
//! and when it was last alive. At the next start, before the node takes calls, [`recover`]:
//! - closes every call row still queued, ringing or in progress. An answered call becomes
//!   `completed`: it was connected, and its talk time up to the crash is real. An unanswered one
//!   becomes `failed`: it never connected, and `no-answer`, `busy` or `canceled` would claim
//!   something about the far end that we do not know. Twilio has no crash state to copy. The end
//!   time is the last heartbeat (or the row's last update when there is none, or the row's own
//!   times when they are later), and the duration runs from answer to that end.
//! - finalizes every WAV under `<recordings_dir>/<AC>/<CA>/` that has no recording row: a file is
//!   written as `<RE>.wav.part` and renamed when the recording ends, and its header is rewritten
//!   only once a second, so the RIFF and data sizes are repaired from the file's length (cut to
//!   whole samples), the file takes its final name, and a `completed` row is written with the
//!   duration of the audio in it. A file too short to hold its header, or with no audio, is
//!   removed and gets no row, as a recording of zero length does when a call ends normally.
//!
//! Only directories changed since the previous run started are scanned (when a heartbeat says
//! when that was): a recording is written within one run. Recovery assumes one node per database:
//! a second live node sharing it would have its open calls closed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use model::records::{CallRecord, RecordingRecord};
use model::{AccountSid, CallSid, CallStatus, RecordingSid};

use crate::NodeConfig;

/// The liveness mark's file name in the data dir.
pub const HEARTBEAT_FILE: &str = "heartbeat";

/// How often the liveness mark is rewritten: the end time given to calls cut by a crash is at
/// most this much earlier than the crash.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Slack for clocks and file-system time stamps when deciding which directories a run touched.
const MTIME_SLACK: Duration = Duration::from_secs(60);

/// What the liveness mark says about one run of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub started: DateTime<Utc>,
    pub alive: DateTime<Utc>,
}

impl Liveness {
    fn encode(&self) -> String {
        format!(
            "started={} alive={}\n",
            self.started.timestamp_micros(),
            self.alive.timestamp_micros()
        )
    }

    fn decode(text: &str) -> Option<Liveness> {
        let mut started = None;
        let mut alive = None;
        for field in text.split_whitespace() {
            let (name, value) = field.split_once('=')?;
            let time = DateTime::from_timestamp_micros(value.parse().ok()?)?;
            match name {
                "started" => started = Some(time),
                "alive" => alive = Some(time),
                _ => {}
            }
        }
        Some(Liveness {
            started: started?,
            alive: alive?,
        })
    }
}

/// The liveness mark left in `data_dir`, if there is a readable one.
pub fn read_heartbeat(data_dir: &Path) -> Option<Liveness> {
    fs::read_to_string(data_dir.join(HEARTBEAT_FILE))
        .ok()
        .as_deref()
        .and_then(Liveness::decode)
}

/// Rewrites the liveness mark: a temporary file renamed over the old one, so a crash mid-write
/// leaves the previous mark whole. No fsync: a process crash keeps the page cache, and after a
/// power cut an older mark only makes the recovered end times earlier.
pub fn write_heartbeat(data_dir: &Path, mark: &Liveness) -> io::Result<()> {
    let temp = data_dir.join(format!("{HEARTBEAT_FILE}.tmp"));
    fs::write(&temp, mark.encode())?;
    fs::rename(&temp, data_dir.join(HEARTBEAT_FILE))
}

/// Writes this run's first mark now, then rewrites it every [`HEARTBEAT_EVERY`] from a task on
/// the current runtime for as long as the runtime lives.
pub fn start_heartbeat(data_dir: PathBuf) -> io::Result<()> {
    let started = Utc::now();
    fs::create_dir_all(&data_dir)?;
    write_heartbeat(
        &data_dir,
        &Liveness {
            started,
            alive: started,
        },
    )?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let dir = data_dir.clone();
            let mark = Liveness {
                started,
                alive: Utc::now(),
            };
            match tokio::task::spawn_blocking(move || write_heartbeat(&dir, &mark)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not write the heartbeat"),
                Err(_) => return, // runtime shutting down
            }
        }
    });
    Ok(())
}

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub last_alive: Option<DateTime<Utc>>,
    pub calls_completed: usize,
    pub calls_failed: usize,
    pub recordings_finalized: usize,
    /// Files too short to hold audio, removed.
    pub recordings_removed: usize,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Closes the calls and finalizes the recordings a previous run left open. Run it before the node
/// takes calls. A store error stops it (the node should not start on a store it cannot write); a
/// file that cannot be repaired is logged and left as it is.
pub async fn recover(
    config: &NodeConfig,
    store: &store::Store,
) -> Result<Recovered, RecoveryError> {
    let mark = read_heartbeat(&config.data_dir);
    let mut done = Recovered {
        last_alive: mark.map(|m| m.alive),
        ..Recovered::default()
    };

    for call in store.unfinished_calls().await? {
        let closed = close_call(&call, done.last_alive);
        if closed.status == CallStatus::Completed {
            done.calls_completed += 1;
        } else {
            done.calls_failed += 1;
        }
        store.update_call(&closed).await?;
        tracing::info!(call_sid = %closed.sid, status = %closed.status, duration = closed.duration, "closed a call left open by a crash");
    }

    let since = mark.map(|m| SystemTime::from(m.started) - MTIME_SLACK);
    let dir = config.recordings_dir.clone();
    let files = tokio::task::spawn_blocking(move || leftover_files(&dir, since))
        .await
        .map_err(|e| RecoveryError::Io {
            path: config.recordings_dir.clone(),
            source: io::Error::other(e),
        })?
        .map_err(|source| RecoveryError::Io {
            path: config.recordings_dir.clone(),
            source,
        })?;
    for file in files {
        if store
            .recording(&file.account, &file.recording)
            .await?
            .is_some()
        {
            continue;
        }
        let final_path = recording_file(config, &file);
        let (path, final_clone) = (file.path.clone(), final_path.clone());
        let repaired = tokio::task::spawn_blocking(move || finalize_file(&path, &final_clone))
            .await
            .map_err(|e| RecoveryError::Io {
                path: file.path.clone(),
                source: io::Error::other(e),
            })?;
        let audio = match repaired {
            Ok(Some(audio)) => audio,
            Ok(None) => {
                done.recordings_removed += 1;
                tracing::warn!(path = %file.path.display(), "removed a recording file that holds no audio");
                continue;
            }
            Err(e) => {
                tracing::error!(path = %file.path.display(), error = %e, "could not repair a recording file");
                continue;
            }
        };
        let call = store.call(&file.account, &file.call).await?;
        let record = recording_record(&file, &audio, call.as_ref(), Utc::now());
        if store.upsert_recording(&record).await? {
            done.recordings_finalized += 1;
            tracing::info!(recording_sid = %record.sid, duration = record.duration, "finalized a recording left by a crash");
        }
    }
    Ok(done)
}

/// The call as it is closed after a crash (see the module doc for the choices).
pub fn close_call(call: &CallRecord, last_alive: Option<DateTime<Utc>>) -> CallRecord {
    let mut closed = call.clone();
    let answered = call.status == CallStatus::InProgress && call.start_time.is_some();
    let end = [
        last_alive,
        Some(call.date_updated),
        call.start_time,
        Some(call.date_created),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(call.date_updated); // the array holds date_updated, so max() has a value
    closed.end_time = Some(end);
    closed.date_updated = end;
    if answered {
        closed.status = CallStatus::Completed;
        let start = call.start_time.unwrap_or(end);
        let seconds = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
        closed.duration = Some(seconds.round() as u32);
    } else {
        closed.status = CallStatus::Failed;
        closed.start_time = Some(call.start_time.unwrap_or(call.date_created));
        closed.duration = Some(0);
    }
    closed
}

/// A recording file found on disk, with the SIDs its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leftover {
    path: PathBuf,
    account: AccountSid,
    call: CallSid,
    recording: RecordingSid,
}

fn recording_file(config: &NodeConfig, file: &Leftover) -> PathBuf {
    crate::records::recording_path(config, &file.account, &file.call, &file.recording)
}

/// Every `<AC>/<CA>/<RE>.wav` or `.wav.part` under `root`, in directories changed since `since`.
fn leftover_files(root: &Path, since: Option<SystemTime>) -> io::Result<Vec<Leftover>> {
    let mut out = Vec::new();
    for (account_dir, account) in sid_dirs::<model::AccountSid>(root, since)? {
        for (call_dir, call) in sid_dirs::<CallSid>(&account_dir, since)? {
            for entry in fs::read_dir(&call_dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let stem = name
                    .strip_suffix(".wav.part")
                    .or_else(|| name.strip_suffix(".wav"));
                let Some(Ok(recording)) = stem.map(str::parse::<RecordingSid>) else {
                    continue;
                };
                out.push(Leftover {
                    path: entry.path(),
                    account,
                    call,
                    recording,
                });
            }
        }
    }
    Ok(out)
}

/// Subdirectories of `dir` named by a SID of kind `S` and changed since `since`.
fn sid_dirs<S: std::str::FromStr>(
    dir: &Path,
    since: Option<SystemTime>,
) -> io::Result<Vec<(PathBuf, S)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_dir() {
            continue;
        }
        if let (Some(since), Ok(modified)) = (since, meta.modified()) {
            if modified < since {
                continue;
            }
        }
        if let Some(Ok(sid)) = entry.file_name().to_str().map(str::parse::<S>) {
            out.push((entry.path(), sid));
        }
    }
    Ok(out)
}

/// The audio a repaired file holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WavAudio {
    pub channels: u16,
    pub sample_rate: u32,
    /// Sample frames (one sample per channel).
    pub frames: u64,
    /// When the file was last written.
    pub modified: SystemTime,
}

impl WavAudio {
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.frames as f64 / f64::from(self.sample_rate))
    }
}

/// Repairs the file at `path` and moves it to `final_path`. `None` when it holds no audio (then it
/// is removed).
fn finalize_file(path: &Path, final_path: &Path) -> io::Result<Option<WavAudio>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let repaired = repair_wav(&mut file)?;
    let modified = file.metadata()?.modified()?;
    match repaired {
        Some((channels, sample_rate, frames)) if frames > 0 => {
            file.sync_all()?;
            drop(file);
            if path != final_path {
                fs::rename(path, final_path)?;
            }
            Ok(Some(WavAudio {
                channels,
                sample_rate,
                frames,
                modified,
            }))
        }
        _ => {
            drop(file);
            fs::remove_file(path)?;
            Ok(None)
        }
    }
}

/// Rewrites the RIFF and `data` sizes of a PCM WAV from the file's length, cutting a trailing
/// partial sample frame. Returns (channels, sample rate, frames), or `None` when the file does
/// not hold a whole WAV header with a PCM `fmt ` chunk before its `data` chunk.
pub fn repair_wav(file: &mut File) -> io::Result<Option<(u16, u32, u64)>> {
    let len = file.metadata()?.len();
    let mut head = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    // The header is a few dozen bytes; 4 KB covers any chunks a writer puts before `data`.
    Read::by_ref(file).take(4096).read_to_end(&mut head)?;
    let Some(layout) = parse_header(&head) else {
        return Ok(None);
    };
    let block = u64::from(layout.block_align);
    let data_len = (len.saturating_sub(layout.data_offset) / block * block)
        .min(u64::from(u32::MAX) - layout.data_offset);
    let riff_len = layout.data_offset - 8 + data_len;
    file.set_len(layout.data_offset + data_len)?;
    // Both sizes fit u32: data_len is capped above so that riff_len does too.
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&(riff_len as u32).to_le_bytes())?;
    file.seek(SeekFrom::Start(layout.data_offset - 4))?;
    file.write_all(&(data_len as u32).to_le_bytes())?;
    Ok(Some((
        layout.channels,
        layout.sample_rate,
        data_len / block,
    )))
}

struct Layout {
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    /// Where the samples start (just after the `data` chunk header).
    data_offset: u64,
}

fn parse_header(head: &[u8]) -> Option<Layout> {
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let u16_at = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut at = 12usize;
    let mut format: Option<(u16, u32, u16)> = None;
    loop {
        let id = head.get(at..at + 4)?;
        let size = u32_at(at + 4)? as usize;
        if id == b"data" {
            let (channels, sample_rate, block_align) = format?;
            return Some(Layout {
                channels,
                sample_rate,
                block_align,
                data_offset: (at + 8) as u64,
            });
        }
        if id == b"fmt " {
            let tag = u16_at(at + 8)?;
            // 1 = PCM; 0xFFFE = WAVE_FORMAT_EXTENSIBLE, which hound writes for some layouts.
            if tag != 1 && tag != 0xFFFE {
                return None;
            }
            let channels = u16_at(at + 10)?;
            let sample_rate = u32_at(at + 12)?;
            let block_align = u16_at(at + 20)?;
            if channels == 0 || block_align == 0 {
                return None;
            }
            format = Some((channels, sample_rate, block_align));
        }
        // Chunks are padded to an even size.
        at = at
            .checked_add(8)?
            .checked_add(size)?
            .checked_add(size & 1)?;
    }
}

/// The row of a finalized file. Its start is when the file was last written less its length, but
/// not before the call was answered; the source is `RecordVerb`, the only one a path cannot tell
/// apart from the others.
fn recording_record(
    file: &Leftover,
    audio: &WavAudio,
    call: Option<&CallRecord>,
    now: DateTime<Utc>,
) -> RecordingRecord {
    let ended = DateTime::<Utc>::from(audio.modified);
    let length = chrono::Duration::from_std(audio.duration()).unwrap_or(chrono::Duration::zero());
    let mut start = ended - length;
    if let Some(answered) = call.and_then(|c| c.start_time) {
        start = start.max(answered);
    }
    RecordingRecord {
        conference_sid: None,
        sid: file.recording,
        account_sid: file.account,
        call_sid: file.call,
        duration: audio.duration().as_secs_f64().round() as u32,
        channels: u32::from(audio.channels),
        status: "completed".into(),
        source: "RecordVerb".into(),
        start_time: start,
        date_created: ended,
        date_updated: now,
        file_name: format!("{}/{}/{}.wav", file.account, file.call, file.recording),
    }
}

#[cfg(test)]
mod tests {
    use model::CallDirection;

    use super::*;

    fn call(status: CallStatus, start: Option<DateTime<Utc>>) -> CallRecord {
        let created = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        CallRecord {
            sid: CallSid::generate(),
            account_sid: AccountSid::generate(),
            parent_call_sid: None,
            phone_number_sid: None,
            from: "+1".into(),
            to: "+2".into(),
            status,
            direction: CallDirection::Inbound,
            start_time: start,
            end_time: None,
            duration: None,
            answered_by: None,
            price: None,
            date_created: created,
            date_updated: start.unwrap_or(created),
            date_scheduled: None,
        }
    }

    fn secs(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn answered_calls_complete_at_the_last_heartbeat() {
        let c = call(CallStatus::InProgress, Some(secs(2)));
        let closed = close_call(&c, Some(secs(14)));
        assert_eq!(closed.status, CallStatus::Completed);
        assert_eq!(closed.end_time, Some(secs(14)));
        assert_eq!(closed.duration, Some(12));
        assert_eq!(closed.start_time, Some(secs(2)));
        assert_eq!((closed.sid, closed.date_created), (c.sid, c.date_created));
    }

    #[test]
    fn unanswered_calls_fail_with_no_duration() {
        for status in [CallStatus::Ringing, CallStatus::Queued] {
            let closed = close_call(&call(status, None), Some(secs(5)));
            assert_eq!(closed.status, CallStatus::Failed);
            assert_eq!(closed.end_time, Some(secs(5)));
            assert_eq!(closed.start_time, Some(secs(0)));
            assert_eq!(closed.duration, Some(0));
        }
    }

    #[test]
    fn a_call_younger_than_the_last_heartbeat_ends_at_its_own_last_update() {
        // Answered after the last heartbeat was written, or no heartbeat at all.
        let c = call(CallStatus::InProgress, Some(secs(20)));
        assert_eq!(close_call(&c, Some(secs(19))).end_time, Some(secs(20)));
        assert_eq!(close_call(&c, None).duration, Some(0));
    }

    #[test]
    fn liveness_round_trips_and_rejects_garbage() {
        let mark = Liveness {
            started: secs(1),
            alive: secs(9),
        };
        assert_eq!(Liveness::decode(&mark.encode()), Some(mark));
        assert_eq!(Liveness::decode(""), None);
        assert_eq!(Liveness::decode("started=1"), None);
        assert_eq!(Liveness::decode("started=x alive=2"), None);
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dialtone-recovery-{}", rand::random::<u64>()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A WAV as the media worker leaves it after a crash: a header flushed when `flushed` samples
    /// were written, then `written` samples and `extra` stray bytes.
    fn crashed_wav(path: &Path, flushed: usize, written: usize, extra: usize) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..flushed {
            w.write_sample(((i % 40) as i16 - 20) * 500).unwrap();
        }
        w.flush().unwrap();
        // Forget the writer without finalizing, as a killed process would.
        std::mem::forget(w);
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        let tail: Vec<u8> = (0..written - flushed)
            .flat_map(|i| (i as i16).wrapping_mul(7).to_le_bytes())
            .chain(std::iter::repeat_n(1u8, extra))
            .collect();
        f.write_all(&tail).unwrap();
    }

    #[test]
    fn repair_takes_the_sizes_from_the_file_length_and_cuts_half_samples() {
        let dir = temp_dir();
        let part = dir.join("a.wav.part");
        let wav = dir.join("a.wav");
        crashed_wav(&part, 8000, 20_000, 1);
        let audio = finalize_file(&part, &wav).unwrap().unwrap();
        assert_eq!(
            (audio.channels, audio.sample_rate, audio.frames),
            (1, 8000, 20_000)
        );
        assert_eq!(audio.duration(), Duration::from_millis(2500));
        assert!(!part.exists());
        let reader = hound::WavReader::open(&wav).unwrap();
        assert_eq!(reader.duration(), 20_000);
        assert_eq!(reader.len(), 20_000);
        assert_eq!(fs::metadata(&wav).unwrap().len(), 44 + 40_000);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_without_a_whole_header_or_audio_is_removed() {
        let dir = temp_dir();
        for (name, bytes) in [
            ("empty", &b""[..]),
            ("short", &b"RIFF\x24\0\0\0WAVEfmt "[..]),
            (
                "text",
                &b"hello world, not a wav file at all......................"[..],
            ),
        ] {
            let path = dir.join(format!("{name}.wav.part"));
            fs::write(&path, bytes).unwrap();
            assert_eq!(
                finalize_file(&path, &dir.join(format!("{name}.wav"))).unwrap(),
                None,
                "{name}"
            );
            assert!(!path.exists());
        }
        // A header and no samples.
        let path = dir.join("header.wav.part");
        crashed_wav(&path, 0, 0, 1);
        assert_eq!(finalize_file(&path, &dir.join("header.wav")).unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn leftovers_are_found_by_their_sid_path_and_filtered_by_directory_age() {
        let root = temp_dir();
        let (a, c, r1, r2) = (
            AccountSid::generate(),
            CallSid::generate(),
            RecordingSid::generate(),
            RecordingSid::generate(),
        );
        let call_dir = root.join(a.as_str()).join(c.as_str());
        fs::create_dir_all(&call_dir).unwrap();
        fs::write(call_dir.join(format!("{r1}.wav.part")), b"x").unwrap();
        fs::write(call_dir.join(format!("{r2}.wav")), b"x").unwrap();
        fs::write(call_dir.join("notes.txt"), b"x").unwrap();
        fs::create_dir_all(root.join("not-a-sid").join(c.as_str())).unwrap();
        fs::write(root.join(a.as_str()).join(format!("{r1}.wav")), b"x").unwrap();

        let mut found = leftover_files(&root, None).unwrap();
        found.sort_by_key(|l| l.path.clone());
        let mut want = vec![
            Leftover {
                path: call_dir.join(format!("{r1}.wav.part")),
                account: a,
                call: c,
                recording: r1,
            },
            Leftover {
                path: call_dir.join(format!("{r2}.wav")),
                account: a,
                call: c,
                recording: r2,
            },
        ];
        want.sort_by_key(|l| l.path.clone());
        assert_eq!(found, want);
        let future = SystemTime::now() + Duration::from_secs(3600);
        assert!(leftover_files(&root, Some(future)).unwrap().is_empty());
        assert!(leftover_files(&root.join("missing"), None)
            .unwrap()
            .is_empty());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn heartbeat_file_round_trips() {
        let dir = temp_dir();
        assert_eq!(read_heartbeat(&dir), None);
        let mark = Liveness {
            started: secs(3),
            alive: secs(4),
        };
        write_heartbeat(&dir, &mark).unwrap();
        assert_eq!(read_heartbeat(&dir), Some(mark));
        fs::remove_dir_all(dir).unwrap();
    }
}
