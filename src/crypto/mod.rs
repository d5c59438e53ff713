//! Cryptography: password-based key derivation, the AEAD envelope every stored object is sealed
//! in, and the master keys. Nothing here knows about packs or snapshots.

pub mod envelope;
pub mod kdf;
pub mod keys;

pub use envelope::{ENVELOPE_OVERHEAD, NONCE_LEN, TAG_LEN, open, seal};
pub use kdf::KdfParams;
pub use keys::{Key32, MasterKeys};
