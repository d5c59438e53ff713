//! archive_command settings as `pgcairn check` reads them (a server setting, written by
//! whoever may ALTER SYSTEM): the reader declines or returns commands whose assignments have
//! shell variable names, and finding a program in them never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgcairn::pg::archive_command::{invocation_of, simple_commands};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(commands) = simple_commands(text) else {
        return;
    };
    for command in &commands {
        for (name, _) in &command.assignments {
            let mut bytes = name.bytes();
            let first = bytes.next().expect("an assignment has a name");
            assert!(first.is_ascii_alphabetic() || first == b'_', "{name:?}");
            assert!(bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{name:?}");
        }
    }
    if let Some(invocation) = invocation_of(&commands, "pgcairn") {
        assert!(invocation.program.ends_with("pgcairn"));
        let _ = invocation.env_var("PGCAIRN_REPO");
    }
});
