//! The WAL readers (`pg::walpage`, `pg::walscan`) against WAL real servers wrote: PostgreSQL 15
//! checked record by record against its own pg_waldump, and 13 and 18 (whose npm builds have no
//! pg_waldump) against what the server says it committed (`track_commit_timestamp`).
//!
//! The workload is made to cover what the scan must get right: records spanning pages and
//! segments, compressed full-page images with holes (whose flag bits differ between 13 and
//! 15+), commit and commit-prepared records, restore points, and a switch record at the end.

mod common;

use std::fs;
use std::process::Command;

use common::pg::Cluster;
use pgcairn::pg::target::parse_target_time;
use pgcairn::pg::wal::{self, Lsn};
use pgcairn::pg::walpage::{check_segment_header, major_of_magic};
use pgcairn::pg::walscan::{RestorePoint, SegmentSummary, summarize_segment};

const CONF: &[&str] = &[
    // Compressed full-page images (pglz in every major).
    "wal_compression = on",
    "max_prepared_transactions = 2",
    // No background transactions: every commit in the WAL is one of the test's.
    "autovacuum = off",
    // Commit times to check the scan's against, on majors without pg_waldump.
    "track_commit_timestamp = on",
];

/// What the test did, and the WAL it produced.
struct Written {
    segment_size: u64,
    block_size: usize,
    first_segment: u64,
    last_segment: u64,
    /// Each segment file, in order.
    segments: Vec<Vec<u8>>,
    /// Transactions that committed (xids assigned) while the test wrote.
    commits: u64,
    /// Commit times of the first and the last of them, Unix microseconds.
    first_commit_time: i64,
    last_commit_time: i64,
}

fn setting(cluster: &Cluster, name: &str) -> String {
    cluster.sql_one_string(&format!(
        "SELECT setting FROM pg_settings WHERE name = '{name}'"
    ))
}

fn next_xid(cluster: &Cluster) -> u64 {
    cluster
        .sql_one_string("SELECT pg_snapshot_xmax(pg_current_snapshot())")
        .parse()
        .unwrap()
}

fn commit_time(cluster: &Cluster, xid: u64) -> i64 {
    cluster
        .sql_one_string(&format!(
            "SELECT extract(epoch FROM date_trunc('second', ts))::bigint * 1000000
                    + extract(microseconds FROM ts)::bigint % 1000000
             FROM pg_xact_commit_timestamp('{xid}'::xid) ts"
        ))
        .parse()
        .unwrap()
}

/// Runs the workload on a fresh cluster of `major` and copies out the segments it wrote.
fn write_wal(cluster: &Cluster) -> Written {
    let segment_size: u64 = setting(cluster, "wal_segment_size").parse().unwrap();
    let block_size: usize = setting(cluster, "wal_block_size").parse().unwrap();

    // Start on a fresh segment, so the first one read begins with no record continued into it.
    // (Two statements: in one, the table's commit would land after the switch.)
    cluster.execute("CREATE TABLE warmup ()");
    cluster.execute("SELECT pg_switch_wal()");
    let start: Lsn = cluster
        .sql_one_string("SELECT pg_current_wal_insert_lsn()")
        .parse()
        .unwrap();
    let first_xid = next_xid(cluster);

    cluster.execute("CREATE TABLE t (id int, v text); CREATE TABLE big (g int, v text)");
    for i in 0..10 {
        cluster.execute(&format!("INSERT INTO t VALUES ({i}, 'row {i}')"));
    }
    // One record of 40 kB: spans several pages.
    cluster.execute("SELECT pg_logical_emit_message(true, 'pgcairn', repeat('x', 40000))");
    cluster.execute("SELECT pg_create_restore_point('p1')");
    cluster.execute("BEGIN; INSERT INTO t VALUES (-1, 'prepared'); PREPARE TRANSACTION 'gx'");
    cluster.execute("COMMIT PREPARED 'gx'");
    // Enough WAL to cross segment boundaries, and after a checkpoint, full-page images of
    // partly filled pages (holes), compressed.
    cluster.execute(
        "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 150000) g;
         CHECKPOINT;
         UPDATE big SET v = v || 'x' WHERE g % 50 = 0;
         DELETE FROM big WHERE g % 7 = 0;",
    );
    cluster.execute("SELECT pg_create_restore_point('p2 with spaces')");
    for i in 10..15 {
        cluster.execute(&format!("INSERT INTO t VALUES ({i}, 'row {i}')"));
    }
    let last_xid = next_xid(cluster);
    let end: Lsn = cluster
        .sql_one_string("SELECT pg_switch_wal()")
        .parse()
        .unwrap();

    let first_segment = wal::segment_of(start, segment_size);
    let last_segment = wal::prev_segment_of(end, segment_size);
    let segments = (first_segment..=last_segment)
        .map(|segno| {
            let name = wal::segment_name(1, segno, segment_size);
            fs::read(cluster.pgdata().join("pg_wal").join(&name))
                .unwrap_or_else(|e| panic!("reading {name}: {e}"))
        })
        .collect();
    Written {
        segment_size,
        block_size,
        first_segment,
        last_segment,
        segments,
        commits: last_xid - first_xid,
        first_commit_time: commit_time(cluster, first_xid),
        last_commit_time: commit_time(cluster, last_xid - 1),
    }
}

/// Checks the scan against what the server says, and returns the scan of all the segments.
fn check_against_server(major: u32, written: &Written) -> SegmentSummary {
    let w = written;
    assert!(
        w.last_segment > w.first_segment,
        "PostgreSQL {major}: the workload should fill more than one segment"
    );
    let mut per_segment_commits = 0;
    let mut per_segment_points = Vec::new();
    for (i, bytes) in w.segments.iter().enumerate() {
        let segno = w.first_segment + i as u64;
        assert_eq!(bytes.len() as u64, w.segment_size);
        let header = check_segment_header(bytes, 1, segno, w.segment_size)
            .unwrap_or_else(|e| panic!("PostgreSQL {major}, segment {segno}: {e}"));
        assert_eq!(major_of_magic(header.magic), Some(major));
        assert_eq!(header.block_size as usize, w.block_size);
        let start = Lsn(segno * w.segment_size);
        let alone = summarize_segment(bytes, start, w.block_size);
        // Each segment but the last ends in a record continued in the next one.
        assert!(alone.end_of_valid_records > start);
        per_segment_commits += alone.commits;
        per_segment_points.extend(alone.restore_points);
    }

    let all: Vec<u8> = w.segments.concat();
    let start = Lsn(w.first_segment * w.segment_size);
    let summary = summarize_segment(&all, start, w.block_size);
    assert_eq!(summary.commits, w.commits, "PostgreSQL {major}: commits");
    assert_eq!(summary.first_commit_time, Some(w.first_commit_time));
    assert_eq!(summary.last_commit_time, Some(w.last_commit_time));
    let names: Vec<&str> = summary
        .restore_points
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["p1", "p2 with spaces"], "PostgreSQL {major}");
    for point in &summary.restore_points {
        assert!(
            (w.first_commit_time..=w.last_commit_time).contains(&point.time),
            "{point:?}"
        );
    }
    // The switch record ends the last segment.
    assert_eq!(
        summary.end_of_valid_records,
        Lsn((w.last_segment + 1) * w.segment_size)
    );
    // Alone, a segment misses only records that cross into the next one.
    assert!(per_segment_commits <= summary.commits);
    assert!(per_segment_commits + (w.segments.len() as u64 - 1) >= summary.commits);
    assert!(
        per_segment_points
            .iter()
            .all(|p| summary.restore_points.contains(p))
    );
    eprintln!(
        "PostgreSQL {major}: {} segments, {} commits, restore points {:?}",
        w.segments.len(),
        summary.commits,
        names
    );
    summary
}

/// What pg_waldump prints about the same WAL: commit times (Unix microseconds, in WAL order),
/// restore points (name, LSN) and how many compressed full-page images with a hole it saw.
fn waldump(cluster: &Cluster, written: &Written) -> (Vec<i64>, Vec<(String, Lsn)>, usize) {
    let dir = tempfile::tempdir().unwrap();
    for (i, bytes) in written.segments.iter().enumerate() {
        let name = wal::segment_name(1, written.first_segment + i as u64, written.segment_size);
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    let name = |segno| wal::segment_name(1, segno, written.segment_size);
    let output = Command::new(cluster.install().program("pg_waldump"))
        .arg("--bkp-details")
        .arg("-p")
        .arg(dir.path())
        .arg(name(written.first_segment))
        .arg(name(written.last_segment))
        // pg_waldump prints commit times in the local zone.
        .env("TZ", "UTC")
        .output()
        .expect("running pg_waldump");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "pg_waldump: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        stdout.lines().last().unwrap_or("")
    );
    let mut commits = Vec::new();
    let mut points = Vec::new();
    let compressed_with_hole = stdout
        .lines()
        .filter(|l| l.contains("hole: offset: ") && l.contains("compression saved"))
        .filter(|l| !l.contains("hole: offset: 0, length: 0"))
        .count();
    for line in stdout.lines() {
        let Some((_, desc)) = line.split_once("desc: ") else {
            continue;
        };
        // COMMIT <time>; …   or   COMMIT_PREPARED <2pc xid>: <time>; …
        let rest = desc.strip_prefix("COMMIT ").or_else(|| {
            desc.strip_prefix("COMMIT_PREPARED ")
                .and_then(|r| r.split_once(": ").map(|(_, t)| t))
        });
        if let Some(rest) = rest {
            let text = rest.split(';').next().unwrap();
            commits.push(parse_target_time(text).unwrap().unix_micros);
        } else if let Some(name) = desc.strip_prefix("RESTORE_POINT ") {
            let lsn = line
                .split_once("lsn: ")
                .and_then(|(_, r)| r.split_once(','))
                .map(|(lsn, _)| lsn.parse().unwrap())
                .unwrap();
            points.push((name.trim_end().to_string(), lsn));
        }
    }
    (commits, points, compressed_with_hole)
}

#[test]
fn scan_matches_pg_waldump_on_pg15() {
    let Some(cluster) = Cluster::started_checksummed(15, CONF) else {
        return;
    };
    let written = write_wal(&cluster);
    let summary = check_against_server(15, &written);
    let (commits, points, compressed_with_hole) = waldump(&cluster, &written);
    // The workload did write what the block header decoding must get right.
    assert!(compressed_with_hole > 100, "{compressed_with_hole}");
    assert_eq!(summary.commits, commits.len() as u64);
    assert_eq!(summary.first_commit_time, commits.first().copied());
    assert_eq!(summary.last_commit_time, commits.last().copied());
    let found: Vec<(String, Lsn)> = summary
        .restore_points
        .iter()
        .map(|RestorePoint { name, lsn, .. }| (name.clone(), *lsn))
        .collect();
    assert_eq!(found, points);
}

#[test]
fn scan_reads_pg13_wal() {
    let Some(cluster) = Cluster::started_checksummed(13, CONF) else {
        return;
    };
    check_against_server(13, &write_wal(&cluster));
}

#[test]
fn scan_reads_pg18_wal() {
    let Some(cluster) = Cluster::started_checksummed(18, CONF) else {
        return;
    };
    check_against_server(18, &write_wal(&cluster));
}
