//! From text to [`Document`]: quick-xml builds a small element tree, then each verb is read
//! from its element with Twilio's defaults.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::verb::*;
use crate::TwimlError;

/// Deeper nesting than any real TwiML (SSML inside `<Say>` inside `<Gather>` is four levels);
/// the limit keeps the recursive text flattening bounded on hostile input.
const MAX_DEPTH: usize = 32;

/// Verbs Twilio has that this crate does not type yet; they parse to [`Verb::Unsupported`].
const UNSUPPORTED_VERBS: &[&str] = &[
    "Connect", "Start", "Stop", "Refer", "Pay", "Echo", "Sms", "Message",
];

#[derive(Debug)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) children: Vec<Node>,
}

#[derive(Debug)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
}

/// Parse a TwiML voice document.
pub fn parse(text: &str) -> Result<Document, TwimlError> {
    let root = read_tree(text)?;
    if root.name != "Response" {
        return Err(TwimlError::Root { found: root.name });
    }
    let mut verbs = Vec::new();
    let mut warnings = Vec::new();
    for node in &root.children {
        match node {
            Node::Element(el) if el.name == "Dial" => verbs.push(read_dial(el, &mut warnings)?),
            Node::Element(el) => verbs.push(read_verb(el)?),
            Node::Text(t) => reject_text(t, "Response")?,
        }
    }
    Ok(Document { verbs, warnings })
}

fn xml_error(reader: &Reader<&[u8]>, reason: impl ToString) -> TwimlError {
    TwimlError::Xml {
        position: reader.error_position(),
        reason: reason.to_string(),
    }
}

pub(crate) fn read_tree(text: &str) -> Result<Element, TwimlError> {
    let mut reader = Reader::from_str(text);
    // Mismatched end tags are errors (the default), and duplicate attributes are checked when
    // the attributes are read below.
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| xml_error(&reader, e))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(xml_error(&reader, "content after the root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(xml_error(&reader, "elements nested too deeply"));
                }
                let el = open_element(&reader, &start)?;
                stack.push(el);
            }
            Event::Empty(start) => {
                if root.is_some() {
                    return Err(xml_error(&reader, "content after the root element"));
                }
                let el = open_element(&reader, &start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                // quick-xml has already checked that the name matches the open element.
                let Some(el) = stack.pop() else {
                    return Err(xml_error(&reader, "end tag without a start tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| xml_error(&reader, e))?;
                push_text(&reader, &mut stack, root.is_some(), &s)?;
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| xml_error(&reader, e))?;
                push_text(&reader, &mut stack, root.is_some(), &s)?;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(xml_error(
            &reader,
            format!("<{}> is never closed", open.name),
        ));
    }
    root.ok_or(TwimlError::Empty)
}

fn push_text(
    reader: &Reader<&[u8]>,
    stack: &mut [Element],
    after_root: bool,
    s: &str,
) -> Result<(), TwimlError> {
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(Node::Text(s.to_owned()));
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None if after_root => Err(xml_error(reader, "text after the root element")),
        None => Err(xml_error(reader, "text before the root element")),
    }
}

fn open_element(reader: &Reader<&[u8]>, start: &BytesStart<'_>) -> Result<Element, TwimlError> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| xml_error(reader, e))?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .unescape_value()
            .map_err(|e| xml_error(reader, e))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

pub(crate) fn reject_text(t: &str, verb: &str) -> Result<(), TwimlError> {
    if t.trim().is_empty() {
        Ok(())
    } else {
        Err(TwimlError::Content {
            verb: verb.to_owned(),
            reason: format!("unexpected text {:?}", t.trim()),
        })
    }
}

/// For verbs that take neither text nor nested elements.
fn no_content(el: &Element) -> Result<(), TwimlError> {
    for node in &el.children {
        match node {
            Node::Text(t) => reject_text(t, &el.name)?,
            Node::Element(child) => {
                return Err(TwimlError::UnexpectedElement {
                    name: child.name.clone(),
                    parent: el.name.clone(),
                })
            }
        }
    }
    Ok(())
}

/// All text inside `el`, SSML elements flattened; used for `<Say>`.
fn flatten_text(el: &Element, out: &mut String) {
    for node in &el.children {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Element(child) => flatten_text(child, out),
        }
    }
}

/// Text content of a verb that takes a URL and no elements (`Play`, `Redirect`).
pub(crate) fn url_content(el: &Element) -> Result<String, TwimlError> {
    let mut out = String::new();
    for node in &el.children {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Element(child) => {
                return Err(TwimlError::UnexpectedElement {
                    name: child.name.clone(),
                    parent: el.name.clone(),
                })
            }
        }
    }
    Ok(out.trim().to_owned())
}

/// Attribute reader for one element.
pub(crate) struct Attrs<'a> {
    pub(crate) el: &'a Element,
}

impl<'a> Attrs<'a> {
    pub(crate) fn raw(&self, name: &str) -> Option<&'a str> {
        self.el
            .attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn invalid(&self, name: &str, value: &str, reason: &str) -> TwimlError {
        TwimlError::Attribute {
            verb: self.el.name.clone(),
            attribute: name.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.raw(name).map(|v| v.trim().to_owned())
    }

    /// A URL attribute; an empty value counts as absent, as Twilio treats `action=""`.
    pub(crate) fn url(&self, name: &str) -> Option<String> {
        self.string(name).filter(|v| !v.is_empty())
    }

    fn uint(&self, name: &str, default: u32, min: u32) -> Result<u32, TwimlError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n >= min => Ok(n),
                Ok(_) => Err(self.invalid(name, v, &format!("must be at least {min}"))),
                Err(_) => Err(self.invalid(name, v, "not a non-negative integer")),
            },
        }
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, TwimlError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) if v.trim().eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.trim().eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(self.invalid(name, v, "expected true or false")),
        }
    }

    pub(crate) fn method(&self, name: &str) -> Result<Method, TwimlError> {
        match self.raw(name) {
            None => Ok(Method::Post),
            Some(v) if v.trim().eq_ignore_ascii_case("GET") => Ok(Method::Get),
            Some(v) if v.trim().eq_ignore_ascii_case("POST") => Ok(Method::Post),
            Some(v) => Err(self.invalid(name, v, "expected GET or POST")),
        }
    }

    /// `trim` of `<Record>` and `<Conference>`.
    fn trim(&self) -> Result<Trim, TwimlError> {
        match self.raw("trim") {
            None => Ok(Trim::TrimSilence),
            Some(v) if v.trim() == "trim-silence" => Ok(Trim::TrimSilence),
            Some(v) if v.trim() == "do-not-trim" => Ok(Trim::DoNotTrim),
            Some(v) => Err(self.invalid("trim", v, "expected trim-silence or do-not-trim")),
        }
    }

    /// A list of callback events, lowercased, each once, in the order written; empty when
    /// the attribute is absent. Twilio's examples separate events with spaces; commas are
    /// accepted too.
    fn events(&self, name: &str, allowed: &[&str]) -> Result<Vec<String>, TwimlError> {
        let mut events: Vec<String> = Vec::new();
        let Some(v) = self.raw(name) else {
            return Ok(events);
        };
        for token in v.split(|c: char| c.is_whitespace() || c == ',') {
            if token.is_empty() {
                continue;
            }
            let token = token.to_ascii_lowercase();
            if !allowed.contains(&token.as_str()) {
                let reason = format!("events must be among {}", allowed.join(", "));
                return Err(self.invalid(name, v, &reason));
            }
            if !events.contains(&token) {
                events.push(token);
            }
        }
        Ok(events)
    }

    /// A set of DTMF keys (`0-9`, `*`, `#`), possibly empty.
    fn keys(&self, name: &str, default: &str) -> Result<String, TwimlError> {
        match self.raw(name) {
            None => Ok(default.to_owned()),
            Some(v) => {
                let v_trim = v.trim();
                if v_trim.chars().all(is_dtmf_key) {
                    Ok(v_trim.to_owned())
                } else {
                    Err(self.invalid(name, v, "keys must be among 0-9, * and #"))
                }
            }
        }
    }
}

fn is_dtmf_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

fn read_verb(el: &Element) -> Result<Verb, TwimlError> {
    let a = Attrs { el };
    match el.name.as_str() {
        "Say" => read_say(el).map(Verb::Say),
        "Play" => read_play(el).map(Verb::Play),
        "Pause" => read_pause(el).map(Verb::Pause),
        "Gather" => {
            let mut children = Vec::new();
            for node in &el.children {
                match node {
                    Node::Text(t) => reject_text(t, "Gather")?,
                    Node::Element(child) => children.push(match child.name.as_str() {
                        "Say" => Verb::Say(read_say(child)?),
                        "Play" => Verb::Play(read_play(child)?),
                        "Pause" => Verb::Pause(read_pause(child)?),
                        _ => {
                            return Err(TwimlError::UnexpectedElement {
                                name: child.name.clone(),
                                parent: "Gather".to_owned(),
                            })
                        }
                    }),
                }
            }
            let input = match a.raw("input") {
                None => GatherInput::default(),
                Some(v) => {
                    let mut input = GatherInput {
                        dtmf: false,
                        speech: false,
                    };
                    for token in v.split_whitespace() {
                        match token {
                            "dtmf" => input.dtmf = true,
                            "speech" => input.speech = true,
                            _ => {
                                return Err(a.invalid("input", v, "expected dtmf, speech or both"))
                            }
                        }
                    }
                    if !input.dtmf && !input.speech {
                        return Err(a.invalid("input", v, "expected dtmf, speech or both"));
                    }
                    input
                }
            };
            let num_digits = match a.raw("numDigits") {
                None => None,
                Some(_) => Some(a.uint("numDigits", 1, 1)?),
            };
            let finish_on_key = match a.raw("finishOnKey") {
                None => Some('#'),
                Some(v) => {
                    let keys = a.keys("finishOnKey", "#")?;
                    let mut chars = keys.chars();
                    match (chars.next(), chars.next()) {
                        (None, _) => None,
                        (Some(c), None) => Some(c),
                        (Some(_), Some(_)) => {
                            return Err(a.invalid("finishOnKey", v, "a single key or empty"))
                        }
                    }
                }
            };
            let speech_timeout = match a.raw("speechTimeout") {
                None => None,
                Some(v) if v.trim() == "auto" => Some(SpeechTimeout::Auto),
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) => Some(SpeechTimeout::Seconds(n)),
                    Err(_) => {
                        return Err(a.invalid("speechTimeout", v, "expected seconds or auto"))
                    }
                },
            };
            Ok(Verb::Gather(Gather {
                input,
                num_digits,
                timeout: a.uint("timeout", 5, 0)?,
                finish_on_key,
                action: a.url("action"),
                method: a.method("method")?,
                action_on_empty_result: a.boolean("actionOnEmptyResult", false)?,
                speech_timeout,
                children,
            }))
        }
        "Record" => {
            no_content(el)?;
            let trim = a.trim()?;
            Ok(Verb::Record(Record {
                action: a.url("action"),
                method: a.method("method")?,
                max_length: a.uint("maxLength", 3600, 1)?,
                timeout: a.uint("timeout", 5, 0)?,
                finish_on_key: a.keys("finishOnKey", "1234567890*#")?,
                play_beep: a.boolean("playBeep", true)?,
                trim,
                recording_status_callback: a.url("recordingStatusCallback"),
                recording_status_callback_method: a.method("recordingStatusCallbackMethod")?,
            }))
        }
        "Redirect" => {
            let url = url_content(el)?;
            if url.is_empty() {
                return Err(TwimlError::Content {
                    verb: "Redirect".to_owned(),
                    reason: "a URL is required".to_owned(),
                });
            }
            Ok(Verb::Redirect(Redirect {
                url,
                method: a.method("method")?,
            }))
        }
        "Hangup" => {
            no_content(el)?;
            Ok(Verb::Hangup)
        }
        "Reject" => {
            no_content(el)?;
            let reason = match a.raw("reason") {
                None => RejectReason::Rejected,
                Some(v) if v.trim() == "rejected" => RejectReason::Rejected,
                Some(v) if v.trim() == "busy" => RejectReason::Busy,
                Some(v) => return Err(a.invalid("reason", v, "expected rejected or busy")),
            };
            Ok(Verb::Reject(Reject { reason }))
        }
        "Enqueue" => read_enqueue(el).map(Verb::Enqueue),
        "Leave" => {
            no_content(el)?;
            Ok(Verb::Leave)
        }
        name if UNSUPPORTED_VERBS.contains(&name) => Ok(Verb::Unsupported {
            name: name.to_owned(),
        }),
        name => Err(TwimlError::UnexpectedElement {
            name: name.to_owned(),
            parent: "Response".to_owned(),
        }),
    }
}

fn read_say(el: &Element) -> Result<Say, TwimlError> {
    let a = Attrs { el };
    let mut text = String::new();
    flatten_text(el, &mut text);
    Ok(Say {
        text: text.trim().to_owned(),
        voice: a
            .string("voice")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "man".to_owned()),
        language: a
            .string("language")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "en-US".to_owned()),
        loop_: a.uint("loop", 1, 0)?,
    })
}

fn read_play(el: &Element) -> Result<Play, TwimlError> {
    let a = Attrs { el };
    let url = url_content(el)?;
    let digits = match a.raw("digits") {
        None => None,
        Some(v) => {
            let d = v.trim();
            if d.is_empty() || !d.chars().all(|c| is_dtmf_key(c) || c == 'w' || c == 'W') {
                return Err(a.invalid("digits", v, "digits must be among 0-9, *, # and w"));
            }
            Some(d.to_owned())
        }
    };
    if url.is_empty() && digits.is_none() {
        return Err(TwimlError::Content {
            verb: "Play".to_owned(),
            reason: "a URL (or the digits attribute) is required".to_owned(),
        });
    }
    Ok(Play {
        url,
        loop_: a.uint("loop", 1, 0)?,
        digits,
    })
}

/// Nouns of `<Dial>` this server does not carry out; a `<Dial>` holding one parses to
/// [`Verb::Unsupported`] named after the noun, so the document is refused with 12100.
const UNSUPPORTED_DIAL_NOUNS: &[&str] = &["Sim", "Application", "WhatsApp"];

/// `statusCallbackEvent` values of `<Number>`, `<Sip>` and `<Client>`.
const DIAL_CALLBACK_EVENTS: &[&str] = &["initiated", "ringing", "answered", "completed"];

/// Twilio warning: Dial: invalid timeout value.
const WARN_DIAL_TIMEOUT: u32 = 13212;
/// Twilio warning: invalid timeLimit value.
const WARN_DIAL_TIME_LIMIT: u32 = 13216;
/// Twilio warning: Dial: invalid record value.
const WARN_DIAL_RECORD: u32 = 13217;

const DIAL_TIMEOUT_RANGE: (u32, u32) = (5, 600);
/// 24 hours: Twilio's longest call.
const DIAL_TIME_LIMIT_MAX: u32 = 86_400;

/// A value Twilio replaces by its default, with the warning it logs.
fn push_warning(
    warnings: &mut Vec<Warning>,
    code: u32,
    element: &str,
    attribute: &str,
    value: &str,
    used: &str,
) {
    warnings.push(Warning {
        code,
        message: format!("<{element}> {attribute}=\"{value}\" is invalid; using {used}"),
    });
}

/// `<Dial>`. Twilio reports bad `timeout`, `timeLimit` and `record` values as warnings and
/// dials with the default, so those become [`Warning`]s, not errors.
fn read_dial(el: &Element, warnings: &mut Vec<Warning>) -> Result<Verb, TwimlError> {
    let a = Attrs { el };
    let mut text = String::new();
    let mut targets = Vec::new();
    // The first `<Number>`, `<Sip>` or `<Client>`, named in the error when a join has company.
    let mut first_target: Option<&str> = None;
    let mut joins: Vec<(&str, DialJoin)> = Vec::new();
    for node in &el.children {
        match node {
            Node::Text(t) => text.push_str(t),
            Node::Element(child) => match child.name.as_str() {
                name @ ("Number" | "Sip" | "Client") => {
                    targets.push(read_dial_target(child)?);
                    first_target.get_or_insert(name);
                }
                "Queue" => joins.push(("Queue", DialJoin::Queue(read_dial_queue(child)?))),
                "Conference" => joins.push((
                    "Conference",
                    DialJoin::Conference(Box::new(read_dial_conference(child, warnings)?)),
                )),
                name if UNSUPPORTED_DIAL_NOUNS.contains(&name) => {
                    return Ok(Verb::Unsupported {
                        name: name.to_owned(),
                    })
                }
                name => {
                    return Err(TwimlError::UnexpectedElement {
                        name: name.to_owned(),
                        parent: "Dial".to_owned(),
                    })
                }
            },
        }
    }
    let text = text.trim();
    // Twilio only warns (13000) when a <Conference> has company, without documenting which
    // noun then wins; refusing the document beats guessing.
    let only_noun = "a <Queue> or <Conference> must be the only noun of its <Dial>";
    let join = match joins.as_slice() {
        [] => None,
        [(name, _)] => {
            if let Some(other) = first_target {
                return Err(TwimlError::Content {
                    verb: "Dial".to_owned(),
                    reason: format!("<{name}> next to <{other}>; {only_noun}"),
                });
            }
            if !text.is_empty() {
                return Err(TwimlError::Content {
                    verb: "Dial".to_owned(),
                    reason: format!("text {text:?} next to <{name}>; {only_noun}"),
                });
            }
            joins.pop().map(|(_, join)| join)
        }
        [(first, _), (second, _), ..] => {
            return Err(TwimlError::Content {
                verb: "Dial".to_owned(),
                reason: format!("<{first}> and <{second}> in one <Dial>; {only_noun}"),
            })
        }
    };
    match (text.is_empty(), targets.is_empty() && join.is_none()) {
        (false, true) => targets.push(DialTarget::new(DialKind::Number(text.to_owned()))),
        (false, false) => {
            return Err(TwimlError::Content {
                verb: "Dial".to_owned(),
                reason: format!("text {text:?} next to nouns; put the number in a <Number>"),
            })
        }
        (true, true) => {
            return Err(TwimlError::Content {
                verb: "Dial".to_owned(),
                reason: "nothing to dial: give a number, <Number>, <Sip>, <Client>, <Queue> or \
                         <Conference>"
                    .to_owned(),
            })
        }
        (true, false) => {}
    }
    if targets.len() > MAX_DIAL_TARGETS {
        return Err(TwimlError::Content {
            verb: "Dial".to_owned(),
            reason: format!(
                "{} targets; at most {MAX_DIAL_TARGETS} may be dialed at once",
                targets.len()
            ),
        });
    }

    let mut warn = |code: u32, attribute: &str, value: &str, used: String| {
        push_warning(warnings, code, "Dial", attribute, value, &used);
    };
    let (min, max) = DIAL_TIMEOUT_RANGE;
    let timeout = match a.raw("timeout") {
        None => 30,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(0) | Err(_) => {
                warn(WARN_DIAL_TIMEOUT, "timeout", v, "30".to_owned());
                30
            }
            Ok(n) if n < min || n > max => {
                let used = n.clamp(min, max);
                warn(WARN_DIAL_TIMEOUT, "timeout", v, used.to_string());
                used
            }
            Ok(n) => n,
        },
    };
    let time_limit = match a.raw("timeLimit") {
        None => 14400,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(0) | Err(_) => {
                warn(WARN_DIAL_TIME_LIMIT, "timeLimit", v, "14400".to_owned());
                14400
            }
            Ok(n) if n > DIAL_TIME_LIMIT_MAX => {
                warn(
                    WARN_DIAL_TIME_LIMIT,
                    "timeLimit",
                    v,
                    DIAL_TIME_LIMIT_MAX.to_string(),
                );
                DIAL_TIME_LIMIT_MAX
            }
            Ok(n) => n,
        },
    };
    let record = match a.raw("record") {
        None => DialRecord::DoNotRecord,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "record-from-answer" => DialRecord::RecordFromAnswer,
            "false" | "do-not-record" => DialRecord::DoNotRecord,
            "record-from-ringing" => DialRecord::RecordFromRinging,
            "record-from-answer-dual" => DialRecord::RecordFromAnswerDual,
            "record-from-ringing-dual" => DialRecord::RecordFromRingingDual,
            _ => {
                warn(WARN_DIAL_RECORD, "record", v, "do-not-record".to_owned());
                DialRecord::DoNotRecord
            }
        },
    };
    Ok(Verb::Dial(Dial {
        action: a.url("action"),
        method: a.method("method")?,
        timeout,
        time_limit,
        caller_id: a.string("callerId").filter(|v| !v.is_empty()),
        answer_on_bridge: a.boolean("answerOnBridge", false)?,
        record,
        hangup_on_star: a.boolean("hangupOnStar", false)?,
        ring_tone: a.string("ringTone").filter(|v| !v.is_empty()),
        recording_status_callback: a.url("recordingStatusCallback"),
        targets,
        join,
    }))
}

/// `<Number>`, `<Sip>` or `<Client>` inside `<Dial>`.
fn read_dial_target(el: &Element) -> Result<DialTarget, TwimlError> {
    let a = Attrs { el };
    let empty = |what: &str| TwimlError::Content {
        verb: el.name.clone(),
        reason: format!("{what} is required"),
    };
    let kind = match el.name.as_str() {
        "Number" => {
            let number = url_content(el)?;
            if number.is_empty() {
                return Err(empty("a phone number"));
            }
            DialKind::Number(number)
        }
        "Sip" => {
            let uri = url_content(el)?;
            if uri.is_empty() {
                return Err(empty("a SIP URI"));
            }
            let scheme = uri.split(':').next().unwrap_or_default();
            if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
                return Err(TwimlError::Content {
                    verb: "Sip".to_owned(),
                    reason: format!("{uri:?} is not a sip: or sips: URI"),
                });
            }
            DialKind::Sip(uri)
        }
        _ => DialKind::Client(client_identity(el)?),
    };
    let parameters = if matches!(kind, DialKind::Client(_)) {
        client_parameters(el)?
    } else {
        Vec::new()
    };
    let send_digits = match a.raw("sendDigits") {
        None => None,
        Some(v) if v.trim().is_empty() => None,
        Some(v) => {
            let d = v.trim();
            if !d.chars().all(|c| is_dtmf_key(c) || c == 'w' || c == 'W') {
                return Err(a.invalid("sendDigits", v, "digits must be among 0-9, *, # and w"));
            }
            Some(d.to_owned())
        }
    };
    let status_callback_events = a.events("statusCallbackEvent", DIAL_CALLBACK_EVENTS)?;
    Ok(DialTarget {
        kind,
        send_digits,
        url: a.url("url"),
        method: a.method("method")?,
        status_callback: a.url("statusCallback"),
        status_callback_events,
        username: a.string("username").filter(|v| !v.is_empty()),
        password: a.string("password").filter(|v| !v.is_empty()),
        parameters,
    })
}

/// The `<Parameter name="..." value="..."/>` children of a `<Client>`; one without a name is
/// an error (Twilio drops such a parameter, but a typo silently lost is worse).
fn client_parameters(el: &Element) -> Result<Vec<(String, String)>, TwimlError> {
    let mut out = Vec::new();
    for node in &el.children {
        if let Node::Element(child) = node {
            if child.name == "Parameter" {
                let a = Attrs { el: child };
                let name = a.string("name").filter(|n| !n.trim().is_empty()).ok_or_else(|| {
                    TwimlError::Content {
                        verb: "Parameter".to_owned(),
                        reason: "a <Parameter> needs a name".to_owned(),
                    }
                })?;
                out.push((name, a.string("value").unwrap_or_default()));
            }
        }
    }
    Ok(out)
}

/// `<Client>alice</Client>` or `<Client><Identity>alice</Identity><Parameter .../></Client>`.
/// A `client:` prefix is dropped: the identity is the name alone.
fn client_identity(el: &Element) -> Result<String, TwimlError> {
    let mut text = String::new();
    let mut identity: Option<String> = None;
    for node in &el.children {
        match node {
            Node::Text(t) => text.push_str(t),
            Node::Element(child) if child.name == "Identity" => {
                if identity.is_some() {
                    return Err(TwimlError::Content {
                        verb: "Client".to_owned(),
                        reason: "more than one <Identity>".to_owned(),
                    });
                }
                identity = Some(url_content(child)?);
            }
            // Custom parameters for the client SDK; no client here reads them.
            Node::Element(child) if child.name == "Parameter" => no_content(child)?,
            Node::Element(child) => {
                return Err(TwimlError::UnexpectedElement {
                    name: child.name.clone(),
                    parent: "Client".to_owned(),
                })
            }
        }
    }
    let text = text.trim();
    let name = match identity {
        Some(_) if !text.is_empty() => {
            return Err(TwimlError::Content {
                verb: "Client".to_owned(),
                reason: format!("text {text:?} next to <Identity>"),
            })
        }
        Some(id) => id,
        None => text.to_owned(),
    };
    let name = match (name.get(..7), name.get(7..)) {
        (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("client:") => {
            rest.trim().to_owned()
        }
        _ => name,
    };
    if name.is_empty() {
        return Err(TwimlError::Content {
            verb: "Client".to_owned(),
            reason: "a client identity is required".to_owned(),
        });
    }
    Ok(name)
}

/// Text content that names something (a queue, a room): trimmed, required.
fn name_content(el: &Element, what: &str) -> Result<String, TwimlError> {
    let name = url_content(el)?;
    if name.is_empty() {
        return Err(TwimlError::Content {
            verb: el.name.clone(),
            reason: format!("{what} is required"),
        });
    }
    Ok(name)
}

/// A string attribute where an empty value means absent.
fn non_empty(a: &Attrs<'_>, name: &str) -> Option<String> {
    a.string(name).filter(|v| !v.is_empty())
}

/// `<Queue>` inside `<Dial>`.
fn read_dial_queue(el: &Element) -> Result<DialQueue, TwimlError> {
    let a = Attrs { el };
    Ok(DialQueue {
        name: name_content(el, "a queue name")?,
        url: a.url("url"),
        method: a.method("method")?,
        reservation_sid: non_empty(&a, "reservationSid"),
        post_work_activity_sid: non_empty(&a, "postWorkActivitySid"),
    })
}

/// Twilio warning: Dial->Conference: invalid muted value.
const WARN_CONFERENCE_MUTED: u32 = 13230;
/// Twilio warning: Dial->Conference: invalid startConferenceOnEnter value.
const WARN_CONFERENCE_START_ON_ENTER: u32 = 13232;
/// Twilio warning: Dial->Conference: invalid waitMethod value.
const WARN_CONFERENCE_WAIT_METHOD: u32 = 13234;
/// Twilio warning: Dial->Conference: invalid beep value.
const WARN_CONFERENCE_BEEP: u32 = 13235;

/// Fewest participants a room may be limited to: a conference of one is a waiting room.
const MIN_CONFERENCE_PARTICIPANTS: u32 = 2;

/// `statusCallbackEvent` values of `<Conference>`.
const CONFERENCE_CALLBACK_EVENTS: &[&str] = &[
    "start",
    "end",
    "join",
    "leave",
    "mute",
    "hold",
    "modify",
    "speaker",
    "announcement",
];

/// `recordingStatusCallbackEvent` values of `<Conference>`.
const CONFERENCE_RECORDING_EVENTS: &[&str] = &["in-progress", "completed", "absent"];

const JITTER_BUFFER_SIZES: &[&str] = &["large", "medium", "small", "off"];

/// Longest `participantLabel` Twilio takes (error 16023 beyond).
const MAX_PARTICIPANT_LABEL_LEN: usize = 128;

/// `CA` and 32 hex digits: the shape of a CallSid.
fn is_call_sid(s: &str) -> bool {
    s.len() == 34 && s.starts_with("CA") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<Conference>` inside `<Dial>`. Twilio documents warnings (13230, 13232, 13234, 13235) for
/// bad `muted`, `startConferenceOnEnter`, `waitMethod` and `beep` and joins with the default,
/// so those are [`Warning`]s; a bad `endConferenceOnExit` (13231), `coach` (13240),
/// `participantLabel` (16023) or any other attribute it validates (16002) fails the call, so
/// those are errors.
fn read_dial_conference(
    el: &Element,
    warnings: &mut Vec<Warning>,
) -> Result<DialConference, TwimlError> {
    let a = Attrs { el };
    let name = name_content(el, "a conference room name")?;
    let mut warn = |code: u32, attribute: &str, value: &str, used: &str| {
        push_warning(warnings, code, "Conference", attribute, value, used);
    };
    let mut warned_bool = |attribute: &str, default: bool, code: u32| match a.raw(attribute) {
        None => default,
        Some(v) if v.trim().eq_ignore_ascii_case("true") => true,
        Some(v) if v.trim().eq_ignore_ascii_case("false") => false,
        Some(v) => {
            warn(code, attribute, v, if default { "true" } else { "false" });
            default
        }
    };
    let muted = warned_bool("muted", false, WARN_CONFERENCE_MUTED);
    let start_conference_on_enter = warned_bool(
        "startConferenceOnEnter",
        true,
        WARN_CONFERENCE_START_ON_ENTER,
    );
    let beep = match a.raw("beep") {
        None => ConferenceBeep::True,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" => ConferenceBeep::True,
            "false" => ConferenceBeep::False,
            "onenter" => ConferenceBeep::OnEnter,
            "onexit" => ConferenceBeep::OnExit,
            _ => {
                warn(WARN_CONFERENCE_BEEP, "beep", v, "true");
                ConferenceBeep::True
            }
        },
    };
    let wait_method = match a.method("waitMethod") {
        Ok(m) => m,
        Err(_) => {
            warn(
                WARN_CONFERENCE_WAIT_METHOD,
                "waitMethod",
                a.raw("waitMethod").unwrap_or_default(),
                "POST",
            );
            Method::Post
        }
    };
    let max_participants = match a.raw("maxParticipants") {
        None => MAX_CONFERENCE_PARTICIPANTS,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (MIN_CONFERENCE_PARTICIPANTS..=MAX_CONFERENCE_PARTICIPANTS).contains(&n) => n,
            _ => {
                return Err(a.invalid(
                    "maxParticipants",
                    v,
                    &format!(
                        "expected a whole number from {MIN_CONFERENCE_PARTICIPANTS} to \
                         {MAX_CONFERENCE_PARTICIPANTS}"
                    ),
                ))
            }
        },
    };
    let record = match a.raw("record") {
        None => ConferenceRecord::DoNotRecord,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "do-not-record" => ConferenceRecord::DoNotRecord,
            "record-from-start" => ConferenceRecord::RecordFromStart,
            _ => return Err(a.invalid("record", v, "expected do-not-record or record-from-start")),
        },
    };
    let coach = match non_empty(&a, "coach") {
        Some(sid) if !is_call_sid(&sid) => {
            return Err(a.invalid(
                "coach",
                a.raw("coach").unwrap_or_default(),
                "expected a CallSid (CA and 32 hex digits)",
            ))
        }
        sid => sid,
    };
    let jitter_buffer_size = match non_empty(&a, "jitterBufferSize") {
        Some(size) => {
            let size = size.to_ascii_lowercase();
            if !JITTER_BUFFER_SIZES.contains(&size.as_str()) {
                return Err(a.invalid(
                    "jitterBufferSize",
                    a.raw("jitterBufferSize").unwrap_or_default(),
                    "expected large, medium, small or off",
                ));
            }
            Some(size)
        }
        None => None,
    };
    let participant_label = match non_empty(&a, "participantLabel") {
        Some(label) if label.chars().count() > MAX_PARTICIPANT_LABEL_LEN => {
            return Err(a.invalid(
                "participantLabel",
                &label,
                &format!("longer than {MAX_PARTICIPANT_LABEL_LEN} characters"),
            ))
        }
        // The label stands in for the CallSid in participant URLs, so it may look like
        // neither a CallSid nor a path.
        Some(label) if is_call_sid(&label) => {
            return Err(a.invalid("participantLabel", &label, "must not be a CallSid"))
        }
        Some(label) if label.contains('/') || label.to_ascii_lowercase().contains("%2f") => {
            return Err(a.invalid("participantLabel", &label, "must not contain '/'"))
        }
        label => label,
    };
    Ok(DialConference {
        name,
        muted,
        beep,
        start_conference_on_enter,
        end_conference_on_exit: a.boolean("endConferenceOnExit", false)?,
        // An empty waitUrl is meaningful (no hold music), so it is kept, unlike other URLs.
        wait_url: a.string("waitUrl"),
        wait_method,
        max_participants,
        record,
        region: non_empty(&a, "region"),
        coach,
        trim: a.trim()?,
        status_callback: a.url("statusCallback"),
        status_callback_method: a.method("statusCallbackMethod")?,
        status_callback_events: a.events("statusCallbackEvent", CONFERENCE_CALLBACK_EVENTS)?,
        recording_status_callback: a.url("recordingStatusCallback"),
        recording_status_callback_method: a.method("recordingStatusCallbackMethod")?,
        recording_status_callback_events: a
            .events("recordingStatusCallbackEvent", CONFERENCE_RECORDING_EVENTS)?,
        event_callback_url: a.url("eventCallbackUrl"),
        jitter_buffer_size,
        participant_label,
    })
}

/// `<Enqueue>`: the queue name as text, and an optional `<Task>` (TaskRouter attributes as
/// JSON). `maxQueueSize` has no documented Twilio warning; the REST API refuses a size
/// outside 1..=5000, so a bad one here is an error too.
fn read_enqueue(el: &Element) -> Result<Enqueue, TwimlError> {
    let a = Attrs { el };
    let mut text = String::new();
    let mut task: Option<String> = None;
    for node in &el.children {
        match node {
            Node::Text(t) => text.push_str(t),
            Node::Element(child) if child.name == "Task" => {
                if task.is_some() {
                    return Err(TwimlError::Content {
                        verb: "Enqueue".to_owned(),
                        reason: "more than one <Task>".to_owned(),
                    });
                }
                task = Some(name_content(child, "JSON task attributes")?);
            }
            Node::Element(child) => {
                return Err(TwimlError::UnexpectedElement {
                    name: child.name.clone(),
                    parent: "Enqueue".to_owned(),
                })
            }
        }
    }
    let name = text.trim();
    if name.is_empty() {
        // Twilio takes `<Enqueue workflowSid><Task>` without a name and hands the call to
        // TaskRouter; this server has no TaskRouter, so a queue name is needed.
        return Err(TwimlError::Content {
            verb: "Enqueue".to_owned(),
            reason: "a queue name is required".to_owned(),
        });
    }
    if name.chars().count() > MAX_QUEUE_NAME_LEN {
        return Err(TwimlError::Content {
            verb: "Enqueue".to_owned(),
            reason: format!("queue name longer than {MAX_QUEUE_NAME_LEN} characters"),
        });
    }
    let max_queue_size = match a.raw("maxQueueSize") {
        None => None,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_QUEUE_SIZE).contains(&n) => Some(n),
            _ => {
                return Err(a.invalid(
                    "maxQueueSize",
                    v,
                    &format!("expected a whole number from 1 to {MAX_QUEUE_SIZE}"),
                ))
            }
        },
    };
    Ok(Enqueue {
        name: name.to_owned(),
        action: a.url("action"),
        method: a.method("method")?,
        wait_url: a.url("waitUrl"),
        wait_url_method: a.method("waitUrlMethod")?,
        max_queue_size,
        workflow_sid: non_empty(&a, "workflowSid"),
        task,
    })
}

fn read_pause(el: &Element) -> Result<Pause, TwimlError> {
    no_content(el)?;
    Ok(Pause {
        length: Attrs { el }.uint("length", 1, 0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(xml: &str) -> Verb {
        let doc = parse(xml).unwrap_or_else(|e| panic!("{xml}: {e}"));
        assert_eq!(doc.verbs.len(), 1, "{doc:?}");
        doc.verbs.into_iter().next().expect("length checked")
    }

    #[test]
    fn empty_response_has_no_verbs() {
        assert_eq!(parse("<Response/>").unwrap().verbs, vec![]);
        assert_eq!(
            parse(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- hi --><Response>\n</Response>\n"
            )
            .unwrap()
            .verbs,
            vec![]
        );
    }

    #[test]
    fn say_defaults_and_attributes() {
        assert_eq!(
            one("<Response><Say>Hello &amp; welcome</Say></Response>"),
            Verb::Say(Say {
                text: "Hello & welcome".into(),
                voice: "man".into(),
                language: "en-US".into(),
                loop_: 1
            })
        );
        assert_eq!(
            one(
                r#"<Response><Say voice="alice" language="fr-FR" loop="0">Bonjour</Say></Response>"#
            ),
            Verb::Say(Say {
                text: "Bonjour".into(),
                voice: "alice".into(),
                language: "fr-FR".into(),
                loop_: 0
            })
        );
    }

    #[test]
    fn say_flattens_ssml_and_cdata() {
        let Verb::Say(say) = one(
            "<Response><Say>Hi <prosody rate=\"slow\">there</prosody><break time=\"1s\"/> <![CDATA[a<b]]></Say></Response>",
        ) else {
            panic!("not a Say")
        };
        assert_eq!(say.text, "Hi there a<b");
    }

    #[test]
    fn play_and_pause_defaults() {
        assert_eq!(
            one("<Response><Play> https://x.test/a.wav </Play></Response>"),
            Verb::Play(Play {
                url: "https://x.test/a.wav".into(),
                loop_: 1,
                digits: None
            })
        );
        assert_eq!(
            one(r#"<Response><Play loop="0">/a.mp3</Play></Response>"#),
            Verb::Play(Play {
                url: "/a.mp3".into(),
                loop_: 0,
                digits: None
            })
        );
        assert_eq!(
            one(r#"<Response><Play digits="ww12#"/></Response>"#),
            Verb::Play(Play {
                url: "".into(),
                loop_: 1,
                digits: Some("ww12#".into())
            })
        );
        assert_eq!(
            one("<Response><Pause/></Response>"),
            Verb::Pause(Pause { length: 1 })
        );
        assert_eq!(
            one(r#"<Response><Pause length="7"/></Response>"#),
            Verb::Pause(Pause { length: 7 })
        );
    }

    #[test]
    fn play_without_url_is_an_error() {
        assert!(matches!(
            parse("<Response><Play/></Response>"),
            Err(TwimlError::Content { .. })
        ));
        assert!(matches!(
            parse(r#"<Response><Play digits="12x"/></Response>"#),
            Err(TwimlError::Attribute { .. })
        ));
    }

    #[test]
    fn gather_defaults() {
        assert_eq!(
            one("<Response><Gather/></Response>"),
            Verb::Gather(Gather {
                input: GatherInput {
                    dtmf: true,
                    speech: false
                },
                num_digits: None,
                timeout: 5,
                finish_on_key: Some('#'),
                action: None,
                method: Method::Post,
                action_on_empty_result: false,
                speech_timeout: None,
                children: vec![],
            })
        );
    }

    #[test]
    fn gather_attributes_and_children() {
        let Verb::Gather(g) = one(
            r#"<Response><Gather input="dtmf speech" numDigits="4" timeout="10" finishOnKey="" action="/next" method="GET" actionOnEmptyResult="true" speechTimeout="auto">
                 <Say>Enter your PIN</Say><Pause length="2"/><Play>/beep.wav</Play>
               </Gather></Response>"#,
        ) else {
            panic!("not a Gather")
        };
        assert_eq!(
            g.input,
            GatherInput {
                dtmf: true,
                speech: true
            }
        );
        assert_eq!(g.num_digits, Some(4));
        assert_eq!(g.timeout, 10);
        assert_eq!(g.finish_on_key, None);
        assert_eq!(g.action.as_deref(), Some("/next"));
        assert_eq!(g.method, Method::Get);
        assert!(g.action_on_empty_result);
        assert_eq!(g.speech_timeout, Some(SpeechTimeout::Auto));
        assert_eq!(g.children.len(), 3);
        assert_eq!(g.children[1], Verb::Pause(Pause { length: 2 }));
    }

    #[test]
    fn gather_rejects_nested_verbs_other_than_prompts() {
        let err = parse("<Response><Gather><Record/></Gather></Response>").unwrap_err();
        assert_eq!(
            err,
            TwimlError::UnexpectedElement {
                name: "Record".into(),
                parent: "Gather".into()
            }
        );
        assert_eq!(err.to_string(), "<Record> is not allowed in <Gather>");
    }

    #[test]
    fn gather_bad_values() {
        for xml in [
            r#"<Response><Gather numDigits="0"/></Response>"#,
            r#"<Response><Gather numDigits="x"/></Response>"#,
            r#"<Response><Gather timeout="-1"/></Response>"#,
            r##"<Response><Gather finishOnKey="#*"/></Response>"##,
            r#"<Response><Gather finishOnKey="a"/></Response>"#,
            r#"<Response><Gather method="PUT"/></Response>"#,
            r#"<Response><Gather input="voice"/></Response>"#,
            r#"<Response><Gather actionOnEmptyResult="yes"/></Response>"#,
        ] {
            let err = parse(xml).unwrap_err();
            assert!(matches!(err, TwimlError::Attribute { .. }), "{xml}: {err}");
            assert_eq!(err.code(), 12100);
        }
    }

    #[test]
    fn attributes_are_case_sensitive() {
        // `numdigits` is not Twilio's attribute, so it is ignored like any unknown attribute.
        let Verb::Gather(g) = one(r#"<Response><Gather numdigits="3"/></Response>"#) else {
            panic!("not a Gather")
        };
        assert_eq!(g.num_digits, None);
    }

    #[test]
    fn record_defaults_and_attributes() {
        assert_eq!(
            one("<Response><Record/></Response>"),
            Verb::Record(Record {
                action: None,
                method: Method::Post,
                max_length: 3600,
                timeout: 5,
                finish_on_key: "1234567890*#".into(),
                play_beep: true,
                trim: Trim::TrimSilence,
                recording_status_callback: None,
                recording_status_callback_method: Method::Post,
            })
        );
        let Verb::Record(r) = one(
            r##"<Response><Record action="/done" maxLength="30" timeout="0" finishOnKey="#" playBeep="false" trim="do-not-trim" recordingStatusCallback="/rs"/></Response>"##,
        ) else {
            panic!("not a Record")
        };
        assert_eq!(r.action.as_deref(), Some("/done"));
        assert_eq!((r.max_length, r.timeout), (30, 0));
        assert_eq!(r.finish_on_key, "#");
        assert!(!r.play_beep);
        assert_eq!(r.trim, Trim::DoNotTrim);
        assert_eq!(r.recording_status_callback.as_deref(), Some("/rs"));
    }

    #[test]
    fn redirect_hangup_reject() {
        assert_eq!(
            one(r#"<Response><Redirect method="GET"> ../other </Redirect></Response>"#),
            Verb::Redirect(Redirect {
                url: "../other".into(),
                method: Method::Get
            })
        );
        assert!(matches!(
            parse("<Response><Redirect/></Response>"),
            Err(TwimlError::Content { .. })
        ));
        assert_eq!(one("<Response><Hangup/></Response>"), Verb::Hangup);
        assert_eq!(
            one("<Response><Reject/></Response>"),
            Verb::Reject(Reject {
                reason: RejectReason::Rejected
            })
        );
        assert_eq!(
            one(r#"<Response><Reject reason="busy"></Reject></Response>"#),
            Verb::Reject(Reject {
                reason: RejectReason::Busy
            })
        );
        assert!(parse(r#"<Response><Reject reason="nope"/></Response>"#).is_err());
    }

    #[test]
    fn verbs_and_dial_nouns_not_carried_out_are_accepted_as_unsupported() {
        assert_eq!(
            one("<Response><Dial><Sim>DE8e1234</Sim></Dial></Response>"),
            Verb::Unsupported { name: "Sim".into() }
        );
        assert_eq!(
            one("<Response><Connect><Stream url=\"wss://x.test\"/></Connect></Response>"),
            Verb::Unsupported {
                name: "Connect".into()
            }
        );
    }

    fn dial(xml: &str) -> Dial {
        match one(xml) {
            Verb::Dial(d) => d,
            other => panic!("not a Dial: {other:?}"),
        }
    }

    fn dial_warnings(xml: &str) -> (Dial, Vec<u32>) {
        let doc = parse(xml).unwrap_or_else(|e| panic!("{xml}: {e}"));
        let codes = doc.warnings.iter().map(|w| w.code).collect();
        match doc.verbs.into_iter().next() {
            Some(Verb::Dial(d)) => (d, codes),
            other => panic!("not a Dial: {other:?}"),
        }
    }

    #[test]
    fn dial_bare_text_is_one_number_with_defaults() {
        assert_eq!(
            dial("<Response><Dial> 415-123-4567 </Dial></Response>"),
            Dial {
                targets: vec![DialTarget::new(DialKind::Number("415-123-4567".into()))],
                ..Dial::default()
            }
        );
        let d = Dial::default();
        assert_eq!(
            (d.timeout, d.time_limit, d.method),
            (30, 14400, Method::Post)
        );
        assert_eq!(d.record, DialRecord::DoNotRecord);
        assert!(!d.answer_on_bridge && !d.hangup_on_star);
        assert_eq!(
            parse("<Response><Dial>1</Dial></Response>")
                .unwrap()
                .warnings,
            vec![]
        );
    }

    #[test]
    fn dial_attributes() {
        let d = dial(
            r#"<Response><Dial action="/after" method="GET" timeout="10" timeLimit="60" callerId="+15550001111" answerOnBridge="true" record="record-from-ringing-dual" hangupOnStar="true" ringTone="uk" recordingStatusCallback="/rs" unknownThing="x">+15551234567</Dial></Response>"#,
        );
        assert_eq!(
            d,
            Dial {
                action: Some("/after".into()),
                method: Method::Get,
                timeout: 10,
                time_limit: 60,
                caller_id: Some("+15550001111".into()),
                answer_on_bridge: true,
                record: DialRecord::RecordFromRingingDual,
                hangup_on_star: true,
                ring_tone: Some("uk".into()),
                recording_status_callback: Some("/rs".into()),
                targets: vec![DialTarget::new(DialKind::Number("+15551234567".into()))],
                join: None,
            }
        );
        assert!(d.record.is_dual() && d.record.from_ringing() && d.record.is_recording());
        // Empty URL attributes count as absent, as for the other verbs.
        let d = dial(r#"<Response><Dial action="" callerId="" ringTone="">1</Dial></Response>"#);
        assert_eq!((d.action, d.caller_id, d.ring_tone), (None, None, None));
    }

    #[test]
    fn dial_record_values() {
        for (value, expected) in [
            ("true", DialRecord::RecordFromAnswer),
            ("false", DialRecord::DoNotRecord),
            ("do-not-record", DialRecord::DoNotRecord),
            ("record-from-answer", DialRecord::RecordFromAnswer),
            ("record-from-ringing", DialRecord::RecordFromRinging),
            ("record-from-answer-dual", DialRecord::RecordFromAnswerDual),
            (
                "record-from-ringing-dual",
                DialRecord::RecordFromRingingDual,
            ),
            ("TRUE", DialRecord::RecordFromAnswer),
        ] {
            let (d, warnings) = dial_warnings(&format!(
                r#"<Response><Dial record="{value}">1</Dial></Response>"#
            ));
            assert_eq!(d.record, expected, "{value}");
            assert!(warnings.is_empty(), "{value}");
            if value != "TRUE" && value != "true" && value != "false" {
                assert_eq!(expected.as_str(), value);
            }
        }
        assert!(!DialRecord::RecordFromAnswer.is_dual());
        assert!(!DialRecord::RecordFromAnswer.from_ringing());
        assert!(!DialRecord::DoNotRecord.is_recording());
    }

    #[test]
    fn dial_bad_numbers_are_warnings_with_defaults() {
        for (attrs, timeout, time_limit, record, code) in [
            (r#"timeout="0""#, 30, 14400, DialRecord::DoNotRecord, 13212),
            (
                r#"timeout="soon""#,
                30,
                14400,
                DialRecord::DoNotRecord,
                13212,
            ),
            (r#"timeout="-5""#, 30, 14400, DialRecord::DoNotRecord, 13212),
            (r#"timeout="2""#, 5, 14400, DialRecord::DoNotRecord, 13212),
            (
                r#"timeout="601""#,
                600,
                14400,
                DialRecord::DoNotRecord,
                13212,
            ),
            (
                r#"timeLimit="0""#,
                30,
                14400,
                DialRecord::DoNotRecord,
                13216,
            ),
            (
                r#"timeLimit="1.5""#,
                30,
                14400,
                DialRecord::DoNotRecord,
                13216,
            ),
            (
                r#"timeLimit="100000""#,
                30,
                86400,
                DialRecord::DoNotRecord,
                13216,
            ),
            (r#"record="yes""#, 30, 14400, DialRecord::DoNotRecord, 13217),
        ] {
            let xml = format!("<Response><Dial {attrs}>1</Dial></Response>");
            let (d, warnings) = dial_warnings(&xml);
            assert_eq!(
                (d.timeout, d.time_limit, d.record),
                (timeout, time_limit, record),
                "{attrs}"
            );
            assert_eq!(warnings, vec![code], "{attrs}");
        }
        let doc = parse(r#"<Response><Dial timeout="x" record="y">1</Dial></Response>"#).unwrap();
        assert_eq!(doc.warnings.len(), 2);
        assert!(
            doc.warnings[0].message.contains("timeout=\"x\""),
            "{:?}",
            doc.warnings
        );
        // Bounds themselves are fine.
        assert_eq!(
            dial_warnings(r#"<Response><Dial timeout="5" timeLimit="86400">1</Dial></Response>"#).1,
            vec![]
        );
        assert_eq!(
            dial(r#"<Response><Dial timeout="600">1</Dial></Response>"#).timeout,
            600
        );
    }

    #[test]
    fn dial_bad_booleans_and_methods_are_errors() {
        for xml in [
            r#"<Response><Dial answerOnBridge="yes">1</Dial></Response>"#,
            r#"<Response><Dial hangupOnStar="1">1</Dial></Response>"#,
            r#"<Response><Dial method="PUT">1</Dial></Response>"#,
            r#"<Response><Dial><Number method="DELETE">1</Number></Dial></Response>"#,
            r#"<Response><Dial><Number sendDigits="12x">1</Number></Dial></Response>"#,
            r#"<Response><Dial><Number statusCallbackEvent="initiated hungup">1</Number></Dial></Response>"#,
        ] {
            let err = parse(xml).unwrap_err();
            assert!(matches!(err, TwimlError::Attribute { .. }), "{xml}: {err}");
            assert_eq!(err.code(), 12100);
        }
    }

    #[test]
    fn dial_number_noun() {
        let d = dial(
            r#"<Response><Dial><Number sendDigits="ww1234#" url="/whisper" method="GET" statusCallback="/status" statusCallbackEvent="initiated ringing,Answered  completed ringing">+15551234567</Number></Dial></Response>"#,
        );
        assert_eq!(
            d.targets,
            vec![DialTarget {
                kind: DialKind::Number("+15551234567".into()),
                send_digits: Some("ww1234#".into()),
                url: Some("/whisper".into()),
                method: Method::Get,
                status_callback: Some("/status".into()),
                status_callback_events: vec![
                    "initiated".into(),
                    "ringing".into(),
                    "answered".into(),
                    "completed".into()
                ],
                username: None,
                password: None,
                parameters: Vec::new(),
            }]
        );
        assert!(matches!(
            parse("<Response><Dial><Number> </Number></Dial></Response>"),
            Err(TwimlError::Content { .. })
        ));
        assert!(matches!(
            parse("<Response><Dial><Number><Say>x</Say></Number></Dial></Response>"),
            Err(TwimlError::UnexpectedElement { .. })
        ));
    }

    #[test]
    fn dial_sip_noun() {
        let d = dial(
            r#"<Response><Dial><Sip username="bob" password="s3cret" url="/w" statusCallback="/s" statusCallbackEvent="completed"> sip:bob@pbx.test;transport=tcp </Sip></Dial></Response>"#,
        );
        assert_eq!(
            d.targets,
            vec![DialTarget {
                kind: DialKind::Sip("sip:bob@pbx.test;transport=tcp".into()),
                url: Some("/w".into()),
                status_callback: Some("/s".into()),
                status_callback_events: vec!["completed".into()],
                username: Some("bob".into()),
                password: Some("s3cret".into()),
                ..DialTarget::new(DialKind::Sip(String::new()))
            }]
        );
        assert_eq!(
            dial("<Response><Dial><Sip>SIPS:a@b.test</Sip></Dial></Response>").targets[0].kind,
            DialKind::Sip("SIPS:a@b.test".into())
        );
        for xml in [
            "<Response><Dial><Sip>bob@pbx.test</Sip></Dial></Response>",
            "<Response><Dial><Sip>tel:+1555</Sip></Dial></Response>",
            "<Response><Dial><Sip/></Dial></Response>",
        ] {
            assert!(
                matches!(parse(xml), Err(TwimlError::Content { .. })),
                "{xml}"
            );
        }
    }

    #[test]
    fn dial_client_noun() {
        let d = dial(
            r#"<Response><Dial><Client url="/w" method="GET" statusCallback="/s" statusCallbackEvent="ringing">alice</Client><Client><Identity> bob </Identity><Parameter name="k" value="v"/></Client><Client>client:carol</Client></Dial></Response>"#,
        );
        let kinds: Vec<&DialKind> = d.targets.iter().map(|t| &t.kind).collect();
        assert_eq!(
            kinds,
            [
                &DialKind::Client("alice".into()),
                &DialKind::Client("bob".into()),
                &DialKind::Client("carol".into())
            ]
        );
        assert_eq!(d.targets[0].url.as_deref(), Some("/w"));
        assert_eq!(d.targets[0].method, Method::Get);
        assert!(d.targets[0].parameters.is_empty());
        assert_eq!(d.targets[1].parameters, [("k".to_owned(), "v".to_owned())]);
        assert_eq!(
            d.targets[0].status_callback_events,
            vec!["ringing".to_owned()]
        );
        for xml in [
            "<Response><Dial><Client/></Dial></Response>",
            "<Response><Dial><Client>client:</Client></Dial></Response>",
            "<Response><Dial><Client>x<Identity>y</Identity></Client></Dial></Response>",
            "<Response><Dial><Client><Identity>a</Identity><Identity>b</Identity></Client></Dial></Response>",
            r#"<Response><Dial><Client>a<Parameter value="v"/></Client></Dial></Response>"#,
        ] {
            assert!(matches!(parse(xml), Err(TwimlError::Content { .. })), "{xml}");
        }
        assert!(matches!(
            parse("<Response><Dial><Client><Say>x</Say></Client></Dial></Response>"),
            Err(TwimlError::UnexpectedElement { .. })
        ));
    }

    #[test]
    fn dial_mixed_nouns_in_order() {
        let d = dial(
            "<Response><Dial>\n <Number>+1555</Number>\n <Sip>sip:a@b.test</Sip>\n <Client>c</Client>\n</Dial></Response>",
        );
        assert_eq!(
            d.targets.into_iter().map(|t| t.kind).collect::<Vec<_>>(),
            vec![
                DialKind::Number("+1555".into()),
                DialKind::Sip("sip:a@b.test".into()),
                DialKind::Client("c".into())
            ]
        );
    }

    #[test]
    fn dial_target_count_limits() {
        let err = parse("<Response><Dial/></Response>").unwrap_err();
        assert!(matches!(err, TwimlError::Content { .. }), "{err}");
        assert_eq!(err.code(), 12100);
        assert!(parse("<Response><Dial>  </Dial></Response>").is_err());
        let ten = "<Number>+1555</Number>".repeat(MAX_DIAL_TARGETS);
        assert_eq!(
            dial(&format!("<Response><Dial>{ten}</Dial></Response>"))
                .targets
                .len(),
            10
        );
        let eleven = "<Number>+1555</Number>".repeat(MAX_DIAL_TARGETS + 1);
        let err = parse(&format!("<Response><Dial>{eleven}</Dial></Response>")).unwrap_err();
        assert!(matches!(err, TwimlError::Content { .. }), "{err}");
        assert!(err.to_string().contains("at most 10"), "{err}");
    }

    #[test]
    fn dial_structure_errors() {
        assert!(matches!(
            parse("<Response><Dial>+1555<Number>+1666</Number></Dial></Response>"),
            Err(TwimlError::Content { .. })
        ));
        assert_eq!(
            parse("<Response><Dial><Say>hi</Say></Dial></Response>"),
            Err(TwimlError::UnexpectedElement {
                name: "Say".into(),
                parent: "Dial".into()
            })
        );
        // <Dial> is a verb of <Response>, not a prompt of <Gather>.
        assert!(matches!(
            parse("<Response><Gather><Dial>1</Dial></Gather></Response>"),
            Err(TwimlError::UnexpectedElement { .. })
        ));
    }

    fn enqueue(xml: &str) -> Enqueue {
        match one(xml) {
            Verb::Enqueue(e) => e,
            other => panic!("not an Enqueue: {other:?}"),
        }
    }

    #[test]
    fn enqueue_defaults() {
        let doc = parse("<Response><Enqueue> support </Enqueue></Response>").unwrap();
        assert_eq!(
            doc.verbs,
            vec![Verb::Enqueue(Enqueue {
                name: "support".into(),
                action: None,
                method: Method::Post,
                wait_url: None,
                wait_url_method: Method::Post,
                max_queue_size: None,
                workflow_sid: None,
                task: None,
            })]
        );
        assert_eq!(doc.warnings, vec![]);
        assert_eq!(doc.verbs[0].name(), "Enqueue");
    }

    #[test]
    fn enqueue_every_attribute_and_task() {
        let e = enqueue(
            r#"<Response><Enqueue action="/after" method="GET" waitUrl="/hold" waitUrlMethod="get" maxQueueSize="5000" workflowSid="WW0123456789abcdef0123456789abcdef" unknown="x">
                 sales
                 <Task> {"language": "fr", "vip": true} </Task>
               </Enqueue></Response>"#,
        );
        assert_eq!(
            e,
            Enqueue {
                name: "sales".into(),
                action: Some("/after".into()),
                method: Method::Get,
                wait_url: Some("/hold".into()),
                wait_url_method: Method::Get,
                max_queue_size: Some(5000),
                workflow_sid: Some("WW0123456789abcdef0123456789abcdef".into()),
                task: Some(r#"{"language": "fr", "vip": true}"#.into()),
            }
        );
        // JSON with markup characters, as CDATA.
        let e = enqueue(
            r#"<Response><Enqueue maxQueueSize="1">q<Task><![CDATA[{"note":"a<b"}]]></Task></Enqueue></Response>"#,
        );
        assert_eq!(e.task.as_deref(), Some(r#"{"note":"a<b"}"#));
        assert_eq!(e.max_queue_size, Some(1));
        // Empty URL and SID attributes count as absent.
        let e = enqueue(
            r#"<Response><Enqueue action="" waitUrl="" workflowSid=" ">q</Enqueue></Response>"#,
        );
        assert_eq!((e.action, e.wait_url, e.workflow_sid), (None, None, None));
    }

    #[test]
    fn enqueue_bad_attributes_are_errors() {
        for attrs in [
            r#"method="PUT""#,
            r#"waitUrlMethod="DELETE""#,
            // No Twilio warning exists for maxQueueSize; the REST API refuses these sizes.
            r#"maxQueueSize="0""#,
            r#"maxQueueSize="5001""#,
            r#"maxQueueSize="-1""#,
            r#"maxQueueSize="1.5""#,
            r#"maxQueueSize="ten""#,
            r#"maxQueueSize="""#,
        ] {
            let xml = format!("<Response><Enqueue {attrs}>q</Enqueue></Response>");
            let err = parse(&xml).unwrap_err();
            assert!(matches!(err, TwimlError::Attribute { .. }), "{xml}: {err}");
            assert_eq!(err.code(), 12100);
        }
    }

    #[test]
    fn enqueue_structure_errors() {
        for xml in [
            "<Response><Enqueue/></Response>",
            "<Response><Enqueue>  </Enqueue></Response>",
            // TaskRouter's form without a queue name: no TaskRouter here.
            r#"<Response><Enqueue workflowSid="WW1"><Task>{}</Task></Enqueue></Response>"#,
            "<Response><Enqueue>q<Task>{}</Task><Task>{}</Task></Enqueue></Response>",
            "<Response><Enqueue>q<Task> </Task></Enqueue></Response>",
        ] {
            let err = parse(xml).unwrap_err();
            assert!(matches!(err, TwimlError::Content { .. }), "{xml}: {err}");
            assert_eq!(err.code(), 12100);
        }
        for xml in [
            "<Response><Enqueue>q<Say>wait</Say></Enqueue></Response>",
            "<Response><Enqueue>q<Task><a/></Task></Enqueue></Response>",
            "<Response><Gather><Enqueue>q</Enqueue></Gather></Response>",
        ] {
            let err = parse(xml).unwrap_err();
            assert!(
                matches!(err, TwimlError::UnexpectedElement { .. }),
                "{xml}: {err}"
            );
        }
    }

    #[test]
    fn enqueue_name_length_limit() {
        let name = "q".repeat(MAX_QUEUE_NAME_LEN);
        assert_eq!(
            enqueue(&format!("<Response><Enqueue>{name}</Enqueue></Response>")).name,
            name
        );
        // Characters, not bytes.
        let name = "é".repeat(MAX_QUEUE_NAME_LEN);
        assert_eq!(
            enqueue(&format!("<Response><Enqueue>{name}</Enqueue></Response>")).name,
            name
        );
        let long = "q".repeat(MAX_QUEUE_NAME_LEN + 1);
        let err = parse(&format!("<Response><Enqueue>{long}</Enqueue></Response>")).unwrap_err();
        assert!(matches!(err, TwimlError::Content { .. }), "{err}");
        assert!(err.to_string().contains("64 characters"), "{err}");
    }

    #[test]
    fn leave_takes_nothing() {
        let doc = parse("<Response><Leave/><Leave></Leave><Leave> </Leave></Response>").unwrap();
        assert_eq!(doc.verbs, vec![Verb::Leave, Verb::Leave, Verb::Leave]);
        assert_eq!(doc.verbs[0].name(), "Leave");
        assert!(matches!(
            parse("<Response><Leave>now</Leave></Response>"),
            Err(TwimlError::Content { .. })
        ));
        assert!(matches!(
            parse("<Response><Leave><Say>bye</Say></Leave></Response>"),
            Err(TwimlError::UnexpectedElement { .. })
        ));
        assert!(matches!(
            parse("<Response><Gather><Leave/></Gather></Response>"),
            Err(TwimlError::UnexpectedElement { .. })
        ));
    }

    fn conference(xml: &str) -> DialConference {
        match dial(xml).join {
            Some(DialJoin::Conference(c)) => *c,
            other => panic!("not a Conference: {other:?}"),
        }
    }

    fn conference_warnings(xml: &str) -> (DialConference, Vec<u32>) {
        match dial_warnings(xml) {
            (
                Dial {
                    join: Some(DialJoin::Conference(c)),
                    ..
                },
                codes,
            ) => (*c, codes),
            other => panic!("not a Conference: {other:?}"),
        }
    }

    #[test]
    fn dial_queue_defaults_and_attributes() {
        let (d, warnings) =
            dial_warnings("<Response><Dial> <Queue> support </Queue> </Dial></Response>");
        assert_eq!(
            d,
            Dial {
                join: Some(DialJoin::Queue(DialQueue {
                    name: "support".into(),
                    url: None,
                    method: Method::Post,
                    reservation_sid: None,
                    post_work_activity_sid: None,
                })),
                ..Dial::default()
            }
        );
        assert!(d.targets.is_empty());
        assert_eq!(warnings, vec![]);
        let d = dial(
            r#"<Response><Dial action="/after" timeout="20" hangupOnStar="true" record="record-from-answer"><Queue url="/about-to-connect" method="GET" reservationSid="WR0123" postWorkActivitySid="WA0123">support</Queue></Dial></Response>"#,
        );
        assert_eq!(
            d.join,
            Some(DialJoin::Queue(DialQueue {
                name: "support".into(),
                url: Some("/about-to-connect".into()),
                method: Method::Get,
                reservation_sid: Some("WR0123".into()),
                post_work_activity_sid: Some("WA0123".into()),
            }))
        );
        // The <Dial> attributes still apply.
        assert_eq!(d.action.as_deref(), Some("/after"));
        assert_eq!(d.timeout, 20);
        assert!(d.hangup_on_star);
        assert_eq!(d.record, DialRecord::RecordFromAnswer);
        assert!(d.targets.is_empty());
        let err = parse(r#"<Response><Dial><Queue method="PUT">q</Queue></Dial></Response>"#)
            .unwrap_err();
        assert!(matches!(err, TwimlError::Attribute { .. }), "{err}");
    }

    #[test]
    fn dial_conference_defaults() {
        let (c, warnings) = conference_warnings(
            "<Response><Dial><Conference> Room 1234 </Conference></Dial></Response>",
        );
        assert_eq!(c, DialConference::new("Room 1234"));
        assert_eq!(warnings, vec![]);
        // Twilio's documented defaults, spelled out.
        assert!(!c.muted);
        assert_eq!(c.beep, ConferenceBeep::True);
        assert!(c.start_conference_on_enter);
        assert!(!c.end_conference_on_exit);
        assert_eq!(c.wait_url, None);
        assert_eq!(c.wait_method, Method::Post);
        assert_eq!(c.max_participants, 250);
        assert_eq!(c.record, ConferenceRecord::DoNotRecord);
        assert_eq!(c.trim, Trim::TrimSilence);
        assert_eq!(c.status_callback_method, Method::Post);
        assert_eq!(c.recording_status_callback_method, Method::Post);
        assert!(
            c.status_callback_events.is_empty() && c.recording_status_callback_events.is_empty()
        );
        assert_eq!(
            (c.region, c.coach, c.jitter_buffer_size, c.participant_label),
            (None, None, None, None)
        );
    }

    #[test]
    fn dial_conference_every_attribute() {
        let d = dial(
            r#"<Response><Dial action="/after" method="GET" timeLimit="600" callerId="+15550001111" hangupOnStar="true" recordingStatusCallback="/dial-rs">
                 <Conference muted="true" beep="onExit" startConferenceOnEnter="false" endConferenceOnExit="TRUE"
                   waitUrl="/hold.xml" waitMethod="GET" maxParticipants="2" record="record-from-start" region="ie1"
                   coach="CA0123456789abcdef0123456789ABCDEF" trim="do-not-trim"
                   statusCallback="/conf-status" statusCallbackMethod="GET" statusCallbackEvent="start end join leave mute hold modify speaker announcement START"
                   recordingStatusCallback="/rec" recordingStatusCallbackMethod="GET" recordingStatusCallbackEvent="in-progress,completed absent"
                   eventCallbackUrl="/events" jitterBufferSize="Small" participantLabel="customer">support-room</Conference>
               </Dial></Response>"#,
        );
        assert_eq!(
            d.join,
            Some(DialJoin::Conference(Box::new(DialConference {
                name: "support-room".into(),
                muted: true,
                beep: ConferenceBeep::OnExit,
                start_conference_on_enter: false,
                end_conference_on_exit: true,
                wait_url: Some("/hold.xml".into()),
                wait_method: Method::Get,
                max_participants: 2,
                record: ConferenceRecord::RecordFromStart,
                region: Some("ie1".into()),
                coach: Some("CA0123456789abcdef0123456789ABCDEF".into()),
                trim: Trim::DoNotTrim,
                status_callback: Some("/conf-status".into()),
                status_callback_method: Method::Get,
                status_callback_events: [
                    "start",
                    "end",
                    "join",
                    "leave",
                    "mute",
                    "hold",
                    "modify",
                    "speaker",
                    "announcement"
                ]
                .map(String::from)
                .to_vec(),
                recording_status_callback: Some("/rec".into()),
                recording_status_callback_method: Method::Get,
                recording_status_callback_events: ["in-progress", "completed", "absent"]
                    .map(String::from)
                    .to_vec(),
                event_callback_url: Some("/events".into()),
                jitter_buffer_size: Some("small".into()),
                participant_label: Some("customer".into()),
            })))
        );
        // The <Dial> attributes still apply, and nothing is rung.
        assert_eq!(d.action.as_deref(), Some("/after"));
        assert_eq!(d.method, Method::Get);
        assert_eq!(d.time_limit, 600);
        assert_eq!(d.caller_id.as_deref(), Some("+15550001111"));
        assert!(d.hangup_on_star);
        assert_eq!(d.recording_status_callback.as_deref(), Some("/dial-rs"));
        assert!(d.targets.is_empty());
    }

    #[test]
    fn dial_conference_wait_url_empty_means_silence() {
        let c = conference(
            r#"<Response><Dial><Conference waitUrl="">r</Conference></Dial></Response>"#,
        );
        assert_eq!(c.wait_url.as_deref(), Some(""));
        let c = conference(
            r#"<Response><Dial><Conference waitUrl="  ">r</Conference></Dial></Response>"#,
        );
        assert_eq!(c.wait_url.as_deref(), Some(""));
        let c = conference("<Response><Dial><Conference>r</Conference></Dial></Response>");
        assert_eq!(c.wait_url, None);
        // Other URLs keep the crate's rule: empty is absent.
        let c = conference(
            r#"<Response><Dial><Conference statusCallback="" eventCallbackUrl="" coach="" participantLabel="" region="">r</Conference></Dial></Response>"#,
        );
        assert_eq!(c, DialConference::new("r"));
    }

    #[test]
    fn dial_conference_beep_values() {
        for (value, expected) in [
            ("true", ConferenceBeep::True),
            ("false", ConferenceBeep::False),
            ("onEnter", ConferenceBeep::OnEnter),
            ("onExit", ConferenceBeep::OnExit),
            ("ONENTER", ConferenceBeep::OnEnter),
            (" False ", ConferenceBeep::False),
        ] {
            let (c, warnings) = conference_warnings(&format!(
                r#"<Response><Dial><Conference beep="{value}">r</Conference></Dial></Response>"#
            ));
            assert_eq!(c.beep, expected, "{value}");
            assert_eq!(warnings, vec![], "{value}");
        }
        for beep in [
            ConferenceBeep::True,
            ConferenceBeep::False,
            ConferenceBeep::OnEnter,
            ConferenceBeep::OnExit,
        ] {
            let c = conference(&format!(
                r#"<Response><Dial><Conference beep="{}">r</Conference></Dial></Response>"#,
                beep.as_str()
            ));
            assert_eq!(c.beep, beep);
        }
    }

    #[test]
    fn dial_conference_values_twilio_warns_about_use_the_default() {
        for (attrs, code) in [
            (r#"muted="yes""#, 13230),
            (r#"startConferenceOnEnter="no""#, 13232),
            (r#"waitMethod="PUT""#, 13234),
            (r#"beep="loud""#, 13235),
        ] {
            let xml =
                format!("<Response><Dial><Conference {attrs}>r</Conference></Dial></Response>");
            let (c, warnings) = conference_warnings(&xml);
            assert_eq!(c, DialConference::new("r"), "{attrs}");
            assert_eq!(warnings, vec![code], "{attrs}");
        }
        let doc = parse(
            r#"<Response><Dial><Conference muted="1" beep="2">r</Conference></Dial></Response>"#,
        )
        .unwrap();
        assert_eq!(doc.warnings.len(), 2);
        assert_eq!(
            doc.warnings[0].message,
            "<Conference> muted=\"1\" is invalid; using false"
        );
        assert_eq!(
            doc.warnings[1].message,
            "<Conference> beep=\"2\" is invalid; using true"
        );
    }

    #[test]
    fn dial_conference_bad_values_are_errors() {
        let sid = "CA0123456789abcdef0123456789abcdef";
        let long_label = "l".repeat(129);
        for attrs in [
            r#"endConferenceOnExit="yes""#.to_owned(),
            r#"maxParticipants="0""#.to_owned(),
            r#"maxParticipants="1""#.to_owned(),
            r#"maxParticipants="251""#.to_owned(),
            r#"maxParticipants="-3""#.to_owned(),
            r#"maxParticipants="many""#.to_owned(),
            r#"maxParticipants="""#.to_owned(),
            r#"record="true""#.to_owned(),
            r#"record="record-from-answer""#.to_owned(),
            r#"trim="yes""#.to_owned(),
            r#"coach="CA123""#.to_owned(),
            r#"coach="XX0123456789abcdef0123456789abcdef""#.to_owned(),
            r#"coach="CA0123456789abcdef0123456789abcdeg""#.to_owned(),
            r#"coach="CA0123456789abcdef0123456789abcdef0""#.to_owned(),
            r#"statusCallbackMethod="PUT""#.to_owned(),
            r#"recordingStatusCallbackMethod="PATCH""#.to_owned(),
            r#"statusCallbackEvent="start finish""#.to_owned(),
            r#"statusCallbackEvent="completed""#.to_owned(),
            r#"recordingStatusCallbackEvent="done""#.to_owned(),
            r#"jitterBufferSize="huge""#.to_owned(),
            format!(r#"participantLabel="{long_label}""#),
            format!(r#"participantLabel="{sid}""#),
            r#"participantLabel="team/a""#.to_owned(),
            r#"participantLabel="team%2Fa""#.to_owned(),
        ] {
            let xml =
                format!("<Response><Dial><Conference {attrs}>r</Conference></Dial></Response>");
            let err = parse(&xml).unwrap_err();
            assert!(
                matches!(err, TwimlError::Attribute { .. }),
                "{attrs}: {err}"
            );
            assert_eq!(err.code(), 12100);
        }
        // The bounds themselves are fine.
        for (attrs, max) in [
            (r#"maxParticipants="2""#, 2),
            (r#"maxParticipants=" 250 ""#, 250),
        ] {
            let xml =
                format!("<Response><Dial><Conference {attrs}>r</Conference></Dial></Response>");
            assert_eq!(conference(&xml).max_participants, max);
        }
        let label = "l".repeat(128);
        let c = conference(&format!(
            r#"<Response><Dial><Conference participantLabel="{label}" coach="{sid}">r</Conference></Dial></Response>"#
        ));
        assert_eq!(c.participant_label, Some(label));
        assert_eq!(c.coach.as_deref(), Some(sid));
        for size in ["large", "medium", "small", "off"] {
            let c = conference(&format!(
                r#"<Response><Dial><Conference jitterBufferSize="{size}">r</Conference></Dial></Response>"#
            ));
            assert_eq!(c.jitter_buffer_size.as_deref(), Some(size));
        }
    }

    #[test]
    fn dial_join_must_be_the_only_noun() {
        for (xml, mentions) in [
            (
                "<Response><Dial><Queue>q</Queue><Number>+1555</Number></Dial></Response>",
                "<Queue> next to <Number>",
            ),
            (
                "<Response><Dial><Client>alice</Client><Conference>r</Conference></Dial></Response>",
                "<Conference> next to <Client>",
            ),
            (
                "<Response><Dial><Conference>a</Conference><Conference>b</Conference></Dial></Response>",
                "<Conference> and <Conference>",
            ),
            (
                "<Response><Dial><Queue>q</Queue><Conference>r</Conference></Dial></Response>",
                "<Queue> and <Conference>",
            ),
            (
                "<Response><Dial><Queue>a</Queue><Queue>b</Queue></Dial></Response>",
                "<Queue> and <Queue>",
            ),
            (
                "<Response><Dial>+1555<Conference>r</Conference></Dial></Response>",
                "text \"+1555\" next to <Conference>",
            ),
        ] {
            let err = parse(xml).unwrap_err();
            assert!(matches!(err, TwimlError::Content { .. }), "{xml}: {err}");
            assert_eq!(err.code(), 12100);
            let message = err.to_string();
            assert!(message.contains(mentions), "{message}");
            assert!(message.contains("only noun"), "{message}");
        }
    }

    #[test]
    fn dial_join_names_are_required() {
        for xml in [
            "<Response><Dial><Queue/></Dial></Response>",
            "<Response><Dial><Queue>  </Queue></Dial></Response>",
            "<Response><Dial><Conference/></Dial></Response>",
            "<Response><Dial><Conference>\n</Conference></Dial></Response>",
        ] {
            let err = parse(xml).unwrap_err();
            assert!(matches!(err, TwimlError::Content { .. }), "{xml}: {err}");
        }
        for xml in [
            "<Response><Dial><Conference>r<Say>hi</Say></Conference></Dial></Response>",
            "<Response><Dial><Queue>q<Number>1</Number></Queue></Dial></Response>",
        ] {
            let err = parse(xml).unwrap_err();
            assert!(
                matches!(err, TwimlError::UnexpectedElement { .. }),
                "{xml}: {err}"
            );
        }
    }

    #[test]
    fn document_order_is_kept() {
        let doc = parse("<Response><Say>a</Say><Pause/><Hangup/></Response>").unwrap();
        let names: Vec<&str> = doc.verbs.iter().map(Verb::name).collect();
        assert_eq!(names, ["Say", "Pause", "Hangup"]);
    }

    #[test]
    fn structural_errors() {
        assert_eq!(parse(""), Err(TwimlError::Empty));
        assert_eq!(parse("  <?xml version=\"1.0\"?> "), Err(TwimlError::Empty));
        assert_eq!(
            parse("<Reply/>"),
            Err(TwimlError::Root {
                found: "Reply".into()
            })
        );
        assert_eq!(
            parse("<response/>"),
            Err(TwimlError::Root {
                found: "response".into()
            })
        );
        assert_eq!(
            parse("<Response><Dance/></Response>"),
            Err(TwimlError::UnexpectedElement {
                name: "Dance".into(),
                parent: "Response".into()
            })
        );
        assert!(matches!(
            parse("<Response>hello</Response>"),
            Err(TwimlError::Content { .. })
        ));
        assert!(matches!(
            parse("<Response><Hangup>x</Hangup></Response>"),
            Err(TwimlError::Content { .. })
        ));
        assert!(matches!(
            parse("<Response><Pause><Say/></Pause></Response>"),
            Err(TwimlError::UnexpectedElement { .. })
        ));
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        for xml in [
            "<Response>",
            "<Response><Say>hi</Response>",
            "<Response></Say>",
            "<Response><Say a=\"1\" a=\"2\">x</Say></Response>",
            "<Response><Say>&bogus;</Say></Response>",
            "<Response/><Response/>",
            "<Response/>trailing",
            "text<Response/>",
            "<Response><Say loop=1>x</Say></Response>",
            "<Response",
            "\u{0}\u{ffff}<<>>",
        ] {
            let err = parse(xml).unwrap_err();
            assert!(matches!(err, TwimlError::Xml { .. }), "{xml:?}: {err:?}");
            assert!(err.to_string().starts_with("malformed XML"), "{err}");
        }
    }

    #[test]
    fn mutated_documents_never_panic() {
        let verbs = br##"<?xml version="1.0"?><Response><Say voice="alice" loop="2">Hi &amp; <break/>bye</Say><Gather numDigits="3" finishOnKey="#" action="/a"><Play loop="0">x.wav</Play><Pause length="2"/></Gather><Record maxLength="30" timeout="0"/><Redirect method="GET">/r</Redirect><Dial timeout="10" record="true" action="/d"><Number sendDigits="1w2">+15551234567</Number><Client><Identity>al</Identity></Client><Sip>sip:x@y</Sip></Dial><Reject reason="busy"/><Hangup/></Response>"##;
        let queues = br##"<Response><Enqueue waitUrl="/w" maxQueueSize="50" workflowSid="WW1">sales<Task>{"a":1}</Task></Enqueue><Leave/><Dial timeout="9"><Queue url="/u" method="GET">sales</Queue></Dial><Dial action="/d"><Conference muted="true" beep="onEnter" maxParticipants="10" waitUrl="" coach="CA0123456789abcdef0123456789abcdef" statusCallbackEvent="start join" participantLabel="p">room</Conference></Dial></Response>"##;
        for base in [&verbs[..], &queues[..]] {
            mutate_and_parse(base);
        }
    }

    /// Parse 5000 random mutations of `base`; none may panic.
    fn mutate_and_parse(base: &[u8]) {
        // A fixed linear congruential generator: reproducible, and twiml needs no RNG crate.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        let mut parsed = 0;
        for _ in 0..5000 {
            let mut doc = base.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = next() % doc.len();
                match next() % 3 {
                    0 => doc[i] = b"<>/\"=&#;aZ0 "[next() % 12],
                    1 => {
                        doc.remove(i);
                    }
                    _ => doc.truncate(i),
                }
                if doc.is_empty() {
                    break;
                }
            }
            if parse(&String::from_utf8_lossy(&doc)).is_ok() {
                parsed += 1;
            }
        }
        // Some mutations land in text and still parse; most break the document.
        assert!(parsed > 0 && parsed < 5000, "{parsed}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let xml = format!(
            "<Response><Say>{}{}</Say></Response>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert!(matches!(parse(&xml), Err(TwimlError::Xml { .. })));
    }
}
