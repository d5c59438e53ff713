//! Clusters that archive through pgcairn: waiting for the archiver, fetching archived files.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::cairn::{Cairn, assert_success, new_target, wait_promoted};
use super::pg::{Cluster, PgInstall};

/// How long the archiver may take to catch up before a test gives up.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until the server has archived `name` (and so everything before it).
pub fn wait_archived(cluster: &Cluster, name: &str) {
    let deadline = Instant::now() + ARCHIVE_TIMEOUT;
    loop {
        let last =
            cluster.sql_one_string("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        if last.as_str() >= name {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} was not archived within {ARCHIVE_TIMEOUT:?}; pg_stat_archiver: {}\n{}",
            cluster.sql_one_string("SELECT row(s.*)::text FROM pg_stat_archiver s"),
            cluster.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Switches WAL and waits until the server has archived the segment it switched away from;
/// returns that segment's name.
pub fn switch_wal_and_wait_archived(cluster: &Cluster) -> String {
    let name = cluster.sql_one_string("SELECT pg_walfile_name(pg_switch_wal())");
    wait_archived(cluster, &name);
    name
}

/// The server's clock now, as a target time in UTC with an explicit offset.
pub fn server_now(cluster: &Cluster) -> String {
    cluster.sql_one_string(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
}

impl Cairn {
    /// A PostgreSQL 15 cluster (checksums on) that archives into this repository through
    /// `pgcairn archive-push`; None when PostgreSQL 15 is missing and tests may skip.
    pub fn archiving_cluster(&self) -> Option<Cluster> {
        self.archiving_cluster_of(15)
    }

    /// [`Cairn::archiving_cluster`] of another major.
    pub fn archiving_cluster_of(&self, major: u32) -> Option<Cluster> {
        let conf = self.archiving_conf();
        let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
        Cluster::started_checksummed(major, &conf)
    }

    /// `archive-get --system-id ID NAME DEST`, whatever the outcome.
    pub fn archive_get(&self, system_id: &str, name: &str, dest: &Path) -> Output {
        self.run(&[
            OsString::from("archive-get"),
            "--system-id".into(),
            system_id.into(),
            name.into(),
            dest.into(),
        ])
    }

    /// Fetches each of `names` from the archive and checks it equals `original(name)`.
    pub fn assert_archived_exactly(
        &self,
        system_id: &str,
        names: &[String],
        original: impl Fn(&str) -> PathBuf,
    ) {
        let fetched = self.path("fetched");
        for name in names {
            assert_success(
                &self.archive_get(system_id, name, &fetched),
                &format!("archive-get {name}"),
            );
            assert!(
                std::fs::read(&fetched).unwrap() == std::fs::read(original(name)).unwrap(),
                "{name} came back different from what the server archived"
            );
        }
    }

    /// Restores the newest snapshot with no target, so that recovery replays every archived
    /// file and then promotes; starts it and checks that `query` gives `expected` there.
    pub fn assert_restore_to_end_holds(&self, install: &PgInstall, query: &str, expected: &str) {
        let (_keep, target) = new_target("restored");
        let out = self.restore("latest", &target, &[]);
        assert_success(&out, "restore latest to the end of the archive");
        let mut restored = Cluster::from_existing(install, &target);
        restored.start();
        wait_promoted(&restored);
        assert_eq!(
            restored.sql_one_string(query),
            expected,
            "the restore to the end of the archive lacks committed rows; server log:\n{}\ninfo:\n{}",
            restored.log(),
            String::from_utf8_lossy(&self.run(&["info"]).stdout)
        );
        restored.stop();
    }
}
