//! SRTP for the audio of browser legs: RFC 3711 (AES-128-CM, HMAC-SHA1-80) and its AES-GCM
//! profiles (RFC 7714), keyed by the DTLS handshake (RFC 5764 §4.2).
//!
//! str0m runs the handshake (ICE, DTLS) and keeps RTCP; the RTP itself is protected here, with
//! str0m's own ciphers (aws-lc-rs). A packet then costs one cipher call: str0m's per-stream
//! machinery (receive buffers, statistics, pacing), which costs several microseconds a packet
//! once a worker holds a thousand sessions, is left out of the audio path.
//!
//! Keys come out of str0m's DTLS through [`capture_provider`]: a crypto provider whose DTLS
//! instances note the keying material they export on the thread that drives them, for the
//! session that is being driven to take with [`take_captured_keys`]. The node's browser legs and
//! the benchmark's browsers (`bench/`) both use it.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use subtle::ConstantTimeEq;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80,
    Aes128CmSha1_80Cipher, CryptoError, CryptoProvider, Sha1HmacProvider, SrtpProvider,
};

/// What a DTLS handshake exported for SRTP, and whether we were its client.
#[derive(Clone)]
pub struct SrtpKeys {
    pub profile: SrtpProfile,
    pub material: Vec<u8>,
    pub active: bool,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the material itself.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .field("active", &self.active)
            .finish()
    }
}

thread_local! {
    static CAPTURED: RefCell<Option<SrtpKeys>> = const { RefCell::new(None) };
}

/// Takes the keys the last handshake driven on this thread exported, if any.
pub fn take_captured_keys() -> Option<SrtpKeys> {
    CAPTURED.with(|c| c.borrow_mut().take())
}

/// Whether a handshake driven on this thread exported keys nobody has taken yet.
pub fn has_captured_keys() -> bool {
    CAPTURED.with(|c| c.borrow().is_some())
}

/// Forgets keys nobody took (a handshake whose session then failed).
pub fn clear_captured_keys() {
    CAPTURED.with(|c| c.borrow_mut().take());
}

/// The process's crypto provider (aws-lc-rs) with DTLS instances that capture their keys.
pub fn capture_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let base = str0m::crypto::from_feature_flags();
            let dtls: &'static CapturingDtls = Box::leak(Box::new(CapturingDtls {
                inner: base.dtls_provider,
            }));
            Arc::new(CryptoProvider {
                dtls_provider: dtls,
                ..base
            })
        })
        .clone()
}

#[derive(Debug)]
struct CapturingDtls {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for CapturingDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        Ok(Box::new(CapturingInstance { inner }))
    }
}

#[derive(Debug)]
struct CapturingInstance {
    inner: Box<dyn DtlsInstance>,
}

impl DtlsInstance for CapturingInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let output = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &output {
            let keys = SrtpKeys {
                profile: *profile,
                material: material.to_vec(),
                active: self.inner.is_active(),
            };
            CAPTURED.with(|c| *c.borrow_mut() = Some(keys));
        }
        output
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

// RFC 3711 §4.3.2: the labels of the session keys derived for RTP.
const LABEL_RTP_KEY: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;

/// The aws-lc-rs counter mode writes up to a block past its input.
const CTR_SLACK: usize = 15;
/// Packets at most this far behind the newest are checked against the replay window.
const REPLAY_WINDOW: u64 = 64;

/// One direction's cipher and session salt.
enum Cipher {
    Cm {
        cipher: Box<dyn Aes128CmSha1_80Cipher>,
        auth: [u8; Aes128CmSha1_80::HMAC_KEY_LEN],
        salt: [u8; Aes128CmSha1_80::SALT_LEN],
        hmac: &'static dyn Sha1HmacProvider,
    },
    /// RFC 7714: both key sizes share the salt, IV and tag layout.
    Gcm {
        cipher: Gcm,
        salt: [u8; AeadAes128Gcm::SALT_LEN],
    },
}

/// AES-GCM with a 128- or 256-bit key.
enum Gcm {
    Aes128(Box<dyn AeadAes128GcmCipher>),
    Aes256(Box<dyn AeadAes256GcmCipher>),
}

/// The tag AES-GCM adds, for both key sizes.
const GCM_TAG_LEN: usize = AeadAes128Gcm::TAG_LEN;

impl Gcm {
    fn seal(&mut self, iv: &[u8; 12], aad: &[u8], input: &[u8], out: &mut [u8]) -> bool {
        match self {
            Gcm::Aes128(c) => c.encrypt(iv, aad, input, out).is_ok(),
            Gcm::Aes256(c) => c.encrypt(iv, aad, input, out).is_ok(),
        }
    }

    fn open(&mut self, iv: &[u8; 12], aad: &[u8], input: &[u8], out: &mut [u8]) -> Option<usize> {
        match self {
            Gcm::Aes128(c) => c.decrypt(iv, &[aad], input, out).ok(),
            Gcm::Aes256(c) => c.decrypt(iv, &[aad], input, out).ok(),
        }
    }
}

/// The master key and salt of one side (RFC 5764 §4.2: the material is client key, server key,
/// client salt, server salt).
struct Master<'a> {
    key: &'a [u8],
    salt: &'a [u8],
}

impl Master<'_> {
    fn split(material: &[u8], key_len: usize, salt_len: usize, client: bool) -> Option<Master<'_>> {
        if material.len() != 2 * (key_len + salt_len) {
            return None;
        }
        let (key_at, salt_at) = if client {
            (0, 2 * key_len)
        } else {
            (key_len, 2 * key_len + salt_len)
        };
        Some(Master {
            key: material.get(key_at..key_at + key_len)?,
            salt: material.get(salt_at..salt_at + salt_len)?,
        })
    }

    /// RFC 3711 §4.3.1 with a key derivation rate of zero: AES in counter mode over the master
    /// salt with the label at byte 7.
    fn derive(&self, srtp: &dyn SrtpProvider, label: u8, out: &mut [u8]) {
        let mut input = [0u8; 16];
        input[..self.salt.len()].copy_from_slice(self.salt);
        input[7] ^= label;
        let mut block = [0u8; 32];
        for (round, chunk) in out.chunks_mut(16).enumerate() {
            input[14..].copy_from_slice(&(round as u16).to_be_bytes());
            if self.key.len() == 32 {
                srtp.srtp_aes_256_ecb_round(self.key, &input, &mut block);
            } else {
                srtp.srtp_aes_128_ecb_round(self.key, &input, &mut block);
            }
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

impl Cipher {
    fn new(
        crypto: &CryptoProvider,
        keys: &SrtpKeys,
        client: bool,
        encrypt: bool,
    ) -> Option<Cipher> {
        let srtp = crypto.srtp_provider;
        match keys.profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let master = Master::split(
                    &keys.material,
                    Aes128CmSha1_80::KEY_LEN,
                    Aes128CmSha1_80::SALT_LEN,
                    client,
                )?;
                let mut key = [0u8; Aes128CmSha1_80::KEY_LEN];
                let mut auth = [0u8; Aes128CmSha1_80::HMAC_KEY_LEN];
                let mut salt = [0u8; Aes128CmSha1_80::SALT_LEN];
                master.derive(srtp, LABEL_RTP_KEY, &mut key);
                master.derive(srtp, LABEL_RTP_AUTH, &mut auth);
                master.derive(srtp, LABEL_RTP_SALT, &mut salt);
                Some(Cipher::Cm {
                    cipher: srtp.aes_128_cm_sha1_80().create_cipher(key, encrypt),
                    auth,
                    salt,
                    hmac: crypto.sha1_hmac_provider,
                })
            }
            SrtpProfile::AEAD_AES_128_GCM => {
                let (key, salt) = gcm_session_keys(srtp, &keys.material, client)?;
                Some(Cipher::Gcm {
                    cipher: Gcm::Aes128(srtp.aead_aes_128_gcm().create_cipher(key, encrypt)),
                    salt,
                })
            }
            SrtpProfile::AEAD_AES_256_GCM => {
                let (key, salt) = gcm_session_keys(srtp, &keys.material, client)?;
                Some(Cipher::Gcm {
                    cipher: Gcm::Aes256(srtp.aead_aes_256_gcm().create_cipher(key, encrypt)),
                    salt,
                })
            }
            _ => None,
        }
    }

    /// Protects an RTP packet, its `header` and `body`, into `out`.
    fn protect(
        &mut self,
        header: &[u8],
        body: &[u8],
        ssrc: u32,
        index: u64,
        out: &mut Vec<u8>,
    ) -> bool {
        let header_len = header.len();
        let clear_len = header_len + body.len();
        let roc = (index >> 16) as u32;
        let seq = index as u16;
        out.clear();
        match self {
            Cipher::Cm {
                cipher,
                auth,
                salt,
                hmac,
            } => {
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                out.resize(clear_len + CTR_SLACK, 0);
                out[..header_len].copy_from_slice(header);
                if cipher.encrypt(&iv, body, &mut out[header_len..]).is_err() {
                    return false;
                }
                out.truncate(clear_len);
                let tag = hmac.sha1_hmac(&auth[..], &[&out[..], &roc.to_be_bytes()]);
                out.extend_from_slice(&tag[..Aes128CmSha1_80::HMAC_TAG_LEN]);
                true
            }
            Cipher::Gcm { cipher, salt } => {
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, roc, seq);
                out.resize(clear_len + GCM_TAG_LEN, 0);
                out[..header_len].copy_from_slice(header);
                cipher.seal(&iv, header, body, &mut out[header_len..])
            }
        }
    }

    /// Checks and decrypts `packet` into `out` (header and clear payload). False for a packet
    /// that is too short, forged or not ours.
    fn unprotect(
        &mut self,
        packet: &[u8],
        header_len: usize,
        ssrc: u32,
        index: u64,
        out: &mut Vec<u8>,
    ) -> bool {
        let roc = (index >> 16) as u32;
        let seq = index as u16;
        out.clear();
        match self {
            Cipher::Cm {
                cipher,
                auth,
                salt,
                hmac,
            } => {
                let tag_len = Aes128CmSha1_80::HMAC_TAG_LEN;
                if packet.len() < header_len + tag_len {
                    return false;
                }
                let (signed, tag) = packet.split_at(packet.len() - tag_len);
                let expected = hmac.sha1_hmac(&auth[..], &[signed, &roc.to_be_bytes()]);
                if !bool::from(expected[..tag_len].ct_eq(tag)) {
                    return false;
                }
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                out.resize(signed.len() + CTR_SLACK, 0);
                out[..header_len].copy_from_slice(&signed[..header_len]);
                if cipher
                    .decrypt(&iv, &signed[header_len..], &mut out[header_len..])
                    .is_err()
                {
                    return false;
                }
                out.truncate(signed.len());
                true
            }
            Cipher::Gcm { cipher, salt } => {
                if packet.len() < header_len + GCM_TAG_LEN {
                    return false;
                }
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, roc, seq);
                let (header, sealed) = packet.split_at(header_len);
                out.resize(packet.len() - GCM_TAG_LEN, 0);
                out[..header_len].copy_from_slice(header);
                match cipher.open(&iv, header, sealed, &mut out[header_len..]) {
                    Some(n) => {
                        out.truncate(header_len + n);
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

/// The RTP session key and salt of one side for AES-GCM with a `K`-octet key (RFC 7714 §12:
/// the RFC 3711 derivation, a 12-octet salt).
fn gcm_session_keys<const K: usize>(
    srtp: &dyn SrtpProvider,
    material: &[u8],
    client: bool,
) -> Option<([u8; K], [u8; AeadAes128Gcm::SALT_LEN])> {
    let master = Master::split(material, K, AeadAes128Gcm::SALT_LEN, client)?;
    let mut key = [0u8; K];
    let mut salt = [0u8; AeadAes128Gcm::SALT_LEN];
    master.derive(srtp, LABEL_RTP_KEY, &mut key);
    master.derive(srtp, LABEL_RTP_SALT, &mut salt);
    Some((key, salt))
}

/// The length of an RTP packet's header (fixed part, CSRCs, extension), or `None` for what is
/// not a version-2 RTP packet.
pub fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    if first >> 6 != 2 || packet.len() < 12 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

fn ssrc_and_seq(packet: &[u8]) -> Option<(u32, u16)> {
    let seq = u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?);
    let ssrc = u32::from_be_bytes(packet.get(8..12)?.try_into().ok()?);
    Some((ssrc, seq))
}

/// A session's SRTP: what we send and what the peer sends, each with its own keys, rollover
/// counter and (receiving) replay window. One SSRC each way, as a browser's audio has.
pub struct Srtp {
    tx: Cipher,
    /// The extended sequence number of the last packet sent.
    tx_index: Option<u64>,
    rx: Cipher,
    /// The highest extended sequence number received, and which of the 64 before it came.
    rx_index: Option<u64>,
    rx_seen: u64,
    rx_ssrc: Option<u32>,
}

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srtp")
            .field("tx_index", &self.tx_index)
            .field("rx_index", &self.rx_index)
            .finish()
    }
}

impl Srtp {
    /// The contexts of a handshake's keys, or `None` for a profile or material we cannot use.
    pub fn new(crypto: &CryptoProvider, keys: &SrtpKeys) -> Option<Srtp> {
        // The client (active side) sends with the client's key and salt.
        Some(Srtp {
            tx: Cipher::new(crypto, keys, keys.active, true)?,
            tx_index: None,
            rx: Cipher::new(crypto, keys, !keys.active, false)?,
            rx_index: None,
            rx_seen: 0,
            rx_ssrc: None,
        })
    }

    /// Protects one RTP packet for sending: `out` holds the SRTP packet.
    pub fn protect(&mut self, clear: &[u8], out: &mut Vec<u8>) -> bool {
        self.protect_as(clear, None, out)
    }

    /// [`Srtp::protect`], the packet sent as from `ssrc` if given (the SSRC the session
    /// description announced). Headers longer than 64 bytes are refused then.
    pub fn protect_as(&mut self, clear: &[u8], ssrc: Option<u32>, out: &mut Vec<u8>) -> bool {
        let (Some(header_len), Some((own, seq))) = (rtp_header_len(clear), ssrc_and_seq(clear))
        else {
            return false;
        };
        let index = match self.tx_index {
            None => u64::from(seq),
            Some(last) => extend(last, seq),
        };
        self.tx_index = Some(self.tx_index.map_or(index, |last| last.max(index)));
        let (header, body) = clear.split_at(header_len);
        match ssrc {
            Some(ssrc) if ssrc != own => {
                let mut copy = [0u8; 64];
                let Some(rewritten) = copy.get_mut(..header_len) else {
                    return false;
                };
                rewritten.copy_from_slice(header);
                rewritten[8..12].copy_from_slice(&ssrc.to_be_bytes());
                self.tx.protect(rewritten, body, ssrc, index, out)
            }
            _ => self.tx.protect(header, body, own, index, out),
        }
    }

    /// Authenticates and decrypts one SRTP packet: `out` holds the RTP packet. False for a
    /// forged, replayed or malformed one, which is dropped.
    pub fn unprotect(&mut self, packet: &[u8], out: &mut Vec<u8>) -> bool {
        let (Some(header_len), Some((ssrc, seq))) = (rtp_header_len(packet), ssrc_and_seq(packet))
        else {
            return false;
        };
        // A new SSRC (the browser restarted its sender) starts a new sequence.
        let (index, known) = match (self.rx_index, self.rx_ssrc) {
            (Some(last), Some(s)) if s == ssrc => (extend(last, seq), true),
            _ => (u64::from(seq), false),
        };
        if known {
            let last = self.rx_index.unwrap_or_default();
            if index <= last {
                let behind = last - index;
                if behind >= REPLAY_WINDOW || self.rx_seen & (1 << behind) != 0 {
                    return false;
                }
            }
        }
        if !self.rx.unprotect(packet, header_len, ssrc, index, out) {
            return false;
        }
        match (known, self.rx_index) {
            (true, Some(last)) if index <= last => self.rx_seen |= 1 << (last - index),
            (true, Some(last)) => {
                let ahead = index - last;
                self.rx_seen = if ahead >= REPLAY_WINDOW {
                    1
                } else {
                    (self.rx_seen << ahead) | 1
                };
                self.rx_index = Some(index);
            }
            _ => {
                self.rx_ssrc = Some(ssrc);
                self.rx_index = Some(index);
                self.rx_seen = 1;
            }
        }
        true
    }
}

/// RFC 3711 Appendix A: the extended sequence number of `seq`, the one nearest to `last`.
fn extend(last: u64, seq: u16) -> u64 {
    let roc = last >> 16;
    let last_seq = last as u16;
    let candidate = |roc: u64| (roc << 16) | u64::from(seq);
    if last_seq < 0x8000 {
        if seq > last_seq && seq - last_seq > 0x8000 && roc > 0 {
            candidate(roc - 1)
        } else {
            candidate(roc)
        }
    } else if last_seq - 0x8000 > seq {
        candidate(roc + 1)
    } else {
        candidate(roc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        capture_provider()
    }

    fn keys(profile: SrtpProfile, len: usize, active: bool) -> SrtpKeys {
        SrtpKeys {
            profile,
            material: (0..len).map(|i| (i * 7 + 3) as u8).collect(),
            active,
        }
    }

    fn packet(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn pair(profile: SrtpProfile, len: usize) -> (Srtp, Srtp) {
        let crypto = provider();
        (
            Srtp::new(&crypto, &keys(profile, len, true)).unwrap(),
            Srtp::new(&crypto, &keys(profile, len, false)).unwrap(),
        )
    }

    #[test]
    fn each_profile_round_trips_and_refuses_forgeries_and_replays() {
        for (profile, len, overhead) in [
            (SrtpProfile::AES128_CM_SHA1_80, 60, 10),
            (SrtpProfile::AEAD_AES_128_GCM, 56, 16),
            (SrtpProfile::AEAD_AES_256_GCM, 88, 16),
        ] {
            let (mut client, mut server) = pair(profile, len);
            let clear = packet(7, &[0x55; 160]);
            let mut sealed = Vec::new();
            assert!(client.protect(&clear, &mut sealed), "{profile:?}");
            assert_eq!(sealed.len(), clear.len() + overhead, "{profile:?}");
            assert_ne!(
                sealed[12..172],
                clear[12..],
                "{profile:?}: the payload is encrypted"
            );
            let mut opened = Vec::new();
            assert!(server.unprotect(&sealed, &mut opened), "{profile:?}");
            assert_eq!(opened, clear, "{profile:?}");
            // The same packet again is a replay.
            assert!(!server.unprotect(&sealed, &mut opened), "{profile:?}");
            // A flipped bit fails authentication.
            let mut forged = client_packet(&mut client, 8);
            forged[20] ^= 1;
            assert!(!server.unprotect(&forged, &mut opened), "{profile:?}");
            // The server's own direction uses other keys: it cannot open what it sent itself.
            let mut own = Vec::new();
            assert!(server.protect(&packet(9, &[1; 20]), &mut own));
            let (_, mut other_server) = pair(profile, len);
            assert!(!other_server.unprotect(&own, &mut opened), "{profile:?}");
            assert!(client.unprotect(&own, &mut opened), "{profile:?}");
        }
    }

    fn client_packet(client: &mut Srtp, seq: u16) -> Vec<u8> {
        let mut sealed = Vec::new();
        assert!(client.protect(&packet(seq, &[0x33; 160]), &mut sealed));
        sealed
    }

    #[test]
    fn the_rollover_counter_follows_a_wrap_both_ways() {
        let (mut client, mut server) = pair(SrtpProfile::AEAD_AES_128_GCM, 56);
        let mut opened = Vec::new();
        for seq in (65530u16..=65535).chain(0..5) {
            let sealed = client_packet(&mut client, seq);
            assert!(server.unprotect(&sealed, &mut opened), "seq {seq}");
        }
        assert_eq!(client.tx_index, Some(65536 + 4));
        assert_eq!(server.rx_index, Some(65536 + 4));
        // Late packets from before the wrap are still within the window... once.
        let mut late_client = pair(SrtpProfile::AEAD_AES_128_GCM, 56).0;
        late_client.tx_index = Some(65535 + 65536);
        let late = client_packet(&mut late_client, 3);
        assert!(
            !server.unprotect(&late, &mut opened),
            "seq 3 of roc 1 already came"
        );
    }

    #[test]
    fn reordered_packets_within_the_window_are_taken() {
        let (mut client, mut server) = pair(SrtpProfile::AES128_CM_SHA1_80, 60);
        let packets: Vec<_> = (100..110).map(|s| client_packet(&mut client, s)).collect();
        let mut opened = Vec::new();
        for i in [0, 2, 1, 5, 3, 4, 9, 8, 7, 6] {
            assert!(server.unprotect(&packets[i], &mut opened), "packet {i}");
        }
        for p in &packets {
            assert!(!server.unprotect(p, &mut opened));
        }
    }

    #[test]
    fn headers_with_csrcs_and_extensions_are_measured() {
        let mut p = vec![0x92, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(&[0; 8]); // two CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // one-byte extension
        p.extend_from_slice(&[9; 4]);
        assert_eq!(rtp_header_len(&p), Some(28));
        assert_eq!(rtp_header_len(&p[..26]), None);
        assert_eq!(rtp_header_len(&[0x40; 20]), None);
        let (mut client, mut server) = pair(SrtpProfile::AEAD_AES_128_GCM, 56);
        let mut sealed = Vec::new();
        assert!(client.protect(&p, &mut sealed));
        assert_eq!(sealed[..28], p[..28], "the header stays clear");
        let mut opened = Vec::new();
        assert!(server.unprotect(&sealed, &mut opened));
        assert_eq!(opened, p);
    }

    #[test]
    fn garbage_and_wrong_material_are_refused() {
        let crypto = provider();
        assert!(Srtp::new(&crypto, &keys(SrtpProfile::AEAD_AES_128_GCM, 60, true)).is_none());
        let (_, mut server) = pair(SrtpProfile::AES128_CM_SHA1_80, 60);
        let mut opened = Vec::new();
        for junk in [
            &[][..],
            &[0x80; 5],
            &[0x80; 12],
            &[0x80; 21],
            &[
                0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff,
            ],
        ] {
            assert!(!server.unprotect(junk, &mut opened));
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn session_keys_derive_as_in_rfc_3711_b3() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let master = Master {
            key: &key,
            salt: &salt,
        };
        let srtp = provider().srtp_provider;
        let mut cipher = [0u8; 16];
        master.derive(srtp, LABEL_RTP_KEY, &mut cipher);
        assert_eq!(cipher.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut session_salt = [0u8; 14];
        master.derive(srtp, LABEL_RTP_SALT, &mut session_salt);
        assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 20];
        master.derive(srtp, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn sequence_numbers_extend_to_the_nearest() {
        assert_eq!(extend(10, 11), 11);
        assert_eq!(extend(65535, 0), 65536);
        assert_eq!(extend(65536, 65535), 65535);
        assert_eq!(extend(3 << 16 | 100, 50), 3 << 16 | 50);
        assert_eq!(extend(100, 65000), 65000, "no roc below zero");
    }
}
