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
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
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
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
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

fn names_match(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

/// Header fields in arrival order. Names keep the spelling they were received or pushed with;
/// look-ups are case-insensitive and treat compact forms as their long names. Values are
/// stored unfolded (each CRLF+LWS continuation replaced by one space) and trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.entries.push((name.to_string(), value.to_string()));
    }

    /// Inserts before every other header field (a new top Via).
    pub fn push_front(&mut self, name: &str, value: &str) {
        self.entries.insert(0, (name.to_string(), value.to_string()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| names_match(n, name)).map(|(_, v)| v.as_str())
    }

    /// Every header line of `name`, in order. A line may itself hold a comma list.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.iter().filter(move |(n, _)| names_match(n, name)).map(|(_, v)| v.as_str())
    }

    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    /// Removes every line of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !names_match(n, name));
    }

    /// Replaces the first line of `name` in place, or appends it.
    pub fn set(&mut self, name: &str, value: &str) {
        let mut seen = false;
        self.entries.retain_mut(|(n, v)| {
            if !names_match(n, name) {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *v = value.to_string();
            true
        });
        if !seen {
            self.push(name, value);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
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
        let Some(entry) = self.entries.iter_mut().find(|(n, _)| names_match(n, "Via")) else {
            return;
        };
        let elements = split_list(&entry.1);
        let mut value = via.to_string();
        for rest in elements.iter().skip(1) {
            value.push_str(", ");
            value.push_str(rest);
        }
        entry.1 = value;
    }

    /// `Route` or `Record-Route` elements as name-addrs, in order.
    pub fn routes(&self, name: &str) -> Vec<NameAddr> {
        self.elements(name).filter_map(NameAddr::parse).collect()
    }

    pub fn max_forwards(&self) -> Option<u32> {
        parse_u32_digits(trim_lws(self.get("Max-Forwards")?))
    }

    fn write(&self, out: &mut Vec<u8>, body_len: usize) {
        for (name, value) in &self.entries {
            if names_match(name, "Content-Length") {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {body_len}\r\n\r\n").as_bytes());
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
        for (name, value) in request.headers.iter() {
            let copy = names_match(name, "Via")
                || names_match(name, "From")
                || names_match(name, "To")
                || names_match(name, "Call-ID")
                || names_match(name, "CSeq")
                || ((101..300).contains(&status) && names_match(name, "Record-Route"));
            if copy {
                resp.headers.push(expand_compact(name), value);
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

fn validate_common(headers: &Headers) -> Result<(), ParseError> {
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
    let mut headers = Headers::new();
    let mut current: Option<(&str, String)> = None;
    for line in lines {
        if line.contains('\r') {
            return Err(ParseError::BadHeaderLine);
        }
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation (RFC 3261 §7.3.1): joins the previous line with one SP.
            let (_, value) = current.as_mut().ok_or(ParseError::BadHeaderLine)?;
            let more = trim_lws(line);
            if !more.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
            }
            continue;
        }
        if let Some((name, value)) = current.take() {
            headers.entries.push((name.to_string(), value));
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::BadHeaderLine)?;
        let name = trim_lws(name);
        if !is_token(name) {
            return Err(ParseError::BadHeaderLine);
        }
        current = Some((name, trim_lws(value).to_string()));
    }
    if let Some((name, value)) = current.take() {
        headers.entries.push((name.to_string(), value));
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
