//! WAL file names: `parse_wal_file_name` at every valid segment size, with the round trip
//! through `file_name` and agreement with the older form checks.
//!
//! Input layout: `segment size selector (1 byte: 1 MiB << (b % 11)) ‖ name (UTF-8)`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::pg::wal::{self, WalFileName};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, name)) = data.split_first() else {
        return;
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    let segment_size = 1u64 << (20 + u32::from(selector % 11));
    let Some(parsed) = wal::parse_wal_file_name(name, segment_size) else {
        return;
    };
    assert_eq!(parsed.file_name(segment_size), name);
    assert_ne!(parsed.timeline(), 0);
    match parsed {
        WalFileName::Segment { .. } => assert!(wal::is_wal_segment_name(name)),
        WalFileName::History { .. } => assert!(wal::is_history_file_name(name)),
        _ => {}
    }
});
