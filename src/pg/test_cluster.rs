//! Real PostgreSQL clusters for the pg module's tests: initdb, start, psql, stop, and a walk of
//! the data directory through the backup's own rules.
//!
//! Uses the PostgreSQL 15 binaries in /usr/lib/postgresql/15/bin (or `PGCAIRN_TEST_PG_BIN`).
//! PostgreSQL refuses to run as root, so when the tests run as root every command runs as the
//! `postgres` OS user and the cluster's directory belongs to it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::pg::datadir::{Disposition, EntryInfo, dispose};

/// The major version the test binaries are.
pub const MAJOR: u32 = 15;

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway cluster in its own temporary directory, stopped (immediately) and removed on drop.
pub struct Cluster {
    /// The temporary directory: holds `data/`, the socket, the server log, tablespaces.
    pub root: TempDir,
    /// The data directory.
    pub data: PathBuf,
    bin: PathBuf,
    running: bool,
}

fn bin_dir() -> PathBuf {
    let bin = std::env::var_os("PGCAIRN_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
    assert!(
        bin.join("initdb").is_file() && bin.join("postgres").is_file(),
        "these tests need PostgreSQL {MAJOR} server binaries (initdb, pg_ctl, postgres, psql) in {}; \
         install postgresql-{MAJOR} or point PGCAIRN_TEST_PG_BIN at them",
        bin.display()
    );
    bin
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Gives `path` to the postgres OS user when we are root, so the server may use it.
pub fn give_to_postgres(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown postgres {}", path.display());
    }
}

fn command(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn check(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Cluster {
    /// `initdb -k` (data checksums on) into a fresh temporary directory. Not started.
    pub fn init() -> Cluster {
        let bin = bin_dir();
        let root = tempfile::Builder::new()
            .prefix("pgcairn-pg-")
            .tempdir()
            .expect("temporary directory");
        give_to_postgres(root.path());
        let data = root.path().join("data");
        let output = command(&bin.join("initdb"))
            .args(["-k", "-N", "-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        check("initdb", output);
        Cluster {
            root,
            data,
            bin,
            running: false,
        }
    }

    /// Starts the server listening only on a socket in the temporary directory, so it cannot
    /// collide with any other server on the machine.
    pub fn start(&mut self) {
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off",
            self.root.path().display()
        );
        let output = command(&self.bin.join("pg_ctl"))
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-o", &options, "-l"])
            .arg(self.root.path().join("server.log"))
            .arg("start")
            .output()
            .expect("run pg_ctl start");
        check("pg_ctl start", output);
        self.running = true;
    }

    /// Runs SQL through psql in database `postgres`; returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let output = command(&self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-h",
            ])
            .arg(self.root.path())
            .args(["-c", sql])
            .output()
            .expect("run psql");
        check(&format!("psql {sql:?}"), output)
    }

    /// A clean shutdown: the checkpoint writes every page with its checksum.
    pub fn stop(&mut self) {
        self.stop_mode("fast");
    }

    fn stop_mode(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        self.running = false;
        let output = command(&self.bin.join("pg_ctl"))
            .args(["-w", "-m", mode, "-D"])
            .arg(&self.data)
            .arg("stop")
            .output()
            .expect("run pg_ctl stop");
        check("pg_ctl stop", output);
    }

    /// Runs the `postgres` binary itself (e.g. `-C setting`) as the cluster's owner.
    pub fn postgres(&self, args: &[&str]) -> Output {
        command(&self.bin.join("postgres"))
            .args(args)
            .output()
            .expect("run postgres")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let _ = command(&self.bin.join("pg_ctl"))
                .args(["-w", "-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop")
                .output();
        }
    }
}

/// Walks `data` the way a backup does: asks [`dispose`] about each directory's entries and
/// descends, following symlinks (pg_tblspc). Calls `visit` with each entry's path relative to
/// `data`, its disposition and, for kept files, their contents (empty otherwise). Files that
/// vanish mid-walk (a running server's temporary files) are passed by.
pub fn walk(data: &Path, visit: &mut dyn FnMut(&str, Disposition, &[u8])) {
    walk_dir(data, "", visit);
}

fn walk_dir(data: &Path, rel: &str, visit: &mut dyn FnMut(&str, Disposition, &[u8])) {
    let dir = if rel.is_empty() {
        data.to_path_buf()
    } else {
        data.join(rel)
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read data directory") {
        let entry = entry.expect("directory entry");
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        names.push((entry.file_name().into_encoded_bytes(), meta.is_dir()));
    }
    names.sort();
    let infos: Vec<EntryInfo<'_>> = names
        .iter()
        .map(|(name, is_dir)| EntryInfo {
            name,
            is_dir: *is_dir,
        })
        .collect();
    let dispositions = dispose(rel.as_bytes(), &infos, MAJOR);
    assert_eq!(dispositions.len(), infos.len());
    for (info, disposition) in infos.iter().zip(dispositions) {
        let name = String::from_utf8_lossy(info.name);
        let path = if rel.is_empty() {
            name.into_owned()
        } else {
            format!("{rel}/{name}")
        };
        match disposition {
            Disposition::Keep(_) => {
                let Ok(bytes) = std::fs::read(data.join(&path)) else {
                    continue;
                };
                visit(&path, disposition, &bytes);
            }
            Disposition::Descend => {
                visit(&path, disposition, &[]);
                walk_dir(data, &path, visit);
            }
            Disposition::Skip | Disposition::KeepDirEmpty => visit(&path, disposition, &[]),
        }
    }
}
