//! The AEAD envelope: `nonce (24) ‖ ciphertext ‖ tag (16)`, XChaCha20-Poly1305 with a random
//! nonce. The associated data binds an envelope to its place (object kind, blob id), so an
//! envelope moved elsewhere fails to open.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, RngCore};

use super::Key32;
use crate::error::{Error, Result};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
pub const ENVELOPE_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Encrypts `plaintext` into a new envelope.
pub fn seal(
    key: &Key32,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + ENVELOPE_OVERHEAD);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    seal_in_place(key, aad, &mut out);
    out
}

/// Encrypts in place a buffer laid out as `nonce ‖ plaintext`, appending the tag. Lets callers
/// build the plaintext directly after the nonce and avoid a copy of large blobs.
pub fn seal_in_place(key: &Key32, aad: &[u8], buf: &mut Vec<u8>) {
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let (nonce, body) = buf.split_at_mut(NONCE_LEN);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, body)
        .expect("XChaCha20-Poly1305 accepts any message shorter than 256 GiB");
    buf.extend_from_slice(&tag);
}

/// Decrypts and authenticates an envelope. Any damage, truncation, wrong key or wrong
/// associated data is the same error: the envelope does not authenticate.
pub fn open(key: &Key32, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>> {
    if envelope.len() < ENVELOPE_OVERHEAD {
        return Err(Error::integrity(format!(
            "envelope is {} bytes, shorter than the {ENVELOPE_OVERHEAD}-byte nonce and tag \
             (truncated)",
            envelope.len()
        )));
    }
    let (nonce, rest) = envelope.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plaintext = ciphertext.to_vec();
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| {
            Error::integrity("authentication failed (damaged, truncated, moved, or wrong key)")
        })?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn round_trip_and_every_tamper_fails() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = Key32::random(&mut rng);
        let sealed = seal(&key, b"aad", b"hello world", &mut rng);
        assert_eq!(sealed.len(), 11 + ENVELOPE_OVERHEAD);
        assert_eq!(open(&key, b"aad", &sealed).unwrap(), b"hello world");

        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&key, b"aad", &bad).is_err(), "flip at {i} accepted");
        }
        for len in 0..sealed.len() {
            assert!(
                open(&key, b"aad", &sealed[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
        assert!(open(&key, b"other", &sealed).is_err());
        assert!(open(&Key32::random(&mut rng), b"aad", &sealed).is_err());
    }
}
