//! Key files: structure (`parse`), the password-wrapped master keys (`unlock`, only for cheap
//! Argon2id parameters so the fuzzer stays fast) and the description (`describe`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::crypto::Key32;
use pgcairn::repo::keyfile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = keyfile::parse(data) else {
        return;
    };
    let kdf = file.kdf;
    if kdf.memory_kib <= 256 && kdf.iterations <= 2 && kdf.parallelism == 1 {
        if let Ok((_, keys)) = keyfile::unlock(&file, b"password") {
            let _ = keyfile::describe(&file, &keys.data);
        }
    }
    let key = Key32([7u8; 32]);
    let _ = keyfile::describe(&file, &key);
});
