//! The registrar for agents' phones: REGISTER with digest authentication (SHA-256 and MD5,
//! `qop=auth`, stateless nonces from `sip::auth`), bindings with expiry (`sip::registrar`),
//! and what other parts of the node ask of it: where a user can be reached ([`contacts`]) and
//! whether it is available ([`presence`]).
//!
//! Which account a REGISTER is for: its Request-URI host. A SIP domain's `domain_name` names
//! its account and only the credential lists mapped to the domain's registrations apply; any
//! other host (the node's address, a hostname) is the default domain of the first main
//! account, where all its credential lists apply. A user is the credential's username; its
//! address-of-record is `<AccountSid>/<username>`, whatever host it registered through, so
//! `client:alice` in an account reaches every phone registered as alice.
//!
//! Bindings live in this node's memory: a restart forgets them and phones register again
//! (within their refresh interval). They are mirrored to the store (`sip_registrations`, one
//! writer task, in order) so the REST API can list them; the node clears that table at start.
//!
//! No user enumeration: a REGISTER without credentials gets the same challenge whoever it
//! names, and for an unknown user (or an unknown domain) the check runs against a stand-in
//! digest, so it fails exactly like a wrong password: same query, same hashing, same answer.
//! Failed attempts are counted per source IP: after [`FORBID_AFTER`] in [`FAILURE_WINDOW`] the
//! answer is 403 instead of a new challenge, and after [`BLOCK_AFTER`] the source's REGISTERs
//! are refused with 403 unread for [`BLOCK_FOR`], so a password cracker cannot grind.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use model::AccountSid;
use rand::Rng;
use sip::auth::{AuthFailure, Credential, DigestChallenger};
use sip::registrar::{RegisterOutcome, Registrar, RegistrarConfig};
use sip::transaction::ServerTxId;
use sip::{Request, Response, Transport};
use store::sip::{SipDigests, SipRegistrationRow, SIP_DIGEST_REALM};
use tokio::sync::mpsc;

use crate::signals::SipCommand;
use crate::Shared;

/// Failures counted per source within this window.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// From this many failures in the window, a failed attempt gets 403 rather than a challenge.
pub const FORBID_AFTER: usize = 3;
/// At this many failures in the window, the source is blocked.
pub const BLOCK_AFTER: usize = 10;
/// How long a blocked source's REGISTERs are refused unread.
pub const BLOCK_FOR: Duration = Duration::from_secs(300);
/// User-Agent substrings (lower case) of clients that are sent an MD5 challenge only.
const MD5_ONLY_AGENTS: &[&str] = &["baresip"];
/// Sources tracked at most; beyond it the quietest are forgotten (a spoofed-source flood cannot
/// grow the table without bound).
const MAX_TRACKED_SOURCES: usize = 10_000;

/// Where to send a request for a registered user: the Request-URI is the registered Contact,
/// the packet goes where the REGISTER came from (phones behind NAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactTarget {
    pub uri: String,
    pub destination: SocketAddr,
    pub transport: Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Available,
    /// Registered, but said it is away: not rung.
    Away,
    Busy,
    Offline,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Available => "available",
            Presence::Away => "away",
            Presence::Busy => "busy",
            Presence::Offline => "offline",
        }
    }
}

/// The addresses `user` of `account` is registered at now, oldest registration first.
pub fn contacts(shared: &Shared, account: &AccountSid, user: &str) -> Vec<ContactTarget> {
    shared.registrar.contacts(Instant::now(), account, user)
}

/// `Offline` without a live binding; `Busy` with a live call to or from `client:USER` in the
/// account; else `Available`.
pub fn presence(shared: &Shared, account: &AccountSid, user: &str) -> Presence {
    let regs = &shared.registrar;
    if regs.bindings(Instant::now(), account, user).is_empty() {
        return Presence::Offline;
    }
    if regs.is_busy(account, user) {
        return Presence::Busy;
    }
    if regs.is_away(account, user) {
        return Presence::Away;
    }
    Presence::Available
}

/// What the failure counter says about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Challenge again (the user may have mistyped).
    Challenge,
    /// Refuse: too many failures from this source.
    Forbid,
}

#[derive(Debug, Default)]
struct SourceRecord {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// Failed authentications per source IP, over a sliding window. Time is passed in.
#[derive(Debug, Default)]
pub struct FailureGuard {
    sources: HashMap<IpAddr, SourceRecord>,
}

impl FailureGuard {
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.blocked_until)
            .is_some_and(|until| now < until)
    }

    pub fn handle_failure(&mut self, ip: IpAddr, now: Instant) -> FailureVerdict {
        if self.sources.len() >= MAX_TRACKED_SOURCES && !self.sources.contains_key(&ip) {
            self.forget_idle(now);
        }
        let record = self.sources.entry(ip).or_default();
        while record
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > FAILURE_WINDOW)
        {
            record.failures.pop_front();
        }
        record.failures.push_back(now);
        if record.failures.len() >= BLOCK_AFTER {
            record.blocked_until = Some(now + BLOCK_FOR);
        }
        if record.failures.len() >= FORBID_AFTER {
            FailureVerdict::Forbid
        } else {
            FailureVerdict::Challenge
        }
    }

    /// A success clears the source's count (a phone that mistyped once is not held to it).
    pub fn handle_success(&mut self, ip: IpAddr) {
        if let Some(r) = self.sources.get(&ip) {
            if r.blocked_until.is_none() {
                self.sources.remove(&ip);
            }
        }
    }

    fn forget_idle(&mut self, now: Instant) {
        self.sources.retain(|_, r| {
            r.blocked_until.is_some_and(|u| now < u)
                || r.failures
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) <= FAILURE_WINDOW)
        });
        if self.sources.len() >= MAX_TRACKED_SOURCES {
            // Still full of live entries: drop the ones that are not blocked.
            self.sources.retain(|_, r| r.blocked_until.is_some());
        }
    }
}

struct State {
    registrar: Registrar,
    guard: FailureGuard,
    /// Which addresses-of-record have a binding registered from each source IP, so the inbound
    /// ACL can let a registered phone's INVITE in without scanning every user.
    by_source: HashMap<IpAddr, HashSet<String>>,
}

impl State {
    /// Brings `by_source` up to date with the bindings `key` has now.
    fn reindex(&mut self, key: &str) {
        let now_from: HashSet<IpAddr> = self
            .registrar
            .contacts(key)
            .iter()
            .map(|b| canonical_ip(b.source.ip()))
            .collect();
        self.by_source.retain(|ip, keys| {
            if !now_from.contains(ip) {
                keys.remove(key);
            }
            !keys.is_empty()
        });
        for ip in now_from {
            self.by_source.entry(ip).or_default().insert(key.to_owned());
        }
    }
}

/// An IPv4 peer seen through an IPv6 socket (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What `Shared` holds: the bindings, the failure counter and the nonce key of this node.
pub struct Registrations {
    state: Mutex<State>,
    challenger: DigestChallenger,
    /// Key for the stand-in digests of unknown users.
    decoy_key: [u8; 32],
    mirror: mpsc::UnboundedSender<Mirror>,
    mirror_rx: Mutex<Option<mpsc::UnboundedReceiver<Mirror>>>,
    busy: Mutex<Option<BusyCheck>>,
    /// Users (by AOR key) whose last REGISTER said `X-Dialtone-Presence: away`: registered, not
    /// rung.
    away: Mutex<std::collections::HashSet<String>>,
}

/// Whether `user` of an account is in a live call (set by the owner of live calls).
type BusyCheck = Box<dyn Fn(&AccountSid, &str) -> bool + Send + Sync>;

/// A store write: the bindings of one user as they now stand.
struct Mirror {
    account: AccountSid,
    username: String,
    rows: Vec<SipRegistrationRow>,
}

impl Default for Registrations {
    fn default() -> Registrations {
        Registrations::new(RegistrarConfig::default())
    }
}

// A poisoned lock only means another thread panicked while holding it; the maps are still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn aor(account: &AccountSid, user: &str) -> String {
    format!("{account}/{user}")
}

/// How a REGISTER is answered.
enum Verdict {
    Respond(Response),
    Authenticated {
        scope_account: AccountSid,
        username: String,
    },
}

impl Registrations {
    pub fn new(config: RegistrarConfig) -> Registrations {
        let mut rng = rand::thread_rng();
        let (mirror, rx) = mpsc::unbounded_channel();
        Registrations {
            state: Mutex::new(State {
                registrar: Registrar::new(config),
                guard: FailureGuard::default(),
                by_source: HashMap::new(),
            }),
            challenger: DigestChallenger::new(SIP_DIGEST_REALM, rng.gen()),
            decoy_key: rng.gen(),
            mirror,
            mirror_rx: Mutex::new(Some(rx)),
            busy: Mutex::new(None),
            away: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Sets how [`presence`] learns that a user is in a call (the owner of live calls provides
    /// it; without one nobody is busy).
    pub fn set_busy_check(
        &self,
        check: impl Fn(&AccountSid, &str) -> bool + Send + Sync + 'static,
    ) {
        *lock(&self.busy) = Some(Box::new(check));
    }

    fn is_busy(&self, account: &AccountSid, user: &str) -> bool {
        lock(&self.busy).as_ref().is_some_and(|f| f(account, user))
    }

    /// The contacts to ring for `user`: none while the user is away.
    pub fn contacts(&self, now: Instant, account: &AccountSid, user: &str) -> Vec<ContactTarget> {
        if self.is_away(account, user) {
            return Vec::new();
        }
        self.bindings(now, account, user)
    }

    fn is_away(&self, account: &AccountSid, user: &str) -> bool {
        lock(&self.away).contains(&aor(account, user))
    }

    fn presence_word(&self, key: &str) -> &'static str {
        if lock(&self.away).contains(key) {
            "away"
        } else {
            "available"
        }
    }

    /// Every live binding of `user`, away or not.
    fn bindings(&self, now: Instant, account: &AccountSid, user: &str) -> Vec<ContactTarget> {
        lock(&self.state)
            .registrar
            .contacts(&aor(account, user))
            .into_iter()
            .filter(|b| b.expires_at > now)
            .map(|b| ContactTarget {
                uri: b.contact.uri,
                destination: b.source,
                transport: b.transport,
            })
            .collect()
    }

    pub fn binding_count(&self) -> usize {
        lock(&self.state).registrar.binding_count()
    }

    /// Whether some user has a live binding registered from `ip` (any port, any account): such
    /// a phone may send INVITEs even when the trunks' inbound ACL does not list its address.
    pub fn has_binding_from(&self, now: Instant, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        let state = lock(&self.state);
        let Some(keys) = state.by_source.get(&ip) else {
            return false;
        };
        // Bindings past their expiry stay in the registrar until the next expiry tick.
        keys.iter().any(|key| {
            state
                .registrar
                .contacts(key)
                .iter()
                .any(|b| b.expires_at > now && canonical_ip(b.source.ip()) == ip)
        })
    }

    /// The HA1s an unknown user is checked against: derived from a secret, so they match no
    /// password anyone knows, and costing the same hashing as a real check.
    fn decoy(&self, username: &str) -> Credential {
        let seed: String = self.decoy_key.iter().map(|b| format!("{b:02x}")).collect();
        let d = SipDigests::new(username, &seed);
        Credential::Ha1 {
            md5: Some(d.md5),
            sha256: Some(d.sha256),
        }
    }

    /// A 401 with SHA-256 and MD5 challenges (RFC 8760: preferred first), or MD5 alone for user
    /// agents that give up on a challenge set holding an algorithm they do not know (libre, the
    /// SIP stack of baresip 1.x, fails the whole REGISTER with ENOSYS). The choice depends only
    /// on the User-Agent, never on the user, so it reveals nothing about who exists.
    fn challenge(&self, request: &Request, stale: bool) -> Response {
        let md5_only = request.headers.get("User-Agent").is_some_and(|ua| {
            MD5_ONLY_AGENTS
                .iter()
                .any(|a| ua.to_ascii_lowercase().contains(a))
        });
        if !md5_only {
            return self.challenger.challenge(unix_now(), request, stale);
        }
        let (code, reason) = self.challenger.kind().status();
        let mut resp = Response::from_request(request, code, reason);
        for value in self.challenger.challenges(unix_now(), stale) {
            if value.contains("algorithm=MD5") {
                resp.headers
                    .push(self.challenger.kind().challenge_header(), &value);
            }
        }
        resp
    }

    fn forbidden(request: &Request) -> Response {
        Response::from_request(request, 403, "Forbidden")
    }

    /// Decides on a REGISTER once its user's digests are known (`None`: unknown user or
    /// domain). Sans-IO apart from the unix time of the nonce.
    fn check(
        &self,
        now: Instant,
        request: &Request,
        source: IpAddr,
        scope_account: Option<AccountSid>,
        digests: Option<SipDigests>,
    ) -> Verdict {
        let unix = unix_now();
        let lookup = |username: &str, _realm: &str| match (&digests, scope_account) {
            (Some(d), Some(_)) => Some(Credential::Ha1 {
                md5: Some(d.md5.clone()),
                sha256: Some(d.sha256.clone()),
            }),
            _ => Some(self.decoy(username)),
        };
        match self.challenger.verify(unix, request, lookup) {
            Ok(ok) => {
                let Some(account) = scope_account.filter(|_| digests.is_some()) else {
                    // The decoy matched: impossible without the secret; refuse like a failure.
                    return self.failed(now, request, source);
                };
                // A user registers its own address-of-record only.
                let to_user = sip::registrar::address_of_record(request)
                    .and_then(|a| a.split_once('@').map(|(u, _)| u.to_owned()));
                if to_user.as_deref() != Some(ok.username.as_str()) {
                    return Verdict::Respond(Self::forbidden(request));
                }
                lock(&self.state).guard.handle_success(source);
                Verdict::Authenticated {
                    scope_account: account,
                    username: ok.username,
                }
            }
            Err(AuthFailure::Missing | AuthFailure::InvalidNonce | AuthFailure::RealmMismatch) => {
                Verdict::Respond(self.challenge(request, false))
            }
            Err(AuthFailure::StaleNonce) => Verdict::Respond(self.challenge(request, true)),
            Err(f) if f.is_bad_request() => {
                lock(&self.state).guard.handle_failure(source, now);
                Verdict::Respond(self.challenger.reject(unix, request, &f))
            }
            Err(_) => self.failed(now, request, source),
        }
    }

    /// Password checks outside SIP (the agent console's sign-in) share the failure counter: a
    /// source blocked for guessing is blocked for both.
    pub fn is_blocked(&self, source: IpAddr) -> bool {
        lock(&self.state).guard.is_blocked(source, Instant::now())
    }

    pub fn note_failure(&self, source: IpAddr) -> FailureVerdict {
        lock(&self.state)
            .guard
            .handle_failure(source, Instant::now())
    }

    pub fn note_success(&self, source: IpAddr) {
        lock(&self.state).guard.handle_success(source);
    }

    fn failed(&self, now: Instant, request: &Request, source: IpAddr) -> Verdict {
        let verdict = lock(&self.state).guard.handle_failure(source, now);
        tracing::info!(%source, ?verdict, "REGISTER authentication failed");
        match verdict {
            FailureVerdict::Challenge => Verdict::Respond(self.challenge(request, false)),
            FailureVerdict::Forbid => Verdict::Respond(Self::forbidden(request)),
        }
    }

    /// Applies an authenticated REGISTER and queues the store mirror of the user's bindings.
    fn apply(
        &self,
        now: Instant,
        account: AccountSid,
        username: &str,
        request: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Response {
        let key = aor(&account, username);
        // A REGISTER that says nothing of presence (a phone, a refresh) leaves it as it was.
        match request.headers.get("X-Dialtone-Presence").map(str::trim) {
            Some(p) if p.eq_ignore_ascii_case("away") => {
                lock(&self.away).insert(key.clone());
            }
            Some(p) if p.eq_ignore_ascii_case("available") => {
                lock(&self.away).remove(&key);
            }
            _ => {}
        }
        let outcome = {
            let mut state = lock(&self.state);
            let outcome = state
                .registrar
                .handle_register(now, &key, request, source, transport);
            state.reindex(&key);
            outcome
        };
        if let RegisterOutcome::Updated { bindings, .. } = &outcome {
            let wall = chrono::Utc::now();
            let rows = bindings
                .iter()
                .map(|b| SipRegistrationRow {
                    account_sid: account,
                    username: username.to_owned(),
                    contact: b.contact.to_string(),
                    source: b.source.to_string(),
                    transport: b.transport.as_str().to_ascii_lowercase(),
                    expires_at: wall + chrono::Duration::seconds(i64::from(b.expires_in(now))),
                    presence: self.presence_word(&key).to_owned(),
                })
                .collect();
            let _ = self.mirror.send(Mirror {
                account,
                username: username.to_owned(),
                rows,
            });
        }
        outcome.into_response()
    }

    /// Expires bindings due at `now` and queues the store updates.
    pub fn handle_timeout(&self, now: Instant) {
        let expired = {
            let mut state = lock(&self.state);
            let expired = state.registrar.handle_timeout(now);
            for (key, _) in &expired {
                state.reindex(key);
            }
            expired
        };
        let mut users: Vec<(AccountSid, String)> = Vec::new();
        for (key, _) in expired {
            let Some((account, user)) = key.split_once('/') else {
                continue;
            };
            let Ok(account) = account.parse::<AccountSid>() else {
                continue;
            };
            if !users.iter().any(|(a, u)| *a == account && u == user) {
                users.push((account, user.to_owned()));
            }
        }
        for (account, username) in users {
            let wall = chrono::Utc::now();
            let rows = lock(&self.state)
                .registrar
                .contacts(&aor(&account, &username))
                .into_iter()
                .map(|b| SipRegistrationRow {
                    account_sid: account,
                    username: username.clone(),
                    contact: b.contact.to_string(),
                    source: b.source.to_string(),
                    transport: b.transport.as_str().to_ascii_lowercase(),
                    expires_at: wall + chrono::Duration::seconds(i64::from(b.expires_in(now))),
                    presence: self.presence_word(&aor(&account, &username)).to_owned(),
                })
                .collect();
            let _ = self.mirror.send(Mirror {
                account,
                username,
                rows,
            });
        }
    }
}

/// Starts the registrar's background work: clears the store mirror (this node holds no
/// bindings yet), then writes mirror updates in order and expires bindings every second.
pub fn start(shared: Arc<Shared>) {
    let Some(mut rx) = lock(&shared.registrar.mirror_rx).take() else {
        return;
    };
    let writer = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = writer.store.clear_sip_registrations().await {
            tracing::warn!(error = %e, "clearing SIP registrations failed");
        }
        while let Some(m) = rx.recv().await {
            if let Err(e) = writer
                .store
                .replace_sip_registrations(&m.account, &m.username, &m.rows)
                .await
            {
                tracing::warn!(error = %e, "mirroring SIP registrations failed");
            }
        }
    });
    let weak = Arc::downgrade(&shared);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            shared.registrar.handle_timeout(Instant::now());
        }
    });
}

/// The host of a SIP Request-URI (`sip:acme.example.com;transport=tcp` -> `acme.example.com`).
fn request_host(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once(':')?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?']).next().unwrap_or(hostport);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        hostport.split(':').next().unwrap_or(hostport)
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The digest username of the request's Authorization header, if it has one.
fn auth_username(request: &Request) -> Option<String> {
    let value = request
        .headers
        .get_all("Authorization")
        .find(|v| v.trim_start().starts_with("Digest"))?;
    let at = value.find("username=")? + "username=".len();
    let rest = &value[at..];
    let name = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()?
    } else {
        rest.split([',', ' ']).next()?
    };
    Some(name.to_owned())
}

/// The token of an `Authorization: Bearer` header (RFC 8898), if the request has one.
pub fn bearer_token(request: &Request) -> Option<String> {
    let value = request.headers.get("Authorization")?.trim();
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Checks a Twilio Access Token against the account's API keys, now.
pub async fn verify_token(
    shared: &Shared,
    token: &str,
) -> Result<api::access_token::AccessClaims, api::access_token::TokenError> {
    api::access_token::verify_with_store(&shared.store, token, unix_now() as i64).await
}

/// A 403 naming the token's fault with Twilio's code (`X-Dialtone-Error`), which the browser
/// SDK turns into its error event.
pub fn token_refused(request: &Request, code: u16, message: &str) -> Response {
    let mut response = Response::from_request(request, 403, "Forbidden");
    response
        .headers
        .push("X-Dialtone-Error", &format!("{code} {message}"));
    response
}

/// A REGISTER from the SIP task. Answers at once when the source is blocked or there are no
/// credentials; otherwise looks the user up in the store on a task and answers from there.
pub fn handle_register(
    shared: &Arc<Shared>,
    tx: ServerTxId,
    request: Request,
    source: SocketAddr,
    transport: Transport,
) {
    let now = Instant::now();
    let regs = &shared.registrar;
    let respond = move |shared: &Shared, mut response: Response| {
        if response.to().is_some_and(|t| t.tag().is_none()) {
            response.set_to_tag(&format!("{:016x}", rand::random::<u64>()));
        }
        let _ = shared.sip.send(SipCommand::Respond { tx, response });
    };
    if lock(&regs.state).guard.is_blocked(source.ip(), now) {
        respond(shared, Registrations::forbidden(&request));
        return;
    }
    if let Some(token) = bearer_token(&request) {
        // A browser with a Twilio Access Token (RFC 8898): no digest challenge.
        let shared = shared.clone();
        tokio::spawn(async move {
            let response = match verify_token(&shared, &token).await {
                Ok(claims) if claims.voice.as_ref().is_some_and(|v| v.incoming_allow) => {
                    lock(&shared.registrar.state)
                        .guard
                        .handle_success(source.ip());
                    shared.registrar.apply(
                        Instant::now(),
                        claims.account_sid,
                        &claims.identity,
                        &request,
                        source,
                        transport,
                    )
                }
                Ok(claims) => {
                    tracing::info!(identity = %claims.identity, "REGISTER refused: the token allows no incoming calls");
                    token_refused(&request, 20106, "Access Token has no incoming voice grant")
                }
                Err(api::access_token::TokenError::Store(e)) => {
                    tracing::warn!(error = %e, "API key lookup failed during REGISTER");
                    Response::from_request(&request, 500, "Server Internal Error")
                }
                Err(e) => {
                    tracing::info!(%source, error = %e, "REGISTER refused: bad access token");
                    lock(&shared.registrar.state)
                        .guard
                        .handle_failure(source.ip(), Instant::now());
                    token_refused(&request, e.code(), e.message())
                }
            };
            respond(&shared, response);
        });
        return;
    }
    let Some(username) = auth_username(&request) else {
        respond(shared, regs.challenge(&request, false));
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let regs = &shared.registrar;
        let host = request_host(&request.uri).unwrap_or_default();
        // Store errors answer like an unknown user: the phone retries, nothing is revealed.
        let scope = shared
            .store
            .sip_realm_scope(&host)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "SIP domain lookup failed");
                None
            });
        let digests = match &scope {
            Some(s) => shared
                .store
                .sip_digests(s, &username)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "SIP credential lookup failed");
                    None
                }),
            None => None,
        };
        let now = Instant::now();
        let response = match regs.check(
            now,
            &request,
            source.ip(),
            scope.map(|s| s.account_sid),
            digests,
        ) {
            Verdict::Respond(r) => r,
            Verdict::Authenticated {
                scope_account,
                username,
            } => regs.apply(now, scope_account, &username, &request, source, transport),
        };
        respond(&shared, response);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::Method;

    fn register(user: &str, host: &str) -> Request {
        let mut r = Request::new(Method::Register, &format!("sip:{host}"));
        r.headers
            .push("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKabc");
        r.headers
            .push("From", &format!("<sip:{user}@{host}>;tag=1"));
        r.headers.push("To", &format!("<sip:{user}@{host}>"));
        r.headers.push("Call-ID", "reg-1");
        r.headers.push("CSeq", "1 REGISTER");
        r.headers
            .push("Contact", &format!("<sip:{user}@10.0.0.5:5062>"));
        r.headers.push("Expires", "600");
        r
    }

    fn answered(
        regs: &Registrations,
        user: &str,
        password: &str,
        challenge_index: usize,
    ) -> Request {
        let mut r = register(user, "127.0.0.1");
        let challenge = regs.challenge(&r, false);
        let value = challenge
            .headers
            .get_all("WWW-Authenticate")
            .nth(challenge_index)
            .unwrap()
            .to_string();
        let auth = sip::auth::authorize(&value, &Method::Register, &r.uri, user, password, "cn", 1)
            .unwrap();
        r.headers.push("Authorization", &auth);
        r
    }

    fn status(v: &Verdict) -> u16 {
        match v {
            Verdict::Respond(r) => r.status(),
            Verdict::Authenticated { .. } => 200,
        }
    }

    const SRC: &str = "127.0.0.1:5062";

    #[test]
    fn good_password_registers_with_either_algorithm() {
        let regs = Registrations::default();
        let account = AccountSid::generate();
        let d = SipDigests::new("alice", "Correct-Horse-9");
        let source: SocketAddr = SRC.parse().unwrap();
        for index in [0, 1] {
            let mut req = answered(&regs, "alice", "Correct-Horse-9", index);
            // A refresh: same Call-ID, next CSeq.
            req.headers.remove("CSeq");
            req.headers.push("CSeq", &format!("{} REGISTER", index + 1));
            let v = regs.check(
                Instant::now(),
                &req,
                source.ip(),
                Some(account),
                Some(d.clone()),
            );
            let Verdict::Authenticated {
                scope_account,
                username,
            } = v
            else {
                panic!("not authenticated")
            };
            assert_eq!((scope_account, username.as_str()), (account, "alice"));
            let resp = regs.apply(
                Instant::now(),
                account,
                "alice",
                &req,
                source,
                Transport::Udp,
            );
            assert_eq!(resp.status(), 200);
        }
        let targets = regs.contacts(Instant::now(), &account, "alice");
        assert_eq!(
            targets,
            vec![ContactTarget {
                uri: "sip:alice@10.0.0.5:5062".into(),
                destination: source,
                transport: Transport::Udp
            }]
        );
        assert!(regs
            .contacts(Instant::now(), &AccountSid::generate(), "alice")
            .is_empty());

        // Unregister.
        let mut req = answered(&regs, "alice", "Correct-Horse-9", 0);
        req.headers.remove("Expires");
        req.headers.push("Expires", "0");
        req.headers.remove("CSeq");
        req.headers.push("CSeq", "3 REGISTER");
        assert_eq!(
            regs.apply(
                Instant::now(),
                account,
                "alice",
                &req,
                source,
                Transport::Udp
            )
            .status(),
            200
        );
        assert!(regs.contacts(Instant::now(), &account, "alice").is_empty());
    }

    #[test]
    fn unknown_user_and_wrong_password_look_the_same() {
        let regs = Registrations::default();
        let account = AccountSid::generate();
        let d = SipDigests::new("alice", "Correct-Horse-9");
        let wrong = regs.check(
            Instant::now(),
            &answered(&regs, "alice", "guess", 0),
            "10.0.0.1".parse().unwrap(),
            Some(account),
            Some(d),
        );
        let unknown = regs.check(
            Instant::now(),
            &answered(&regs, "bob", "guess", 0),
            "10.0.0.2".parse().unwrap(),
            Some(account),
            None,
        );
        let no_domain = regs.check(
            Instant::now(),
            &answered(&regs, "bob", "guess", 0),
            "10.0.0.3".parse().unwrap(),
            None,
            None,
        );
        let shape = |v: &Verdict| match v {
            Verdict::Respond(r) => {
                let names: Vec<String> = r
                    .headers
                    .iter()
                    .map(|(n, _)| n.to_ascii_lowercase())
                    .collect();
                let challenges: Vec<String> = r
                    .headers
                    .get_all("WWW-Authenticate")
                    .map(|c| c.split("nonce=").next().unwrap_or("").to_owned())
                    .collect();
                (r.status(), names, challenges)
            }
            Verdict::Authenticated { .. } => panic!("authenticated"),
        };
        assert_eq!(shape(&wrong).0, 401);
        assert_eq!(shape(&wrong), shape(&unknown));
        assert_eq!(shape(&wrong), shape(&no_domain));
    }

    #[test]
    fn repeated_failures_get_403_then_the_source_is_blocked() {
        let regs = Registrations::default();
        let account = AccountSid::generate();
        let d = SipDigests::new("alice", "Correct-Horse-9");
        let ip: IpAddr = "10.9.9.9".parse().unwrap();
        let t0 = Instant::now();
        let mut statuses = Vec::new();
        for i in 0..BLOCK_AFTER {
            let req = answered(&regs, "alice", &format!("guess{i}"), 0);
            statuses.push(status(&regs.check(
                t0,
                &req,
                ip,
                Some(account),
                Some(d.clone()),
            )));
        }
        assert_eq!(&statuses[..FORBID_AFTER - 1], &[401; FORBID_AFTER - 1]);
        assert!(
            statuses[FORBID_AFTER - 1..].iter().all(|s| *s == 403),
            "{statuses:?}"
        );
        let guard = &lock(&regs.state).guard;
        assert!(guard.is_blocked(ip, t0 + Duration::from_secs(1)));
        assert!(!guard.is_blocked(ip, t0 + BLOCK_FOR + Duration::from_secs(1)));
        assert!(!guard.is_blocked("10.9.9.8".parse().unwrap(), t0));
    }

    #[test]
    fn failures_age_out_of_the_window_and_success_clears_them() {
        let mut guard = FailureGuard::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(guard.handle_failure(ip, t0), FailureVerdict::Challenge);
        assert_eq!(guard.handle_failure(ip, t0), FailureVerdict::Challenge);
        // The first two are out of the window a minute later.
        let later = t0 + FAILURE_WINDOW + Duration::from_secs(1);
        assert_eq!(guard.handle_failure(ip, later), FailureVerdict::Challenge);
        guard.handle_success(ip);
        assert_eq!(guard.handle_failure(ip, later), FailureVerdict::Challenge);
        assert_eq!(guard.handle_failure(ip, later), FailureVerdict::Challenge);
        assert_eq!(guard.handle_failure(ip, later), FailureVerdict::Forbid);
    }

    #[test]
    fn a_user_cannot_register_someone_elses_address() {
        let regs = Registrations::default();
        let account = AccountSid::generate();
        let mut req = answered(&regs, "alice", "Correct-Horse-9", 0);
        req.headers.remove("To");
        req.headers.push("To", "<sip:bob@127.0.0.1>");
        let v = regs.check(
            Instant::now(),
            &req,
            "10.0.0.1".parse().unwrap(),
            Some(account),
            Some(SipDigests::new("alice", "Correct-Horse-9")),
        );
        assert_eq!(status(&v), 403);
    }

    #[test]
    fn stale_nonce_is_rechallenged_with_stale() {
        let regs = Registrations::default();
        let account = AccountSid::generate();
        let mut req = register("alice", "127.0.0.1");
        let nonce_time = unix_now() - 3600;
        let value = regs.challenger.challenges(nonce_time, false).remove(0);
        let auth = sip::auth::authorize(
            &value,
            &Method::Register,
            &req.uri,
            "alice",
            "Correct-Horse-9",
            "cn",
            1,
        )
        .unwrap();
        req.headers.push("Authorization", &auth);
        let Verdict::Respond(r) = regs.check(
            Instant::now(),
            &req,
            "10.0.0.1".parse().unwrap(),
            Some(account),
            Some(SipDigests::new("alice", "Correct-Horse-9")),
        ) else {
            panic!("accepted a stale nonce")
        };
        assert_eq!(r.status(), 401);
        assert!(r
            .headers
            .get("WWW-Authenticate")
            .unwrap()
            .contains("stale=true"));
    }

    #[test]
    fn md5_only_agents_get_one_challenge() {
        let regs = Registrations::default();
        let mut req = register("alice", "127.0.0.1");
        assert_eq!(
            regs.challenge(&req, false)
                .headers
                .get_all("WWW-Authenticate")
                .count(),
            2
        );
        req.headers
            .push("User-Agent", "baresip v1.0.0 (x86_64/linux)");
        let resp = regs.challenge(&req, true);
        let values: Vec<&str> = resp.headers.get_all("WWW-Authenticate").collect();
        assert_eq!(values.len(), 1);
        assert!(
            values[0].contains("algorithm=MD5") && values[0].contains("stale=true"),
            "{values:?}"
        );
    }

    #[test]
    fn hosts_and_usernames_are_read_leniently() {
        assert_eq!(
            request_host("sip:Acme.Example.com;transport=tcp").as_deref(),
            Some("acme.example.com")
        );
        assert_eq!(
            request_host("sip:127.0.0.1:5060").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(request_host("sip:u@[::1]:5060").as_deref(), Some("::1"));
        assert_eq!(request_host("nonsense"), None);
        let regs = Registrations::default();
        assert_eq!(
            auth_username(&answered(&regs, "alice", "x", 0)).as_deref(),
            Some("alice")
        );
        assert_eq!(auth_username(&register("alice", "h")), None);
        let mut r = register("a", "h");
        r.headers.push("Authorization", "Digest username=");
        assert_eq!(auth_username(&r).as_deref(), Some(""));
    }

    #[test]
    fn a_live_binding_vouches_for_its_source_ip_until_it_ends() {
        let regs = Registrations::default();
        let account = AccountSid::generate();
        let source: SocketAddr = SRC.parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(!regs.has_binding_from(t0, source.ip()));
        let req = answered(&regs, "alice", "Correct-Horse-9", 0);
        assert_eq!(
            regs.apply(t0, account, "alice", &req, source, Transport::Udp)
                .status(),
            200
        );
        assert!(regs.has_binding_from(t0, source.ip()));
        assert!(
            regs.has_binding_from(t0, mapped),
            "an IPv4-mapped peer is the same address"
        );
        assert!(!regs.has_binding_from(t0, other));

        // Past its expiry it vouches for nothing, even before the expiry tick removes it.
        let late = t0 + Duration::from_secs(601);
        assert!(!regs.has_binding_from(late, source.ip()));
        regs.handle_timeout(late);
        assert!(lock(&regs.state).by_source.is_empty());

        // Registered again, then unregistered.
        let mut req = answered(&regs, "alice", "Correct-Horse-9", 0);
        req.headers.remove("CSeq");
        req.headers.push("CSeq", "2 REGISTER");
        assert_eq!(
            regs.apply(late, account, "alice", &req, source, Transport::Udp)
                .status(),
            200
        );
        assert!(regs.has_binding_from(late, source.ip()));
        let mut req = answered(&regs, "alice", "Correct-Horse-9", 0);
        req.headers.remove("Expires");
        req.headers.push("Expires", "0");
        req.headers.remove("CSeq");
        req.headers.push("CSeq", "3 REGISTER");
        assert_eq!(
            regs.apply(late, account, "alice", &req, source, Transport::Udp)
                .status(),
            200
        );
        assert!(!regs.has_binding_from(late, source.ip()));
        assert!(lock(&regs.state).by_source.is_empty());
    }
}
