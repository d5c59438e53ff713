//! Index files: the sealed object (header, envelope, payload) and its postcard body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::crypto::Key32;
use pgcairn::repo::index_file::IndexFile;
use pgcairn::repo::object::{self, SealedObject};

fuzz_target!(|data: &[u8]| {
    let key = Key32([7u8; 32]);
    let _ = <IndexFile as SealedObject>::open(&key, data);
    let _ = object::decode::<IndexFile>(data, "index");
});
