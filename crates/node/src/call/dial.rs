//! `<Dial>`: the legs of one dial and how the parent call's loop drives them.
//!
//! On the engine's `Output::Dial` the parent call ([`ActiveCall`]) creates one child call record
//! per leg (`outbound-dial`, `parent_call_sid`), a media stream on the parent's worker
//! (`allocate_near`, so the two can be bridged) and places the legs at once through
//! `outbound::originate`: a `<Number>` or `<Sip>` is one leg, a `<Client>` one leg per
//! registered contact. Ten legs at most, as Twilio.
//!
//! While they ring the caller hears ringback (or, with `answerOnBridge`, stays unanswered with
//! the 180 it already has). A leg that answers first gets its `sendDigits`, then its whisper
//! (`url`: a child `engine::Call` run on the leg alone), and is bridged; the first leg to reach
//! the bridge wins and every other leg is cancelled (or hung up, if it answered meanwhile).
//! The dial ends when the bridged leg hangs up, the caller hangs up or presses `*`
//! (`hangupOnStar`), `timeLimit` passes, a live update replaces the document, or every leg
//! failed; the engine then gets `DialEnded` with Twilio's `DialCallStatus`.
//!
//! Who wins, what happens to the others, when the dial is over and with which status are the
//! decisions of [`engine::dial::DialRace`]; this module feeds it what the legs do and carries
//! out its [`DialAction`]s.
//!
//! Everything of a dial arrives on one channel (leg progress, the legs' SIP signals, their
//! media events, API updates of child calls, whisper webhooks), tagged with the leg's index,
//! so the parent's loop waits on one more branch and stays single-threaded.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use engine::dial::{DialAction, DialRace, LegState};
use engine::{DialCallStatus, DialOutcome, DialRecording, HttpMethod, Output};
use model::records::{CallRecord, RecordingRecord};
use model::{CallDirection, CallSid, CallStatus, RecordingSid};
use rand::Rng;
use sip::sdp::{Negotiated, SessionDescription};
use sip::transaction::ServerTxId;
use sip::{Method, Request, Response};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    apply_leg_media, apply_media, http_method, ActiveCall, CallSignal, Leg, StatusCallbacks,
};
use crate::calls_registry::{CallControl, Registration};
use crate::media::{MediaEvent, Stream};
use crate::originate::{LegEvent, LegHandle, LegRequest, LegTarget};
use crate::signals::{SipCommand, ALLOW};
use crate::webhook::{WebhookError, WebhookRequest};
use crate::Shared;

/// Twilio rings ten targets at most.
pub const MAX_LEGS: usize = 10;

/// Media ids of the parent stream the dial uses, far above the engine's own counters.
const RINGBACK_ID: u64 = u64::MAX - 1;
const RECORDING_ID: u64 = u64::MAX - 2;

/// How long the end of a dial waits for its recording to be closed before reporting without it.
const RECORDING_WAIT: Duration = Duration::from_secs(3);

/// What happened to one leg.
pub(crate) enum LegInput {
    /// Boxed: an answered leg carries its whole dialog, ten times the size of the other inputs.
    Progress(Box<LegEvent>),
    Signal(CallSignal),
    Media(MediaEvent),
    Control(CallControl),
    Webhook {
        request_id: u64,
        result: Result<crate::webhook::WebhookReply, WebhookError>,
    },
    Audio {
        id: u64,
        result: Result<Arc<[i16]>, String>,
    },
}

/// Why the parent's loop woke up for the dial.
pub(crate) enum DialWake {
    Input(usize, LegInput),
    Timeout,
}

/// Why a dial ends (the race's own type).
pub(crate) use engine::dial::EndCause;

/// A task forwarding one receiver into the dial's channel, stopped with the leg (so the
/// receiver is dropped and the SIP task forgets the leg's routes).
struct Forward(JoinHandle<()>);

impl Drop for Forward {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn forward<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
    tx: mpsc::UnboundedSender<(usize, LegInput)>,
    index: usize,
    wrap: fn(T) -> LegInput,
) -> Forward {
    Forward(tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if tx.send((index, wrap(item))).is_err() {
                break;
            }
        }
    }))
}

/// The child `engine::Call` of a whisper (`<Number url>`), run on the callee's leg only.
struct Whisper {
    engine: engine::Call,
    /// A fetched document holds `<Hangup>` or `<Reject>`: the engine's `Hangup` then refuses
    /// the call instead of ending the whisper (the engine emits `Hangup` for both).
    refuses: bool,
    playing: Option<u64>,
}

struct DialLeg {
    target: twiml::DialTarget,
    record: CallRecord,
    callbacks: StatusCallbacks,
    _registration: Registration,
    handle: Option<LegHandle>,
    stream: Option<Stream>,
    sip: Option<Leg>,
    negotiated: Option<Negotiated>,
    answered_at: Option<SystemTime>,
    /// Its call record was closed.
    closed: bool,
    whisper: Option<Whisper>,
    sdp_version: u64,
    session_id: u64,
    forwards: Vec<Forward>,
    /// The parent call's rates.
    rates: Option<std::sync::Arc<billing::RateTable>>,
}

/// A recording of the dial, on the parent stream.
struct DialRecordingState {
    sid: RecordingSid,
    started: DateTime<Utc>,
    channels: u16,
    running: bool,
}

pub(crate) struct Dial {
    id: u64,
    spec: twiml::Dial,
    legs: Vec<DialLeg>,
    events_tx: mpsc::UnboundedSender<(usize, LegInput)>,
    events: mpsc::UnboundedReceiver<(usize, LegInput)>,
    race: DialRace,
    ringback: bool,
    recording: Option<DialRecordingState>,
}

/// A dial that is over but waits for its recording file to be closed before the engine hears.
pub(crate) struct PendingDialEnd {
    id: u64,
    outcome: DialOutcome,
    recording: DialRecordingState,
    callback: Option<String>,
    deadline: tokio::time::Instant,
}

impl Dial {
    fn poll_timeout(&self) -> Option<tokio::time::Instant> {
        let whispers = self
            .legs
            .iter()
            .filter_map(|l| l.whisper.as_ref().and_then(|w| w.engine.poll_timeout()))
            .map(tokio::time::Instant::from_std);
        let limit = self.race.poll_timeout().map(tokio::time::Instant::from_std);
        whispers.chain(limit).min()
    }
}

/// Waits for the next thing the dial must handle (never returns without a dial).
pub(crate) async fn wait(dial: &mut Option<Dial>) -> DialWake {
    let Some(d) = dial.as_mut() else {
        return std::future::pending().await;
    };
    let deadline = d.poll_timeout();
    let sleep = async {
        match deadline {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        Some((index, input)) = d.events.recv() => DialWake::Input(index, input),
        () = sleep => DialWake::Timeout,
    }
}

/// Waits until a pending dial end gives up on its recording.
pub(crate) async fn wait_pending(pending: &Option<PendingDialEnd>) {
    match pending {
        Some(p) => tokio::time::sleep_until(p.deadline).await,
        None => std::future::pending().await,
    }
}

/// One ringback cadence, made once per process.
fn ringback() -> Arc<[i16]> {
    static RINGBACK: std::sync::OnceLock<Arc<[i16]>> = std::sync::OnceLock::new();
    RINGBACK
        .get_or_init(|| media::tone::ringback().into())
        .clone()
}

fn seconds_since(t: Option<SystemTime>) -> u32 {
    t.and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or(0, |d| d.as_secs_f64().round() as u32)
}

/// Ends a child call's record and posts its `completed` callback.
fn close_record(shared: &Shared, leg: &mut DialLeg, status: CallStatus) {
    if leg.closed {
        return;
    }
    leg.closed = true;
    let now = Utc::now();
    leg.record.status = status;
    leg.record.end_time = Some(now);
    leg.record.date_updated = now;
    leg.record.duration = Some(seconds_since(leg.answered_at));
    let answered = leg.answered_at.map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
    leg.record.price = crate::pricing::call_price(leg.rates.as_deref(), &leg.record, answered);
    shared.records.update_call(&leg.record);
    tracing::info!(call_sid = %leg.record.sid, parent = ?leg.record.parent_call_sid, status = %status, "dial leg ended");
    leg.callbacks.post("completed", &leg.record);
}

fn send_bye(shared: &Shared, leg: &mut Leg) {
    let Some(dialog) = leg.dialog.as_mut() else {
        return;
    };
    let bye = dialog.request(Method::Bye);
    let _ = shared.sip.send(SipCommand::Request {
        request: bye,
        destination: leg.peer,
        transport: leg.transport,
        reply: None,
    });
}

/// Hangs a leg up the way its state needs (CANCEL while ringing, BYE once answered), closing its
/// record with `status`; its stream and SIP routes go with it.
fn drop_leg(shared: &Shared, leg: &mut DialLeg, status: CallStatus) {
    if leg.closed {
        return;
    }
    match leg.sip.as_mut() {
        // Answered (screened or bridged): BYE.
        Some(sip) => send_bye(shared, sip),
        // Still ringing: CANCEL (a leg that failed has no handle left).
        None => {
            if let Some(h) = &leg.handle {
                h.cancel();
            }
        }
    }
    close_record(shared, leg, status);
    leg.whisper = None;
    leg.stream = None;
    leg.sip = None;
    leg.forwards.clear();
    // The handle is kept until the dial goes: dropping it now would CANCEL a second time.
}

impl ActiveCall {
    /// The engine's `Output::Dial`: creates the legs and starts ringing them. The targets at
    /// `refused` (indexes into `spec.targets`: numbers outside their calling window) get a child
    /// call that fails at once, as a client with no registered phone does.
    pub(crate) fn start_dial(&mut self, id: u64, spec: twiml::Dial, refused: &[usize]) {
        if let Some(old) = self.dial.as_ref().map(|d| d.id) {
            // The engine starts one dial at a time; a stale one ends as if cancelled.
            tracing::warn!(call_sid = %self.record.sid, old, "a dial started while another ran");
            self.end_dial(EndCause::Cancelled);
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        let from = spec
            .caller_id
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| self.record.from.clone());
        let timeout = Duration::from_secs(u64::from(spec.timeout));
        let mut legs: Vec<DialLeg> = Vec::new();
        // Legs that could not be placed: (index, outcome for the dial's status, record status).
        let mut not_placed: Vec<(usize, CallStatus, CallStatus)> = Vec::new();
        for (position, target) in spec.targets.clone().into_iter().enumerate() {
            let (to, destinations) = match &target.kind {
                twiml::DialKind::Number(n) => (n.clone(), vec![LegTarget::Address(n.clone())]),
                twiml::DialKind::Sip(uri) => (uri.clone(), vec![LegTarget::Address(uri.clone())]),
                twiml::DialKind::Client(name) => {
                    let contacts =
                        crate::registrar::contacts(&self.shared, &self.record.account_sid, name);
                    let targets = contacts
                        .into_iter()
                        .map(|c| LegTarget::Direct {
                            uri: c.uri,
                            destination: c.destination,
                            transport: c.transport,
                        })
                        .collect();
                    (format!("client:{name}"), targets)
                }
            };
            if destinations.is_empty() || refused.contains(&position) {
                // A client with no registered phone, or a number outside its calling window: a
                // child call that fails at once.
                let index = legs.len();
                if index < MAX_LEGS {
                    legs.push(self.new_leg(&events_tx, index, target.clone(), &from, &to));
                    let outcome = if destinations.is_empty() { CallStatus::NoAnswer } else { CallStatus::Failed };
                    not_placed.push((index, outcome, CallStatus::Failed));
                }
                continue;
            }
            for destination in destinations {
                let index = legs.len();
                if index >= MAX_LEGS {
                    break;
                }
                let mut leg = self.new_leg(&events_tx, index, target.clone(), &from, &to);
                let (media_tx, media_rx) = mpsc::unbounded_channel();
                let stream = match &self.stream {
                    Some(parent) => self.shared.media.allocate_near(parent, media_tx),
                    None => self.shared.media.allocate(media_tx),
                };
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, call_sid = %leg.record.sid, "no RTP ports for a dial leg");
                        legs.push(leg);
                        not_placed.push((index, CallStatus::Failed, CallStatus::Failed));
                        continue;
                    }
                };
                leg.forwards
                    .push(forward(media_rx, events_tx.clone(), index, LegInput::Media));
                let request = LegRequest {
                    account_sid: self.record.account_sid,
                    call_sid: leg.record.sid,
                    to: destination,
                    from: from.clone(),
                    timeout,
                    local_port: stream.local_port,
                    headers: client_headers(&target, &leg.record, &self.record),
                    trunk_slot: None,
                };
                let mut handle = crate::originate::originate(self.shared.clone(), request);
                let progress = std::mem::replace(&mut handle.events, mpsc::unbounded_channel().1);
                leg.forwards
                    .push(forward(progress, events_tx.clone(), index, |e| {
                        LegInput::Progress(Box::new(e))
                    }));
                leg.handle = Some(handle);
                leg.stream = Some(stream);
                legs.push(leg);
            }
        }
        let now = std::time::Instant::now();
        let race = DialRace::new(
            now,
            legs.len(),
            Duration::from_secs(u64::from(spec.time_limit)),
            spec.hangup_on_star,
        );
        let mut dial = Dial {
            id,
            spec,
            legs,
            events_tx,
            events,
            race,
            ringback: false,
            recording: None,
        };
        for (index, outcome, record) in not_placed {
            dial.race.handle_leg_not_placed(now, index, outcome, record);
        }
        tracing::info!(call_sid = %self.record.sid, legs = dial.legs.len(), "dial started");
        if matches!(
            dial.spec.record,
            twiml::DialRecord::RecordFromRinging | twiml::DialRecord::RecordFromRingingDual
        ) {
            self.start_dial_recording(&mut dial);
        }
        if self.answered_at.is_some() && !dial.race.is_ended() {
            if let Some(parent) = &self.stream {
                parent.play(RINGBACK_ID, ringback(), 0);
                dial.ringback = true;
            }
        }
        self.dial = Some(dial);
        // Only drops and the end can follow from the start (nobody has answered yet).
        self.run_race_now();
    }

    fn new_leg(
        &self,
        events_tx: &mpsc::UnboundedSender<(usize, LegInput)>,
        index: usize,
        target: twiml::DialTarget,
        from: &str,
        to: &str,
    ) -> DialLeg {
        let now = Utc::now();
        let record = CallRecord {
            sid: CallSid::generate(),
            account_sid: self.record.account_sid,
            parent_call_sid: Some(self.record.sid),
            phone_number_sid: None,
            from: from.to_owned(),
            to: to.to_owned(),
            status: CallStatus::Queued,
            direction: CallDirection::OutboundDial,
            start_time: None,
            end_time: None,
            duration: None,
            answered_by: None,
            price: None,
            date_created: now,
            date_updated: now,
            date_scheduled: None,
        };
        self.shared.records.insert_call(&record);
        let (registration, control) = self.shared.calls.register_parties(
            record.account_sid,
            record.sid,
            record.from.clone(),
            record.to.clone(),
        );
        let events = if target.status_callback_events.is_empty() {
            vec!["completed".to_owned()]
        } else {
            target.status_callback_events.clone()
        };
        let mut callbacks = StatusCallbacks::new(
            &self.shared,
            target.status_callback.clone(),
            HttpMethod::Post,
            events,
            self.auth_token.clone(),
        );
        callbacks.post("initiated", &record);
        DialLeg {
            target,
            record,
            callbacks,
            _registration: registration,
            handle: None,
            stream: None,
            sip: None,
            negotiated: None,
            answered_at: None,
            closed: false,
            whisper: None,
            sdp_version: 1,
            session_id: rand::thread_rng().gen::<u32>() as u64,
            forwards: vec![forward(
                control,
                events_tx.clone(),
                index,
                LegInput::Control,
            )],
            rates: self.rates.clone(),
        }
    }

    fn start_dial_recording(&mut self, dial: &mut Dial) {
        let Some(parent) = &self.stream else { return };
        if dial.recording.is_some() {
            return;
        }
        let channels = match dial.spec.record {
            twiml::DialRecord::RecordFromAnswerDual | twiml::DialRecord::RecordFromRingingDual => 2,
            _ => 1,
        };
        let sid = RecordingSid::generate();
        let path = crate::records::recording_path(
            &self.shared.config,
            &self.record.account_sid,
            &self.record.sid,
            &sid,
        );
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::error!(error = %e, "cannot create the recordings directory");
            }
        }
        parent.start_call_recording(RECORDING_ID, path, channels);
        dial.recording = Some(DialRecordingState {
            sid,
            started: Utc::now(),
            channels,
            running: true,
        });
    }

    /// Something happened to the dial.
    pub(crate) async fn handle_dial(&mut self, wake: DialWake) {
        match wake {
            DialWake::Timeout => self.handle_dial_timeout().await,
            DialWake::Input(index, input) => self.handle_leg_input(index, input).await,
        }
        self.run_race().await;
    }

    async fn handle_dial_timeout(&mut self) {
        let std_now = std::time::Instant::now();
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        dial.race.handle_timeout(std_now);
        if dial.race.is_ended() {
            tracing::info!(call_sid = %self.record.sid, "dial timeLimit reached");
            return;
        }
        let due: Vec<usize> = dial
            .legs
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.whisper
                    .as_ref()
                    .and_then(|w| w.engine.poll_timeout())
                    .is_some_and(|t| t <= std_now)
            })
            .map(|(i, _)| i)
            .collect();
        for index in due {
            if let Some(w) = self
                .dial
                .as_mut()
                .and_then(|d| d.legs.get_mut(index))
                .and_then(|l| l.whisper.as_mut())
            {
                w.engine.handle_timeout(std_now);
            }
            self.drain_whisper(index).await;
        }
    }

    async fn handle_leg_input(&mut self, index: usize, input: LegInput) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let Some(leg) = dial.legs.get_mut(index) else {
            return;
        };
        let shared = self.shared.clone();
        let now = std::time::Instant::now();
        let state = dial.race.leg_state(index);
        match input {
            LegInput::Progress(event) => match *event {
                LegEvent::Ringing => {
                    if state == Some(LegState::Ringing) && leg.record.status == CallStatus::Queued {
                        leg.record.status = CallStatus::Ringing;
                        leg.record.date_updated = Utc::now();
                        shared.records.update_call(&leg.record);
                        leg.callbacks.post("ringing", &leg.record);
                    }
                }
                LegEvent::Failed { status, sip_status } => {
                    if state != Some(LegState::Ringing) {
                        return;
                    }
                    tracing::info!(call_sid = %leg.record.sid, status = %status, ?sip_status, "dial leg not answered");
                    leg.handle = None;
                    dial.race.handle_leg_failed(now, index, status);
                }
                LegEvent::Answered {
                    leg: mut sip,
                    negotiated,
                    webrtc,
                } => {
                    if !dial.race.handle_leg_answered(now, index) {
                        // Too late: someone else was bridged (or the leg was given up).
                        send_bye(&shared, &mut sip);
                        return;
                    }
                    if let Some(stream) = &leg.stream {
                        apply_leg_media(stream, &negotiated, webrtc);
                    }
                    let signals = std::mem::replace(&mut sip.signals, mpsc::unbounded_channel().1);
                    leg.forwards.push(forward(
                        signals,
                        dial.events_tx.clone(),
                        index,
                        LegInput::Signal,
                    ));
                    leg.sip = Some(sip);
                    leg.negotiated = Some(negotiated);
                    leg.answered_at = Some(SystemTime::now());
                    let now = Utc::now();
                    leg.record.status = CallStatus::InProgress;
                    leg.record.start_time = Some(now);
                    leg.record.date_updated = now;
                    shared.records.update_call(&leg.record);
                    leg.callbacks.post("answered", &leg.record);
                    tracing::info!(call_sid = %leg.record.sid, "dial leg answered");
                    match leg.target.send_digits.clone().filter(|d| !d.is_empty()) {
                        Some(digits) => {
                            if let Some(stream) = &leg.stream {
                                stream.send_digits(index as u64, &digits);
                            }
                        }
                        None => self.after_digits(index).await,
                    }
                }
            },
            LegInput::Media(MediaEvent::DigitsSent { id })
                if id == index as u64 && state == Some(LegState::Screening) =>
            {
                if leg.whisper.is_none() {
                    self.after_digits(index).await;
                }
            }
            LegInput::Media(MediaEvent::Dtmf { digit }) => {
                if let Some(w) = leg.whisper.as_mut() {
                    w.engine
                        .handle_input(std::time::Instant::now(), engine::Input::Dtmf { digit });
                    self.drain_whisper(index).await;
                }
            }
            LegInput::Media(MediaEvent::PlaybackDone { id }) => {
                if let Some(w) = leg.whisper.as_mut() {
                    if w.playing == Some(id) {
                        w.playing = None;
                    }
                    w.engine.handle_input(
                        std::time::Instant::now(),
                        engine::Input::PlaybackDone { id },
                    );
                    self.drain_whisper(index).await;
                }
            }
            LegInput::Media(_) => {}
            LegInput::Signal(signal) => self.handle_leg_signal(index, signal),
            // The API ended the leg's call; it still needs its BYE or CANCEL (the race's drop).
            LegInput::Control(CallControl::End(_)) => {
                dial.race.handle_leg_ended_by_api(now, index);
            }
            // A live update of a child call would take it out of the bridge: not supported.
            LegInput::Control(_) => {}
            LegInput::Webhook { request_id, result } => {
                let Some(w) = leg.whisper.as_mut() else {
                    return;
                };
                if let Ok(reply) = &result {
                    if reply.body.contains("<Hangup") || reply.body.contains("<Reject") {
                        w.refuses = true;
                    }
                }
                let result = result
                    .map(engine::WebhookReply::from)
                    .map_err(engine::WebhookFailure::from);
                w.engine.handle_input(
                    std::time::Instant::now(),
                    engine::Input::WebhookResult { request_id, result },
                );
                self.drain_whisper(index).await;
            }
            LegInput::Audio { id, result } => {
                let Some(w) = leg.whisper.as_mut() else {
                    return;
                };
                if w.playing != Some(id) {
                    return;
                }
                match result {
                    Ok(samples) => {
                        if let Some(s) = &leg.stream {
                            s.play(id, samples, 1);
                        }
                    }
                    Err(reason) => {
                        w.engine.handle_input(
                            std::time::Instant::now(),
                            engine::Input::PlaybackFailed { id, reason },
                        );
                        self.drain_whisper(index).await;
                    }
                }
            }
        }
    }

    /// Digits sent (or none to send): the whisper if there is one, else the bridge.
    async fn after_digits(&mut self, index: usize) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let Some(leg) = dial.legs.get_mut(index) else {
            return;
        };
        let Some(url) = leg.target.url.clone().filter(|u| !u.is_empty()) else {
            dial.race.handle_leg_ready(std::time::Instant::now(), index);
            return;
        };
        let config = engine::CallConfig {
            call_sid: leg.record.sid,
            account_sid: leg.record.account_sid,
            from: leg.record.from.clone(),
            to: leg.record.to.clone(),
            direction: CallDirection::OutboundDial,
            voice_url: url,
            voice_method: method(leg.target.method),
            fallback_url: None,
            fallback_method: HttpMethod::Post,
            public_url: self.shared.config.public_url.clone(),
            twiml: None,
            extra_params: Vec::new(),
        };
        let engine = engine::Call::new(std::time::Instant::now(), config, rand::thread_rng().gen());
        leg.whisper = Some(Whisper {
            engine,
            refuses: false,
            playing: None,
        });
        self.drain_whisper(index).await;
    }

    /// Carries out what a whisper's engine asks, on the callee's leg only.
    async fn drain_whisper(&mut self, index: usize) {
        loop {
            let Some(dial) = self.dial.as_mut() else {
                return;
            };
            let Some(leg) = dial.legs.get_mut(index) else {
                return;
            };
            let Some(w) = leg.whisper.as_mut() else {
                return;
            };
            let Some(output) = w.engine.poll_output() else {
                return;
            };
            let now = std::time::Instant::now();
            match output {
                Output::FetchWebhook {
                    request_id,
                    url,
                    method,
                    params,
                } => {
                    let webhooks = self.shared.webhooks.clone();
                    let events = dial.events_tx.clone();
                    let request = WebhookRequest {
                        url,
                        method,
                        params,
                        auth_token: self.auth_token.clone(),
                    };
                    tokio::spawn(async move {
                        let result = webhooks.fetch(request).await;
                        let _ = events.send((index, LegInput::Webhook { request_id, result }));
                    });
                }
                Output::Play {
                    id,
                    source,
                    loops: _,
                } => {
                    w.playing = Some(id);
                    let shared = self.shared.clone();
                    let events = dial.events_tx.clone();
                    tokio::spawn(async move {
                        let result = shared.load_source(source).await;
                        let _ = events.send((index, LegInput::Audio { id, result }));
                    });
                }
                Output::StopPlayback => {
                    w.playing = None;
                    if let Some(s) = &leg.stream {
                        s.stop_playback();
                    }
                }
                // A whisper records nothing and dials nobody: report those as done at once.
                Output::StartRecording { id, .. } => w.engine.handle_input(
                    now,
                    engine::Input::RecordingStopped {
                        id,
                        duration: Duration::ZERO,
                        stop: engine::RecordStop::Stopped,
                    },
                ),
                Output::Dial { id, .. } => {
                    let outcome = DialOutcome {
                        status: DialCallStatus::Failed,
                        dial_call_sid: None,
                        duration: Duration::ZERO,
                        recording: None,
                        params: Vec::new(),
                    };
                    w.engine
                        .handle_input(now, engine::Input::DialEnded { id, outcome });
                }
                // Nor does it wait in a queue.
                Output::Enqueue { id, .. } => {
                    let outcome = engine::EnqueueOutcome {
                        result: engine::QueueResult::Error,
                        queue_sid: None,
                        queue_time: Duration::ZERO,
                    };
                    w.engine
                        .handle_input(now, engine::Input::EnqueueEnded { id, outcome });
                }
                Output::Hangup | Output::Reject { .. } => {
                    let refuses = w.refuses || matches!(output, Output::Reject { .. });
                    leg.whisper = None;
                    if refuses {
                        tracing::info!(call_sid = %leg.record.sid, "the whisper refused the call");
                        dial.race.handle_leg_refused(now, index);
                    } else {
                        if let Some(s) = &leg.stream {
                            s.stop_playback();
                        }
                        dial.race.handle_leg_ready(now, index);
                    }
                    return;
                }
                Output::Notify { code, message } => {
                    tracing::warn!(call_sid = %leg.record.sid, code, message, "whisper error");
                }
                Output::Answer
                | Output::StopRecording { .. }
                | Output::CancelDial { .. }
                | Output::LeaveQueue { .. }
                | Output::Finished { .. } => {}
            }
        }
    }

    /// Carries out what the race decided, until it has nothing more to say.
    pub(crate) async fn run_race(&mut self) {
        loop {
            let Some(action) = self.dial.as_mut().and_then(|d| d.race.poll_action()) else {
                return;
            };
            match action {
                DialAction::Bridge { leg } => self.bridge(leg).await,
                other => self.carry_out(other),
            }
        }
    }

    /// Like [`ActiveCall::run_race`] where nothing can be waited for: after the dial's start,
    /// its end, or a digit, the race only drops legs and ends.
    fn run_race_now(&mut self) {
        while let Some(action) = self.dial.as_mut().and_then(|d| d.race.poll_action()) {
            self.carry_out(action);
        }
    }

    fn carry_out(&mut self, action: DialAction) {
        let shared = self.shared.clone();
        match action {
            DialAction::Drop { leg, status } => {
                if let Some(leg) = self.dial.as_mut().and_then(|d| d.legs.get_mut(leg)) {
                    drop_leg(&shared, leg, status);
                }
            }
            DialAction::Ended {
                status,
                cause,
                reported_leg,
                bridged_for,
            } => self.finish_dial(status, cause, reported_leg, bridged_for),
            DialAction::Bridge { leg } => {
                tracing::error!(call_sid = %self.record.sid, leg, "bridge out of place; ignored");
            }
        }
    }

    /// The race's `Bridge`: the caller (answered now, with `answerOnBridge`) is bridged to the
    /// winner; the race has already dropped the others.
    async fn bridge(&mut self, index: usize) {
        if self.answered_at.is_none() {
            // answerOnBridge: the caller is answered now, with its own SDP answer.
            self.answer().await;
        }
        let Some(mut dial) = self.dial.take() else {
            return;
        };
        if let Some(leg) = dial.legs.get_mut(index) {
            tracing::info!(call_sid = %self.record.sid, leg = %leg.record.sid, "dial bridged");
            if let (Some(parent), Some(child)) = (&self.stream, &leg.stream) {
                if dial.ringback {
                    parent.stop_playback();
                }
                parent.bridge(child);
            }
        }
        dial.ringback = false;
        if matches!(
            dial.spec.record,
            twiml::DialRecord::RecordFromAnswer | twiml::DialRecord::RecordFromAnswerDual
        ) {
            self.start_dial_recording(&mut dial);
        }
        self.dial = Some(dial);
    }

    fn handle_leg_signal(&mut self, index: usize, signal: CallSignal) {
        let shared = self.shared.clone();
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let Some(leg) = dial.legs.get_mut(index) else {
            return;
        };
        let Some(sip) = leg.sip.as_mut() else { return };
        match signal {
            CallSignal::Response { response } => {
                // A retransmitted 2xx to the INVITE: our ACK was lost.
                let to_invite = response.cseq().is_some_and(|(_, m)| m == Method::Invite);
                if to_invite && (200..300).contains(&response.status()) {
                    if let Some(ack) = sip.ack.clone() {
                        let message = sip::Message::Request(ack);
                        let _ = shared.sip.send(SipCommand::Stateless {
                            message,
                            destination: sip.peer,
                            transport: sip.transport,
                        });
                    }
                }
            }
            CallSignal::Request { tx, request } => match request.method {
                Method::Bye => {
                    respond(&shared, tx, &request, 200, "OK");
                    tracing::info!(call_sid = %leg.record.sid, "dial leg hung up");
                    // Gone: nothing more is sent to it (no BYE back).
                    leg.sip = None;
                    dial.race
                        .handle_leg_hung_up(std::time::Instant::now(), index);
                    self.run_race_now();
                }
                Method::Invite => {
                    let browser_offer = std::str::from_utf8(&request.body)
                        .is_ok_and(crate::media::webrtc::is_webrtc_sdp);
                    match &leg.stream {
                        Some(stream) if browser_offer => {
                            let mut response = Response::from_request(&request, 200, "OK");
                            let transport =
                                leg.sip.as_ref().map_or(sip::Transport::Ws, |s| s.transport);
                            response
                                .headers
                                .push("Contact", &shared.config.contact_uri_for(transport));
                            response.headers.push("Allow", ALLOW);
                            super::answer_webrtc_reinvite(&shared, tx, stream, &request, response);
                        }
                        _ => {
                            let response = leg_reinvite(&shared, leg, &request);
                            let _ = shared.sip.send(SipCommand::Respond { tx, response });
                        }
                    }
                }
                Method::Info => respond(&shared, tx, &request, 200, "OK"),
                _ => respond(&shared, tx, &request, 405, "Method Not Allowed"),
            },
            CallSignal::Ack { .. }
            | CallSignal::Cancel
            | CallSignal::AckTimeout
            | CallSignal::RequestTimeout => {}
        }
    }

    /// A parent DTMF digit during the dial: `*` ends the bridge with `hangupOnStar`. True when
    /// the dial took the digit (the engine does not see digits while it dials).
    pub(crate) fn handle_dial_digit(&mut self, digit: char) -> bool {
        let Some(dial) = self.dial.as_mut() else {
            return false;
        };
        if dial.race.handle_digit(std::time::Instant::now(), digit) {
            tracing::info!(call_sid = %self.record.sid, "hangupOnStar");
            self.run_race_now();
        }
        true
    }

    /// The engine's `CancelDial`.
    pub(crate) fn cancel_dial(&mut self, id: u64) {
        if self.dial.as_ref().is_some_and(|d| d.id == id) {
            self.end_dial(EndCause::Cancelled);
        }
    }

    /// Ends the dial now for `cause`: the race drops every leg and reports the end.
    pub(crate) fn end_dial(&mut self, cause: EndCause) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        dial.race.end(std::time::Instant::now(), cause);
        self.run_race_now();
    }

    /// The race's `Ended`: the bridge is undone and the engine told (once the recording, if
    /// any, is closed, unless the caller is gone).
    fn finish_dial(
        &mut self,
        status: DialCallStatus,
        cause: EndCause,
        reported_leg: Option<usize>,
        bridged_for: Duration,
    ) {
        let Some(mut dial) = self.dial.take() else {
            return;
        };
        if let Some(parent) = &self.stream {
            if dial.ringback {
                parent.stop_playback();
            }
            if dial.race.winner().is_some() {
                parent.unbridge();
            }
        }
        let duration = Duration::from_secs(bridged_for.as_secs_f64().round() as u64);
        let dial_call_sid = reported_leg
            .and_then(|i| dial.legs.get(i))
            .map(|l| l.record.sid);
        tracing::info!(call_sid = %self.record.sid, status = %status, ?cause, seconds = duration.as_secs(), "dial ended");
        let outcome = DialOutcome {
            status,
            dial_call_sid,
            duration,
            recording: None,
            params: Vec::new(),
        };
        match dial.recording.take() {
            Some(recording) if recording.running => {
                if let Some(parent) = &self.stream {
                    parent.stop_recording(RECORDING_ID);
                }
                self.pending_dial_end = Some(PendingDialEnd {
                    id: dial.id,
                    outcome,
                    recording,
                    callback: dial.spec.recording_status_callback.clone(),
                    deadline: tokio::time::Instant::now() + RECORDING_WAIT,
                });
                if cause == EndCause::ParentGone {
                    // The engine must hear of the dial before the hang-up; the file still gets
                    // its row when it closes.
                    self.report_pending_dial(None);
                }
            }
            _ => self.input(engine::Input::DialEnded {
                id: dial.id,
                outcome,
            }),
        }
        // Dropping the dial drops the legs' streams, handles and SIP routes.
        drop(dial);
    }

    /// The dial's recording closed (or `None`: reported without it).
    fn report_pending_dial(&mut self, recording: Option<DialRecording>) {
        let Some(pending) = self.pending_dial_end.as_mut() else {
            return;
        };
        if pending.id == u64::MAX {
            return;
        }
        let mut outcome = pending.outcome.clone();
        outcome.recording = recording;
        let id = pending.id;
        // Reported: what stays is the recording's bookkeeping until its file closes.
        pending.id = u64::MAX;
        self.input(engine::Input::DialEnded { id, outcome });
    }

    /// A parent media event that belongs to the dial (its recording); true when taken.
    pub(crate) async fn handle_dial_media(&mut self, event: &MediaEvent) -> bool {
        match event {
            MediaEvent::PlaybackDone { id } if *id == RINGBACK_ID => true,
            MediaEvent::RecordingStopped {
                id, duration, path, ..
            } if *id == RECORDING_ID => {
                let Some(pending) = self.pending_dial_end.take() else {
                    return true;
                };
                let recording = self.save_dial_recording(&pending, *duration, path).await;
                let callback = pending.callback.clone();
                self.pending_dial_end = Some(pending);
                if let (Some(url), Some(r)) = (callback, &recording) {
                    self.post_recording_status(url, r);
                }
                self.report_pending_dial(recording);
                self.pending_dial_end = None;
                true
            }
            MediaEvent::RecordingFailed { id, reason } if *id == RECORDING_ID => {
                tracing::error!(call_sid = %self.record.sid, reason, "dial recording failed");
                self.report_pending_dial(None);
                self.pending_dial_end = None;
                true
            }
            _ => false,
        }
    }

    /// The recording never closed in time: report the dial without it.
    pub(crate) fn handle_pending_dial_timeout(&mut self) {
        tracing::warn!(call_sid = %self.record.sid, "dial recording did not close in time");
        self.report_pending_dial(None);
        self.pending_dial_end = None;
    }

    async fn save_dial_recording(
        &mut self,
        pending: &PendingDialEnd,
        duration: Duration,
        path: &std::path::Path,
    ) -> Option<DialRecording> {
        let sid = pending.recording.sid;
        if duration.is_zero() {
            let _ = tokio::fs::remove_file(path).await;
            return None;
        }
        let now = Utc::now();
        let file_name = path
            .strip_prefix(&self.shared.config.recordings_dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| {
                format!("{}/{}/{sid}.wav", self.record.account_sid, self.record.sid)
            });
        let record = RecordingRecord {
            conference_sid: None,
            sid,
            account_sid: self.record.account_sid,
            call_sid: self.record.sid,
            duration: duration.as_secs_f64().round() as u32,
            channels: u32::from(pending.recording.channels),
            status: "completed".into(),
            source: "DialVerb".into(),
            start_time: pending.recording.started,
            date_created: now,
            date_updated: now,
            file_name,
        };
        self.shared.records.flush().await;
        if let Err(e) = self.shared.store.insert_recording(&record).await {
            tracing::error!(error = %e, recording_sid = %sid, "could not write the dial recording record");
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Recordings/{sid}",
            self.shared.config.public_url.trim_end_matches('/'),
            self.record.account_sid
        );
        Some(DialRecording { sid, url, duration })
    }

    fn post_recording_status(&self, url: String, r: &DialRecording) {
        let channels = self
            .pending_dial_end
            .as_ref()
            .map_or(1, |p| p.recording.channels);
        let params = vec![
            ("AccountSid".to_owned(), self.record.account_sid.to_string()),
            ("CallSid".to_owned(), self.record.sid.to_string()),
            ("RecordingSid".to_owned(), r.sid.to_string()),
            ("RecordingUrl".to_owned(), r.url.clone()),
            ("RecordingStatus".to_owned(), "completed".to_owned()),
            (
                "RecordingDuration".to_owned(),
                r.duration.as_secs().to_string(),
            ),
            ("RecordingChannels".to_owned(), channels.to_string()),
            ("RecordingSource".to_owned(), "DialVerb".to_owned()),
        ];
        let request = WebhookRequest {
            url,
            method: HttpMethod::Post,
            params,
            auth_token: self.auth_token.clone(),
        };
        let webhooks = self.shared.webhooks.clone();
        tokio::spawn(async move {
            if let Err(e) = webhooks.fetch(request).await {
                tracing::warn!(error = %e, "recording status callback failed");
            }
        });
    }
}

fn method(m: twiml::Method) -> HttpMethod {
    http_method(if matches!(m, twiml::Method::Get) {
        "GET"
    } else {
        "POST"
    })
}

fn respond(shared: &Shared, tx: ServerTxId, request: &Request, status: u16, reason: &str) {
    let response = Response::from_request(request, status, reason);
    let _ = shared.sip.send(SipCommand::Respond { tx, response });
}

/// A re-INVITE from a callee: the new offer applied to its stream, our answer for it.
fn leg_reinvite(shared: &Shared, leg: &mut DialLeg, request: &Request) -> Response {
    let offer = std::str::from_utf8(&request.body)
        .ok()
        .filter(|b| !b.trim().is_empty())
        .and_then(|b| SessionDescription::parse(b).ok())
        .and_then(|offer| {
            sip::sdp::negotiate(&offer, &[sip::sdp::Codec::Pcmu, sip::sdp::Codec::Pcma]).ok()
        });
    if let Some(n) = offer {
        if let Some(s) = &leg.stream {
            apply_media(s, &n);
        }
        leg.negotiated = Some(n);
    } else if !request.body.is_empty() {
        return Response::from_request(request, 488, "Not Acceptable Here");
    }
    let Some(negotiated) = &leg.negotiated else {
        return Response::from_request(request, 488, "Not Acceptable Here");
    };
    leg.sdp_version += 1;
    let mut response = Response::from_request(request, 200, "OK");
    let config = &shared.config;
    let transport = leg
        .sip
        .as_ref()
        .map_or(sip::Transport::Udp, |s| s.transport);
    response
        .headers
        .push("Contact", &config.contact_uri_for(transport));
    response.headers.push("Allow", ALLOW);
    let port = leg.stream.as_ref().map_or(0, |s| s.local_port);
    let sdp = sip::sdp::answer(
        negotiated,
        config.advertise_ip,
        port,
        leg.session_id,
        leg.sdp_version,
    );
    response.set_body("application/sdp", sdp.into_bytes());
    response
}

/// The `X-Dialtone-*` headers a browser's SDK reads from an INVITE to a `<Client>`: the call's
/// SIDs, caller and callee (Twilio's `call.parameters`) and the noun's `<Parameter>`s
/// (`call.customParameters`). Other targets get none.
fn client_headers(
    target: &twiml::DialTarget,
    leg: &model::CallRecord,
    parent: &model::CallRecord,
) -> Vec<(String, String)> {
    let twiml::DialKind::Client(name) = &target.kind else {
        return Vec::new();
    };
    let mut headers = vec![
        ("X-Dialtone-Call-Sid".to_owned(), leg.sid.to_string()),
        (
            "X-Dialtone-Parent-Call-Sid".to_owned(),
            parent.sid.to_string(),
        ),
        (
            "X-Dialtone-Account-Sid".to_owned(),
            leg.account_sid.to_string(),
        ),
        ("X-Dialtone-From".to_owned(), header_safe(&parent.from)),
        (
            "X-Dialtone-To".to_owned(),
            format!("client:{}", header_safe(name)),
        ),
    ];
    if !target.parameters.is_empty() {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(target.parameters.iter())
            .finish();
        headers.push(("X-Dialtone-Params".to_owned(), encoded));
    }
    headers
}

/// A value fit for a SIP header line: no line breaks or other control characters.
fn header_safe(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_methods_become_http_methods() {
        assert_eq!(method(twiml::Method::Get), HttpMethod::Get);
        assert_eq!(method(twiml::Method::Post), HttpMethod::Post);
    }
}
