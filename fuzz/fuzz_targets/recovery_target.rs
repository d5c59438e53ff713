//! Recovery targets as typed by a user: time, xid, restore point name and LSN. Each accepted
//! value's normalized text must parse back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::pg::target;
use pgcairn::pg::wal::Lsn;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(time) = target::parse_target_time(text) {
        let again = target::parse_target_time(&time.text).expect("normalized time parses");
        assert_eq!(again, time);
        assert!(time.text.ends_with("+00"));
    }
    if let Ok(xid) = target::parse_target_xid(text) {
        assert_eq!(target::parse_target_xid(&xid.text()).ok(), Some(xid));
        assert!(xid.xid >= 3);
    }
    if let Ok(name) = target::parse_target_name(text) {
        assert!(!name.is_empty() && name.len() <= target::MAX_TARGET_NAME_LEN);
        assert!(!name.contains('\0'));
    }
    if let Ok(lsn) = text.parse::<Lsn>() {
        assert_eq!(lsn.to_string().parse::<Lsn>().ok(), Some(lsn));
    }
});
