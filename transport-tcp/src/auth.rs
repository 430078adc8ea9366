//! The cluster key: a shared 32-byte secret, a mutual challenge–response in the hello
//! (HMAC-SHA256) and an HMAC tag on every later frame of the connection.
//!
//! Handshake (every message is one length-delimited frame; the acceptor writes only here):
//!
//! 1. dialer → acceptor: `[CHALLENGE_TAG][version][nonce_d: 32]`
//! 2. acceptor → dialer: `[nonce_a: 32][HMAC(key, "pidmesh/tcp acceptor" ‖ nonce_d ‖ nonce_a)]`
//! 3. dialer checks the acceptor's tag (so it never sends to an impostor), then sends its hello:
//!    `[HELLO_TAG][HELLO_KEYED_VERSION][HMAC(key, "pidmesh/tcp dialer" ‖ nonce_d ‖ nonce_a ‖ addr)][addr]`
//! 4. acceptor checks the dialer's tag.
//!
//! Every later frame is `[class][payload][tag: 16]`, where `tag` is the first 16 bytes of
//! `HMAC(session, frame number as u64 BE ‖ class ‖ payload)` (each part length-prefixed) and
//! `session = HMAC(key, "pidmesh/tcp frames" ‖ nonce_d ‖ nonce_a)`. Frame numbers count from 0,
//! so a frame cannot be altered, injected, dropped, reordered or replayed (from this or another
//! connection) without the acceptor noticing. Frames are authenticated, not encrypted.
//! Both nonces come from the OS random number generator.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of the nonces each side contributes.
pub(crate) const NONCE_LEN: usize = 32;
/// Length of a handshake tag (a full HMAC-SHA256).
pub(crate) const TAG_LEN: usize = 32;
/// Length of the tag on every frame after the hello.
pub const FRAME_TAG_LEN: usize = 16;

/// A cluster's shared secret for plain TCP: every node of the cluster is configured with the
/// same 32 bytes (generate them with a cryptographic RNG, e.g. `openssl rand -hex 32`, and keep
/// them like a password). Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// Why [`ClusterKey::from_hex`] failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterKeyError {
    /// The text is not 64 hexadecimal digits.
    #[error("a cluster key is 64 hexadecimal digits (32 bytes)")]
    BadHex,
}

impl ClusterKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key from 64 hexadecimal digits (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`ClusterKeyError::BadHex`] if the text is not exactly 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, ClusterKeyError> {
        let t = text.trim().as_bytes();
        if t.len() != 64 {
            return Err(ClusterKeyError::BadHex);
        }
        let mut out = [0u8; 32];
        for (i, pair) in t.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or(ClusterKeyError::BadHex)?;
            let lo = hex_digit(pair[1]).ok_or(ClusterKeyError::BadHex)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    fn mac(&self, label: &[u8], parts: &[&[u8]]) -> HmacSha256 {
        mac_with(&self.0, label, parts)
    }

    /// The acceptor's answer tag to a challenge.
    pub(crate) fn acceptor_tag(&self, nonce_d: &[u8], nonce_a: &[u8]) -> [u8; TAG_LEN] {
        self.mac(b"pidmesh/tcp acceptor", &[nonce_d, nonce_a])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks the acceptor's answer tag in constant time.
    pub(crate) fn verify_acceptor(&self, nonce_d: &[u8], nonce_a: &[u8], tag: &[u8]) -> bool {
        self.mac(b"pidmesh/tcp acceptor", &[nonce_d, nonce_a])
            .verify_slice(tag)
            .is_ok()
    }

    /// The dialer's tag over its hello address.
    pub(crate) fn dialer_tag(&self, nonce_d: &[u8], nonce_a: &[u8], addr: &[u8]) -> [u8; TAG_LEN] {
        self.mac(b"pidmesh/tcp dialer", &[nonce_d, nonce_a, addr])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks the dialer's hello tag in constant time.
    pub(crate) fn verify_dialer(
        &self,
        nonce_d: &[u8],
        nonce_a: &[u8],
        addr: &[u8],
        tag: &[u8],
    ) -> bool {
        self.mac(b"pidmesh/tcp dialer", &[nonce_d, nonce_a, addr])
            .verify_slice(tag)
            .is_ok()
    }

    /// The per-connection frame authenticator agreed by the handshake.
    pub(crate) fn session(&self, nonce_d: &[u8], nonce_a: &[u8]) -> Session {
        let key: [u8; 32] = self
            .mac(b"pidmesh/tcp frames", &[nonce_d, nonce_a])
            .finalize()
            .into_bytes()
            .into();
        Session { key, next: 0 }
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn mac_with(key: &[u8], label: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    m.update(label);
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m
}

/// Authenticates the frames of one connection, in order.
pub(crate) struct Session {
    key: [u8; 32],
    next: u64,
}

impl Session {
    fn frame_mac(&self, class: u8, payload: &[u8]) -> HmacSha256 {
        mac_with(
            &self.key,
            b"frame",
            &[&self.next.to_be_bytes(), &[class], payload],
        )
    }

    /// The tag to append to the next frame sent.
    pub(crate) fn seal(&mut self, class: u8, payload: &[u8]) -> [u8; FRAME_TAG_LEN] {
        let full = self.frame_mac(class, payload).finalize().into_bytes();
        self.next += 1;
        let mut tag = [0u8; FRAME_TAG_LEN];
        tag.copy_from_slice(&full[..FRAME_TAG_LEN]);
        tag
    }

    /// Checks the tag of the next frame received, in constant time.
    pub(crate) fn open(&mut self, class: u8, payload: &[u8], tag: &[u8]) -> bool {
        let ok = self
            .frame_mac(class, payload)
            .verify_truncated_left(tag)
            .is_ok();
        self.next += 1;
        ok
    }
}

/// Fresh random bytes from the operating system.
pub(crate) fn nonce() -> Result<[u8; NONCE_LEN], getrandom::Error> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tags_bind_key_nonces_and_address() {
        let k = ClusterKey::from_bytes([7; 32]);
        let other = ClusterKey::from_bytes([8; 32]);
        let (d, a) = ([1u8; 32], [2u8; 32]);
        let t = k.acceptor_tag(&d, &a);
        assert!(k.verify_acceptor(&d, &a, &t));
        assert!(!other.verify_acceptor(&d, &a, &t));
        assert!(!k.verify_acceptor(&a, &d, &t));
        let h = k.dialer_tag(&d, &a, b"127.0.0.1:1");
        assert!(k.verify_dialer(&d, &a, b"127.0.0.1:1", &h));
        assert!(!k.verify_dialer(&d, &a, b"127.0.0.1:2", &h));
        assert!(!other.verify_dialer(&d, &a, b"127.0.0.1:1", &h));
    }

    #[test]
    fn frames_are_bound_to_their_position() {
        let k = ClusterKey::from_bytes([7; 32]);
        let (d, a) = ([1u8; 32], [2u8; 32]);
        let mut tx = k.session(&d, &a);
        let mut rx = k.session(&d, &a);
        let t0 = tx.seal(1, b"first");
        let t1 = tx.seal(1, b"second");
        assert!(rx.open(1, b"first", &t0));
        // Replaying the first frame in second position fails.
        assert!(!rx.open(1, b"first", &t0));
        let mut rx2 = k.session(&d, &a);
        assert!(!rx2.open(1, b"second", &t1), "out of order");
        let mut rx3 = k.session(&d, &a);
        assert!(!rx3.open(2, b"first", &t0), "another class");
        let mut other = k.session(&a, &d);
        assert!(!other.open(1, b"first", &t0), "another connection's frame");
    }

    #[test]
    fn hex_keys_parse() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        assert!(ClusterKey::from_hex(hex).is_ok());
        assert_eq!(
            ClusterKey::from_hex("abc").unwrap_err(),
            ClusterKeyError::BadHex
        );
        assert!(ClusterKey::from_hex(&hex.replace('0', "g")).is_err());
        assert_eq!(
            format!("{:?}", ClusterKey::from_bytes([1; 32])),
            "ClusterKey(..)"
        );
    }
}
