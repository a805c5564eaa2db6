//! Conference rooms at run time: one task per live room drives its sans-IO core
//! ([`engine::Conference`]: who is in, start and end rules, status callbacks) and carries the
//! decisions out on a media [`Room`] (mixing, beeps, announcements, recording) and on the
//! participants' call tasks (wait and hold music, being taken out).
//!
//! A call joins with `<Dial><Conference>` ([`Conferences::join`]); the REST API reaches a room
//! through the same registry ([`Conferences::command`]). A room's task ends with its core's
//! `Ended` output; a later join under the same name starts a new room with a new SID, as on
//! Twilio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::conference::{
    BeepKind, ConferenceConfig, ConferenceError, ConferenceOutput, LeaveReason, Music, Participant,
    ParticipantId, ParticipantOptions, ParticipantUpdate,
};
use engine::{Conference, ConferenceSid};
use model::{AccountSid, CallSid};
use tokio::sync::{mpsc, oneshot};

use crate::media::{Participation, Room, RoomEvent, StreamRef};
use crate::webhook::WebhookRequest;
use crate::wiring::Shared;

/// What a room tells one participant's call task.
#[derive(Debug)]
pub(crate) enum ToParticipant {
    /// Play this music (a `waitUrl`/`holdUrl`; `None`: the default hold music; an empty URL:
    /// silence) until `StopMusic`.
    StartMusic(Option<Music>),
    StopMusic,
    /// Play this announcement to the participant alone (mixed into what it hears); report
    /// [`Membership::announcement_done`] with `id` when it has played.
    Announce {
        id: u64,
        samples: Arc<[i16]>,
    },
    /// Taken out of the room (ended for all, or removed through the API): the `<Dial>` is over.
    Removed,
}

/// A participant's arrival.
#[derive(Clone)]
pub(crate) struct Join {
    pub call_sid: CallSid,
    pub stream: StreamRef,
    pub options: ParticipantOptions,
    /// `record="record-from-start"`: the room is recorded from its start.
    pub record: bool,
    /// `recordingStatusCallback` and its method, told when that recording is complete.
    pub recording_status_callback: Option<(String, engine::HttpMethod)>,
    pub events: mpsc::UnboundedSender<ToParticipant>,
}

/// The room's view for the REST API.
#[derive(Debug, Clone)]
pub struct RoomSnapshot {
    pub sid: ConferenceSid,
    pub friendly_name: String,
    pub status: engine::conference::ConferenceStatus,
    pub participants: Vec<Participant>,
}

enum Command {
    Join(
        Join,
        oneshot::Sender<Result<ConferenceSid, ConferenceError>>,
    ),
    Leave(CallSid, LeaveReason),
    Update(
        ParticipantId,
        ParticipantUpdate,
        oneshot::Sender<Result<(), ConferenceError>>,
    ),
    Kick(ParticipantId, oneshot::Sender<Result<(), ConferenceError>>),
    End(oneshot::Sender<Result<(), ConferenceError>>),
    Announce(
        Option<ParticipantId>,
        Music,
        oneshot::Sender<Result<(), ConferenceError>>,
    ),
    Snapshot(oneshot::Sender<RoomSnapshot>),
    AnnouncementDone(u64, Result<(), String>),
}

#[derive(Clone)]
struct Entry {
    sid: ConferenceSid,
    commands: mpsc::UnboundedSender<Command>,
}

/// Live rooms by account and name (and by SID, for the API).
#[derive(Default, Clone)]
pub struct Conferences {
    rooms: Arc<Mutex<HashMap<(AccountSid, String), Entry>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the map is whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A participant's handle on its room.
pub(crate) struct Membership {
    pub sid: ConferenceSid,
    commands: mpsc::UnboundedSender<Command>,
    call_sid: CallSid,
}

impl Membership {
    /// Leaves the room (hang-up, live update); the room's task takes it from there.
    pub fn leave(&self, reason: LeaveReason) {
        let _ = self.commands.send(Command::Leave(self.call_sid, reason));
    }

    /// The announcement [`ToParticipant::Announce`] `id` has played (or could not).
    pub fn announcement_done(&self, id: u64, result: Result<(), String>) {
        let _ = self.commands.send(Command::AnnouncementDone(id, result));
    }
}

impl Conferences {
    /// Joins the room `name` of `account`, creating it when none is live. A room that ended
    /// while the request was on its way is replaced by a new one.
    pub(crate) async fn join(
        &self,
        shared: &Arc<Shared>,
        account: AccountSid,
        auth_token: &str,
        name: &str,
        join: Join,
    ) -> Result<Membership, ConferenceError> {
        let call_sid = join.call_sid;
        for _ in 0..3 {
            let entry = self.entry_or_create(shared, account, auth_token, name);
            let (reply, answer) = oneshot::channel();
            if entry
                .commands
                .send(Command::Join(join.clone(), reply))
                .is_err()
            {
                self.forget(account, name, entry.sid);
                continue;
            }
            match answer.await {
                Ok(Ok(sid)) => {
                    return Ok(Membership {
                        sid,
                        commands: entry.commands,
                        call_sid,
                    })
                }
                // The room ended while the request was on its way: a new one takes it.
                Ok(Err(ConferenceError::Ended)) | Err(_) => {
                    self.forget(account, name, entry.sid);
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        Err(ConferenceError::Ended)
    }

    /// The live room `name` of `account`, opened (empty) when there is none. An empty room
    /// that nobody joins ends after [`EMPTY_ROOM_TIMEOUT`].
    pub(crate) fn open(
        &self,
        shared: &Arc<Shared>,
        account: AccountSid,
        auth_token: &str,
        name: &str,
    ) -> ConferenceSid {
        self.entry_or_create(shared, account, auth_token, name).sid
    }

    fn entry_or_create(
        &self,
        shared: &Arc<Shared>,
        account: AccountSid,
        auth_token: &str,
        name: &str,
    ) -> Entry {
        let mut rooms = lock(&self.rooms);
        let key = (account, name.to_owned());
        if let Some(entry) = rooms.get(&key) {
            if !entry.commands.is_closed() {
                return entry.clone();
            }
        }
        let sid = ConferenceSid::random(&mut rand::thread_rng());
        let (tx, rx) = mpsc::unbounded_channel();
        let entry = Entry { sid, commands: tx };
        rooms.insert(key, entry.clone());
        let config = ConferenceConfig {
            sid,
            account_sid: account,
            friendly_name: name.to_owned(),
        };
        tokio::spawn(run(
            shared.clone(),
            self.clone(),
            config,
            auth_token.to_owned(),
            rx,
        ));
        entry
    }

    fn forget(&self, account: AccountSid, name: &str, sid: ConferenceSid) {
        let mut rooms = lock(&self.rooms);
        let key = (account, name.to_owned());
        if rooms.get(&key).is_some_and(|e| e.sid == sid) {
            rooms.remove(&key);
        }
    }

    fn by_sid(&self, account: AccountSid, sid: ConferenceSid) -> Option<Entry> {
        lock(&self.rooms)
            .iter()
            .find(|((a, _), e)| *a == account && e.sid == sid)
            .map(|(_, e)| e.clone())
    }

    /// The live rooms of `account` (for the API).
    pub async fn snapshots(&self, account: AccountSid) -> Vec<RoomSnapshot> {
        let entries: Vec<Entry> = lock(&self.rooms)
            .iter()
            .filter(|((a, _), _)| *a == account)
            .map(|(_, e)| e.clone())
            .collect();
        let mut out = Vec::new();
        for entry in entries {
            let (tx, rx) = oneshot::channel();
            if entry.commands.send(Command::Snapshot(tx)).is_ok() {
                if let Ok(snapshot) = rx.await {
                    out.push(snapshot);
                }
            }
        }
        out
    }

    pub async fn snapshot(&self, account: AccountSid, sid: ConferenceSid) -> Option<RoomSnapshot> {
        let entry = self.by_sid(account, sid)?;
        let (tx, rx) = oneshot::channel();
        entry.commands.send(Command::Snapshot(tx)).ok()?;
        rx.await.ok()
    }

    pub async fn update_participant(
        &self,
        account: AccountSid,
        sid: ConferenceSid,
        who: ParticipantId,
        update: ParticipantUpdate,
    ) -> Result<(), ConferenceError> {
        self.ask(account, sid, |tx| Command::Update(who, update, tx))
            .await
    }

    pub async fn kick(
        &self,
        account: AccountSid,
        sid: ConferenceSid,
        who: ParticipantId,
    ) -> Result<(), ConferenceError> {
        self.ask(account, sid, |tx| Command::Kick(who, tx)).await
    }

    pub async fn end(
        &self,
        account: AccountSid,
        sid: ConferenceSid,
    ) -> Result<(), ConferenceError> {
        self.ask(account, sid, Command::End).await
    }

    pub async fn announce(
        &self,
        account: AccountSid,
        sid: ConferenceSid,
        who: Option<ParticipantId>,
        music: Music,
    ) -> Result<(), ConferenceError> {
        self.ask(account, sid, |tx| Command::Announce(who, music, tx))
            .await
    }

    async fn ask(
        &self,
        account: AccountSid,
        sid: ConferenceSid,
        command: impl FnOnce(oneshot::Sender<Result<(), ConferenceError>>) -> Command,
    ) -> Result<(), ConferenceError> {
        let entry = self.by_sid(account, sid).ok_or(ConferenceError::Ended)?;
        let (tx, rx) = oneshot::channel();
        entry
            .commands
            .send(command(tx))
            .map_err(|_| ConferenceError::Ended)?;
        rx.await.unwrap_or(Err(ConferenceError::Ended))
    }
}

struct Member {
    stream: StreamRef,
    events: mpsc::UnboundedSender<ToParticipant>,
    /// What the room's media was last told, to send only changes.
    applied: Option<Participation>,
}

/// How long a room opened through the API waits for its first participant.
pub const EMPTY_ROOM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Playback ids of the room: beeps and announcements.
const BEEP_ID: u64 = 1;

struct RoomTask {
    /// The conference's row, saved as its status changes.
    row: model::ConferenceRecord,
    shared: Arc<Shared>,
    core: Conference,
    room: Room,
    members: HashMap<CallSid, Member>,
    auth_token: String,
    /// Status callbacks, posted in order by one task.
    callbacks: mpsc::UnboundedSender<WebhookRequest>,
    record_from_start: bool,
    /// The participant whose `record` asked for the recording (its row names that call), and
    /// where it wants to hear that the recording is complete.
    recording_call: Option<CallSid>,
    recording_callback: Option<(String, engine::HttpMethod)>,
    recording: Option<(u64, model::RecordingSid, chrono::DateTime<chrono::Utc>)>,
    /// API requests to end the room, answered once the end is saved.
    ending: Vec<oneshot::Sender<Result<(), ConferenceError>>>,
    /// Announcement ids of the core, by room playback id.
    announcements: HashMap<u64, u64>,
    next_playback: u64,
    ended: bool,
}

async fn run(
    shared: Arc<Shared>,
    registry: Conferences,
    config: ConferenceConfig,
    auth_token: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let (room_tx, mut room_events) = mpsc::unbounded_channel();
    let room = match shared.media.create_room(None, room_tx) {
        Ok(room) => room,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a conference room");
            registry.forget(config.account_sid, &config.friendly_name, config.sid);
            return;
        }
    };
    let (account, name, sid) = (config.account_sid, config.friendly_name.clone(), config.sid);
    let (callbacks, mut callback_rx) = mpsc::unbounded_channel::<WebhookRequest>();
    let webhooks = shared.webhooks.clone();
    tokio::spawn(async move {
        while let Some(request) = callback_rx.recv().await {
            let url = request.url.clone();
            if let Err(error) = webhooks.fetch(request).await {
                tracing::warn!(%url, %error, "conference status callback failed");
            }
        }
    });
    tracing::info!(conference_sid = %sid, name = %name, "conference created");
    let created = chrono::Utc::now();
    let row = model::ConferenceRecord {
        sid,
        account_sid: account,
        friendly_name: name.clone(),
        status: model::ConferenceStatus::Init,
        region: model::ConferenceRecord::REGION.to_owned(),
        reason_conference_ended: None,
        call_sid_ending_conference: None,
        date_created: created,
        date_updated: created,
    };
    if let Err(e) = shared.store.insert_conference(&row).await {
        tracing::error!(conference_sid = %sid, error = %e, "cannot store the conference");
    }
    let mut task = RoomTask {
        row,
        core: Conference::new(Instant::now(), config),
        shared,
        room,
        members: HashMap::new(),
        auth_token,
        callbacks,
        record_from_start: false,
        recording_call: None,
        recording_callback: None,
        recording: None,
        announcements: HashMap::new(),
        ending: Vec::new(),
        next_playback: BEEP_ID + 1,
        ended: false,
    };
    let empty_deadline = tokio::time::Instant::now() + EMPTY_ROOM_TIMEOUT;
    while !task.ended {
        let empty = task.core.participants().is_empty();
        tokio::select! {
            () = tokio::time::sleep_until(empty_deadline), if empty => {
                tracing::info!(conference_sid = %sid, "nobody joined: room closed");
                let _ = task.core.end(Instant::now());
            }
            command = commands.recv() => match command {
                Some(command) => task.handle_command(command),
                // Every handle gone: nobody can join or reach the room any more.
                None => {
                    let _ = task.core.end(Instant::now());
                }
            },
            Some(event) = room_events.recv() => task.handle_room_event(event).await,
        }
        task.drain().await;
        for reply in task.ending.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }
    registry.forget(account, &name, sid);
    // Joins that raced the end are refused, so their callers start a new room.
    commands.close();
    while let Ok(command) = commands.try_recv() {
        task.refuse(command);
    }
    // The room recording ends with the room: wait a moment for its file.
    if task.recording.is_some() {
        task.room
            .stop_recording(task.recording.as_ref().map_or(0, |r| r.0));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        while task.recording.is_some() {
            match tokio::time::timeout_at(deadline, room_events.recv()).await {
                Ok(Some(event)) => task.handle_room_event(event).await,
                _ => break,
            }
        }
    }
    tracing::info!(conference_sid = %sid, "conference ended");
}

impl RoomTask {
    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join(join, reply) => {
                let result = self.core.handle_join(now, join.call_sid, join.options);
                if result.is_ok() {
                    if join.record && !self.record_from_start {
                        self.record_from_start = true;
                        self.recording_call = Some(join.call_sid);
                        self.recording_callback = join.recording_status_callback.clone();
                    }
                    self.members.insert(
                        join.call_sid,
                        Member {
                            stream: join.stream,
                            events: join.events,
                            applied: None,
                        },
                    );
                }
                let _ = reply.send(result.map(|()| self.core.sid()));
            }
            Command::Leave(call_sid, reason) => {
                let _ = self.core.handle_leave(now, call_sid, reason);
                self.remove(call_sid, false);
            }
            Command::Update(who, update, reply) => {
                let _ = reply.send(self.core.update_participant(now, &who, update));
            }
            Command::Kick(who, reply) => {
                let _ = reply.send(self.core.kick(now, &who));
            }
            // Answered once the end is carried out and saved (after `drain`), so the API reads
            // the conference completed.
            Command::End(reply) => match self.core.end(now) {
                Ok(()) => self.ending.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Announce(who, music, reply) => {
                let _ = reply.send(self.core.announce(now, who.as_ref(), music).map(|_| ()));
            }
            Command::AnnouncementDone(id, result) => {
                self.core.handle_announcement_done(now, id, result);
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(RoomSnapshot {
                    sid: self.core.sid(),
                    friendly_name: self.core.friendly_name().to_owned(),
                    status: self.core.status(),
                    participants: self.core.participants().to_vec(),
                });
            }
        }
    }

    fn refuse(&self, command: Command) {
        match command {
            Command::Join(_, reply) => {
                let _ = reply.send(Err(ConferenceError::Ended));
            }
            Command::Update(_, _, reply)
            | Command::Kick(_, reply)
            | Command::End(reply)
            | Command::Announce(_, _, reply) => {
                let _ = reply.send(Err(ConferenceError::Ended));
            }
            Command::Leave(..) | Command::Snapshot(_) | Command::AnnouncementDone(..) => {}
        }
    }

    /// Takes a participant's stream out of the room; `tell` when the call must hear of it.
    fn remove(&mut self, call_sid: CallSid, tell: bool) {
        if let Some(member) = self.members.remove(&call_sid) {
            if tell {
                let _ = member.events.send(ToParticipant::Removed);
            }
        }
    }

    async fn handle_room_event(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::PlaybackDone { id } => {
                if let Some(announcement) = self.announcements.remove(&id) {
                    self.core
                        .handle_announcement_done(Instant::now(), announcement, Ok(()));
                }
            }
            RoomEvent::RecordingStopped {
                id, duration, path, ..
            } => {
                if let Some((rid, sid, started)) = self.recording.take() {
                    if rid == id {
                        self.save_recording(sid, started, duration, &path).await;
                    } else {
                        self.recording = Some((rid, sid, started));
                    }
                }
            }
            RoomEvent::Speaking { stream, speaking } => {
                let who = self
                    .members
                    .iter()
                    .find(|(_, m)| m.stream.id() == stream)
                    .map(|(sid, _)| *sid);
                if let Some(call_sid) = who {
                    let _ = self.core.handle_speech(Instant::now(), call_sid, speaking);
                }
            }
            RoomEvent::RecordingFailed { id, reason } => {
                tracing::warn!(recording = id, %reason, "conference recording failed");
                self.recording = None;
            }
        }
    }

    async fn save_recording(
        &self,
        sid: model::RecordingSid,
        started: chrono::DateTime<chrono::Utc>,
        duration: std::time::Duration,
        path: &std::path::Path,
    ) {
        tracing::info!(recording_sid = %sid, conference_sid = %self.core.sid(), ?duration, path = %path.display(), "conference recording saved");
        let Some(call_sid) = self.recording_call else {
            return;
        };
        let now = chrono::Utc::now();
        let file_name = path
            .strip_prefix(&self.shared.config.recordings_dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let record = model::RecordingRecord {
            sid,
            account_sid: self.row.account_sid,
            call_sid,
            conference_sid: Some(self.row.sid),
            duration: duration.as_secs_f64().round() as u32,
            channels: 1,
            status: "completed".into(),
            source: "Conference".into(),
            start_time: started,
            file_name,
            date_created: now,
            date_updated: now,
        };
        if let Err(e) = self.shared.store.insert_recording(&record).await {
            tracing::error!(recording_sid = %sid, error = %e, "cannot store the conference recording");
            return;
        }
        if let Some((url, method)) = self.recording_callback.clone() {
            let recording_url = format!(
                "{}/2010-04-01/Accounts/{}/Recordings/{sid}",
                self.shared.config.public_url.trim_end_matches('/'),
                self.row.account_sid
            );
            let params = vec![
                ("AccountSid".to_owned(), self.row.account_sid.to_string()),
                ("ConferenceSid".to_owned(), self.row.sid.to_string()),
                ("CallSid".to_owned(), call_sid.to_string()),
                ("RecordingSid".to_owned(), sid.to_string()),
                ("RecordingUrl".to_owned(), recording_url),
                ("RecordingStatus".to_owned(), "completed".to_owned()),
                ("RecordingDuration".to_owned(), record.duration.to_string()),
                ("RecordingChannels".to_owned(), "1".to_owned()),
                ("RecordingStartTime".to_owned(), started.to_rfc2822()),
                ("RecordingSource".to_owned(), "DialConference".to_owned()),
            ];
            let _ = self.callbacks.send(WebhookRequest {
                url,
                method,
                params,
                auth_token: self.auth_token.clone(),
            });
        }
    }

    async fn drain(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                ConferenceOutput::StartWaitMusic { call_sid, music }
                | ConferenceOutput::StartHoldMusic { call_sid, music } => {
                    self.apply_mix();
                    if let Some(m) = self.members.get(&call_sid) {
                        let _ = m.events.send(ToParticipant::StartMusic(music));
                    }
                }
                ConferenceOutput::StopWaitMusic { call_sid }
                | ConferenceOutput::StopHoldMusic { call_sid } => {
                    if let Some(m) = self.members.get(&call_sid) {
                        let _ = m.events.send(ToParticipant::StopMusic);
                    }
                }
                ConferenceOutput::StartMixing => {
                    self.apply_mix();
                    self.row.status = model::ConferenceStatus::InProgress;
                    self.save_row().await;
                    if self.record_from_start && self.recording.is_none() {
                        self.start_recording();
                    }
                }
                ConferenceOutput::MixChanged => self.apply_mix(),
                ConferenceOutput::PlayBeep { beep } => {
                    let samples = match beep {
                        BeepKind::Enter => self.shared.conference_beeps.0.clone(),
                        BeepKind::Exit => self.shared.conference_beeps.1.clone(),
                    };
                    self.room.play(BEEP_ID, samples, 1);
                }
                ConferenceOutput::Announce {
                    id,
                    call_sid,
                    music,
                } => {
                    self.announce(id, call_sid, music).await;
                }
                ConferenceOutput::Kick { call_sid } => self.remove(call_sid, true),
                ConferenceOutput::StatusCallback {
                    url,
                    method,
                    mut params,
                    ..
                } => {
                    params.push(("Timestamp".to_owned(), chrono::Utc::now().to_rfc2822()));
                    let _ = self.callbacks.send(WebhookRequest {
                        url,
                        method,
                        params,
                        auth_token: self.auth_token.clone(),
                    });
                }
                ConferenceOutput::Ended { reason, call_sid } => {
                    tracing::info!(conference_sid = %self.core.sid(), reason = reason.as_str(), ending = ?call_sid, "conference over");
                    for call_sid in self.members.keys().copied().collect::<Vec<_>>() {
                        self.remove(call_sid, true);
                    }
                    self.row.status = model::ConferenceStatus::Completed;
                    self.row.reason_conference_ended = Some(reason.as_str().to_owned());
                    self.row.call_sid_ending_conference = call_sid;
                    self.save_row().await;
                    self.ended = true;
                }
            }
        }
    }

    async fn save_row(&mut self) {
        self.row.date_updated = chrono::Utc::now();
        if let Err(e) = self.shared.store.update_conference(&self.row).await {
            tracing::error!(conference_sid = %self.row.sid, error = %e, "cannot save the conference");
        }
    }

    /// Tells the media room how each participant takes part, as the core's plan says.
    fn apply_mix(&mut self) {
        let plan = self.core.mix_plan();
        let ids: HashMap<CallSid, u64> = self
            .members
            .iter()
            .map(|(sid, m)| (*sid, m.stream.id()))
            .collect();
        for entry in plan {
            let Some(member) = self.members.get_mut(&entry.call_sid) else {
                continue;
            };
            let (heard, coach_of) = match entry.speaks_to {
                engine::conference::Audience::Nobody => (false, None),
                engine::conference::Audience::Room => (true, None),
                engine::conference::Audience::Only(target) => match ids.get(&target) {
                    Some(id) => (true, Some(*id)),
                    None => (false, None),
                },
            };
            let part = Participation {
                heard,
                hears: entry.hears_room,
                coach_of,
            };
            if member.applied != Some(part) {
                member.stream.join_room(&self.room, part);
                member.applied = Some(part);
            }
        }
    }

    fn start_recording(&mut self) {
        let sid = model::RecordingSid::random(&mut rand::thread_rng());
        let path = crate::records::conference_recording_path(
            &self.shared.config,
            &self.core.account_sid(),
            &self.core.sid(),
            &sid,
        );
        let id = self.next_playback;
        self.next_playback += 1;
        self.room.start_recording(id, path);
        self.recording = Some((id, sid, chrono::Utc::now()));
    }

    /// Plays an announcement (a file, or the `<Say>`/`<Play>` of a document) into the room or
    /// to one participant.
    async fn announce(&mut self, id: u64, call_sid: Option<CallSid>, music: Music) {
        let samples = announcement_samples(&self.shared, &self.auth_token, &music).await;
        let now = Instant::now();
        match (samples, call_sid) {
            (Ok(samples), None) => {
                let playback = self.next_playback;
                self.next_playback += 1;
                self.announcements.insert(playback, id);
                self.room.play(playback, samples, 1);
            }
            (Ok(samples), Some(call_sid)) => match self.members.get(&call_sid) {
                Some(member) => {
                    let _ = member.events.send(ToParticipant::Announce { id, samples });
                }
                None => {
                    self.core
                        .handle_announcement_done(now, id, Err("the participant left".into()))
                }
            },
            (Err(e), _) => self.core.handle_announcement_done(now, id, Err(e)),
        }
    }
}

/// The audio of an `AnnounceUrl`: an audio file as is, or a document's `<Say>` and `<Play>`
/// in order.
async fn announcement_samples(
    shared: &Arc<Shared>,
    auth_token: &str,
    music: &Music,
) -> Result<Arc<[i16]>, String> {
    let request = WebhookRequest {
        url: music.url.clone(),
        method: music.method,
        params: Vec::new(),
        auth_token: auth_token.to_owned(),
    };
    let reply = shared
        .webhooks
        .fetch(request)
        .await
        .map_err(|e| e.to_string())?;
    let is_audio = reply
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("audio/"));
    if is_audio {
        return shared
            .load_source(engine::MediaSource::Url(music.url.clone()))
            .await;
    }
    let document = twiml::parse(&reply.body).map_err(|e| e.to_string())?;
    let base = url::Url::parse(&music.url).map_err(|e| e.to_string())?;
    let mut out: Vec<i16> = Vec::new();
    for verb in document.verbs {
        let source = match verb {
            twiml::Verb::Say(say) => engine::MediaSource::Tts {
                text: say.text,
                voice: say.voice,
                language: say.language,
            },
            twiml::Verb::Play(play) if !play.url.is_empty() => {
                let url = base.join(&play.url).map_err(|e| e.to_string())?;
                engine::MediaSource::Url(url.into())
            }
            _ => continue,
        };
        out.extend_from_slice(&shared.load_source(source).await?);
    }
    Ok(out.into())
}
