//! backup_label text: `BackupLabel::parse`, and what it promises about what it returns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::pg::label::BackupLabel;
use pgcairn::pg::wal;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(label) = BackupLabel::parse(text) {
        assert!(wal::is_wal_segment_name(&label.start_wal_file));
        assert!(label.start_timeline > 0);
        assert_eq!(
            &label.start_wal_file[..8],
            format!("{:08X}", label.start_timeline)
        );
    }
});
