//! Secret keys. Every secret lives in a type that zeroizes itself when dropped.

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit secret key, wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize, PartialEq, Eq)]
pub struct Key32(pub [u8; 32]);

impl Key32 {
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut key = Key32([0u8; 32]);
        rng.fill_bytes(&mut key.0);
        key
    }
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32(<secret>)")
    }
}

/// The repository's master keys. Every key file wraps the same three.
#[derive(Clone, Debug, Zeroize, ZeroizeOnDrop, Serialize, Deserialize, PartialEq, Eq)]
pub struct MasterKeys {
    /// XChaCha20-Poly1305 key for every encrypted object and blob.
    pub data: Key32,
    /// BLAKE3 key for blob ids.
    pub chunk_id: Key32,
    /// Seed of the chunker's gear table.
    pub chunker: Key32,
}

impl MasterKeys {
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        MasterKeys {
            data: Key32::random(rng),
            chunk_id: Key32::random(rng),
            chunker: Key32::random(rng),
        }
    }
}
