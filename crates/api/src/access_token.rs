//! Twilio Access Tokens: the JWTs that browsers and agents present (`Authorization: Bearer`), as
//! the official helpers make them (twilio-python's `AccessToken` with a `VoiceGrant`,
//! twilio-node's likewise), checked and minted.
//!
//! A token is HS256-signed with an API key's secret: header
//! `{"alg":"HS256","cty":"twilio-fpa;v=1","typ":"JWT"}`, claims `jti` (`<key SID>-<issued at>`),
//! `iss` (the key SID), `sub` (the account SID), `exp`, usually `nbf` (twilio-node adds `iat`),
//! and `grants` with `identity` (the client name) and `voice`
//! (`{"incoming":{"allow":true},"outgoing":{"application_sid":"AP...","params":{...}}}`).
//!
//! Pure: no clock, no store. Checking is two steps because the key is found by the token's own
//! `iss`: [`parse`] the token, look up [`ParsedToken::key_sid`] (the store's
//! `api_key_signing_secret`), then [`verify`] with what the lookup gave and the time.
//! [`verify_with_store`] does the three. Refusals carry Twilio's codes ([`TokenError`]).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use model::{AccountSid, ApiKeySid};
use serde::de::{Error as _, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

mod lookup;

pub use lookup::verify_with_store;

/// The longest lifetime Twilio accepts, from issue to `exp` (error 20157 beyond it).
pub const MAX_TTL_SECS: i64 = 24 * 60 * 60;

/// How far the issuer's clock may be from ours, both ways, for `exp` and `nbf`.
pub const CLOCK_SKEW_SECS: i64 = 30;

const ALG: &str = "HS256";
const TYP: &str = "JWT";
const CTY: &str = "twilio-fpa;v=1";
/// The header as twilio-python writes it (PyJWT sorts its keys).
const HEADER_JSON: &str = r#"{"alg":"HS256","cty":"twilio-fpa;v=1","typ":"JWT"}"#;

type HmacSha256 = Hmac<Sha256>;

/// The voice grant: whether the identity may receive calls, and the Application its outgoing
/// calls run, with the parameters the token adds to that Application's webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoiceGrant {
    pub incoming_allow: bool,
    pub outgoing_application_sid: Option<String>,
    /// In the token's order.
    pub outgoing_params: Vec<(String, String)>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The API key that signed the token (`iss`).
    pub key_sid: ApiKeySid,
    /// The account the token acts for (`sub`): the key's own account.
    pub account_sid: AccountSid,
    /// The client name (`grants.identity`), never empty.
    pub identity: String,
    /// Always `Some` from [`verify`], which refuses a token without a voice grant.
    pub voice: Option<VoiceGrant>,
    /// Unix seconds.
    pub exp: i64,
    /// Unix seconds.
    pub nbf: Option<i64>,
}

/// Why a token is refused. `Display` is `<code> <message>`, Twilio's, as the SIP side puts it in
/// `X-Dialtone-Error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT of this kind: bad structure, base64 or JSON, another `alg`, `typ` or `cty`, a
    /// claim of the wrong type. The reason is for logs only.
    #[error("{} {}", self.code(), self.message())]
    Malformed(&'static str),
    /// `iss` names no key (unknown, deleted, or made before secrets were sealed), or `sub` is
    /// not that key's account.
    #[error("{} {}", self.code(), self.message())]
    InvalidIssuer,
    /// `exp` is past (beyond the skew) or missing.
    #[error("{} {}", self.code(), self.message())]
    Expired,
    /// `nbf` is in the future (beyond the skew).
    #[error("{} {}", self.code(), self.message())]
    NotYetValid,
    /// No identity, no voice grant, or grants of the wrong shape.
    #[error("{} {}", self.code(), self.message())]
    InvalidGrants,
    /// The signature is not the key's.
    #[error("{} {}", self.code(), self.message())]
    InvalidSignature,
    /// `exp` more than 24 hours after the token was issued.
    #[error("{} {}", self.code(), self.message())]
    TtlTooLong,
    /// The key could not be looked up: the token was not judged.
    #[error("{} {}", self.code(), self.message())]
    Store(#[source] store::StoreError),
}

impl TokenError {
    /// Twilio's error code.
    pub fn code(&self) -> u16 {
        match self {
            TokenError::Malformed(_) => 20101,
            TokenError::InvalidIssuer => 20103,
            TokenError::Expired => 20104,
            TokenError::NotYetValid => 20105,
            TokenError::InvalidGrants => 20106,
            TokenError::InvalidSignature => 20107,
            TokenError::TtlTooLong => 20157,
            TokenError::Store(_) => 20500,
        }
    }

    /// Twilio's message for [`TokenError::code`].
    pub fn message(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "Invalid Access Token",
            TokenError::InvalidIssuer => "Invalid Access Token issuer/subject",
            TokenError::Expired => "Access Token expired or expiration date invalid",
            TokenError::NotYetValid => "Access Token not yet valid",
            TokenError::InvalidGrants => "Invalid Access Token grants",
            TokenError::InvalidSignature => "Invalid Access Token signature",
            TokenError::TtlTooLong => "Expiration Time Exceeds Maximum Time Allowed",
            TokenError::Store(_) => "Internal Server Error",
        }
    }
}

/// A token whose form is right and whose claims are not checked yet: see [`verify`].
#[derive(Debug, Clone)]
pub struct ParsedToken {
    key_sid: ApiKeySid,
    account_sid: AccountSid,
    exp: Option<i64>,
    nbf: Option<i64>,
    issued_at: Option<i64>,
    /// `<header>.<payload>` as received: what the signature covers.
    signed: String,
    signature: Vec<u8>,
    /// The payload's JSON; its grants are read only once the signature holds.
    payload: Vec<u8>,
}

impl ParsedToken {
    /// The key to look up: the token's issuer.
    pub fn key_sid(&self) -> &ApiKeySid {
        &self.key_sid
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    cty: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

/// Checks a token's form and reads its issuer and subject. Errors: [`TokenError::Malformed`],
/// [`TokenError::InvalidIssuer`] when `iss` or `sub` is not a key or account SID.
pub fn parse(token: &str) -> Result<ParsedToken, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let decode = |part: &str, what: &'static str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| TokenError::Malformed(what))
    };
    let header_json = decode(header, "header is not base64url")?;
    let payload_json = decode(payload, "payload is not base64url")?;
    let signature_bytes = decode(signature, "signature is not base64url")?;

    let h: Header = serde_json::from_slice(&header_json)
        .map_err(|_| TokenError::Malformed("header is not a JWT header"))?;
    // Only HS256: a verifier that believed the header could be told `none` or an RSA key.
    if h.alg != ALG {
        return Err(TokenError::Malformed("alg is not HS256"));
    }
    if h.typ.as_deref().is_some_and(|t| t != TYP) {
        return Err(TokenError::Malformed("typ is not JWT"));
    }
    if h.cty.as_deref().is_some_and(|c| c != CTY) {
        return Err(TokenError::Malformed("cty is not twilio-fpa;v=1"));
    }
    // RFC 7515 4.1.11: extensions the verifier does not know must not be ignored.
    if h.crit.is_some() {
        return Err(TokenError::Malformed("crit names unknown extensions"));
    }

    let c: Claims = serde_json::from_slice(&payload_json)
        .map_err(|_| TokenError::Malformed("payload is not an object of claims"))?;
    let key_sid = c
        .iss
        .and_then(|s| s.parse().ok())
        .ok_or(TokenError::InvalidIssuer)?;
    let account_sid = c
        .sub
        .and_then(|s| s.parse().ok())
        .ok_or(TokenError::InvalidIssuer)?;
    // twilio-python writes no `iat`; its `jti` ends in the time of issue.
    let jti_time = c
        .jti
        .as_deref()
        .and_then(|j| j.rsplit_once('-'))
        .and_then(|(_, t)| t.parse().ok());
    let signed_len = header.len() + 1 + payload.len();
    Ok(ParsedToken {
        key_sid,
        account_sid,
        exp: c.exp,
        nbf: c.nbf,
        issued_at: c.iat.or(c.nbf).or(jti_time),
        signed: token[..signed_len].to_owned(),
        signature: signature_bytes,
        payload: payload_json,
    })
}

/// Checks a parsed token against its key as looked up (`None`: no such key) at `now` (unix
/// seconds). In order: the key exists ([`TokenError::InvalidIssuer`]), the signature is its
/// ([`TokenError::InvalidSignature`]), `sub` is the key's account (`InvalidIssuer`), the lifetime
/// is at most 24 h ([`TokenError::TtlTooLong`]), `exp` and `nbf` hold within
/// [`CLOCK_SKEW_SECS`] ([`TokenError::Expired`], [`TokenError::NotYetValid`]), and the grants
/// give an identity and a voice grant ([`TokenError::InvalidGrants`]).
pub fn verify(
    token: &ParsedToken,
    key: Option<&(AccountSid, String)>,
    now: i64,
) -> Result<AccessClaims, TokenError> {
    let (key_account, secret) = key.ok_or(TokenError::InvalidIssuer)?;
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(token.signed.as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&token.signature)
        .map_err(|_| TokenError::InvalidSignature)?;
    // Only now is `sub` the issuer's word.
    if token.account_sid != *key_account {
        return Err(TokenError::InvalidIssuer);
    }

    let exp = token.exp.ok_or(TokenError::Expired)?;
    let issued = token.issued_at.unwrap_or(now);
    // Also from now: an issue time claimed in the future must not stretch the lifetime.
    if exp.saturating_sub(issued) > MAX_TTL_SECS
        || exp.saturating_sub(now) > MAX_TTL_SECS + CLOCK_SKEW_SECS
    {
        return Err(TokenError::TtlTooLong);
    }
    // As PyJWT: expired once `exp <= now - leeway`, early while `nbf > now + leeway`.
    if exp <= now.saturating_sub(CLOCK_SKEW_SECS) {
        return Err(TokenError::Expired);
    }
    if token
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW_SECS))
    {
        return Err(TokenError::NotYetValid);
    }

    let grants = serde_json::from_slice::<GrantsClaim>(&token.payload)
        .map_err(|_| TokenError::InvalidGrants)?
        .grants
        .ok_or(TokenError::InvalidGrants)?;
    let identity = grants
        .identity
        .filter(|i| !i.is_empty())
        .ok_or(TokenError::InvalidGrants)?;
    let voice = grants.voice.ok_or(TokenError::InvalidGrants)?;
    let (outgoing_application_sid, outgoing_params) = match voice.outgoing {
        Some(o) => (o.application_sid, o.params.map(|p| p.0).unwrap_or_default()),
        None => (None, Vec::new()),
    };
    Ok(AccessClaims {
        key_sid: token.key_sid,
        account_sid: token.account_sid,
        identity,
        voice: Some(VoiceGrant {
            incoming_allow: voice.incoming.is_some_and(|i| i.allow),
            outgoing_application_sid,
            outgoing_params,
        }),
        exp,
        nbf: token.nbf,
    })
}

#[derive(Deserialize)]
struct GrantsClaim {
    grants: Option<Grants>,
}

#[derive(Deserialize)]
struct Grants {
    identity: Option<String>,
    voice: Option<VoiceClaim>,
}

#[derive(Deserialize)]
struct VoiceClaim {
    incoming: Option<IncomingClaim>,
    outgoing: Option<OutgoingClaim>,
}

#[derive(Deserialize)]
struct IncomingClaim {
    #[serde(default)]
    allow: bool,
}

#[derive(Deserialize)]
struct OutgoingClaim {
    application_sid: Option<String>,
    params: Option<Params>,
}

/// `outgoing.params` in the token's order (a JSON map would sort them). Values are strings;
/// numbers and booleans, which a helper library passes through, become their JSON text.
struct Params(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Params, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut params = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                    let value = match value {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        _ => {
                            return Err(A::Error::custom(
                                "a parameter is a string, number or boolean",
                            ))
                        }
                    };
                    params.push((name, value));
                }
                Ok(Params(params))
            }
        }
        d.deserialize_map(InOrder)
    }
}

/// A token for `identity` signed with an API key, as twilio-python's
/// `AccessToken(account_sid, key_sid, secret, identity=identity, ttl=ttl)` with the voice grant
/// makes it at `now` (unix seconds): `nbf` is `now`, `exp` is `now + ttl_secs`, cut to 24 h, the
/// longest [`verify`] accepts. For ASCII values the text is twilio-python's byte for byte
/// (PyJWT escapes other characters as `\uXXXX`, this writes them as UTF-8; both are JSON).
pub fn mint(
    key_sid: &ApiKeySid,
    secret: &str,
    account_sid: &AccountSid,
    identity: &str,
    voice: &VoiceGrant,
    ttl_secs: u32,
    now: i64,
) -> String {
    let ttl = i64::from(ttl_secs).min(MAX_TTL_SECS);
    let payload = MintPayload {
        jti: format!("{key_sid}-{now}"),
        grants: MintGrants {
            voice: MintVoice {
                incoming: voice.incoming_allow.then_some(MintIncoming { allow: true }),
                outgoing: voice
                    .outgoing_application_sid
                    .as_deref()
                    .map(|sid| MintOutgoing {
                        application_sid: sid,
                        params: MintParams(&voice.outgoing_params),
                    }),
            },
            identity,
        },
        iss: key_sid.as_str(),
        exp: now.saturating_add(ttl),
        nbf: now,
        sub: account_sid.as_str(),
    };
    let payload = serde_json::to_vec(&payload).expect("the claims serialize");
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER_JSON),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

// The claims in twilio-python's order, each part present exactly when it writes it.
#[derive(Serialize)]
struct MintPayload<'a> {
    jti: String,
    grants: MintGrants<'a>,
    iss: &'a str,
    exp: i64,
    nbf: i64,
    sub: &'a str,
}

#[derive(Serialize)]
struct MintGrants<'a> {
    voice: MintVoice<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    identity: &'a str,
}

#[derive(Serialize)]
struct MintVoice<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    incoming: Option<MintIncoming>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outgoing: Option<MintOutgoing<'a>>,
}

#[derive(Serialize)]
struct MintIncoming {
    allow: bool,
}

#[derive(Serialize)]
struct MintOutgoing<'a> {
    application_sid: &'a str,
    #[serde(skip_serializing_if = "MintParams::is_empty")]
    params: MintParams<'a>,
}

struct MintParams<'a>(&'a [(String, String)]);

impl MintParams<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for MintParams<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with twilio-python 9.13.0 (PyJWT 2.15.1), `time.time` fixed at `T`:
    //   AccessToken(ACCOUNT, KEY, SECRET, identity="alice", ttl=3600) + VoiceGrant(
    //     incoming_allow=True, outgoing_application_sid=APP,
    //     outgoing_application_params={"queue": "sales", "lang": "fr"})
    // and the variations named below.
    const T: i64 = 1_700_000_000;
    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
    const OTHER_ACCOUNT: &str = "ACfedcba9876543210fedcba9876543210";
    const KEY: &str = "SK00112233445566778899aabbccddeeff";
    const SECRET: &str = "dialtone-test-secret-7Hq2Lz9Xw4Rb";
    const APP: &str = "AP0123456789abcdef0123456789abcdef";

    /// exp T+3600, nbf T.
    const VALID: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9LCJvdXRnb2luZyI6eyJhcHBsaWNhdGlvbl9zaWQiOiJBUDAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwicGFyYW1zIjp7InF1ZXVlIjoic2FsZXMiLCJsYW5nIjoiZnIifX19LCJpZGVudGl0eSI6ImFsaWNlIn0sImlzcyI6IlNLMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJleHAiOjE3MDAwMDM2MDAsIm5iZiI6MTcwMDAwMDAwMCwic3ViIjoiQUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiJ9.m0wcHtY9uNb40Zfty1bYLd3EnJf0hIttdo98Z8sywt0";
    /// VALID signed with "another-secret-entirely-0000000000".
    const OTHER_SECRET: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9LCJvdXRnb2luZyI6eyJhcHBsaWNhdGlvbl9zaWQiOiJBUDAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwicGFyYW1zIjp7InF1ZXVlIjoic2FsZXMiLCJsYW5nIjoiZnIifX19LCJpZGVudGl0eSI6ImFsaWNlIn0sImlzcyI6IlNLMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJleHAiOjE3MDAwMDM2MDAsIm5iZiI6MTcwMDAwMDAwMCwic3ViIjoiQUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiJ9.y-qnXeYSUADtBjxBL-O7wT1VCXtPg8cHsp6htHQa2aM";
    /// VALID with `sub` OTHER_ACCOUNT, signed with SECRET.
    const OTHER_SUB: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9LCJvdXRnb2luZyI6eyJhcHBsaWNhdGlvbl9zaWQiOiJBUDAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwicGFyYW1zIjp7InF1ZXVlIjoic2FsZXMiLCJsYW5nIjoiZnIifX19LCJpZGVudGl0eSI6ImFsaWNlIn0sImlzcyI6IlNLMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJleHAiOjE3MDAwMDM2MDAsIm5iZiI6MTcwMDAwMDAwMCwic3ViIjoiQUNmZWRjYmE5ODc2NTQzMjEwZmVkY2JhOTg3NjU0MzIxMCJ9.VL4hVNV6_xsAHjW0yheTOn8tAhNhqzvKG_JSr1BFPYg";
    /// VALID without `identity=`.
    const NO_IDENTITY: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9LCJvdXRnb2luZyI6eyJhcHBsaWNhdGlvbl9zaWQiOiJBUDAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwicGFyYW1zIjp7InF1ZXVlIjoic2FsZXMiLCJsYW5nIjoiZnIifX19fSwiaXNzIjoiU0swMDExMjIzMzQ0NTU2Njc3ODg5OWFhYmJjY2RkZWVmZiIsImV4cCI6MTcwMDAwMzYwMCwibmJmIjoxNzAwMDAwMDAwLCJzdWIiOiJBQzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIn0.Wp4Iao6ChLtcK5Rc0_Ry6g88PNi1hX1qs2wxVcBxOC8";
    /// VALID without the VoiceGrant.
    const NO_VOICE: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsiaWRlbnRpdHkiOiJhbGljZSJ9LCJpc3MiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmIiwiZXhwIjoxNzAwMDAzNjAwLCJuYmYiOjE3MDAwMDAwMDAsInN1YiI6IkFDMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYifQ.MMgio8OQ8OeuA89-zuNgLJW2Lau4WWw-TXYJgM4dipU";
    /// VALID with ttl=86400.
    const TTL_24H: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9LCJvdXRnb2luZyI6eyJhcHBsaWNhdGlvbl9zaWQiOiJBUDAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwicGFyYW1zIjp7InF1ZXVlIjoic2FsZXMiLCJsYW5nIjoiZnIifX19LCJpZGVudGl0eSI6ImFsaWNlIn0sImlzcyI6IlNLMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJleHAiOjE3MDAwODY0MDAsIm5iZiI6MTcwMDAwMDAwMCwic3ViIjoiQUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiJ9.MjGPNZe7DnY3ylDWSOLQz794kp7MM0jEbKaT8vlt5HI";
    /// VALID with ttl=86401.
    const TTL_OVER_24H: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9LCJvdXRnb2luZyI6eyJhcHBsaWNhdGlvbl9zaWQiOiJBUDAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwicGFyYW1zIjp7InF1ZXVlIjoic2FsZXMiLCJsYW5nIjoiZnIifX19LCJpZGVudGl0eSI6ImFsaWNlIn0sImlzcyI6IlNLMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJleHAiOjE3MDAwODY0MDEsIm5iZiI6MTcwMDAwMDAwMCwic3ViIjoiQUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiJ9.FMab_rd0Y-gsZrGwOKzmY7LwIOPmUl2lPW3kVzuiZq4";
    /// VALID with nbf=T+600.
    const NBF_LATER: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9LCJvdXRnb2luZyI6eyJhcHBsaWNhdGlvbl9zaWQiOiJBUDAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwicGFyYW1zIjp7InF1ZXVlIjoic2FsZXMiLCJsYW5nIjoiZnIifX19LCJpZGVudGl0eSI6ImFsaWNlIn0sImlzcyI6IlNLMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJleHAiOjE3MDAwMDM2MDAsIm5iZiI6MTcwMDAwMDYwMCwic3ViIjoiQUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiJ9.yG_Wfmv-voI-xEqS1N8AE4Oipym1PGxUR8lMU_kyWjU";
    /// identity "bob", VoiceGrant(incoming_allow=True) only.
    const INCOMING_ONLY: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9fSwiaWRlbnRpdHkiOiJib2IifSwiaXNzIjoiU0swMDExMjIzMzQ0NTU2Njc3ODg5OWFhYmJjY2RkZWVmZiIsImV4cCI6MTcwMDAwMzYwMCwibmJmIjoxNzAwMDAwMDAwLCJzdWIiOiJBQzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIn0.jFEIi3EFwqalSNTa0GZa7Y_PsZDmzROA4vojojB9kPM";

    fn account() -> AccountSid {
        ACCOUNT.parse().unwrap()
    }

    fn key() -> ApiKeySid {
        KEY.parse().unwrap()
    }

    fn lookup() -> Option<(AccountSid, String)> {
        Some((account(), SECRET.to_owned()))
    }

    /// The code `token` is refused with at `now`, by the key of ACCOUNT with SECRET.
    fn refusal(token: &str, now: i64) -> u16 {
        match parse(token).and_then(|p| verify(&p, lookup().as_ref(), now)) {
            Ok(claims) => panic!("accepted: {claims:?}"),
            Err(e) => e.code(),
        }
    }

    fn sales_grant() -> VoiceGrant {
        VoiceGrant {
            incoming_allow: true,
            outgoing_application_sid: Some(APP.into()),
            outgoing_params: vec![
                ("queue".into(), "sales".into()),
                ("lang".into(), "fr".into()),
            ],
        }
    }

    #[test]
    fn a_twilio_python_token_verifies_with_its_grants_in_order() {
        let parsed = parse(VALID).unwrap();
        assert_eq!(parsed.key_sid(), &key());
        let claims = verify(&parsed, lookup().as_ref(), T + 60).unwrap();
        assert_eq!(
            claims,
            AccessClaims {
                key_sid: key(),
                account_sid: account(),
                identity: "alice".into(),
                voice: Some(sales_grant()),
                exp: T + 3600,
                nbf: Some(T),
            }
        );
        let bob = verify(&parse(INCOMING_ONLY).unwrap(), lookup().as_ref(), T).unwrap();
        assert_eq!(bob.identity, "bob");
        assert_eq!(
            bob.voice,
            Some(VoiceGrant {
                incoming_allow: true,
                ..VoiceGrant::default()
            })
        );
        // The longest lifetime allowed is allowed.
        assert!(verify(&parse(TTL_24H).unwrap(), lookup().as_ref(), T + 86_000).is_ok());
    }

    #[test]
    fn expiry_and_not_before_allow_thirty_seconds_of_skew() {
        let parsed = parse(VALID).unwrap();
        let at = |now| {
            verify(&parsed, lookup().as_ref(), now)
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(at(T + 3600 + 29), Ok(()));
        assert_eq!(at(T + 3600 + 30), Err(20104));
        assert_eq!(at(T + 100_000), Err(20104));
        assert_eq!(at(T - 30), Ok(()));
        assert_eq!(at(T - 31), Err(20105));
        assert_eq!(refusal(NBF_LATER, T), 20105);
        assert!(verify(&parse(NBF_LATER).unwrap(), lookup().as_ref(), T + 600).is_ok());
    }

    #[test]
    fn forged_signatures_are_refused() {
        // A character flipped inside the signature (not the last: its low bits are padding).
        let mut forged = VALID.to_owned();
        let i = VALID.rfind('.').unwrap() + 10;
        let flipped = if &forged[i..=i] == "A" { "B" } else { "A" };
        forged.replace_range(i..=i, flipped);
        assert_eq!(refusal(&forged, T), 20107);
        assert_eq!(refusal(OTHER_SECRET, T), 20107);
        // The claims of one token under the signature of another.
        let (signed, _) = VALID.rsplit_once('.').unwrap();
        let (_, other_sig) = INCOMING_ONLY.rsplit_once('.').unwrap();
        assert_eq!(refusal(&format!("{signed}.{other_sig}"), T), 20107);
        assert_eq!(refusal(&format!("{signed}."), T), 20107);
    }

    #[test]
    fn the_issuer_must_be_a_live_key_of_the_subject_account() {
        assert_eq!(refusal(OTHER_SUB, T), 20103);
        // Unknown, deleted or revoked: the lookup finds nothing.
        let err = verify(&parse(VALID).unwrap(), None, T).unwrap_err();
        assert_eq!(err.code(), 20103);
        // The right secret, but the key belongs to another account than `sub`.
        let elsewhere = (OTHER_ACCOUNT.parse().unwrap(), SECRET.to_owned());
        assert_eq!(
            verify(&parse(VALID).unwrap(), Some(&elsewhere), T)
                .unwrap_err()
                .code(),
            20103
        );
    }

    #[test]
    fn tokens_without_identity_or_voice_grant_are_refused() {
        assert_eq!(refusal(NO_IDENTITY, T), 20106);
        assert_eq!(refusal(NO_VOICE, T), 20106);
    }

    #[test]
    fn a_lifetime_over_24_hours_is_refused() {
        assert_eq!(refusal(TTL_OVER_24H, T), 20157);
        // Without `nbf`, `jti` dates the token; without either, the time of checking does.
        let no_nbf = |exp: i64, jti: &str| {
            let payload = format!(
                r#"{{"jti":"{jti}","grants":{{"voice":{{}},"identity":"a"}},"iss":"{KEY}","exp":{exp},"sub":"{ACCOUNT}"}}"#
            );
            sign(HEADER_JSON, &payload, SECRET)
        };
        assert_eq!(
            refusal(&no_nbf(T + 86_401, &format!("{KEY}-{T}")), T + 3600),
            20157
        );
        assert!(parse(&no_nbf(T + 86_400, &format!("{KEY}-{T}")))
            .and_then(|p| verify(&p, lookup().as_ref(), T + 3600))
            .is_ok());
        assert_eq!(refusal(&no_nbf(T + 86_400 + 31, "x"), T), 20157);
    }

    /// A token of `header` and `payload` JSON, signed with `secret`.
    fn sign(header: &str, payload: &str, secret: &str) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signed.as_bytes());
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn payload_of(token: &str) -> String {
        let part = token.split('.').nth(1).unwrap();
        String::from_utf8(URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn other_algorithms_and_malformed_tokens_are_invalid() {
        let claims = payload_of(VALID);
        // `alg: none` with an empty signature, as an attacker would send it.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(&claims)
        );
        assert_eq!(refusal(&none, T), 20101);
        for header in [
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"hs256","typ":"JWT"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"HS256","typ":"JWE"}"#,
            r#"{"alg":"HS256","cty":"twilio-fpa;v=2"}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"["HS256"]"#,
        ] {
            assert_eq!(
                refusal(&sign(header, &claims, SECRET), T),
                20101,
                "{header}"
            );
        }
        // Header fields twilio-python does not always write are optional.
        assert!(parse(&sign(r#"{"alg":"HS256"}"#, &claims, SECRET))
            .and_then(|p| verify(&p, lookup().as_ref(), T))
            .is_ok());
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "e30.e30.e30=",
            &format!("{VALID}."),
        ] {
            assert_eq!(parse(token).unwrap_err().code(), 20101, "{token:?}");
        }
        let bad_claims = [
            "[]".to_owned(),
            "not json".to_owned(),
            claims.replace(&format!(r#""exp":{}"#, T + 3600), r#""exp":"soon""#),
        ];
        for payload in &bad_claims {
            assert_eq!(
                refusal(&sign(HEADER_JSON, payload, SECRET), T),
                20101,
                "{payload}"
            );
        }
        // Issuer and subject that are not SIDs of the right kind.
        assert_eq!(
            refusal(&sign(HEADER_JSON, &claims.replace(KEY, APP), SECRET), T),
            20103
        );
        assert_eq!(
            refusal(
                &sign(HEADER_JSON, &claims.replace(ACCOUNT, "alice"), SECRET),
                T
            ),
            20103
        );
        // No `exp` at all.
        let no_exp = claims.replace(&format!(r#""exp":{},"#, T + 3600), "");
        assert_eq!(refusal(&sign(HEADER_JSON, &no_exp, SECRET), T), 20104);
        // Grants of the wrong shape, once the signature holds.
        let bad_params = claims.replace(r#""lang":"fr""#, r#""lang":["fr"]"#);
        assert_eq!(refusal(&sign(HEADER_JSON, &bad_params, SECRET), T), 20106);
        let empty_identity = claims.replace(r#""identity":"alice""#, r#""identity":"""#);
        assert_eq!(
            refusal(&sign(HEADER_JSON, &empty_identity, SECRET), T),
            20106
        );
    }

    #[test]
    fn minting_writes_what_twilio_python_writes() {
        let minted = mint(&key(), SECRET, &account(), "alice", &sales_grant(), 3600, T);
        assert_eq!(minted, VALID);
        let bob = VoiceGrant {
            incoming_allow: true,
            ..VoiceGrant::default()
        };
        assert_eq!(
            mint(&key(), SECRET, &account(), "bob", &bob, 3600, T),
            INCOMING_ONLY
        );
        assert_eq!(
            mint(
                &key(),
                SECRET,
                &account(),
                "alice",
                &sales_grant(),
                86_400,
                T
            ),
            TTL_24H
        );
        // Longer than Twilio allows: cut to 24 h.
        assert_eq!(
            mint(
                &key(),
                SECRET,
                &account(),
                "alice",
                &sales_grant(),
                100_000,
                T
            ),
            TTL_24H
        );
        // Round trip, with characters JSON must escape.
        let odd = VoiceGrant {
            incoming_allow: false,
            outgoing_application_sid: Some(APP.into()),
            outgoing_params: vec![
                ("quote".into(), "say \"hi\"\n".into()),
                ("é".into(), "☎".into()),
            ],
        };
        let token = mint(&key(), SECRET, &account(), "agent_7", &odd, 600, T);
        let claims = verify(&parse(&token).unwrap(), lookup().as_ref(), T).unwrap();
        assert_eq!(claims.identity, "agent_7");
        assert_eq!(claims.voice, Some(odd));
        assert_eq!((claims.exp, claims.nbf), (T + 600, Some(T)));
    }

    #[test]
    fn errors_display_code_then_twilio_message() {
        assert_eq!(
            TokenError::Malformed("x").to_string(),
            "20101 Invalid Access Token"
        );
        assert_eq!(
            TokenError::InvalidIssuer.to_string(),
            "20103 Invalid Access Token issuer/subject"
        );
        assert_eq!(
            TokenError::Expired.to_string(),
            "20104 Access Token expired or expiration date invalid"
        );
        assert_eq!(
            TokenError::NotYetValid.to_string(),
            "20105 Access Token not yet valid"
        );
        assert_eq!(
            TokenError::InvalidGrants.to_string(),
            "20106 Invalid Access Token grants"
        );
        assert_eq!(
            TokenError::InvalidSignature.to_string(),
            "20107 Invalid Access Token signature"
        );
        assert_eq!(
            TokenError::TtlTooLong.to_string(),
            "20157 Expiration Time Exceeds Maximum Time Allowed"
        );
    }
}
