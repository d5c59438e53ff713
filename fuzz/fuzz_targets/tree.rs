//! Tree and chunk-list blobs (the decrypted content of blobs of those types).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::repo::object;
use pgcairn::repo::tree::{ChunkList, Tree};

fuzz_target!(|data: &[u8]| {
    let _ = object::decode::<Tree>(data, "tree");
    let _ = object::decode::<ChunkList>(data, "chunk list");
});
