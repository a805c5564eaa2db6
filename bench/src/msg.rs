//! The few SIP messages a load-generating UAC needs, written as templates, and a minimal
//! zero-copy reader for what comes back.
//!
//! Why not the project's `sip` crate: the generator must stay far cheaper than the system under
//! test, and must keep building while that crate changes. Only the fields a UAC needs to match
//! and answer are read: start line, Call-ID, CSeq, To, Contact, Record-Route and the raw Via /
//! From / To lines to echo in a response.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// What a datagram's start line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: &'a str },
    Response { code: u16 },
}

/// A received message, borrowed from the datagram.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub start: StartLine<'a>,
    pub call_id: &'a str,
    pub cseq_num: u32,
    pub cseq_method: &'a str,
    /// Full value of the To header (name-addr plus params, including the tag).
    pub to: &'a str,
    pub from: &'a str,
    /// Contact value, as sent.
    pub contact: Option<&'a str>,
    /// Every Record-Route value in order of appearance (comma lists already split).
    pub record_route: Vec<&'a str>,
    /// Every Via value in order of appearance (kept whole, echoed in responses).
    pub vias: Vec<&'a str>,
}

/// Why a datagram was not understood. Counted, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    NotUtf8,
    NoHeaderEnd,
    BadStartLine,
    MissingHeader(&'static str),
    BadCSeq,
}

/// Parses the header part of a SIP datagram. Bodies are ignored: the UAC never reads SDP.
pub fn parse(datagram: &[u8]) -> Result<Parsed<'_>, ParseError> {
    // Only the head is decoded; a binary body must not make the message unreadable.
    let head_end = find(datagram, b"\r\n\r\n").ok_or(ParseError::NoHeaderEnd)?;
    let head = std::str::from_utf8(&datagram[..head_end]).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split("\r\n");
    let first = lines.next().ok_or(ParseError::BadStartLine)?;
    let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        let code = rest.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or(ParseError::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStartLine);
        }
        StartLine::Response { code }
    } else {
        let mut parts = first.split(' ');
        let method = parts.next().filter(|m| !m.is_empty()).ok_or(ParseError::BadStartLine)?;
        let _uri = parts.next().ok_or(ParseError::BadStartLine)?;
        if parts.next() != Some("SIP/2.0") {
            return Err(ParseError::BadStartLine);
        }
        StartLine::Request { method }
    };

    let mut call_id = None;
    let mut cseq = None;
    let mut to = None;
    let mut from = None;
    let mut contact = None;
    let mut record_route = Vec::new();
    let mut vias = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("call-id") || name == "i" {
            call_id = Some(value);
        } else if name.eq_ignore_ascii_case("cseq") {
            cseq = Some(value);
        } else if name.eq_ignore_ascii_case("to") || name == "t" {
            to = Some(value);
        } else if name.eq_ignore_ascii_case("from") || name == "f" {
            from = Some(value);
        } else if name.eq_ignore_ascii_case("contact") || name == "m" {
            contact.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("record-route") {
            record_route.extend(split_list(value));
        } else if name.eq_ignore_ascii_case("via") || name == "v" {
            vias.extend(split_list(value));
        }
    }
    let cseq = cseq.ok_or(ParseError::MissingHeader("CSeq"))?;
    let (num, method) = cseq.split_once(' ').ok_or(ParseError::BadCSeq)?;
    let cseq_num = num.trim().parse().map_err(|_| ParseError::BadCSeq)?;
    Ok(Parsed {
        start,
        call_id: call_id.ok_or(ParseError::MissingHeader("Call-ID"))?,
        cseq_num,
        cseq_method: method.trim(),
        to: to.ok_or(ParseError::MissingHeader("To"))?,
        from: from.ok_or(ParseError::MissingHeader("From"))?,
        contact,
        record_route,
        vias,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a header value on commas that are outside `<...>` and quotes.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// The URI inside a name-addr (`"x" <sip:a@b>;p`) or an addr-spec with params (`sip:a@b;p`).
pub fn uri_of(value: &str) -> &str {
    if let Some(open) = value.find('<') {
        let rest = &value[open + 1..];
        return rest.find('>').map_or(rest, |close| &rest[..close]);
    }
    // addr-spec form: header params start at the first ';' after the URI.
    value.split(';').next().unwrap_or(value).trim()
}

/// Host and port of a SIP URI as a socket address, when the host is an IP literal.
/// A URI without a port means 5060 (UDP).
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("SIP:"))?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?', '>']).next()?;
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let ip: IpAddr = host.parse().ok()?;
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 5060,
    };
    Some(SocketAddr::new(ip, port))
}

/// Fixed per-run parts of the messages a UAC sends.
#[derive(Debug, Clone)]
pub struct Templates {
    /// Request-URI and To URI of the INVITE, e.g. `sip:+15550001000@127.0.0.1:5080`.
    pub target_uri: String,
    /// `host:port` this UAC's socket is bound to; goes into Via and Contact.
    pub local: SocketAddr,
    /// User part of From.
    pub from_user: String,
    /// Where the SDP offer says RTP should be sent.
    pub rtp_addr: SocketAddr,
    /// Distinguishes this run's Call-IDs, tags and branches from any earlier run.
    pub run_id: u32,
}

impl Templates {
    pub fn call_id(&self, call: u64) -> String {
        format!("{call}.{:08x}@sipload", self.run_id)
    }

    fn local_from(&self, call: u64) -> String {
        format!("<sip:{}@{}>;tag=f{call}.{:08x}", self.from_user, self.local, self.run_id)
    }

    fn branch(&self, call: u64, which: &str) -> String {
        format!("z9hG4bK{:08x}.{call}.{which}", self.run_id)
    }

    /// The INVITE with a PCMU (+ telephone-event) offer.
    pub fn invite(&self, call: u64) -> Vec<u8> {
        let ip = self.rtp_addr.ip();
        let sdp = format!(
            "v=0\r\no=sipload {call} 1 IN IP4 {ip}\r\ns=sipload\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
            port = self.rtp_addr.port()
        );
        let mut m = String::with_capacity(700);
        // Writing into a String cannot fail.
        let _ = write!(
            m,
            "INVITE {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: <{uri}>\r\n\
             Call-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{user}@{local}>\r\n\
             User-Agent: sipload\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            uri = self.target_uri,
            local = self.local,
            branch = self.branch(call, "i"),
            from = self.local_from(call),
            cid = self.call_id(call),
            user = self.from_user,
            len = sdp.len(),
        );
        m.into_bytes()
    }

    /// ACK for a non-2xx final response: same branch as the INVITE, To from the response
    /// (RFC 3261 17.1.1.3).
    pub fn ack_non2xx(&self, call: u64, to: &str) -> Vec<u8> {
        format!(
            "ACK {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            uri = self.target_uri,
            local = self.local,
            branch = self.branch(call, "i"),
            from = self.local_from(call),
            cid = self.call_id(call),
        )
        .into_bytes()
    }

    /// An in-dialog request (ACK for the 2xx, or BYE) on a new branch.
    pub fn in_dialog(&self, call: u64, method: &str, cseq: u32, dialog: &DialogInfo) -> Vec<u8> {
        let mut m = String::with_capacity(400);
        let _ = write!(
            m,
            "{method} {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n",
            target = dialog.remote_target,
            local = self.local,
            branch = self.branch(call, if method == "ACK" { "a" } else { "b" }),
        );
        for route in &dialog.route_set {
            let _ = write!(m, "Route: {route}\r\n");
        }
        let _ = write!(
            m,
            "From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n\
             User-Agent: sipload\r\n\
             Content-Length: 0\r\n\r\n",
            from = self.local_from(call),
            to = dialog.remote_to,
            cid = self.call_id(call),
        );
        m.into_bytes()
    }
}

/// What the UAC learns from the 2xx to build in-dialog requests (RFC 3261 12.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogInfo {
    /// Request-URI of ACK and BYE: the Contact of the 2xx (or the original target).
    pub remote_target: String,
    /// Record-Route reversed, each value kept whole.
    pub route_set: Vec<String>,
    /// The To header of the 2xx, with the remote tag.
    pub remote_to: String,
    /// Where ACK and BYE go: first route if any, else the remote target, else `fallback`.
    pub next_hop: SocketAddr,
}

impl DialogInfo {
    pub fn from_2xx(resp: &Parsed<'_>, original_target: &str, fallback: SocketAddr) -> Self {
        let remote_target = resp.contact.map_or(original_target, uri_of).to_string();
        let route_set: Vec<String> = resp.record_route.iter().rev().map(|r| r.to_string()).collect();
        let next_hop = match route_set.first() {
            // Loose routing is assumed: every proxy we bench against sets ;lr.
            Some(first) => uri_addr(uri_of(first)),
            None => uri_addr(&remote_target),
        }
        .unwrap_or(fallback);
        DialogInfo { remote_target, route_set, remote_to: resp.to.to_string(), next_hop }
    }
}

/// A stateless response to a request from the peer (its BYE): Via, From, To, Call-ID and CSeq
/// copied, as RFC 3261 8.2.6.2 asks.
pub fn response_to(req: &Parsed<'_>, code: u16, reason: &str) -> Vec<u8> {
    let mut m = String::with_capacity(400);
    let _ = write!(m, "SIP/2.0 {code} {reason}\r\n");
    for via in &req.vias {
        let _ = write!(m, "Via: {via}\r\n");
    }
    let _ = write!(
        m,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\nContent-Length: 0\r\n\r\n",
        req.from, req.to, req.call_id, req.cseq_num, req.cseq_method
    );
    m.into_bytes()
}

/// The call number this run encoded in a Call-ID, if it is one of ours.
pub fn call_number(call_id: &str, run_id: u32) -> Option<u64> {
    let (num, rest) = call_id.split_once('.')?;
    let (run, host) = rest.split_once('@')?;
    if host != "sipload" || u32::from_str_radix(run, 16).ok()? != run_id {
        return None;
    }
    num.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Templates {
        Templates {
            target_uri: "sip:+15550001000@127.0.0.1:5080".into(),
            local: "127.0.0.1:5070".parse().unwrap(),
            from_user: "+15550002000".into(),
            rtp_addr: "127.0.0.1:40000".parse().unwrap(),
            run_id: 0xabc,
        }
    }

    #[test]
    fn invite_round_trips_through_the_reader() {
        let t = templates();
        let bytes = t.invite(42);
        let p = parse(&bytes).unwrap();
        assert_eq!(p.start, StartLine::Request { method: "INVITE" });
        assert_eq!(p.call_id, "42.00000abc@sipload");
        assert_eq!((p.cseq_num, p.cseq_method), (1, "INVITE"));
        assert_eq!(call_number(p.call_id, 0xabc), Some(42));
        assert_eq!(call_number(p.call_id, 0xabd), None);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        assert!(body.contains("m=audio 40000 RTP/AVP 0 101"));
    }

    #[test]
    fn reads_a_proxied_200_with_compact_forms_and_route_lists() {
        let resp = b"SIP/2.0 200 OK\r\n\
            v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport=5070, SIP/2.0/UDP 10.0.0.1\r\n\
            Record-Route: <sip:127.0.0.1:15060;lr;ftag=a>, <sip:10.0.0.9;lr>\r\n\
            Record-Route: <sip:10.0.0.8;lr>\r\n\
            f: <sip:a@127.0.0.1>;tag=x\r\n\
            t: <sip:+1555@127.0.0.1>;tag=remote\r\n\
            i: 7.00000abc@sipload\r\n\
            CSeq: 1 INVITE\r\n\
            m: <sip:uas@127.0.0.1:15090;transport=udp>\r\n\
            Content-Length: 0\r\n\r\n";
        let p = parse(resp).unwrap();
        assert_eq!(p.start, StartLine::Response { code: 200 });
        assert_eq!(p.vias.len(), 2);
        assert_eq!(p.record_route.len(), 3);
        let d = DialogInfo::from_2xx(&p, "sip:x@127.0.0.1", "127.0.0.1:1".parse().unwrap());
        assert_eq!(d.remote_target, "sip:uas@127.0.0.1:15090;transport=udp");
        assert_eq!(d.route_set[0], "<sip:10.0.0.8;lr>");
        assert_eq!(d.route_set[2], "<sip:127.0.0.1:15060;lr;ftag=a>");
        assert_eq!(d.next_hop, "10.0.0.8:5060".parse().unwrap());
        assert_eq!(d.remote_to, "<sip:+1555@127.0.0.1>;tag=remote");

        let bye = templates().in_dialog(7, "BYE", 2, &d);
        let b = parse(&bye).unwrap();
        assert_eq!(b.start, StartLine::Request { method: "BYE" });
        assert_eq!((b.cseq_num, b.cseq_method), (2, "BYE"));
        assert!(String::from_utf8(bye).unwrap().starts_with("BYE sip:uas@127.0.0.1:15090;transport=udp SIP/2.0\r\n"));
    }

    #[test]
    fn without_contact_or_routes_the_dialog_falls_back_to_the_target() {
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>;tag=1\r\n\
            To: <sip:b@c>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let p = parse(resp).unwrap();
        let fallback = "127.0.0.1:9".parse().unwrap();
        let d = DialogInfo::from_2xx(&p, "sip:n@127.0.0.1:5080", fallback);
        assert_eq!(d.remote_target, "sip:n@127.0.0.1:5080");
        assert_eq!(d.next_hop, "127.0.0.1:5080".parse().unwrap());
        assert!(d.route_set.is_empty());
    }

    #[test]
    fn answers_a_bye_echoing_vias_and_cseq() {
        let bye = b"BYE sip:sipload@127.0.0.1:5070 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKq\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bKp\r\n\
            From: <sip:+1555@127.0.0.1>;tag=remote\r\nTo: <sip:u@h>;tag=mine\r\n\
            Call-ID: 3.00000abc@sipload\r\nCSeq: 101 BYE\r\nContent-Length: 0\r\n\r\n";
        let p = parse(bye).unwrap();
        let r = String::from_utf8(response_to(&p, 200, "OK")).unwrap();
        assert!(r.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKq\r\nVia: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bKp\r\n"));
        assert!(r.contains("CSeq: 101 BYE\r\n"));
        assert!(r.contains("To: <sip:u@h>;tag=mine\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"SIP/2.0 2\r\n\r\n",
            b"SIP/2.0 999 X\r\nCSeq: 1 INVITE\r\n\r\n",
            b"INVITE\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCSeq: x\r\nCall-ID: a\r\nTo: a\r\nFrom: b\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uri_helpers() {
        assert_eq!(uri_of("\"A\" <sip:a@b:1;x>;tag=1"), "sip:a@b:1;x");
        assert_eq!(uri_of("sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(uri_addr("sip:a@127.0.0.1:7;lr"), Some("127.0.0.1:7".parse().unwrap()));
        assert_eq!(uri_addr("sip:127.0.0.1;lr"), Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(uri_addr("sip:[::1]:9"), Some("[::1]:9".parse().unwrap()));
        assert_eq!(uri_addr("sip:host.example"), None);
        assert_eq!(uri_addr("tel:+1"), None);
    }
}
