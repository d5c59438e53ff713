//! Prune's garbage collection through the library, on synthetic snapshots: the two-phase
//! protocol of format-spec §13 (condemn, grace period, writer locks, recovery), repacking, dry
//! runs and the prune lock. The command-line tests and the crash test are in tests/prune.rs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{init_indexed, open_indexed, read_file, sample_bytes, store_file};
use pgcairn::ErrorKind;
use pgcairn::chunk::{Cutter, FileClass};
use pgcairn::prune::gc::GcOptions;
use pgcairn::prune::run::{PruneOptions, PruneReport, Verdict, prune};
use pgcairn::repo::IndexedRepository;
use pgcairn::repo::id::SnapshotId;
use pgcairn::repo::lock::LockKind;
use pgcairn::repo::snapshot::{PostgresBackup, Snapshot, Summary};

const SYSTEM_ID: u64 = 7_301_234_567_890_123_456;

/// A snapshot of `files` (each stored through its own packer, so each snapshot's new data
/// lands in packs of its own).
fn snapshot(repo: &IndexedRepository, started_s: i64, files: &[(&str, &[u8])]) -> SnapshotId {
    let gear = repo.gear_table();
    let params = repo.config().chunker;
    let packer = repo.packer();
    let nodes = files
        .iter()
        .map(|(name, data)| {
            store_file(
                &packer,
                Cutter::new(&gear, &params, FileClass::Relation),
                name,
                data,
            )
        })
        .collect();
    let root = packer.add_dir(nodes).unwrap();
    packer.flush().unwrap();
    repo.save_snapshot(&Snapshot {
        program_version: "test".into(),
        started_ns: started_s * 1_000_000_000,
        finished_ns: started_s * 1_000_000_000 + 1,
        hostname: "db1".into(),
        tags: vec![],
        parent: None,
        root,
        postgres: Some(PostgresBackup {
            server_version_num: 150018,
            system_identifier: SYSTEM_ID,
            pgdata: b"/var/lib/postgresql/15/main".to_vec(),
            timeline: 1,
            start_lsn: 0x3000028,
            stop_lsn: 0x3000138,
            start_wal: "000000010000000000000003".into(),
            stop_wal: "000000010000000000000003".into(),
            wal_segment_size: 16 << 20,
            backup_label: vec![],
            tablespace_map: None,
            data_checksums: true,
            tablespaces: vec![],
            bad_pages: vec![],
            wal_missing: vec![],
            cluster_name: None,
        }),
        summary: Summary::default(),
    })
    .unwrap()
}

fn options(grace: Duration, dry_run: bool) -> PruneOptions {
    PruneOptions {
        gc: GcOptions {
            grace,
            max_unused: 0.25,
        },
        wal_cutoff_ns: None,
        cluster: None,
        dry_run,
    }
}

/// Prunes, forgetting the snapshots in `forget`.
fn prune_forgetting(
    repo: &IndexedRepository,
    forget: &[SnapshotId],
    grace: Duration,
    dry_run: bool,
) -> pgcairn::Result<PruneReport> {
    let decide = |snapshots: &[(SnapshotId, Snapshot)]| {
        Ok(snapshots
            .iter()
            .map(|(id, _)| Verdict {
                keep: !forget.contains(id),
                reasons: vec!["test".into()],
            })
            .collect())
    };
    prune(repo, &options(grace, dry_run), &decide, &|_| {})
}

/// A snapshot and files it holds.
type Holds<'a> = (SnapshotId, &'a [(&'a str, &'a [u8])]);

/// Every file of every snapshot reads back as written.
fn assert_readable(dir: &Path, expected: &[Holds<'_>]) {
    let repo = open_indexed(dir).unwrap();
    for (id, files) in expected {
        let snapshot = repo.load_snapshot(id).unwrap();
        for (name, data) in *files {
            assert_eq!(
                read_file(&repo, &snapshot.root, name).unwrap(),
                *data,
                "{name} of snapshot {id}"
            );
        }
    }
}

/// Every object on storage: path → size.
fn listing(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.join("repo")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path().display().to_string(), meta.len());
            }
        }
    }
    out
}

fn packs_on_storage(dir: &Path) -> usize {
    listing(dir).keys().filter(|p| p.contains("/data/")).count()
}

struct Fixture {
    dir: tempfile::TempDir,
    a: Vec<u8>,
    b: Vec<u8>,
    c: Vec<u8>,
    s1: SnapshotId,
    s2: SnapshotId,
    s3: SnapshotId,
}

/// S1 = {a, b}, S2 = {a, c}, S3 = {a, c, d}: forgetting S1 leaves its data pack half used
/// (a live, b dead) and its tree pack unused.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_indexed(dir.path());
    let a = sample_bytes(1 << 20, 1);
    let b = sample_bytes(1 << 20, 2);
    let c = sample_bytes(1 << 20, 3);
    let d = sample_bytes(1 << 20, 4);
    let s1 = snapshot(&repo, 1_790_000_000, &[("a", &a), ("b", &b)]);
    let s2 = snapshot(&repo, 1_790_086_400, &[("a", &a), ("c", &c)]);
    let s3 = snapshot(&repo, 1_790_172_800, &[("a", &a), ("c", &c), ("d", &d)]);
    Fixture {
        dir,
        a,
        b,
        c,
        s1,
        s2,
        s3,
    }
}

#[test]
fn forgotten_data_is_condemned_then_deleted_after_the_grace_period() {
    let f = fixture();
    let repo = open_indexed(f.dir.path()).unwrap();
    let before = packs_on_storage(f.dir.path());

    let first = prune_forgetting(&repo, &[f.s1], Duration::from_secs(3600), false).unwrap();
    assert_eq!(first.snapshots.iter().filter(|s| !s.keep).count(), 1);
    // S1's data pack is half used (a live, b dead), and so is its metadata pack (a's chunk
    // list is shared with S2, the root tree and b's chunk list are not): both repacked.
    assert_eq!(first.packs.repack.len(), 2, "{:?}", first.packs);
    assert!(first.packs.condemn.is_empty(), "{:?}", first.packs);
    assert!(first.packs.delete.is_empty());
    // Nothing deleted yet; the copies went into a new data and a new metadata pack.
    assert_eq!(packs_on_storage(f.dir.path()), before + 2);
    let kept: &[Holds<'_>] = &[
        (f.s2, &[("a", &f.a), ("c", &f.c)]),
        (f.s3, &[("a", &f.a), ("c", &f.c)]),
    ];
    assert_readable(f.dir.path(), kept);
    assert!(repo.load_snapshot(&f.s1).is_err(), "S1 is forgotten");

    // Within the grace period: still waiting, with the time it may go.
    let second = prune_forgetting(&repo, &[], Duration::from_secs(3600), false).unwrap();
    assert_eq!(second.packs.waiting.len(), 2, "{:?}", second.packs);
    assert!(second.packs.next_deletion_ns.is_some());
    assert!(second.packs.delete.is_empty());

    // Past it: deleted, and everything kept still reads.
    let third = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert_eq!(third.packs.delete.len(), 2, "{:?}", third.packs);
    assert_eq!(packs_on_storage(f.dir.path()), before);
    assert_readable(f.dir.path(), kept);
    // A prune with nothing to do changes nothing.
    let snapshot_before = listing(f.dir.path());
    let idle = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert!(idle.packs.delete.is_empty() && idle.packs.condemn.is_empty());
    let after = listing(f.dir.path());
    assert_eq!(
        snapshot_before
            .keys()
            .filter(|k| k.contains("/data/"))
            .collect::<Vec<_>>(),
        after
            .keys()
            .filter(|k| k.contains("/data/"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_dry_run_changes_nothing_and_shows_the_plan() {
    let f = fixture();
    let repo = open_indexed(f.dir.path()).unwrap();
    let before = listing(f.dir.path());
    let report = prune_forgetting(&repo, &[f.s1], Duration::ZERO, true).unwrap();
    assert!(report.dry_run);
    assert_eq!(report.packs.repack.len(), 2);
    assert!(report.done.is_none());
    assert_eq!(
        listing(f.dir.path()),
        before,
        "a dry run wrote or deleted something"
    );
}

#[test]
fn a_fresh_writer_lock_from_before_the_condemnation_defers_deletion() {
    let f = fixture();
    let repo = open_indexed(f.dir.path()).unwrap();
    // A backup that started before the condemnation (and may have learned S1's packs).
    let writer = repo.acquire_lock(LockKind::Writer).unwrap();
    prune_forgetting(&repo, &[f.s1], Duration::ZERO, false).unwrap();
    let deferred = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert!(deferred.packs.delete.is_empty(), "{:?}", deferred.packs);
    assert_eq!(deferred.packs.waiting.len(), 2);
    assert_eq!(deferred.packs.deferred_by.len(), 1, "{:?}", deferred.packs);
    // The backup ends: the next prune deletes.
    repo.release_lock(writer).unwrap();
    let done = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert_eq!(done.packs.delete.len(), 2, "{:?}", done.packs);
}

#[test]
fn a_reference_committed_after_the_condemnation_takes_the_pack_back() {
    let f = fixture();
    // A writer whose index cache predates the prune: it still sees S1's packs as live.
    let stale = open_indexed(f.dir.path()).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let repo = common::open_repo(f.dir.path())
        .unwrap()
        .load_index(Some(&dir2.path().join("cache")))
        .unwrap();
    let first = prune_forgetting(&repo, &[f.s1], Duration::ZERO, false).unwrap();
    assert_eq!(first.packs.repack.len() + first.packs.condemn.len(), 2);

    // The stale writer deduplicates b against S1's condemned pack and commits.
    let s4 = snapshot(&stale, 1_790_300_000, &[("b", &f.b)]);
    assert_eq!(
        stale.packer().stats().new_blobs,
        0,
        "the stale cache deduplicated"
    );
    // A writer with a fresh view would refuse those references (format-spec §13, W1/W3).
    repo.sync_cache().unwrap();
    let s4_snapshot = repo.load_snapshot(&s4).unwrap();
    let nodes = repo.dir_entries(&s4_snapshot.root).unwrap();
    let pgcairn::repo::tree::NodeKind::File { content, .. } = &nodes[0].kind else {
        panic!("b is a file")
    };
    assert!(!repo.condemned_references(content).unwrap().is_empty());

    // The next prune sees S4, so the condemned packs that hold b and its chunk list are
    // taken back.
    let second = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert_eq!(second.packs.recover.len(), 2, "{:?}", second.packs);
    assert_readable(
        f.dir.path(),
        &[(s4, &[("b", &f.b)]), (f.s2, &[("a", &f.a), ("c", &f.c)])],
    );
    let third = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert!(third.packs.recover.is_empty());
    assert_readable(f.dir.path(), &[(s4, &[("b", &f.b)])]);
}

#[test]
fn leftover_packs_no_index_lists_are_collected_after_the_grace_period() {
    let f = fixture();
    let repo = open_indexed(f.dir.path()).unwrap();
    // A crashed writer: its pack is on storage, its index file never made it.
    {
        let packer = repo.packer();
        packer
            .add(pgcairn::repo::pack::BlobType::Data, &sample_bytes(4096, 99))
            .unwrap();
        packer.flush().unwrap();
        let newest = std::fs::read_dir(f.dir.path().join("repo/index"))
            .unwrap()
            .map(|e| e.unwrap())
            .max_by_key(|e| e.metadata().unwrap().modified().unwrap())
            .unwrap();
        std::fs::remove_file(newest.path()).unwrap();
    }
    let young = prune_forgetting(&repo, &[], Duration::from_secs(3600), false).unwrap();
    assert!(
        young.packs.condemn_unindexed.is_empty(),
        "too young to be a leftover"
    );
    let first = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert_eq!(first.packs.condemn_unindexed.len(), 1, "{:?}", first.packs);
    let second = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert_eq!(second.packs.delete.len(), 1, "{:?}", second.packs);
    assert_readable(f.dir.path(), &[(f.s3, &[("a", &f.a), ("c", &f.c)])]);
}

#[test]
fn a_second_prune_backs_off_while_an_older_one_holds_its_lock() {
    let f = fixture();
    let repo = open_indexed(f.dir.path()).unwrap();
    let other = repo.acquire_lock(LockKind::Prune).unwrap();
    let err = prune_forgetting(&repo, &[f.s1], Duration::ZERO, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("another prune"), "{err}");
    // It changed nothing, and left no lock of its own.
    assert!(repo.load_snapshot(&f.s1).is_ok());
    assert_eq!(repo.list_locks().unwrap().len(), 1);
    repo.release_lock(other).unwrap();
    prune_forgetting(&repo, &[f.s1], Duration::ZERO, false).unwrap();
    assert!(repo.list_locks().unwrap().is_empty());
}

/// `pgcairn prune` on the fixture's repository, as this process's user (the fixture was
/// written through the library, by this user).
fn prune_command(dir: &Path, args: &[&str]) -> std::process::Command {
    let password = dir.join("password");
    std::fs::write(&password, common::PASSWORD).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgcairn"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("--repo")
        .arg(dir.join("repo"))
        .arg("--password-file")
        .arg(&password)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("prune")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// `prune --keep-last 1 --unsafe-no-grace`, run to its end, successfully.
fn prune_to_the_end(dir: &Path) {
    let out = prune_command(dir, &["--keep-last", "1", "--unsafe-no-grace"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every snapshot's references are indexed and their packs exist: what a reader needs.
fn assert_consistent(dir: &Path) {
    let repo = open_indexed(dir).unwrap();
    let mut reach = pgcairn::repo::reach::Reach::begin(&repo).unwrap();
    let mut fail = |u: pgcairn::repo::reach::Unreadable| -> pgcairn::Result<()> {
        panic!("unreadable {:?} {}: {}", u.blob_type, u.id, u.error)
    };
    for (_, snapshot) in repo.load_snapshots().unwrap() {
        reach.snapshot(&snapshot, &mut fail).unwrap();
    }
    assert!(
        repo.with_cache(|c| c.reached_unindexed())
            .unwrap()
            .is_empty()
    );
    for pack in repo.with_cache(|c| c.pack_use()).unwrap() {
        if pack.live_blobs > 0 {
            let path = dir
                .join("repo")
                .join(pgcairn::repo::layout::pack(&pack.pack));
            assert!(
                path.exists(),
                "pack {} holds live blobs but is gone",
                pack.pack
            );
        }
    }
}

#[test]
fn prune_killed_at_any_moment_leaves_a_readable_repository_and_the_next_one_finishes() {
    let f = fixture();
    let dir = f.dir.path();
    let kept: &[Holds<'_>] = &[(f.s3, &[("a", &f.a), ("c", &f.c)])];
    // How long an uninterrupted prune takes here, to spread the kills over it.
    let probe = tempfile::tempdir().unwrap();
    copy_dir(dir, probe.path());
    let began = std::time::Instant::now();
    prune_to_the_end(probe.path());
    let full = began.elapsed();

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..12 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = full.mul_f64((seed % 1000) as f64 / 1000.0);
        let mut child = prune_command(dir, &["--keep-last", "1", "--unsafe-no-grace"])
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        assert_consistent(dir);
        assert_readable(dir, kept);
        // The killed prune's lock is left behind; on its own host it no longer counts.
    }
    // Two full prunes finish the work: the second deletes what the first condemned.
    for _ in 0..2 {
        prune_to_the_end(dir);
    }
    assert_consistent(dir);
    assert_readable(dir, kept);
    let repo = open_indexed(dir).unwrap();
    let idle = prune_forgetting(&repo, &[], Duration::ZERO, false).unwrap();
    assert!(
        idle.packs.condemn.is_empty()
            && idle.packs.repack.is_empty()
            && idle.packs.waiting.is_empty()
            && idle.packs.delete.is_empty(),
        "work left after the kills: {:?}",
        idle.packs
    );
    assert_eq!(repo.load_snapshots().unwrap().len(), 1);
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
