//! WAL catalogue entries: the sealed object (header, envelope, payload) and its postcard body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::crypto::Key32;
use pgcairn::repo::object::{self, SealedObject};
use pgcairn::repo::walcat::WalEntry;

fuzz_target!(|data: &[u8]| {
    let key = Key32([7u8; 32]);
    let _ = <WalEntry as SealedObject>::open(&key, data);
    let _ = object::decode::<WalEntry>(data, "WAL catalogue entry");
});
