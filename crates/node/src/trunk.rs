//! Carrier trunks: outbound gateways tried in order, their digest credentials, the pace of new
//! calls through each (calls per second), the optional REGISTER to the carrier, and the inbound
//! address ACL.
//!
//! A trunk is configuration plus a little shared state (its pacer and its registration
//! status), so clones of one trunk (the node config is cloned at start) pace together.
//!
//! Inbound ACL default: when no trunk sets `inbound_acl`, INVITEs are accepted from anywhere (as
//! before trunks had ACLs). As soon as one trunk sets it, new INVITEs are accepted only from the
//! addresses listed in any trunk's ACL, from the gateways of those trunks, and from registered
//! users' addresses.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sip::{Method, Request, Transport};
use tokio::sync::mpsc;

use crate::signals::CallSignal;
use crate::signals::SipCommand;
use crate::Shared;

/// How long a gateway has to send a first response (even `100 Trying`) before the next one is
/// tried.
pub const DEFAULT_GATEWAY_TIMEOUT: Duration = Duration::from_secs(2);
/// Registration lifetime asked of the carrier.
pub const DEFAULT_REGISTER_EXPIRES: u32 = 3600;
/// Wait before trying a failed REGISTER again.
pub const DEFAULT_REGISTER_RETRY: Duration = Duration::from_secs(30);

/// One SIP gateway of a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// `host[:port]` as it goes in Request-URIs.
    pub host: String,
    /// Where requests are sent, resolved at start-up.
    pub address: SocketAddr,
    pub transport: Transport,
}

/// Digest credentials for the carrier's 401/407 challenges (INVITE and REGISTER).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Answer only challenges of this realm; `None` answers any.
    pub realm: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// REGISTER to the carrier: the binding `sip:username@host` -> our Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterConfig {
    pub expires: u32,
    pub retry: Duration,
}

/// An outbound SIP trunk for calls to phone numbers.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    /// Tried in order: the next one on 5xx, 408 or silence for `gateway_timeout`.
    pub gateways: Vec<Gateway>,
    /// Numbers starting with one of these go through this trunk; empty means every number.
    pub prefixes: Vec<String>,
    pub credentials: Option<Credentials>,
    pub register: Option<RegisterConfig>,
    /// New calls through this trunk at most this often; `None` for no limit. Calls beyond it wait
    /// their turn, in order.
    pub calls_per_second: Option<f64>,
    pub gateway_timeout: Duration,
    /// Source addresses inbound INVITEs are accepted from (see the module doc for the default).
    pub inbound_acl: Option<Vec<IpNet>>,
    pacer: Arc<Pacer>,
    registration: Arc<Mutex<RegistrationState>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrunkError {
    #[error("{0:?} is not a SIP URI like sip:host:port (transport udp or tcp)")]
    BadUri(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0:?} is not an address or network like 192.0.2.0/24")]
    BadNetwork(String),
    #[error("calls_per_second must be above 0, got {0}")]
    BadRate(f64),
    #[error("REGISTER needs credentials (username and password)")]
    RegisterWithoutCredentials,
}

impl Gateway {
    /// A gateway from `sip:host[:port][;transport=tcp]`; the host is resolved now (start-up).
    pub fn from_uri(uri: &str) -> Result<Gateway, TrunkError> {
        let t = SipUri::parse(uri).ok_or_else(|| TrunkError::BadUri(uri.to_owned()))?;
        let address = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| TrunkError::Resolve {
                host: t.host.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| TrunkError::Resolve {
                host: t.host.clone(),
                reason: "no address".into(),
            })?;
        Ok(Gateway {
            host: t.hostport,
            address,
            transport: t.transport,
        })
    }
}

impl Trunk {
    /// A trunk with one gateway, `sip:host[:port][;transport=tcp]`, resolved now (start-up).
    pub fn from_uri(name: &str, uri: &str, prefixes: Vec<String>) -> Result<Trunk, TrunkError> {
        Ok(Trunk::new(name, vec![Gateway::from_uri(uri)?], prefixes))
    }

    pub fn new(name: &str, gateways: Vec<Gateway>, prefixes: Vec<String>) -> Trunk {
        Trunk {
            name: name.to_owned(),
            gateways,
            prefixes,
            credentials: None,
            register: None,
            calls_per_second: None,
            gateway_timeout: DEFAULT_GATEWAY_TIMEOUT,
            inbound_acl: None,
            pacer: Arc::default(),
            registration: Arc::default(),
        }
    }

    /// Adds a gateway after the existing ones.
    pub fn with_gateway(mut self, uri: &str) -> Result<Trunk, TrunkError> {
        self.gateways.push(Gateway::from_uri(uri)?);
        Ok(self)
    }

    pub fn with_credentials(
        mut self,
        username: &str,
        password: &str,
        realm: Option<&str>,
    ) -> Trunk {
        self.credentials = Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
            realm: realm.map(str::to_owned),
        });
        self
    }

    pub fn with_calls_per_second(mut self, rate: f64) -> Result<Trunk, TrunkError> {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(TrunkError::BadRate(rate));
        }
        self.calls_per_second = Some(rate);
        Ok(self)
    }

    pub fn with_gateway_timeout(mut self, timeout: Duration) -> Trunk {
        self.gateway_timeout = timeout;
        self
    }

    /// Registers with the carrier (needs credentials).
    pub fn with_register(mut self, expires: u32, retry: Duration) -> Result<Trunk, TrunkError> {
        if self.credentials.is_none() {
            return Err(TrunkError::RegisterWithoutCredentials);
        }
        self.register = Some(RegisterConfig {
            expires: expires.max(60),
            retry,
        });
        Ok(self)
    }

    /// Accepts inbound INVITEs from these networks (`192.0.2.10`, `192.0.2.0/24`, `::1`).
    pub fn with_inbound_acl(mut self, networks: &[String]) -> Result<Trunk, TrunkError> {
        let parsed: Result<Vec<IpNet>, TrunkError> = networks
            .iter()
            .map(|n| IpNet::parse(n).ok_or_else(|| TrunkError::BadNetwork(n.clone())))
            .collect();
        self.inbound_acl = Some(parsed?);
        Ok(self)
    }

    /// Whether `number` goes through this trunk.
    pub fn takes(&self, number: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| number.starts_with(p.as_str()))
    }

    /// The first gateway's address (where REGISTER goes first).
    pub fn address(&self) -> Option<SocketAddr> {
        self.gateways.first().map(|g| g.address)
    }

    /// When the next call may go out through this trunk; reserves that slot.
    pub fn reserve_slot(&self, now: Instant) -> Instant {
        match self.calls_per_second {
            Some(rate) => self.pacer.reserve(now, rate),
            None => now,
        }
    }

    /// Whether the carrier accepted our last REGISTER, and until when.
    pub fn registration(&self) -> RegistrationState {
        self.registration
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_registration(&self, state: RegistrationState) {
        *self.registration.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// Where a trunk's REGISTER stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RegistrationState {
    #[default]
    None,
    Registered {
        until: Instant,
    },
    Failed {
        status: Option<u16>,
    },
}

/// Spaces calls at `1 / rate` seconds: each caller takes the next free slot, so waiting calls go
/// out in the order they asked.
#[derive(Debug, Default)]
pub struct Pacer {
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn reserve(&self, now: Instant, rate: f64) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + Duration::from_secs_f64(1.0 / rate));
        slot
    }
}

/// An IP network: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IpNet {
    /// `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`.
    pub fn parse(s: &str) -> Option<IpNet> {
        let (addr, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = len.unwrap_or(max);
        (prefix_len <= max).then_some(IpNet { addr, prefix_len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.addr.is_ipv4() => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            other => other,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether a new INVITE from `source` may come in (see the module doc).
pub fn inbound_allowed(trunks: &[Trunk], source: SocketAddr) -> bool {
    let mut any_acl = false;
    for trunk in trunks {
        let Some(acl) = &trunk.inbound_acl else {
            continue;
        };
        any_acl = true;
        if acl.iter().any(|n| n.contains(source.ip()))
            || trunk
                .gateways
                .iter()
                .any(|g| same_ip(g.address.ip(), source.ip()))
        {
            return true;
        }
    }
    !any_acl
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    canon(a) == canon(b)
}

/// The parts of a `sip:` URI we route on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SipUri {
    pub hostport: String,
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

impl SipUri {
    /// `sip:[user@]host[:port][;params]`. `sips:` is refused: there is no TLS transport.
    pub fn parse(uri: &str) -> Option<SipUri> {
        let rest = uri
            .get(..4)
            .filter(|s| s.eq_ignore_ascii_case("sip:"))
            .and(uri.get(4..))?;
        let (main, params) = rest.split_once(';').unwrap_or((rest, ""));
        let main = main.split('?').next()?;
        let hostport = main.rsplit_once('@').map_or(main, |(_, h)| h);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => 5060,
                None => return None,
            };
            (host.to_owned(), port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().ok()?),
                None => (hostport.to_owned(), 5060),
            }
        };
        if host.is_empty() || port == 0 {
            return None;
        }
        let mut transport = Transport::Udp;
        for param in params.split(';') {
            if let Some((k, v)) = param.split_once('=') {
                if k.eq_ignore_ascii_case("transport") {
                    transport = match v.to_ascii_lowercase().as_str() {
                        "udp" => Transport::Udp,
                        "tcp" => Transport::Tcp,
                        _ => return None,
                    };
                }
            }
        }
        Some(SipUri {
            hostport: hostport.to_owned(),
            host,
            port,
            transport,
        })
    }
}

/// A fresh `cnonce` for a digest answer.
pub(crate) fn cnonce() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// The Authorization header answering `response` (a 401/407), if the credentials fit its realm.
pub(crate) fn authorization(
    credentials: &Credentials,
    response: &sip::Response,
    method: &Method,
    uri: &str,
) -> Option<(&'static str, String)> {
    if let Some(realm) = &credentials.realm {
        let header = if response.status() == 407 {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let offered = response
            .headers
            .get_all(header)
            .filter_map(|v| sip::auth::Challenge::parse(v).ok())
            .any(|c| &c.realm == realm);
        if !offered {
            return None;
        }
    }
    sip::auth::authorize_response(
        response,
        method,
        uri,
        &credentials.username,
        &credentials.password,
        &cnonce(),
        1,
    )
    .ok()
}

/// Starts the REGISTER loop of every trunk that asks for one.
pub fn start(shared: Arc<Shared>) {
    for (index, trunk) in shared.config.trunks.iter().enumerate() {
        if trunk.register.is_some() && !trunk.gateways.is_empty() {
            tokio::spawn(register_loop(shared.clone(), index));
        }
    }
}

/// What one REGISTER exchange ended with.
enum Registered {
    /// The carrier's granted lifetime.
    Ok(u32),
    Failed(Option<u16>),
}

/// REGISTER, then again before the binding expires (at 80% of its life, at least 30 s before).
/// A failure moves on to the next gateway at once; once every gateway failed in a row, the next
/// round starts after the retry delay.
async fn register_loop(shared: Arc<Shared>, index: usize) {
    // `start` checked the index, the config, and that `register` is set; the config never changes.
    let trunk = &shared.config.trunks[index];
    let Some(register) = trunk.register.clone() else {
        return;
    };
    let call_id = format!("{:032x}@dialtone-reg", rand::thread_rng().gen::<u128>());
    let local_tag = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let mut cseq = 0u32;
    let mut gateway = 0usize;
    let mut failures = 0usize;
    loop {
        let gw = &trunk.gateways[gateway % trunk.gateways.len()];
        let outcome = register_once(
            &shared, trunk, gw, &register, &call_id, &local_tag, &mut cseq,
        )
        .await;
        let wait = match outcome {
            Registered::Ok(granted) => {
                let granted = granted.max(1);
                let life = Duration::from_secs(u64::from(granted));
                failures = 0;
                trunk.set_registration(RegistrationState::Registered {
                    until: Instant::now() + life,
                });
                tracing::info!(trunk = %trunk.name, gateway = %gw.address, expires = granted, "registered with the carrier");
                let early = (life * 4 / 5).min(life.saturating_sub(Duration::from_secs(30)));
                early.max(Duration::from_secs(1))
            }
            Registered::Failed(status) => {
                trunk.set_registration(RegistrationState::Failed { status });
                tracing::warn!(trunk = %trunk.name, gateway = %gw.address, ?status, "REGISTER to the carrier failed");
                gateway += 1;
                failures += 1;
                if failures.is_multiple_of(trunk.gateways.len()) {
                    register.retry
                } else {
                    Duration::ZERO
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn register_once(
    shared: &Shared,
    trunk: &Trunk,
    gw: &Gateway,
    register: &RegisterConfig,
    call_id: &str,
    local_tag: &str,
    cseq: &mut u32,
) -> Registered {
    // `with_register` refuses a trunk without credentials.
    let Some(credentials) = &trunk.credentials else {
        return Registered::Failed(None);
    };
    let uri = format!("sip:{}", gw.host);
    let aor = format!("sip:{}@{}", credentials.username, gw.host);
    let mut authorization: Option<(&'static str, String)> = None;
    for _ in 0..3 {
        *cseq += 1;
        let mut request = Request::new(Method::Register, &uri);
        request
            .headers
            .push("From", &format!("<{aor}>;tag={local_tag}"));
        request.headers.push("To", &format!("<{aor}>"));
        request.headers.push("Call-ID", call_id);
        request.headers.push("CSeq", &format!("{} REGISTER", *cseq));
        let contact = format!(
            "<sip:{}@{}:{}>",
            credentials.username,
            shared.config.advertise_ip_for_uri(),
            shared.config.sip_addr.port()
        );
        request.headers.push("Contact", &contact);
        request
            .headers
            .push("Expires", &register.expires.to_string());
        request.headers.push("Max-Forwards", "70");
        if let Some((name, value)) = &authorization {
            request.headers.push(name, value);
        }
        let (reply, mut replies) = mpsc::unbounded_channel();
        let _ = shared.sip.send(SipCommand::Request {
            request,
            destination: gw.address,
            transport: gw.transport,
            reply: Some(reply),
        });
        let response = loop {
            match replies.recv().await {
                Some(CallSignal::Response { response }) if response.status() >= 200 => {
                    break response
                }
                Some(CallSignal::Response { .. }) => continue,
                Some(CallSignal::RequestTimeout) | None => return Registered::Failed(Some(408)),
                Some(_) => continue,
            }
        };
        match response.status() {
            200..=299 => {
                return Registered::Ok(
                    granted_expires(&response, &contact).unwrap_or(register.expires),
                )
            }
            401 | 407 => match self::authorization(credentials, &response, &Method::Register, &uri)
            {
                Some(auth) => authorization = Some(auth),
                None => return Registered::Failed(Some(response.status())),
            },
            other => return Registered::Failed(Some(other)),
        }
    }
    Registered::Failed(Some(401))
}

/// The lifetime the registrar granted our contact: its `expires` parameter in the 2xx, else the
/// Expires header.
fn granted_expires(response: &sip::Response, contact: &str) -> Option<u32> {
    let ours = contact.trim_matches(['<', '>']);
    for value in response.headers.get_all("Contact") {
        for one in value.split(',') {
            if one.contains(ours) {
                if let Some(e) = one
                    .split(';')
                    .filter_map(|p| p.trim().strip_prefix("expires="))
                    .next()
                {
                    return e.trim().parse().ok();
                }
            }
        }
    }
    response
        .headers
        .get("Expires")
        .and_then(|e| e.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris_give_host_port_and_transport() {
        let u = SipUri::parse("sip:bob@127.0.0.1:5070").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport, u.hostport.as_str()),
            ("127.0.0.1", 5070, Transport::Udp, "127.0.0.1:5070")
        );
        let u = SipUri::parse("sip:gw.example.com;transport=TCP").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("gw.example.com", 5060, Transport::Tcp)
        );
        let u = SipUri::parse("SIP:+1555@[::1]:5080").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5080));
        for bad in [
            "sips:a@b",
            "http://x",
            "sip:",
            "sip:a@b:notaport",
            "sip:h;transport=sctp",
            "sip:[::1",
            "sip:h:0",
        ] {
            assert_eq!(SipUri::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn trunk_from_uri_resolves_at_once() {
        let t = Trunk::from_uri("default", "sip:127.0.0.1:5099", vec![]).unwrap();
        assert_eq!(t.address(), Some("127.0.0.1:5099".parse().unwrap()));
        assert_eq!(t.gateways[0].host, "127.0.0.1:5099");
        assert!(Trunk::from_uri("x", "127.0.0.1", vec![]).is_err());
        let t = t.with_gateway("sip:127.0.0.1:5098;transport=tcp").unwrap();
        assert_eq!(t.gateways[1].transport, Transport::Tcp);
        assert!(
            t.clone()
                .with_register(3600, DEFAULT_REGISTER_RETRY)
                .is_err(),
            "REGISTER needs credentials"
        );
        assert!(t.clone().with_calls_per_second(0.0).is_err());
    }

    #[test]
    fn pacer_spaces_calls_in_order() {
        let p = Pacer::default();
        let t0 = Instant::now();
        let slots: Vec<_> = (0..4).map(|_| p.reserve(t0, 2.0)).collect();
        assert_eq!(
            slots
                .iter()
                .map(|s| s.duration_since(t0).as_millis())
                .collect::<Vec<_>>(),
            [0, 500, 1000, 1500]
        );
        // Much later, no backlog: at once.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.reserve(later, 2.0), later);
    }

    #[test]
    fn networks_match_by_prefix() {
        let n = IpNet::parse("192.0.2.0/24").unwrap();
        assert!(n.contains("192.0.2.77".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        assert!(n.contains("::ffff:192.0.2.5".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.1")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
        assert!(!IpNet::parse("10.0.0.1")
            .unwrap()
            .contains("10.0.0.2".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::1".parse().unwrap()));
        for bad in ["10.0.0.1/33", "x", "::/129", "10.0.0.0/x"] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn inbound_acl_is_open_until_a_trunk_sets_one() {
        let open = Trunk::from_uri("a", "sip:127.0.0.1:5099", vec![]).unwrap();
        let from = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 5060);
        assert!(inbound_allowed(
            std::slice::from_ref(&open),
            from("203.0.113.9")
        ));
        let closed = Trunk::from_uri("b", "sip:127.0.0.2:5099", vec![])
            .unwrap()
            .with_inbound_acl(&["198.51.100.0/24".into()])
            .unwrap();
        let trunks = [open, closed];
        assert!(!inbound_allowed(&trunks, from("203.0.113.9")));
        assert!(inbound_allowed(&trunks, from("198.51.100.20")));
        // The gateway of a trunk with an ACL is allowed too.
        assert!(inbound_allowed(&trunks, from("127.0.0.2")));
        assert!(inbound_allowed(&[], from("203.0.113.9")));
    }

    #[test]
    fn granted_expiry_from_the_contact_or_the_header() {
        let contact = "<sip:u@127.0.0.1:5060>";
        let mut r = sip::Response::new(200, "OK");
        r.headers.push(
            "Contact",
            "<sip:other@192.0.2.1>;expires=10, <sip:u@127.0.0.1:5060>;expires=120",
        );
        assert_eq!(granted_expires(&r, contact), Some(120));
        let mut r = sip::Response::new(200, "OK");
        r.headers.push("Expires", "300");
        assert_eq!(granted_expires(&r, contact), Some(300));
    }
}
