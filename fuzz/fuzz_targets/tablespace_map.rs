//! tablespace_map as restore rewrites it (`restore::remap_tablespace_map`): remapping every
//! path to itself changes nothing, and remapping to a fixed path keeps the lines.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use pgcairn::restore::remap_tablespace_map;

fuzz_target!(|data: &[u8]| {
    let same = remap_tablespace_map(data, &|path: &[u8]| PathBuf::from(OsStr::from_bytes(path)));
    assert_eq!(same, data);
    let moved = remap_tablespace_map(data, &|_: &[u8]| PathBuf::from("/restored/ts"));
    let lines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count();
    assert_eq!(lines(&moved), lines(data));
});
