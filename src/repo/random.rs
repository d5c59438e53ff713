//! Where nonces, salts and new keys come from: the operating system, or — only for building
//! reproducible test vectors — a seeded ChaCha20 stream.

use std::sync::Mutex;

use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub enum RandomSource {
    System,
    Seeded(Box<Mutex<ChaCha20Rng>>),
}

impl RandomSource {
    /// A deterministic source: every nonce and key follows from `seed`. For golden test vectors
    /// only; a repository written this way has no secrecy.
    pub fn seeded_for_test_vectors(seed: u64) -> Self {
        RandomSource::Seeded(Box::new(Mutex::new(ChaCha20Rng::seed_from_u64(seed))))
    }

    pub fn rng(&self) -> SourceRng<'_> {
        SourceRng(self)
    }
}

pub struct SourceRng<'a>(&'a RandomSource);

impl RngCore for SourceRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match self.0 {
            RandomSource::System => OsRng.fill_bytes(dest),
            RandomSource::Seeded(rng) => rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .fill_bytes(dest),
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SourceRng<'_> {}
