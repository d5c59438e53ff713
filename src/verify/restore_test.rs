//! `verify --restore-test`: proof that a snapshot restores. The snapshot goes through the
//! restore pipeline (as `pgcairn restore --target-immediate --target-action promote` would)
//! into a private temporary directory; PostgreSQL starts on it, listening only on a Unix socket
//! in that directory; recovery replays the snapshot's own WAL to its consistency point and
//! promotes; then checks read the result: every database's relations, a row (or every page) of
//! every table, amcheck on every btree index. The server is stopped and the directory removed
//! on every way out, errors and interrupts included.
//!
//! Options → plan → execute: [`plan`] settles everything that can be known before anything is
//! written (server programs, the OS user, room, the snapshot's WAL); [`execute`] runs the plan
//! and always returns a report, which says how far the test got and why it stopped.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, NoTls};

use crate::archive::window::WalIndex;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::osuser::{self, OsUser, UserKey};
use crate::pg::recovery::{RecoverySettings, RecoveryTarget, TargetAction};
use crate::repo::IndexedRepository;
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::{PostgresBackup, Snapshot};
use crate::repo::walcat::WalEntry;
use crate::restore::select::{self, Aim, Candidate};
use crate::restore::{self, RestoreProgress, RestoreRequest};

/// How long recovery may take by default: generous, since a big snapshot's WAL can be long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The port in the socket's name (`.s.PGSQL.5432`). The server listens on no TCP port, so the
/// number cannot clash with another server's.
const PORT: u16 = 5432;
/// The longest Unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const SOCKET_PATH_MAX: usize = 107;
/// Names inside the temporary directory.
const DATA_DIR: &str = "data";
const TABLESPACES_DIR: &str = "tablespaces";
const LOG_FILE: &str = "server.log";
const HBA_FILE: &str = "pg_hba.conf";
const IDENT_FILE: &str = "pg_ident.conf";
const EXTERNAL_PID_FILE: &str = "postmaster.external.pid";
const DIR_PREFIX: &str = "pgcairn-restore-test-";
/// Lines of the server log a failed test shows.
const LOG_TAIL_LINES: usize = 20;
/// How long each step of stopping the server may take before the next, harder one.
const FAST_SHUTDOWN_WAIT: Duration = Duration::from_secs(60);
const IMMEDIATE_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// Room the server needs beyond the restored files: the segment promotion starts, the
/// end-of-recovery checkpoint, amcheck's catalogue rows.
const SPARE_SEGMENTS: u64 = 4;
/// Failures listed per relation by verify_heapam; more only repeat the point.
const HEAP_FAILURES_PER_RELATION: i64 = 10;

/// How much the checks read, each level including the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckLevel {
    /// Every connectable database's relations and pages are counted, and one row of every
    /// table (and TOAST table, materialized view, sequence) is read: each relation opens.
    Quick,
    /// Also `bt_index_check` on every btree index (every index page is read), when the amcheck
    /// extension is installed with the server.
    Amcheck,
    /// Also every page of every table (`count(*)`), `verify_heapam` on every heap (PostgreSQL 14
    /// and later), and `bt_index_check` with `heapallindexed`: every heap row has its index
    /// entries. Reads each table several times.
    Full,
}

impl CheckLevel {
    pub fn name(self) -> &'static str {
        match self {
            CheckLevel::Quick => "quick",
            CheckLevel::Amcheck => "amcheck",
            CheckLevel::Full => "full",
        }
    }
}

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct RestoreTestOptions {
    /// `--pg-bindir`: the only place to look for the server programs.
    pub bindir: Option<PathBuf>,
    /// `--restore-test-user`: the OS user the server runs as when pgcairn runs as root.
    pub server_user: Option<String>,
    /// `--restore-test-role`: the restored cluster's superuser to connect as.
    pub role: Option<String>,
    /// Where the temporary directory is made.
    pub parent_dir: PathBuf,
    /// How long recovery may take.
    pub timeout: Duration,
    pub check: CheckLevel,
    /// Keep the temporary directory (with the server stopped) for inspection.
    pub keep: bool,
}

// ---------------------------------------------------------------------------------------------
// The server programs

/// A directory holding `postgres` of the major version a snapshot needs.
#[derive(Clone, Debug)]
pub struct ServerBinaries {
    pub bindir: PathBuf,
    /// As `postgres --version` says, e.g. `15.18`.
    pub version: String,
    pub major: u32,
}

impl ServerBinaries {
    fn postgres(&self) -> PathBuf {
        self.bindir.join("postgres")
    }
}

/// The major version and version of `postgres --version`'s output, e.g.
/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` or `postgres (PostgreSQL) 18beta1`.
pub fn parse_server_version(text: &str) -> Option<(u32, String)> {
    let (_, rest) = text.trim().split_once("(PostgreSQL) ")?;
    let version = rest.split_whitespace().next()?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    Some((digits.parse().ok()?, version.to_string()))
}

/// The server programs of `major` in `dir`, or why they are not there.
fn probe(dir: &Path, major: u32) -> std::result::Result<ServerBinaries, String> {
    let postgres = dir.join("postgres");
    if !postgres.is_file() {
        return Err(if dir.is_dir() {
            "has no postgres program".to_string()
        } else {
            "no such directory".to_string()
        });
    }
    // `--version` is answered before the server's refusal to run as root.
    let out = Command::new(&postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", postgres.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --version failed ({})",
            postgres.display(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (found, version) = parse_server_version(&text)
        .ok_or_else(|| format!("unexpected `postgres --version` output {:?}", text.trim()))?;
    if found != major {
        return Err(format!("holds PostgreSQL {version}, not {major}"));
    }
    Ok(ServerBinaries {
        bindir: dir.to_path_buf(),
        version,
        major,
    })
}

/// `pg_config --bindir` of the pg_config on PATH.
fn pg_config_bindir() -> std::result::Result<PathBuf, String> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => "no pg_config on PATH".to_string(),
            _ => format!("cannot run pg_config: {e}"),
        })?;
    if !out.status.success() {
        return Err(format!("pg_config --bindir failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(text.trim()))
}

/// Finds the server programs of `major`: in `explicit` only, when given; else where
/// `pg_config --bindir` says, when that is `major`; else where Debian's and the PGDG Red Hat
/// packages put them. The error lists every place tried and why each did not do.
pub fn find_server(major: u32, explicit: Option<&Path>) -> Result<ServerBinaries> {
    if let Some(dir) = explicit {
        return probe(dir, major).map_err(|why| {
            Error::usage(format!(
                "--pg-bindir {}: {why} (the snapshot is of PostgreSQL {major})",
                dir.display()
            ))
        });
    }
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    match pg_config_bindir() {
        Ok(dir) => candidates.push(("pg_config --bindir", dir)),
        Err(why) => tried.push(format!("pg_config: {why}")),
    }
    candidates.push((
        "Debian",
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
    ));
    candidates.push(("PGDG", PathBuf::from(format!("/usr/pgsql-{major}/bin"))));
    for (how, dir) in candidates {
        match probe(&dir, major) {
            Ok(found) => return Ok(found),
            Err(why) => tried.push(format!("{} ({how}): {why}", dir.display())),
        }
    }
    Err(Error::usage(format!(
        "no PostgreSQL {major} server programs found (the snapshot is of PostgreSQL {major}); \
         tried {}; install them or give --pg-bindir DIR",
        tried.join("; ")
    )))
}

// ---------------------------------------------------------------------------------------------
// Who the server runs as

/// The OS user the server runs as, and whether it is another than pgcairn's own.
#[derive(Clone, Debug)]
pub struct ServerUser {
    pub user: OsUser,
    /// pgcairn runs as root: the files are given to `user` and the server started as it.
    pub switch: bool,
}

/// PostgreSQL refuses to run as root: as root, the server runs as `requested` (default
/// `postgres`); otherwise as pgcairn's own user, the only one it can run a process as.
fn server_user(requested: Option<&str>) -> Result<ServerUser> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        let name = requested.unwrap_or("postgres");
        let c_name =
            CString::new(name).map_err(|_| Error::usage(format!("invalid user name {name:?}")))?;
        let user = osuser::lookup(UserKey::Name(&c_name)).ok_or_else(|| {
            Error::usage(format!(
                "pgcairn runs as root, and PostgreSQL refuses to: the restore test runs the \
                 server as an unprivileged OS user, and there is no user {name:?}; name one with \
                 --restore-test-user USER"
            ))
        })?;
        if user.uid == 0 {
            return Err(Error::usage(format!(
                "--restore-test-user {name}: the user is root (uid 0), and PostgreSQL refuses to \
                 run as root"
            )));
        }
        return Ok(ServerUser { user, switch: true });
    }
    let me = osuser::lookup(UserKey::Uid(euid)).unwrap_or_else(|| OsUser {
        name: euid.to_string(),
        uid: euid,
        gid: {
            // SAFETY: getegid has no preconditions and cannot fail.
            unsafe { libc::getegid() }
        },
    });
    if let Some(name) = requested.filter(|n| *n != me.name) {
        return Err(Error::usage(format!(
            "--restore-test-user {name}: only root can run the server as another user (pgcairn \
             runs as {})",
            me.name
        )));
    }
    Ok(ServerUser {
        user: me,
        switch: false,
    })
}

/// The roles to try connecting as: the one given, else `postgres` (initdb's usual superuser)
/// and the server's OS user (initdb's default).
fn role_candidates(requested: Option<&str>, server_user: &OsUser) -> Vec<String> {
    match requested {
        Some(role) => vec![role.to_string()],
        None => {
            let mut roles = vec!["postgres".to_string()];
            if server_user.name != "postgres" {
                roles.push(server_user.name.clone());
            }
            roles
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The plan

/// Everything the test needs, settled before anything is written.
pub struct RestoreTestPlan<'a> {
    pub id: SnapshotId,
    pub snapshot: &'a Snapshot,
    pub pg: &'a PostgresBackup,
    pub server: ServerBinaries,
    pub user: ServerUser,
    pub roles: Vec<String>,
    /// Absolute; the temporary directory is made in it.
    pub parent_dir: PathBuf,
    /// Segments the snapshot lacks (its `wal_missing`), from the archive: pgcairn puts them in
    /// the restored pg_wal itself, so the server needs no access to the repository.
    pub wal_from_archive: Vec<WalEntry>,
    pub check: CheckLevel,
    pub timeout: Duration,
    pub keep: bool,
}

/// Room on the file system holding `dir`, for an unprivileged user.
fn free_bytes(dir: &Path) -> Result<u64> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::usage(format!("{}: path holds a NUL byte", dir.display())))?;
    // SAFETY: a zeroed statvfs is a valid value for statvfs to overwrite.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat a valid statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(Error::local_io(
            io::Error::last_os_error(),
            format!("reading the free space of {}", dir.display()),
        ));
    }
    Ok(stat.f_bavail * stat.f_frsize)
}

/// The length of the server's socket path under a temporary directory made in `parent`.
fn socket_path_len(parent: &Path) -> usize {
    // pgcairn-restore-test-<8 hex>-<8 hex>/.s.PGSQL.<port>
    let dir_name = DIR_PREFIX.len() + 8 + 1 + 8;
    parent.as_os_str().len() + 1 + dir_name + format!("/.s.PGSQL.{PORT}").len()
}

/// Checks what can be checked before anything is written: the snapshot restores from what the
/// repository holds, the server programs of its major are here, there is a user to run them
/// as, and `parent_dir` has room and a short enough path for the server's socket.
pub fn plan<'a>(
    id: SnapshotId,
    snapshot: &'a Snapshot,
    archive: &WalIndex,
    options: &RestoreTestOptions,
) -> Result<RestoreTestPlan<'a>> {
    let pg = snapshot.postgres.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "snapshot {} is not of a PostgreSQL cluster; nothing to restore",
            id.short()
        ))
    })?;
    let candidate = Candidate { id, snapshot, pg };
    select::check_chosen(&candidate, Aim::Newest, archive)?;
    let wal_from_archive: Vec<WalEntry> = pg
        .wal_missing
        .iter()
        .filter_map(|name| archive.get(pg.system_identifier, name).cloned())
        .collect();

    let major = pg.server_version_num / 10000;
    let server = find_server(major, options.bindir.as_deref())?;
    let user = server_user(options.server_user.as_deref())?;
    let roles = role_candidates(options.role.as_deref(), &user.user);

    let parent_dir = std::path::absolute(&options.parent_dir).map_err(|e| {
        Error::usage(format!(
            "restore test directory {}: {e}",
            options.parent_dir.display()
        ))
    })?;
    if !parent_dir.is_dir() {
        return Err(Error::usage(format!(
            "restore test directory {}: not a directory",
            parent_dir.display()
        )));
    }
    if parent_dir.as_os_str().as_bytes().contains(&b'"') {
        // The socket directory is given to the server as a double-quoted list element.
        return Err(Error::usage(format!(
            "restore test directory {}: a path with a double quote cannot hold the server's \
             socket; choose another with --restore-test-dir",
            parent_dir.display()
        )));
    }
    if socket_path_len(&parent_dir) > SOCKET_PATH_MAX {
        return Err(Error::usage(format!(
            "restore test directory {}: too long a path for the server's Unix socket (at most \
             {SOCKET_PATH_MAX} bytes with the socket's name); choose a shorter one with \
             --restore-test-dir",
            parent_dir.display()
        )));
    }
    let needed = snapshot.summary.logical_bytes + SPARE_SEGMENTS * pg.wal_segment_size;
    let free = free_bytes(&parent_dir)?;
    if free < needed {
        return Err(Error::local(format!(
            "restore test directory {}: the restored snapshot needs about {} MiB and the file \
             system has {} MiB free; choose another with --restore-test-dir",
            parent_dir.display(),
            needed.div_ceil(1 << 20),
            free >> 20
        )));
    }
    Ok(RestoreTestPlan {
        id,
        snapshot,
        pg,
        server,
        user,
        roles,
        parent_dir,
        wal_from_archive,
        check: options.check,
        timeout: options.timeout,
        keep: options.keep,
    })
}

// ---------------------------------------------------------------------------------------------
// The report

/// Where a test stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Making the temporary directory.
    Prepare,
    /// Restoring the snapshot into it.
    Restore,
    /// Starting the server and waiting until it is consistent and promoted.
    Recovery,
    /// Reading the restored cluster.
    Checks,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Restore => "restore",
            Phase::Recovery => "recovery",
            Phase::Checks => "checks",
        }
    }
}

/// What stopped a test before its checks were done.
#[derive(Debug)]
pub struct Stopped {
    pub phase: Phase,
    pub error: Error,
}

fn stopped(phase: Phase) -> impl Fn(Error) -> Stopped {
    move |error| Stopped { phase, error }
}

/// A test failure: the server's own words, and where.
fn failed(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::RestoreTestFailed, message)
}

/// What the server said (with its SQLSTATE), or why there was no server to say anything: the
/// client's error and its causes ("error connecting to server" alone names no reason).
fn pg_message(err: postgres::Error) -> String {
    if err.as_db_error().is_some() {
        return Error::from(err).message().to_string();
    }
    let mut message = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(e) = cause {
        message.push_str(&format!(": {e}"));
        cause = e.source();
    }
    message
}

pub struct RestoreOutcome {
    pub files: usize,
    pub bytes: u64,
    /// Segments taken from the archive because the snapshot lacks them.
    pub wal_from_archive: Vec<String>,
    pub elapsed: Duration,
}

/// How the server was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGINT: sessions ended, a shutdown checkpoint.
    Fast,
    /// SIGQUIT, after a fast shutdown did not finish in time.
    Immediate,
    /// SIGKILL, the last resort.
    Killed,
    /// It had stopped by itself.
    AlreadyStopped,
}

impl Shutdown {
    pub fn name(self) -> &'static str {
        match self {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
            Shutdown::Killed => "killed",
            Shutdown::AlreadyStopped => "already_stopped",
        }
    }
}

/// Whether amcheck ran, and how it went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amcheck {
    /// `--restore-test-check quick`.
    Skipped,
    /// The extension is not installed with this server (`pg_available_extensions`).
    Unavailable,
    Passed,
    Failed,
}

impl Amcheck {
    pub fn name(self) -> &'static str {
        match self {
            Amcheck::Skipped => "skipped",
            Amcheck::Unavailable => "unavailable",
            Amcheck::Passed => "passed",
            Amcheck::Failed => "failed",
        }
    }
}

/// What the checks found in one database.
#[derive(Clone, Debug, Default)]
pub struct DatabaseReport {
    pub name: String,
    /// Relations with storage: tables, indexes, TOAST tables, materialized views, sequences
    /// (the shared catalogues are counted in the first database only).
    pub relations: u64,
    /// Their main forks' size in pages.
    pub pages: u64,
    /// Tables, TOAST tables, materialized views and sequences read.
    pub tables_read: u64,
    /// Btree indexes amcheck passed.
    pub indexes_checked: u64,
    /// Heaps verify_heapam passed (full).
    pub heaps_checked: u64,
}

/// One check that failed.
#[derive(Clone, Debug)]
pub struct CheckFailure {
    /// None for a server-wide finding.
    pub database: Option<String>,
    /// Schema-qualified and quoted as SQL needs it; None for a database-wide step.
    pub relation: Option<String>,
    /// `connect`, `list`, `read`, `amcheck`, `verify_heapam`, `checksums`.
    pub check: &'static str,
    pub message: String,
}

pub struct ChecksReport {
    pub level: CheckLevel,
    pub server_version: String,
    pub data_checksums: bool,
    pub databases: Vec<DatabaseReport>,
    /// Databases that take no connections (`datallowconn` off, e.g. template0).
    pub skipped_databases: Vec<String>,
    pub amcheck: Amcheck,
    /// Pages that failed their checksum, as the server counted them (pg_stat_database).
    pub checksum_failures: i64,
    pub failures: Vec<CheckFailure>,
    pub elapsed: Duration,
}

impl ChecksReport {
    pub fn total(&self, field: impl Fn(&DatabaseReport) -> u64) -> u64 {
        self.databases.iter().map(field).sum()
    }
}

/// What a test did and found. It passed when nothing stopped it and no check failed.
pub struct RestoreTestReport {
    pub directory: Option<PathBuf>,
    /// The directory was kept (`--restore-test-keep`).
    pub kept: bool,
    pub restore: Option<RestoreOutcome>,
    /// From starting the server until it was consistent, promoted and took connections.
    pub recovery: Option<Duration>,
    /// The role the checks ran as.
    pub role: Option<String>,
    pub checks: Option<ChecksReport>,
    pub shutdown: Option<Shutdown>,
    pub stopped: Option<Stopped>,
    /// The end of the server's log, when the test failed.
    pub log_tail: Vec<String>,
    /// Removing the temporary directory failed (the test's result stands).
    pub cleanup_error: Option<String>,
    pub elapsed: Duration,
}

impl RestoreTestReport {
    pub fn passed(&self) -> bool {
        self.stopped.is_none() && self.checks.as_ref().is_some_and(|c| c.failures.is_empty())
    }
}

/// What a running test shows.
pub enum Step<'a> {
    Restoring(&'a RestoreProgress<'a>),
    Recovering {
        elapsed: Duration,
        /// The server log's last line.
        log_line: String,
    },
    Checking {
        database: &'a str,
        done: usize,
        total: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// The temporary directory

/// The temporary directory: removed when dropped, unless [`Workspace::finish`] keeps it.
struct Workspace {
    path: PathBuf,
    remove_on_drop: bool,
}

impl Workspace {
    fn create(parent: &Path, id: &SnapshotId) -> Result<Workspace> {
        loop {
            let path = parent.join(format!(
                "{DIR_PREFIX}{}-{:08x}",
                id.short(),
                rand::random::<u32>()
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(Workspace {
                        path,
                        remove_on_drop: true,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io_at("creating", &path)(e)),
            }
        }
    }

    fn data(&self) -> PathBuf {
        self.path.join(DATA_DIR)
    }

    fn log(&self) -> PathBuf {
        self.path.join(LOG_FILE)
    }

    /// Keeps the directory, or removes it now (reporting a failure, which Drop cannot).
    fn finish(mut self, keep: bool) -> Result<()> {
        self.remove_on_drop = false;
        if keep {
            return Ok(());
        }
        fs::remove_dir_all(&self.path).map_err(Error::io_at("removing", &self.path))
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Gives everything under `dir` (and `dir`) to `user`, not following symlinks.
fn chown_tree(dir: &Path, user: &OsUser) -> Result<()> {
    std::os::unix::fs::lchown(dir, Some(user.uid), Some(user.gid))
        .map_err(Error::io_at("changing the owner of", dir))?;
    for entry in fs::read_dir(dir).map_err(Error::io_at("reading", dir))? {
        let entry = entry.map_err(Error::io_at("reading", dir))?;
        let path = entry.path();
        if entry
            .file_type()
            .map_err(Error::io_at("reading", &path))?
            .is_dir()
        {
            chown_tree(&path, user)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))
                .map_err(Error::io_at("changing the owner of", &path))?;
        }
    }
    Ok(())
}

/// The last `lines` lines of the log (read from its last 16 KiB).
fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 << 10);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    // Read from the middle of the file, the first line is only the end of one.
    let skip = usize::from(start > 0);
    let all: Vec<&str> = text
        .lines()
        .skip(skip)
        .filter(|l| !l.trim().is_empty())
        .collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The server

/// How the restored server is configured: recovery stops as soon as the snapshot is
/// consistent and promotes, so that the checks can create amcheck and the end of recovery is
/// tested too. `restore_command` is `false` (every file "not in the archive"): the server
/// replays what is in pg_wal, the snapshot's own WAL plus any segment pgcairn copied there
/// from the archive, so it needs neither the repository nor its password. Timeline `current`
/// keeps recovery on the snapshot's timeline, whatever the archive holds later.
fn recovery_settings() -> RecoverySettings {
    RecoverySettings {
        restore_command: "false".to_string(),
        target: Some(RecoveryTarget::Immediate),
        target_action: Some(TargetAction::Promote),
        target_timeline: Some("current".to_string()),
        archive_mode_off: true,
    }
}

/// Settings given with `-c`, which win over every configuration file, so that the copy starts
/// here whatever the production host's configuration said, stays private, and cannot touch
/// anything of the original's:
fn server_settings(major: u32, workspace: &Path) -> Vec<(&'static str, String)> {
    let at = |name: &str| workspace.join(name).to_string_lossy().into_owned();
    let mut settings = vec![
        // Its own data directory, whatever a restored postgresql.conf says; our access rules.
        ("data_directory", at(DATA_DIR)),
        ("hba_file", at(HBA_FILE)),
        ("ident_file", at(IDENT_FILE)),
        // Only a socket in the private directory; no TCP; the pid file a production
        // configuration may name (the server cannot be told to write none) inside it too.
        ("listen_addresses", String::new()),
        ("port", PORT.to_string()),
        (
            "unix_socket_directories",
            format!("\"{}\"", workspace.display()),
        ),
        ("unix_socket_group", String::new()),
        ("unix_socket_permissions", "0700".to_string()),
        ("external_pid_file", at(EXTERNAL_PID_FILE)),
        ("ssl", "off".to_string()),
        // Small, and nothing this host may lack: huge pages, preloaded libraries, locales,
        // time zones.
        ("shared_buffers", "32MB".to_string()),
        ("huge_pages", "off".to_string()),
        ("max_connections", "10".to_string()),
        ("superuser_reserved_connections", "3".to_string()),
        ("maintenance_work_mem", "64MB".to_string()),
        ("shared_preload_libraries", String::new()),
        ("session_preload_libraries", String::new()),
        ("local_preload_libraries", String::new()),
        ("lc_messages", "C".to_string()),
        ("lc_monetary", "C".to_string()),
        ("lc_numeric", "C".to_string()),
        ("lc_time", "C".to_string()),
        ("timezone", "UTC".to_string()),
        ("log_timezone", "UTC".to_string()),
        // No connections during recovery: then the production's max_connections and friends
        // need not be matched (a hot standby must match them), and the wait ends at promotion.
        ("hot_standby", "off".to_string()),
        // Never archive into the original's archive; never wait for its standbys.
        ("archive_mode", "off".to_string()),
        ("synchronous_standby_names", String::new()),
        // A throwaway copy: its writes need not reach the disk, nothing else should run in it,
        // and a crash must end the test rather than be recovered from.
        ("fsync", "off".to_string()),
        ("autovacuum", "off".to_string()),
        ("restart_after_crash", "off".to_string()),
        // A bad page must fail the read, not be passed over or zeroed.
        ("ignore_checksum_failure", "off".to_string()),
        ("zero_damaged_pages", "off".to_string()),
        // Everything to stderr, which is the log file in the temporary directory.
        ("logging_collector", "off".to_string()),
        ("log_destination", "stderr".to_string()),
        ("log_min_messages", "warning".to_string()),
        ("log_line_prefix", "%m [%p] ".to_string()),
    ];
    if major < 15 {
        // Debian points it at /var/run/postgresql/...: shared with the original.
        settings.push(("stats_temp_directory", "pg_stat_tmp".to_string()));
    }
    if major >= 16 {
        settings.push(("reserved_connections", "0".to_string()));
    }
    if major >= 17 {
        // A login event trigger could refuse or disturb the checks' sessions.
        settings.push(("event_triggers", "off".to_string()));
    }
    if major >= 18 {
        // io_uring may be configured in production and missing from this build.
        settings.push(("io_method", "worker".to_string()));
    }
    settings
}

/// Session settings the checks connect with: per-database and per-role settings (ALTER
/// DATABASE/ROLE ... SET) rank above the server's command line, but not above these.
fn session_options(major: u32) -> String {
    let mut options = vec![
        "statement_timeout=0",
        "lock_timeout=0",
        "idle_in_transaction_session_timeout=0",
        "default_transaction_read_only=off",
    ];
    if major >= 14 {
        options.push("idle_session_timeout=0");
    }
    if major >= 17 {
        options.push("transaction_timeout=0");
    }
    options
        .iter()
        .map(|o| format!("-c {o}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The files the server needs besides the data directory: access only over the private
/// socket, and a postgresql.conf when the snapshot has none (Debian keeps it in /etc).
fn write_server_files(workspace: &Path) -> Result<()> {
    let write = |path: PathBuf, text: &str| {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(Error::io_at("writing", &path))
    };
    write(
        workspace.join(HBA_FILE),
        "# pgcairn verify --restore-test: the socket is in a directory only the server's \
         user can enter\nlocal all all trust\n",
    )?;
    write(
        workspace.join(IDENT_FILE),
        "# pgcairn verify --restore-test: no user name maps\n",
    )?;
    let conf = workspace.join(DATA_DIR).join("postgresql.conf");
    if !conf.exists() {
        write(
            conf,
            "# pgcairn verify --restore-test: the snapshot has no postgresql.conf (it lived \
             outside the data directory); the settings are given on the command line\n",
        )?;
    }
    Ok(())
}

/// The server, run as a child process in pgcairn's process group (a Ctrl-C on the terminal
/// reaches it too and makes it shut down, should pgcairn be killed by a second one). Shared
/// between the thread running the test and the one watching for interrupts; reaping and
/// signalling happen under the lock, so a signal never reaches a reused pid.
struct Server {
    child: Mutex<Option<Child>>,
}

impl Server {
    fn start(plan: &RestoreTestPlan, workspace: &Workspace) -> Result<Server> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(workspace.log())
            .map_err(Error::io_at("opening", &workspace.log()))?;
        let log_err = log
            .try_clone()
            .map_err(Error::io_at("opening", &workspace.log()))?;
        let program = plan.server.postgres();
        let mut cmd = Command::new(&program);
        cmd.arg("-D").arg(workspace.data());
        for (name, value) in server_settings(plan.server.major, &workspace.path) {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        // The repository's password must not reach the server's environment.
        for (name, _) in std::env::vars_os() {
            if name.as_bytes().starts_with(b"PGCAIRN_") {
                cmd.env_remove(name);
            }
        }
        cmd.current_dir(&workspace.path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if plan.user.switch {
            // std drops the supplementary groups when it changes the uid.
            cmd.uid(plan.user.user.uid).gid(plan.user.user.gid);
        }
        let child = cmd
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", program.display())))?;
        Ok(Server {
            child: Mutex::new(Some(child)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How the server ended, if it has stopped by itself.
    fn exited(&self) -> Option<String> {
        let mut slot = self.lock();
        let status = slot.as_mut()?.try_wait();
        match status {
            Ok(Some(status)) => {
                *slot = None;
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(e) => Some(format!("cannot be waited for: {e}")),
        }
    }

    /// Fast shutdown; an immediate one if that takes too long; SIGKILL as the last resort.
    fn stop(&self) -> Shutdown {
        let mut slot = self.lock();
        let Some(mut child) = slot.take() else {
            return Shutdown::AlreadyStopped;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return Shutdown::AlreadyStopped;
        }
        let pid = child.id() as libc::pid_t;
        let steps = [
            (libc::SIGINT, FAST_SHUTDOWN_WAIT, Shutdown::Fast),
            (libc::SIGQUIT, IMMEDIATE_SHUTDOWN_WAIT, Shutdown::Immediate),
        ];
        for (signal, wait, outcome) in steps {
            // SAFETY: kill has no memory-safety preconditions; pid is our child, not reaped.
            unsafe { libc::kill(pid, signal) };
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                if let Ok(Some(_)) | Err(_) = child.try_wait() {
                    return outcome;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Shutdown::Killed
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `work` while another thread stops the server as soon as an interrupt arrives: a
/// running query or a connection attempt then fails at once, instead of holding up the
/// interrupt until it ends.
fn with_interrupt_watch<T: Send>(
    server: &Server,
    interrupted: &AtomicBool,
    work: impl FnOnce() -> T + Send,
) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if interrupted.load(Ordering::Relaxed) {
                    server.stop();
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}

// ---------------------------------------------------------------------------------------------
// Connecting

/// How the checks reach the server.
struct Connector<'a> {
    socket_dir: &'a Path,
    options: String,
}

impl Connector<'_> {
    fn connect(&self, role: &str, database: &str) -> std::result::Result<Client, postgres::Error> {
        postgres::Config::new()
            .host_path(self.socket_dir)
            .port(PORT)
            .user(role)
            .dbname(database)
            .application_name("pgcairn verify --restore-test")
            .options(&self.options)
            .connect_timeout(Duration::from_secs(10))
            .connect(NoTls)
    }
}

/// A connection made during recovery, or why there is none yet.
enum Attempt {
    Connected {
        /// Boxed: a client is large beside the other variants.
        client: Box<Client>,
        role: String,
    },
    /// Not up yet (no socket, or still recovering); the reason, for a timeout's message.
    NotYet(String),
    /// Up, but none of the roles or databases tried exists.
    Refused(Error),
}

/// The databases every cluster has but a DBA may have dropped.
const FIRST_DATABASES: [&str; 2] = ["postgres", "template1"];

fn attempt(connector: &Connector, roles: &[String]) -> Attempt {
    let mut missing_roles = Vec::new();
    for role in roles {
        for database in FIRST_DATABASES {
            match connector.connect(role, database) {
                Ok(client) => {
                    return Attempt::Connected {
                        client: Box::new(client),
                        role: role.clone(),
                    };
                }
                Err(e) => match e.code() {
                    Some(code) if *code == SqlState::INVALID_CATALOG_NAME => continue,
                    Some(code) if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                        missing_roles.push(role.as_str());
                        break;
                    }
                    _ => return Attempt::NotYet(pg_message(e)),
                },
            }
        }
    }
    if missing_roles.len() == roles.len() {
        Attempt::Refused(failed(format!(
            "the restored cluster has no role {}; name its superuser with --restore-test-role",
            missing_roles.join(" or ")
        )))
    } else {
        Attempt::Refused(failed(format!(
            "the restored cluster has neither a database {}; the checks have nowhere to start",
            FIRST_DATABASES.join(" nor ")
        )))
    }
}

/// Waits until the server has recovered to consistency, promoted and takes connections, and
/// returns a connection as a superuser.
fn wait_until_promoted(
    server: &Server,
    plan: &RestoreTestPlan,
    connector: &Connector,
    workspace: &Workspace,
    interrupted: &AtomicBool,
    on_progress: &(dyn Fn(Step) + Sync),
) -> Result<(Client, String)> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        if interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        if let Some(status) = server.exited() {
            return Err(failed(format!(
                "the server stopped ({status}) before the snapshot was consistent; its log \
                 says why"
            )));
        }
        let why_not = match attempt(connector, &plan.roles) {
            Attempt::Connected { mut client, role } => {
                let state = client.query_one(
                    "SELECT pg_is_in_recovery(), \
                     (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
                    &[],
                );
                match state.map(|row| (row.get(0), row.get(1))) {
                    Ok((false, Some(true))) => return Ok((*client, role)),
                    Ok((_, superuser)) if superuser != Some(true) => {
                        return Err(failed(format!(
                            "role {role} of the restored cluster is not a superuser; name one \
                             with --restore-test-role"
                        )));
                    }
                    Ok(_) => "still in recovery".to_string(),
                    // The server going away: the next round sees it exit.
                    Err(e) => pg_message(e),
                }
            }
            Attempt::NotYet(why) => why,
            Attempt::Refused(e) => return Err(e),
        };
        if started.elapsed() >= plan.timeout {
            return Err(failed(format!(
                "the server was not consistent and promoted within {} s (--restore-test-timeout); \
                 last connection attempt: {why_not}",
                plan.timeout.as_secs()
            )));
        }
        on_progress(Step::Recovering {
            elapsed: started.elapsed(),
            log_line: log_tail(&workspace.log(), 1).pop().unwrap_or_default(),
        });
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------
// The checks

/// One relation with storage, as the checks see it.
struct Relation {
    oid: u32,
    /// `schema.name`, quoted for SQL.
    name: String,
    bytes: i64,
    /// A table, TOAST table, populated materialized view or sequence.
    readable: bool,
    /// A heap that verify_heapam can check.
    heap: bool,
    /// A valid btree index.
    btree: bool,
}

/// Relations with storage, except other sessions' temporary ones (gone with the restart, though
/// their catalogue rows may linger); shared catalogues only when `with_shared`. Foreign and
/// partitioned tables have no storage to read.
const RELATIONS_SQL: &str = "\
SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
       pg_relation_size(c.oid), \
       c.relkind IN ('r', 't', 'S') OR (c.relkind = 'm' AND c.relispopulated), \
       c.relkind IN ('r', 't', 'm') AND coalesce(am.amname = 'heap', false), \
       c.relkind = 'i' AND coalesce(am.amname = 'btree' AND i.indisvalid AND i.indisready, false) \
FROM pg_class c \
JOIN pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_am am ON am.oid = c.relam \
LEFT JOIN pg_index i ON i.indexrelid = c.oid \
WHERE c.relkind IN ('r', 'i', 't', 'm', 'S') AND c.relpersistence <> 't' \
  AND (NOT c.relisshared OR $1) \
ORDER BY n.nspname, c.relname";

/// amcheck in one database: the schema it is in (quoted), and whether it has verify_heapam.
struct AmcheckFunctions {
    schema: String,
    verify_heapam: bool,
}

/// Creates amcheck (the copy is thrown away) or brings an old installation up to date, so that
/// `heapallindexed` and verify_heapam are there.
fn install_amcheck(client: &mut Client) -> std::result::Result<AmcheckFunctions, postgres::Error> {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck; ALTER EXTENSION amcheck UPDATE")?;
    let row = client.query_one(
        "SELECT quote_ident(n.nspname), \
                to_regproc(quote_ident(n.nspname) || '.verify_heapam') IS NOT NULL \
         FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'amcheck'",
        &[],
    )?;
    Ok(AmcheckFunctions {
        schema: row.get(0),
        verify_heapam: row.get(1),
    })
}

/// The checks of one run, and what they found.
struct Checker<'a> {
    level: CheckLevel,
    interrupted: &'a AtomicBool,
    block_size: i64,
    amcheck_available: bool,
    failures: Vec<CheckFailure>,
}

impl Checker<'_> {
    fn fail(
        &mut self,
        database: Option<&str>,
        relation: Option<&str>,
        check: &'static str,
        message: String,
    ) {
        self.failures.push(CheckFailure {
            database: database.map(str::to_string),
            relation: relation.map(str::to_string),
            check,
            message,
        });
    }

    /// What a failed statement means: an interrupt or a lost server stops the checks; anything
    /// else is a finding, recorded, and the checks go on.
    fn outcome(
        &mut self,
        client: &Client,
        err: postgres::Error,
        database: &str,
        relation: Option<&str>,
        check: &'static str,
    ) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        let message = pg_message(err);
        if client.is_closed() {
            return Err(failed(format!(
                "the connection to the server was lost during the checks ({message}); its log \
                 says why"
            )));
        }
        self.fail(Some(database), relation, check, message);
        Ok(())
    }

    fn check_database(
        &mut self,
        client: &mut Client,
        database: &str,
        with_shared: bool,
    ) -> Result<DatabaseReport> {
        let mut report = DatabaseReport {
            name: database.to_string(),
            ..DatabaseReport::default()
        };
        let rows = match client.query(RELATIONS_SQL, &[&with_shared]) {
            Ok(rows) => rows,
            Err(e) => {
                self.outcome(client, e, database, None, "list")?;
                return Ok(report);
            }
        };
        let relations: Vec<Relation> = rows
            .iter()
            .map(|row| Relation {
                oid: row.get(0),
                name: row.get(1),
                bytes: row.get(2),
                readable: row.get(3),
                heap: row.get(4),
                btree: row.get(5),
            })
            .collect();
        report.relations = relations.len() as u64;
        report.pages = relations
            .iter()
            .map(|r| (r.bytes / self.block_size) as u64)
            .sum();

        for relation in relations.iter().filter(|r| r.readable) {
            self.check_interrupt()?;
            // Quick reads the first row: the relation opens and its first pages read. Full
            // reads every page, so every page's checksum is verified.
            let sql = match self.level {
                CheckLevel::Full => format!("SELECT count(*) FROM {}", relation.name),
                _ => format!("SELECT FROM {} LIMIT 1", relation.name),
            };
            match client.batch_execute(&sql) {
                Ok(()) => report.tables_read += 1,
                Err(e) => self.outcome(client, e, database, Some(&relation.name), "read")?,
            }
        }

        if self.level == CheckLevel::Quick || !self.amcheck_available {
            return Ok(report);
        }
        let functions = match install_amcheck(client) {
            Ok(f) => f,
            Err(e) => {
                self.outcome(client, e, database, None, "amcheck")?;
                return Ok(report);
            }
        };
        let full = self.level == CheckLevel::Full;
        if full && functions.verify_heapam {
            let sql = format!(
                "SELECT blkno, offnum, msg FROM {}.verify_heapam($1::oid::regclass, \
                 on_error_stop => false) LIMIT {HEAP_FAILURES_PER_RELATION}",
                functions.schema
            );
            for relation in relations.iter().filter(|r| r.heap) {
                self.check_interrupt()?;
                match client.query(&sql, &[&relation.oid]) {
                    Ok(rows) if rows.is_empty() => report.heaps_checked += 1,
                    Ok(rows) => {
                        for row in rows {
                            let (block, offset, message): (i64, Option<i32>, String) =
                                (row.get(0), row.get(1), row.get(2));
                            let place = match offset {
                                Some(offset) => format!("block {block}, item {offset}"),
                                None => format!("block {block}"),
                            };
                            self.fail(
                                Some(database),
                                Some(&relation.name),
                                "verify_heapam",
                                format!("{place}: {message}"),
                            );
                        }
                    }
                    Err(e) => {
                        self.outcome(client, e, database, Some(&relation.name), "verify_heapam")?
                    }
                }
            }
        }
        let sql = format!(
            "SELECT {}.bt_index_check($1::oid::regclass, $2)",
            functions.schema
        );
        for relation in relations.iter().filter(|r| r.btree) {
            self.check_interrupt()?;
            match client.execute(&sql, &[&relation.oid, &full]) {
                Ok(_) => report.indexes_checked += 1,
                Err(e) => self.outcome(client, e, database, Some(&relation.name), "amcheck")?,
            }
        }
        Ok(report)
    }

    fn check_interrupt(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        Ok(())
    }
}

/// Every connectable database, checked at `level` over a connection per database.
fn run_checks(
    first: &mut Client,
    role: &str,
    plan: &RestoreTestPlan,
    connector: &Connector,
    interrupted: &AtomicBool,
    on_progress: &(dyn Fn(Step) + Sync),
) -> Result<ChecksReport> {
    let began = Instant::now();
    let query = |what: &str, e: postgres::Error| {
        if interrupted.load(Ordering::Relaxed) {
            return Error::new(ErrorKind::Interrupted, "interrupted");
        }
        failed(format!(
            "querying the restored server ({what}): {}",
            pg_message(e)
        ))
    };
    let row = first
        .query_one(
            "SELECT current_setting('server_version'), \
                    current_setting('block_size')::int8, \
                    current_setting('data_checksums') = 'on', \
                    EXISTS (SELECT FROM pg_available_extensions WHERE name = 'amcheck')",
            &[],
        )
        .map_err(|e| query("settings", e))?;
    let (server_version, block_size, data_checksums, amcheck_available): (String, i64, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let rows = first
        .query(
            "SELECT datname, datallowconn AND datconnlimit <> -2 FROM pg_database \
             ORDER BY datname",
            &[],
        )
        .map_err(|e| query("databases", e))?;
    let (connectable, skipped): (Vec<_>, Vec<_>) = rows
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, bool>(1)))
        .partition(|(_, allowed)| *allowed);
    let mut checker = Checker {
        level: plan.check,
        interrupted,
        block_size: block_size.max(1),
        amcheck_available,
        failures: Vec::new(),
    };
    let mut databases = Vec::new();
    for (i, (database, _)) in connectable.iter().enumerate() {
        on_progress(Step::Checking {
            database,
            done: i,
            total: connectable.len(),
        });
        checker.check_interrupt()?;
        let mut client = match connector.connect(role, database) {
            Ok(client) => client,
            Err(e) => {
                checker.check_interrupt()?;
                checker.fail(Some(database), None, "connect", pg_message(e));
                continue;
            }
        };
        databases.push(checker.check_database(&mut client, database, i == 0)?);
    }
    // The server's own count catches a bad page that some check passed over with a warning.
    let checksum_failures: i64 = first
        .query_one(
            "SELECT coalesce(sum(checksum_failures), 0)::int8 FROM pg_stat_database",
            &[],
        )
        .map_err(|e| query("checksum failures", e))?
        .get(0);
    if checksum_failures > 0 && checker.failures.is_empty() {
        checker.fail(
            None,
            None,
            "checksums",
            format!(
                "the server counted {checksum_failures} pages that failed their checksum, \
                 though no check failed"
            ),
        );
    }
    let amcheck = match (plan.check, amcheck_available) {
        (CheckLevel::Quick, _) => Amcheck::Skipped,
        (_, false) => Amcheck::Unavailable,
        _ if checker
            .failures
            .iter()
            .any(|f| f.check == "amcheck" || f.check == "verify_heapam") =>
        {
            Amcheck::Failed
        }
        _ => Amcheck::Passed,
    };
    Ok(ChecksReport {
        level: plan.check,
        server_version,
        data_checksums,
        databases,
        skipped_databases: skipped.into_iter().map(|(name, _)| name).collect(),
        amcheck,
        checksum_failures,
        failures: checker.failures,
        elapsed: began.elapsed(),
    })
}

// ---------------------------------------------------------------------------------------------
// Running it

/// Runs the test: never returns early without stopping the server and (unless kept) removing
/// the temporary directory; the report says where it stopped, if it did.
pub fn execute(
    repo: &mut IndexedRepository,
    plan: &RestoreTestPlan,
    interrupted: &AtomicBool,
    on_progress: &(dyn Fn(Step) + Sync),
) -> RestoreTestReport {
    let began = Instant::now();
    let mut report = RestoreTestReport {
        directory: None,
        kept: false,
        restore: None,
        recovery: None,
        role: None,
        checks: None,
        shutdown: None,
        stopped: None,
        log_tail: Vec::new(),
        cleanup_error: None,
        elapsed: Duration::ZERO,
    };
    let workspace = match Workspace::create(&plan.parent_dir, &plan.id) {
        Ok(w) => w,
        Err(error) => {
            report.stopped = Some(Stopped {
                phase: Phase::Prepare,
                error,
            });
            report.elapsed = began.elapsed();
            return report;
        }
    };
    report.directory = Some(workspace.path.clone());
    if let Err(stop) = run(
        repo,
        plan,
        &workspace,
        interrupted,
        on_progress,
        &mut report,
    ) {
        report.stopped = Some(stop);
    }
    if !report.passed() {
        report.log_tail = log_tail(&workspace.log(), LOG_TAIL_LINES);
    }
    match workspace.finish(plan.keep) {
        Ok(()) => report.kept = plan.keep,
        Err(e) => report.cleanup_error = Some(e.to_string()),
    }
    report.elapsed = began.elapsed();
    report
}

fn run(
    repo: &mut IndexedRepository,
    plan: &RestoreTestPlan,
    workspace: &Workspace,
    interrupted: &AtomicBool,
    on_progress: &(dyn Fn(Step) + Sync),
    report: &mut RestoreTestReport,
) -> std::result::Result<(), Stopped> {
    let data = workspace.data();
    // Tablespaces go inside the temporary directory: the original's must stay untouched.
    let tablespace_map = plan
        .pg
        .tablespaces
        .iter()
        .map(|ts| {
            (
                PathBuf::from(OsStr::from_bytes(&ts.location)),
                workspace
                    .path
                    .join(TABLESPACES_DIR)
                    .join(ts.oid.to_string()),
            )
        })
        .collect();
    let request = RestoreRequest {
        pgdata: data.clone(),
        delta: false,
        tablespace_map,
        recovery: recovery_settings(),
        interrupted,
    };
    let began = Instant::now();
    let restored = restore::restore(repo, plan.snapshot, &request, &|p| {
        on_progress(Step::Restoring(p))
    })
    .map_err(stopped(Phase::Restore))?;
    for entry in &plan.wal_from_archive {
        let dest = data.join("pg_wal").join(&entry.name);
        crate::archive::get::fetch(repo, entry, &dest, interrupted)
            .map_err(stopped(Phase::Restore))?;
    }
    report.restore = Some(RestoreOutcome {
        files: restored.files,
        bytes: restored.bytes,
        wal_from_archive: plan
            .wal_from_archive
            .iter()
            .map(|e| e.name.clone())
            .collect(),
        elapsed: began.elapsed(),
    });

    write_server_files(&workspace.path).map_err(stopped(Phase::Recovery))?;
    if plan.user.switch {
        chown_tree(&workspace.path, &plan.user.user).map_err(stopped(Phase::Recovery))?;
    }
    let connector = Connector {
        socket_dir: &workspace.path,
        options: session_options(plan.server.major),
    };
    let server = Server::start(plan, workspace).map_err(stopped(Phase::Recovery))?;
    let began = Instant::now();
    with_interrupt_watch(&server, interrupted, || {
        let (mut client, role) = wait_until_promoted(
            &server,
            plan,
            &connector,
            workspace,
            interrupted,
            on_progress,
        )
        .map_err(stopped(Phase::Recovery))?;
        report.recovery = Some(began.elapsed());
        report.role = Some(role.clone());
        let checks = run_checks(
            &mut client,
            &role,
            plan,
            &connector,
            interrupted,
            on_progress,
        )
        .map_err(stopped(Phase::Checks))?;
        report.checks = Some(checks);
        Ok(())
    })?;
    report.shutdown = Some(server.stop());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_are_parsed() {
        let cases = [
            (
                "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n",
                Some((15, "15.18")),
            ),
            ("postgres (PostgreSQL) 18.4\n", Some((18, "18.4"))),
            ("postgres (PostgreSQL) 13.23", Some((13, "13.23"))),
            ("postgres (PostgreSQL) 19beta1", Some((19, "19beta1"))),
            ("postgres (PostgreSQL) 9.6.24", Some((9, "9.6.24"))),
            ("postgres 15.1", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let got = parse_server_version(text);
            assert_eq!(
                got.as_ref().map(|(m, v)| (*m, v.as_str())),
                expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_missing_bindir_is_named() {
        let err = find_server(15, Some(Path::new("/nonexistent/pg/bin"))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        let text = err.to_string();
        assert!(text.contains("/nonexistent/pg/bin"), "{text}");
        assert!(text.contains("no such directory"), "{text}");
        // A directory without the server program.
        let err = find_server(15, Some(Path::new("/"))).unwrap_err();
        assert!(err.to_string().contains("has no postgres program"), "{err}");
    }

    #[test]
    fn settings_fit_the_major_version() {
        let names = |major| -> Vec<&str> {
            server_settings(major, Path::new("/tmp/w"))
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert!(names(13).contains(&"stats_temp_directory"));
        assert!(!names(15).contains(&"stats_temp_directory"));
        assert!(!names(15).contains(&"reserved_connections"));
        assert!(names(16).contains(&"reserved_connections"));
        assert!(!names(16).contains(&"event_triggers"));
        assert!(names(18).contains(&"event_triggers") && names(18).contains(&"io_method"));
        let settings = server_settings(15, Path::new("/tmp/with space"));
        let get = |name| {
            settings
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("unix_socket_directories"), Some("\"/tmp/with space\""));
        assert_eq!(get("listen_addresses"), Some(""));
        assert_eq!(get("data_directory"), Some("/tmp/with space/data"));
        assert_eq!(get("hot_standby"), Some("off"));
        assert!(session_options(13).contains("-c statement_timeout=0"));
        assert!(!session_options(13).contains("idle_session_timeout"));
        assert!(session_options(17).contains("-c transaction_timeout=0"));
    }

    #[test]
    fn socket_paths_are_measured_with_the_directory_name() {
        let parent = Path::new("/tmp");
        let dir = format!("/tmp/{DIR_PREFIX}0123abcd-89abcdef/.s.PGSQL.{PORT}");
        assert_eq!(socket_path_len(parent), dir.len());
        let long = PathBuf::from(format!("/{}", "d".repeat(80)));
        assert!(socket_path_len(&long) > SOCKET_PATH_MAX);
    }

    #[test]
    fn roles_default_to_postgres_and_the_server_user() {
        let user = |name: &str| OsUser {
            name: name.into(),
            uid: 1000,
            gid: 1000,
        };
        assert_eq!(role_candidates(None, &user("postgres")), ["postgres"]);
        assert_eq!(role_candidates(None, &user("alice")), ["postgres", "alice"]);
        assert_eq!(role_candidates(Some("admin"), &user("alice")), ["admin"]);
    }

    #[test]
    fn the_recovery_settings_stop_at_consistency_and_need_no_repository() {
        let lines = crate::pg::recovery::settings_lines(&recovery_settings()).unwrap();
        let text = lines.join("\n");
        assert!(text.contains("restore_command = 'false'"), "{text}");
        assert!(text.contains("recovery_target = 'immediate'"), "{text}");
        assert!(
            text.contains("recovery_target_action = 'promote'"),
            "{text}"
        );
        assert!(
            text.contains("recovery_target_timeline = 'current'"),
            "{text}"
        );
        assert!(text.contains("archive_mode = 'off'"), "{text}");
    }

    #[test]
    fn a_postgresql_conf_is_written_only_where_the_snapshot_has_none() {
        let base = std::env::temp_dir().join(format!("pgcairn-conf-{}", std::process::id()));
        for (name, has_conf) in [("debian", false), ("upstream", true)] {
            let workspace = base.join(name);
            fs::create_dir_all(workspace.join(DATA_DIR)).unwrap();
            let conf = workspace.join(DATA_DIR).join("postgresql.conf");
            if has_conf {
                fs::write(&conf, "port = 5433\n").unwrap();
            }
            write_server_files(&workspace).unwrap();
            let text = fs::read_to_string(&conf).unwrap();
            assert_eq!(text == "port = 5433\n", has_conf, "{text}");
            let hba = fs::read_to_string(workspace.join(HBA_FILE)).unwrap();
            assert!(hba.ends_with("local all all trust\n"), "{hba}");
            assert!(workspace.join(IDENT_FILE).is_file());
        }
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_log_tail_is_its_last_lines() {
        let dir = std::env::temp_dir().join(format!("pgcairn-log-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        let text: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
        fs::write(&log, text).unwrap();
        assert_eq!(log_tail(&log, 2), ["line 29", "line 30"]);
        assert!(log_tail(&dir.join("missing"), 2).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
