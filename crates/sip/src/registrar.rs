//! Registrar bindings (RFC 3261 §10.3): which contacts an address-of-record can be reached
//! at, until when, and from which source address and transport the registration came.
//!
//! Sans-IO: [`Registrar::handle_register`] takes an already authenticated REGISTER with the
//! current `Instant` and returns the response to send; [`Registrar::handle_timeout`] expires
//! bindings when [`Registrar::poll_timeout`] is due. The address-of-record key is an opaque
//! string chosen by the caller (for example `account-sid/alice@example.com`), so tenants
//! never share bindings; [`address_of_record`] gives the usual `user@host` for the To URI.
//!
//! Phones behind NAT register a private Contact; a request for them goes to
//! [`Binding::source`] over [`Binding::transport`], not to the Contact host.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::header::{trim_lws, NameAddr};
use crate::message::{Method, Request, Response, Transport};

/// Expiry limits, in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Used when neither the Contact `expires` parameter nor an Expires header says.
    pub default_expires: u32,
    /// Shorter non-zero requests are refused with 423 and this as Min-Expires.
    pub min_expires: u32,
    /// Longer requests are shortened to this.
    pub max_expires: u32,
    /// Registrations that would leave an address-of-record with more bindings are refused
    /// (403), so one credential cannot grow the table without bound.
    pub max_bindings_per_aor: usize,
}

impl Default for RegistrarConfig {
    fn default() -> RegistrarConfig {
        RegistrarConfig { default_expires: 3600, min_expires: 60, max_expires: 7200, max_bindings_per_aor: 16 }
    }
}

/// One contact registered for an address-of-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact as registered, without its `expires` parameter (`q`, `+sip.instance`
    /// and other parameters are kept).
    pub contact: NameAddr,
    pub expires_at: Instant,
    /// Where the REGISTER came from: where requests for this contact are sent.
    pub source: SocketAddr,
    pub transport: Transport,
    pub call_id: String,
    pub cseq: u32,
}

impl Binding {
    /// Seconds left, rounded up so a live binding never shows 0.
    pub fn expires_in(&self, now: Instant) -> u32 {
        let left = self.expires_at.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// The `q` parameter (preference, 0 to 1), if any.
    pub fn q(&self) -> Option<&str> {
        self.contact.param("q")
    }
}

/// Why a REGISTER changed nothing. Each maps to the status of the response sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    #[error("not a REGISTER request")]
    NotRegister,
    #[error("missing or bad {0}")]
    BadHeader(&'static str),
    #[error("bad Contact")]
    BadContact,
    #[error("Contact: * needs Expires: 0 and no other Contact")]
    BadWildcard,
    #[error("interval too brief, minimum {min_expires} s")]
    IntervalTooBrief { min_expires: u32 },
    #[error("CSeq not above the one of the same Call-ID")]
    OutOfOrder,
    #[error("too many bindings")]
    TooManyBindings,
}

impl RegisterError {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegisterError::NotRegister => (405, "Method Not Allowed"),
            RegisterError::BadHeader(_) | RegisterError::BadContact | RegisterError::BadWildcard => {
                (400, "Bad Request")
            }
            RegisterError::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            // RFC 3261 §10.3 step 7 names no code; 500 is what registrars send, and clients
            // retry with a fresh CSeq.
            RegisterError::OutOfOrder => (500, "Server Internal Error"),
            RegisterError::TooManyBindings => (403, "Forbidden"),
        }
    }
}

/// What [`Registrar::handle_register`] did. Either way `response` is to be sent (after the
/// caller adds a To tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 200 OK listing every current binding; `bindings` is the same list.
    Updated { response: Response, bindings: Vec<Binding> },
    /// Nothing changed.
    Rejected { response: Response, error: RegisterError },
}

impl RegisterOutcome {
    pub fn response(&self) -> &Response {
        match self {
            RegisterOutcome::Updated { response, .. } | RegisterOutcome::Rejected { response, .. } => response,
        }
    }

    pub fn into_response(self) -> Response {
        match self {
            RegisterOutcome::Updated { response, .. } | RegisterOutcome::Rejected { response, .. } => response,
        }
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// The contact URI in comparable form (RFC 3261 §19.1.4, simplified).
    key: String,
    binding: Binding,
}

/// Bindings of every address-of-record, with an expiry index so the next wake-up and the
/// expired bindings are found without scanning.
#[derive(Debug, Default)]
pub struct Registrar {
    config: RegistrarConfig,
    aors: HashMap<String, Vec<Entry>>,
    expiry: BTreeMap<(Instant, u64), String>,
    next_id: u64,
}

/// One Contact of a REGISTER, checked and ready to apply.
struct Update {
    key: String,
    contact: NameAddr,
    expires: u32,
}

impl Registrar {
    pub fn new(config: RegistrarConfig) -> Registrar {
        Registrar { config, ..Registrar::default() }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Applies an authenticated REGISTER for `aor` (RFC 3261 §10.3 steps 6 to 8): adds,
    /// refreshes or removes bindings atomically, and returns the response to send.
    pub fn handle_register(
        &mut self,
        now: Instant,
        aor: &str,
        request: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> RegisterOutcome {
        match self.apply(now, aor, request, source, transport) {
            Ok(()) => {
                let bindings = self.contacts(aor);
                let mut response = Response::from_request(request, 200, "OK");
                for b in &bindings {
                    let mut contact = b.contact.clone();
                    contact.set_param("expires", Some(&b.expires_in(now).to_string()));
                    response.headers.push("Contact", &contact.to_string());
                }
                RegisterOutcome::Updated { response, bindings }
            }
            Err(error) => {
                let (code, reason) = error.status();
                let mut response = Response::from_request(request, code, reason);
                match &error {
                    RegisterError::IntervalTooBrief { min_expires } => {
                        response.headers.push("Min-Expires", &min_expires.to_string());
                    }
                    RegisterError::NotRegister => response.headers.push("Allow", "REGISTER"),
                    _ => {}
                }
                RegisterOutcome::Rejected { response, error }
            }
        }
    }

    fn apply(
        &mut self,
        now: Instant,
        aor: &str,
        request: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Result<(), RegisterError> {
        if request.method != Method::Register {
            return Err(RegisterError::NotRegister);
        }
        let call_id = request.call_id().ok_or(RegisterError::BadHeader("Call-ID"))?;
        let (cseq, _) = request.cseq().ok_or(RegisterError::BadHeader("CSeq"))?;
        // RFC 3261 §20.19: a malformed Expires is taken as the default.
        let header_expires = request.headers.get("Expires").and_then(parse_delta_seconds);
        let elements: Vec<&str> = request.headers.elements("Contact").collect();

        if elements.contains(&"*") {
            // Step 6: the wildcard must stand alone and come with Expires: 0.
            if elements.len() != 1 || header_expires != Some(0) {
                return Err(RegisterError::BadWildcard);
            }
            let existing = self.aors.get(aor).map(Vec::as_slice).unwrap_or_default();
            if existing.iter().any(|e| e.binding.call_id == call_id && cseq <= e.binding.cseq) {
                return Err(RegisterError::OutOfOrder);
            }
            self.remove_aor(aor);
            return Ok(());
        }

        let mut updates = Vec::with_capacity(elements.len());
        for element in elements {
            let mut contact = NameAddr::parse(element).ok_or(RegisterError::BadContact)?;
            let expires = contact
                .param("expires")
                .and_then(parse_delta_seconds)
                .or(header_expires)
                .unwrap_or(self.config.default_expires);
            if expires != 0 && expires < self.config.min_expires {
                return Err(RegisterError::IntervalTooBrief { min_expires: self.config.min_expires });
            }
            contact.params.retain(|(name, _)| !name.eq_ignore_ascii_case("expires"));
            updates.push(Update { key: uri_key(&contact.uri), contact, expires: expires.min(self.config.max_expires) });
        }

        // Step 7, checked for every contact before anything changes so a refused request
        // leaves the bindings as they were.
        let existing = self.aors.get(aor).map(Vec::as_slice).unwrap_or_default();
        for u in &updates {
            let stale =
                existing.iter().any(|e| e.key == u.key && e.binding.call_id == call_id && cseq <= e.binding.cseq);
            if stale {
                return Err(RegisterError::OutOfOrder);
            }
        }
        let mut resulting: Vec<&str> = existing.iter().map(|e| e.key.as_str()).collect();
        for u in &updates {
            resulting.retain(|k| *k != u.key);
            if u.expires > 0 {
                resulting.push(&u.key);
            }
        }
        if resulting.len() > self.config.max_bindings_per_aor {
            return Err(RegisterError::TooManyBindings);
        }

        for u in updates {
            self.remove_binding(aor, &u.key);
            if u.expires == 0 {
                continue;
            }
            let binding = Binding {
                contact: u.contact,
                expires_at: now + Duration::from_secs(u64::from(u.expires)),
                source,
                transport,
                call_id: call_id.to_string(),
                cseq,
            };
            self.insert(aor, u.key, binding);
        }
        Ok(())
    }

    fn insert(&mut self, aor: &str, key: String, binding: Binding) {
        let id = self.next_id;
        self.next_id += 1;
        self.expiry.insert((binding.expires_at, id), aor.to_string());
        self.aors.entry(aor.to_string()).or_default().push(Entry { id, key, binding });
    }

    fn remove_binding(&mut self, aor: &str, key: &str) {
        let Some(entries) = self.aors.get_mut(aor) else {
            return;
        };
        if let Some(pos) = entries.iter().position(|e| e.key == key) {
            let entry = entries.remove(pos);
            self.expiry.remove(&(entry.binding.expires_at, entry.id));
        }
        if entries.is_empty() {
            self.aors.remove(aor);
        }
    }

    /// Drops every binding of `aor` (an unregister-all, or the user was deleted).
    pub fn remove_aor(&mut self, aor: &str) {
        for entry in self.aors.remove(aor).unwrap_or_default() {
            self.expiry.remove(&(entry.binding.expires_at, entry.id));
        }
    }

    /// The current bindings of `aor`, oldest registration first. Bindings past their
    /// expiry stay listed until [`handle_timeout`](Self::handle_timeout) runs.
    pub fn contacts(&self, aor: &str) -> Vec<Binding> {
        self.aors.get(aor).map(|v| v.iter().map(|e| e.binding.clone()).collect()).unwrap_or_default()
    }

    pub fn is_registered(&self, aor: &str) -> bool {
        self.aors.contains_key(aor)
    }

    /// Number of bindings across all addresses-of-record.
    pub fn binding_count(&self) -> usize {
        self.expiry.len()
    }

    /// Removes the bindings whose time is up and returns them with their address-of-record.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(String, Binding)> {
        let mut expired = Vec::new();
        while let Some(entry) = self.expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), aor) = entry.remove_entry();
            if let Some(entries) = self.aors.get_mut(&aor) {
                if let Some(pos) = entries.iter().position(|e| e.id == id) {
                    expired.push((aor.clone(), entries.remove(pos).binding));
                }
                if entries.is_empty() {
                    self.aors.remove(&aor);
                }
            }
        }
        expired
    }

    /// When the next binding expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry.keys().next().map(|(at, _)| *at)
    }
}

/// `user@host` of the request's To URI (the address-of-record a REGISTER is about), with the
/// scheme, password, port and parameters dropped and the host lowercased. `None` when the To
/// URI is not a sip/sips URI with a user.
pub fn address_of_record(request: &Request) -> Option<String> {
    let to = request.to()?;
    let (scheme, rest) = to.uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let (userinfo, hostpart) = rest.rsplit_once('@')?;
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    let host_port = hostpart.split([';', '?']).next().unwrap_or(hostpart);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        format!("[{}]", v6.split(']').next().unwrap_or(v6))
    } else {
        host_port.split(':').next().unwrap_or(host_port).to_string()
    };
    if user.is_empty() || host.is_empty() {
        return None;
    }
    Some(format!("{user}@{}", host.to_ascii_lowercase()))
}

/// `delta-seconds`: digits, with values past `u32` saturating (they are clamped to the
/// maximum anyway). Anything else is malformed.
fn parse_delta_seconds(s: &str) -> Option<u32> {
    let s = trim_lws(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u32, |acc, b| acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))))
}

/// A contact URI in a form where equal URIs compare equal: scheme, host and parameters are
/// case-insensitive and parameter order does not matter; the user part is case-sensitive.
/// (RFC 3261 §19.1.4 has finer rules for escapes and default parameters that registering
/// clients do not exercise: they resend their Contact byte for byte.)
fn uri_key(uri: &str) -> String {
    let (scheme, rest) = uri.split_once(':').unwrap_or(("", uri));
    let (user, hostpart) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (hostpart, headers) = hostpart.split_once('?').unwrap_or((hostpart, ""));
    let mut parts = hostpart.split(';');
    let host = parts.next().unwrap_or("").to_ascii_lowercase();
    let mut params: Vec<String> = parts.filter(|p| !p.is_empty()).map(str::to_ascii_lowercase).collect();
    params.sort();
    let mut key = scheme.to_ascii_lowercase();
    key.push(':');
    if let Some(user) = user {
        key.push_str(user);
        key.push('@');
    }
    key.push_str(&host);
    for p in params {
        key.push(';');
        key.push_str(&p);
    }
    if !headers.is_empty() {
        key.push('?');
        key.push_str(headers);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const AOR: &str = "AC1/alice@example.com";

    fn src() -> SocketAddr {
        "203.0.113.5:40000".parse().unwrap()
    }

    fn register(call_id: &str, cseq: u32, contacts: &[&str], expires: Option<&str>) -> Request {
        let mut req = Request::new(Method::Register, "sip:example.com");
        req.headers.push("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKr;rport");
        req.headers.push("From", "<sip:alice@example.com>;tag=a1");
        req.headers.push("To", "<sip:alice@example.com>");
        req.headers.push("Call-ID", call_id);
        req.headers.push("CSeq", &format!("{cseq} REGISTER"));
        for c in contacts {
            req.headers.push("Contact", c);
        }
        if let Some(e) = expires {
            req.headers.push("Expires", e);
        }
        req
    }

    fn ok(outcome: &RegisterOutcome) -> &[Binding] {
        match outcome {
            RegisterOutcome::Updated { response, bindings } => {
                assert_eq!(response.status(), 200);
                bindings
            }
            RegisterOutcome::Rejected { error, .. } => panic!("rejected: {error}"),
        }
    }

    fn rejected(outcome: &RegisterOutcome) -> &RegisterError {
        match outcome {
            RegisterOutcome::Rejected { error, .. } => error,
            RegisterOutcome::Updated { .. } => panic!("accepted"),
        }
    }

    #[test]
    fn register_refresh_and_expire() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default());
        assert_eq!(reg.poll_timeout(), None);
        let req = register("c1", 1, &["<sip:alice@10.0.0.2:5060;transport=udp>"], None);
        let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
        let b = &ok(&out)[0];
        assert_eq!(b.source, src());
        assert_eq!(b.transport, Transport::Udp);
        assert_eq!(b.contact.uri, "sip:alice@10.0.0.2:5060;transport=udp");
        assert_eq!(b.expires_in(t0), 3600);
        let contact = NameAddr::parse(out.response().headers.get("Contact").unwrap()).unwrap();
        assert_eq!(contact.param("expires"), Some("3600"));
        assert!(reg.is_registered(AOR));
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(3600)));

        // Refresh half way with the next CSeq; the binding is replaced, not duplicated.
        let t1 = t0 + Duration::from_secs(1800);
        let req = register("c1", 2, &["<sip:alice@10.0.0.2:5060;TRANSPORT=UDP>;expires=600"], None);
        let out = reg.handle_register(t1, AOR, &req, src(), Transport::Udp);
        assert_eq!(ok(&out).len(), 1);
        assert_eq!(reg.poll_timeout(), Some(t1 + Duration::from_secs(600)));
        assert_eq!(reg.binding_count(), 1);

        // Nothing expires early; then it goes at its time.
        assert!(reg.handle_timeout(t1 + Duration::from_secs(599)).is_empty());
        assert!(reg.is_registered(AOR));
        let expired = reg.handle_timeout(t1 + Duration::from_secs(600));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, AOR);
        assert!(!reg.is_registered(AOR));
        assert!(reg.contacts(AOR).is_empty());
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn expires_header_param_and_clamp() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default());
        let req = register(
            "c1",
            1,
            &["<sip:a@10.0.0.2>;expires=120, <sip:b@10.0.0.3>", "<sip:c@10.0.0.4>;expires=99999999999"],
            Some("300"),
        );
        let out = reg.handle_register(t0, AOR, &req, src(), Transport::Tcp);
        let secs: Vec<u32> = ok(&out).iter().map(|b| b.expires_in(t0)).collect();
        assert_eq!(secs, vec![120, 300, 7200]);
        assert_eq!(out.response().headers.get_all("Contact").count(), 3);
        // A malformed Expires counts as the default.
        let req = register("c2", 1, &["<sip:d@10.0.0.5>"], Some("soon"));
        let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
        assert_eq!(ok(&out).last().unwrap().expires_in(t0), 3600);
        // Expiry goes in order.
        let expired = reg.handle_timeout(t0 + Duration::from_secs(300));
        let uris: Vec<_> = expired.iter().map(|(_, b)| b.contact.uri.as_str()).collect();
        assert_eq!(uris, vec!["sip:a@10.0.0.2", "sip:b@10.0.0.3"]);
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn too_brief_is_423_with_min_expires() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default());
        let req = register("c1", 1, &["<sip:a@10.0.0.2>", "<sip:b@10.0.0.3>;expires=30"], None);
        let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
        assert_eq!(rejected(&out), &RegisterError::IntervalTooBrief { min_expires: 60 });
        assert_eq!(out.response().status(), 423);
        assert_eq!(out.response().headers.get("Min-Expires"), Some("60"));
        // Atomic: the acceptable contact was not bound either.
        assert!(!reg.is_registered(AOR));
        let req = register("c1", 2, &["<sip:a@10.0.0.2>"], Some("59"));
        assert_eq!(reg.handle_register(t0, AOR, &req, src(), Transport::Udp).response().status(), 423);
        let req = register("c1", 3, &["<sip:a@10.0.0.2>"], Some("60"));
        assert_eq!(ok(&reg.handle_register(t0, AOR, &req, src(), Transport::Udp)).len(), 1);
    }

    #[test]
    fn several_contacts_and_unregister_one() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default());
        let desk: SocketAddr = "203.0.113.5:5060".parse().unwrap();
        let mobile: SocketAddr = "198.51.100.9:61000".parse().unwrap();
        let req = register("desk", 1, &["<sip:alice@192.168.1.10>;q=1.0"], None);
        ok(&reg.handle_register(t0, AOR, &req, desk, Transport::Udp));
        let req = register("mobile", 7, &["<sip:alice@10.1.1.1;transport=tcp>;q=0.5"], None);
        let out = reg.handle_register(t0, AOR, &req, mobile, Transport::Tcp);
        let bindings = ok(&out);
        assert_eq!(bindings.len(), 2);
        assert_eq!(bindings[1].source, mobile);
        assert_eq!(bindings[1].q(), Some("0.5"));
        // Another AoR is separate.
        let req = register("bob", 1, &["<sip:bob@10.0.0.9>"], None);
        ok(&reg.handle_register(t0, "AC1/bob@example.com", &req, mobile, Transport::Udp));
        assert_eq!(reg.binding_count(), 3);

        // Query (no Contact) lists without changing anything.
        let req = register("desk", 2, &[], None);
        assert_eq!(ok(&reg.handle_register(t0, AOR, &req, desk, Transport::Udp)).len(), 2);

        // expires=0 removes only that contact.
        let req = register("desk", 3, &["<sip:alice@192.168.1.10>;expires=0"], None);
        let out = reg.handle_register(t0, AOR, &req, desk, Transport::Udp);
        let left = ok(&out);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].contact.uri, "sip:alice@10.1.1.1;transport=tcp");
        assert_eq!(reg.binding_count(), 2);
        // Removing an unknown contact is fine.
        let req = register("desk", 4, &["<sip:alice@192.168.1.99>"], Some("0"));
        assert_eq!(ok(&reg.handle_register(t0, AOR, &req, desk, Transport::Udp)).len(), 1);
    }

    #[test]
    fn wildcard_unregisters_all() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default());
        let req = register("c1", 1, &["<sip:a@10.0.0.2>, <sip:b@10.0.0.3>"], None);
        ok(&reg.handle_register(t0, AOR, &req, src(), Transport::Udp));
        // Wildcard misuse is a 400 and changes nothing.
        for (contacts, expires) in
            [(&["*"][..], None), (&["*"][..], Some("10")), (&["*", "<sip:c@10.0.0.4>"][..], Some("0"))]
        {
            let req = register("c2", 1, contacts, expires);
            let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
            assert_eq!(rejected(&out), &RegisterError::BadWildcard);
            assert_eq!(out.response().status(), 400);
        }
        assert_eq!(reg.contacts(AOR).len(), 2);
        let req = register("c2", 1, &["*"], Some("0"));
        let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
        assert!(ok(&out).is_empty());
        assert!(out.response().headers.get("Contact").is_none());
        assert!(!reg.is_registered(AOR));
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn call_id_and_cseq_ordering() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default());
        let req = register("c1", 5, &["<sip:a@10.0.0.2>"], None);
        ok(&reg.handle_register(t0, AOR, &req, src(), Transport::Udp));
        // Same Call-ID, same or lower CSeq: refused with 500, binding untouched.
        for cseq in [5, 4] {
            let req = register("c1", cseq, &["<sip:a@10.0.0.2>"], Some("0"));
            let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
            assert_eq!(rejected(&out), &RegisterError::OutOfOrder);
            assert_eq!(out.response().status(), 500);
            let req = register("c1", cseq, &["*"], Some("0"));
            let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
            assert_eq!(rejected(&out), &RegisterError::OutOfOrder);
        }
        assert!(reg.is_registered(AOR));
        // A different Call-ID (the phone rebooted) may update whatever its CSeq.
        let moved: SocketAddr = "203.0.113.5:40001".parse().unwrap();
        let req = register("c9", 1, &["<sip:a@10.0.0.2>"], Some("120"));
        let out = reg.handle_register(t0, AOR, &req, moved, Transport::Udp);
        let b = &ok(&out)[0];
        assert_eq!((b.call_id.as_str(), b.cseq, b.source), ("c9", 1, moved));
        // And then the old Call-ID's higher CSeq counts again as a different Call-ID.
        let req = register("c1", 6, &["<sip:a@10.0.0.2>"], Some("0"));
        assert!(ok(&reg.handle_register(t0, AOR, &req, src(), Transport::Udp)).is_empty());
    }

    #[test]
    fn bad_requests_and_limits() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig { max_bindings_per_aor: 2, ..RegistrarConfig::default() });
        let req = register("c1", 1, &["<sip:a@10.0.0.2"], None);
        let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
        assert_eq!(rejected(&out), &RegisterError::BadContact);
        let mut req = register("c1", 1, &["<sip:a@10.0.0.2>"], None);
        req.method = Method::Invite;
        let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
        assert_eq!(out.response().status(), 405);
        let mut req = register("c1", 1, &["<sip:a@10.0.0.2>"], None);
        req.headers.remove("CSeq");
        assert_eq!(
            rejected(&reg.handle_register(t0, AOR, &req, src(), Transport::Udp)),
            &RegisterError::BadHeader("CSeq")
        );

        let req = register("c1", 1, &["<sip:a@10.0.0.2>", "<sip:b@10.0.0.2>", "<sip:c@10.0.0.2>"], None);
        let out = reg.handle_register(t0, AOR, &req, src(), Transport::Udp);
        assert_eq!(rejected(&out), &RegisterError::TooManyBindings);
        assert_eq!(out.response().status(), 403);
        // Replacing within the limit is fine: remove one and add one in the same request.
        let req = register("c1", 2, &["<sip:a@10.0.0.2>", "<sip:b@10.0.0.2>"], None);
        ok(&reg.handle_register(t0, AOR, &req, src(), Transport::Udp));
        let req = register("c1", 3, &["<sip:a@10.0.0.2>;expires=0", "<sip:c@10.0.0.2>"], None);
        assert_eq!(ok(&reg.handle_register(t0, AOR, &req, src(), Transport::Udp)).len(), 2);
        assert!(!reg.is_registered("AC2/alice@example.com"));
    }

    #[test]
    fn challenge_then_register_over_the_wire() {
        use crate::auth::{authorize_response, Credential, DigestChallenger};
        use crate::message::{parse_message, Message};

        fn wire_request(req: &Request) -> Request {
            match parse_message(&req.to_bytes()) {
                Ok(Message::Request(r)) => r,
                other => panic!("{other:?}"),
            }
        }
        fn wire_response(resp: &Response) -> Response {
            match parse_message(&resp.to_bytes()) {
                Ok(Message::Response(r)) => r,
                other => panic!("{other:?}"),
            }
        }

        let t0 = Instant::now();
        let unix = 1_700_000_000;
        let challenger = DigestChallenger::new("example.com", [3; 32]);
        let lookup = |user: &str, realm: &str| {
            (user == "alice" && realm == "example.com").then(|| Credential::Password("pw".into()))
        };
        let mut reg = Registrar::new(RegistrarConfig::default());

        let first = wire_request(&register("c1", 1, &["<sip:alice@10.0.0.2:5060>;expires=600"], None));
        let failure = challenger.verify(unix, &first, lookup).unwrap_err();
        let mut challenge = challenger.reject(unix, &first, &failure);
        challenge.set_to_tag("srv1");
        let challenge = wire_response(&challenge);
        assert_eq!(challenge.status(), 401);

        let mut second = register("c1", 2, &["<sip:alice@10.0.0.2:5060>;expires=600"], None);
        let (name, value) =
            authorize_response(&challenge, &Method::Register, &second.uri, "alice", "pw", "9f8e7d", 1).unwrap();
        second.headers.push(name, &value);
        let second = wire_request(&second);
        let ok_auth = challenger.verify(unix + 1, &second, lookup).unwrap();
        assert_eq!(ok_auth.username, "alice");
        let aor = format!("AC1/{}", address_of_record(&second).unwrap());
        let outcome = reg.handle_register(t0, &aor, &second, src(), Transport::Udp);
        let mut response = outcome.into_response();
        response.set_to_tag("srv2");
        let response = wire_response(&response);
        assert_eq!(response.status(), 200);
        let contact = response.contact().unwrap();
        assert_eq!(contact.uri, "sip:alice@10.0.0.2:5060");
        assert_eq!(contact.param("expires"), Some("600"));
        assert_eq!(reg.contacts("AC1/alice@example.com")[0].source, src());
    }

    #[test]
    fn aor_and_uri_keys() {
        let mut req = register("c", 1, &[], None);
        assert_eq!(address_of_record(&req).as_deref(), Some("alice@example.com"));
        req.headers.set("To", "\"A\" <sips:Alice:pw@EXAMPLE.com:5061;transport=tls>");
        assert_eq!(address_of_record(&req).as_deref(), Some("Alice@example.com"));
        req.headers.set("To", "<sip:alice@[2001:db8::1]:5060>");
        assert_eq!(address_of_record(&req).as_deref(), Some("alice@[2001:db8::1]"));
        req.headers.set("To", "<sip:example.com>");
        assert_eq!(address_of_record(&req), None);
        req.headers.set("To", "<tel:+15551234567>");
        assert_eq!(address_of_record(&req), None);

        assert_eq!(uri_key("SIP:alice@Host:5060;b=2;A=1"), uri_key("sip:alice@host:5060;a=1;b=2"));
        assert_ne!(uri_key("sip:Alice@host"), uri_key("sip:alice@host"));
        assert_eq!(parse_delta_seconds(" 42 "), Some(42));
        assert_eq!(parse_delta_seconds("4294967296"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("-1"), None);
    }
}
