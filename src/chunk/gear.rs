//! The gear table: 256 pseudo-random 64-bit values drawn from the chunker key, so cut points
//! (and therefore chunk sizes) depend on a repository secret.

use crate::crypto::Key32;

/// BLAKE3 `derive_key` context for the gear table (format-spec/ §chunking).
const GEAR_CONTEXT: &str = "pgcairn 2026 gear table v1";

pub struct GearTable {
    pub gear: Box<[u64; 256]>,
    /// `gear[i] << 1`, the table FastCDC v2020 uses for its two-bytes-per-step loop.
    pub gear_ls: Box<[u64; 256]>,
}

impl GearTable {
    /// `gear[i]` = little-endian u64 at bytes `8i..8i+8` of the BLAKE3 XOF output, keyed with
    /// `derive_key(GEAR_CONTEXT, chunker key)`.
    pub fn derive(chunker_key: &Key32) -> Self {
        let table_key = blake3::derive_key(GEAR_CONTEXT, &chunker_key.0);
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(&table_key)
            .finalize_xof()
            .fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        for (slot, word) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            *slot = u64::from_le_bytes(word.try_into().expect("chunks_exact(8)"));
        }
        let mut gear_ls = Box::new([0u64; 256]);
        for (ls, g) in gear_ls.iter_mut().zip(gear.iter()) {
            *ls = g << 1;
        }
        GearTable { gear, gear_ls }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_depends_on_key() {
        let a = GearTable::derive(&Key32([1; 32]));
        let b = GearTable::derive(&Key32([2; 32]));
        assert_ne!(a.gear, b.gear);
        assert_eq!(a.gear, GearTable::derive(&Key32([1; 32])).gear);
        assert_eq!(a.gear_ls[5], a.gear[5] << 1);
    }
}
