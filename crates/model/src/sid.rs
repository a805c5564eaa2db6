//! Twilio-style identifiers: two upper-case letters and 32 lower-case hex digits.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use rand::Rng;

/// The two-letter prefix that says what kind of resource a SID names.
pub trait SidKind {
    const PREFIX: &'static str;
}

macro_rules! sid_kind {
    ($(#[$doc:meta])* $kind:ident, $alias:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $kind;
        impl SidKind for $kind {
            const PREFIX: &'static str = $prefix;
        }
        $(#[$doc])*
        pub type $alias = Sid<$kind>;
    };
}

sid_kind!(/// An account (`AC...`).
    Account, AccountSid, "AC");
sid_kind!(/// A call (`CA...`).
    Call, CallSid, "CA");
sid_kind!(/// An incoming phone number (`PN...`).
    PhoneNumber, PhoneNumberSid, "PN");
sid_kind!(/// A recording (`RE...`).
    Recording, RecordingSid, "RE");
sid_kind!(/// An application (`AP...`): a named set of voice URLs that numbers and calls refer to.
    Application, ApplicationSid, "AP");
sid_kind!(/// An API key (`SK...`): a credential of an account, used in place of its auth token.
    ApiKey, ApiKeySid, "SK");
sid_kind!(/// A SIP domain (`SD...`): a domain name whose REGISTERs and calls belong to one account.
    SipDomain, SipDomainSid, "SD");
sid_kind!(/// A SIP credential list (`CL...`): usernames and passwords SIP users authenticate with.
    CredentialList, CredentialListSid, "CL");
sid_kind!(/// A SIP credential (`CR...`): one username of a credential list.
    Credential, CredentialSid, "CR");
sid_kind!(/// A call queue (`QU...`): where `<Enqueue>` parks callers until they are dequeued.
    Queue, QueueSid, "QU");
sid_kind!(/// A conference (`CF...`): one run of a named room, from its first participant to its end.
    Conference, ConferenceSid, "CF");
sid_kind!(/// A time-zone override (`TZ...`): the zone of one destination number or prefix.
    TimeZoneOverride, TimeZoneOverrideSid, "TZ");
sid_kind!(/// A message (`SM...`): one SMS, sent or received, however many parts it travels in.
    Message, MessageSid, "SM");
sid_kind!(/// A Proxy service (`KS...`): a pool of numbers that masks the two sides of its sessions.
    ProxyService, ProxyServiceSid, "KS");
sid_kind!(/// A Proxy session (`KC...`): two participants who reach each other through pool numbers.
    ProxySession, ProxySessionSid, "KC");
sid_kind!(/// A Proxy participant (`KP...`): one side of a session, with the proxy number it uses.
    ProxyParticipant, ProxyParticipantSid, "KP");
sid_kind!(/// A Proxy interaction (`KI...`): one call or message through a session.
    ProxyInteraction, ProxyInteractionSid, "KI");

/// A typed SID. Stored as its 34 ASCII bytes so it is `Copy` and compares cheaply.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid<K> {
    bytes: [u8; 34],
    kind: PhantomData<K>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    #[error("a SID is 34 characters long, got {0}")]
    Length(usize),
    #[error("expected a SID starting with {expected}")]
    Prefix { expected: &'static str },
    #[error("a SID ends in 32 lower-case hexadecimal digits")]
    Hex,
}

impl<K: SidKind> Sid<K> {
    /// A fresh random SID, from the caller's RNG (sans-IO code passes its own).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 34];
        bytes[..2].copy_from_slice(K::PREFIX.as_bytes());
        for b in &mut bytes[2..] {
            *b = HEX[rng.gen_range(0..16)];
        }
        Sid { bytes, kind: PhantomData }
    }

    /// A fresh SID from the thread RNG.
    pub fn generate() -> Self {
        Self::random(&mut rand::thread_rng())
    }

    /// A fresh SID whose first 12 hex digits are the milliseconds since the Unix epoch at
    /// `now_ms` and the other 20 random (80 bits): SIDs made later sort later, so rows written in
    /// bulk (messages) land at the end of their indexes rather than all over them, and a database
    /// writes a few pages per batch instead of one per row. Still 32 lower-case hex digits.
    pub fn time_ordered<R: Rng + ?Sized>(now_ms: u64, rng: &mut R) -> Self {
        let mut sid = Self::random(rng);
        let stamp = format!("{:012x}", now_ms & 0xffff_ffff_ffff);
        sid.bytes[2..14].copy_from_slice(stamp.as_bytes());
        sid
    }

    pub fn as_str(&self) -> &str {
        // The bytes are ASCII by construction (prefix + hex digits), checked in `from_str`.
        std::str::from_utf8(&self.bytes).expect("SID bytes are ASCII")
    }
}

impl<K: SidKind> FromStr for Sid<K> {
    type Err = SidError;
    fn from_str(s: &str) -> Result<Self, SidError> {
        let b = s.as_bytes();
        if b.len() != 34 {
            return Err(SidError::Length(b.len()));
        }
        if &b[..2] != K::PREFIX.as_bytes() {
            return Err(SidError::Prefix { expected: K::PREFIX });
        }
        if !b[2..].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(SidError::Hex);
        }
        let mut bytes = [0u8; 34];
        bytes.copy_from_slice(b);
        Ok(Sid { bytes, kind: PhantomData })
    }
}

impl<K: SidKind> fmt::Display for Sid<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<K: SidKind> fmt::Debug for Sid<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<K: SidKind> serde::Serialize for Sid<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, K: SidKind> serde::Deserialize<'de> for Sid<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_sid_round_trips() {
        let sid = CallSid::generate();
        assert!(sid.as_str().starts_with("CA"));
        assert_eq!(sid.as_str().len(), 34);
        assert_eq!(sid.as_str().parse::<CallSid>().unwrap(), sid);
    }

    #[test]
    fn wrong_prefix_and_bad_hex_are_refused() {
        let call = CallSid::generate().to_string();
        assert_eq!(call.parse::<AccountSid>(), Err(SidError::Prefix { expected: "AC" }));
        assert_eq!("CA".parse::<CallSid>(), Err(SidError::Length(2)));
        let upper = format!("CA{}", "F".repeat(32));
        assert_eq!(upper.parse::<CallSid>(), Err(SidError::Hex));
    }

    #[test]
    fn sip_sids_have_twilio_prefixes() {
        assert!(SipDomainSid::generate().as_str().starts_with("SD"));
        assert!(CredentialListSid::generate().as_str().starts_with("CL"));
        let cr = CredentialSid::generate().to_string();
        assert!(cr.starts_with("CR"));
        assert_eq!(cr.parse::<CredentialListSid>(), Err(SidError::Prefix { expected: "CL" }));
    }

    #[test]
    fn queue_and_conference_sids_have_twilio_prefixes() {
        let qu = QueueSid::generate().to_string();
        assert!(qu.starts_with("QU"));
        assert_eq!(qu.parse::<QueueSid>().map(|s| s.to_string()), Ok(qu.clone()));
        let cf = ConferenceSid::generate().to_string();
        assert!(cf.starts_with("CF"));
        assert_eq!(qu.parse::<ConferenceSid>(), Err(SidError::Prefix { expected: "CF" }));
    }

    #[test]
    fn message_sids_have_the_sm_prefix() {
        let sm = MessageSid::generate().to_string();
        let (early, late) = (
            MessageSid::time_ordered(1_700_000_000_000, &mut rand::thread_rng()),
            MessageSid::time_ordered(1_700_000_000_001, &mut rand::thread_rng()),
        );
        assert!(early.as_str() < late.as_str(), "{early} {late}");
        assert_eq!(early.as_str()[2..14], *"018bcfe56800");
        assert!(early.to_string().parse::<MessageSid>().is_ok());
        assert!(sm.starts_with("SM"));
        assert_eq!(sm.parse::<MessageSid>().map(|s| s.to_string()), Ok(sm.clone()));
        assert_eq!(sm.parse::<CallSid>(), Err(SidError::Prefix { expected: "CA" }));
    }
}
