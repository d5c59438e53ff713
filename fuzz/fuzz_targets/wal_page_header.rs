//! WAL page headers: `parse_page_header`, `parse_long_page_header`, and `check_segment_header`
//! with the timeline and segment the header itself claims (so valid inputs get past the
//! address check), at 16 MiB and at the size the header states.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::pg::wal;
use pgcairn::pg::walpage;

fuzz_target!(|data: &[u8]| {
    if let Ok(short) = walpage::parse_page_header(data) {
        let _ = walpage::major_of_magic(short.magic);
        assert!(short.header_len() <= walpage::LONG_HEADER_LEN);
    }
    let Ok(long) = walpage::parse_long_page_header(data) else {
        return;
    };
    let mut sizes = vec![16u64 << 20];
    if wal::is_valid_segment_size(u64::from(long.segment_size)) {
        sizes.push(u64::from(long.segment_size));
    }
    for size in sizes {
        let segno = long.page_addr.0 / size;
        if let Ok(checked) = walpage::check_segment_header(data, long.timeline, segno, size) {
            assert_eq!(checked, long);
            assert!(walpage::major_of_magic(checked.magic).is_some());
            assert_eq!(u64::from(checked.segment_size), size);
        }
        let _ = walpage::check_segment_header(data, 1, segno.wrapping_add(1), size);
    }
});
