//! Reading `global/pg_control`, the file that says which cluster a data directory belongs to.
//!
//! Only the system identifier is read ([`parse_control`]): it is the first field of
//! `ControlFileData` in every PostgreSQL version, stored in the byte order of the machine that
//! wrote it, which is this one: pgcairn reads the data directory of a server running beside it.
//! No version-specific layout is needed for it.

use std::fs::File;
use std::io::{ErrorKind as IoErrorKind, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// Where pg_control lives inside a data directory.
pub const CONTROL_FILE: &str = "global/pg_control";

/// What pgcairn reads from pg_control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlData {
    /// `system_identifier`: set by initdb, kept by copies of the cluster (backups, standbys).
    pub system_identifier: u64,
}

/// Reads pg_control's content (`ControlFileData`, pg_control.h). Only the leading system
/// identifier is read; its byte order is this machine's.
pub fn parse_control(bytes: &[u8]) -> Result<ControlData> {
    let id = bytes.first_chunk::<8>().ok_or_else(|| {
        Error::integrity(format!(
            "pg_control is {} bytes, too short to hold the system identifier",
            bytes.len()
        ))
    })?;
    Ok(ControlData {
        system_identifier: u64::from_ne_bytes(*id),
    })
}

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
    Ok(parse_control(&bytes)?.system_identifier)
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
    fn parses_the_system_identifier_from_bytes() {
        let id: u64 = 7_311_234_567_890_123_456;
        let mut content = id.to_ne_bytes().to_vec();
        assert_eq!(parse_control(&content).unwrap().system_identifier, id);
        content.extend([0xAB; 100]);
        assert_eq!(parse_control(&content).unwrap().system_identifier, id);
        let err = parse_control(&content[..7]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
        assert!(err.to_string().contains("7 bytes"), "{err}");
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
