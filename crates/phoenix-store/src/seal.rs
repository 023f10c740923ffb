//! Secrets at rest: the master key and authenticated encryption (ChaCha20-Poly1305) of tenant HMAC
//! secrets and API keys. A sealed blob is bound to its owner through the AAD, so blobs cannot be swapped.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::fs;
use std::io::Write;
use std::path::Path;

const NONCE_LEN: usize = 12;
const KEY_FILE: &str = "master.key";

/// Fills a fresh buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source failing is not something a server can recover from.
    getrandom::fill(&mut buf).expect("operating system random source unavailable");
    buf
}

/// `n` random bytes as lowercase hex (2n characters).
pub fn random_hex<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}

/// The 256-bit key that seals every stored secret. Never logged: `Debug` is redacted.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Why a master key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("PHOENIX_MASTER_KEY must be 64 hex characters")]
    Malformed,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a valid master key file (expected 64 hex characters)")]
    BadFile(String),
}

impl MasterKey {
    /// Parses the configured `PHOENIX_MASTER_KEY` (64 hex characters).
    pub fn from_hex(raw: &str) -> Result<Self, MasterKeyError> {
        let bytes = hex::decode(raw.trim()).map_err(|_| MasterKeyError::Malformed)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| MasterKeyError::Malformed)?;
        Ok(MasterKey(key))
    }

    /// The key kept in `<data_dir>/master.key`, created (mode 0600, fsync'd) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, MasterKeyError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| MasterKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(text) => MasterKey::from_hex(&text)
                .map_err(|_| MasterKeyError::BadFile(path.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey(random_bytes::<32>());
                let tmp = data_dir.join("master.key.tmp");
                let mut opts = fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut file = opts.open(&tmp).map_err(io)?;
                file.write_all(hex::encode(key.0).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                fs::rename(&tmp, &path).map_err(io)?;
                crate::journal::sync_dir(data_dir).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key derived from the master key for one purpose (HMAC-SHA256 of `context`): the same on every
    /// start and every node that shares the master key.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(b"phoenix-derive-v1\0");
        mac.update(context.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts `plaintext` bound to `context` (e.g. `tenant:<id>`): nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let nonce = random_bytes::<NONCE_LEN>();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            // Encryption only fails for inputs beyond 256 GiB.
            .expect("sealing a small secret cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a blob made by [`MasterKey::seal`] with the same context; `None` if it was made under
    /// another key or context, or was tampered with.
    pub fn unseal(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_is_bound_to_key_and_context() {
        let k = MasterKey(random_bytes::<32>());
        let blob = k.seal("tenant:a", b"secret");
        assert_eq!(k.unseal("tenant:a", &blob).as_deref(), Some(&b"secret"[..]));
        assert_eq!(k.unseal("tenant:b", &blob), None);
        let other = MasterKey(random_bytes::<32>());
        assert_eq!(other.unseal("tenant:a", &blob), None);
        assert!(!blob.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn master_key_file_is_created_once_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_create(dir.path()).unwrap();
        let b = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(MasterKey::from_hex("zz").is_err());
    }
}
