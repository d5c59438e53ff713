//! Pack files: locating the header from the trailer (`header_span`), decrypting and checking it
//! (`decode_header`), opening every blob it lists, and `parse_header` on the input taken as a
//! decrypted header plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::crypto::Key32;
use pgcairn::repo::pack;

fuzz_target!(|data: &[u8]| {
    let key = Key32([7u8; 32]);
    let len = data.len() as u64;

    // The input as a whole pack file, read the way repair reads it: trailer, then tail.
    let trailer = &data[data.len().saturating_sub(4)..];
    if let Ok(span) = pack::header_span(len, trailer) {
        assert!(span <= len);
        let tail = &data[data.len() - span as usize..];
        if let Ok(header) = pack::decode_header(&key, len, tail) {
            let blobs_end = len - span;
            for b in &header.blobs {
                // parse_header promises every entry lies inside the blob region.
                let end = b.offset + u64::from(b.stored_len);
                assert!(end <= blobs_end);
                let envelope = &data[b.offset as usize..end as usize];
                let _ = pack::open_blob(&key, b, envelope);
            }
        }
    }
    // A tail that does not match its trailer, and a pack length that disagrees with the tail.
    let _ = pack::decode_header(&key, len, data);
    let _ = pack::decode_header(&key, len.saturating_mul(2), data);

    // The input as a decrypted header plaintext.
    let _ = pack::parse_header(data, len.saturating_mul(256));
    let _ = pack::parse_header(data, u64::MAX);
});
