//! The framing shared by every stored object: the 10-byte object header, the compressed and
//! sealed payload, and postcard encoding with bounded, whole-input decoding.

use std::cell::RefCell;

use rand::{CryptoRng, RngCore};
use serde::{Serialize, de::DeserializeOwned};

use crate::crypto::{self, Key32};
use crate::error::{Error, ErrorKind, Result};

pub const MAGIC: &[u8; 7] = b"PGCAIRN";
/// The repository format version this build writes and the only one it reads. Version 4 added
/// the cluster name to snapshots; version 3 condemned packs in index files and lock objects
/// (prune); version 2 the WAL catalogue and `wal_missing` in snapshots. Versions 1 to 3 were
/// never released.
pub const FORMAT_VERSION: u16 = 4;
pub const HEADER_LEN: usize = 10;

/// Largest decompressed payload accepted for any object or blob (1 GiB): a bound on what a
/// hostile length field can make us allocate.
pub const MAX_PAYLOAD_LEN: u64 = 1 << 30;

/// The kind byte of the object header; also domain-separates the associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Config = 1,
    Key = 2,
    Index = 3,
    Snapshot = 4,
    Pack = 5,
    PackHeader = 6,
    Blob = 7,
    WalEntry = 8,
    Lock = 9,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key file",
            ObjectKind::Index => "index file",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Pack => "pack",
            ObjectKind::PackHeader => "pack header",
            ObjectKind::Blob => "blob",
            ObjectKind::WalEntry => "WAL catalogue entry",
            ObjectKind::Lock => "lock",
        }
    }
}

/// `"PGCAIRN" ‖ kind ‖ format version (u16 LE)`.
pub fn header(kind: ObjectKind) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..7].copy_from_slice(MAGIC);
    h[7] = kind as u8;
    h[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks the object header and returns the bytes after it. A newer format version is
/// `UnsupportedFormat`, anything else that does not match is `Integrity`.
pub fn strip_header(kind: ObjectKind, bytes: &[u8]) -> Result<&[u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..7] != MAGIC {
        return Err(Error::integrity(format!(
            "not a pgcairn {} (bad magic)",
            kind.name()
        )));
    }
    if bytes[7] != kind as u8 {
        return Err(Error::integrity(format!(
            "expected a {} but the header says object kind {}",
            kind.name(),
            bytes[7]
        )));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        let advice = if version > FORMAT_VERSION {
            "upgrade pgcairn to read it"
        } else {
            "it was written by a pre-release pgcairn; restore it with that build"
        };
        return Err(Error::new(
            ErrorKind::UnsupportedFormat,
            format!(
                "{} has format version {version}; this pgcairn reads only version \
                 {FORMAT_VERSION} ({advice})",
                kind.name()
            ),
        ));
    }
    Ok(&bytes[HEADER_LEN..])
}

const STORED: u8 = 0;
const ZSTD: u8 = 1;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// A decompression context per thread: creating one per blob (zeroing its tables) cost
    /// more than decompressing an 8 KiB page.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Appends `marker ‖ body` to `out`: zstd at `level` when that saves space, else stored.
/// `level == 0` means never compress (already compressed or encrypted data).
pub fn append_payload(out: &mut Vec<u8>, data: &[u8], level: i32) -> Result<()> {
    if level != 0 && data.len() > 64 {
        let compressed = COMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|(l, _)| *l != level) {
                let compressor = zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::internal(format!("zstd level {level}: {e}")))?;
                *cell = Some((level, compressor));
            }
            let (_, compressor) = cell.as_mut().expect("initialised above");
            compressor
                .compress(data)
                .map_err(|e| Error::internal(format!("zstd: {e}")))
        })?;
        if compressed.len() < data.len() {
            out.push(ZSTD);
            out.extend_from_slice(&compressed);
            return Ok(());
        }
    }
    out.push(STORED);
    out.extend_from_slice(data);
    Ok(())
}

/// Decodes `marker ‖ body`. The zstd frame must declare its content size, which must not
/// exceed `max_len`; the output must have exactly that size.
pub fn decode_payload(payload: &[u8], max_len: u64) -> Result<Vec<u8>> {
    let (&marker, body) = payload
        .split_first()
        .ok_or_else(|| Error::integrity("empty payload (no compression marker)"))?;
    match marker {
        STORED => {
            if body.len() as u64 > max_len {
                return Err(Error::integrity(format!(
                    "payload of {} bytes exceeds the limit of {max_len}",
                    body.len()
                )));
            }
            Ok(body.to_vec())
        }
        ZSTD => {
            let declared = zstd::zstd_safe::get_frame_content_size(body)
                .ok()
                .flatten()
                .ok_or_else(|| Error::integrity("zstd frame without a content size"))?;
            if declared > max_len {
                return Err(Error::integrity(format!(
                    "zstd frame declares {declared} bytes, over the limit of {max_len}"
                )));
            }
            let out = DECOMPRESSOR
                .with_borrow_mut(|slot| {
                    let decompressor = match slot {
                        Some(d) => d,
                        None => slot.insert(zstd::bulk::Decompressor::new()?),
                    };
                    decompressor.decompress(body, declared as usize)
                })
                .map_err(|e| Error::integrity(format!("zstd: {e}")))?;
            if out.len() as u64 != declared {
                return Err(Error::integrity(
                    "zstd frame shorter than its declared size",
                ));
            }
            Ok(out)
        }
        other => Err(Error::integrity(format!(
            "unknown compression marker {other}"
        ))),
    }
}

/// `header ‖ envelope(key, aad = header, payload(plaintext))`: the layout of config, index
/// and snapshot objects.
pub fn seal_object(
    kind: ObjectKind,
    key: &Key32,
    plaintext: &[u8],
    level: i32,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>> {
    let header = header(kind);
    let mut buf = Vec::with_capacity(plaintext.len() / 2 + 64);
    buf.extend_from_slice(&header);
    let mut nonce = [0u8; crypto::NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut sealed = nonce.to_vec();
    append_payload(&mut sealed, plaintext, level)?;
    crypto::envelope::seal_in_place(key, &header, &mut sealed);
    buf.extend_from_slice(&sealed);
    Ok(buf)
}

/// Inverse of [`seal_object`].
pub fn open_object(kind: ObjectKind, key: &Key32, bytes: &[u8]) -> Result<Vec<u8>> {
    let envelope = strip_header(kind, bytes)?;
    let payload = crypto::open(key, &header(kind), envelope)?;
    decode_payload(&payload, MAX_PAYLOAD_LEN)
}

/// A configuration, index or snapshot object: `header ‖ envelope(payload(postcard(self)))`.
pub trait SealedObject: Serialize + DeserializeOwned {
    const KIND: ObjectKind;

    fn seal(&self, key: &Key32, rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<u8>> {
        seal_object(Self::KIND, key, &encode(self), 3, rng)
    }

    /// Authenticates, decompresses and decodes an object read from storage.
    fn open(key: &Key32, bytes: &[u8]) -> Result<Self> {
        decode(&open_object(Self::KIND, key, bytes)?, Self::KIND.name())
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard serialisation into a Vec cannot fail")
}

/// Decodes a postcard value that must use all of `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| Error::integrity(format!("cannot decode {what}: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::integrity(format!(
            "cannot decode {what}: {} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn payload_round_trips_and_chooses_stored_for_noise() {
        let text = b"abcabcabc".repeat(100);
        let mut out = Vec::new();
        append_payload(&mut out, &text, 3).unwrap();
        assert_eq!(out[0], ZSTD);
        assert_eq!(decode_payload(&out, 1 << 20).unwrap(), text);

        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut noise = vec![0u8; 4096];
        rng.fill_bytes(&mut noise);
        let mut out = Vec::new();
        append_payload(&mut out, &noise, 3).unwrap();
        assert_eq!(out[0], STORED);
        assert_eq!(decode_payload(&out, 1 << 20).unwrap(), noise);
    }

    #[test]
    fn payload_limits_are_enforced() {
        let mut out = Vec::new();
        append_payload(&mut out, &vec![0u8; 10_000], 3).unwrap();
        assert!(decode_payload(&out, 9_999).is_err());
        assert!(decode_payload(&[9, 1, 2], 100).is_err());
        assert!(decode_payload(&[], 100).is_err());
    }

    #[test]
    fn header_checks_kind_and_version() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let key = Key32::random(&mut rng);
        let sealed = seal_object(ObjectKind::Snapshot, &key, b"x", 3, &mut rng).unwrap();
        assert_eq!(
            open_object(ObjectKind::Snapshot, &key, &sealed).unwrap(),
            b"x"
        );
        assert!(open_object(ObjectKind::Index, &key, &sealed).is_err());
        for version in [FORMAT_VERSION - 1, FORMAT_VERSION + 1] {
            let mut other = sealed.clone();
            other[8..10].copy_from_slice(&version.to_le_bytes());
            let err = open_object(ObjectKind::Snapshot, &key, &other).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnsupportedFormat);
        }
    }
}
