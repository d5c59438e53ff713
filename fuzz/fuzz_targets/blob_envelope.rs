//! Blob envelopes as read from a pack: `open_blob` with an index entry taken from the input,
//! and `decode_payload` (compression marker and zstd frame) on the raw input.
//!
//! Input layout: `blob type (1, taken mod 3) ‖ raw_len (u32 LE, capped at 1 MiB) ‖ envelope`.
//! The blob id is fixed ([`BLOB_ID`]) so that seeds sealed for it decrypt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::crypto::Key32;
use pgcairn::repo::id::BlobId;
use pgcairn::repo::object;
use pgcairn::repo::pack::{self, BlobType, PackedBlob};

/// The id every seed blob is sealed under (the AEAD binds it).
const BLOB_ID: BlobId = BlobId([7u8; 32]);
const MAX_RAW_LEN: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // Authenticated decryption keeps random bytes from reaching the decompressor, so feed it
    // directly as well.
    if let Ok(out) = object::decode_payload(data, 1 << 20) {
        assert!(out.len() <= 1 << 20);
    }

    let Some((prefix, envelope)) = data.split_first_chunk::<5>() else {
        return;
    };
    let blob_type = BlobType::from_code(prefix[0] % 3).expect("codes 0..3 are valid");
    let raw_len =
        u32::from_le_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) % (MAX_RAW_LEN + 1);
    let entry = PackedBlob {
        blob_type,
        id: BLOB_ID,
        offset: 10,
        stored_len: envelope.len() as u32,
        raw_len,
    };
    let key = Key32([7u8; 32]);
    if let Ok(content) = pack::open_blob(&key, &entry, envelope) {
        assert_eq!(content.len(), raw_len as usize);
    }
});
