//! A conference room as its worker holds it: the participants' streams (all on this worker),
//! what plays into the room (announcements, beeps) and the room's recordings.
//!
//! Each 20 ms tick the room takes one frame from every participant's inbox (decoded 8 kHz PCM,
//! filled as packets arrive), sums the frames of those the room hears into a [`MixBus`] once,
//! and sends each listener the sum less its own frame, plus the coaches that whisper to it and
//! its own playback, through its own [`Limiter`]. How a participant takes part is a
//! [`Participation`]: heard or not (mute, hold), hearing or not (hold, waiting for the start:
//! then the stream's own playback, the hold music, goes out as usual), or coaching one other
//! participant, who alone hears it. The decisions (who is muted, when the room starts) are the
//! conference core's, in `engine::conference`; this only carries them out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use media::mix::{Limiter, Listener, MixBus};
use media::FRAME_SAMPLES;
use tokio::sync::mpsc::UnboundedSender;

use super::events::{Participation, RecordStop, RoomEvent};
use super::recording::{CallRecording, Side};
use super::stream::{fill_frame, Frame, Playback, Scratch, StreamState};

/// What a [`super::Room`] handle asks of its room.
#[derive(Debug)]
pub(crate) enum RoomCommand {
    /// Plays into the room, heard by every participant that hears the room, replacing what
    /// played (an announcement, a beep).
    Play {
        id: u64,
        samples: Arc<[i16]>,
        loops: u32,
    },
    StopPlayback,
    /// Records what the room hears (every heard participant and what plays), mono.
    StartRecording {
        id: u64,
        path: PathBuf,
    },
    StopRecording {
        id: u64,
    },
}

#[derive(Debug)]
struct Member {
    stream: u64,
    slot: usize,
    part: Participation,
    /// This tick's frame from the participant (silence when its inbox ran dry).
    frame: [i16; FRAME_SAMPLES],
    limiter: Limiter,
    speech: Speech,
}

/// Level above which a participant's frame counts as speech, and how many frames in a row
/// start and end it: speech starts after 60 ms above the level and ends after 800 ms below
/// (the pauses between words are not the end), as `participant-speech-start`/`-stop` need.
const SPEECH_DBFS: f32 = -40.0;
const SPEECH_START_FRAMES: u32 = 3;
const SPEECH_END_FRAMES: u32 = 40;

#[derive(Debug, Default)]
struct Speech {
    speaking: bool,
    /// Consecutive frames on the other side of the threshold from `speaking`.
    run: u32,
}

impl Speech {
    /// Takes one frame; `Some(now_speaking)` when the state flips.
    fn handle_frame(&mut self, frame: &[i16]) -> Option<bool> {
        let loud = media::level::rms_dbfs(frame) >= SPEECH_DBFS;
        if loud == self.speaking {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = if self.speaking {
            SPEECH_END_FRAMES
        } else {
            SPEECH_START_FRAMES
        };
        if self.run >= needed {
            self.speaking = loud;
            self.run = 0;
            return Some(loud);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_starts_after_three_loud_frames_and_ends_after_a_long_pause() {
        let loud: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| if i % 2 == 0 { 3000 } else { -3000 })
            .collect();
        let quiet = [0i16; FRAME_SAMPLES];
        let mut speech = Speech::default();
        assert_eq!(speech.handle_frame(&loud), None);
        assert_eq!(speech.handle_frame(&loud), None);
        assert_eq!(speech.handle_frame(&loud), Some(true));
        // A short pause between words is not the end.
        for _ in 0..20 {
            assert_eq!(speech.handle_frame(&quiet), None);
        }
        assert_eq!(speech.handle_frame(&loud), None);
        for _ in 0..39 {
            assert_eq!(speech.handle_frame(&quiet), None);
        }
        assert_eq!(speech.handle_frame(&quiet), Some(false));
    }
}

#[derive(Debug)]
pub(crate) struct RoomState {
    id: u64,
    events: UnboundedSender<RoomEvent>,
    members: Vec<Member>,
    playback: Option<Playback>,
    recordings: Vec<CallRecording>,
    bus: MixBus,
    listener: Listener,
    out: [i16; FRAME_SAMPLES],
    /// The room as a recording hears it, limited like a listener's.
    record_limiter: Limiter,
    /// Frames the room sent its participants (for the benchmark's cost per frame).
    frames_mixed: u64,
}

impl RoomState {
    pub(crate) fn new(id: u64, events: UnboundedSender<RoomEvent>) -> RoomState {
        RoomState {
            id,
            events,
            members: Vec::new(),
            playback: None,
            recordings: Vec::new(),
            bus: MixBus::new(),
            listener: Listener::new(),
            out: [0; FRAME_SAMPLES],
            record_limiter: Limiter::new(),
            frames_mixed: 0,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn member_slots(&self) -> Vec<usize> {
        self.members.iter().map(|m| m.slot).collect()
    }

    /// Adds a participant, or changes how it takes part.
    pub(crate) fn join(&mut self, stream: u64, slot: usize, part: Participation) {
        if let Some(member) = self.members.iter_mut().find(|m| m.slot == slot) {
            member.part = part;
            return;
        }
        self.members.push(Member {
            stream,
            slot,
            part,
            frame: [0; FRAME_SAMPLES],
            limiter: Limiter::new(),
            speech: Speech::default(),
        });
    }

    pub(crate) fn leave(&mut self, slot: usize) {
        self.members.retain(|m| m.slot != slot);
    }

    pub(crate) fn handle_command(&mut self, command: RoomCommand, now: Instant) {
        match command {
            RoomCommand::Play { id, samples, loops } => {
                self.playback = Some(Playback::new(id, samples, loops));
            }
            RoomCommand::StopPlayback => self.playback = None,
            RoomCommand::StartRecording { id, path } => {
                match CallRecording::start(id, path, 1, now) {
                    Ok(recording) => self.recordings.push(recording),
                    Err(e) => {
                        tracing::warn!(room = self.id, recording = id, error = %e, "cannot start room recording");
                        self.emit(RoomEvent::RecordingFailed {
                            id,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            RoomCommand::StopRecording { id } => {
                if let Some(index) = self.recordings.iter().position(|r| r.id() == id) {
                    let recording = self.recordings.swap_remove(index);
                    self.finish_recording(recording, RecordStop::Stopped);
                }
            }
        }
    }

    /// One 20 ms step of the room: collect, sum, send each listener its mix.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        slots: &mut [Option<StreamState>],
        scratch: &mut Scratch,
    ) {
        self.bus.clear();
        for member in &mut self.members {
            let Some(Some(stream)) = slots.get_mut(member.slot) else {
                member.frame = [0; FRAME_SAMPLES];
                continue;
            };
            stream.pull_room_frame(&mut member.frame);
            if member.part.heard && member.part.coach_of.is_none() {
                self.bus.add(&member.frame);
            }
            if let Some(speaking) = member.speech.handle_frame(&member.frame) {
                // The owner may be gone; nobody to tell then.
                let _ = self.events.send(RoomEvent::Speaking {
                    stream: member.stream,
                    speaking,
                });
            }
        }
        if let Some(playback) = self.playback.as_mut() {
            let last = fill_frame(playback, &mut scratch.frame);
            if last != Frame::Empty {
                self.bus.add(&scratch.frame);
            }
            if matches!(last, Frame::Last | Frame::Empty) {
                if let Some(done) = self.playback.take() {
                    self.emit(RoomEvent::PlaybackDone { id: done.id() });
                }
            }
        }
        if !self.recordings.is_empty() {
            self.record_limiter.apply(self.bus.samples(), &mut self.out);
            for recording in &mut self.recordings {
                recording.handle_audio(now, Side::Received, &self.out);
                recording.handle_tick(now);
            }
            let failed: Vec<usize> = (0..self.recordings.len())
                .filter(|&i| self.recordings.get(i).is_some_and(CallRecording::failed))
                .collect();
            for index in failed.into_iter().rev() {
                let recording = self.recordings.swap_remove(index);
                self.finish_recording(recording, RecordStop::Stopped);
            }
        }
        for index in 0..self.members.len() {
            let Some(member) = self.members.get(index) else {
                continue;
            };
            if !member.part.hears {
                continue;
            }
            let Some(Some(stream)) = slots.get_mut(member.slot) else {
                continue;
            };
            if !stream.takes_mix() {
                continue;
            }
            self.listener.start(&self.bus);
            if member.part.heard && member.part.coach_of.is_none() {
                self.listener.subtract(&member.frame);
            }
            let me = member.stream;
            for coach in &self.members {
                if coach.part.heard && coach.part.coach_of == Some(me) {
                    self.listener.add(&coach.frame);
                }
            }
            if stream.own_frame(&mut scratch.frame) {
                self.listener.add(&scratch.frame);
            }
            let Some(member) = self.members.get_mut(index) else {
                continue;
            };
            member.limiter.apply(self.listener.samples(), &mut self.out);
            stream.send_mixed(now, &self.out, scratch);
            self.frames_mixed += 1;
        }
    }

    fn finish_recording(&self, recording: CallRecording, stop: RecordStop) {
        let id = recording.id();
        match recording.finish() {
            Ok((duration, path)) => self.emit(RoomEvent::RecordingStopped {
                id,
                duration,
                stop,
                path,
            }),
            Err(e) => {
                tracing::warn!(room = self.id, recording = id, error = %e, "room recording failed");
                self.emit(RoomEvent::RecordingFailed {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn emit(&self, event: RoomEvent) {
        // The owner may be gone (conference over); nobody to tell then.
        let _ = self.events.send(event);
    }
}

impl Drop for RoomState {
    fn drop(&mut self) {
        for recording in std::mem::take(&mut self.recordings) {
            self.finish_recording(recording, RecordStop::Hangup);
        }
        tracing::debug!(
            room = self.id,
            frames = self.frames_mixed,
            "media room closed"
        );
    }
}
