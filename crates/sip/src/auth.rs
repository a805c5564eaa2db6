//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760):
//! MD5 and SHA-256 with `qop=auth`.
//!
//! Server side, [`DigestChallenger`] issues challenges and verifies credentials. Its nonces
//! are stateless: a nonce is the time it was issued plus an HMAC-SHA-256 of that time and the
//! realm under a secret key, so any node holding the key can check it and no nonce table is
//! kept. Time is passed in as whole seconds (`now: u64`); UNIX time is the natural choice so
//! nonces stay valid across restarts and between nodes that share the key. Nonce counts are
//! accepted without replay tracking: a replayed request is answered like the original, which
//! SIP transactions tolerate, and the nonce lifetime bounds the window.
//!
//! Client side, [`authorize`] and [`authorize_response`] answer a carrier's challenge for
//! REGISTER or an outbound INVITE. The client nonce (`cnonce`) comes from the caller's RNG.

use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::header::{is_token, parse_quoted, split_list, trim_lws};
use crate::message::{Method, Request, Response};

/// Digest algorithm (RFC 7616 §6.1). The `-sess` variants are only understood on the client
/// side; [`DigestChallenger`] offers and accepts SHA-256 and MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Algorithm names are case-insensitive.
    pub fn parse(s: &str) -> Option<Algorithm> {
        [Algorithm::Md5, Algorithm::Md5Sess, Algorithm::Sha256, Algorithm::Sha256Sess]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    fn is_sha256(self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha256Sess)
    }

    /// Length of a digest in lowercase hex.
    fn hex_len(self) -> usize {
        if self.is_sha256() {
            64
        } else {
            32
        }
    }

    /// `H(data)` as lowercase hex.
    fn hash(self, data: &str) -> String {
        if self.is_sha256() {
            hex::encode(Sha256::digest(data.as_bytes()))
        } else {
            hex::encode(Md5::digest(data.as_bytes()))
        }
    }
}

/// `H(username:realm:password)`, the HA1 a credential store can keep instead of the password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash(&format!("{username}:{realm}:{password}"))
}

/// What the server knows about a user, as returned by the `lookup` given to
/// [`DigestChallenger::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Password(String),
    /// Precomputed HA1 per algorithm (lowercase or uppercase hex). A user with only one of
    /// them can only authenticate with that algorithm.
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

impl Credential {
    /// Both HA1 values for storing instead of the password.
    pub fn precomputed(username: &str, realm: &str, password: &str) -> Credential {
        Credential::Ha1 {
            md5: Some(ha1(Algorithm::Md5, username, realm, password)),
            sha256: Some(ha1(Algorithm::Sha256, username, realm, password)),
        }
    }

    fn ha1(&self, algorithm: Algorithm, username: &str, realm: &str) -> Option<String> {
        let base = if algorithm.is_sha256() { Algorithm::Sha256 } else { Algorithm::Md5 };
        match self {
            Credential::Password(p) => Some(ha1(base, username, realm, p)),
            Credential::Ha1 { md5, sha256 } => {
                let stored = if base == Algorithm::Sha256 { sha256 } else { md5 };
                stored.as_ref().map(|h| h.to_ascii_lowercase())
            }
        }
    }
}

/// Which pair of headers a challenge uses: a registrar or UAS answers 401 with
/// WWW-Authenticate and reads Authorization; a proxy answers 407 with Proxy-Authenticate and
/// reads Proxy-Authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Www,
    Proxy,
}

impl ChallengeKind {
    pub fn status(self) -> (u16, &'static str) {
        match self {
            ChallengeKind::Www => (401, "Unauthorized"),
            ChallengeKind::Proxy => (407, "Proxy Authentication Required"),
        }
    }

    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOk {
    pub username: String,
    pub algorithm: Algorithm,
}

/// Why a request's credentials were not accepted. [`DigestChallenger::reject`] turns each
/// into the response to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    #[error("no credentials")]
    Missing,
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    #[error("credentials are for another realm")]
    RealmMismatch,
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    #[error("unsupported qop")]
    UnsupportedQop,
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
    #[error("nonce not issued by this server")]
    InvalidNonce,
    #[error("nonce expired")]
    StaleNonce,
    #[error("unknown user")]
    UnknownUser,
    #[error("no stored credential for this algorithm")]
    CredentialUnavailable,
    #[error("wrong digest response")]
    WrongResponse,
}

impl AuthFailure {
    /// 400 for requests that are broken rather than unauthenticated (RFC 2617 §3.2.2 for a
    /// mismatched uri); otherwise the challenge status of the challenger.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, AuthFailure::Malformed(_) | AuthFailure::UriMismatch)
    }
}

/// Client-side failures to answer a challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no challenge in the response")]
    NoChallenge,
    #[error("challenge scheme is not Digest")]
    NotDigest,
    #[error("malformed challenge: {0}")]
    Malformed(&'static str),
    #[error("unsupported digest algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0}")]
    UnsupportedQop(String),
}

/// How long an issued nonce stays fresh unless configured otherwise.
pub const DEFAULT_NONCE_LIFETIME_SECS: u64 = 300;

/// Issues Digest challenges and verifies the answers, for one realm.
#[derive(Clone)]
pub struct DigestChallenger {
    realm: String,
    key: [u8; 32],
    kind: ChallengeKind,
    nonce_lifetime: u64,
    check_uri: bool,
}

impl std::fmt::Debug for DigestChallenger {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestChallenger")
            .field("realm", &self.realm)
            .field("kind", &self.kind)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("check_uri", &self.check_uri)
            .finish_non_exhaustive()
    }
}

const NONCE_TIME_HEX: usize = 16;
const NONCE_MAC_HEX: usize = 32;

impl DigestChallenger {
    /// A registrar/UAS challenger (401, WWW-Authenticate) with a nonce lifetime of
    /// [`DEFAULT_NONCE_LIFETIME_SECS`]. `secret_key` must be random and, across nodes that
    /// should accept each other's nonces, shared.
    pub fn new(realm: &str, secret_key: [u8; 32]) -> DigestChallenger {
        DigestChallenger {
            realm: realm.to_string(),
            key: secret_key,
            kind: ChallengeKind::Www,
            nonce_lifetime: DEFAULT_NONCE_LIFETIME_SECS,
            check_uri: true,
        }
    }

    pub fn with_kind(mut self, kind: ChallengeKind) -> DigestChallenger {
        self.kind = kind;
        self
    }

    pub fn with_nonce_lifetime(mut self, secs: u64) -> DigestChallenger {
        self.nonce_lifetime = secs;
        self
    }

    /// Stops requiring the digest `uri` to equal the Request-URI. Only for deployments where a
    /// proxy in front rewrites the Request-URI; the response still covers the digest uri.
    pub fn without_uri_check(mut self) -> DigestChallenger {
        self.check_uri = false;
        self
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn kind(&self) -> ChallengeKind {
        self.kind
    }

    fn mac(&self, timestamp: u64) -> String {
        let mut msg = timestamp.to_be_bytes().to_vec();
        msg.extend_from_slice(self.realm.as_bytes());
        let mac = hmac_sha256(&self.key, &msg);
        hex::encode(&mac[..NONCE_MAC_HEX / 2])
    }

    /// A fresh nonce for time `now` (seconds).
    pub fn nonce(&self, now: u64) -> String {
        format!("{now:016x}{}", self.mac(now))
    }

    /// `Some(fresh)` for a nonce this challenger issued, `None` for a forged or foreign one.
    fn check_nonce(&self, nonce: &str, now: u64) -> Option<bool> {
        if nonce.len() != NONCE_TIME_HEX + NONCE_MAC_HEX || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        // Checked above: all ASCII, so these byte indices are char boundaries.
        let (time, mac) = nonce.split_at(NONCE_TIME_HEX);
        let issued = u64::from_str_radix(time, 16).ok()?;
        if !constant_time_eq(mac.to_ascii_lowercase().as_bytes(), self.mac(issued).as_bytes()) {
            return None;
        }
        // A nonce from the future means the clock moved back (or another node's clock runs
        // ahead); it gets the same window as one from the past.
        Some(now.abs_diff(issued) <= self.nonce_lifetime)
    }

    /// The challenge header values to send, SHA-256 first then MD5 (RFC 8760 §2.4: a client
    /// uses the first one it supports). `stale` tells the client its credentials were right
    /// but the nonce expired, so it retries without asking the user.
    pub fn challenges(&self, now: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now);
        [Algorithm::Sha256, Algorithm::Md5]
            .into_iter()
            .map(|alg| {
                let mut v = format!(
                    "Digest realm={}, nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                    quote(&self.realm),
                    alg.as_str()
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// The 401/407 response challenging `request`. The caller adds a To tag.
    pub fn challenge(&self, now: u64, request: &Request, stale: bool) -> Response {
        let (code, reason) = self.kind.status();
        let mut resp = Response::from_request(request, code, reason);
        for value in self.challenges(now, stale) {
            resp.headers.push(self.kind.challenge_header(), &value);
        }
        resp
    }

    /// The response for a failed [`verify`](Self::verify): 400 for malformed credentials or a
    /// mismatched uri, otherwise a fresh challenge (`stale=true` for an expired nonce).
    pub fn reject(&self, now: u64, request: &Request, failure: &AuthFailure) -> Response {
        if failure.is_bad_request() {
            return Response::from_request(request, 400, "Bad Request");
        }
        self.challenge(now, request, *failure == AuthFailure::StaleNonce)
    }

    /// Checks the request's credentials for this realm. `lookup(username, realm)` returns the
    /// user's stored credential. A stale nonce is reported only when everything else is right,
    /// so `StaleNonce` means "challenge again with stale=true".
    pub fn verify<F>(&self, now: u64, request: &Request, lookup: F) -> Result<AuthOk, AuthFailure>
    where
        F: Fn(&str, &str) -> Option<Credential>,
    {
        let creds = self.find_credentials(request)?;
        let field = |name: &'static str| creds.get(name).ok_or(AuthFailure::Malformed(name));
        let username = field("username")?;
        let nonce = field("nonce")?;
        let uri = field("uri")?;
        let response = field("response")?;
        let algorithm = match creds.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::parse(a) {
                Some(a @ (Algorithm::Md5 | Algorithm::Sha256)) => a,
                _ => return Err(AuthFailure::UnsupportedAlgorithm),
            },
        };
        // RFC 3261 §22.4: the challenge always carries qop, so the answer must too.
        match creds.get("qop") {
            Some(q) if q.eq_ignore_ascii_case("auth") => {}
            _ => return Err(AuthFailure::UnsupportedQop),
        }
        let cnonce = field("cnonce")?;
        let nc = field("nc")?;
        if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthFailure::Malformed("nc"));
        }
        if response.len() != algorithm.hex_len() {
            return Err(AuthFailure::Malformed("response"));
        }
        if self.check_uri && uri != request.uri {
            return Err(AuthFailure::UriMismatch);
        }
        let fresh = self.check_nonce(nonce, now).ok_or(AuthFailure::InvalidNonce)?;
        let credential = lookup(username, &self.realm).ok_or(AuthFailure::UnknownUser)?;
        let ha1 = credential.ha1(algorithm, username, &self.realm).ok_or(AuthFailure::CredentialUnavailable)?;
        let ha2 = algorithm.hash(&format!("{}:{uri}", request.method));
        let expected = algorithm.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        if !constant_time_eq(response.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
            return Err(AuthFailure::WrongResponse);
        }
        if !fresh {
            return Err(AuthFailure::StaleNonce);
        }
        Ok(AuthOk { username: username.to_string(), algorithm })
    }

    /// The Digest credentials for this realm; a request may carry credentials for several.
    fn find_credentials(&self, request: &Request) -> Result<AuthParams, AuthFailure> {
        let mut failure = AuthFailure::Missing;
        for value in request.headers.get_all(self.kind.credentials_header()) {
            match parse_auth(value) {
                Ok(params) if params.is_digest() => {
                    if params.get("realm") == Some(self.realm.as_str()) {
                        return Ok(params);
                    }
                    if failure == AuthFailure::Missing {
                        failure = AuthFailure::RealmMismatch;
                    }
                }
                // Another scheme is not ours to judge.
                Ok(_) => {}
                Err(what) => failure = AuthFailure::Malformed(what),
            }
        }
        Err(failure)
    }
}

/// A parsed Digest challenge (WWW-Authenticate / Proxy-Authenticate value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `None` when the challenge names none (MD5 is then implied).
    pub algorithm: Option<String>,
    /// The offered qop values; empty for an RFC 2069 challenge.
    pub qop: Vec<String>,
    pub stale: bool,
}

impl Challenge {
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let params = parse_auth(value).map_err(AuthError::Malformed)?;
        if !params.is_digest() {
            return Err(AuthError::NotDigest);
        }
        let realm = params.get("realm").ok_or(AuthError::Malformed("realm"))?;
        let nonce = params.get("nonce").ok_or(AuthError::Malformed("nonce"))?;
        let qop = params
            .get("qop")
            .map(|q| q.split(',').map(trim_lws).filter(|q| !q.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        Ok(Challenge {
            realm: realm.to_string(),
            nonce: nonce.to_string(),
            opaque: params.get("opaque").map(str::to_string),
            algorithm: params.get("algorithm").map(str::to_string),
            qop,
            stale: params.get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The algorithm to answer with, or why this challenge cannot be answered.
    pub fn algorithm(&self) -> Result<Algorithm, AuthError> {
        match &self.algorithm {
            None => Ok(Algorithm::Md5),
            Some(a) => Algorithm::parse(a).ok_or_else(|| AuthError::UnsupportedAlgorithm(a.clone())),
        }
    }
}

/// Answers one Digest challenge: returns the Authorization (or Proxy-Authorization) header
/// value for a request with `method` and Request-URI `uri`. `cnonce` should be fresh random
/// text (token characters); `nc` counts the requests made with this nonce, starting at 1.
pub fn authorize(
    challenge: &str,
    method: &Method,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, AuthError> {
    let challenge = Challenge::parse(challenge)?;
    let algorithm = challenge.algorithm()?;
    let use_qop = if challenge.qop.iter().any(|q| q.eq_ignore_ascii_case("auth")) {
        true
    } else if challenge.qop.is_empty() {
        false
    } else {
        return Err(AuthError::UnsupportedQop(challenge.qop.join(",")));
    };
    let nonce = &challenge.nonce;
    let mut ha1 = ha1(algorithm, username, &challenge.realm, password);
    if algorithm.is_sess() {
        ha1 = algorithm.hash(&format!("{ha1}:{nonce}:{cnonce}"));
    }
    let ha2 = algorithm.hash(&format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = if use_qop {
        algorithm.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
    } else {
        algorithm.hash(&format!("{ha1}:{nonce}:{ha2}"))
    };
    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\"",
        quote(username),
        quote(&challenge.realm),
        quote(nonce),
        quote(uri)
    );
    if challenge.algorithm.is_some() {
        out.push_str(", algorithm=");
        out.push_str(algorithm.as_str());
    }
    if use_qop {
        out.push_str(&format!(", cnonce={}, qop=auth, nc={nc}", quote(cnonce)));
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(", opaque=");
        out.push_str(&quote(opaque));
    }
    Ok(out)
}

/// Answers a 401 or 407: picks the strongest Digest challenge this client supports (SHA-256
/// over MD5, the first of equals) and returns the header name to add to the retried request
/// (`Authorization` or `Proxy-Authorization`) with its value.
pub fn authorize_response(
    response: &Response,
    method: &Method,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Result<(&'static str, String), AuthError> {
    let kind = match response.status() {
        401 => ChallengeKind::Www,
        407 => ChallengeKind::Proxy,
        _ => return Err(AuthError::NoChallenge),
    };
    let mut best: Option<(bool, &str)> = None;
    let mut first_error = None;
    for value in response.headers.get_all(kind.challenge_header()) {
        match Challenge::parse(value).and_then(|c| c.algorithm()) {
            Ok(alg) => {
                let better = match best {
                    None => true,
                    Some((sha, _)) => alg.is_sha256() && !sha,
                };
                if better {
                    best = Some((alg.is_sha256(), value));
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match best {
        Some((_, value)) => {
            let header = kind.credentials_header();
            Ok((header, authorize(value, method, uri, username, password, cnonce, nc)?))
        }
        None => Err(first_error.unwrap_or(AuthError::NoChallenge)),
    }
}

/// A parsed `scheme param=value, ...` header value. Names are lowercased; values unquoted.
struct AuthParams {
    scheme: String,
    params: Vec<(String, String)>,
}

impl AuthParams {
    fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses `challenge` / `credentials` (RFC 7235 §2.1, RFC 3261 §25.1): a scheme token, then
/// comma-separated `name = token / quoted-string`. Empty list elements are skipped (RFC 7230
/// §7), unknown parameters kept and ignored by the callers, duplicates rejected because they
/// make the meaning ambiguous.
fn parse_auth(value: &str) -> Result<AuthParams, &'static str> {
    let value = trim_lws(value);
    let (scheme, rest) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if !is_token(scheme) {
        return Err("scheme");
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for element in split_list(rest) {
        if element.is_empty() {
            continue;
        }
        let (name, raw) = element.split_once('=').ok_or("parameter")?;
        let name = trim_lws(name);
        let raw = trim_lws(raw);
        if !is_token(name) {
            return Err("parameter name");
        }
        let value = if raw.starts_with('"') {
            match parse_quoted(raw) {
                Some((v, end)) if end == raw.len() => v,
                _ => return Err("quoted string"),
            }
        } else if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b',') {
            // Lenient: some servers send unquoted values with '/' or '=' (token68 style).
            raw.to_string()
        } else {
            return Err("parameter value");
        };
        let name = name.to_ascii_lowercase();
        if params.iter().any(|(n, _)| *n == name) {
            return Err("duplicate parameter");
        }
        params.push((name, value));
    }
    Ok(AuthParams { scheme: scheme.to_string(), params })
}

/// A quoted-string with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Compares without an early exit on the first differing byte, so response timing does not
/// reveal how much of a guessed digest was right. Lengths are public (fixed per algorithm).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA-256 (RFC 2104), from the `hmac` crate.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC takes keys of any length, so construction cannot fail.
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const T0: u64 = 1_700_000_000;

    fn register(uri: &str) -> Request {
        let mut req = Request::new(Method::Register, uri);
        req.headers.push("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKabc");
        req.headers.push("From", "<sip:alice@example.com>;tag=1");
        req.headers.push("To", "<sip:alice@example.com>");
        req.headers.push("Call-ID", "c1");
        req.headers.push("CSeq", "1 REGISTER");
        req
    }

    fn users(username: &str, realm: &str) -> Option<Credential> {
        match (username, realm) {
            ("alice", "example.com") => Some(Credential::Password("s3cret".into())),
            ("bob", "example.com") => Some(Credential::precomputed("bob", "example.com", "hunter2")),
            ("carol", "example.com") => Some(Credential::Ha1 {
                md5: Some(ha1(Algorithm::Md5, "carol", "example.com", "pw").to_ascii_uppercase()),
                sha256: None,
            }),
            _ => None,
        }
    }

    /// Challenges `req`, answers as `user`/`password` with the challenge at `index`
    /// (0 = SHA-256, 1 = MD5), and returns the authorized request.
    fn answered(ch: &DigestChallenger, now: u64, index: usize, user: &str, password: &str) -> Request {
        let mut req = register("sip:example.com");
        let challenge = ch.challenge(now, &req, false);
        let value = challenge.headers.get_all("WWW-Authenticate").nth(index).unwrap().to_string();
        let auth = authorize(&value, &Method::Register, &req.uri, user, password, "0a4f113b", 1).unwrap();
        req.headers.push("Authorization", &auth);
        req
    }

    #[test]
    fn rfc2617_example_md5() {
        let challenge = "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
            nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let get = Method::Extension("GET".into());
        let auth = authorize(challenge, &get, "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b", 1).unwrap();
        assert!(auth.contains("response=\"6629fae49393a05397450978507c4ef1\""), "{auth}");
        assert!(auth.contains("nc=00000001"));
        assert!(auth.contains("qop=auth,") || auth.contains("qop=auth "), "{auth}");
        assert!(auth.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        // No algorithm in the challenge: none in the answer (RFC 2617 clients do the same).
        assert!(!auth.contains("algorithm"));
    }

    #[test]
    fn rfc7616_examples_sha256_and_md5() {
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let opaque = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let get = Method::Extension("GET".into());
        for (alg, expected) in [
            ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let challenge = format!(
                "Digest\r\n realm=\"http-auth@example.org\",\tqop=\"auth, auth-int\", algorithm={alg}, \
                 nonce=\"{nonce}\", opaque=\"{opaque}\""
            );
            // The header parser unfolds continuation lines to a space; do the same here.
            let challenge = challenge.replace("\r\n ", " ");
            let auth = authorize(&challenge, &get, "/dir/index.html", "Mufasa", "Circle of Life", cnonce, 1).unwrap();
            assert!(auth.contains(&format!("response=\"{expected}\"")), "{alg}: {auth}");
            assert!(auth.contains(&format!("algorithm={alg}")));
        }
    }

    #[test]
    fn round_trip_both_algorithms() {
        let ch = DigestChallenger::new("example.com", KEY);
        for (index, alg) in [(0, Algorithm::Sha256), (1, Algorithm::Md5)] {
            let req = answered(&ch, T0, index, "alice", "s3cret");
            let ok = ch.verify(T0 + 5, &req, users).unwrap();
            assert_eq!(ok, AuthOk { username: "alice".into(), algorithm: alg });
            // Precomputed HA1 works the same.
            let req = answered(&ch, T0, index, "bob", "hunter2");
            assert_eq!(ch.verify(T0 + 5, &req, users).unwrap().username, "bob");
        }
    }

    #[test]
    fn challenge_offers_sha256_then_md5() {
        let ch = DigestChallenger::new("example.com", KEY);
        let resp = ch.challenge(T0, &register("sip:example.com"), false);
        assert_eq!(resp.status(), 401);
        let values: Vec<_> = resp.headers.get_all("WWW-Authenticate").collect();
        assert_eq!(values.len(), 2);
        assert_eq!(Challenge::parse(values[0]).unwrap().algorithm().unwrap(), Algorithm::Sha256);
        assert_eq!(Challenge::parse(values[1]).unwrap().algorithm().unwrap(), Algorithm::Md5);
        let c = Challenge::parse(values[0]).unwrap();
        assert_eq!(c.qop, vec!["auth".to_string()]);
        assert!(!c.stale);
        // authorize_response prefers SHA-256 whatever the order.
        let mut swapped = resp.clone();
        swapped.headers.remove("WWW-Authenticate");
        swapped.headers.push("WWW-Authenticate", values[1]);
        swapped.headers.push("WWW-Authenticate", values[0]);
        let (name, value) =
            authorize_response(&swapped, &Method::Register, "sip:example.com", "alice", "s3cret", "x", 1).unwrap();
        assert_eq!(name, "Authorization");
        assert!(value.contains("algorithm=SHA-256"));

        let proxy = DigestChallenger::new("example.com", KEY).with_kind(ChallengeKind::Proxy);
        let resp = proxy.challenge(T0, &register("sip:example.com"), false);
        assert_eq!(resp.status(), 407);
        let (name, value) =
            authorize_response(&resp, &Method::Register, "sip:example.com", "alice", "s3cret", "x", 1).unwrap();
        assert_eq!(name, "Proxy-Authorization");
        let mut req = register("sip:example.com");
        req.headers.push(name, &value);
        assert!(proxy.verify(T0, &req, users).is_ok());
        // A proxy challenger ignores the Authorization header.
        assert_eq!(proxy.verify(T0, &answered(&ch, T0, 0, "alice", "s3cret"), users), Err(AuthFailure::Missing));
    }

    #[test]
    fn wrong_password_and_unknown_user() {
        let ch = DigestChallenger::new("example.com", KEY);
        let req = answered(&ch, T0, 0, "alice", "guess");
        assert_eq!(ch.verify(T0, &req, users), Err(AuthFailure::WrongResponse));
        let resp = ch.reject(T0, &req, &AuthFailure::WrongResponse);
        assert_eq!(resp.status(), 401);
        let req = answered(&ch, T0, 0, "mallory", "x");
        assert_eq!(ch.verify(T0, &req, users), Err(AuthFailure::UnknownUser));
        // carol only has an MD5 HA1 (stored in uppercase hex).
        let req = answered(&ch, T0, 0, "carol", "pw");
        assert_eq!(ch.verify(T0, &req, users), Err(AuthFailure::CredentialUnavailable));
        let req = answered(&ch, T0, 1, "carol", "pw");
        assert!(ch.verify(T0, &req, users).is_ok());
    }

    #[test]
    fn wrong_realm() {
        let ours = DigestChallenger::new("example.com", KEY);
        let theirs = DigestChallenger::new("other.example", KEY);
        let req = answered(&theirs, T0, 0, "alice", "s3cret");
        assert_eq!(ours.verify(T0, &req, users), Err(AuthFailure::RealmMismatch));
        assert_eq!(ours.verify(T0, &register("sip:example.com"), users), Err(AuthFailure::Missing));
        // Credentials for two realms: ours is found whatever the order.
        let mut both = req.clone();
        let good = answered(&ours, T0, 0, "alice", "s3cret");
        both.headers.push("Authorization", good.headers.get("Authorization").unwrap());
        assert!(ours.verify(T0, &both, users).is_ok());
        // A realm edited by the client breaks the nonce check or the response.
        let edited = good.headers.get("Authorization").unwrap().replace("example.com", "example.org");
        let mut req = register("sip:example.com");
        req.headers.push("Authorization", &edited);
        assert_eq!(ours.verify(T0, &req, users), Err(AuthFailure::RealmMismatch));
    }

    #[test]
    fn stale_nonce_is_reported_only_when_the_rest_is_right() {
        let ch = DigestChallenger::new("example.com", KEY).with_nonce_lifetime(60);
        let req = answered(&ch, T0, 0, "alice", "s3cret");
        assert!(ch.verify(T0 + 60, &req, users).is_ok());
        assert_eq!(ch.verify(T0 + 61, &req, users), Err(AuthFailure::StaleNonce));
        assert_eq!(ch.verify(T0 - 61, &req, users), Err(AuthFailure::StaleNonce));
        let resp = ch.reject(T0 + 61, &req, &AuthFailure::StaleNonce);
        assert_eq!(resp.status(), 401);
        for value in resp.headers.get_all("WWW-Authenticate") {
            assert!(Challenge::parse(value).unwrap().stale);
        }
        let wrong = answered(&ch, T0, 0, "alice", "guess");
        assert_eq!(ch.verify(T0 + 61, &wrong, users), Err(AuthFailure::WrongResponse));
    }

    #[test]
    fn tampered_or_foreign_nonce() {
        let ch = DigestChallenger::new("example.com", KEY);
        let req = answered(&ch, T0, 1, "alice", "s3cret");
        let auth = req.headers.get("Authorization").unwrap().to_string();
        let nonce = ch.nonce(T0);
        // Move the timestamp forward to extend the lifetime: the MAC no longer matches.
        let forged_nonce = format!("{:016x}{}", T0 + 10_000, &nonce[16..]);
        let forged = authorize(
            &format!("Digest realm=\"example.com\", nonce=\"{forged_nonce}\", qop=\"auth\", algorithm=MD5"),
            &Method::Register,
            "sip:example.com",
            "alice",
            "s3cret",
            "c",
            1,
        )
        .unwrap();
        let mut bad = register("sip:example.com");
        bad.headers.push("Authorization", &forged);
        assert_eq!(ch.verify(T0 + 10_000, &bad, users), Err(AuthFailure::InvalidNonce));
        // Another key (another deployment) does not accept our nonces.
        let other = DigestChallenger::new("example.com", [8; 32]);
        assert_eq!(other.verify(T0, &req, users), Err(AuthFailure::InvalidNonce));
        // A changed response is caught.
        let at = auth.find("response=\"").unwrap() + "response=\"".len();
        let first = if &auth[at..=at] == "0" { "1" } else { "0" };
        let flipped = format!("{}{first}{}", &auth[..at], &auth[at + 1..]);
        let mut bad = register("sip:example.com");
        bad.headers.push("Authorization", &flipped);
        assert_eq!(ch.verify(T0, &bad, users), Err(AuthFailure::WrongResponse));
        // Uri checked against the Request-URI.
        let mut moved = req.clone();
        moved.uri = "sip:other.example.com".into();
        assert_eq!(ch.verify(T0, &moved, users), Err(AuthFailure::UriMismatch));
        assert_eq!(ch.reject(T0, &moved, &AuthFailure::UriMismatch).status(), 400);
        let relaxed = ch.clone().without_uri_check();
        assert!(relaxed.verify(T0, &moved, users).is_ok());
    }

    #[test]
    fn malformed_headers_never_panic() {
        let ch = DigestChallenger::new("example.com", KEY);
        let good = answered(&ch, T0, 0, "alice", "s3cret").headers.get("Authorization").unwrap().to_string();
        let cases = [
            "",
            "Digest",
            "Digest ,,,",
            "Digest username",
            "Digest username=\"alice",
            "Digest username=\"al\"ice\", realm=\"example.com\"",
            "Digest realm=example.com, realm=example.com",
            "Digest realm=\"example.com\", username=\"\\",
            "Digest realm=\"example.com\", nonce=\"\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\"",
            "\"Digest\" realm=x",
            "Digest realm=\"example.com\", =x",
            "Digest realm=\"example.com\", <a=b, c=d>",
        ];
        for case in cases {
            let mut req = register("sip:example.com");
            req.headers.push("Authorization", case);
            assert!(ch.verify(T0, &req, users).is_err(), "{case}");
            let _ = Challenge::parse(case);
            let _ = authorize(case, &Method::Register, "sip:x", "u", "p", "c", 1);
        }
        // Every truncation and a byte-flip of a real header is handled.
        for i in 0..good.len() {
            if let Some(prefix) = good.get(..i) {
                let mut req = register("sip:example.com");
                req.headers.push("Authorization", prefix);
                assert!(ch.verify(T0, &req, users).is_err());
                let _ = Challenge::parse(prefix);
            }
        }
        // Missing qop, wrong qop, unknown algorithm, short response.
        for (from, to, want) in [
            (", qop=auth", "", AuthFailure::UnsupportedQop),
            ("qop=auth", "qop=auth-int", AuthFailure::UnsupportedQop),
            ("algorithm=SHA-256", "algorithm=SHA-512-256", AuthFailure::UnsupportedAlgorithm),
            ("algorithm=SHA-256", "algorithm=SHA-256-sess", AuthFailure::UnsupportedAlgorithm),
            ("nc=00000001", "nc=1", AuthFailure::Malformed("nc")),
            ("\", algorithm", "0\", algorithm", AuthFailure::Malformed("response")),
        ] {
            let mut req = register("sip:example.com");
            req.headers.push("Authorization", &good.replace(from, to));
            assert_eq!(ch.verify(T0, &req, users), Err(want), "{from} -> {to}");
        }
        // Unknown parameters, odd spacing, and escapes are accepted.
        let mut req = register("sip:example.com");
        req.headers.push("Authorization", &format!("{good} , foo=\"a,b\\\"c\",bar=baz,"));
        assert!(ch.verify(T0, &req, users).is_ok());
        // Basic credentials alongside are ignored.
        let mut req = answered(&ch, T0, 0, "alice", "s3cret");
        req.headers.push_front("Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l");
        assert!(ch.verify(T0, &req, users).is_ok());
        // Client-side errors.
        assert_eq!(
            authorize("Basic realm=\"x\"", &Method::Register, "sip:x", "u", "p", "c", 1),
            Err(AuthError::NotDigest)
        );
        assert_eq!(
            authorize(
                "Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"",
                &Method::Register,
                "sip:x",
                "u",
                "p",
                "c",
                1
            ),
            Err(AuthError::UnsupportedQop("auth-int".into()))
        );
        assert!(matches!(
            authorize(
                "Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512",
                &Method::Register,
                "sip:x",
                "u",
                "p",
                "c",
                1
            ),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(
            authorize("Digest nonce=\"n\"", &Method::Register, "sip:x", "u", "p", "c", 1),
            Err(AuthError::Malformed("realm"))
        );
        let ok = Response::new(200, "OK");
        assert_eq!(authorize_response(&ok, &Method::Register, "sip:x", "u", "p", "c", 1), Err(AuthError::NoChallenge));
    }

    #[test]
    fn random_mutations_never_panic() {
        use rand::{Rng, SeedableRng};
        let ch = DigestChallenger::new("example.com", KEY);
        let good = answered(&ch, T0, 0, "alice", "s3cret").headers.get("Authorization").unwrap().to_string();
        let challenge = ch.challenges(T0, true).remove(0);
        let pieces = ["\"", "\\", ",", "=", " ", "<", ">", "\u{e9}", ";", "", "Digest", "algorithm=MD5"];
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        for _ in 0..1000 {
            for base in [&good, &challenge] {
                let mut text = base.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let mut at = rng.gen_range(0..=text.len());
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    let cut = rng.gen_range(0..3).min(text.len() - at);
                    let end = (at + cut..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
                    text.replace_range(at..end, pieces[rng.gen_range(0..pieces.len())]);
                }
                let mut req = register("sip:example.com");
                req.headers.push("Authorization", &text);
                let _ = ch.verify(T0, &req, users);
                let _ = Challenge::parse(&text);
                let _ = authorize(&text, &Method::Register, "sip:example.com", "alice", "s3cret", "c", 1);
            }
        }
    }

    #[test]
    fn sess_and_legacy_challenges() {
        // RFC 2069 (no qop): response = H(HA1:nonce:HA2), no cnonce/nc sent.
        let auth = authorize("Digest realm=\"r\", nonce=\"n\"", &Method::Invite, "sip:b@r", "u", "p", "c", 1).unwrap();
        let ha1 = ha1(Algorithm::Md5, "u", "r", "p");
        let ha2 = Algorithm::Md5.hash("INVITE:sip:b@r");
        let expected = Algorithm::Md5.hash(&format!("{ha1}:n:{ha2}"));
        assert!(auth.contains(&expected));
        assert!(!auth.contains("cnonce") && !auth.contains("nc="));
        // MD5-sess: HA1 = H(H(u:r:p):nonce:cnonce).
        let auth = authorize(
            "Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess, qop=\"auth\"",
            &Method::Invite,
            "sip:b@r",
            "u",
            "p",
            "c",
            2,
        )
        .unwrap();
        let sess = Algorithm::Md5.hash(&format!("{ha1}:n:c"));
        let expected = Algorithm::Md5.hash(&format!("{sess}:n:00000002:c:auth:{ha2}"));
        assert!(auth.contains(&expected), "{auth}");
        assert!(auth.contains("algorithm=MD5-sess"));
    }

    #[test]
    fn hmac_and_nonce() {
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 4231 test case 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        let a = DigestChallenger::new("r", KEY);
        assert_ne!(a.nonce(1), a.nonce(2));
        assert_ne!(a.nonce(1), DigestChallenger::new("s", KEY).nonce(1));
        assert_ne!(a.nonce(1), DigestChallenger::new("r", [0; 32]).nonce(1));
        assert_eq!(a.check_nonce(&a.nonce(1), 1), Some(true));
        assert_eq!(a.check_nonce(&a.nonce(1).to_uppercase(), 1), Some(true));
    }
}
