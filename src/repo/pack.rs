//! Pack files: sealed blobs back to back, then a sealed header listing them, then the header's
//! length. Self-describing, so the index can be rebuilt from packs alone.
//!
//! ```text
//! object header (kind 5) ‖ blob envelope … ‖ header envelope ‖ u32 LE header envelope length
//! ```

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::id::{BlobId, PackId, object_hash};
use super::object::{self, HEADER_LEN, ObjectKind};
use crate::crypto::{self, ENVELOPE_OVERHEAD, Key32, NONCE_LEN};
use crate::error::{Error, Result};

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// A directory tree (or one part of a large directory).
    Tree,
    /// A node of a large file's chunk list.
    ChunkList,
}

impl BlobType {
    pub fn code(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
            BlobType::ChunkList => 2,
        }
    }

    pub fn from_code(code: u8) -> Result<Self> {
        match code {
            0 => Ok(BlobType::Data),
            1 => Ok(BlobType::Tree),
            2 => Ok(BlobType::ChunkList),
            other => Err(Error::integrity(format!("unknown blob type {other}"))),
        }
    }
}

/// One blob's entry in a pack header and in index files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedBlob {
    pub blob_type: BlobType,
    pub id: BlobId,
    /// Offset of the blob's envelope from the start of the pack file.
    pub offset: u64,
    /// Length of the envelope as stored.
    pub stored_len: u32,
    /// Length of the blob's content after decryption and decompression.
    pub raw_len: u32,
}

/// Largest blob content accepted (64 MiB): chunkers never produce more; a hostile header that
/// claims more is refused before anything is allocated.
pub const MAX_BLOB_LEN: u32 = 64 << 20;
/// The smallest possible blob envelope: nonce, compression marker, tag.
const MIN_BLOB_ENVELOPE: u32 = (ENVELOPE_OVERHEAD + 1) as u32;
const TRAILER_LEN: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackHeader {
    pub blobs: Vec<PackedBlob>,
}

/// The associated data of a blob envelope: it binds the envelope to its type and id.
fn blob_aad(blob_type: BlobType, id: &BlobId) -> [u8; HEADER_LEN + 33] {
    let mut aad = [0u8; HEADER_LEN + 33];
    aad[..HEADER_LEN].copy_from_slice(&object::header(ObjectKind::Blob));
    aad[HEADER_LEN] = blob_type.code();
    aad[HEADER_LEN + 1..].copy_from_slice(id.as_bytes());
    aad
}

/// Compresses (at `level`, 0 = never) and encrypts one blob.
pub fn seal_blob(
    key: &Key32,
    blob_type: BlobType,
    id: &BlobId,
    data: &[u8],
    level: i32,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(NONCE_LEN + 1 + data.len() + crypto::TAG_LEN);
    buf.resize(NONCE_LEN, 0);
    rng.fill_bytes(&mut buf[..NONCE_LEN]);
    object::append_payload(&mut buf, data, level)?;
    crypto::envelope::seal_in_place(key, &blob_aad(blob_type, id), &mut buf);
    Ok(buf)
}

/// Decrypts and decompresses one blob envelope, checking its length against the entry.
/// (Callers that have the chunk-id key also re-hash the content against `entry.id`.)
pub fn open_blob(key: &Key32, entry: &PackedBlob, envelope: &[u8]) -> Result<Vec<u8>> {
    let describe = || format!("{:?} blob {}", entry.blob_type, entry.id);
    let payload = crypto::open(key, &blob_aad(entry.blob_type, &entry.id), envelope)
        .map_err(|e| e.with_context(describe()))?;
    let data = object::decode_payload(&payload, u64::from(entry.raw_len))
        .map_err(|e| e.with_context(describe()))?;
    if data.len() != entry.raw_len as usize {
        return Err(Error::integrity(format!(
            "{} is {} bytes, its index entry says {}",
            describe(),
            data.len(),
            entry.raw_len
        )));
    }
    Ok(data)
}

/// Accumulates sealed blobs into one pack file in memory, hashing them as they arrive (while
/// they are still in cache) so closing the pack does not read it all again.
pub struct PackWriter {
    buf: Vec<u8>,
    blobs: Vec<PackedBlob>,
    hasher: blake3::Hasher,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl PackWriter {
    /// A writer whose buffer will not need to grow below `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(HEADER_LEN));
        buf.extend_from_slice(&object::header(ObjectKind::Pack));
        let mut hasher = blake3::Hasher::new();
        hasher.update(&buf);
        PackWriter {
            buf,
            blobs: Vec::new(),
            hasher,
        }
    }

    /// Appends an envelope produced by [`seal_blob`].
    pub fn add(&mut self, blob_type: BlobType, id: BlobId, envelope: &[u8], raw_len: u32) {
        self.blobs.push(PackedBlob {
            blob_type,
            id,
            offset: self.buf.len() as u64,
            stored_len: envelope.len() as u32,
            raw_len,
        });
        self.hasher.update(envelope);
        self.buf.extend_from_slice(envelope);
    }

    /// Bytes so far (without the header still to come).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Seals the header and returns the pack's id, bytes and header.
    pub fn finish(
        mut self,
        key: &Key32,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(PackId, Vec<u8>, PackHeader)> {
        let header = PackHeader { blobs: self.blobs };
        let mut tail = seal_header(key, &header, rng)?;
        let sealed_len = tail.len() as u32;
        tail.extend_from_slice(&sealed_len.to_le_bytes());
        self.hasher.update(&tail);
        self.buf.extend_from_slice(&tail);
        Ok((PackId(*self.hasher.finalize().as_bytes()), self.buf, header))
    }
}

fn seal_header(
    key: &Key32,
    header: &PackHeader,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; NONCE_LEN];
    rng.fill_bytes(&mut buf);
    object::append_payload(&mut buf, &object::encode(header), 3)?;
    crypto::envelope::seal_in_place(key, &object::header(ObjectKind::PackHeader), &mut buf);
    Ok(buf)
}

/// How many bytes at the end of a pack of `pack_len` bytes hold the header and trailer, read
/// from the trailer (the pack's last 4 bytes).
pub fn header_span(pack_len: u64, trailer: &[u8]) -> Result<u64> {
    let trailer: [u8; TRAILER_LEN] = trailer
        .try_into()
        .map_err(|_| Error::integrity("pack trailer is not 4 bytes"))?;
    let header_len = u64::from(u32::from_le_bytes(trailer));
    let span = header_len + TRAILER_LEN as u64;
    if header_len < ENVELOPE_OVERHEAD as u64 + 1 || span + HEADER_LEN as u64 > pack_len {
        return Err(Error::integrity(format!(
            "pack trailer gives a header of {header_len} bytes, impossible in a pack of \
             {pack_len} bytes (truncated?)"
        )));
    }
    Ok(span)
}

/// Decrypts and decodes the pack header from the tail located by [`header_span`] (header
/// envelope and trailer).
pub fn decode_header(key: &Key32, pack_len: u64, tail: &[u8]) -> Result<PackHeader> {
    let span = header_span(pack_len, &tail[tail.len().saturating_sub(TRAILER_LEN)..])?;
    if span != tail.len() as u64 {
        return Err(Error::integrity(
            "pack header length does not match its trailer",
        ));
    }
    let envelope = &tail[..tail.len() - TRAILER_LEN];
    let payload = crypto::open(key, &object::header(ObjectKind::PackHeader), envelope)
        .map_err(|e| e.with_context("pack header"))?;
    let plain = object::decode_payload(&payload, object::MAX_PAYLOAD_LEN)?;
    parse_header(&plain, pack_len - span)
}

/// Decodes a decrypted pack header and checks that every entry lies inside the blob region
/// (which ends at `blobs_end`), in order and without overlap.
pub fn parse_header(plain: &[u8], blobs_end: u64) -> Result<PackHeader> {
    let header: PackHeader = object::decode(plain, "pack header")?;
    let mut next_free = HEADER_LEN as u64;
    for b in &header.blobs {
        let end = b.offset.checked_add(u64::from(b.stored_len));
        let ok = b.offset >= next_free
            && end.is_some_and(|end| end <= blobs_end)
            && b.stored_len >= MIN_BLOB_ENVELOPE
            && b.raw_len <= MAX_BLOB_LEN;
        if !ok {
            return Err(Error::integrity(format!(
                "pack header entry for blob {} (offset {}, {} bytes) is out of bounds or overlaps",
                b.id, b.offset, b.stored_len
            )));
        }
        next_free = b.offset + u64::from(b.stored_len);
    }
    Ok(header)
}

/// Checks a whole pack's magic and that its bytes hash to its name.
pub fn check_whole(id: &PackId, bytes: &[u8]) -> Result<()> {
    object::strip_header(ObjectKind::Pack, bytes)?;
    if object_hash(bytes) != id.0 {
        return Err(Error::integrity(
            "content does not match its name (damaged or replaced)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn sample_pack(rng: &mut ChaCha20Rng, key: &Key32) -> (PackId, Vec<u8>, PackHeader) {
        let mut w = PackWriter::default();
        for (i, t) in [BlobType::Data, BlobType::Tree, BlobType::ChunkList]
            .into_iter()
            .enumerate()
        {
            let data = vec![i as u8; 1000 * (i + 1)];
            let id = BlobId([i as u8; 32]);
            let env = seal_blob(key, t, &id, &data, 3, rng).unwrap();
            w.add(t, id, &env, data.len() as u32);
        }
        w.finish(key, rng).unwrap()
    }

    #[test]
    fn pack_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let key = Key32::random(&mut rng);
        let (id, bytes, header) = sample_pack(&mut rng, &key);
        check_whole(&id, &bytes).unwrap();
        let span = header_span(bytes.len() as u64, &bytes[bytes.len() - 4..]).unwrap();
        let tail = &bytes[bytes.len() - span as usize..];
        let decoded = decode_header(&key, bytes.len() as u64, tail).unwrap();
        assert_eq!(decoded, header);
        for (i, b) in decoded.blobs.iter().enumerate() {
            let env = &bytes[b.offset as usize..(b.offset + u64::from(b.stored_len)) as usize];
            assert_eq!(
                open_blob(&key, b, env).unwrap(),
                vec![i as u8; 1000 * (i + 1)]
            );
        }
    }

    #[test]
    fn swapped_blob_type_or_id_fails() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let key = Key32::random(&mut rng);
        let (_, bytes, header) = sample_pack(&mut rng, &key);
        let b = header.blobs[0];
        let env = &bytes[b.offset as usize..(b.offset + u64::from(b.stored_len)) as usize];
        let wrong_type = PackedBlob {
            blob_type: BlobType::Tree,
            ..b
        };
        assert!(open_blob(&key, &wrong_type, env).is_err());
        let wrong_id = PackedBlob {
            id: BlobId([9; 32]),
            ..b
        };
        let err = open_blob(&key, &wrong_id, env).unwrap_err();
        assert!(err.to_string().contains(&BlobId([9; 32]).to_hex()), "{err}");
    }

    #[test]
    fn truncated_or_flipped_pack_is_detected() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let key = Key32::random(&mut rng);
        let (id, bytes, _) = sample_pack(&mut rng, &key);
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(check_whole(&id, &flipped).is_err());
        let cut = &bytes[..bytes.len() - 1];
        let n = cut.len();
        assert!(
            header_span(n as u64, &cut[n - 4..])
                .and_then(|s| decode_header(&key, n as u64, &cut[n - s as usize..]))
                .is_err()
        );
    }
}
