//! The call state machine: fetch markup, run its verbs in order, fetch again when a verb says so.
//!
//! One `State` at a time says what the call is waiting for (a webhook reply, the end of a
//! playback, a timer, digits, a recording). Inputs that do not match what the state waits for
//! (a stale playback id, a reply to a request that is no longer wanted) are ignored: the
//! runtime may race a stop against a completion and must not be able to confuse the call.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use model::{CallDirection, CallStatus, RecordingSid};
use rand::rngs::StdRng;
use rand::SeedableRng;
use twiml::{Document, Gather, Record, Verb};
use url::Url;

use crate::{
    CallConfig, DialOutcome, EnqueueOutcome, HttpMethod, Input, MediaSource, Output, QueueResult,
    RecordStop, RejectReason, WebhookReply,
};

/// What the caller hears when the app fails and there is no working fallback, as on Twilio.
pub const APPLICATION_ERROR_MESSAGE: &str =
    "We are sorry, an application error has occurred. Goodbye.";

/// `<Redirect>`s in a row with no media in between before the call is ended with 12100: a
/// document that redirects to itself would otherwise bounce between app and engine forever.
pub const MAX_REDIRECTS_WITHOUT_MEDIA: u32 = 10;

/// After the caller hangs up mid-`<Record>`, how long to wait for the media worker to report
/// the recording before finishing the call without the action request.
pub const RECORDING_REPORT_GRACE: Duration = Duration::from_secs(5);

/// After the caller hangs up mid-`<Dial>`, how long to wait for the runtime's `DialEnded`
/// before finishing the call without the action request.
pub const DIAL_REPORT_GRACE: Duration = Duration::from_secs(5);

/// Twilio error: HTTP retrieval failure.
const ERR_HTTP: u32 = 11200;
/// Twilio error: invalid URL format.
const ERR_URL: u32 = 11100;
/// Twilio error: document parse failure.
const ERR_DOCUMENT: u32 = 12100;

const API_VERSION: &str = "2010-04-01";

/// A webhook request in flight whose reply becomes the next document.
#[derive(Debug)]
struct Fetch {
    request_id: u64,
    url: String,
    params: Vec<(String, String)>,
    /// False for the fallback request itself: its failure ends the call.
    fallback_allowed: bool,
}

/// Media the call is waiting on for a `Say`, `Play` or `Pause` (top level or in a `Gather`).
#[derive(Debug, Clone, Copy)]
enum Prompt {
    Playing(u64),
    Pausing(Instant),
}

#[derive(Debug)]
struct GatherRun {
    gather: Gather,
    prompts: VecDeque<Verb>,
    prompt: Option<Prompt>,
    digits: String,
    /// Set once prompts are over (or a key was pressed): when input is complete by timeout.
    deadline: Option<Instant>,
    barged_in: bool,
}

#[derive(Debug)]
struct RecordRun {
    id: u64,
    sid: RecordingSid,
    record: Record,
    /// The finishOnKey digit that stopped it.
    key: Option<char>,
    stopping: bool,
    /// The caller hung up; the call finishes once the recording is reported (or the grace ends).
    hung_up_at: Option<Instant>,
}

#[derive(Debug)]
struct DialRun {
    id: u64,
    /// As written in the markup: `action` is resolved when it is requested, so a bad URL is
    /// handled like any other bad action (11100, fallback).
    dial: twiml::Dial,
    /// The caller hung up; the call finishes once the dial is reported (or the grace ends).
    hung_up_at: Option<Instant>,
}

#[derive(Debug)]
struct EnqueueRun {
    id: u64,
    enqueue: twiml::Enqueue,
    /// The caller hung up; the call finishes once the runtime reports (or the grace ends).
    hung_up_at: Option<Instant>,
}

#[derive(Debug)]
enum State {
    /// Between verbs: `run` picks the next one.
    Ready,
    Fetching(Fetch),
    Media(Prompt),
    Gathering(Box<GatherRun>),
    Beeping {
        id: u64,
        record: Record,
    },
    Recording(Box<RecordRun>),
    /// A `<Dial>` is running in the runtime; the call waits for `DialEnded`.
    Dialing(Box<DialRun>),
    /// The call waits in a queue (or is bridged to the agent who took it); the call waits
    /// for `EnqueueEnded`.
    Enqueued(Box<EnqueueRun>),
    /// Playing [`APPLICATION_ERROR_MESSAGE`]; hang up when it ends.
    AppError {
        id: u64,
    },
    Finished,
}

/// One call's verb interpreter. See the crate docs for how to drive it.
#[derive(Debug)]
pub struct Call {
    config: CallConfig,
    rng: StdRng,
    status: CallStatus,
    answered_at: Option<Instant>,
    outputs: VecDeque<Output>,
    next_id: u64,
    state: State,
    /// Absolute URL of the document being run: base for relative URLs, default for `action`.
    document_url: String,
    verbs: VecDeque<Verb>,
    redirects_without_media: u32,
    /// The id of the last `Play { Url }`, so its failure can be reported as 11200.
    last_url_play: Option<u64>,
    /// A dial a live update canceled, with its `answerOnBridge`: if its late `DialEnded` says
    /// it bridged, the runtime answered this call then.
    canceled_dial: Option<(u64, bool)>,
    /// An enqueue a live update took the call out of, with its action: requested when its
    /// `EnqueueEnded` comes, without waiting (the update's document drives the call).
    canceled_enqueue: Option<(u64, twiml::Enqueue)>,
}

impl Call {
    /// Start a call: the first output is the `FetchWebhook` for `voice_url`.
    ///
    /// Inbound calls start ringing and are answered by the first verb that needs media. Outbound
    /// calls reach the engine once the far end has answered, so they start in progress and
    /// never emit `Answer`.
    pub fn new(now: Instant, config: CallConfig, rng_seed: u64) -> Call {
        let (status, answered_at) = match config.direction {
            CallDirection::Inbound => (CallStatus::Ringing, None),
            CallDirection::OutboundApi | CallDirection::OutboundDial => {
                (CallStatus::InProgress, Some(now))
            }
        };
        let mut call = Call {
            document_url: config.voice_url.clone(),
            rng: StdRng::seed_from_u64(rng_seed),
            status,
            answered_at,
            outputs: VecDeque::new(),
            next_id: 1,
            state: State::Ready,
            verbs: VecDeque::new(),
            redirects_without_media: 0,
            last_url_play: None,
            canceled_dial: None,
            canceled_enqueue: None,
            config,
        };
        let params = call.base_params();
        let (url, method) = (call.config.voice_url.clone(), call.config.voice_method);
        match call.config.twiml.clone() {
            Some(document) => {
                let fetch = Fetch {
                    request_id: 0,
                    url,
                    params,
                    fallback_allowed: true,
                };
                call.handle_document(now, fetch, inline(document));
            }
            None => call.fetch(url, method, params, true),
        }
        call
    }

    pub fn status(&self) -> CallStatus {
        self.status
    }

    pub fn config(&self) -> &CallConfig {
        &self.config
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next instant `handle_timeout` must be called at, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Media(Prompt::Pausing(until)) => Some(*until),
            State::Gathering(run) => {
                let pause = match run.prompt {
                    Some(Prompt::Pausing(until)) => Some(until),
                    _ => None,
                };
                match (pause, run.deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            State::Recording(run) => run.hung_up_at.map(|t| t + RECORDING_REPORT_GRACE),
            State::Dialing(run) => run.hung_up_at.map(|t| t + DIAL_REPORT_GRACE),
            State::Enqueued(run) => run.hung_up_at.map(|t| t + DIAL_REPORT_GRACE),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Media(Prompt::Pausing(until)) if *until <= now => {
                self.state = State::Ready;
                self.run(now);
            }
            State::Gathering(run) => {
                if let Some(Prompt::Pausing(until)) = run.prompt {
                    if until <= now {
                        run.prompt = None;
                        self.advance_gather(now);
                        return;
                    }
                }
                if run.deadline.is_some_and(|d| d <= now) {
                    self.finish_gather(now, None);
                }
            }
            // The recording was never reported: there is no duration or file to give the
            // action, so the request is skipped.
            State::Recording(run)
                if run
                    .hung_up_at
                    .is_some_and(|t| t + RECORDING_REPORT_GRACE <= now) =>
            {
                self.finish(now);
            }
            // The runtime never reported the dial: without an outcome there is nothing true
            // to tell the action, so the request is skipped, as for an unreported recording.
            State::Dialing(run) if run.hung_up_at.is_some_and(|t| t + DIAL_REPORT_GRACE <= now) => {
                self.finish(now);
            }
            State::Enqueued(run)
                if run.hung_up_at.is_some_and(|t| t + DIAL_REPORT_GRACE <= now) =>
            {
                self.finish(now);
            }
            _ => {}
        }
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.is_finished() {
            return;
        }
        match input {
            Input::WebhookResult { request_id, result } => {
                let State::Fetching(fetch) = &self.state else {
                    return;
                };
                if fetch.request_id != request_id {
                    return;
                }
                // Matched as Fetching just above, so the `else` is never taken.
                let State::Fetching(fetch) = std::mem::replace(&mut self.state, State::Ready)
                else {
                    return;
                };
                match result {
                    Ok(reply) => self.handle_document(now, fetch, reply),
                    Err(failure) => {
                        let message = format!("HTTP retrieval failure: {}: {failure}", fetch.url);
                        self.document_failed(now, fetch, ERR_HTTP, message);
                    }
                }
            }
            Input::PlaybackDone { id } => self.handle_playback_end(now, id),
            Input::PlaybackFailed { id, reason } => {
                if self.last_url_play == Some(id) && self.is_current_playback(id) {
                    self.notify(ERR_HTTP, format!("<Play> could not be played: {reason}"));
                }
                self.handle_playback_end(now, id);
            }
            Input::Dtmf { digit } => self.handle_dtmf(now, digit),
            Input::RecordingStopped { id, duration, stop } => {
                self.handle_recording_stopped(now, id, duration, stop)
            }
            Input::RemoteHangup => self.handle_remote_hangup(now),
            Input::Redirect { url, method } => {
                if self.interrupt() {
                    let params = self.base_params();
                    self.request_action(now, Some(&url), method, params);
                }
            }
            Input::Twiml { document } => {
                if self.interrupt() {
                    let fetch = Fetch {
                        request_id: 0,
                        url: self.document_url.clone(),
                        params: self.base_params(),
                        fallback_allowed: true,
                    };
                    self.handle_document(now, fetch, inline(document));
                }
            }
            Input::DialEnded { id, outcome } => self.handle_dial_ended(now, id, outcome),
            Input::EnqueueEnded { id, outcome } => self.handle_enqueue_ended(now, id, outcome),
        }
    }

    /// Stops whatever the call is doing so a live update can replace the document. False when
    /// the caller already hung up mid-`<Record>` or mid-`<Dial>`: the call is ending and keeps
    /// waiting for the runtime's report.
    fn interrupt(&mut self) -> bool {
        match &self.state {
            State::Recording(run) if run.hung_up_at.is_some() => return false,
            State::Dialing(run) if run.hung_up_at.is_some() => return false,
            State::Enqueued(run) if run.hung_up_at.is_some() => return false,
            _ => {}
        }
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Media(Prompt::Playing(_)) | State::Beeping { .. } | State::AppError { .. } => {
                self.outputs.push_back(Output::StopPlayback)
            }
            State::Gathering(run) => {
                if let Some(Prompt::Playing(_)) = run.prompt {
                    self.outputs.push_back(Output::StopPlayback);
                }
            }
            State::Recording(run) if !run.stopping => {
                self.outputs.push_back(Output::StopRecording { id: run.id });
            }
            // The dial's action is not requested: the update replaces the rest of the call.
            State::Dialing(run) => {
                self.outputs.push_back(Output::CancelDial { id: run.id });
                self.canceled_dial = Some((run.id, run.dial.answer_on_bridge));
            }
            State::Enqueued(run) => {
                self.outputs.push_back(Output::LeaveQueue { id: run.id });
                self.canceled_enqueue = Some((run.id, run.enqueue));
            }
            _ => {}
        }
        self.verbs.clear();
        self.redirects_without_media = 0;
        true
    }

    fn is_current_playback(&self, id: u64) -> bool {
        match &self.state {
            State::Media(Prompt::Playing(p)) => *p == id,
            State::Gathering(run) => matches!(run.prompt, Some(Prompt::Playing(p)) if p == id),
            State::Beeping { id: p, .. } | State::AppError { id: p } => *p == id,
            _ => false,
        }
    }

    fn handle_playback_end(&mut self, now: Instant, id: u64) {
        if !self.is_current_playback(id) {
            return;
        }
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Media(_) => self.run(now),
            State::Gathering(mut run) => {
                run.prompt = None;
                self.state = State::Gathering(run);
                self.advance_gather(now);
            }
            State::Beeping { record, .. } => self.start_recording(record),
            State::AppError { .. } => self.hang_up(now),
            other => self.state = other,
        }
    }

    fn handle_dtmf(&mut self, now: Instant, digit: char) {
        if !matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D') {
            return;
        }
        match &mut self.state {
            State::Gathering(run) if run.gather.input.dtmf => {
                if !run.barged_in {
                    // The first key stops the prompts: the caller already knows what to enter.
                    run.barged_in = true;
                    if let Some(Prompt::Playing(_)) = run.prompt {
                        self.outputs.push_back(Output::StopPlayback);
                    }
                    run.prompt = None;
                    run.prompts.clear();
                }
                if run.gather.finish_on_key == Some(digit) {
                    self.finish_gather(now, Some(digit));
                    return;
                }
                run.digits.push(digit);
                let count = u32::try_from(run.digits.len()).unwrap_or(u32::MAX);
                if run.gather.num_digits.is_some_and(|n| count >= n) {
                    self.finish_gather(now, None);
                } else {
                    run.deadline = Some(now + secs(run.gather.timeout));
                }
            }
            State::Recording(run) if !run.stopping && run.record.finish_on_key.contains(digit) => {
                run.key = Some(digit);
                run.stopping = true;
                self.outputs.push_back(Output::StopRecording { id: run.id });
            }
            _ => {}
        }
    }

    fn handle_recording_stopped(
        &mut self,
        now: Instant,
        id: u64,
        duration: Duration,
        stop: RecordStop,
    ) {
        let State::Recording(run) = &self.state else {
            return;
        };
        if run.id != id {
            return;
        }
        // Matched as Recording just above, so the `else` is never taken.
        let State::Recording(run) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        let hung_up = run.hung_up_at.is_some() || stop == RecordStop::Hangup;
        if hung_up {
            self.status = self.hangup_status();
        }
        let digits = match (run.key, stop) {
            (Some(k), _) | (None, RecordStop::Key(k)) => Some(k.to_string()),
            _ if hung_up => Some("hangup".to_owned()),
            _ => None,
        };
        // Whole seconds, rounded: a recording that rounds to 0 s is empty, and Twilio skips the
        // action for empty recordings and goes on with the next verb.
        let seconds = (duration.as_millis() + 500) / 1000;
        if seconds == 0 {
            if hung_up {
                self.finish(now);
            } else {
                self.run(now);
            }
            return;
        }
        let mut params = self.base_params();
        let recording_url = format!(
            "{}/{API_VERSION}/Accounts/{}/Recordings/{}",
            self.config.public_url.trim_end_matches('/'),
            self.config.account_sid,
            run.sid
        );
        params.push(("RecordingUrl".into(), recording_url.clone()));
        params.push(("RecordingSid".into(), run.sid.to_string()));
        params.push(("RecordingDuration".into(), seconds.to_string()));
        if let Some(callback) = run.record.recording_status_callback.as_deref() {
            let status_params = vec![
                ("AccountSid".into(), self.config.account_sid.to_string()),
                ("CallSid".into(), self.config.call_sid.to_string()),
                ("RecordingSid".into(), run.sid.to_string()),
                ("RecordingUrl".into(), recording_url),
                ("RecordingStatus".into(), "completed".into()),
                ("RecordingDuration".into(), seconds.to_string()),
                ("RecordingChannels".into(), "1".into()),
                ("RecordingSource".into(), "RecordVerb".into()),
            ];
            let method = run.record.recording_status_callback_method.into();
            self.fire_and_forget(Some(callback), method, status_params);
        }
        if let Some(d) = digits {
            params.push(("Digits".into(), d));
        }
        let action = run.record.action.clone();
        let method = run.record.method.into();
        if hung_up {
            // Twilio still reports the recording; the reply has no call left to drive.
            self.fire_and_forget(action.as_deref(), method, params);
            self.finish(now);
            return;
        }
        self.request_action(now, action.as_deref(), method, params);
    }

    /// A request whose reply the call does not wait for (status callbacks, the action after
    /// the caller hung up). The runtime sends it and may drop the result.
    fn fire_and_forget(
        &mut self,
        url: Option<&str>,
        method: HttpMethod,
        params: Vec<(String, String)>,
    ) {
        match self.resolve(url) {
            Ok(url) => {
                let request_id = self.take_id();
                self.outputs.push_back(Output::FetchWebhook {
                    request_id,
                    url,
                    method,
                    params,
                });
            }
            Err(message) => self.notify(ERR_URL, message),
        }
    }

    fn handle_dial_ended(&mut self, now: Instant, id: u64, outcome: DialOutcome) {
        if !matches!(&self.state, State::Dialing(run) if run.id == id) {
            if let Some((canceled, answer_on_bridge)) = self.canceled_dial {
                if canceled == id && answer_on_bridge && outcome.status.is_bridged() {
                    self.answered_at_bridge(now, outcome.duration);
                }
            }
            return;
        }
        // Matched as Dialing just above, so the `else` is never taken.
        let State::Dialing(run) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        let bridged = outcome.status.is_bridged();
        if run.dial.answer_on_bridge && bridged {
            self.answered_at_bridge(now, outcome.duration);
        }
        let hung_up = run.hung_up_at.is_some();
        if hung_up {
            self.status = self.hangup_status();
        }

        let mut params = self.base_params();
        params.push(("DialCallStatus".into(), outcome.status.as_str().to_owned()));
        if let Some(sid) = outcome.dial_call_sid {
            params.push(("DialCallSid".into(), sid.to_string()));
        }
        if bridged {
            params.push((
                "DialCallDuration".into(),
                round_secs(outcome.duration).to_string(),
            ));
        }
        params.push(("DialBridged".into(), bridged.to_string()));
        params.extend(outcome.params);
        if let Some(recording) = &outcome.recording {
            // The runtime, which closes the file, sends `recordingStatusCallback` itself.
            params.push(("RecordingUrl".into(), recording.url.clone()));
            params.push(("RecordingSid".into(), recording.sid.to_string()));
            params.push((
                "RecordingDuration".into(),
                round_secs(recording.duration).to_string(),
            ));
        }

        let method = run.dial.method.into();
        match (run.dial.action.as_deref(), hung_up) {
            // Twilio still requests the action; its reply has no call left to drive.
            (Some(action), true) => {
                self.fire_and_forget(Some(action), method, params);
                self.finish(now);
            }
            (None, true) => self.finish(now),
            (Some(action), false) => self.request_action(now, Some(action), method, params),
            // No action: the document goes on after the <Dial>.
            (None, false) => self.run(now),
        }
    }

    fn handle_enqueue_ended(&mut self, now: Instant, id: u64, outcome: EnqueueOutcome) {
        if !matches!(&self.state, State::Enqueued(run) if run.id == id) {
            if let Some((canceled, enqueue)) = self.canceled_enqueue.take() {
                if canceled == id {
                    let params = self.enqueue_params(&outcome);
                    self.fire_and_forget(enqueue.action.as_deref(), enqueue.method.into(), params);
                } else {
                    self.canceled_enqueue = Some((canceled, enqueue));
                }
            }
            return;
        }
        // Matched as Enqueued just above, so the `else` is never taken.
        let State::Enqueued(run) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        if run.hung_up_at.is_some() {
            self.status = self.hangup_status();
        }
        let params = self.enqueue_params(&outcome);
        let method = run.enqueue.method.into();
        let action = run.enqueue.action.as_deref();
        // `<Hangup>` in the wait document ends the call like the caller hanging up.
        let ending = run.hung_up_at.is_some() || outcome.result == QueueResult::Hangup;
        match (action, ending) {
            (Some(action), true) => {
                self.fire_and_forget(Some(action), method, params);
                self.end_after_queue(now, run.hung_up_at.is_some());
            }
            (None, true) => self.end_after_queue(now, run.hung_up_at.is_some()),
            (Some(action), false) => self.request_action(now, Some(action), method, params),
            // No action: the document goes on after the <Enqueue>.
            (None, false) => self.run(now),
        }
    }

    fn end_after_queue(&mut self, now: Instant, caller_hung_up: bool) {
        if caller_hung_up {
            self.finish(now);
        } else {
            self.hang_up(now);
        }
    }

    /// `QueueResult`, and `QueueSid` and `QueueTime` for a call that was in the queue.
    fn enqueue_params(&self, outcome: &EnqueueOutcome) -> Vec<(String, String)> {
        let mut params = self.base_params();
        params.push(("QueueResult".into(), outcome.result.as_str().to_owned()));
        if let Some(sid) = outcome.queue_sid {
            params.push(("QueueSid".into(), sid.to_string()));
            params.push(("QueueTime".into(), outcome.queue_time.as_secs().to_string()));
        }
        params
    }

    /// With `answerOnBridge` the runtime answered this call when the legs were bridged,
    /// `bridged_for` before now. The earliest answer counts: a live update's document may
    /// have "answered" again after the bridge.
    fn answered_at_bridge(&mut self, now: Instant, bridged_for: Duration) {
        let bridged_at = now.checked_sub(bridged_for).unwrap_or(now);
        self.answered_at = Some(self.answered_at.map_or(bridged_at, |t| t.min(bridged_at)));
        if self.status == CallStatus::Ringing {
            self.status = CallStatus::InProgress;
        }
    }

    fn handle_remote_hangup(&mut self, now: Instant) {
        self.status = self.hangup_status();
        if let State::Dialing(run) = &mut self.state {
            // Legs may still ring or be bridged: have them ended, then wait for the report
            // (the runtime may already have sent it before this hang-up, or send it after).
            if run.hung_up_at.is_none() {
                run.hung_up_at = Some(now);
                self.outputs.push_back(Output::CancelDial { id: run.id });
            }
            return;
        }
        if let State::Enqueued(run) = &mut self.state {
            if run.hung_up_at.is_none() {
                run.hung_up_at = Some(now);
                self.outputs.push_back(Output::LeaveQueue { id: run.id });
            }
            return;
        }
        if let State::Recording(run) = &mut self.state {
            if run.hung_up_at.is_none() {
                run.hung_up_at = Some(now);
                if !run.stopping {
                    run.stopping = true;
                    self.outputs.push_back(Output::StopRecording { id: run.id });
                }
            }
            return;
        }
        self.finish(now);
    }

    fn hangup_status(&self) -> CallStatus {
        if self.answered_at.is_some() {
            CallStatus::Completed
        } else {
            CallStatus::Canceled
        }
    }

    // ---- documents ----

    fn handle_document(&mut self, now: Instant, fetch: Fetch, reply: WebhookReply) {
        let is_audio = reply
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("audio/"));
        let document = if is_audio {
            // Twilio plays an audio reply as if it were <Play>.
            Document {
                verbs: vec![Verb::Play(twiml::Play {
                    url: fetch.url.clone(),
                    loop_: 1,
                    digits: None,
                })],
                warnings: Vec::new(),
            }
        } else {
            match twiml::parse(&reply.body) {
                Ok(doc) => doc,
                Err(e) => {
                    let message = format!("Document parse failure: {}: {e}", fetch.url);
                    return self.document_failed(now, fetch, e.code(), message);
                }
            }
        };
        if let Some(verb) = document
            .verbs
            .iter()
            .find(|v| matches!(v, Verb::Unsupported { .. }))
        {
            let message = format!(
                "Document parse failure: {}: <{}> is not supported by this server",
                fetch.url,
                verb.name()
            );
            return self.document_failed(now, fetch, ERR_DOCUMENT, message);
        }
        // Twilio logs these (e.g. 13212, a bad <Dial timeout>) and runs the verb with defaults.
        for warning in document.warnings {
            self.notify(warning.code, format!("{}: {}", fetch.url, warning.message));
        }
        self.document_url = fetch.url;
        self.verbs = document.verbs.into();
        self.run(now);
    }

    /// Report the error, then try the fallback URL once, else end the call with the message.
    fn document_failed(&mut self, now: Instant, fetch: Fetch, code: u32, message: String) {
        self.notify(code, message);
        match (&self.config.fallback_url, fetch.fallback_allowed) {
            (Some(fallback), true) => {
                let mut params = fetch.params;
                params.retain(|(k, _)| k != "ErrorCode" && k != "ErrorUrl");
                params.push(("ErrorCode".into(), code.to_string()));
                params.push(("ErrorUrl".into(), fetch.url));
                let (url, method) = (fallback.clone(), self.config.fallback_method);
                self.fetch(url, method, params, false);
            }
            _ => self.application_error(now),
        }
    }

    fn application_error(&mut self, now: Instant) {
        self.verbs.clear();
        self.answer(now);
        let id = self.take_id();
        self.outputs.push_back(Output::Play {
            id,
            source: MediaSource::Tts {
                text: APPLICATION_ERROR_MESSAGE.to_owned(),
                voice: "man".to_owned(),
                language: "en-US".to_owned(),
            },
            loops: 1,
        });
        self.state = State::AppError { id };
    }

    fn fetch(
        &mut self,
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
        fallback_allowed: bool,
    ) {
        let request_id = self.take_id();
        self.outputs.push_back(Output::FetchWebhook {
            request_id,
            url: url.clone(),
            method,
            params: params.clone(),
        });
        self.state = State::Fetching(Fetch {
            request_id,
            url,
            params,
            fallback_allowed,
        });
    }

    /// Request `action` (default: the current document) and run its reply instead of the rest
    /// of this document.
    fn request_action(
        &mut self,
        now: Instant,
        action: Option<&str>,
        method: HttpMethod,
        params: Vec<(String, String)>,
    ) {
        match self.resolve(action) {
            Ok(url) => self.fetch(url, method, params, true),
            Err(message) => {
                let failed = Fetch {
                    request_id: 0,
                    url: action.unwrap_or_default().to_owned(),
                    params,
                    fallback_allowed: true,
                };
                self.document_failed(now, failed, ERR_URL, message);
            }
        }
    }

    /// The dial as the runtime needs it: every URL absolute. A target URL or callback that
    /// cannot be resolved is reported (11100) and left out; a bad `action` is reported when
    /// it is requested.
    fn resolve_dial(&mut self, dial: &twiml::Dial) -> twiml::Dial {
        let mut out = dial.clone();
        out.action = dial
            .action
            .as_deref()
            .and_then(|a| self.resolve(Some(a)).ok());
        self.resolve_in_place(&mut out.recording_status_callback);
        for target in &mut out.targets {
            self.resolve_in_place(&mut target.url);
            self.resolve_in_place(&mut target.status_callback);
        }
        match &mut out.join {
            Some(twiml::DialJoin::Queue(queue)) => self.resolve_in_place(&mut queue.url),
            Some(twiml::DialJoin::Conference(conference)) => {
                // An empty waitUrl means silence, as written; anything else is a URL.
                if conference
                    .wait_url
                    .as_deref()
                    .is_some_and(|u| !u.is_empty())
                {
                    self.resolve_in_place(&mut conference.wait_url);
                }
                self.resolve_in_place(&mut conference.status_callback);
                self.resolve_in_place(&mut conference.recording_status_callback);
                self.resolve_in_place(&mut conference.event_callback_url);
            }
            None => {}
        }
        out
    }

    fn resolve_in_place(&mut self, url: &mut Option<String>) {
        let Some(written) = url.take() else {
            return;
        };
        match self.resolve(Some(&written)) {
            Ok(resolved) => *url = Some(resolved),
            Err(message) => self.notify(ERR_URL, message),
        }
    }

    /// Resolve a URL from the markup against the current document's URL.
    fn resolve(&self, url: Option<&str>) -> Result<String, String> {
        let Some(url) = url else {
            return Ok(self.document_url.clone());
        };
        let resolved = match Url::parse(&self.document_url) {
            Ok(base) => base.join(url),
            Err(_) => Url::parse(url),
        };
        match resolved {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u.into()),
            Ok(u) => Err(format!(
                "Invalid URL {url:?}: scheme {} is not http(s)",
                u.scheme()
            )),
            Err(e) => Err(format!("Invalid URL {url:?}: {e}")),
        }
    }

    fn base_params(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let mut params: Vec<(String, String)> = vec![
            ("CallSid".into(), c.call_sid.to_string()),
            ("AccountSid".into(), c.account_sid.to_string()),
            ("From".into(), c.from.clone()),
            ("To".into(), c.to.clone()),
            ("Caller".into(), c.from.clone()),
            ("Called".into(), c.to.clone()),
            ("CallStatus".into(), self.status.as_str().to_owned()),
            ("Direction".into(), c.direction.as_str().to_owned()),
            ("ApiVersion".into(), API_VERSION.to_owned()),
        ];
        for (name, value) in &c.extra_params {
            if !params.iter().any(|(n, _)| n == name) {
                params.push((name.clone(), value.clone()));
            }
        }
        params
    }

    // ---- verbs ----

    /// Run verbs until one has to wait for something, or the document ends (hang up).
    fn run(&mut self, now: Instant) {
        while matches!(self.state, State::Ready) {
            let Some(verb) = self.verbs.pop_front() else {
                self.hang_up(now);
                return;
            };
            self.execute(now, verb);
        }
    }

    fn execute(&mut self, now: Instant, verb: Verb) {
        match verb {
            Verb::Say(_) | Verb::Play(_) | Verb::Pause(_) => {
                if let Some(prompt) = self.start_prompt(now, verb) {
                    self.state = State::Media(prompt);
                }
            }
            Verb::Gather(gather) => {
                self.answer(now);
                self.redirects_without_media = 0;
                let prompts = gather.children.clone().into();
                self.state = State::Gathering(Box::new(GatherRun {
                    gather,
                    prompts,
                    prompt: None,
                    digits: String::new(),
                    deadline: None,
                    barged_in: false,
                }));
                self.advance_gather(now);
            }
            Verb::Record(record) => {
                self.answer(now);
                self.redirects_without_media = 0;
                if record.play_beep {
                    let id = self.take_id();
                    self.outputs.push_back(Output::Play {
                        id,
                        source: MediaSource::Beep,
                        loops: 1,
                    });
                    self.state = State::Beeping { id, record };
                } else {
                    self.start_recording(record);
                }
            }
            Verb::Redirect(redirect) => {
                self.redirects_without_media += 1;
                if self.redirects_without_media > MAX_REDIRECTS_WITHOUT_MEDIA {
                    self.notify(
                        ERR_DOCUMENT,
                        format!(
                            "More than {MAX_REDIRECTS_WITHOUT_MEDIA} consecutive <Redirect>s without media; ending the call"
                        ),
                    );
                    self.application_error(now);
                    return;
                }
                let params = self.base_params();
                self.request_action(now, Some(&redirect.url), redirect.method.into(), params);
            }
            Verb::Dial(dial) => {
                if !dial.answer_on_bridge {
                    self.answer(now);
                }
                self.redirects_without_media = 0;
                let id = self.take_id();
                let resolved = self.resolve_dial(&dial);
                self.outputs.push_back(Output::Dial { id, dial: resolved });
                self.state = State::Dialing(Box::new(DialRun {
                    id,
                    dial,
                    hung_up_at: None,
                }));
            }
            Verb::Enqueue(enqueue) => {
                self.answer(now);
                self.redirects_without_media = 0;
                let id = self.take_id();
                let mut resolved = enqueue.clone();
                resolved.action = enqueue
                    .action
                    .as_deref()
                    .and_then(|a| self.resolve(Some(a)).ok());
                self.resolve_in_place(&mut resolved.wait_url);
                self.outputs.push_back(Output::Enqueue {
                    id,
                    enqueue: resolved,
                });
                self.state = State::Enqueued(Box::new(EnqueueRun {
                    id,
                    enqueue,
                    hung_up_at: None,
                }));
            }
            // Outside a queue's wait document there is no queue to leave (Twilio ignores it).
            Verb::Leave => {}
            Verb::Hangup => self.hang_up(now),
            Verb::Reject(reject) => {
                if self.answered_at.is_some() {
                    // Only a first verb can refuse a call; once answered, the call just ends.
                    self.hang_up(now);
                    return;
                }
                let (reason, status) = match reject.reason {
                    twiml::RejectReason::Busy => (RejectReason::Busy, CallStatus::Busy),
                    twiml::RejectReason::Rejected => (RejectReason::Rejected, CallStatus::NoAnswer),
                };
                self.outputs.push_back(Output::Reject { reason });
                self.status = status;
                self.finish(now);
            }
            // Unsupported verbs are refused when the document arrives, so none reach here;
            // should one slip through, skipping it is the harmless reading.
            _ => {}
        }
    }

    /// Start a `Say`, `Play` or `Pause`; `None` when there is nothing to wait for.
    fn start_prompt(&mut self, now: Instant, verb: Verb) -> Option<Prompt> {
        self.answer(now);
        self.redirects_without_media = 0;
        match verb {
            // Nothing to speak: no playback to wait for.
            Verb::Say(say) if say.text.is_empty() => None,
            Verb::Say(say) => {
                let id = self.take_id();
                self.outputs.push_back(Output::Play {
                    id,
                    source: MediaSource::Tts {
                        text: say.text,
                        voice: say.voice,
                        language: say.language,
                    },
                    loops: say.loop_,
                });
                Some(Prompt::Playing(id))
            }
            // `digits` sends DTMF to the far end, which the media worker cannot do yet: a
            // digits-only <Play> is skipped.
            Verb::Play(play) if play.url.is_empty() => None,
            Verb::Play(play) => match self.resolve(Some(&play.url)) {
                Ok(url) => {
                    let id = self.take_id();
                    self.last_url_play = Some(id);
                    self.outputs.push_back(Output::Play {
                        id,
                        source: MediaSource::Url(url),
                        loops: play.loop_,
                    });
                    Some(Prompt::Playing(id))
                }
                Err(message) => {
                    self.notify(ERR_URL, message);
                    None
                }
            },
            Verb::Pause(pause) if pause.length == 0 => None,
            Verb::Pause(pause) => Some(Prompt::Pausing(now + secs(pause.length))),
            _ => None,
        }
    }

    /// Start the next prompt of the gather, or the input timeout once prompts are over.
    fn advance_gather(&mut self, now: Instant) {
        loop {
            let State::Gathering(run) = &mut self.state else {
                return;
            };
            if run.prompt.is_some() || run.deadline.is_some() {
                return;
            }
            match run.prompts.pop_front() {
                Some(verb) => {
                    let prompt = self.start_prompt(now, verb);
                    if let State::Gathering(run) = &mut self.state {
                        run.prompt = prompt;
                    }
                }
                None => {
                    run.deadline = Some(now + secs(run.gather.timeout));
                    return;
                }
            }
        }
    }

    fn finish_gather(&mut self, now: Instant, finished_on_key: Option<char>) {
        let State::Gathering(run) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        if run.prompt.is_some_and(|p| matches!(p, Prompt::Playing(_))) {
            self.outputs.push_back(Output::StopPlayback);
        }
        if run.digits.is_empty() && !run.gather.action_on_empty_result {
            self.run(now);
            return;
        }
        let mut params = self.base_params();
        params.push(("Digits".into(), run.digits));
        params.push((
            "FinishedOnKey".into(),
            finished_on_key.map(String::from).unwrap_or_default(),
        ));
        self.request_action(
            now,
            run.gather.action.as_deref(),
            run.gather.method.into(),
            params,
        );
    }

    fn start_recording(&mut self, record: Record) {
        let id = self.take_id();
        let sid = RecordingSid::random(&mut self.rng);
        self.outputs.push_back(Output::StartRecording {
            id,
            recording_sid: sid,
            max_length: secs(record.max_length),
            silence_timeout: (record.timeout > 0).then(|| secs(record.timeout)),
        });
        self.state = State::Recording(Box::new(RecordRun {
            id,
            sid,
            record,
            key: None,
            stopping: false,
            hung_up_at: None,
        }));
    }

    // ---- endings ----

    fn answer(&mut self, now: Instant) {
        if self.answered_at.is_none() {
            self.answered_at = Some(now);
            self.status = CallStatus::InProgress;
            self.outputs.push_back(Output::Answer);
        }
    }

    /// Our side ends the call. Twilio answers before hanging up: only `<Reject>` leaves a call
    /// unanswered, so an empty document or a first `<Hangup>` still completes the call.
    fn hang_up(&mut self, now: Instant) {
        self.answer(now);
        self.outputs.push_back(Output::Hangup);
        self.status = CallStatus::Completed;
        self.finish(now);
    }

    fn finish(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        self.state = State::Finished;
        self.verbs.clear();
        self.outputs.push_back(Output::Finished {
            status: self.status,
            answered_at: self.answered_at,
            ended_at: now,
        });
    }

    fn notify(&mut self, code: u32, message: String) {
        self.outputs.push_back(Output::Notify { code, message });
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// An inline document, as if a webhook had answered with it.
fn inline(body: String) -> WebhookReply {
    WebhookReply {
        body,
        content_type: Some("text/xml".to_owned()),
    }
}

/// Whole seconds, rounded to the nearest, as Twilio reports durations.
fn round_secs(d: Duration) -> u128 {
    (d.as_millis() + 500) / 1000
}

fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DialCallStatus, DialRecording, WebhookFailure};

    const VOICE_URL: &str = "https://app.test/voice/start";

    fn config() -> CallConfig {
        CallConfig {
            call_sid: "CA0123456789abcdef0123456789abcdef"
                .parse()
                .expect("valid SID"),
            account_sid: "AC0123456789abcdef0123456789abcdef"
                .parse()
                .expect("valid SID"),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            direction: CallDirection::Inbound,
            voice_url: VOICE_URL.into(),
            voice_method: HttpMethod::Post,
            fallback_url: None,
            fallback_method: HttpMethod::Post,
            public_url: "https://dialtone.test/".into(),
            twiml: None,
            extra_params: Vec::new(),
        }
    }

    /// A call on a simulated clock, with every output it ever produced kept for checks.
    struct Harness {
        call: Call,
        start: Instant,
        now: Instant,
        all: Vec<Output>,
    }

    impl Harness {
        fn new(config: CallConfig) -> Harness {
            let start = Instant::now();
            Harness {
                call: Call::new(start, config, 7),
                start,
                now: start,
                all: Vec::new(),
            }
        }

        /// Starts a call and answers its first webhook with `xml`.
        fn with_document(xml: &str) -> Harness {
            let mut h = Harness::new(config());
            let (id, ..) = h.fetch();
            h.reply(id, xml);
            h
        }

        fn drain(&mut self) -> Vec<Output> {
            let mut out = Vec::new();
            while let Some(o) = self.call.poll_output() {
                out.push(o);
            }
            self.all.extend(out.iter().cloned());
            out
        }

        fn input(&mut self, input: Input) -> Vec<Output> {
            self.call.handle_input(self.now, input);
            self.drain()
        }

        fn reply(&mut self, request_id: u64, xml: &str) -> Vec<Output> {
            let reply = WebhookReply {
                body: xml.into(),
                content_type: Some("text/xml".into()),
            };
            self.input(Input::WebhookResult {
                request_id,
                result: Ok(reply),
            })
        }

        fn fail(&mut self, request_id: u64, failure: WebhookFailure) -> Vec<Output> {
            self.input(Input::WebhookResult {
                request_id,
                result: Err(failure),
            })
        }

        /// Drains outputs and returns the single `FetchWebhook` among them.
        fn fetch(&mut self) -> (u64, String, HttpMethod, Vec<(String, String)>) {
            let out = self.drain();
            fetch_in(&out)
        }

        /// Moves the clock forward by `d`, firing every timer that falls due on the way.
        fn advance(&mut self, d: Duration) -> Vec<Output> {
            let target = self.now + d;
            while let Some(t) = self.call.poll_timeout() {
                if t > target {
                    break;
                }
                self.now = self.now.max(t);
                self.call.handle_timeout(self.now);
            }
            self.now = target;
            self.drain()
        }

        fn elapsed(&self) -> Duration {
            self.now - self.start
        }

        /// `Finished` appeared exactly once, as the very last output, with this status.
        fn assert_finished(&self, status: CallStatus) {
            let finished: Vec<_> = self
                .all
                .iter()
                .filter(|o| matches!(o, Output::Finished { .. }))
                .collect();
            assert_eq!(finished.len(), 1, "{:#?}", self.all);
            match self.all.last() {
                Some(Output::Finished {
                    status: s,
                    ended_at,
                    ..
                }) => {
                    assert_eq!(*s, status);
                    assert_eq!(*ended_at, self.now);
                }
                other => panic!("last output is {other:?}"),
            }
            assert_eq!(self.call.status(), status);
            assert!(self.call.is_finished());
            assert_eq!(self.call.poll_timeout(), None);
        }
    }

    fn fetch_in(out: &[Output]) -> (u64, String, HttpMethod, Vec<(String, String)>) {
        let fetches: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::FetchWebhook {
                    request_id,
                    url,
                    method,
                    params,
                } => Some((*request_id, url.clone(), *method, params.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(fetches.len(), 1, "{out:#?}");
        fetches.into_iter().next().expect("length checked")
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn play_id(out: &[Output]) -> u64 {
        out.iter()
            .find_map(|o| match o {
                Output::Play { id, .. } => Some(*id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Play in {out:#?}"))
    }

    fn tts(text: &str) -> MediaSource {
        MediaSource::Tts {
            text: text.into(),
            voice: "man".into(),
            language: "en-US".into(),
        }
    }

    fn dtmf(h: &mut Harness, digits: &str) -> Vec<Output> {
        let mut out = Vec::new();
        for digit in digits.chars() {
            out.extend(h.input(Input::Dtmf { digit }));
        }
        out
    }

    #[test]
    fn first_output_requests_voice_url_with_twilio_parameters() {
        let mut cfg = config();
        cfg.voice_method = HttpMethod::Get;
        let mut h = Harness::new(cfg);
        let out = h.drain();
        assert_eq!(out.len(), 1, "{out:?}");
        let (_, url, method, params) = fetch_in(&out);
        assert_eq!(url, VOICE_URL);
        assert_eq!(method, HttpMethod::Get);
        let expect = [
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("From", "+15550001111"),
            ("To", "+15550002222"),
            ("Caller", "+15550001111"),
            ("Called", "+15550002222"),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("ApiVersion", "2010-04-01"),
        ];
        for (k, v) in expect {
            assert_eq!(param(&params, k), Some(v), "{k}");
        }
        assert_eq!(h.call.status(), CallStatus::Ringing);
        assert_eq!(h.call.poll_timeout(), None);
    }

    #[test]
    fn say_then_gather_digits_requests_action_with_digits() {
        let mut h = Harness::new(config());
        let (id, ..) = h.fetch();
        let out = h.reply(
            id,
            r#"<Response><Say>Welcome</Say><Gather action="/menu" numDigits="2"><Say>Press two digits</Say></Gather></Response>"#,
        );
        assert_eq!(
            out,
            vec![
                Output::Answer,
                Output::Play {
                    id: play_id(&out),
                    source: tts("Welcome"),
                    loops: 1
                }
            ]
        );
        assert_eq!(h.call.status(), CallStatus::InProgress);
        let out = h.input(Input::PlaybackDone { id: play_id(&out) });
        assert_eq!(
            out,
            vec![Output::Play {
                id: play_id(&out),
                source: tts("Press two digits"),
                loops: 1
            }]
        );
        let out = h.input(Input::Dtmf { digit: '4' });
        assert_eq!(out, vec![Output::StopPlayback], "first digit barges in");
        let out = h.input(Input::Dtmf { digit: '2' });
        let (_, url, method, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/menu");
        assert_eq!(method, HttpMethod::Post);
        assert_eq!(param(&params, "Digits"), Some("42"));
        assert_eq!(param(&params, "FinishedOnKey"), Some(""));
        assert_eq!(param(&params, "CallStatus"), Some("in-progress"));
        assert_eq!(
            param(&params, "CallSid"),
            Some("CA0123456789abcdef0123456789abcdef")
        );
    }

    #[test]
    fn gather_times_out_after_prompts_and_after_the_last_digit() {
        let mut h = Harness::with_document(
            r#"<Response><Gather action="next" timeout="5"><Say>Enter</Say></Gather></Response>"#,
        );
        let id = play_id(&h.all);
        // The timeout only runs once the prompt is over.
        assert_eq!(h.call.poll_timeout(), None);
        h.advance(Duration::from_secs(30));
        h.input(Input::PlaybackDone { id });
        assert_eq!(h.call.poll_timeout(), Some(h.now + Duration::from_secs(5)));
        assert!(h.advance(Duration::from_millis(4900)).is_empty());
        dtmf(&mut h, "1");
        assert!(
            h.advance(Duration::from_millis(4900)).is_empty(),
            "each digit restarts the timeout"
        );
        let out = h.advance(Duration::from_millis(100));
        let (_, url, _, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/voice/next");
        assert_eq!(param(&params, "Digits"), Some("1"));
        assert_eq!(h.elapsed(), Duration::from_millis(30_000 + 4_900 + 5_000));
    }

    #[test]
    fn finish_on_key_ends_gather_and_is_not_in_digits() {
        let mut h = Harness::with_document(r#"<Response><Gather/></Response>"#);
        assert!(dtmf(&mut h, "12").is_empty());
        let out = dtmf(&mut h, "#");
        let (_, url, _, params) = fetch_in(&out);
        assert_eq!(url, VOICE_URL, "action defaults to the current document");
        assert_eq!(param(&params, "Digits"), Some("12"));
        assert_eq!(param(&params, "FinishedOnKey"), Some("#"));
    }

    #[test]
    fn custom_finish_on_key_and_empty_finish_on_key() {
        let mut h = Harness::with_document(r#"<Response><Gather finishOnKey="*"/></Response>"#);
        let out = dtmf(&mut h, "9#*");
        assert_eq!(param(&fetch_in(&out).3, "Digits"), Some("9#"));

        let mut h = Harness::with_document(
            r##"<Response><Gather finishOnKey="" timeout="2"/></Response>"##,
        );
        assert!(dtmf(&mut h, "#").is_empty(), "no finish key: # is a digit");
        let out = h.advance(Duration::from_secs(2));
        assert_eq!(param(&fetch_in(&out).3, "Digits"), Some("#"));
    }

    #[test]
    fn num_digits_ends_gather_without_waiting() {
        let mut h =
            Harness::with_document(r#"<Response><Gather numDigits="3" action="/pin"/></Response>"#);
        assert!(dtmf(&mut h, "12").is_empty());
        let out = dtmf(&mut h, "3");
        let (_, url, _, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/pin");
        assert_eq!(param(&params, "Digits"), Some("123"));
        assert_eq!(h.elapsed(), Duration::ZERO);
    }

    #[test]
    fn barge_in_skips_remaining_prompts() {
        let mut h = Harness::with_document(
            r#"<Response><Gather numDigits="2"><Pause length="3"/><Say>never heard</Say></Gather></Response>"#,
        );
        assert_eq!(h.all[1..], [Output::Answer], "a Pause plays nothing");
        // A key during a Pause: nothing is playing, so nothing to stop.
        assert!(dtmf(&mut h, "5").is_empty());
        // The pause timer no longer matters and the Say never starts.
        let out = h.advance(Duration::from_secs(4));
        assert!(out.is_empty(), "{out:?}");
        let out = dtmf(&mut h, "6");
        assert_eq!(param(&fetch_in(&out).3, "Digits"), Some("56"));
    }

    #[test]
    fn nested_prompts_play_in_order_then_timeout_starts() {
        let mut h = Harness::with_document(
            r#"<Response><Gather timeout="2"><Play>beep.wav</Play><Pause length="1"/><Say loop="2">menu</Say></Gather><Say>bye</Say></Response>"#,
        );
        let out = h.all.clone();
        let first = play_id(&out);
        assert!(out.contains(&Output::Play {
            id: first,
            source: MediaSource::Url("https://app.test/voice/beep.wav".into()),
            loops: 1
        }));
        assert!(
            h.input(Input::PlaybackDone { id: first }).is_empty(),
            "pause next"
        );
        let out = h.advance(Duration::from_secs(1));
        assert_eq!(
            out,
            vec![Output::Play {
                id: play_id(&out),
                source: tts("menu"),
                loops: 2
            }]
        );
        assert!(h
            .input(Input::PlaybackDone { id: play_id(&out) })
            .is_empty());
        // No input: after the timeout the next verb of the document runs.
        let out = h.advance(Duration::from_secs(2));
        assert_eq!(
            out,
            vec![Output::Play {
                id: play_id(&out),
                source: tts("bye"),
                loops: 1
            }]
        );
        let out = h.input(Input::PlaybackDone { id: play_id(&out) });
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
        assert_eq!(h.elapsed(), Duration::from_secs(3));
    }

    #[test]
    fn gather_without_input_and_action_on_empty_result_requests_action() {
        let mut h = Harness::with_document(
            r#"<Response><Gather actionOnEmptyResult="true" action="/empty" method="GET" timeout="1"/><Say>not reached</Say></Response>"#,
        );
        let out = h.advance(Duration::from_secs(1));
        let (_, url, method, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/empty");
        assert_eq!(method, HttpMethod::Get);
        assert_eq!(param(&params, "Digits"), Some(""));
    }

    #[test]
    fn only_finish_key_counts_as_empty_input() {
        let mut h = Harness::with_document(r#"<Response><Gather/><Hangup/></Response>"#);
        let out = dtmf(&mut h, "#");
        assert!(
            out.iter()
                .all(|o| !matches!(o, Output::FetchWebhook { .. })),
            "{out:?}"
        );
        assert!(out.contains(&Output::Hangup));
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn relative_urls_resolve_against_the_current_document() {
        let mut h =
            Harness::with_document(r#"<Response><Redirect>../other?x=1</Redirect></Response>"#);
        let (id, url, method, _) = fetch_in(&h.all[1..]);
        assert_eq!(url, "https://app.test/other?x=1");
        assert_eq!(method, HttpMethod::Post);
        // The redirected document is now the base for its own relative URLs.
        let out = h.reply(
            id,
            r#"<Response><Redirect method="GET">deeper/doc</Redirect></Response>"#,
        );
        let (id, url, method, _) = fetch_in(&out);
        assert_eq!(url, "https://app.test/deeper/doc");
        assert_eq!(method, HttpMethod::Get);
        let out = h.reply(
            id,
            r#"<Response><Redirect>https://elsewhere.test/abs</Redirect></Response>"#,
        );
        assert_eq!(fetch_in(&out).1, "https://elsewhere.test/abs");
        let (id, ..) = fetch_in(&out);
        let out = h.reply(id, r#"<Response><Redirect>/root</Redirect></Response>"#);
        assert_eq!(fetch_in(&out).1, "https://elsewhere.test/root");
    }

    #[test]
    fn redirect_replaces_the_rest_of_the_document() {
        let mut h = Harness::with_document(
            r#"<Response><Redirect>/b</Redirect><Say>never</Say></Response>"#,
        );
        let (id, ..) = fetch_in(&h.all[1..]);
        let out = h.reply(id, "<Response><Say>from b</Say></Response>");
        assert!(out.contains(&Output::Play {
            id: play_id(&out),
            source: tts("from b"),
            loops: 1
        }));
        h.input(Input::PlaybackDone { id: play_id(&out) });
        h.assert_finished(CallStatus::Completed);
        assert!(!h.all.iter().any(|o| matches!(o, Output::Play { source: MediaSource::Tts { text, .. }, .. } if text == "never")));
    }

    #[test]
    fn redirect_loop_without_media_is_stopped() {
        let mut h = Harness::new(config());
        let (mut id, ..) = h.fetch();
        for _ in 0..MAX_REDIRECTS_WITHOUT_MEDIA {
            let out = h.reply(id, "<Response><Redirect>/voice/start</Redirect></Response>");
            id = fetch_in(&out).0;
        }
        let out = h.reply(id, "<Response><Redirect>/voice/start</Redirect></Response>");
        assert!(
            matches!(&out[0], Output::Notify { code: 12100, message } if message.contains("Redirect")),
            "{out:?}"
        );
        assert_eq!(out[1], Output::Answer);
        assert_eq!(
            out[2],
            Output::Play {
                id: play_id(&out),
                source: tts(APPLICATION_ERROR_MESSAGE),
                loops: 1
            }
        );
        h.input(Input::PlaybackDone { id: play_id(&out) });
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn media_between_redirects_resets_the_loop_guard() {
        let mut h = Harness::new(config());
        let (mut id, ..) = h.fetch();
        for _ in 0..3 * MAX_REDIRECTS_WITHOUT_MEDIA {
            let out = h.reply(
                id,
                "<Response><Pause/><Redirect>again</Redirect></Response>",
            );
            assert!(out.iter().all(|o| !matches!(o, Output::Notify { .. })));
            let out = h.advance(Duration::from_secs(1));
            id = fetch_in(&out).0;
        }
    }

    #[test]
    fn record_stopped_by_silence_posts_recording_parameters() {
        let mut h = Harness::with_document(
            r#"<Response><Record action="/rec" timeout="3" maxLength="20"/><Say>unreached</Say></Response>"#,
        );
        let out = h.all[1..].to_vec();
        let beep = play_id(&out);
        assert_eq!(
            out,
            vec![
                Output::Answer,
                Output::Play {
                    id: beep,
                    source: MediaSource::Beep,
                    loops: 1
                }
            ]
        );
        let out = h.input(Input::PlaybackDone { id: beep });
        let [Output::StartRecording {
            id,
            recording_sid,
            max_length,
            silence_timeout,
        }] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(*max_length, Duration::from_secs(20));
        assert_eq!(*silence_timeout, Some(Duration::from_secs(3)));
        let (id, sid) = (*id, *recording_sid);
        h.advance(Duration::from_secs(10));
        let out = h.input(Input::RecordingStopped {
            id,
            duration: Duration::from_millis(7400),
            stop: RecordStop::Silence,
        });
        let (_, url, method, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/rec");
        assert_eq!(method, HttpMethod::Post);
        assert_eq!(
            param(&params, "RecordingUrl").map(String::from),
            Some(format!("https://dialtone.test/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/{sid}"))
        );
        assert_eq!(param(&params, "RecordingSid"), Some(sid.as_str()));
        assert_eq!(param(&params, "RecordingDuration"), Some("7"));
        assert_eq!(param(&params, "Digits"), None);
        assert!(sid.as_str().starts_with("RE"));
    }

    #[test]
    fn recording_status_callback_is_sent_without_waiting() {
        let mut h = Harness::with_document(
            r#"<Response><Record playBeep="false" action="/rec" recordingStatusCallback="/status" recordingStatusCallbackMethod="GET"/></Response>"#,
        );
        let Some(Output::StartRecording {
            id, recording_sid, ..
        }) = h.all.last().cloned()
        else {
            panic!()
        };
        let out = h.input(Input::RecordingStopped {
            id,
            duration: Duration::from_secs(3),
            stop: RecordStop::MaxLength,
        });
        let fetches: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::FetchWebhook {
                    url,
                    method,
                    params,
                    ..
                } => Some((url.as_str(), *method, params)),
                _ => None,
            })
            .collect();
        assert_eq!(fetches.len(), 2, "{out:?}");
        let (url, method, params) = &fetches[0];
        assert_eq!(
            (*url, *method),
            ("https://app.test/status", HttpMethod::Get)
        );
        assert_eq!(param(params, "RecordingStatus"), Some("completed"));
        assert_eq!(param(params, "RecordingSid"), Some(recording_sid.as_str()));
        assert_eq!(param(params, "RecordingDuration"), Some("3"));
        assert_eq!(fetches[1].0, "https://app.test/rec");
        // The call waits on the action, not on the status callback.
        let action_id = match out.last() {
            Some(Output::FetchWebhook { request_id, .. }) => *request_id,
            other => panic!("{other:?}"),
        };
        let out = h.reply(action_id, "<Response><Hangup/></Response>");
        assert_eq!(out[0], Output::Hangup);
    }

    #[test]
    fn record_stopped_by_key_reports_the_digit() {
        let mut h = Harness::with_document(
            r##"<Response><Record playBeep="false" finishOnKey="#" timeout="0"/></Response>"##,
        );
        let out = h.all[1..].to_vec();
        let [Output::Answer, Output::StartRecording {
            id,
            silence_timeout: None,
            max_length,
            ..
        }] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(*max_length, Duration::from_secs(3600));
        let id = *id;
        assert!(dtmf(&mut h, "5").is_empty(), "5 is not a finish key here");
        assert_eq!(dtmf(&mut h, "#"), vec![Output::StopRecording { id }]);
        assert!(dtmf(&mut h, "#").is_empty(), "stop is asked once");
        let out = h.input(Input::RecordingStopped {
            id,
            duration: Duration::from_secs(12),
            stop: RecordStop::Stopped,
        });
        let (_, url, _, params) = fetch_in(&out);
        assert_eq!(
            url, VOICE_URL,
            "without action Twilio requests the document again"
        );
        assert_eq!(param(&params, "Digits"), Some("#"));
        assert_eq!(param(&params, "RecordingDuration"), Some("12"));
    }

    #[test]
    fn empty_recording_goes_on_without_action() {
        let mut h = Harness::with_document(
            r#"<Response><Record playBeep="false" action="/rec"/><Say>next</Say></Response>"#,
        );
        let Some(Output::StartRecording { id, .. }) = h.all.last().cloned() else {
            panic!("{:?}", h.all)
        };
        let out = h.input(Input::RecordingStopped {
            id,
            duration: Duration::from_millis(300),
            stop: RecordStop::Silence,
        });
        assert_eq!(
            out,
            vec![Output::Play {
                id: play_id(&out),
                source: tts("next"),
                loops: 1
            }]
        );
    }

    #[test]
    fn caller_hanging_up_during_record_still_reports_the_recording() {
        let mut h = Harness::with_document(
            r#"<Response><Record playBeep="false" action="/rec"/></Response>"#,
        );
        let Some(Output::StartRecording { id, .. }) = h.all.last().cloned() else {
            panic!("{:?}", h.all)
        };
        h.advance(Duration::from_secs(9));
        let out = h.input(Input::RemoteHangup);
        assert_eq!(out, vec![Output::StopRecording { id }]);
        assert_eq!(h.call.status(), CallStatus::Completed);
        assert!(!h.call.is_finished(), "waits for the recording");
        let out = h.input(Input::RecordingStopped {
            id,
            duration: Duration::from_secs(9),
            stop: RecordStop::Hangup,
        });
        let (req, url, _, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/rec");
        assert_eq!(param(&params, "Digits"), Some("hangup"));
        assert_eq!(param(&params, "CallStatus"), Some("completed"));
        h.assert_finished(CallStatus::Completed);
        // The reply has no call to drive.
        assert!(h.reply(req, "<Response><Say>x</Say></Response>").is_empty());
        assert!(h.input(Input::RemoteHangup).is_empty());
    }

    #[test]
    fn media_worker_reporting_hangup_ends_the_call_too() {
        let mut h = Harness::with_document(r#"<Response><Record playBeep="false"/></Response>"#);
        let Some(Output::StartRecording { id, .. }) = h.all.last().cloned() else {
            panic!()
        };
        let out = h.input(Input::RecordingStopped {
            id,
            duration: Duration::from_secs(2),
            stop: RecordStop::Hangup,
        });
        assert_eq!(param(&fetch_in(&out).3, "Digits"), Some("hangup"));
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn recording_never_reported_after_hangup_finishes_after_grace() {
        let mut h = Harness::with_document(r#"<Response><Record playBeep="false"/></Response>"#);
        h.input(Input::RemoteHangup);
        assert!(h
            .advance(RECORDING_REPORT_GRACE - Duration::from_millis(1))
            .is_empty());
        let out = h.advance(Duration::from_millis(1));
        assert!(out
            .iter()
            .all(|o| !matches!(o, Output::FetchWebhook { .. })));
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn recording_sids_come_from_the_seeded_rng() {
        let sid = |seed| {
            let mut call = Call::new(Instant::now(), config(), seed);
            while call.poll_output().is_some() {}
            let now = Instant::now();
            let body = r#"<Response><Record playBeep="false"/></Response>"#.to_owned();
            call.handle_input(
                now,
                Input::WebhookResult {
                    request_id: 1,
                    result: Ok(WebhookReply {
                        body,
                        content_type: None,
                    }),
                },
            );
            std::iter::from_fn(|| call.poll_output())
                .find_map(|o| match o {
                    Output::StartRecording { recording_sid, .. } => Some(recording_sid),
                    _ => None,
                })
                .expect("recording started")
        };
        assert_eq!(sid(1), sid(1));
        assert_ne!(sid(1), sid(2));
    }

    #[test]
    fn reject_busy_before_answer() {
        let h = Harness::with_document(
            r#"<Response><Reject reason="busy"/><Say>unreached</Say></Response>"#,
        );
        assert_eq!(
            h.all[1..],
            [
                Output::Reject {
                    reason: RejectReason::Busy
                },
                Output::Finished {
                    status: CallStatus::Busy,
                    answered_at: None,
                    ended_at: h.now
                },
            ]
        );
        h.assert_finished(CallStatus::Busy);
    }

    #[test]
    fn reject_default_ends_no_answer() {
        let h = Harness::with_document("<Response><Reject/></Response>");
        assert_eq!(
            h.all[1],
            Output::Reject {
                reason: RejectReason::Rejected
            }
        );
        h.assert_finished(CallStatus::NoAnswer);
    }

    #[test]
    fn reject_after_answer_hangs_up() {
        let mut h = Harness::with_document("<Response><Pause/><Reject/></Response>");
        let out = h.advance(Duration::from_secs(1));
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn fallback_url_is_used_with_error_code_and_url() {
        let mut cfg = config();
        cfg.fallback_url = Some("https://backup.test/fb".into());
        cfg.fallback_method = HttpMethod::Get;
        let mut h = Harness::new(cfg);
        let (id, ..) = h.fetch();
        let out = h.fail(id, WebhookFailure::Status(500));
        assert!(
            matches!(&out[0], Output::Notify { code: 11200, message } if message.contains("500") && message.contains(VOICE_URL)),
            "{out:?}"
        );
        let (id, url, method, params) = fetch_in(&out);
        assert_eq!(url, "https://backup.test/fb");
        assert_eq!(method, HttpMethod::Get);
        assert_eq!(param(&params, "ErrorCode"), Some("11200"));
        assert_eq!(param(&params, "ErrorUrl"), Some(VOICE_URL));
        assert_eq!(param(&params, "CallStatus"), Some("ringing"));
        // The fallback's document runs, relative URLs against the fallback URL.
        let out = h.reply(id, "<Response><Play>hold.mp3</Play></Response>");
        assert!(out.contains(&Output::Play {
            id: play_id(&out),
            source: MediaSource::Url("https://backup.test/hold.mp3".into()),
            loops: 1
        }));
    }

    #[test]
    fn fallback_failing_too_ends_the_call_with_the_error_message() {
        let mut cfg = config();
        cfg.fallback_url = Some("https://backup.test/fb".into());
        let mut h = Harness::new(cfg);
        let (id, ..) = h.fetch();
        let out = h.fail(id, WebhookFailure::Timeout);
        let (id, ..) = fetch_in(&out);
        let out = h.reply(id, "<Response><Say>unclosed</Response>");
        assert!(
            matches!(&out[0], Output::Notify { code: 12100, message } if message.contains("backup.test")),
            "{out:?}"
        );
        assert_eq!(out[1], Output::Answer);
        assert_eq!(
            out[2],
            Output::Play {
                id: play_id(&out),
                source: tts(APPLICATION_ERROR_MESSAGE),
                loops: 1
            }
        );
        assert_eq!(out.len(), 3, "no second fallback: {out:?}");
        let out = h.input(Input::PlaybackFailed {
            id: play_id(&out),
            reason: "tts down".into(),
        });
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn malformed_xml_notifies_12100_and_ends_the_call() {
        let mut h = Harness::new(config());
        let (id, ..) = h.fetch();
        let out = h.reply(id, "<Response><Say>hi</Say>");
        assert!(
            matches!(&out[0], Output::Notify { code: 12100, message } if message.contains("malformed XML")),
            "{out:?}"
        );
        let out = h.input(Input::PlaybackDone { id: play_id(&out) });
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn action_failure_uses_the_fallback_too() {
        let mut cfg = config();
        cfg.fallback_url = Some("https://backup.test/fb".into());
        let mut h = Harness::new(cfg);
        let (id, ..) = h.fetch();
        h.reply(
            id,
            r#"<Response><Gather numDigits="1" action="/menu"/></Response>"#,
        );
        let out = dtmf(&mut h, "3");
        let (id, ..) = fetch_in(&out);
        let out = h.fail(id, WebhookFailure::Connect("refused".into()));
        let (_, url, _, params) = fetch_in(&out);
        assert_eq!(url, "https://backup.test/fb");
        assert_eq!(
            param(&params, "Digits"),
            Some("3"),
            "same parameters as the failed request"
        );
        assert_eq!(param(&params, "ErrorUrl"), Some("https://app.test/menu"));
    }

    #[test]
    fn unsupported_verb_fails_the_document() {
        let mut cfg = config();
        cfg.fallback_url = Some("https://backup.test/fb".into());
        let mut h = Harness::new(cfg);
        let (id, ..) = h.fetch();
        let out = h.reply(
            id,
            "<Response><Say>hi</Say><Connect><Stream url=\"wss://x.test/\"/></Connect></Response>",
        );
        assert!(
            matches!(&out[0], Output::Notify { code: 12100, message } if message.contains("<Connect>")),
            "{out:?}"
        );
        assert!(
            !out.contains(&Output::Answer),
            "nothing of the document ran"
        );
        assert_eq!(param(&fetch_in(&out).3, "ErrorCode"), Some("12100"));
    }

    #[test]
    fn remote_hangup_mid_pause() {
        let mut h = Harness::with_document(
            r#"<Response><Pause length="10"/><Say>unreached</Say></Response>"#,
        );
        assert_eq!(
            h.call.poll_timeout(),
            Some(h.start + Duration::from_secs(10))
        );
        h.advance(Duration::from_secs(3));
        let out = h.input(Input::RemoteHangup);
        assert_eq!(
            out,
            vec![Output::Finished {
                status: CallStatus::Completed,
                answered_at: Some(h.start),
                ended_at: h.now
            }]
        );
        h.assert_finished(CallStatus::Completed);
        assert!(h.advance(Duration::from_secs(20)).is_empty());
        assert!(h.input(Input::Dtmf { digit: '1' }).is_empty());
        assert!(h.input(Input::PlaybackDone { id: 1 }).is_empty());
    }

    #[test]
    fn remote_hangup_before_answer_is_canceled() {
        let mut h = Harness::new(config());
        let (id, ..) = h.fetch();
        h.input(Input::RemoteHangup);
        h.assert_finished(CallStatus::Canceled);
        assert!(h
            .reply(id, "<Response><Say>late</Say></Response>")
            .is_empty());
        h.assert_finished(CallStatus::Canceled);
    }

    #[test]
    fn pause_then_end_of_document_hangs_up() {
        let mut h = Harness::with_document(
            r#"<Response><Pause length="2"/><Pause length="0"/></Response>"#,
        );
        assert_eq!(h.all[1..], [Output::Answer]);
        assert!(h.advance(Duration::from_millis(1999)).is_empty());
        let out = h.advance(Duration::from_millis(1));
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn empty_document_answers_then_hangs_up() {
        let h = Harness::with_document("<Response/>");
        assert_eq!(h.all[1..3], [Output::Answer, Output::Hangup]);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn loops_are_carried_to_playback() {
        let h = Harness::with_document(r#"<Response><Say loop="0">forever</Say></Response>"#);
        assert!(h.all.contains(&Output::Play {
            id: play_id(&h.all),
            source: tts("forever"),
            loops: 0
        }));
        let h = Harness::with_document(
            r#"<Response><Play loop="3">https://cdn.test/a.wav</Play></Response>"#,
        );
        assert!(h.all.contains(&Output::Play {
            id: play_id(&h.all),
            source: MediaSource::Url("https://cdn.test/a.wav".into()),
            loops: 3
        }));
    }

    #[test]
    fn failed_play_url_is_reported_and_the_call_goes_on() {
        let mut h = Harness::with_document(
            r#"<Response><Play>/missing.wav</Play><Say>after</Say></Response>"#,
        );
        let out = h.input(Input::PlaybackFailed {
            id: play_id(&h.all),
            reason: "404".into(),
        });
        assert!(
            matches!(&out[0], Output::Notify { code: 11200, .. }),
            "{out:?}"
        );
        assert!(out.contains(&Output::Play {
            id: play_id(&out),
            source: tts("after"),
            loops: 1
        }));
    }

    #[test]
    fn stale_inputs_are_ignored() {
        let mut h = Harness::with_document(r#"<Response><Say>a</Say></Response>"#);
        let id = play_id(&h.all);
        assert!(h.input(Input::PlaybackDone { id: id + 100 }).is_empty());
        assert!(h
            .input(Input::WebhookResult {
                request_id: 1,
                result: Err(WebhookFailure::Timeout)
            })
            .is_empty());
        assert!(h
            .input(Input::RecordingStopped {
                id,
                duration: Duration::from_secs(1),
                stop: RecordStop::Silence
            })
            .is_empty());
        assert!(h.input(Input::Dtmf { digit: 'x' }).is_empty());
        assert_eq!(h.input(Input::PlaybackDone { id })[0], Output::Hangup);
    }

    #[test]
    fn audio_reply_is_played() {
        let mut h = Harness::new(config());
        let (id, ..) = h.fetch();
        let reply = WebhookReply {
            body: String::new(),
            content_type: Some("audio/mpeg".into()),
        };
        let out = h.input(Input::WebhookResult {
            request_id: id,
            result: Ok(reply),
        });
        assert_eq!(
            out,
            vec![
                Output::Answer,
                Output::Play {
                    id: play_id(&out),
                    source: MediaSource::Url(VOICE_URL.into()),
                    loops: 1
                }
            ]
        );
    }

    #[test]
    fn outbound_call_starts_in_progress_and_never_answers() {
        let mut cfg = config();
        cfg.direction = CallDirection::OutboundApi;
        let mut h = Harness::new(cfg);
        let (id, _, _, params) = h.fetch();
        assert_eq!(param(&params, "CallStatus"), Some("in-progress"));
        assert_eq!(param(&params, "Direction"), Some("outbound-api"));
        let out = h.reply(id, "<Response><Hangup/></Response>");
        assert_eq!(out[0], Output::Hangup);
        assert!(!h.all.contains(&Output::Answer));
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn empty_say_is_skipped() {
        let h = Harness::with_document("<Response><Say>  </Say><Say/></Response>");
        assert_eq!(h.all[1..3], [Output::Answer, Output::Hangup]);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn hangup_verb_stops_the_document() {
        let h = Harness::with_document("<Response><Hangup/><Say>unreached</Say></Response>");
        assert_eq!(h.all[1..3], [Output::Answer, Output::Hangup]);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn inline_document_runs_without_a_first_fetch() {
        let mut cfg = config();
        cfg.direction = CallDirection::OutboundApi;
        cfg.twiml = Some(
            r#"<Response><Gather numDigits="1" action="next"><Say>Hi</Say></Gather></Response>"#
                .into(),
        );
        let mut h = Harness::new(cfg);
        let out = h.drain();
        assert!(
            !out.iter().any(|o| matches!(o, Output::FetchWebhook { .. })),
            "{out:#?}"
        );
        assert_eq!(
            out,
            [Output::Play {
                id: 1,
                source: tts("Hi"),
                loops: 1
            }]
        );
        let out = h.input(Input::Dtmf { digit: '7' });
        let (_, url, _, params) = fetch_in(&out);
        // Relative URLs in an inline document resolve against the voice URL.
        assert_eq!(url, "https://app.test/voice/next");
        assert_eq!(param(&params, "Digits"), Some("7"));
        assert_eq!(param(&params, "Direction"), Some("outbound-api"));
    }

    #[test]
    fn broken_inline_document_uses_the_fallback() {
        let mut cfg = config();
        cfg.twiml = Some("<Response><Say>".into());
        cfg.fallback_url = Some("https://app.test/fallback".into());
        let mut h = Harness::new(cfg);
        let out = h.drain();
        assert!(
            matches!(out[0], Output::Notify { code: 12100, .. }),
            "{out:#?}"
        );
        let (_, url, _, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/fallback");
        assert_eq!(param(&params, "ErrorCode"), Some("12100"));
    }

    #[test]
    fn redirect_update_stops_playback_and_fetches_the_new_url() {
        let mut h = Harness::with_document("<Response><Say>long</Say><Say>never</Say></Response>");
        let playing = play_id(&h.all);
        let out = h.input(Input::Redirect {
            url: "https://other.test/next".into(),
            method: HttpMethod::Get,
        });
        assert_eq!(out[0], Output::StopPlayback);
        let (id, url, method, params) = fetch_in(&out);
        assert_eq!(
            (url.as_str(), method),
            ("https://other.test/next", HttpMethod::Get)
        );
        assert_eq!(param(&params, "CallStatus"), Some("in-progress"));
        // The stopped playback's end changes nothing; the rest of the old document is gone.
        assert!(h.input(Input::PlaybackDone { id: playing }).is_empty());
        let out = h.reply(id, "<Response><Hangup/></Response>");
        assert_eq!(out[0], Output::Hangup);
        assert!(!h
            .all
            .iter()
            .any(|o| matches!(o, Output::Play { source, .. } if *source == tts("never"))));
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn twiml_update_replaces_a_gather_and_a_pending_fetch() {
        let mut h = Harness::with_document(
            r#"<Response><Gather action="/g"><Say>menu</Say></Gather></Response>"#,
        );
        let out = h.input(Input::Twiml {
            document: "<Response><Redirect>/elsewhere</Redirect></Response>".into(),
        });
        assert_eq!(out[0], Output::StopPlayback);
        let (stale, url, ..) = fetch_in(&out);
        assert_eq!(url, "https://app.test/elsewhere");
        // Digits for the replaced gather go nowhere.
        assert!(dtmf(&mut h, "12").is_empty());
        // A second update while the redirect is being fetched: its reply no longer counts.
        let out = h.input(Input::Twiml {
            document: "<Response><Pause length=\"2\"/></Response>".into(),
        });
        assert!(out.is_empty(), "{out:#?}");
        assert!(h
            .reply(stale, "<Response><Say>stale</Say></Response>")
            .is_empty());
        let out = h.advance(Duration::from_secs(2));
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn update_mid_record_stops_it_without_an_action() {
        let mut h = Harness::with_document(
            r#"<Response><Record playBeep="false" action="/rec"/></Response>"#,
        );
        let id = h
            .all
            .iter()
            .find_map(|o| match o {
                Output::StartRecording { id, .. } => Some(*id),
                _ => None,
            })
            .expect("recording started");
        let out = h.input(Input::Twiml {
            document: "<Response><Say>bye</Say></Response>".into(),
        });
        assert_eq!(out[0], Output::StopRecording { id });
        let say = play_id(&out);
        let late = h.input(Input::RecordingStopped {
            id,
            duration: Duration::from_secs(3),
            stop: RecordStop::Stopped,
        });
        assert!(late.is_empty(), "{late:#?}");
        let out = h.input(Input::PlaybackDone { id: say });
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn update_after_hangup_mid_record_is_ignored() {
        let mut h = Harness::with_document(r#"<Response><Record playBeep="false"/></Response>"#);
        h.input(Input::RemoteHangup);
        let out = h.input(Input::Redirect {
            url: "https://app.test/x".into(),
            method: HttpMethod::Post,
        });
        assert!(out.is_empty(), "{out:#?}");
        let out = h.advance(RECORDING_REPORT_GRACE);
        assert!(matches!(out.last(), Some(Output::Finished { .. })));
        h.assert_finished(CallStatus::Completed);
    }

    // ---- <Dial> ----

    const DIALED: &str = "CAfedcba9876543210fedcba9876543210";

    fn dial_in(out: &[Output]) -> (u64, twiml::Dial) {
        let dials: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Dial { id, dial } => Some((*id, dial.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(dials.len(), 1, "{out:#?}");
        dials.into_iter().next().expect("length checked")
    }

    fn ended(id: u64, status: DialCallStatus, bridged_secs: u64) -> Input {
        Input::DialEnded {
            id,
            outcome: DialOutcome {
                status,
                dial_call_sid: Some(DIALED.parse().expect("valid SID")),
                duration: Duration::from_secs(bridged_secs),
                recording: None,
                params: Vec::new(),
            },
        }
    }

    type Params = Vec<(String, String)>;

    fn fetches(out: &[Output]) -> Vec<(u64, String, Params)> {
        out.iter()
            .filter_map(|o| match o {
                Output::FetchWebhook {
                    request_id,
                    url,
                    params,
                    ..
                } => Some((*request_id, url.clone(), params.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dial_call_status_names() {
        for (status, name, bridged) in [
            (DialCallStatus::Completed, "completed", true),
            (DialCallStatus::Answered, "answered", true),
            (DialCallStatus::Busy, "busy", false),
            (DialCallStatus::NoAnswer, "no-answer", false),
            (DialCallStatus::Failed, "failed", false),
            (DialCallStatus::Canceled, "canceled", false),
        ] {
            assert_eq!(status.as_str(), name);
            assert_eq!(status.to_string(), name);
            assert_eq!(status.is_bridged(), bridged, "{name}");
        }
    }

    #[test]
    fn dial_answers_first_and_sends_absolute_urls() {
        let mut h = Harness::new(config());
        let (id, ..) = h.fetch();
        let out = h.reply(
            id,
            r#"<Response><Dial action="/after" timeout="10" callerId="+15550009999"><Number url="whisper" statusCallback="/st" statusCallbackEvent="answered">+15553334444</Number><Client>alice</Client></Dial></Response>"#,
        );
        assert_eq!(out[0], Output::Answer, "{out:#?}");
        assert_eq!(out.len(), 2, "{out:#?}");
        let (_, dial) = dial_in(&out);
        assert_eq!(dial.action.as_deref(), Some("https://app.test/after"));
        assert_eq!(dial.timeout, 10);
        assert_eq!(dial.caller_id.as_deref(), Some("+15550009999"));
        assert_eq!(
            dial.targets[0].url.as_deref(),
            Some("https://app.test/voice/whisper")
        );
        assert_eq!(
            dial.targets[0].status_callback.as_deref(),
            Some("https://app.test/st")
        );
        assert_eq!(
            dial.targets[1].kind,
            twiml::DialKind::Client("alice".into())
        );
        assert_eq!(h.call.status(), CallStatus::InProgress);
        // The dial has no engine timer: the runtime owns timeout and timeLimit.
        assert_eq!(h.call.poll_timeout(), None);
    }

    #[test]
    fn dtmf_and_playback_events_are_ignored_while_dialing() {
        let mut h = Harness::with_document(
            r#"<Response><Say>connecting</Say><Dial hangupOnStar="true">+15553334444</Dial><Say>after</Say></Response>"#,
        );
        let say = play_id(&h.all);
        let out = h.input(Input::PlaybackDone { id: say });
        let (id, dial) = dial_in(&out);
        assert!(dial.hangup_on_star);
        assert!(dtmf(&mut h, "*12#").is_empty());
        assert!(h.input(Input::PlaybackDone { id: say }).is_empty());
        assert!(h
            .input(Input::PlaybackFailed {
                id,
                reason: "x".into()
            })
            .is_empty());
        assert!(h
            .input(Input::RecordingStopped {
                id,
                duration: Duration::from_secs(3),
                stop: RecordStop::Stopped
            })
            .is_empty());
        // A report for another dial id is stale.
        assert!(h.input(ended(id + 100, DialCallStatus::Busy, 0)).is_empty());
        let out = h.input(ended(id, DialCallStatus::Completed, 5));
        assert!(out.contains(&Output::Play {
            id: play_id(&out),
            source: tts("after"),
            loops: 1
        }));
    }

    #[test]
    fn dial_action_gets_the_outcome_and_its_twiml_runs() {
        let mut h = Harness::with_document(
            r#"<Response><Dial action="/after" method="GET">+15553334444</Dial><Say>unreached</Say></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        h.advance(Duration::from_secs(50));
        let mut input = ended(id, DialCallStatus::Completed, 0);
        if let Input::DialEnded { outcome, .. } = &mut input {
            outcome.duration = Duration::from_millis(42_600);
        }
        let out = h.input(input);
        let (request, url, method, params) = fetch_in(&out);
        assert_eq!(
            (url.as_str(), method),
            ("https://app.test/after", HttpMethod::Get)
        );
        assert_eq!(param(&params, "DialCallStatus"), Some("completed"));
        assert_eq!(param(&params, "DialCallSid"), Some(DIALED));
        assert_eq!(param(&params, "DialCallDuration"), Some("43"));
        assert_eq!(param(&params, "DialBridged"), Some("true"));
        assert_eq!(param(&params, "CallStatus"), Some("in-progress"));
        assert_eq!(
            param(&params, "CallSid"),
            Some(h.call.config().call_sid.as_str())
        );
        assert_eq!(param(&params, "RecordingUrl"), None);
        let out = h.reply(request, "<Response><Say>thanks</Say></Response>");
        let say = play_id(&out);
        assert!(out.contains(&Output::Play {
            id: say,
            source: tts("thanks"),
            loops: 1
        }));
        let out = h.input(Input::PlaybackDone { id: say });
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
        assert!(!h
            .all
            .iter()
            .any(|o| matches!(o, Output::Play { source, .. } if *source == tts("unreached"))));
    }

    #[test]
    fn unanswered_dial_outcomes_reach_the_action() {
        for status in [
            DialCallStatus::Busy,
            DialCallStatus::NoAnswer,
            DialCallStatus::Failed,
            DialCallStatus::Canceled,
        ] {
            let mut h = Harness::with_document(
                r#"<Response><Dial action="https://other.test/after">+15553334444</Dial></Response>"#,
            );
            let (id, _) = dial_in(&h.all);
            let out = h.input(Input::DialEnded {
                id,
                outcome: DialOutcome {
                    status,
                    dial_call_sid: None,
                    duration: Duration::ZERO,
                    recording: None,
                    params: Vec::new(),
                },
            });
            let (_, url, method, params) = fetch_in(&out);
            assert_eq!(
                (url.as_str(), method),
                ("https://other.test/after", HttpMethod::Post)
            );
            assert_eq!(param(&params, "DialCallStatus"), Some(status.as_str()));
            assert_eq!(param(&params, "DialBridged"), Some("false"));
            assert_eq!(param(&params, "DialCallDuration"), None, "{status}");
            assert_eq!(param(&params, "DialCallSid"), None, "{status}");
            assert_eq!(param(&params, "CallStatus"), Some("in-progress"));
        }
    }

    #[test]
    fn dial_without_action_goes_on_with_the_document() {
        // Busy: the next verb runs.
        let mut h = Harness::with_document(
            r#"<Response><Dial>+15553334444</Dial><Say>nobody</Say></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        let out = h.input(ended(id, DialCallStatus::Busy, 0));
        assert!(fetches(&out).is_empty(), "{out:#?}");
        assert!(out.contains(&Output::Play {
            id: play_id(&out),
            source: tts("nobody"),
            loops: 1
        }));
        // Bridged, then the callee hung up: the caller goes on too; the end of the document
        // hangs up.
        let mut h = Harness::with_document(
            r#"<Response><Dial><Sip>sip:bob@pbx.test</Sip></Dial><Dial>+1555</Dial></Response>"#,
        );
        let (first, dial) = dial_in(&h.all);
        assert_eq!(
            dial.targets[0].kind,
            twiml::DialKind::Sip("sip:bob@pbx.test".into())
        );
        let out = h.input(ended(first, DialCallStatus::Completed, 30));
        let (second, _) = dial_in(&out);
        assert_ne!(first, second);
        assert!(!out.contains(&Output::Answer), "answered once: {out:#?}");
        let out = h.input(ended(second, DialCallStatus::NoAnswer, 0));
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn answer_on_bridge_leaves_the_call_ringing_until_the_bridge() {
        let mut h = Harness::new(config());
        let (id, ..) = h.fetch();
        let out = h.reply(
            id,
            r#"<Response><Dial answerOnBridge="true" action="/after">+15553334444</Dial></Response>"#,
        );
        assert!(!out.contains(&Output::Answer), "{out:#?}");
        let (dial_id, dial) = dial_in(&out);
        assert!(dial.answer_on_bridge);
        assert_eq!(h.call.status(), CallStatus::Ringing);
        // Rings 8 s, bridged 20 s.
        h.advance(Duration::from_secs(28));
        let bridged_at = h.start + Duration::from_secs(8);
        let out = h.input(ended(dial_id, DialCallStatus::Completed, 20));
        assert_eq!(h.call.status(), CallStatus::InProgress);
        let (request, _, _, params) = fetch_in(&out);
        assert_eq!(param(&params, "CallStatus"), Some("in-progress"));
        let out = h.reply(request, "<Response><Hangup/></Response>");
        assert_eq!(
            out,
            vec![
                Output::Hangup,
                Output::Finished {
                    status: CallStatus::Completed,
                    answered_at: Some(bridged_at),
                    ended_at: h.now
                }
            ],
            "the runtime answered at the bridge: no Answer from the engine"
        );
    }

    #[test]
    fn answer_on_bridge_without_answer_keeps_ringing_then_answers_for_media() {
        let mut h = Harness::with_document(
            r#"<Response><Dial answerOnBridge="true">+15553334444</Dial><Say>sorry</Say></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        assert!(!h.all.contains(&Output::Answer));
        let out = h.input(ended(id, DialCallStatus::NoAnswer, 0));
        assert_eq!(out[0], Output::Answer, "{out:#?}");
        assert_eq!(h.call.status(), CallStatus::InProgress);

        // The caller gives up while the only target rings: canceled, never answered.
        let mut h = Harness::with_document(
            r#"<Response><Dial answerOnBridge="true" action="/after">+15553334444</Dial></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        let out = h.input(Input::RemoteHangup);
        assert_eq!(out, vec![Output::CancelDial { id }]);
        let out = h.input(ended(id, DialCallStatus::Canceled, 0));
        let (_, _, _, params) = fetch_in(&out);
        assert_eq!(param(&params, "CallStatus"), Some("canceled"));
        h.assert_finished(CallStatus::Canceled);
    }

    #[test]
    fn caller_hangup_reported_after_dial_ended() {
        // The runtime's usual order: DialEnded, then RemoteHangup.
        let mut h = Harness::with_document(
            r#"<Response><Dial action="/after">+15553334444</Dial><Say>unreached</Say></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        let out = h.input(ended(id, DialCallStatus::Completed, 12));
        let (request, url, _, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/after");
        assert_eq!(param(&params, "DialCallDuration"), Some("12"));
        let out = h.input(Input::RemoteHangup);
        assert!(matches!(out[..], [Output::Finished { .. }]), "{out:#?}");
        h.assert_finished(CallStatus::Completed);
        // The action's TwiML has no call left to drive.
        assert!(h
            .reply(request, "<Response><Say>late</Say></Response>")
            .is_empty());
    }

    #[test]
    fn caller_hangup_reported_before_dial_ended() {
        let mut h = Harness::with_document(
            r#"<Response><Dial action="/after">+15553334444</Dial><Say>unreached</Say></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        h.advance(Duration::from_secs(20));
        let out = h.input(Input::RemoteHangup);
        assert_eq!(out, vec![Output::CancelDial { id }]);
        assert_eq!(h.call.poll_timeout(), Some(h.now + DIAL_REPORT_GRACE));
        // Updates while the call is ending change nothing.
        assert!(h
            .input(Input::Redirect {
                url: "https://app.test/x".into(),
                method: HttpMethod::Post
            })
            .is_empty());
        h.advance(Duration::from_secs(1));
        let out = h.input(ended(id, DialCallStatus::Completed, 15));
        let (request, url, _, params) = fetch_in(&out);
        assert_eq!(url, "https://app.test/after");
        assert_eq!(param(&params, "CallStatus"), Some("completed"));
        assert_eq!(param(&params, "DialCallStatus"), Some("completed"));
        assert_eq!(param(&params, "DialBridged"), Some("true"));
        assert!(matches!(out.last(), Some(Output::Finished { .. })));
        h.assert_finished(CallStatus::Completed);
        assert!(h
            .reply(request, "<Response><Say>late</Say></Response>")
            .is_empty());

        // Without action: finished at once on the report.
        let mut h = Harness::with_document(
            r#"<Response><Dial>+15553334444</Dial><Say>unreached</Say></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        h.input(Input::RemoteHangup);
        let out = h.input(ended(id, DialCallStatus::Completed, 3));
        assert!(fetches(&out).is_empty(), "{out:#?}");
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn answer_on_bridge_caller_hangup_before_the_report_still_completes() {
        let mut h = Harness::with_document(
            r#"<Response><Dial answerOnBridge="true" action="/after">+15553334444</Dial></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        h.advance(Duration::from_secs(40));
        h.input(Input::RemoteHangup);
        h.advance(Duration::from_secs(1));
        let out = h.input(ended(id, DialCallStatus::Completed, 31));
        let (_, _, _, params) = fetch_in(&out);
        assert_eq!(param(&params, "CallStatus"), Some("completed"));
        assert_eq!(param(&params, "DialCallDuration"), Some("31"));
        assert_eq!(
            out.last(),
            Some(&Output::Finished {
                status: CallStatus::Completed,
                answered_at: Some(h.start + Duration::from_secs(10)),
                ended_at: h.now
            })
        );
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn caller_hangup_with_no_dial_report_finishes_after_the_grace() {
        let mut h = Harness::with_document(
            r#"<Response><Dial action="/after">+15553334444</Dial></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        h.input(Input::RemoteHangup);
        assert!(h
            .advance(DIAL_REPORT_GRACE - Duration::from_millis(1))
            .is_empty());
        let out = h.advance(Duration::from_millis(1));
        assert!(fetches(&out).is_empty(), "{out:#?}");
        h.assert_finished(CallStatus::Completed);
        assert!(h.input(ended(id, DialCallStatus::Completed, 3)).is_empty());
    }

    #[test]
    fn redirect_during_dial_cancels_it_and_skips_its_action() {
        let mut h = Harness::with_document(
            r#"<Response><Dial action="/after">+15553334444</Dial><Say>unreached</Say></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        let out = h.input(Input::Redirect {
            url: "https://other.test/next".into(),
            method: HttpMethod::Post,
        });
        assert_eq!(out[0], Output::CancelDial { id });
        let (request, url, _, params) = fetch_in(&out);
        assert_eq!(url, "https://other.test/next");
        assert_eq!(param(&params, "DialCallStatus"), None);
        // The runtime's report of the canceled dial asks for nothing.
        assert!(h.input(ended(id, DialCallStatus::Completed, 9)).is_empty());
        let out = h.reply(request, "<Response><Hangup/></Response>");
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
        assert!(!h
            .all
            .iter()
            .any(|o| matches!(o, Output::FetchWebhook { url, .. } if url.ends_with("/after"))));
    }

    #[test]
    fn twiml_update_during_an_answer_on_bridge_dial_keeps_the_answer() {
        let mut h = Harness::with_document(
            r#"<Response><Dial answerOnBridge="true">+15553334444</Dial></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        h.advance(Duration::from_secs(10));
        let out = h.input(Input::Twiml {
            document: r#"<Response><Pause length="30"/></Response>"#.into(),
        });
        // The pause answers the call (the runtime ignores a second answer).
        assert_eq!(out, vec![Output::CancelDial { id }, Output::Answer]);
        // Bridged 4 s before the update arrived: the call was answered then.
        let late = h.input(ended(id, DialCallStatus::Completed, 4));
        assert!(late.is_empty(), "{late:#?}");
        let out = h.input(Input::RemoteHangup);
        assert_eq!(
            out,
            vec![Output::Finished {
                status: CallStatus::Completed,
                answered_at: Some(h.start + Duration::from_secs(6)),
                ended_at: h.now
            }]
        );
    }

    #[test]
    fn dial_recording_reaches_the_action() {
        let mut h = Harness::with_document(
            r#"<Response><Dial record="record-from-answer-dual" recordingStatusCallback="/rsc" action="/after">+15553334444</Dial></Response>"#,
        );
        let (id, dial) = dial_in(&h.all);
        assert_eq!(dial.record, twiml::DialRecord::RecordFromAnswerDual);
        // For the runtime, which sends the recording status callback.
        assert_eq!(
            dial.recording_status_callback.as_deref(),
            Some("https://app.test/rsc")
        );
        let sid: RecordingSid = "RE0123456789abcdef0123456789abcdef"
            .parse()
            .expect("valid SID");
        let url = format!(
            "https://dialtone.test/2010-04-01/Accounts/{}/Recordings/{sid}",
            h.call.config().account_sid
        );
        let out = h.input(Input::DialEnded {
            id,
            outcome: DialOutcome {
                status: DialCallStatus::Completed,
                dial_call_sid: Some(DIALED.parse().expect("valid SID")),
                duration: Duration::from_secs(30),
                recording: Some(DialRecording {
                    sid,
                    url: url.clone(),
                    duration: Duration::from_millis(29_400),
                }),
                params: Vec::new(),
            },
        });
        let (request, action_url, _, params) = fetch_in(&out);
        assert_eq!(action_url, "https://app.test/after");
        assert_eq!(param(&params, "RecordingUrl"), Some(url.as_str()));
        assert_eq!(param(&params, "RecordingSid"), Some(sid.as_str()));
        assert_eq!(param(&params, "RecordingDuration"), Some("29"));
        assert_eq!(param(&params, "DialCallDuration"), Some("30"));
        assert_eq!(param(&params, "DialBridged"), Some("true"));
        let out = h.reply(request, "<Response/>");
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn dial_recording_without_action_requests_nothing() {
        let mut h = Harness::with_document(
            r#"<Response><Dial record="true" recordingStatusCallback="https://cb.test/r">+15553334444</Dial></Response>"#,
        );
        let (id, _) = dial_in(&h.all);
        let out = h.input(Input::DialEnded {
            id,
            outcome: DialOutcome {
                status: DialCallStatus::Completed,
                dial_call_sid: None,
                duration: Duration::from_secs(5),
                recording: Some(DialRecording {
                    sid: "RE0123456789abcdef0123456789abcdef"
                        .parse()
                        .expect("valid SID"),
                    url: "https://dialtone.test/rec".into(),
                    duration: Duration::from_secs(5),
                }),
                params: Vec::new(),
            },
        });
        assert!(fetches(&out).is_empty(), "{out:#?}");
        assert_eq!(out[0], Output::Hangup, "{out:#?}");
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn dial_warnings_are_notified_and_the_dial_runs() {
        let mut h = Harness::new(config());
        let (id, ..) = h.fetch();
        let out = h.reply(
            id,
            r#"<Response><Dial timeout="0" record="maybe">+15553334444</Dial></Response>"#,
        );
        assert!(
            matches!(&out[0], Output::Notify { code: 13212, message } if message.contains("timeout")),
            "{out:#?}"
        );
        assert!(
            matches!(&out[1], Output::Notify { code: 13217, .. }),
            "{out:#?}"
        );
        let (_, dial) = dial_in(&out);
        assert_eq!(dial.timeout, 30);
        assert_eq!(dial.record, twiml::DialRecord::DoNotRecord);
    }

    #[test]
    fn dial_target_with_a_bad_url_is_reported_and_dialed_without_it() {
        let h = Harness::with_document(
            r#"<Response><Dial><Number url="ftp://x.test/w" statusCallback="/ok">+15553334444</Number></Dial></Response>"#,
        );
        assert!(
            h.all
                .iter()
                .any(|o| matches!(o, Output::Notify { code: 11100, .. })),
            "{:#?}",
            h.all
        );
        let (_, dial) = dial_in(&h.all);
        assert_eq!(dial.targets[0].url, None);
        assert_eq!(
            dial.targets[0].status_callback.as_deref(),
            Some("https://app.test/ok")
        );
    }

    #[test]
    fn outbound_call_dials_without_answering() {
        let mut cfg = config();
        cfg.direction = CallDirection::OutboundApi;
        cfg.twiml = Some("<Response><Dial>client:bob</Dial></Response>".into());
        let mut h = Harness::new(cfg);
        let out = h.drain();
        let (id, dial) = dial_in(&out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(
            dial.targets[0].kind,
            twiml::DialKind::Number("client:bob".into())
        );
        let out = h.input(ended(id, DialCallStatus::Failed, 0));
        assert_eq!(out[0], Output::Hangup);
        h.assert_finished(CallStatus::Completed);
    }

    // ---- <Enqueue> ----

    fn enqueue_in(out: &[Output]) -> (u64, twiml::Enqueue) {
        let found: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Enqueue { id, enqueue } => Some((*id, enqueue.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "{out:#?}");
        found.into_iter().next().expect("length checked")
    }

    const QUEUE: &str = "QU0123456789abcdef0123456789abcdef";

    fn left(id: u64, result: QueueResult, waited: u64) -> Input {
        Input::EnqueueEnded {
            id,
            outcome: EnqueueOutcome {
                result,
                queue_sid: Some(QUEUE.parse().expect("valid SID")),
                queue_time: Duration::from_secs(waited),
            },
        }
    }

    #[test]
    fn enqueue_answers_and_resolves_its_urls_then_requests_the_action() {
        let mut h = Harness::with_document(
            r#"<Response><Enqueue action="/after" waitUrl="hold.xml" waitUrlMethod="GET">support</Enqueue><Say>never</Say></Response>"#,
        );
        assert!(h.all.contains(&Output::Answer));
        let (id, enqueue) = enqueue_in(&h.all);
        assert_eq!(enqueue.name, "support");
        assert_eq!(
            enqueue.wait_url.as_deref(),
            Some("https://app.test/voice/hold.xml")
        );
        assert_eq!(enqueue.action.as_deref(), Some("https://app.test/after"));
        let out = h.input(left(id, QueueResult::Bridged, 42));
        let (_, url, params) = fetches(&out).pop().expect("the action");
        assert_eq!(url, "https://app.test/after");
        assert_eq!(param(&params, "QueueResult"), Some("bridged"));
        assert_eq!(param(&params, "QueueSid"), Some(QUEUE));
        assert_eq!(param(&params, "QueueTime"), Some("42"));
    }

    #[test]
    fn enqueue_without_action_goes_on_and_queue_full_has_no_queue_sid() {
        let mut h = Harness::with_document(
            "<Response><Enqueue>support</Enqueue><Say>busy</Say></Response>",
        );
        let (id, _) = enqueue_in(&h.all);
        let out = h.input(Input::EnqueueEnded {
            id,
            outcome: EnqueueOutcome {
                result: QueueResult::QueueFull,
                queue_sid: None,
                queue_time: Duration::ZERO,
            },
        });
        assert!(fetches(&out).is_empty());
        assert!(
            matches!(&out[0], Output::Play { source: MediaSource::Tts { text, .. }, .. } if text == "busy")
        );

        let mut h = Harness::with_document(
            r#"<Response><Enqueue action="/full">support</Enqueue></Response>"#,
        );
        let (id, _) = enqueue_in(&h.all);
        let out = h.input(Input::EnqueueEnded {
            id,
            outcome: EnqueueOutcome {
                result: QueueResult::QueueFull,
                queue_sid: None,
                queue_time: Duration::ZERO,
            },
        });
        let (_, _, params) = fetches(&out).pop().expect("the action");
        assert_eq!(param(&params, "QueueResult"), Some("queue-full"));
        assert_eq!(param(&params, "QueueSid"), None);
    }

    #[test]
    fn caller_hanging_up_in_the_queue_leaves_it_and_reports_hangup() {
        let mut h = Harness::with_document(
            r#"<Response><Enqueue action="/after">support</Enqueue></Response>"#,
        );
        let (id, _) = enqueue_in(&h.all);
        let out = h.input(Input::RemoteHangup);
        assert_eq!(out, vec![Output::LeaveQueue { id }]);
        let out = h.input(left(id, QueueResult::Hangup, 7));
        let (_, _, params) = fetches(&out).pop().expect("the action, not waited on");
        assert_eq!(param(&params, "QueueResult"), Some("hangup"));
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn hangup_in_the_wait_document_hangs_up_after_the_action_request() {
        let mut h = Harness::with_document(
            r#"<Response><Enqueue action="/after">support</Enqueue><Say>never</Say></Response>"#,
        );
        let (id, _) = enqueue_in(&h.all);
        let out = h.input(left(id, QueueResult::Hangup, 3));
        assert_eq!(fetches(&out).len(), 1);
        assert!(out.contains(&Output::Hangup), "{out:?}");
        h.assert_finished(CallStatus::Completed);
    }

    #[test]
    fn a_live_update_takes_the_call_out_of_the_queue() {
        let mut h = Harness::with_document(
            r#"<Response><Enqueue action="/after">support</Enqueue></Response>"#,
        );
        let (id, _) = enqueue_in(&h.all);
        let out = h.input(Input::Redirect {
            url: "https://app.test/agent-free".into(),
            method: HttpMethod::Post,
        });
        assert_eq!(out[0], Output::LeaveQueue { id });
        let (redirect_id, url, _) = fetches(&out).pop().expect("the new document");
        assert_eq!(url, "https://app.test/agent-free");
        // The queue's late report requests the action without waiting on it.
        let out = h.input(left(id, QueueResult::Redirected, 9));
        let (_, url, params) = fetches(&out).pop().expect("the action");
        assert_eq!(url, "https://app.test/after");
        assert_eq!(param(&params, "QueueResult"), Some("redirected"));
        let out = h.reply(redirect_id, "<Response><Say>hello</Say></Response>");
        assert!(
            matches!(&out[0], Output::Play { .. }),
            "the update's document drives the call"
        );
    }
}
