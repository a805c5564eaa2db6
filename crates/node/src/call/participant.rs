//! A call's side of rooms and queues: taking part in a conference (`<Dial><Conference>`) and
//! hearing wait or hold music. The room's decisions come from its task (`conference.rs`); the
//! music is an [`engine::wait::WaitLoop`] run on the call's own stream with the call's own
//! webhooks, so its requests are signed and its playbacks reported like the call's.

use std::time::{Duration, Instant};

use engine::conference::{
    Beep, CallbackEvents, LeaveReason, Music, ParticipantOptions, StatusCallbackConfig,
};
use engine::wait::{WaitLoop, WaitOutput};
use engine::{DialCallStatus, DialOutcome, HttpMethod};
use tokio::sync::mpsc;

use super::ActiveCall;
use crate::conference::{Join, Membership, ToParticipant};
use crate::webhook::WebhookRequest;

/// Ids of the wait loop's requests and playbacks start here, far above the engine's own.
pub(crate) const WAIT_ID_BASE: u64 = 1 << 48;

/// Playback ids of announcements to this participant alone: the room's announcement id plus
/// this, above the wait loop's.
pub(crate) const ANNOUNCE_ID_BASE: u64 = 1 << 56;

/// The call's part in a conference while its `<Dial><Conference>` runs.
pub(crate) struct ConferenceLeg {
    /// The engine's dial id.
    id: u64,
    membership: Membership,
    events: mpsc::UnboundedReceiver<ToParticipant>,
    joined_at: Instant,
}

/// Waits for the next message of the room the call is in (never, when in none).
pub(crate) async fn room_event(leg: &mut Option<ConferenceLeg>) -> Option<ToParticipant> {
    match leg {
        Some(leg) => leg.events.recv().await,
        None => std::future::pending().await,
    }
}

fn method(m: twiml::Method) -> HttpMethod {
    m.into()
}

/// The room's view of a `<Conference>` noun.
fn options(c: &twiml::DialConference) -> ParticipantOptions {
    let status_callback = c.status_callback.clone().map(|url| StatusCallbackConfig {
        url,
        method: method(c.status_callback_method),
        events: CallbackEvents::parse(&c.status_callback_events.join(" "))
            .unwrap_or(CallbackEvents::NONE),
    });
    ParticipantOptions {
        label: c.participant_label.clone(),
        muted: c.muted,
        beep: match c.beep {
            twiml::ConferenceBeep::True => Beep::True,
            twiml::ConferenceBeep::False => Beep::False,
            twiml::ConferenceBeep::OnEnter => Beep::OnEnter,
            twiml::ConferenceBeep::OnExit => Beep::OnExit,
        },
        start_conference_on_enter: c.start_conference_on_enter,
        end_conference_on_exit: c.end_conference_on_exit,
        coaching: c.coach.is_some(),
        call_sid_to_coach: c.coach.as_deref().and_then(|s| s.parse().ok()),
        wait_music: c.wait_url.clone().map(|url| Music {
            url,
            method: method(c.wait_method),
        }),
        max_participants: Some(c.max_participants),
        status_callback,
    }
}

impl ActiveCall {
    /// `<Dial><Conference>`: joins the room (creating it when none is live).
    pub(crate) async fn start_conference(&mut self, id: u64, dial: twiml::Dial) {
        let Some(twiml::DialJoin::Conference(noun)) = dial.join else {
            return;
        };
        let Some(stream) = self.stream.as_ref().map(|s| s.reference()) else {
            return self.report_conference_end(id, DialCallStatus::Failed, Duration::ZERO, None);
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let join = Join {
            call_sid: self.record.sid,
            stream,
            options: options(&noun),
            record: noun.record == twiml::ConferenceRecord::RecordFromStart,
            recording_status_callback: noun
                .recording_status_callback
                .clone()
                .map(|url| (url, method(noun.recording_status_callback_method))),
            events: events_tx,
        };
        let shared = self.shared.clone();
        let joined = shared
            .conferences
            .join(
                &shared,
                self.record.account_sid,
                &self.auth_token,
                &noun.name,
                join,
            )
            .await;
        match joined {
            Ok(membership) => {
                tracing::info!(call_sid = %self.record.sid, conference_sid = %membership.sid, room = %noun.name, "joined conference");
                self.conference = Some(ConferenceLeg {
                    id,
                    membership,
                    events,
                    joined_at: Instant::now(),
                });
            }
            Err(e) => {
                tracing::info!(call_sid = %self.record.sid, error = %e, "conference join refused");
                if let Some(code) = e.twilio_code() {
                    self.notify(code, e.to_string()).await;
                }
                self.report_conference_end(id, DialCallStatus::Failed, Duration::ZERO, None);
            }
        }
    }

    pub(crate) fn handle_room_event(&mut self, event: Option<ToParticipant>) {
        match event {
            Some(ToParticipant::StartMusic(music)) => self.start_music(music),
            Some(ToParticipant::StopMusic) => self.stop_waiting(),
            Some(ToParticipant::Announce { id, samples }) => {
                // The stream's own playback is mixed into what it hears from the room.
                if let Some(s) = &self.stream {
                    s.play(ANNOUNCE_ID_BASE + id, samples, 1);
                }
            }
            // Taken out, or the room's task is gone.
            Some(ToParticipant::Removed) | None => self.end_conference(None),
        }
    }

    /// Leaves the room (caller gone, live update, or taken out) and reports the dial over.
    pub(crate) fn end_conference(&mut self, leaving: Option<LeaveReason>) {
        let Some(leg) = self.conference.take() else {
            return;
        };
        if let Some(reason) = leaving {
            leg.membership.leave(reason);
        }
        if let Some(s) = &self.stream {
            s.leave_room();
        }
        self.stop_waiting();
        let sid = leg.membership.sid;
        self.report_conference_end(
            leg.id,
            DialCallStatus::Completed,
            leg.joined_at.elapsed(),
            Some(sid),
        );
    }

    /// `CancelDial` of a conference dial (a live update: the caller hanging up is handled
    /// before the engine hears of it).
    pub(crate) fn cancel_conference(&mut self, id: u64) -> bool {
        if self.conference.as_ref().is_some_and(|leg| leg.id == id) {
            self.end_conference(Some(LeaveReason::CallUpdated));
            return true;
        }
        false
    }

    fn report_conference_end(
        &mut self,
        id: u64,
        status: DialCallStatus,
        duration: Duration,
        sid: Option<engine::ConferenceSid>,
    ) {
        let outcome = DialOutcome {
            status,
            dial_call_sid: None,
            duration,
            recording: None,
            params: sid
                .map(|sid| vec![("ConferenceSid".to_owned(), sid.to_string())])
                .unwrap_or_default(),
        };
        self.input(engine::Input::DialEnded { id, outcome });
    }

    // ---- wait and hold music ----

    /// Plays `music` until stopped: `None` is the default hold music, an empty URL silence.
    fn start_music(&mut self, music: Option<Music>) {
        match music {
            Some(m) if m.url.is_empty() => {
                self.stop_waiting();
            }
            Some(m) => self.start_waiting(Some(m.url), m.method, self.base_webhook_params(), false),
            None => self.start_waiting(None, HttpMethod::Post, Vec::new(), false),
        }
    }

    /// The call's own parameters for wait-music requests.
    pub(crate) fn base_webhook_params(&self) -> Vec<(String, String)> {
        let r = &self.record;
        vec![
            ("AccountSid".into(), r.account_sid.to_string()),
            ("CallSid".into(), r.sid.to_string()),
            ("From".into(), r.from.clone()),
            ("To".into(), r.to.clone()),
            ("CallStatus".into(), r.status.as_str().to_owned()),
            ("Direction".into(), r.direction.to_string()),
            ("ApiVersion".into(), "2010-04-01".into()),
        ]
    }

    /// Starts a wait loop on the call's stream, replacing one that runs.
    pub(crate) fn start_waiting(
        &mut self,
        url: Option<String>,
        method: HttpMethod,
        params: Vec<(String, String)>,
        queue_verbs: bool,
    ) {
        self.stop_waiting();
        let first = self.next_wait_id;
        let wait = WaitLoop::new(Instant::now(), url, method, params, queue_verbs, first);
        self.waiting = Some(wait);
    }

    pub(crate) fn stop_waiting(&mut self) {
        if let Some(mut wait) = self.waiting.take() {
            wait.stop();
            self.next_wait_id = wait.next_id();
            while let Some(output) = wait.poll_output() {
                if output == WaitOutput::StopPlayback {
                    self.stop_wait_playback();
                }
            }
        }
    }

    fn stop_wait_playback(&mut self) {
        if self.playing.is_some_and(|id| id >= WAIT_ID_BASE) {
            self.playing = None;
            if let Some(s) = &self.stream {
                s.stop_playback();
            }
        }
    }

    /// Carries out what the wait loop asks; returns `<Leave>` or `<Hangup>` for the queue.
    pub(crate) fn drain_waiting(&mut self) -> Option<WaitOutput> {
        let mut signal = None;
        loop {
            let Some(wait) = self.waiting.as_mut() else {
                return signal;
            };
            let Some(output) = wait.poll_output() else {
                self.next_wait_id = wait.next_id();
                return signal;
            };
            match output {
                WaitOutput::Fetch {
                    request_id,
                    url,
                    method,
                    params,
                } => {
                    let params = self.fresh_wait_params(params);
                    self.fetch_for_wait(request_id, url, method, params);
                }
                WaitOutput::Play { id, source, loops } => self.play(id, source, loops),
                WaitOutput::StopPlayback => self.stop_wait_playback(),
                WaitOutput::Leave | WaitOutput::Hangup | WaitOutput::Done | WaitOutput::Failed => {
                    signal = Some(output)
                }
                WaitOutput::Notify { code, message } => {
                    tracing::warn!(call_sid = %self.record.sid, code, message, "wait music");
                }
            }
        }
    }

    fn fetch_for_wait(
        &self,
        request_id: u64,
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
    ) {
        let request = WebhookRequest {
            url,
            method,
            params,
            auth_token: self.auth_token.clone(),
        };
        self.spawn_fetch(request_id, request);
    }

    pub(crate) fn is_wait_id(id: u64) -> bool {
        (WAIT_ID_BASE..ANNOUNCE_ID_BASE).contains(&id)
    }

    /// A playback ended: true when it was an announcement of the room's, now reported.
    pub(crate) fn announcement_played(&mut self, id: u64) -> bool {
        if id < ANNOUNCE_ID_BASE {
            return false;
        }
        if let Some(leg) = &self.conference {
            leg.membership
                .announcement_done(id - ANNOUNCE_ID_BASE, Ok(()));
        }
        true
    }

    pub(crate) fn dequeue_bridged(&self) -> bool {
        self.dequeue_bridged_at().is_some()
    }

    pub(crate) fn wait_timeout(&self) -> Option<Instant> {
        self.waiting.as_ref().and_then(WaitLoop::poll_timeout)
    }
}
