//! TLS session-ticket keys shared by several servers through a file, so a
//! client that a balancer sends to another server resumes its session
//! there instead of doing a full handshake (like nginx's
//! `ssl_session_ticket_key`).
//!
//! The file holds 1 to 4 keys of 48 bytes each, nothing else: a 16-byte key
//! name followed by a 32-byte AES-256-GCM key. The first key encrypts new
//! tickets; every key decrypts. Make one with `openssl rand 48 > FILE`;
//! rotate by putting a new key in front (`(openssl rand 48; head -c 96 FILE)
//! > FILE.new && mv FILE.new FILE`) on every server and sending SIGHUP.
//!
//! A ticket is `name (16) ‖ nonce (12) ‖ AES-256-GCM(state) ‖ tag (16)`,
//! with the name as associated data and a random nonce per ticket.

use std::sync::RwLock;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use super::error::TlsConfigError;

const NAME_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// One key in the file: its name and its AES-256 key.
pub(crate) const ENTRY_LEN: usize = NAME_LEN + KEY_LEN;
const MAX_KEYS: usize = 4;
/// The lifetime clients are told. Tickets stay valid as long as their key is
/// in the file: rotate daily, keep the previous key one more day.
const LIFETIME_SECS: u32 = 12 * 60 * 60;

struct TicketKey {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

/// The keys of a ticket-key file, replaceable while the server runs.
pub(crate) struct FileTicketer {
    path: String,
    keys: RwLock<Vec<TicketKey>>,
    random: SystemRandom,
}

impl std::fmt::Debug for FileTicketer {
    // Never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTicketer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileTicketer {
    /// Reads the keys of the file at `path`.
    pub fn load(path: &str) -> Result<FileTicketer, TlsConfigError> {
        Ok(FileTicketer {
            path: path.to_owned(),
            keys: RwLock::new(read_keys(path)?),
            random: SystemRandom::new(),
        })
    }

    /// Reads the file again; on error the keys in use stay.
    pub fn reload(&self) -> Result<usize, TlsConfigError> {
        let keys = read_keys(&self.path)?;
        let count = keys.len();
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
        Ok(count)
    }
}

fn read_keys(path: &str) -> Result<Vec<TicketKey>, TlsConfigError> {
    let invalid = |reason: String| {
        TlsConfigError::ConfigurationError(format!("TLS ticket key file {path}: {reason}"))
    };
    let bytes = std::fs::read(path).map_err(|error| invalid(error.to_string()))?;
    if bytes.is_empty() || bytes.len() % ENTRY_LEN != 0 || bytes.len() > MAX_KEYS * ENTRY_LEN {
        return Err(invalid(format!(
            "{} bytes; expected 1 to {MAX_KEYS} keys of {ENTRY_LEN} random bytes (openssl rand {ENTRY_LEN})",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(ENTRY_LEN)
        .map(|entry| {
            let (name, key) = entry.split_at(NAME_LEN);
            let key = UnboundKey::new(&AES_256_GCM, key)
                .map_err(|_| invalid("unusable AES-256 key".to_owned()))?;
            let mut fixed = [0u8; NAME_LEN];
            fixed.copy_from_slice(name);
            Ok(TicketKey {
                name: fixed,
                key: LessSafeKey::new(key),
            })
        })
        .collect()
}

impl ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.read().ok()?;
        let current = keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + 16);
        ticket.extend_from_slice(&current.name);
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(current.name),
                &mut sealed,
            )
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let name = ticket.get(..NAME_LEN)?;
        let nonce = ticket.get(NAME_LEN..NAME_LEN + NONCE_LEN)?;
        let sealed = ticket.get(NAME_LEN + NONCE_LEN..)?;
        let keys = self.keys.read().ok()?;
        let key = keys.iter().find(|key| key.name == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(key.name), &mut buffer)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8]) -> (tempfile::NamedTempFile, String) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        let path = file.path().to_string_lossy().into_owned();
        (file, path)
    }

    #[test]
    fn tickets_round_trip_across_instances_and_rotation() {
        let old = [1u8; ENTRY_LEN];
        let new = [2u8; ENTRY_LEN];
        let (_a, path_a) = file(&old);
        let one = FileTicketer::load(&path_a).unwrap();
        let two = FileTicketer::load(&path_a).unwrap();
        let ticket = one.encrypt(b"session state").unwrap();
        assert_eq!(two.decrypt(&ticket).unwrap(), b"session state");

        // New key first, old one still accepted.
        std::fs::write(&path_a, [new, old].concat()).unwrap();
        assert_eq!(two.reload().unwrap(), 2);
        assert_eq!(two.decrypt(&ticket).unwrap(), b"session state");
        assert_eq!(&two.encrypt(b"x").unwrap()[..NAME_LEN], &new[..NAME_LEN]);
        // Old key gone: its tickets are refused.
        std::fs::write(&path_a, new).unwrap();
        two.reload().unwrap();
        assert!(two.decrypt(&ticket).is_none());

        let mut tampered = one.encrypt(b"state").unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(one.decrypt(&tampered).is_none());
        assert!(one.decrypt(&[]).is_none());
        assert!(one.decrypt(&[1u8; 20]).is_none());
    }

    #[test]
    fn bad_files_are_refused_and_keep_the_old_keys() {
        for bytes in [
            &[][..],
            &[0u8; 47][..],
            &[0u8; 49][..],
            &[0u8; 5 * ENTRY_LEN][..],
        ] {
            let (_f, path) = file(bytes);
            assert!(FileTicketer::load(&path).is_err(), "{} bytes", bytes.len());
        }
        let (_f, path) = file(&[3u8; ENTRY_LEN]);
        let ticketer = FileTicketer::load(&path).unwrap();
        let ticket = ticketer.encrypt(b"s").unwrap();
        std::fs::write(&path, b"short").unwrap();
        assert!(ticketer.reload().is_err());
        assert_eq!(ticketer.decrypt(&ticket).unwrap(), b"s");
    }
}
