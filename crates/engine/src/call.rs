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
    CallConfig, HttpMethod, Input, MediaSource, Output, RecordStop, RejectReason, WebhookReply,
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
enum State {
    /// Between verbs: `run` picks the next one.
    Ready,
    Fetching(Fetch),
    Media(Prompt),
    Gathering(Box<GatherRun>),
    Beeping { id: u64, record: Record },
    Recording(Box<RecordRun>),
    /// Playing [`APPLICATION_ERROR_MESSAGE`]; hang up when it ends.
    AppError { id: u64 },
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
            config,
        };
        let params = call.base_params();
        let (url, method) = (call.config.voice_url.clone(), call.config.voice_method);
        call.fetch(url, method, params, true);
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
            State::Recording(run) => {
                if run.hung_up_at.is_some_and(|t| t + RECORDING_REPORT_GRACE <= now) {
                    // The recording was never reported: there is no duration or file to give
                    // the action, so the request is skipped.
                    self.finish(now);
                }
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
                let State::Fetching(fetch) = &self.state else { return };
                if fetch.request_id != request_id {
                    return;
                }
                let State::Fetching(fetch) = std::mem::replace(&mut self.state, State::Ready)
                else {
                    unreachable!("matched Fetching just above")
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
        }
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
        let State::Recording(run) = &self.state else { return };
        if run.id != id {
            return;
        }
        let State::Recording(run) = std::mem::replace(&mut self.state, State::Ready) else {
            unreachable!("matched Recording just above")
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
        params.push(("RecordingUrl".into(), recording_url));
        params.push(("RecordingSid".into(), run.sid.to_string()));
        params.push(("RecordingDuration".into(), seconds.to_string()));
        if let Some(d) = digits {
            params.push(("Digits".into(), d));
        }
        let action = run.record.action.clone();
        let method = run.record.method.into();
        if hung_up {
            // Twilio still reports the recording; the reply has no call left to drive.
            match self.resolve(action.as_deref()) {
                Ok(url) => {
                    let request_id = self.take_id();
                    self.outputs.push_back(Output::FetchWebhook { request_id, url, method, params });
                }
                Err(message) => self.notify(ERR_URL, message),
            }
            self.finish(now);
            return;
        }
        self.request_action(now, action.as_deref(), method, params);
    }

    fn handle_remote_hangup(&mut self, now: Instant) {
        self.status = self.hangup_status();
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
        if let Some(verb) = document.verbs.iter().find(|v| matches!(v, Verb::Unsupported { .. })) {
            let message = format!(
                "Document parse failure: {}: <{}> is not supported by this server",
                fetch.url,
                verb.name()
            );
            return self.document_failed(now, fetch, ERR_DOCUMENT, message);
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

    fn fetch(&mut self, url: String, method: HttpMethod, params: Vec<(String, String)>, fallback_allowed: bool) {
        let request_id = self.take_id();
        self.outputs.push_back(Output::FetchWebhook {
            request_id,
            url: url.clone(),
            method,
            params: params.clone(),
        });
        self.state = State::Fetching(Fetch { request_id, url, params, fallback_allowed });
    }

    /// Request `action` (default: the current document) and run its reply instead of the rest
    /// of this document.
    fn request_action(&mut self, now: Instant, action: Option<&str>, method: HttpMethod, params: Vec<(String, String)>) {
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

    /// Resolve a URL from the markup against the current document's URL.
    fn resolve(&self, url: Option<&str>) -> Result<String, String> {
        let Some(url) = url else { return Ok(self.document_url.clone()) };
        let resolved = match Url::parse(&self.document_url) {
            Ok(base) => base.join(url),
            Err(_) => Url::parse(url),
        };
        match resolved {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u.into()),
            Ok(u) => Err(format!("Invalid URL {url:?}: scheme {} is not http(s)", u.scheme())),
            Err(e) => Err(format!("Invalid URL {url:?}: {e}")),
        }
    }

    fn base_params(&self) -> Vec<(String, String)> {
        let c = &self.config;
        vec![
            ("CallSid".into(), c.call_sid.to_string()),
            ("AccountSid".into(), c.account_sid.to_string()),
            ("From".into(), c.from.clone()),
            ("To".into(), c.to.clone()),
            ("Caller".into(), c.from.clone()),
            ("Called".into(), c.to.clone()),
            ("CallStatus".into(), self.status.as_str().to_owned()),
            ("Direction".into(), c.direction.as_str().to_owned()),
            ("ApiVersion".into(), API_VERSION.to_owned()),
        ]
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
                    self.outputs.push_back(Output::Play { id, source: MediaSource::Beep, loops: 1 });
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
            Verb::Say(say) => {
                let id = self.take_id();
                self.outputs.push_back(Output::Play {
                    id,
                    source: MediaSource::Tts { text: say.text, voice: say.voice, language: say.language },
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
                    self.outputs.push_back(Output::Play { id, source: MediaSource::Url(url), loops: play.loop_ });
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
            let State::Gathering(run) = &mut self.state else { return };
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
        params.push(("FinishedOnKey".into(), finished_on_key.map(String::from).unwrap_or_default()));
        self.request_action(now, run.gather.action.as_deref(), run.gather.method.into(), params);
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

fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}
