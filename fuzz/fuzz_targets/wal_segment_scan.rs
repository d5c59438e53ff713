//! The WAL record scan: `summarize_segment` on the input as a segment starting at the page
//! address and with the page size its first header claims (so that valid WAL is walked), and
//! at 8 kB pages from LSN 0. Checks what the summary promises about itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::pg::wal::Lsn;
use pgcairn::pg::walpage;
use pgcairn::pg::walscan::summarize_segment;

fuzz_target!(|data: &[u8]| {
    let mut runs = vec![(Lsn(0), 8192usize)];
    if let Ok(header) = walpage::parse_long_page_header(data) {
        runs.push((header.page_addr, header.block_size as usize));
    }
    for (start, block_size) in runs {
        let summary = summarize_segment(data, start, block_size);
        assert!(summary.end_of_valid_records >= start);
        assert_eq!(summary.first_commit_time.is_some(), summary.commits > 0);
        assert_eq!(summary.last_commit_time.is_some(), summary.commits > 0);
        // Every record is at least 24 bytes.
        assert!(summary.commits as usize + summary.restore_points.len() <= data.len() / 24);
        for point in &summary.restore_points {
            assert!(point.lsn >= start && point.lsn < summary.end_of_valid_records);
            assert!(point.name.len() <= 64 * 3);
        }
    }
});
