//! SIP messages (RFC 3261 §7): parsing a datagram into a [`Message`], validating what a
//! transaction layer relies on, and serializing back to bytes.

use std::fmt;
use std::str::FromStr;

use crate::header::{
    is_token, is_valid_uri, parse_u32_digits, sip_uri_hostpart, split_list, trim_lws, NameAddr, Via,
    ViaError,
};

/// Transport a message arrived on or leaves by. Retransmission timers only run over UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over WebSocket (RFC 7118): a browser's connection, which only it can open.
    Ws,
    /// SIP over secure WebSocket.
    Wss,
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// WebSocket transports: the peer opened the connection and only it can, so requests to it go
    /// back over that connection whatever its Contact says (RFC 7118 §5).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }
}

/// Why a message was rejected. `Display` is short enough to be the reason phrase of the
/// 400 (or 505) response sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("Empty message")]
    Empty,
    #[error("Incomplete header section")]
    Incomplete,
    #[error("Header section too large")]
    HeadersTooLarge,
    #[error("Body too large")]
    BodyTooLarge,
    #[error("Headers are not UTF-8")]
    NotUtf8,
    #[error("Bad Request-Line")]
    BadRequestLine,
    #[error("Bad Status-Line")]
    BadStatusLine,
    #[error("Bad Method")]
    BadMethod,
    #[error("Bad Request-URI")]
    BadRequestUri,
    #[error("Bad Status Code")]
    BadStatusCode,
    #[error("Version Not Supported")]
    VersionNotSupported,
    #[error("Bad header line")]
    BadHeaderLine,
    #[error("Missing {0}")]
    MissingHeader(&'static str),
    #[error("Multiple {0}")]
    DuplicateHeader(&'static str),
    #[error("Bad {0}")]
    BadHeader(&'static str),
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    #[error("Content-Length larger than message")]
    BodyTruncated,
    /// A control character (other than HTAB) in a header value, outside a quoted-pair
    /// (RFC 3261 §25: TEXT-UTF8 and LWS only).
    #[error("Control character in {0}")]
    ControlCharacter(String),
}

impl ParseError {
    /// The status code a server answers this fault with (RFC 3261 §8.2, RFC 4475 3.1.2.16).
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::VersionNotSupported => 505,
            _ => 400,
        }
    }
}

/// A SIP method. Methods are case-sensitive tokens (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Extension(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl FromStr for Method {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Method, ParseError> {
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other if is_token(other) => Method::Extension(other.to_string()),
            _ => return Err(ParseError::BadMethod),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Long name for a compact form (RFC 3261 §7.3.3 and the extensions that define one).
fn expand_compact(name: &str) -> &str {
    let [letter] = name.as_bytes() else {
        return name;
    };
    match letter.to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'f' => "From",
        b't' => "To",
        b'v' => "Via",
        b'm' => "Contact",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'k' => "Supported",
        b's' => "Subject",
        b'e' => "Content-Encoding",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'u' => "Allow-Events",
        b'x' => "Session-Expires",
        _ => name,
    }
}

/// A header name the look-ups know by number: index + 1 into [`KNOWN_NAMES`]; 0 is any
/// other name. Each known id stands for its long name in any case and for its compact form,
/// so two names match exactly when their ids are equal, or both are 0 and they are equal
/// ignoring ASCII case.
type NameId = u8;

const OTHER_NAME: NameId = 0;

/// Every name with a compact form, then the ones a SIP node looks up on every message.
const KNOWN_NAMES: [&str; 34] = [
    "Call-ID",
    "From",
    "To",
    "Via",
    "Contact",
    "Content-Length",
    "Content-Type",
    "Supported",
    "Subject",
    "Content-Encoding",
    "Event",
    "Refer-To",
    "Referred-By",
    "Allow-Events",
    "Session-Expires",
    "CSeq",
    "Max-Forwards",
    "Route",
    "Record-Route",
    "Date",
    "User-Agent",
    "Server",
    "Allow",
    "Expires",
    "Min-Expires",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Authorization",
    "WWW-Authenticate",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "RSeq",
    "RAck",
];

/// Classifies a header name: one `match` on its length and first and last letters picks the
/// only known name it can be, then one case-insensitive compare confirms it.
fn name_id(name: &str) -> NameId {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return OTHER_NAME;
    };
    let (first, last) = (first.to_ascii_lowercase(), last.to_ascii_lowercase());
    let id = match (bytes.len(), first, last) {
        // Compact forms (RFC 3261 §7.3.3): the first 15 KNOWN_NAMES, in the same order.
        (1, ..) => {
            return match first {
                b'i' => 1,
                b'f' => 2,
                b't' => 3,
                b'v' => 4,
                b'm' => 5,
                b'l' => 6,
                b'c' => 7,
                b'k' => 8,
                b's' => 9,
                b'e' => 10,
                b'o' => 11,
                b'r' => 12,
                b'b' => 13,
                b'u' => 14,
                b'x' => 15,
                _ => OTHER_NAME,
            }
        }
        (2, b't', b'o') => 3,
        (3, b'v', b'a') => 4,
        (4, b'c', b'q') => 16,
        (4, b'd', b'e') => 20,
        (4, b'f', b'm') => 2,
        (4, b'r', b'k') => 34,
        (4, b'r', b'q') => 33,
        (5, b'a', b'w') => 23,
        (5, b'e', b't') => 11,
        (5, b'r', b'e') => 18,
        (6, b's', b'r') => 22,
        (7, b'c', b'd') => 1,
        (7, b'c', b't') => 5,
        (7, b'e', b's') => 24,
        (7, b'r', b'e') => 26,
        (7, b's', b't') => 9,
        (8, b'r', b'o') => 12,
        (9, b's', b'd') => 8,
        (10, b'u', b't') => 21,
        (11, b'm', b's') => 25,
        (11, b'r', b'y') => 13,
        (11, b'u', b'd') => 28,
        (12, b'a', b's') => 14,
        (12, b'c', b'e') => 7,
        (12, b'm', b's') => 17,
        (12, b'r', b'e') => 19,
        (13, b'a', b'n') => 29,
        (13, b'p', b'e') => 27,
        (14, b'c', b'h') => 6,
        (15, b's', b's') => 15,
        (16, b'c', b'g') => 10,
        (16, b'w', b'e') => 30,
        (18, b'p', b'e') => 32,
        (19, b'p', b'n') => 31,
        _ => return OTHER_NAME,
    };
    match KNOWN_NAMES.get(usize::from(id) - 1) {
        Some(known) if known.eq_ignore_ascii_case(name) => id,
        _ => OTHER_NAME,
    }
}

/// Whether a header named `a` (classified as `a_id`) is the header `b`.
fn id_matches(a_id: NameId, a: &str, b_id: NameId, b: &str) -> bool {
    if a_id != OTHER_NAME || b_id != OTHER_NAME {
        return a_id == b_id;
    }
    a.eq_ignore_ascii_case(b)
}

/// One header line: `text[start..name_end]` is the name, `text[name_end..end]` the value.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    name_end: usize,
    end: usize,
    id: NameId,
}

/// Header fields in arrival order. Names keep the spelling they were received or pushed with;
/// look-ups are case-insensitive and treat compact forms as their long names. Values are
/// stored unfolded (each CRLF+LWS continuation replaced by one space) and trimmed.
///
/// All names and values live in one string and each line is a set of offsets into it with
/// its name's id, so a parsed message costs two allocations rather than two per header, and
/// finding a well-known header compares one byte per line.
#[derive(Clone, Default)]
pub struct Headers {
    text: String,
    entries: Vec<Entry>,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Headers").field("entries", &self.iter().collect::<Vec<_>>()).finish()
    }
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    fn with_capacity(bytes: usize, lines: usize) -> Headers {
        Headers { text: String::with_capacity(bytes), entries: Vec::with_capacity(lines) }
    }

    fn name_of(&self, entry: &Entry) -> &str {
        self.text.get(entry.start..entry.name_end).unwrap_or_default()
    }

    fn value_of(&self, entry: &Entry) -> &str {
        self.text.get(entry.name_end..entry.end).unwrap_or_default()
    }

    /// Appends `name` and `value` to the text and returns their entry.
    fn store(&mut self, name: &str, value: &str) -> Entry {
        let start = self.text.len();
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        Entry { start, name_end, end: self.text.len(), id: name_id(name) }
    }

    /// The lines named `name`.
    fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let id = name_id(name);
        // Known names compare ids only; other names also need their text compared.
        self.entries
            .iter()
            .filter(move |e| e.id == id && (id != OTHER_NAME || self.name_of(e).eq_ignore_ascii_case(name)))
    }

    /// Rewrites the text without the bytes replaced values left behind, once they outweigh
    /// the live ones (only `set`, `remove` and `set_top_via` leave any).
    fn reclaim(&mut self) {
        let live: usize = self.entries.iter().map(|e| e.end - e.start).sum();
        if self.text.len() <= 2 * live + 1024 {
            return;
        }
        let mut fresh = Headers::with_capacity(live, self.entries.len());
        for entry in &self.entries {
            let stored = fresh.store(self.name_of(entry), self.value_of(entry));
            fresh.entries.push(stored);
        }
        *self = fresh;
    }

    pub fn push(&mut self, name: &str, value: &str) {
        let entry = self.store(name, value);
        self.entries.push(entry);
    }

    /// Inserts before every other header field (a new top Via).
    pub fn push_front(&mut self, name: &str, value: &str) {
        let entry = self.store(name, value);
        self.entries.insert(0, entry);
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.matching(name).next().map(|e| self.value_of(e))
    }

    /// Every header line of `name`, in order. A line may itself hold a comma list.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.matching(name).map(|e| self.value_of(e))
    }

    pub fn count(&self, name: &str) -> usize {
        self.matching(name).count()
    }

    /// Removes every line of `name`.
    pub fn remove(&mut self, name: &str) {
        let id = name_id(name);
        let text = &self.text;
        self.entries.retain(|e| !id_matches(e.id, text.get(e.start..e.name_end).unwrap_or_default(), id, name));
        self.reclaim();
    }

    /// Replaces the first line of `name` in place, or appends it.
    pub fn set(&mut self, name: &str, value: &str) {
        let id = name_id(name);
        let text = &self.text;
        let mut first = None;
        let mut index = 0;
        self.entries.retain(|e| {
            let i = index;
            index += 1;
            if !id_matches(e.id, text.get(e.start..e.name_end).unwrap_or_default(), id, name) {
                return true;
            }
            if first.is_some() {
                return false;
            }
            first = Some(i);
            true
        });
        match first {
            Some(i) => self.replace_value(i, value),
            None => self.push(name, value),
        }
        self.reclaim();
    }

    /// Gives line `index` (of the entries as they are now) a new value, keeping its name.
    fn replace_value(&mut self, index: usize, value: &str) {
        let Some(&old) = self.entries.get(index) else { return };
        let name = old.start..old.name_end;
        let start = self.text.len();
        self.text.extend_from_within(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        if let Some(entry) = self.entries.get_mut(index) {
            *entry = Entry { start, name_end, end: self.text.len(), id: old.id };
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|e| (self.name_of(e), self.value_of(e)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every comma-separated element of every line of `name`.
    pub fn elements<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name).flat_map(split_list)
    }

    pub fn call_id(&self) -> Option<&str> {
        self.get("Call-ID")
    }

    pub fn cseq(&self) -> Option<(u32, Method)> {
        parse_cseq(self.get("CSeq")?).ok()
    }

    pub fn from(&self) -> Option<NameAddr> {
        NameAddr::parse(self.get("From")?)
    }

    pub fn to(&self) -> Option<NameAddr> {
        NameAddr::parse(self.get("To")?)
    }

    pub fn contact(&self) -> Option<NameAddr> {
        self.elements("Contact").next().and_then(NameAddr::parse)
    }

    pub fn vias(&self) -> Vec<Via> {
        self.elements("Via").filter_map(Via::parse).collect()
    }

    pub fn top_via(&self) -> Option<Via> {
        self.elements("Via").next().and_then(Via::parse)
    }

    /// Replaces the top Via element, keeping the rest of its line.
    pub(crate) fn set_top_via(&mut self, via: &Via) {
        let Some(index) = self.entries.iter().position(|e| e.id == name_id("Via")) else {
            return;
        };
        let mut value = via.to_string();
        if let Some(entry) = self.entries.get(index) {
            for rest in split_list(self.value_of(entry)).iter().skip(1) {
                value.push_str(", ");
                value.push_str(rest);
            }
        }
        self.replace_value(index, &value);
        self.reclaim();
    }

    /// `Route` or `Record-Route` elements as name-addrs, in order.
    pub fn routes(&self, name: &str) -> Vec<NameAddr> {
        self.elements(name).filter_map(NameAddr::parse).collect()
    }

    pub fn max_forwards(&self) -> Option<u32> {
        parse_u32_digits(trim_lws(self.get("Max-Forwards")?))
    }

    fn write(&self, out: &mut Vec<u8>, body_len: usize) {
        let content_length = name_id("Content-Length");
        for entry in self.entries.iter().filter(|e| e.id != content_length) {
            out.extend_from_slice(self.name_of(entry).as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(self.value_of(entry).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body_len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    }
}

fn parse_cseq(value: &str) -> Result<(u32, Method), ParseError> {
    let mut words = value.split([' ', '\t']).filter(|w| !w.is_empty());
    let (Some(num), Some(method), None) = (words.next(), words.next(), words.next()) else {
        return Err(ParseError::BadHeader("CSeq"));
    };
    let num = parse_u32_digits(num).ok_or(ParseError::BadHeader("CSeq"))?;
    let method = method.parse().map_err(|_| ParseError::BadHeader("CSeq"))?;
    Ok((num, method))
}

macro_rules! header_accessors {
    () => {
        pub fn call_id(&self) -> Option<&str> {
            self.headers.call_id()
        }
        pub fn cseq(&self) -> Option<(u32, Method)> {
            self.headers.cseq()
        }
        pub fn from(&self) -> Option<NameAddr> {
            self.headers.from()
        }
        pub fn to(&self) -> Option<NameAddr> {
            self.headers.to()
        }
        pub fn contact(&self) -> Option<NameAddr> {
            self.headers.contact()
        }
        pub fn vias(&self) -> Vec<Via> {
            self.headers.vias()
        }
        pub fn top_via(&self) -> Option<Via> {
            self.headers.top_via()
        }
        /// Sets the body and its Content-Type (Content-Length is written by `to_bytes`).
        pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
            self.headers.set("Content-Type", content_type);
            self.body = body;
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: Method, uri: &str) -> Request {
        Request { method, uri: uri.to_string(), headers: Headers::new(), body: Vec::new() }
    }

    header_accessors!();

    /// Serializes with a Content-Length that matches the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(format!("{} {} SIP/2.0\r\n", self.method, self.uri).as_bytes());
        self.headers.write(&mut out, self.body.len());
        out.extend_from_slice(&self.body);
        out
    }

    /// Whether the Request-URI's scheme is one a UAS serves: `sip`, `sips` or `tel`, in any
    /// case. Another scheme is well-formed (RFC 4475 3.1.1.10) but gets 416 Unsupported URI
    /// Scheme from the UA core (RFC 3261 §8.2.2.1).
    pub fn has_supported_uri_scheme(&self) -> bool {
        let scheme = self.uri.split_once(':').map_or("", |(scheme, _)| scheme);
        ["sip", "sips", "tel"].iter().any(|s| scheme.eq_ignore_ascii_case(s))
    }

    /// Checks what RFC 3261 §8.2 and the transaction layer need: one To, From, Call-ID and
    /// CSeq that parse, at least one Via, CSeq method = request method, Max-Forwards 0-255.
    pub fn validate(&self) -> Result<(), ParseError> {
        if !is_valid_uri(&self.uri) {
            return Err(ParseError::BadRequestUri);
        }
        // Headers are not allowed in a Request-URI (RFC 3261 19.1.5, RFC 4475 3.1.2.11).
        if sip_uri_hostpart(&self.uri).is_some_and(|h| h.contains('?')) {
            return Err(ParseError::BadRequestUri);
        }
        validate_common(&self.headers)?;
        let (_, method) = parse_cseq(single(&self.headers, "CSeq")?)?;
        if method != self.method {
            return Err(ParseError::CSeqMethodMismatch);
        }
        if self.headers.count("Max-Forwards") > 1 {
            return Err(ParseError::DuplicateHeader("Max-Forwards"));
        }
        if let Some(mf) = self.headers.get("Max-Forwards") {
            match parse_u32_digits(trim_lws(mf)) {
                Some(n) if n <= 255 => {}
                _ => return Err(ParseError::BadHeader("Max-Forwards")),
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(code: u16, reason: &str) -> Response {
        Response { code, reason: reason.to_string(), headers: Headers::new(), body: Vec::new() }
    }

    /// A response to `request` carrying its Via, From, To, Call-ID and CSeq (RFC 3261
    /// §8.2.6.2), plus Record-Route for dialog-creating responses (§12.1.1).
    pub fn from_request(request: &Request, status: u16, reason: &str) -> Response {
        let mut resp = Response::new(status, reason);
        let copied = ["Via", "From", "To", "Call-ID", "CSeq"].map(name_id);
        let record_route = name_id("Record-Route");
        let headers = &request.headers;
        for entry in &headers.entries {
            if copied.contains(&entry.id) || ((101..300).contains(&status) && entry.id == record_route) {
                resp.headers.push(expand_compact(headers.name_of(entry)), headers.value_of(entry));
            }
        }
        resp
    }

    header_accessors!();

    pub fn status(&self) -> u16 {
        self.code
    }

    /// Adds (or replaces) the To tag.
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Some(mut to) = self.headers.to() {
            to.set_param("tag", Some(tag));
            self.headers.set("To", &to.to_string());
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(format!("SIP/2.0 {:03} {}\r\n", self.code, self.reason).as_bytes());
        self.headers.write(&mut out, self.body.len());
        out.extend_from_slice(&self.body);
        out
    }

    pub fn validate(&self) -> Result<(), ParseError> {
        if !(100..=699).contains(&self.code) {
            return Err(ParseError::BadStatusCode);
        }
        validate_common(&self.headers)?;
        parse_cseq(single(&self.headers, "CSeq")?)?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    pub fn validate(&self) -> Result<(), ParseError> {
        match self {
            Message::Request(r) => r.validate(),
            Message::Response(r) => r.validate(),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Message {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Message {
        Message::Response(r)
    }
}

fn single<'a>(headers: &'a Headers, name: &'static str) -> Result<&'a str, ParseError> {
    let mut all = headers.get_all(name);
    let first = all.next().ok_or(ParseError::MissingHeader(name))?;
    if all.next().is_some() {
        return Err(ParseError::DuplicateHeader(name));
    }
    Ok(first)
}

/// Whether a header value holds a control character that RFC 3261's grammar (§25) has no place
/// for: anything below SP but HTAB, and DEL, unless escaped as a quoted-pair inside a
/// quoted-string (`"a\<ctl>b"`; quoted-pair excludes only CR and LF, which never reach here).
fn has_bare_control(value: &str) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for b in value.bytes() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'\t' => {}
            0..=0x1f | 0x7f => return true,
            _ => {}
        }
    }
    false
}

fn validate_common(headers: &Headers) -> Result<(), ParseError> {
    for entry in &headers.entries {
        if has_bare_control(headers.value_of(entry)) {
            return Err(ParseError::ControlCharacter(expand_compact(headers.name_of(entry)).to_owned()));
        }
    }
    let mut vias = 0;
    for element in headers.elements("Via") {
        match Via::parse_detailed(element) {
            Ok(_) => vias += 1,
            Err(ViaError::Version) => return Err(ParseError::VersionNotSupported),
            Err(ViaError::Syntax) => return Err(ParseError::BadHeader("Via")),
        }
    }
    if vias == 0 {
        return Err(ParseError::MissingHeader("Via"));
    }
    NameAddr::parse(single(headers, "From")?).ok_or(ParseError::BadHeader("From"))?;
    NameAddr::parse(single(headers, "To")?).ok_or(ParseError::BadHeader("To"))?;
    let call_id = single(headers, "Call-ID")?;
    if call_id.is_empty() || call_id.bytes().any(|b| b <= b' ') {
        return Err(ParseError::BadHeader("Call-ID"));
    }
    single(headers, "CSeq")?;
    for (name, label) in [("Contact", "Contact"), ("Route", "Route"), ("Record-Route", "Record-Route")] {
        for element in headers.elements(name) {
            // `Contact: *` is the REGISTER wildcard.
            if name == "Contact" && element == "*" {
                continue;
            }
            NameAddr::parse(element).ok_or(ParseError::BadHeader(label))?;
        }
    }
    // Only GMT is legal in a SIP-date (RFC 3261 20.17, RFC 4475 3.1.2.12).
    if let Some(date) = headers.get("Date") {
        if !date.ends_with("GMT") {
            return Err(ParseError::BadHeader("Date"));
        }
    }
    Ok(())
}

/// Largest header section accepted, on UDP and by the TCP framer.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The header section split from a buffer: where it ends and where the body starts.
pub(crate) struct Head<'a> {
    pub start_line: &'a str,
    pub headers: Headers,
    pub body_start: usize,
}

/// Finds the end of the header section (an empty line) after skipping leading CRLFs.
/// Returns (offset of first non-CRLF byte, offset of the body), or `None` if incomplete.
pub(crate) fn find_head(bytes: &[u8]) -> Option<(usize, usize)> {
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let mut line_start = start;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let line = &bytes[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some((start, i + 1));
            }
            line_start = i + 1;
        }
        i += 1;
    }
    None
}

/// Parses the start line and header fields (no validation beyond line syntax).
pub(crate) fn parse_head(bytes: &[u8]) -> Result<Head<'_>, ParseError> {
    if bytes.iter().all(|&b| b == b'\r' || b == b'\n') {
        return Err(ParseError::Empty);
    }
    let (start, body_start) = match find_head(bytes) {
        Some(found) => found,
        None if bytes.len() > MAX_HEADER_BYTES => return Err(ParseError::HeadersTooLarge),
        None => return Err(ParseError::Incomplete),
    };
    if body_start - start > MAX_HEADER_BYTES {
        return Err(ParseError::HeadersTooLarge);
    }
    let head = std::str::from_utf8(&bytes[start..body_start]).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or("");
    if start_line.contains('\r') {
        return Err(ParseError::BadHeaderLine);
    }
    let mut headers = Headers::with_capacity(head.len(), 16);
    // The line being read (its value may still grow by folded continuations).
    let mut current: Option<Entry> = None;
    for line in lines {
        if line.contains('\r') {
            return Err(ParseError::BadHeaderLine);
        }
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation (RFC 3261 §7.3.1): joins the previous line with one SP.
            let entry = current.as_mut().ok_or(ParseError::BadHeaderLine)?;
            let more = trim_lws(line);
            if !more.is_empty() {
                if entry.end > entry.name_end {
                    headers.text.push(' ');
                }
                headers.text.push_str(more);
                entry.end = headers.text.len();
            }
            continue;
        }
        if let Some(entry) = current.take() {
            headers.entries.push(entry);
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::BadHeaderLine)?;
        let name = trim_lws(name);
        if !is_token(name) {
            return Err(ParseError::BadHeaderLine);
        }
        current = Some(headers.store(name, trim_lws(value)));
    }
    if let Some(entry) = current.take() {
        headers.entries.push(entry);
    }
    Ok(Head { start_line, headers, body_start })
}

/// Content-Length of a header section: `Ok(None)` if absent.
pub(crate) fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut all = headers.get_all("Content-Length");
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(ParseError::DuplicateHeader("Content-Length"));
    }
    let value = trim_lws(first);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadHeader("Content-Length"));
    }
    let len = value
        .bytes()
        .try_fold(0usize, |acc, b| acc.checked_mul(10)?.checked_add(usize::from(b - b'0')))
        .ok_or(ParseError::BodyTooLarge)?;
    if len > MAX_BODY_BYTES {
        return Err(ParseError::BodyTooLarge);
    }
    Ok(Some(len))
}

fn parse_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    match v.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("SIP/") => Err(ParseError::VersionNotSupported),
        _ => Err(ParseError::BadRequestLine),
    }
}

/// Parses without checking required headers: the transaction layer uses this to answer a
/// malformed request with 400 when it carries enough to address a response.
pub fn parse_message_unchecked(bytes: &[u8]) -> Result<Message, ParseError> {
    parse_inner(bytes, false)
}

/// A request that failed to parse (another SIP version, a Content-Length beyond the datagram
/// or negative, ...), parsed again only as far as needed to address its 400 or 505: any
/// version, and the body left empty when its framing is wrong.
pub(crate) fn parse_request_for_reply(bytes: &[u8]) -> Option<Request> {
    match parse_inner(bytes, true) {
        Ok(Message::Request(r)) => Some(r),
        _ => None,
    }
}

fn parse_inner(bytes: &[u8], for_reply: bool) -> Result<Message, ParseError> {
    let head = parse_head(bytes)?;
    let rest = &bytes[head.body_start..];
    // UDP framing (RFC 3261 §18.3): Content-Length bounds the body and extra octets are
    // ignored; a Content-Length beyond the datagram is an error; no Content-Length means the
    // rest of the datagram.
    let body = match content_length(&head.headers) {
        Ok(Some(len)) => match rest.get(..len) {
            Some(body) => body,
            None if for_reply => &[],
            None => return Err(ParseError::BodyTruncated),
        },
        Ok(None) if rest.len() > MAX_BODY_BYTES => {
            if !for_reply {
                return Err(ParseError::BodyTooLarge);
            }
            &[]
        }
        Ok(None) => rest,
        Err(_) if for_reply => &[],
        Err(e) => return Err(e),
    }
    .to_vec();
    let line = head.start_line;
    if let Some(status_line) = line.strip_prefix("SIP/").map(|_| line) {
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code = parts.next().ok_or(ParseError::BadStatusLine)?;
        let reason = parts.next().ok_or(ParseError::BadStatusLine)?;
        parse_version(version).map_err(|e| match e {
            ParseError::VersionNotSupported => e,
            _ => ParseError::BadStatusLine,
        })?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadStatusCode);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::BadStatusCode)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStatusCode);
        }
        return Ok(Message::Response(Response {
            code,
            reason: reason.to_string(),
            headers: head.headers,
            body,
        }));
    }
    // Exactly one SP between the elements (RFC 4475 3.1.2.8-3.1.2.10 are rejected).
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadRequestLine);
    };
    match parse_version(version) {
        Err(ParseError::VersionNotSupported) if for_reply => {}
        other => other?,
    }
    let method: Method = method.parse()?;
    if !is_valid_uri(uri) {
        return Err(ParseError::BadRequestUri);
    }
    Ok(Message::Request(Request { method, uri: uri.to_string(), headers: head.headers, body }))
}

/// Parses one message from a UDP datagram (or one message cut by [`crate::StreamFramer`])
/// and validates it.
pub fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    let msg = parse_message_unchecked(bytes)?;
    msg.validate()?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OPTIONS with `name: value` in place of (or beside) its usual headers.
    fn options_with(name: &str, value: &str) -> Vec<u8> {
        let from = if name == "From" { String::new() } else { "From: <sip:a@127.0.0.1>;tag=1\r\n".to_owned() };
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             {from}To: <sip:b@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
             {name}: {value}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn control_characters_in_header_values_are_refused_unless_quoted_pairs() {
        for (name, value) in [("Subject", "a\0b"), ("Subject", "bell\x07"), ("Subject", "del\x7f"), ("X-Note", "\x1b[31m"),
                              ("From", "\"Al\x01ce\" <sip:a@127.0.0.1>;tag=1")] {
            let bytes = options_with(name, value);
            let err = parse_message(&bytes).unwrap_err();
            assert_eq!(err, ParseError::ControlCharacter(name.to_owned()), "{value:?}");
            assert_eq!(err.status_code(), 400);
            // Still addressable: the transaction layer answers it with 400.
            assert!(parse_request_for_reply(&bytes).is_some(), "{value:?}");
        }
        for (name, value) in [("Subject", "tab\there"), ("Subject", "Grüße"), ("From", "\"Al\\\x01ce\" <sip:a@127.0.0.1>;tag=1"),
                              ("From", "\"say \\\"hi\\\"\" <sip:a@127.0.0.1>;tag=1")] {
            assert_eq!(parse_message(&options_with(name, value)).err(), None, "{value:?}");
        }
    }

    #[test]
    fn request_uri_schemes_a_uas_serves() {
        for (uri, served) in [("sip:a@b", true), ("SIPS:a@b", true), ("tel:+15550001111", true), ("Tel:1", true),
                              ("http://a/b", false), ("urn:service:sos", false), ("nobodyKnowsThisScheme:x", false)] {
            assert_eq!(Request::new(Method::Options, uri).has_supported_uri_scheme(), served, "{uri}");
        }
    }

    const INVITE: &[u8] = b"INVITE sip:bob@[2001:db8::1]:5060 SIP/2.0\r\n\
v: SIP/2.0/UDP [2001:db8::2]:5060;branch=z9hG4bKabc, SIP/2.0/UDP 10.0.0.1\r\n\
Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKdef\r\n\
f: \"Alice, A.\" <sip:alice@example.com>;tag=1\r\n\
t: <sip:bob@example.com>\r\n\
i: abc@host\r\n\
CSeq: 1\r\n INVITE\r\n\
Max-Forwards: 70\r\n\
m: <sip:alice@[2001:db8::2]>\r\n\
c: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\nEXTRA";

    #[test]
    fn parses_compact_folded_ipv6() {
        let Message::Request(req) = parse_message(INVITE).unwrap() else { panic!("not a request") };
        assert_eq!(req.method, Method::Invite);
        assert_eq!(req.call_id(), Some("abc@host"));
        assert_eq!(req.cseq(), Some((1, Method::Invite)));
        let vias = req.vias();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].host, "2001:db8::2");
        assert_eq!(vias[1].sent_by(), "10.0.0.1");
        assert_eq!(req.from().unwrap().display.as_deref(), Some("Alice, A."));
        assert_eq!(req.headers.get("content-type"), Some("application/sdp"));
        assert_eq!(req.body, b"v=0\r");
        let Message::Request(again) = parse_message(&req.to_bytes()).unwrap() else { panic!("not a request") };
        assert_eq!(again.vias(), vias);
        assert_eq!(again.body, req.body);
        assert_eq!(again.headers.get("Content-Length"), Some("4"));
        assert_eq!(again.headers.len(), req.headers.len());
    }

    #[test]
    fn missing_and_bad_headers_name_the_fault() {
        let base = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n";
        let msg = |extra: &str, drop: &str| {
            let text: String = base.lines().filter(|l| drop.is_empty() || !l.starts_with(drop)).map(|l| format!("{l}\r\n")).collect();
            parse_message(format!("{text}{extra}\r\n").as_bytes())
        };
        assert!(msg("", "").is_ok());
        assert_eq!(msg("", "Call-ID").unwrap_err().to_string(), "Missing Call-ID");
        assert_eq!(msg("", "CSeq").unwrap_err(), ParseError::MissingHeader("CSeq"));
        assert_eq!(msg("Max-Forwards: 256\r\n", "").unwrap_err().to_string(), "Bad Max-Forwards");
        assert_eq!(msg("CSeq: 2 OPTIONS\r\n", "").unwrap_err().to_string(), "Multiple CSeq");
        assert_eq!(msg("", "Via").unwrap_err().to_string(), "Missing Via");
        assert_eq!(msg("Content-Length: 10\r\n", "").unwrap_err(), ParseError::BodyTruncated);
        let bad_cseq = base.replace("1 OPTIONS", "99999999999 OPTIONS");
        assert_eq!(parse_message(format!("{bad_cseq}\r\n").as_bytes()).unwrap_err().to_string(), "Bad CSeq");
        let v = base.replace("SIP/2.0\r\n", "SIP/3.0\r\n");
        assert_eq!(parse_message(format!("{v}\r\n").as_bytes()).unwrap_err().status_code(), 505);
    }

    #[test]
    fn response_from_request_copies_dialog_headers() {
        let Message::Request(req) = parse_message(INVITE).unwrap() else { panic!("not a request") };
        let mut resp = Response::from_request(&req, 180, "Ringing");
        resp.set_to_tag("xyz");
        assert_eq!(resp.to().unwrap().tag(), Some("xyz"));
        assert_eq!(resp.vias().len(), 3);
        assert_eq!(resp.cseq(), Some((1, Method::Invite)));
        assert!(resp.headers.get("Contact").is_none());
        let bytes = resp.to_bytes();
        assert!(bytes.starts_with(b"SIP/2.0 180 Ringing\r\n"));
        let Message::Response(again) = parse_message(&bytes).unwrap() else { panic!("not a response") };
        assert_eq!(again.status(), 180);
        assert_eq!(again.call_id(), Some("abc@host"));
    }

    /// The name classification agrees with the plain definition of a header-name match:
    /// compact forms expanded, then ASCII case ignored.
    #[test]
    fn name_ids_match_like_expanded_names() {
        for (i, known) in KNOWN_NAMES.iter().enumerate() {
            assert_eq!(usize::from(name_id(known)), i + 1, "{known}");
            assert_eq!(name_id(&known.to_ascii_uppercase()), name_id(known));
        }
        let mut names: Vec<String> = KNOWN_NAMES.iter().map(|n| n.to_string()).collect();
        names.extend((b'a'..=b'z').map(|b| char::from(b).to_string()));
        names.extend((b'A'..=b'Z').map(|b| char::from(b).to_string()));
        names.extend(["call-id", "CALL-ID", "Call-IDs", "Contacts", "X-Call-ID", "Rseq", "RAKC", "Fron", "Vi", "Via2", "X", "", "Route-X"].map(String::from));
        for a in &names {
            for b in &names {
                let expected = expand_compact(a).eq_ignore_ascii_case(expand_compact(b));
                assert_eq!(id_matches(name_id(a), a, name_id(b), b), expected, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn headers_set_remove_and_reclaim() {
        let mut h = Headers::new();
        h.push("Via", "SIP/2.0/UDP a, SIP/2.0/UDP b");
        h.push("X-Custom", "1");
        h.push("x-custom", "2");
        h.push("To", "<sip:b@example.com>");
        for i in 0..2000 {
            h.set("X-CUSTOM", &format!("value {i}"));
        }
        assert_eq!(h.get_all("x-custom").collect::<Vec<_>>(), vec!["value 1999"]);
        assert!(h.text.len() < 4096, "replaced values are reclaimed: {}", h.text.len());
        h.set_top_via(&Via::parse("SIP/2.0/UDP c;branch=z9hG4bKc").unwrap());
        assert_eq!(h.get("v"), Some("SIP/2.0/UDP c;branch=z9hG4bKc, SIP/2.0/UDP b"));
        h.remove("t");
        assert_eq!(h.iter().map(|(n, _)| n).collect::<Vec<_>>(), vec!["Via", "X-Custom"]);
        h.push_front("Route", "<sip:p>");
        assert_eq!(h.iter().next(), Some(("Route", "<sip:p>")));
        let mut other = Headers::new();
        for (n, v) in h.iter() {
            other.push(n, v);
        }
        assert_eq!(other, h, "equality ignores how the text is laid out");
    }

    #[test]
    fn headers_api() {
        let mut h = Headers::new();
        h.push("v", "SIP/2.0/UDP a");
        h.push("Via", "SIP/2.0/UDP b");
        h.push("Content-Length", "5");
        assert_eq!(h.get_all("VIA").count(), 2);
        h.set("via", "SIP/2.0/UDP c");
        assert_eq!(h.get_all("Via").collect::<Vec<_>>(), vec!["SIP/2.0/UDP c"]);
        let mut out = Vec::new();
        h.write(&mut out, 0);
        assert_eq!(out, b"v: SIP/2.0/UDP c\r\nContent-Length: 0\r\n\r\n");
    }
}
