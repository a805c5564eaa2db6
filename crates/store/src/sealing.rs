//! The server key, and secrets sealed with it.
//!
//! Most credentials are kept as digests: the store only ever checks them. An API key's secret is
//! also needed in clear once in a while, to check the HS256 signature of an access token the key
//! signed, so it is kept sealed too (ChaCha20-Poly1305) under a key that lives outside the
//! database: 32 random bytes in `<data_dir>/server.key`. A copy of the database alone does not
//! give the secrets away.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

use crate::StoreError;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// The key that seals stored secrets. Give it to a store with [`crate::Store::with_sealing_key`].
#[derive(Clone)]
pub struct SealingKey([u8; KEY_LEN]);

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SealingKey {
        SealingKey(bytes)
    }

    /// A new random key, from the operating system's generator.
    pub fn generate() -> SealingKey {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SealingKey(bytes)
    }

    /// Reads the key file at `path`, or on a first start creates it with a new key, readable by
    /// its owner only (mode 0600). A file of any other size than 32 bytes is an error: a new key
    /// in its place would make every sealed secret unreadable.
    pub fn load_or_create(path: &Path) -> Result<SealingKey, StoreError> {
        let fail = |reason: String| StoreError::ServerKey {
            path: path.to_owned(),
            reason,
        };
        match create_new(path) {
            Ok(mut file) => {
                let key = SealingKey::generate();
                file.write_all(&key.0)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| fail(format!("cannot write a new key: {e}")))?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut bytes = Vec::with_capacity(KEY_LEN);
                std::fs::File::open(path)
                    .and_then(|f| f.take(KEY_LEN as u64 + 1).read_to_end(&mut bytes))
                    .map_err(|e| fail(format!("cannot read: {e}")))?;
                let bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    let size = if bytes.len() > KEY_LEN {
                        "more than 32".into()
                    } else {
                        bytes.len().to_string()
                    };
                    fail(format!("holds {size} bytes, a server key is exactly 32"))
                })?;
                Ok(SealingKey(bytes))
            }
            Err(e) => Err(fail(format!("cannot create: {e}"))),
        }
    }

    /// `plaintext` sealed under a random nonce: the nonce, then the ciphertext and its tag.
    /// `context` is authenticated with it (not stored): the same context is needed to open it.
    pub(crate) fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            // Encryption fails only for inputs near 256 GiB.
            .expect("a secret is small enough to seal");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of [`SealingKey::seal`]'s output, or `None` when it was sealed with another
    /// key or context, or was altered.
    pub(crate) fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .ok()
    }
}

fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dialtone-sealing-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let key = SealingKey::generate();
        let sealed = key.seal(b"s3cret", b"SK1");
        assert_eq!(key.open(&sealed, b"SK1").as_deref(), Some(&b"s3cret"[..]));
        assert_ne!(
            key.seal(b"s3cret", b"SK1"),
            sealed,
            "a fresh nonce each time"
        );
        assert_eq!(key.open(&sealed, b"SK2"), None, "another context");
        assert_eq!(
            SealingKey::generate().open(&sealed, b"SK1"),
            None,
            "another key"
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&altered, b"SK1"), None);
        assert_eq!(key.open(&sealed[..5], b"SK1"), None);
        assert_eq!(key.open(&[], b"SK1"), None);
    }

    #[test]
    fn the_key_file_is_created_once_private_and_read_back() {
        let dir = temp_dir();
        let path = dir.join("server.key");
        let first = SealingKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = SealingKey::load_or_create(&path).unwrap();
        assert_eq!(again.0, first.0);
        assert_eq!(
            format!("{first:?}"),
            "SealingKey(..)",
            "Debug shows no key bytes"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_file_of_the_wrong_size_is_an_error_and_is_left_alone() {
        let dir = temp_dir();
        for (name, bytes) in [
            ("short", vec![7u8; 31]),
            ("long", vec![7u8; 33]),
            ("empty", vec![]),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, &bytes).unwrap();
            let err = SealingKey::load_or_create(&path).unwrap_err();
            assert!(matches!(err, StoreError::ServerKey { .. }), "{err}");
            assert!(err.to_string().contains("exactly 32"), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
        let err =
            SealingKey::load_or_create(&dir.join("missing-dir").join("server.key")).unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
