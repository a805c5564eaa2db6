//! What a caller hears while waiting: the `waitUrl` of `<Enqueue>` and `<Conference>`, a
//! participant's `HoldUrl`, or Dialtone's own hold music.
//!
//! A [`WaitLoop`] fetches its URL, plays the document's `<Play>`, `<Say>` and `<Pause>` in
//! order, follows `<Redirect>` (which becomes the URL it loops on), and when the document ends
//! fetches it again, as Twilio does, with fresh parameters ([`WaitLoop::set_params`]: a queued
//! caller's `QueuePosition` changes while it waits). An audio reply (`Content-Type: audio/*`)
//! is played as one `<Play>` of the URL. `<Leave>` and `<Hangup>` are reported, for the
//! queue's caller to act on, where the loop allows them (a queue's waitUrl; a conference's
//! does not). Without a URL it plays the default hold music ([`MediaSource::HoldMusic`]) until
//! stopped. A failed fetch or an unreadable document ends a queue's loop with
//! [`WaitOutput::Failed`] (Twilio's `QueueResult=error`); any other loop falls back to the
//! default music, so the caller always hears that the line is alive. Verbs a wait document may not hold are reported (Twilio 12100 warning
//! text) and skipped.
//!
//! Sans-IO like [`crate::Call`]: the runtime feeds fetch results, playback ends and timeouts,
//! and drains [`WaitLoop::poll_output`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use twiml::Verb;
use url::Url;

use crate::{HttpMethod, MediaSource, WebhookFailure, WebhookReply};

/// A document with no media is fetched again after this long, not at once, so an empty
/// `<Response/>` does not become a request loop.
pub const EMPTY_DOCUMENT_PAUSE: Duration = Duration::from_secs(1);

/// Most redirects in a row without media before the loop gives up on the URL and plays the
/// default music.
const MAX_REDIRECTS: u32 = 10;

/// What a [`WaitLoop`] asks of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutput {
    Fetch {
        request_id: u64,
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
    },
    Play {
        id: u64,
        source: MediaSource,
        loops: u32,
    },
    StopPlayback,
    /// `<Leave>` in a queue's wait document: the caller leaves the queue.
    Leave,
    /// `<Hangup>` in a queue's wait document.
    Hangup,
    /// A problem worth recording against the call (a failed fetch 11200, a bad document 12100).
    Notify {
        code: u32,
        message: String,
    },
    /// A loop made with [`WaitLoop::once`] played its document to the end (or could not).
    Done,
    /// A queue's wait document could not be fetched or read: the caller leaves the queue with
    /// `QueueResult=error`, as on Twilio (a conference's falls back to the default music).
    Failed,
}

#[derive(Debug)]
enum Step {
    Idle,
    Fetching(u64),
    Playing(u64),
    Pausing(Instant),
    /// Playing the default music until stopped.
    Music(u64),
    Stopped,
}

/// One waiting caller's music. See the module docs.
#[derive(Debug)]
pub struct WaitLoop {
    url: Option<String>,
    method: HttpMethod,
    params: Vec<(String, String)>,
    /// `<Leave>` and `<Hangup>` are allowed (a queue's waitUrl).
    queue_verbs: bool,
    /// Play the document once, then report `Done` (a `<Queue url>` for the dequeued caller).
    once: bool,
    step: Step,
    verbs: VecDeque<Verb>,
    document_url: String,
    redirects: u32,
    media_in_document: bool,
    /// A document was run (the first fetch is never delayed).
    fetched: bool,
    next_id: u64,
    outputs: VecDeque<WaitOutput>,
}

impl WaitLoop {
    /// Starts waiting: fetches `url` (absolute), or plays the default music when `None`.
    /// `first_id` starts the ids of requests and playbacks (the owner's id space, so ids
    /// never clash with its own).
    pub fn new(
        now: Instant,
        url: Option<String>,
        method: HttpMethod,
        params: Vec<(String, String)>,
        queue_verbs: bool,
        first_id: u64,
    ) -> WaitLoop {
        let mut wait = WaitLoop {
            document_url: url.clone().unwrap_or_default(),
            url,
            method,
            params,
            queue_verbs,
            once: false,
            step: Step::Idle,
            verbs: VecDeque::new(),
            redirects: 0,
            media_in_document: false,
            fetched: false,
            next_id: first_id.max(1),
            outputs: VecDeque::new(),
        };
        wait.next(now);
        wait
    }

    /// Plays the document at `url` once (no music on failure) and reports [`WaitOutput::Done`].
    pub fn once(
        now: Instant,
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
        first_id: u64,
    ) -> WaitLoop {
        let mut wait = WaitLoop::new(now, None, method, params, false, first_id);
        // `new` without a URL started the music: start over as a one-shot fetch.
        wait.outputs.clear();
        wait.step = Step::Idle;
        wait.once = true;
        wait.url = Some(url.clone());
        wait.document_url = url;
        wait.next(now);
        wait
    }

    /// Parameters for the next fetch (the current ones are kept until then).
    pub fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }

    /// The id after the last one used, for the owner to continue from.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    pub fn is_stopped(&self) -> bool {
        matches!(self.step, Step::Stopped)
    }

    /// Stops: the playback is stopped and nothing more is asked for.
    pub fn stop(&mut self) {
        if matches!(self.step, Step::Playing(_) | Step::Music(_)) {
            self.outputs.push_back(WaitOutput::StopPlayback);
        }
        self.step = Step::Stopped;
        self.verbs.clear();
    }

    pub fn poll_output(&mut self) -> Option<WaitOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.step {
            Step::Pausing(until) => Some(until),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Step::Pausing(until) = self.step {
            if until <= now {
                self.step = Step::Idle;
                self.next(now);
            }
        }
    }

    pub fn handle_playback_done(&mut self, now: Instant, id: u64) {
        match self.step {
            Step::Playing(p) if p == id => {
                self.step = Step::Idle;
                self.next(now);
            }
            // Looping "until stopped" never ends by itself; a report means it could not play.
            Step::Music(p) if p == id => self.step = Step::Idle,
            _ => {}
        }
    }

    pub fn handle_webhook(
        &mut self,
        now: Instant,
        request_id: u64,
        result: Result<WebhookReply, WebhookFailure>,
    ) {
        if !matches!(self.step, Step::Fetching(r) if r == request_id) {
            return;
        }
        self.step = Step::Idle;
        self.fetched = true;
        let url = self.url.clone().unwrap_or_default();
        let reply = match result {
            Ok(reply) => reply,
            Err(failure) => {
                self.notify(11200, format!("HTTP retrieval failure: {url}: {failure}"));
                return self.unusable();
            }
        };
        let is_audio = reply
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("audio/"));
        if is_audio {
            self.document_url = url.clone();
            self.media_in_document = true;
            self.verbs = VecDeque::from([Verb::Play(twiml::Play {
                url,
                loop_: 1,
                digits: None,
            })]);
            return self.next(now);
        }
        match twiml::parse(&reply.body) {
            Ok(document) => {
                self.document_url = url;
                self.media_in_document = false;
                self.verbs = document.verbs.into();
                self.next(now);
            }
            Err(e) => {
                self.notify(e.code(), format!("Document parse failure: {url}: {e}"));
                self.unusable();
            }
        }
    }

    /// Runs verbs until one waits; at the end of the document, fetches the URL again.
    fn next(&mut self, now: Instant) {
        while matches!(self.step, Step::Idle) {
            let Some(verb) = self.verbs.pop_front() else {
                self.refetch(now);
                return;
            };
            self.execute(now, verb);
        }
    }

    fn refetch(&mut self, now: Instant) {
        if self.once && self.fetched {
            self.step = Step::Stopped;
            self.outputs.push_back(WaitOutput::Done);
            return;
        }
        let Some(url) = self.url.clone() else {
            return self.music();
        };
        if self.fetched && !self.media_in_document {
            // The document just run had no media: wait a little before asking again.
            self.media_in_document = true;
            self.step = Step::Pausing(now + EMPTY_DOCUMENT_PAUSE);
            return;
        }
        let request_id = self.take_id();
        self.outputs.push_back(WaitOutput::Fetch {
            request_id,
            url,
            method: self.method,
            params: self.params.clone(),
        });
        self.step = Step::Fetching(request_id);
    }

    fn execute(&mut self, now: Instant, verb: Verb) {
        match verb {
            Verb::Play(play) if play.url.is_empty() => {}
            Verb::Play(play) => match self.resolve(&play.url) {
                Ok(url) => self.play(MediaSource::Url(url), play.loop_),
                Err(message) => self.notify(11100, message),
            },
            Verb::Say(say) if say.text.is_empty() => {}
            Verb::Say(say) => self.play(
                MediaSource::Tts {
                    text: say.text,
                    voice: say.voice,
                    language: say.language,
                },
                say.loop_,
            ),
            Verb::Pause(pause) if pause.length == 0 => {}
            Verb::Pause(pause) => {
                self.media_in_document = true;
                self.redirects = 0;
                self.step = Step::Pausing(now + Duration::from_secs(u64::from(pause.length)));
            }
            Verb::Redirect(redirect) => {
                self.redirects += 1;
                if self.redirects > MAX_REDIRECTS {
                    self.notify(
                        12100,
                        format!("More than {MAX_REDIRECTS} <Redirect>s without media in a wait document"),
                    );
                    return self.music();
                }
                match self.resolve(&redirect.url) {
                    Ok(url) => {
                        self.url = Some(url);
                        self.method = redirect.method.into();
                        // A redirect is not an empty document: fetch at once.
                        self.media_in_document = true;
                        self.verbs.clear();
                        self.refetch(now);
                    }
                    Err(message) => {
                        self.notify(11100, message);
                        self.music();
                    }
                }
            }
            Verb::Leave if self.queue_verbs => {
                self.outputs.push_back(WaitOutput::Leave);
                self.step = Step::Stopped;
            }
            Verb::Hangup if self.queue_verbs => {
                self.outputs.push_back(WaitOutput::Hangup);
                self.step = Step::Stopped;
            }
            other => self.notify(
                12100,
                format!(
                    "<{}> is not allowed in a wait document ({}); skipped",
                    other.name(),
                    self.document_url
                ),
            ),
        }
    }

    fn play(&mut self, source: MediaSource, loops: u32) {
        let id = self.take_id();
        self.media_in_document = true;
        self.redirects = 0;
        // A loop of 0 means "until interrupted": the wait goes on while it plays.
        self.outputs
            .push_back(WaitOutput::Play { id, source, loops });
        self.step = Step::Playing(id);
    }

    /// The document could not be had: a queue's caller leaves the queue, anyone else hears
    /// the default music.
    fn unusable(&mut self) {
        if self.queue_verbs {
            self.step = Step::Stopped;
            self.verbs.clear();
            self.outputs.push_back(WaitOutput::Failed);
        } else {
            self.music();
        }
    }

    /// The default hold music, until stopped (a one-shot loop just ends).
    fn music(&mut self) {
        if self.once {
            self.step = Step::Stopped;
            self.outputs.push_back(WaitOutput::Done);
            return;
        }
        let id = self.take_id();
        self.verbs.clear();
        self.outputs.push_back(WaitOutput::Play {
            id,
            source: MediaSource::HoldMusic,
            loops: 0,
        });
        self.step = Step::Music(id);
    }

    fn resolve(&self, url: &str) -> Result<String, String> {
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

    fn notify(&mut self, code: u32, message: String) {
        self.outputs.push_back(WaitOutput::Notify { code, message });
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://app.test/wait";

    fn drain(w: &mut WaitLoop) -> Vec<WaitOutput> {
        std::iter::from_fn(|| w.poll_output()).collect()
    }

    fn reply(body: &str) -> Result<WebhookReply, WebhookFailure> {
        Ok(WebhookReply {
            body: body.to_owned(),
            content_type: Some("text/xml".into()),
        })
    }

    fn fetch_id(out: &[WaitOutput]) -> u64 {
        out.iter()
            .find_map(|o| match o {
                WaitOutput::Fetch { request_id, .. } => Some(*request_id),
                _ => None,
            })
            .expect("a fetch")
    }

    fn play_id(out: &[WaitOutput]) -> u64 {
        out.iter()
            .find_map(|o| match o {
                WaitOutput::Play { id, .. } => Some(*id),
                _ => None,
            })
            .expect("a play")
    }

    fn params(position: u32) -> Vec<(String, String)> {
        vec![("QueuePosition".into(), position.to_string())]
    }

    #[test]
    fn the_document_loops_with_fresh_parameters() {
        let t0 = Instant::now();
        let mut w = WaitLoop::new(t0, Some(URL.into()), HttpMethod::Post, params(3), true, 100);
        let out = drain(&mut w);
        assert!(
            matches!(&out[..], [WaitOutput::Fetch { url, params, .. }] if url == URL && params == &self::params(3))
        );
        w.handle_webhook(
            t0,
            fetch_id(&out),
            reply("<Response><Say>Please hold</Say><Play>music.mp3</Play></Response>"),
        );
        let out = drain(&mut w);
        assert!(
            matches!(&out[..], [WaitOutput::Play { source: MediaSource::Tts { text, .. }, loops: 1, .. }] if text == "Please hold")
        );
        w.handle_playback_done(t0, play_id(&out));
        let out = drain(&mut w);
        assert!(
            matches!(&out[..], [WaitOutput::Play { source: MediaSource::Url(u), .. }] if u == "http://app.test/music.mp3")
        );
        w.set_params(params(2));
        w.handle_playback_done(t0, play_id(&out));
        let out = drain(&mut w);
        assert!(
            matches!(&out[..], [WaitOutput::Fetch { params, .. }] if params == &self::params(2)),
            "the end of the document fetches it again with the new position: {out:?}"
        );
    }

    #[test]
    fn leave_and_hangup_are_reported_only_for_queues() {
        let t0 = Instant::now();
        let mut w = WaitLoop::new(t0, Some(URL.into()), HttpMethod::Post, Vec::new(), true, 1);
        let id = fetch_id(&drain(&mut w));
        w.handle_webhook(
            t0,
            id,
            reply("<Response><Leave/><Say>never</Say></Response>"),
        );
        assert_eq!(drain(&mut w), vec![WaitOutput::Leave]);
        assert!(w.is_stopped());

        let mut w = WaitLoop::new(t0, Some(URL.into()), HttpMethod::Post, Vec::new(), false, 1);
        let id = fetch_id(&drain(&mut w));
        w.handle_webhook(
            t0,
            id,
            reply("<Response><Hangup/><Pause length=\"2\"/></Response>"),
        );
        let out = drain(&mut w);
        assert!(
            matches!(&out[..], [WaitOutput::Notify { code: 12100, .. }]),
            "{out:?}"
        );
        assert_eq!(w.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn failures_and_no_url_fall_back_to_the_default_music() {
        let t0 = Instant::now();
        let mut w = WaitLoop::new(t0, None, HttpMethod::Post, Vec::new(), true, 1);
        assert!(matches!(
            &drain(&mut w)[..],
            [WaitOutput::Play {
                source: MediaSource::HoldMusic,
                loops: 0,
                ..
            }]
        ));

        // A queue's unusable document takes the caller out of the queue.
        let mut w = WaitLoop::new(t0, Some(URL.into()), HttpMethod::Get, Vec::new(), true, 1);
        let id = fetch_id(&drain(&mut w));
        w.handle_webhook(t0, id, reply("<Response><Say>unclosed"));
        let out = drain(&mut w);
        assert_eq!(out.last(), Some(&WaitOutput::Failed), "{out:?}");

        let mut w = WaitLoop::new(t0, Some(URL.into()), HttpMethod::Get, Vec::new(), false, 1);
        let id = fetch_id(&drain(&mut w));
        w.handle_webhook(t0, id, Err(WebhookFailure::Status(500)));
        let out = drain(&mut w);
        assert!(matches!(&out[0], WaitOutput::Notify { code: 11200, .. }));
        assert!(matches!(
            &out[1],
            WaitOutput::Play {
                source: MediaSource::HoldMusic,
                ..
            }
        ));
        w.stop();
        assert_eq!(drain(&mut w), vec![WaitOutput::StopPlayback]);
    }

    #[test]
    fn an_empty_document_is_not_fetched_in_a_tight_loop() {
        let t0 = Instant::now();
        let mut w = WaitLoop::new(t0, Some(URL.into()), HttpMethod::Post, Vec::new(), true, 1);
        let id = fetch_id(&drain(&mut w));
        w.handle_webhook(t0, id, reply("<Response/>"));
        assert!(drain(&mut w).is_empty());
        assert_eq!(w.poll_timeout(), Some(t0 + EMPTY_DOCUMENT_PAUSE));
        w.handle_timeout(t0 + EMPTY_DOCUMENT_PAUSE);
        assert!(matches!(&drain(&mut w)[..], [WaitOutput::Fetch { .. }]));
    }

    #[test]
    fn an_audio_reply_plays_the_url_and_redirects_change_the_loop() {
        let t0 = Instant::now();
        let mut w = WaitLoop::new(t0, Some(URL.into()), HttpMethod::Post, Vec::new(), false, 1);
        let id = fetch_id(&drain(&mut w));
        w.handle_webhook(
            t0,
            id,
            reply("<Response><Redirect method=\"GET\">/other</Redirect></Response>"),
        );
        let out = drain(&mut w);
        assert!(
            matches!(&out[..], [WaitOutput::Fetch { url, method: HttpMethod::Get, .. }] if url == "http://app.test/other")
        );
        let audio = Ok(WebhookReply {
            body: String::new(),
            content_type: Some("audio/mpeg".into()),
        });
        w.handle_webhook(t0, fetch_id(&out), audio);
        let out = drain(&mut w);
        assert!(
            matches!(&out[..], [WaitOutput::Play { source: MediaSource::Url(u), .. }] if u == "http://app.test/other")
        );
        w.handle_playback_done(t0, play_id(&out));
        assert!(
            matches!(&drain(&mut w)[..], [WaitOutput::Fetch { url, .. }] if url == "http://app.test/other")
        );
    }

    #[test]
    fn a_one_shot_document_plays_once_then_reports_done() {
        let t0 = Instant::now();
        let mut w = WaitLoop::once(t0, URL.into(), HttpMethod::Post, Vec::new(), 1);
        let id = fetch_id(&drain(&mut w));
        w.handle_webhook(
            t0,
            id,
            reply("<Response><Say>You are next</Say></Response>"),
        );
        let out = drain(&mut w);
        w.handle_playback_done(t0, play_id(&out));
        assert_eq!(drain(&mut w), vec![WaitOutput::Done]);
        assert!(w.is_stopped());

        let mut w = WaitLoop::once(t0, URL.into(), HttpMethod::Post, Vec::new(), 1);
        let id = fetch_id(&drain(&mut w));
        w.handle_webhook(t0, id, Err(WebhookFailure::Timeout));
        let out = drain(&mut w);
        assert_eq!(out.last(), Some(&WaitOutput::Done), "{out:?}");
    }
}
