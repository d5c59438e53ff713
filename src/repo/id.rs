//! Typed 32-byte identifiers. A pack id cannot be passed where a snapshot id belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| {
                    Error::integrity(format!(
                        "{s:?} is not a valid {} (64 hex digits)",
                        stringify!($name)
                    ))
                })?;
                Ok($name(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

typed_id!(
    /// A blob (chunk, tree or chunk list): keyed BLAKE3 of its uncompressed content.
    BlobId
);
typed_id!(
    /// A pack file: BLAKE3 of the whole stored file.
    PackId
);
typed_id!(
    /// An index file: BLAKE3 of the whole stored file.
    IndexId
);
typed_id!(
    /// A snapshot object: BLAKE3 of the whole stored file.
    SnapshotId
);
typed_id!(
    /// A key file: BLAKE3 of the whole stored file.
    KeyId
);
typed_id!(
    /// The repository identifier, random at `init`.
    RepoId
);

/// The content address of a stored object: unkeyed BLAKE3 of its bytes.
pub fn object_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Serializes an id as its hex string (for `--json` output), not as an array of bytes.
pub fn serialize_hex<S: serde::Serializer, T: fmt::Display>(
    id: &T,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let id = PackId([0xab; 32]);
        assert_eq!(PackId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.short(), "abababab");
        assert!(PackId::from_hex("abc").is_err());
        assert!(PackId::from_hex(&"zz".repeat(32)).is_err());
    }
}
