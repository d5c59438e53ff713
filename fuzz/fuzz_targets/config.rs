//! The config object: the sealed object and its postcard body, then `validate`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::crypto::Key32;
use pgcairn::repo::config::Config;
use pgcairn::repo::object::{self, SealedObject};

fuzz_target!(|data: &[u8]| {
    let key = Key32([7u8; 32]);
    if let Ok(config) = <Config as SealedObject>::open(&key, data) {
        let _ = config.validate();
    }
    if let Ok(config) = object::decode::<Config>(data, "config") {
        let _ = config.validate();
    }
});
