//! Timeline history files: `parse_history`, then `timeline_at` and `is_on_history` on what it
//! returns, which must agree (the timeline holding an LSN lies on the history at that LSN).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::pg::history;
use pgcairn::pg::wal::Lsn;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(entries) = history::parse_history(text) else {
        return;
    };
    for pair in entries.windows(2) {
        assert!(pair[0].parent_timeline < pair[1].parent_timeline);
        assert!(pair[0].switch_point <= pair[1].switch_point);
    }
    let target = entries
        .last()
        .map_or(1, |e| e.parent_timeline.saturating_add(1));
    let mut probes = vec![Lsn(0), Lsn(u64::MAX)];
    for e in &entries {
        probes.extend([Lsn(e.switch_point.0.saturating_sub(1)), e.switch_point]);
        probes.push(Lsn(e.switch_point.0.saturating_add(1)));
    }
    for lsn in probes {
        let tli = history::timeline_at(&entries, target, lsn);
        assert!(history::is_on_history(&entries, target, tli, lsn));
    }
});
