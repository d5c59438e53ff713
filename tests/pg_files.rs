//! The pg module's file-level code against real PostgreSQL 15 data directories: page checksums,
//! the data directory rules, and the recovery configuration the server must accept.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use common::pg::{Cluster, give_to_cluster_owner};
use pgcairn::pg::checksum::{
    DEFAULT_RELATION_SEGMENT_BLOCKS, PAGE_SIZE, PageVerdict, block_number, verify_page,
};
use pgcairn::pg::datadir::{Disposition, FileKind, is_tablespace_version_dir};
use pgcairn::pg::recovery::{
    RecoverySettings, RecoveryTarget, TargetAction, restore_command_arg, write_recovery_config,
};

use Disposition::*;
const REL0: Disposition = Keep(FileKind::Relation { segment: 0 });
const OTHER: Disposition = Keep(FileKind::Other);

/// Verifies every page of every relation file in the cluster, classified by the data directory
/// rules the backup uses. Returns (relation files, checksummed pages, new pages).
fn verify_cluster(cluster: &Cluster) -> (usize, usize, usize) {
    let (mut files, mut pages, mut new_pages) = (0, 0, 0);
    cluster.walk(&mut |rel, disposition, bytes| {
        let Keep(FileKind::Relation { segment }) = disposition else {
            return;
        };
        files += 1;
        assert_eq!(
            bytes.len() % PAGE_SIZE,
            0,
            "{rel}: not a whole number of pages"
        );
        for (index, page) in bytes.chunks_exact(PAGE_SIZE).enumerate() {
            let blkno = block_number(segment, index as u32, DEFAULT_RELATION_SEGMENT_BLOCKS);
            match verify_page(page, blkno, u64::MAX) {
                PageVerdict::Valid => pages += 1,
                PageVerdict::New => new_pages += 1,
                other => panic!("{rel} block {blkno}: {other:?}"),
            }
        }
    });
    (files, pages, new_pages)
}

/// Every page of a freshly initdb'd checksummed cluster verifies; so does every page after the
/// server has run, written user tables, indexes, free space and visibility maps, and shut down
/// cleanly.
#[test]
fn real_cluster_verifies_page_by_page() {
    let Some(mut cluster) = Cluster::checksummed(15, &[]) else {
        return;
    };
    let (files, pages, _) = verify_cluster(&cluster);
    // A PG15 initdb writes several hundred relation files in three databases and global/.
    assert!(files > 500, "only {files} relation files");
    assert!(pages > 1000, "only {pages} pages");

    cluster.start();
    cluster.execute("create table t(id int primary key, note text)");
    cluster.execute(
        "insert into t select g, repeat(md5(g::text), 5) from generate_series(1, 20000) g",
    );
    cluster.execute("delete from t where id % 3 = 0");
    cluster.execute("vacuum analyze t");
    cluster.execute("create index on t(note)");
    cluster.stop();
    let (files_after, pages_after, _) = verify_cluster(&cluster);
    assert!(
        files_after > files,
        "{files_after} relation files after, {files} before"
    );
    assert!(
        pages_after > pages + 400,
        "{pages_after} pages after, {pages} before"
    );
}

/// A real PG15 data directory, running, with an unlogged table, a tablespace, and the files a
/// running server has (postmaster.pid, pg_internal.init), walked like a backup walks it.
#[test]
fn real_data_directory() {
    let Some(mut cluster) = Cluster::checksummed(15, &[]) else {
        return;
    };
    let tablespace = cluster.scratch_dir().join("ts");
    fs::create_dir(&tablespace).unwrap();
    give_to_cluster_owner(&tablespace);
    cluster.start();
    cluster.execute(&format!(
        "create tablespace ts location '{}'",
        tablespace.display()
    ));
    cluster.execute("create unlogged table u(x int primary key)");
    cluster.execute("insert into u select generate_series(1, 1000)");
    cluster.execute("create table t(x int) tablespace ts");
    cluster.execute("insert into t select generate_series(1, 1000)");
    cluster.execute("vacuum t");
    cluster.execute("checkpoint");
    let unlogged = cluster.sql_one_string("select pg_relation_filepath('u')");
    let unlogged_index = cluster.sql_one_string("select pg_relation_filepath('u_pkey')");
    let in_tablespace = cluster.sql_one_string("select pg_relation_filepath('t')");
    // A temporary-file directory and a stray version directory, as a busy or upgraded cluster
    // has.
    let data = cluster.pgdata();
    fs::create_dir_all(data.join("base/pgsql_tmp")).unwrap();
    fs::write(data.join("base/pgsql_tmp/pgsql_tmp99.0"), b"x").unwrap();
    fs::create_dir(tablespace.join("PG_14_202107181")).unwrap();

    let mut seen = BTreeMap::new();
    cluster.walk(&mut |path, disposition, _| {
        seen.insert(path.to_string(), disposition);
    });
    cluster.stop();

    let expect = |path: &str, want: Disposition| {
        assert_eq!(seen.get(path), Some(&want), "{path}");
    };
    expect("PG_VERSION", OTHER);
    expect("postgresql.conf", OTHER);
    expect("postmaster.pid", Skip);
    expect("postmaster.opts", Skip);
    expect("global", Descend);
    expect("global/pg_control", OTHER);
    expect("global/pg_filenode.map", OTHER);
    expect("global/pg_internal.init", Skip);
    expect("global/1262", REL0);
    expect("base/1/1259", REL0);
    expect("base/1/1259_fsm", REL0);
    expect("base/1/PG_VERSION", OTHER);
    expect("base/5/pg_internal.init", Skip);
    expect("base/pgsql_tmp", Skip);
    expect("pg_wal", Descend);
    expect("pg_wal/000000010000000000000001", Skip);
    expect("pg_wal/archive_status", KeepDirEmpty);
    for dir in [
        "pg_dynshmem",
        "pg_notify",
        "pg_replslot",
        "pg_serial",
        "pg_snapshots",
        "pg_stat_tmp",
        "pg_subtrans",
    ] {
        expect(dir, KeepDirEmpty);
    }
    expect("pg_xact/0000", OTHER);
    // The unlogged table and its index: init forks only.
    for path in [&unlogged, &unlogged_index] {
        expect(path, Skip);
        expect(&format!("{path}_init"), REL0);
    }
    // The tablespace, through its symlink.
    let (oid_dir, _) = in_tablespace.rsplit_once('/').unwrap();
    let (version_dir, _) = oid_dir.rsplit_once('/').unwrap();
    let (tablespace_link, version) = version_dir.rsplit_once('/').unwrap();
    assert!(
        is_tablespace_version_dir(version.as_bytes(), 15),
        "{version}"
    );
    expect(tablespace_link, Descend);
    expect(version_dir, Descend);
    expect(oid_dir, Descend);
    expect(&in_tablespace, REL0);
    expect(&format!("{in_tablespace}_fsm"), REL0);
    expect(&format!("{in_tablespace}_vm"), REL0);
    expect(&format!("{tablespace_link}/PG_14_202107181"), Skip);
    // Nothing under a skipped or emptied directory was looked at, and of pg_wal only
    // archive_status is kept.
    for (path, disposition) in &seen {
        for parent in [
            "pg_wal/archive_status/",
            "pg_stat_tmp/",
            "pg_replslot/",
            "base/pgsql_tmp/",
        ] {
            assert!(!path.starts_with(parent), "{path} visited");
        }
        if let Some(rest) = path.strip_prefix("pg_wal/") {
            assert!(!rest.contains('/'), "{path} visited");
            if rest != "archive_status" {
                assert_eq!(*disposition, Skip, "{path}");
            }
        }
    }
}

/// A real PG15 server reads what we wrote: `postgres -C` loads the configuration files (running
/// every setting's checks) and prints the value. A recovery target left in postgresql.conf must
/// not become a second target.
#[test]
fn postgres_accepts_the_recovery_configuration() {
    let Some(cluster) = Cluster::checksummed(15, &[]) else {
        return;
    };
    let data = cluster.pgdata();
    let conf = data.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str(
        "recovery_target_time = '2020-01-01 00:00:00+00'\nrecovery_target_action = 'shutdown'\n",
    );
    fs::write(&conf, text).unwrap();
    let repo = "/srv/my backups/it's 100%";
    let restore_command = format!(
        "/usr/local/bin/pgcairn archive-get %f %p --repo {}",
        restore_command_arg(repo)
    );
    let s = RecoverySettings {
        restore_command: restore_command.clone(),
        target: Some(RecoveryTarget::Lsn("0/3000060".into())),
        target_action: Some(TargetAction::Promote),
        target_timeline: Some("latest".into()),
        archive_mode_off: true,
    };
    write_recovery_config(data, &s).unwrap();
    // Written as root for a postgres-owned directory: the files must still be postgres's.
    let owner = fs::metadata(data).unwrap().uid();
    for name in ["postgresql.auto.conf", "recovery.signal"] {
        assert_eq!(
            fs::metadata(data.join(name)).unwrap().uid(),
            owner,
            "{name}"
        );
    }
    let show = |setting: &str| cluster.config_value(setting);
    assert_eq!(show("restore_command"), restore_command);
    assert!(show("restore_command").contains("'/srv/my backups/it'\\''s 100%%'"));
    assert_eq!(show("recovery_target_lsn"), "0/3000060");
    assert_eq!(show("recovery_target_time"), "");
    assert_eq!(show("recovery_target_action"), "promote");
    assert_eq!(show("recovery_target_timeline"), "latest");
    assert_eq!(show("archive_mode"), "off");
    // Every target kind, and none, loads too.
    for target in [
        None,
        Some(RecoveryTarget::Immediate),
        Some(RecoveryTarget::Time("2026-01-02 03:04:05+00".into())),
        Some(RecoveryTarget::Xid("7461".into())),
        Some(RecoveryTarget::Name("before upgrade".into())),
    ] {
        let s = RecoverySettings {
            target: target.clone(),
            ..s.clone()
        };
        write_recovery_config(data, &s).unwrap();
        assert_eq!(show("recovery_target_lsn"), "", "{target:?}");
        assert_eq!(
            show("recovery_target_time"),
            match &target {
                Some(RecoveryTarget::Time(t)) => t.as_str(),
                _ => "",
            }
        );
    }
}
