//! Reading `global/pg_control`, the file that says which cluster a data directory belongs to.
//!
//! Only the system identifier is read: it is the first field of `ControlFileData` in every
//! PostgreSQL version, stored in the byte order of the machine that wrote it, which is this one:
//! pgcairn reads the data directory of a server running beside it. No version-specific layout
//! is needed for it.

use std::fs::File;
use std::io::{ErrorKind as IoErrorKind, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// Where pg_control lives inside a data directory.
pub const CONTROL_FILE: &str = "global/pg_control";

/// The system identifier of the cluster whose data directory is `pgdata`.
pub fn read_system_identifier(pgdata: &Path) -> Result<u64> {
    let path = pgdata.join(CONTROL_FILE);
    let not_a_data_dir = |why: &str| {
        Error::usage(format!(
            "not a PostgreSQL data directory: {} ({why})",
            pgdata.display()
        ))
    };
    let mut file = File::open(&path).map_err(|err| match err.kind() {
        IoErrorKind::NotFound => not_a_data_dir(&format!("{} does not exist", path.display())),
        _ => Error::local_io(err, format_args!("cannot read {}", path.display())),
    })?;
    let mut bytes = [0u8; 8];
    file.read_exact(&mut bytes)
        .map_err(|err| match err.kind() {
            IoErrorKind::UnexpectedEof => {
                not_a_data_dir(&format!("{} is too short", path.display()))
            }
            _ => Error::local_io(err, format_args!("cannot read {}", path.display())),
        })?;
    Ok(u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn reads_the_first_eight_bytes_in_native_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("global")).unwrap();
        let id: u64 = 7_311_234_567_890_123_456;
        let mut content = id.to_ne_bytes().to_vec();
        content.extend([0xAB; 8184]);
        std::fs::write(dir.path().join(CONTROL_FILE), content).unwrap();
        assert_eq!(read_system_identifier(dir.path()).unwrap(), id);
    }

    #[test]
    fn missing_or_short_control_file_is_a_usage_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_system_identifier(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(
            err.to_string().contains("not a PostgreSQL data directory"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");

        std::fs::create_dir(dir.path().join("global")).unwrap();
        std::fs::write(dir.path().join(CONTROL_FILE), [1, 2, 3]).unwrap();
        let err = read_system_identifier(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(err.to_string().contains("too short"), "{err}");
    }
}
