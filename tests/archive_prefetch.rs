//! `archive-get --prefetch N` with real WAL segments from PostgreSQL 15, without a restoring
//! server: the server's restore_command calls are made directly, in order. The queue fills in
//! the background, serves the next segments with the archived bytes, never holds more than N,
//! is cleaned as the server moves on, and a damaged queued copy is fetched again instead.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::cairn::{Cairn, assert_code, assert_success, stderr, write_owned};
use common::pg::{Cluster, give_to_cluster_owner, owned_temp_dir};
use pgcairn::pg::wal;
use tempfile::TempDir;

const SEGMENT_SIZE: u64 = 16 << 20;
const DEPTH: usize = 3;
/// How long the background worker gets to queue what it should.
const WORKER_TIMEOUT: Duration = Duration::from_secs(120);

/// Eight complete segments of a PG15 cluster, copied out of its pg_wal (oldest first), and its
/// system identifier.
fn real_segments() -> Option<(TempDir, Vec<PathBuf>, String)> {
    let cluster = Cluster::started_checksummed(15, &[])?;
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    cluster.execute("CREATE TABLE t (n int, filler text)");
    for i in 0..9 {
        cluster.execute(&format!(
            "INSERT INTO t SELECT g, repeat('x', {}) FROM generate_series(1, 500) g",
            10 + i
        ));
        cluster.sql_one_string("SELECT pg_switch_wal()::text");
    }
    // Segments before the one being written are complete; later ones may be recycled files.
    let current = cluster.sql_one_string("SELECT pg_walfile_name(pg_current_wal_lsn())");
    let pg_wal = cluster.pgdata().join("pg_wal");
    let mut names: Vec<String> = std::fs::read_dir(&pg_wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| wal::is_wal_segment_name(n) && *n < current)
        .collect();
    names.sort();
    assert!(names.len() >= 8, "only {names:?} before {current}");
    names.truncate(8);
    let dir = owned_temp_dir();
    let paths = names
        .iter()
        .map(|name| {
            let path = dir.path().join(name);
            std::fs::copy(pg_wal.join(name), &path).unwrap();
            give_to_cluster_owner(&path);
            path
        })
        .collect();
    Some((dir, paths, system_id))
}

struct Recovery<'a> {
    cairn: &'a Cairn,
    system_id: String,
    dest_dir: TempDir,
}

impl Recovery<'_> {
    /// What the server's restore_command does: `archive-get NAME pg_wal/RECOVERYXLOG`.
    fn get(&self, extra: &[&str], name: &str) -> Output {
        self.get_to(extra, name, &self.dest())
    }

    fn get_to(&self, extra: &[&str], name: &str, dest: &Path) -> Output {
        let mut args: Vec<OsString> = vec!["archive-get".into()];
        args.extend(extra.iter().map(OsString::from));
        args.extend([
            "--system-id".into(),
            self.system_id.clone().into(),
            "-v".into(),
            name.into(),
            dest.into(),
        ]);
        // Only the restore_command itself is waited for: the worker has no pipe of ours.
        let started = Instant::now();
        let out = self.cairn.run(&args);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "archive-get took {:?}",
            started.elapsed()
        );
        out
    }

    fn dest(&self) -> PathBuf {
        self.dest_dir.path().join("RECOVERYXLOG")
    }

    /// Gets `name` and checks the bytes are the archived segment's; returns stderr.
    fn get_ok(&self, extra: &[&str], name: &str, original: &Path) -> String {
        self.get_ok_to(extra, name, original, &self.dest())
    }

    fn get_ok_to(&self, extra: &[&str], name: &str, original: &Path, dest: &Path) -> String {
        let out = self.get_to(extra, name, dest);
        assert_success(&out, &format!("archive-get {name}"));
        let got = std::fs::read(dest).unwrap();
        assert!(
            got == std::fs::read(original).unwrap(),
            "archive-get {name} wrote other bytes than were archived"
        );
        std::fs::remove_file(dest).unwrap();
        stderr(&out)
    }
}

/// The queue directory of the only repository and cluster under the cache.
fn queue_dir(cairn: &Cairn, system_id: &str) -> PathBuf {
    let base = cairn.path("cache").join("prefetch");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e}", base.display()))
        .map(|e| e.unwrap().path().join(system_id))
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// Segment files and temporary files in the queue.
fn queue_contents(dir: &Path) -> (BTreeSet<String>, Vec<String>) {
    let mut segments = BTreeSet::new();
    let mut temps = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if wal::is_wal_segment_name(&name) {
            segments.insert(name);
        } else if name.contains(".tmp-") {
            temps.push(name);
        }
    }
    (segments, temps)
}

/// Waits until the queue holds exactly `expected` and no temporary file, checking on the way
/// that it never holds more than DEPTH segments.
fn wait_for_queue(dir: &Path, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + WORKER_TIMEOUT;
    loop {
        let (segments, temps) = queue_contents(dir);
        assert!(
            segments.len() <= DEPTH,
            "the queue holds {} segments: {segments:?}",
            segments.len()
        );
        if segments == expected && temps.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queue holds {segments:?} and {temps:?}, not {expected:?}; worker log:\n{}",
            std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory the cluster owner can write on another filesystem than `dir`, if there is one.
fn other_filesystem(dir: &Path) -> Option<TempDir> {
    use std::os::unix::fs::MetadataExt;
    let shm = Path::new("/dev/shm");
    let other = std::fs::metadata(shm).ok()?.dev() != std::fs::metadata(dir).ok()?.dev();
    if !other {
        eprintln!("no other filesystem at hand: copying out of the queue goes untested");
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("pgcairn-test-")
        .tempdir_in(shm)
        .ok()?;
    give_to_cluster_owner(tmp.path());
    Some(tmp)
}

#[test]
fn prefetch_queue_serves_the_next_segments_and_stays_bounded() {
    let Some((_wal_dir, segments, system_id)) = real_segments() else {
        return;
    };
    let names: Vec<String> = segments
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let cairn = Cairn::new();
    for path in &segments {
        cairn.run_ok(&[OsString::from("archive-push"), path.into()]);
    }
    let recovery = Recovery {
        cairn: &cairn,
        system_id: system_id.clone(),
        dest_dir: owned_temp_dir(),
    };
    let n = |i: usize| names[i].as_str();
    let prefetch: &[&str] = &["--prefetch", "3"];

    // The first segment comes from the repository; the depth from the config file.
    let config = cairn.path("pgcairn.toml");
    write_owned(&config, "archive_get_prefetch = 3\n");
    let config_arg = config.to_str().unwrap();
    let err = recovery.get_ok(&["--config", config_arg], n(0), &segments[0]);
    assert!(err.contains("from the repository"), "{err}");
    let queue = queue_dir(&cairn, &system_id);
    wait_for_queue(&queue, &[n(1), n(2), n(3)]);

    // The next one is served from the queue, and leaves it.
    let err = recovery.get_ok(prefetch, n(1), &segments[1]);
    assert!(
        err.contains(&format!("{} from the prefetch queue", n(1))),
        "{err}"
    );
    assert!(!queue.join(n(1)).exists());
    wait_for_queue(&queue, &[n(2), n(3), n(4)]);

    // A damaged queued copy (right size, wrong bytes) is not served: fetched again.
    let damaged = queue.join(n(2));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&damaged)
        .unwrap();
    file.write_all_at(b"damage", 8192 + 100).unwrap();
    drop(file);
    let err = recovery.get_ok(prefetch, n(2), &segments[2]);
    assert!(err.contains("does not match the archived file"), "{err}");
    assert!(err.contains("from the repository"), "{err}");
    wait_for_queue(&queue, &[n(3), n(4), n(5)]);

    // Segments the server has passed and files a killed worker left half-written are cleaned.
    let old = queue.join(n(0));
    std::fs::copy(&segments[0], &old).unwrap();
    give_to_cluster_owner(&old);
    let stale = queue.join(format!("{}.tmp-4000000", n(6)));
    write_owned(&stale, "half a segment");
    let err = recovery.get_ok(prefetch, n(3), &segments[3]);
    assert!(
        err.contains(&format!("{} from the prefetch queue", n(3))),
        "{err}"
    );
    assert!(!old.exists(), "a passed segment stayed in the queue");
    wait_for_queue(&queue, &[n(4), n(5), n(6)]);
    assert!(!stale.exists());

    // To the end of the archive: every segment from the queue, which empties as the worker
    // finds nothing more to fetch. One goes to another filesystem (tmpfs), where the queued
    // file is copied rather than renamed.
    let other_fs = other_filesystem(&queue);
    for (i, segment) in segments.iter().enumerate().skip(4) {
        let dest = match &other_fs {
            Some(dir) if i == 5 => dir.path().join("RECOVERYXLOG"),
            _ => recovery.dest(),
        };
        let err = recovery.get_ok_to(prefetch, n(i), segment, &dest);
        assert!(
            err.contains(&format!("{} from the prefetch queue", n(i))),
            "{err}"
        );
        let next: Vec<&str> = (i + 1..(i + 1 + DEPTH).min(8)).map(n).collect();
        wait_for_queue(&queue, &next);
    }
    let (_, segno) = wal::parse_segment_name(n(7), SEGMENT_SIZE).unwrap();
    let beyond = wal::segment_name(1, segno + 1, SEGMENT_SIZE);
    let deadline = Instant::now() + WORKER_TIMEOUT;
    let log = queue.join("worker.log");
    let stopped = format!("{beyond} is not archived (yet): stopping there");
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(&stopped)
    {
        assert!(
            Instant::now() < deadline,
            "the worker did not stop at {beyond}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Past the end: "not found", with or without a queue.
    let out = recovery.get(prefetch, &beyond);
    assert_code(&out, 1, "archive-get past the end of the archive");
    assert!(!recovery.dest().exists());
    assert_eq!(queue_contents(&queue).0, BTreeSet::new());
}
