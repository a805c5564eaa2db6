//! SDP (RFC 4566) for audio calls and the offer/answer rules of RFC 3264 that Dialtone
//! needs: pick G.711 from an offer, keep its telephone-event payload type, detect hold, and
//! write answers and offers.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP syntax error on line {line}")]
    Syntax { line: usize },
    #[error("SDP must start with v=0")]
    Version,
    #[error("SDP has no o= line")]
    MissingOrigin,
    #[error("bad port on line {line}")]
    BadPort { line: usize },
    #[error("no connection address for the audio stream")]
    MissingConnection,
    #[error("connection address is not an IP address")]
    BadAddress,
    /// No audio stream offers a codec we support: answer 488.
    #[error("no common codec")]
    NoCommonCodec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// The static RTP/AVP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    fn from_rtpmap(encoding: &str, clock_rate: u32) -> Option<Codec> {
        match (encoding.to_ascii_uppercase().as_str(), clock_rate) {
            ("PCMU", 8000) => Some(Codec::Pcmu),
            ("PCMA", 8000) => Some(Codec::Pcma),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answer's direction for an offer's (RFC 3264 §6.1).
    pub fn mirror(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub protocol: String,
    pub formats: Vec<String>,
    /// Media-level c= address (without a `/ttl` suffix).
    pub connection: Option<String>,
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attribute(&self.attributes, name)
    }

    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name == name)
    }

    /// `a=rtpmap:<pt> <encoding>/<clock rate>[/channels]` for `pt`.
    pub fn rtpmap(&self, pt: u8) -> Option<(&str, u32)> {
        self.attributes.iter().filter(|a| a.name == "rtpmap").find_map(|a| {
            let (num, map) = a.value.as_deref()?.split_once(' ')?;
            if num.trim().parse::<u8>().ok()? != pt {
                return None;
            }
            let mut parts = map.trim().split('/');
            let encoding = parts.next()?;
            let rate = parts.next()?.parse().ok()?;
            Some((encoding, rate))
        })
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes.iter().filter(|a| a.name == "fmtp").find_map(|a| {
            let (num, params) = a.value.as_deref()?.split_once(' ')?;
            (num.trim().parse::<u8>().ok()? == pt).then_some(params.trim())
        })
    }

    fn direction(&self) -> Option<Direction> {
        self.attributes.iter().find_map(|a| Direction::from_attribute(&a.name))
    }

    fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse().ok())
    }
}

fn attribute<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a str> {
    attributes.iter().find(|a| a.name == name).map(|a| a.value.as_deref().unwrap_or(""))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    /// Session-level c= address (without a `/ttl` suffix).
    pub connection: Option<String>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

/// `IN IP4 <addr>[/ttl[/n]]` → `<addr>`.
fn parse_connection(value: &str, line: usize) -> Result<String, SdpError> {
    let mut parts = value.split_whitespace();
    let (Some(_net), Some(_addr_type), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SdpError::Syntax { line });
    };
    Ok(addr.split('/').next().unwrap_or(addr).to_string())
}

impl SessionDescription {
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        let mut sd = SessionDescription {
            origin: Origin::default(),
            session_name: String::new(),
            connection: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let mut seen_version = false;
        let mut seen_origin = false;
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.trim().is_empty() {
                continue;
            }
            // A '=' second byte means the first byte is ASCII, so index 2 is a char boundary.
            let (kind, value) = match raw.as_bytes() {
                [k, b'=', ..] => (*k, &raw[2..]),
                _ => return Err(SdpError::Syntax { line }),
            };
            if !seen_version {
                if kind != b'v' || value.trim() != "0" {
                    return Err(SdpError::Version);
                }
                seen_version = true;
                continue;
            }
            match kind {
                b'o' => {
                    let f: Vec<&str> = value.split_whitespace().collect();
                    let [username, session_id, session_version, _net, _addr_type, address] = f.as_slice() else {
                        return Err(SdpError::Syntax { line });
                    };
                    sd.origin = Origin {
                        username: username.to_string(),
                        session_id: session_id.to_string(),
                        session_version: session_version.to_string(),
                        address: address.to_string(),
                    };
                    seen_origin = true;
                }
                b's' => sd.session_name = value.to_string(),
                b'c' => {
                    let addr = parse_connection(value, line)?;
                    match sd.media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => sd.connection = Some(addr),
                    }
                }
                b'm' => {
                    let mut f = value.split_whitespace();
                    let (Some(media), Some(port), Some(protocol)) = (f.next(), f.next(), f.next()) else {
                        return Err(SdpError::Syntax { line });
                    };
                    let port = port.split('/').next().unwrap_or("");
                    let port = port.parse::<u16>().map_err(|_| SdpError::BadPort { line })?;
                    sd.media.push(MediaDescription {
                        media: media.to_string(),
                        port,
                        protocol: protocol.to_string(),
                        formats: f.map(str::to_string).collect(),
                        connection: None,
                        attributes: Vec::new(),
                    });
                }
                b'a' => {
                    let attr = match value.split_once(':') {
                        Some((n, v)) => Attribute { name: n.to_string(), value: Some(v.to_string()) },
                        None => Attribute { name: value.to_string(), value: None },
                    };
                    match sd.media.last_mut() {
                        Some(m) => m.attributes.push(attr),
                        None => sd.attributes.push(attr),
                    }
                }
                // t, b, k, i, u, e, p, z, r: not needed to negotiate audio.
                _ => {}
            }
        }
        if !seen_version {
            return Err(SdpError::Version);
        }
        if !seen_origin {
            return Err(SdpError::MissingOrigin);
        }
        Ok(sd)
    }

    /// The direction of a media line: its own attribute, else the session's, else sendrecv.
    pub fn direction(&self, media: &MediaDescription) -> Direction {
        media
            .direction()
            .or_else(|| self.attributes.iter().find_map(|a| Direction::from_attribute(&a.name)))
            .unwrap_or(Direction::SendRecv)
    }
}

/// An m-line of the offer, kept so the answer can mirror every line in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    pub media: String,
    pub protocol: String,
    pub formats: Vec<String>,
}

/// The outcome of negotiating an offer: where to send RTP/RTCP and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub remote_rtp: SocketAddr,
    pub remote_rtcp: SocketAddr,
    pub codec: Codec,
    /// The offer's telephone-event/8000 payload type, kept in the answer.
    pub telephone_event_pt: Option<u8>,
    pub ptime_ms: u32,
    /// Our direction in the answer (the offer's, mirrored).
    pub direction: Direction,
    /// The peer holds the call: sendonly/inactive, or the RFC 2543 `c=0.0.0.0`.
    pub on_hold: bool,
    /// The payload type the offer used for `codec` (the static one unless it mapped it).
    pub payload_type: u8,
    /// Index of the chosen audio line among `offer_media`.
    pub media_index: usize,
    pub offer_media: Vec<OfferedMedia>,
}

fn is_rtp_avp(protocol: &str) -> bool {
    protocol.eq_ignore_ascii_case("RTP/AVP") || protocol.eq_ignore_ascii_case("RTP/AVPF")
}

/// Chooses the first audio stream with a codec we support, and the first such codec in the
/// offer's preference order.
pub fn negotiate(offer: &SessionDescription, supported: &[Codec]) -> Result<Negotiated, SdpError> {
    for (index, m) in offer.media.iter().enumerate() {
        if m.media != "audio" || m.port == 0 || !is_rtp_avp(&m.protocol) {
            continue;
        }
        let chosen = m.payload_types().find_map(|pt| {
            let codec = match m.rtpmap(pt) {
                Some((encoding, rate)) => Codec::from_rtpmap(encoding, rate),
                None if pt == 0 => Some(Codec::Pcmu),
                None if pt == 8 => Some(Codec::Pcma),
                None => None,
            }?;
            supported.contains(&codec).then_some((codec, pt))
        });
        let Some((codec, payload_type)) = chosen else { continue };
        let telephone_event_pt = m.payload_types().find(|&pt| {
            m.rtpmap(pt).is_some_and(|(e, rate)| e.eq_ignore_ascii_case("telephone-event") && rate == 8000)
        });
        let address = m.connection.as_ref().or(offer.connection.as_ref()).ok_or(SdpError::MissingConnection)?;
        let ip: IpAddr = address.parse().map_err(|_| SdpError::BadAddress)?;
        let offered_direction = offer.direction(m);
        let on_hold = ip.is_unspecified() || matches!(offered_direction, Direction::SendOnly | Direction::Inactive);
        let remote_rtp = SocketAddr::new(ip, m.port);
        // a=rtcp (RFC 3605) wins; otherwise RTP port + 1. We do not answer rtcp-mux, so the
        // offerer falls back to a separate RTCP port (RFC 5761 §5.1.1).
        let remote_rtcp = m
            .attribute("rtcp")
            .and_then(|v| {
                let mut f = v.split_whitespace();
                let port: u16 = f.next()?.parse().ok()?;
                let addr = f.nth(2).and_then(|a| a.parse().ok()).unwrap_or(ip);
                Some(SocketAddr::new(addr, port))
            })
            .unwrap_or_else(|| SocketAddr::new(ip, m.port.saturating_add(1)));
        let ptime_ms = m.attribute("ptime").and_then(|p| p.trim().parse().ok()).filter(|&p| p > 0).unwrap_or(20);
        return Ok(Negotiated {
            remote_rtp,
            remote_rtcp,
            codec,
            telephone_event_pt,
            ptime_ms,
            direction: offered_direction.mirror(),
            on_hold,
            payload_type,
            media_index: index,
            offer_media: offer
                .media
                .iter()
                .map(|m| OfferedMedia { media: m.media.clone(), protocol: m.protocol.clone(), formats: m.formats.clone() })
                .collect(),
        });
    }
    Err(SdpError::NoCommonCodec)
}

fn session_header(out: &mut String, local_ip: IpAddr, session_id: u64, version: u64) {
    let ip_type = if local_ip.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(out, "v=0\r\no=- {session_id} {version} IN {ip_type} {local_ip}\r\ns=-\r\nc=IN {ip_type} {local_ip}\r\nt=0 0\r\n");
}

/// The answer to the offer `negotiated` came from: same m-lines in the same order, port 0
/// on every line but the chosen audio one (RFC 3264 §6).
pub fn answer(negotiated: &Negotiated, local_ip: IpAddr, local_port: u16, session_id: u64, version: u64) -> String {
    let mut out = String::new();
    session_header(&mut out, local_ip, session_id, version);
    let audio = |out: &mut String, protocol: &str| {
        let pt = negotiated.payload_type;
        let _ = write!(out, "m=audio {local_port} {protocol} {pt}");
        if let Some(te) = negotiated.telephone_event_pt {
            let _ = write!(out, " {te}");
        }
        let _ = write!(out, "\r\na=rtpmap:{pt} {}/8000\r\n", negotiated.codec.encoding_name());
        if let Some(te) = negotiated.telephone_event_pt {
            let _ = write!(out, "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n");
        }
        let _ = write!(out, "a=ptime:{}\r\na={}\r\n", negotiated.ptime_ms, negotiated.direction.as_str());
    };
    if negotiated.offer_media.is_empty() {
        audio(&mut out, "RTP/AVP");
        return out;
    }
    for (index, m) in negotiated.offer_media.iter().enumerate() {
        if index == negotiated.media_index {
            audio(&mut out, &m.protocol);
        } else {
            let formats = if m.formats.is_empty() { "0".to_string() } else { m.formats.join(" ") };
            let _ = write!(out, "m={} 0 {} {formats}\r\n", m.media, m.protocol);
        }
    }
    out
}

/// Our own offer: PCMU, PCMA, telephone-event 101 (0-16), 20 ms.
pub fn offer(local_ip: IpAddr, local_port: u16, session_id: u64, version: u64) -> String {
    let mut out = String::new();
    session_header(&mut out, local_ip, session_id, version);
    let _ = write!(
        out,
        "m=audio {local_port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PJSUA: &str = "v=0\r\n\
o=- 3908061845 3908061845 IN IP4 192.168.1.20\r\n\
s=pjmedia\r\n\
b=AS:84\r\n\
t=0 0\r\n\
a=X-nat:0\r\n\
m=audio 4000 RTP/AVP 96 97 98 99 3 0 8 9 120 121 122\r\n\
c=IN IP4 192.168.1.20\r\n\
b=TIAS:64000\r\n\
a=rtcp:4001 IN IP4 192.168.1.20\r\n\
a=sendrecv\r\n\
a=rtpmap:96 speex/16000\r\n\
a=rtpmap:97 speex/8000\r\n\
a=rtpmap:98 speex/32000\r\n\
a=rtpmap:99 iLBC/8000\r\n\
a=fmtp:99 mode=30\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:120 telephone-event/8000\r\n\
a=fmtp:120 0-16\r\n\
a=rtpmap:121 telephone-event/16000\r\n\
a=fmtp:121 0-16\r\n\
a=rtpmap:122 telephone-event/32000\r\n\
a=fmtp:122 0-16\r\n\
a=ssrc:1620279384 cname:4b6a2c3e1d0f5a7b\r\n";

    const BARESIP_V6: &str = "v=0\r\n\
o=- 1185447452 3227398522 IN IP6 2001:db8::20\r\n\
s=-\r\n\
c=IN IP6 2001:db8::20\r\n\
t=0 0\r\n\
a=tool:baresip 3.10.1\r\n\
m=audio 10386 RTP/AVP 111 9 0 8 101\r\n\
b=AS:128\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtcp-mux\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:1234567 cname:baresip@2001:db8::20\r\n\
m=video 10388 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=sendrecv\r\n";

    #[test]
    fn pjsua_offer_picks_first_supported_codec_in_offer_order() {
        let sd = SessionDescription::parse(PJSUA).unwrap();
        let n = negotiate(&sd, &[Codec::Pcma, Codec::Pcmu]).unwrap();
        assert_eq!(n.codec, Codec::Pcmu, "PCMU comes before PCMA in the offer");
        assert_eq!(n.telephone_event_pt, Some(120));
        assert_eq!(n.remote_rtp, "192.168.1.20:4000".parse().unwrap());
        assert_eq!(n.remote_rtcp, "192.168.1.20:4001".parse().unwrap());
        assert_eq!(n.ptime_ms, 20);
        assert_eq!((n.direction, n.on_hold), (Direction::SendRecv, false));
        let only_pcma = negotiate(&sd, &[Codec::Pcma]).unwrap();
        assert_eq!(only_pcma.codec, Codec::Pcma);

        let text = answer(&n, "203.0.113.5".parse().unwrap(), 30000, 42, 1);
        let ans = SessionDescription::parse(&text).unwrap();
        assert_eq!(ans.connection.as_deref(), Some("203.0.113.5"));
        assert_eq!(ans.media.len(), 1);
        assert_eq!(ans.media[0].formats, vec!["0", "120"]);
        assert_eq!(ans.media[0].fmtp(120), Some("0-16"));
        assert_eq!(ans.media[0].rtpmap(0), Some(("PCMU", 8000)));
        assert_eq!(ans.direction(&ans.media[0]), Direction::SendRecv);
    }

    #[test]
    fn baresip_ipv6_with_opus_rtcp_mux_and_video() {
        let sd = SessionDescription::parse(BARESIP_V6).unwrap();
        assert!(sd.media[0].has_attribute("rtcp-mux"));
        let n = negotiate(&sd, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.remote_rtp, "[2001:db8::20]:10386".parse().unwrap());
        assert_eq!(n.remote_rtcp, "[2001:db8::20]:10387".parse().unwrap());
        let text = answer(&n, "2001:db8::1".parse().unwrap(), 40000, 7, 2);
        assert!(text.contains("c=IN IP6 2001:db8::1\r\n"));
        let ans = SessionDescription::parse(&text).unwrap();
        assert_eq!(ans.media.len(), 2, "every offered m-line is answered");
        assert_eq!((ans.media[0].media.as_str(), ans.media[0].port), ("audio", 40000));
        assert_eq!((ans.media[1].media.as_str(), ans.media[1].port), ("video", 0));
        assert_eq!(ans.media[1].formats, vec!["96"]);
    }

    #[test]
    fn hold_and_direction_mirroring() {
        let held = PJSUA.replace("a=sendrecv", "a=sendonly");
        let n = negotiate(&SessionDescription::parse(&held).unwrap(), &[Codec::Pcmu]).unwrap();
        assert!(n.on_hold);
        assert_eq!(n.direction, Direction::RecvOnly);
        let text = answer(&n, "192.0.2.1".parse().unwrap(), 5000, 1, 1);
        assert!(text.contains("a=recvonly\r\n"));

        let inactive = PJSUA.replace("a=sendrecv", "a=inactive");
        let n = negotiate(&SessionDescription::parse(&inactive).unwrap(), &[Codec::Pcmu]).unwrap();
        assert!(n.on_hold && n.direction == Direction::Inactive);

        let old_hold = PJSUA.replace("c=IN IP4 192.168.1.20", "c=IN IP4 0.0.0.0");
        let n = negotiate(&SessionDescription::parse(&old_hold).unwrap(), &[Codec::Pcmu]).unwrap();
        assert!(n.on_hold);
        assert_eq!(n.direction, Direction::SendRecv);

        let session_level = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=recvonly\r\nm=audio 5004 RTP/AVP 8\r\n";
        let n = negotiate(&SessionDescription::parse(session_level).unwrap(), &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!((n.codec, n.direction, n.on_hold), (Codec::Pcma, Direction::SendOnly, false));
        assert_eq!(n.telephone_event_pt, None);
    }

    #[test]
    fn no_common_codec_and_errors() {
        let opus_only = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 111 9\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(negotiate(&SessionDescription::parse(opus_only).unwrap(), &[Codec::Pcmu]), Err(SdpError::NoCommonCodec));
        let srtp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/SAVP 0\r\n";
        assert_eq!(negotiate(&SessionDescription::parse(srtp).unwrap(), &[Codec::Pcmu]), Err(SdpError::NoCommonCodec));
        let no_c = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        assert_eq!(negotiate(&SessionDescription::parse(no_c).unwrap(), &[Codec::Pcmu]), Err(SdpError::MissingConnection));
        assert_eq!(SessionDescription::parse("o=- 1 1 IN IP4 a\r\n"), Err(SdpError::Version));
        assert_eq!(SessionDescription::parse("v=0\r\ns=-\r\n"), Err(SdpError::MissingOrigin));
        assert!(matches!(SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 99999 RTP/AVP 0\r\n"), Err(SdpError::BadPort { line: 3 })));
        assert!(SessionDescription::parse("v=0\r\ngarbage\r\n").is_err());
    }

    #[test]
    fn our_offer_round_trips_through_negotiate() {
        let text = offer("192.0.2.1".parse().unwrap(), 20000, 99, 1);
        let sd = SessionDescription::parse(&text).unwrap();
        assert_eq!(sd.media[0].formats, vec!["0", "8", "101"]);
        let n = negotiate(&sd, &[Codec::Pcma]).unwrap();
        assert_eq!((n.codec, n.telephone_event_pt, n.ptime_ms), (Codec::Pcma, Some(101), 20));
        assert_eq!(n.remote_rtcp, "192.0.2.1:20001".parse().unwrap());
    }
}
