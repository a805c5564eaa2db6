//! Typed views over header values: name-addr (To, From, Contact, Route), Via, CSeq, and the
//! low-level splitting rules (comma lists, `;` parameters, quoted strings) they share.
//!
//! The views are parsed on demand from the raw header text kept in [`crate::Headers`]; a view
//! that does not parse is a syntax error of the message, reported by [`crate::ParseError`].

use std::fmt;

/// A header or URI parameter: `name` or `name=value`.
pub type Param = (String, Option<String>);

/// RFC 3261 `token` characters.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Splits a header value into its comma-separated elements, ignoring commas inside quoted
/// strings and `<...>`. Elements are trimmed; empty elements are kept so callers can reject
/// them (`Via: a;;,;,,` is malformed, RFC 4475 3.1.2.1).
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' if !in_angle => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => {
                out.push(trim_lws(&value[start..i]));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(trim_lws(value.get(start..).unwrap_or("")));
    out
}

/// Parses `*( SEMI param )`, where the input starts at the first `;` (or is blank).
/// `param = token [ EQUAL ( token / host / quoted-string ) ]`, LWS allowed around `;` and `=`.
pub(crate) fn parse_params(s: &str) -> Option<Vec<Param>> {
    let s = trim_lws(s);
    let mut params = Vec::new();
    if s.is_empty() {
        return Some(params);
    }
    let rest = s.strip_prefix(';')?;
    for raw in split_semis(rest)? {
        let raw = trim_lws(raw);
        let (name, value) = match raw.find('=') {
            Some(eq) => (trim_lws(&raw[..eq]), Some(trim_lws(&raw[eq + 1..]))),
            None => (raw, None),
        };
        if !is_token(name) {
            return None;
        }
        let value = match value {
            None => None,
            Some(v) if v.starts_with('"') => {
                let (_, end) = parse_quoted(v)?;
                if end != v.len() {
                    return None;
                }
                Some(v.to_string())
            }
            Some(v) => {
                // token / host (IPv6 references carry `[`, `]` and `:`).
                if v.is_empty()
                    || !v.bytes().all(|b| is_token_char(b) || b == b':' || b == b'[' || b == b']')
                {
                    return None;
                }
                Some(v.to_string())
            }
        };
        params.push((name.to_string(), value));
    }
    Some(params)
}

/// Splits on `;` outside quoted strings. Fails on an unterminated quote.
fn split_semis(s: &str) -> Option<Vec<&str>> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_quotes {
        return None;
    }
    out.push(s.get(start..).unwrap_or(""));
    Some(out)
}

/// Parses a quoted string at the start of `s`; returns the unescaped content and the byte
/// index just past the closing quote.
pub(crate) fn parse_quoted(s: &str) -> Option<(String, usize)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, i + 1)),
            _ => out.push(c),
        }
    }
    None
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref().unwrap_or(""))
}

/// `scheme ":" rest` with no whitespace, no `<`/`>` and a scheme of
/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
pub(crate) fn is_valid_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    scheme_ok
        && !rest.is_empty()
        && !uri
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"')
}

/// The part of a sip/sips URI after the userinfo (`host[:port][;params][?headers]`), or
/// `None` for other schemes.
pub(crate) fn sip_uri_hostpart(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    // userinfo cannot hold an unescaped '@', and neither can params or headers.
    Some(rest.rsplit_once('@').map_or(rest, |(_, host)| host))
}

/// A `name-addr` / `addr-spec` header value with header parameters (To, From, Contact,
/// Route, Record-Route). `display` is the unquoted display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Vec<Param>,
}

impl NameAddr {
    /// A bare `<uri>` with no display name or parameters.
    pub fn new(uri: &str) -> NameAddr {
        NameAddr { display: None, uri: uri.to_string(), params: Vec::new() }
    }

    /// Parses one element of the header value (already split from a comma list).
    pub fn parse(s: &str) -> Option<NameAddr> {
        let s = trim_lws(s);
        let (display, rest) = if s.starts_with('"') {
            let (display, end) = parse_quoted(s)?;
            let rest = trim_lws(&s[end..]);
            if !rest.starts_with('<') {
                return None;
            }
            (Some(display), rest)
        } else if let Some(lt) = s.find('<') {
            let name = trim_lws(&s[..lt]);
            // Unquoted display names are `*(token LWS)`: a comma or quote makes it invalid
            // (RFC 4475 3.1.2.15).
            if !name.split([' ', '\t']).all(|w| w.is_empty() || is_token(w)) {
                return None;
            }
            let display = if name.is_empty() { None } else { Some(name.to_string()) };
            (display, &s[lt..])
        } else {
            // addr-spec: everything after the first ';' is header parameters, so the URI
            // cannot carry `;`, `?` or `,` (RFC 3261 20, RFC 4475 3.1.2.13).
            let (uri, params) = match s.find(';') {
                Some(i) => (trim_lws(&s[..i]), &s[i..]),
                None => (s, ""),
            };
            if !is_valid_uri(uri) || uri.contains('?') || uri.contains(',') {
                return None;
            }
            return Some(NameAddr { display: None, uri: uri.to_string(), params: parse_params(params)? });
        };
        // rest starts with '<'
        let gt = rest.find('>')?;
        let uri = &rest[1..gt];
        if !is_valid_uri(uri) {
            return None;
        }
        let params = parse_params(&rest[gt + 1..])?;
        Some(NameAddr { display, uri: uri.to_string(), params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag")
    }

    /// Sets (or replaces) a header parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self.params.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(p) => p.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display) = &self.display {
            f.write_str("\"")?;
            for c in display.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// One Via header value: `SIP/2.0/<transport> host[:port];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

/// Result of parsing a Via whose protocol is not SIP/2.0 (answered with 505).
pub(crate) enum ViaError {
    Syntax,
    Version,
}

impl Via {
    pub fn new(transport: &str, sent_by: &str, branch: &str) -> Option<Via> {
        let (host, port) = parse_host_port(sent_by)?;
        Some(Via {
            transport: transport.to_string(),
            host,
            port,
            params: vec![("branch".to_string(), Some(branch.to_string()))],
        })
    }

    pub fn parse(s: &str) -> Option<Via> {
        Via::parse_detailed(s).ok()
    }

    pub(crate) fn parse_detailed(s: &str) -> Result<Via, ViaError> {
        let s = trim_lws(s);
        let (proto, params) = match s.find(';') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let mut parts = proto.splitn(3, '/');
        let name = trim_lws(parts.next().ok_or(ViaError::Syntax)?);
        let version = trim_lws(parts.next().ok_or(ViaError::Syntax)?);
        let rest = trim_lws(parts.next().ok_or(ViaError::Syntax)?);
        if !name.eq_ignore_ascii_case("SIP") || !is_token(version) {
            return Err(ViaError::Syntax);
        }
        if version != "2.0" {
            return Err(ViaError::Version);
        }
        let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
        let transport = words.next().ok_or(ViaError::Syntax)?;
        let sent_by = words.next().ok_or(ViaError::Syntax)?;
        if words.next().is_some() || !is_token(transport) {
            return Err(ViaError::Syntax);
        }
        let (host, port) = parse_host_port(sent_by).ok_or(ViaError::Syntax)?;
        let params = parse_params(params).ok_or(ViaError::Syntax)?;
        Ok(Via { transport: transport.to_string(), host, port, params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch")
    }

    pub fn received(&self) -> Option<&str> {
        self.param("received")
    }

    /// `Some(None)` for a bare `;rport`, `Some(Some(port))` once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.parse().ok())
    }

    /// `host[:port]`, with IPv6 hosts in brackets.
    pub fn sent_by(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    /// The branch carries the RFC 3261 magic cookie and something after it.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.len() > 7 && b.starts_with("z9hG4bK"))
    }

    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self.params.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(p) => p.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.sent_by())?;
        write_params(f, &self.params)
    }
}

/// `host[:port]` where host is a hostname, IPv4 address or `[IPv6]`. The returned host has no
/// brackets.
pub(crate) fn parse_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']')?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
        let port = match rest {
            "" => None,
            r => Some(r.strip_prefix(':')?),
        };
        (addr, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = host.contains(':')
        || (!host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    Some((host.to_string(), port))
}

/// Decimal digits only (leading zeros allowed, as in `0009`), checked against overflow.
pub(crate) fn parse_u32_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u32, |acc, b| acc.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8").unwrap();
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.uri, "sip:jdrosen@example.com");
        assert_eq!(n.tag(), Some("98asjd8"));

        let n = NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.uri, "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(n.tag(), Some("1918181833n"));

        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));

        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_none());
        assert!(NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").is_none());
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_none());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_none());
        assert!(NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").is_none());
        let round = NameAddr::parse(&n.to_string()).unwrap();
        assert_eq!(round, n);
    }

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());

        let v = Via::parse("SIP/2.0/TCP [::1]:5060;branch=z9hG4bKx;rport").unwrap();
        assert_eq!(v.host, "::1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.sent_by(), "[::1]:5060");
        assert_eq!(v.rport(), Some(None));
        assert!(v.has_rfc3261_branch());
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);

        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_none());
        assert!(Via::parse("SIP/2.0/UDP host:99999").is_none());
        assert!(matches!(Via::parse_detailed("SIP/7.0/UDP c.example.com"), Err(ViaError::Version)));
    }

    #[test]
    fn lists_respect_quotes_and_angles() {
        assert_eq!(
            split_list("\"a,b\" <sip:x@y;p=1,2>, <sip:z@w>"),
            vec!["\"a,b\" <sip:x@y;p=1,2>", "<sip:z@w>"]
        );
        assert_eq!(split_list("a;;,;,,"), vec!["a;;", ";", "", ""]);
    }
}
