//! Sealing secrets at rest: ChaCha20-Poly1305 (ring's AEAD), a random
//! nonce per value, under one key per data directory.
//!
//! The key is `SLIPWAY_SEAL_KEY` (64 hex digits) when set, so an operator
//! can keep it apart from the data; otherwise the file `seal.key` in the
//! database directory, made on first open with mode 0600. A sealed value is
//! `sealed:v1:<base64 of nonce, ciphertext and tag>`; the database never
//! holds a secret in the clear.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::StoreError;

/// The environment variable that holds the key, when the file does not.
pub const KEY_VARIABLE: &str = "SLIPWAY_SEAL_KEY";
/// The key file, in the database directory.
pub const KEY_FILE: &str = "seal.key";
const PREFIX: &str = "sealed:v1:";
const KEY_LEN: usize = 32;

/// Seals and unseals values under the data directory's key.
pub(crate) struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl Sealer {
    /// The key from the environment, or from (or made into) `dir/seal.key`.
    pub fn open(dir: &Path) -> Result<Sealer, StoreError> {
        let bad = StoreError::Seal;
        let random = SystemRandom::new();
        let bytes = match std::env::var(KEY_VARIABLE) {
            Ok(hex_key) => hex::decode(hex_key.trim())
                .map_err(|_| bad(format!("{KEY_VARIABLE} is not hexadecimal")))?,
            Err(_) => key_file(&dir.join(KEY_FILE), &random)?,
        };
        if bytes.len() != KEY_LEN {
            return Err(bad(format!(
                "the key is {} bytes, not {KEY_LEN}",
                bytes.len()
            )));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| bad("the key is not usable".into()))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            random,
        })
    }

    /// `plain`, sealed to `context` (whose secret it is: it opens under
    /// that context only, so a sealed value cannot be moved to another).
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .expect("a value this size seals");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// A value sealed to `context`, opened; a value not sealed (written
    /// before sealing) as it is.
    pub fn unseal(&self, value: &str, context: &str) -> Result<String, StoreError> {
        let Some(encoded) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let bad = || {
            StoreError::Seal("a sealed secret does not open with this data directory's key".into())
        };
        let bytes = STANDARD.decode(encoded).map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }

    /// Whether `value` is sealed.
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }
}

/// The key in `path`, made (32 random bytes, mode 0600) when absent.
fn key_file(path: &Path, random: &SystemRandom) -> Result<Vec<u8>, StoreError> {
    let failed = |err: std::io::Error| StoreError::Seal(format!("{}: {err}", path.display()));
    match std::fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(failed(err)),
        Err(_) => {}
    }
    let mut key = vec![0u8; KEY_LEN];
    random
        .fill(&mut key)
        .expect("the system's random source works");
    // Written whole under another name, then linked into place: a process
    // opening the store at the same time reads all of one key or none.
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(&key)?;
        file.sync_all()?;
        std::fs::hard_link(&partial, path)
    };
    let written = write();
    let _ = std::fs::remove_file(&partial);
    match written {
        Ok(()) => Ok(key),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(failed)
        }
        Err(err) => Err(failed(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::open(dir.path()).unwrap();
        let at = "registry/1/password";
        let sealed = sealer.seal("hunter2", at);
        assert!(Sealer::is_sealed(&sealed) && !sealed.contains("hunter2"));
        assert_ne!(sealed, sealer.seal("hunter2", at), "a nonce per value");
        assert_eq!(sealer.unseal(&sealed, at).unwrap(), "hunter2");
        let reopened = Sealer::open(dir.path()).unwrap();
        assert_eq!(reopened.unseal(&sealed, at).unwrap(), "hunter2");
        assert!(
            sealer.unseal(&sealed, "registry/2/password").is_err(),
            "bound to its organisation and name"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = tempfile::tempdir().unwrap();
        let foreign = Sealer::open(other.path()).unwrap();
        assert!(foreign.unseal(&sealed, at).is_err());
    }
}
