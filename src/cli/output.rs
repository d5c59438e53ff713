//! Where commands write files for others to read: whole or not at all.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` beside `path` and renames it over `path`, so a reader (a metrics scraper, a
/// web server) never reads half a file; the temporary file goes away if anything fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let local = |e: std::io::Error| Error::local(format!("writing {}: {e}", path.display()));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(local)?;
    file.write_all(bytes).map_err(local)?;
    file.as_file().sync_all().map_err(local)?;
    // Its readers (node_exporter's textfile collector, a web server) run as other users.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(local)?;
    }
    file.persist(path).map_err(|e| local(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new page").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new page");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.html"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o644,
            "readable by the users that serve or scrape it"
        );
    }

    #[test]
    fn a_directory_that_is_not_there_fails_with_the_path_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("report.html");
        let err = write_atomically(&path, b"page").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Local);
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
