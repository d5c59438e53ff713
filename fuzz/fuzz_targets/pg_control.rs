//! pg_control content: `control::parse_control`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::pg::control;

fuzz_target!(|data: &[u8]| {
    match control::parse_control(data) {
        Ok(parsed) => {
            assert!(data.len() >= 8);
            assert_eq!(parsed.system_identifier.to_ne_bytes(), data[..8]);
        }
        Err(_) => assert!(data.len() < 8),
    }
});
