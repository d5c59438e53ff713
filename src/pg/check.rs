//! What a server must be for pgcairn to back it up and archive its WAL, beyond what a backup
//! session reads ([`ServerInfo`]): whether a data directory is the server's, what the role
//! may do, how the server archives and how its archiver has fared; and the WAL switch that
//! sends a segment through archive_command.

use std::path::Path;

use postgres::Client;

use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::control;
use crate::pg::session::ServerInfo;

/// Refuses a `pgdata` that is not the connected server's data directory (exit 6 for backup).
pub fn check_pgdata(info: &ServerInfo, pgdata: &Path) -> Result<()> {
    let on_disk = control::read_system_identifier(pgdata)?;
    if on_disk != info.system_identifier {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{} belongs to the cluster with system identifier {on_disk}, but the server \
                 connected to is {}; point --pgdata and --db at the same cluster",
                pgdata.display(),
                info.system_identifier
            ),
        ));
    }
    // A standby shares its primary's system identifier: compare the paths too, when the
    // role may read data_directory.
    if let Some(server_dir) = &info.data_directory {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if canon(server_dir) != canon(pgdata) {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "the server's data directory is {}, not {} (a standby or copy of the same \
                     cluster?)",
                    server_dir.display(),
                    pgdata.display()
                ),
            ));
        }
    }
    Ok(())
}

/// What the session's role is allowed, beyond the backup functions
/// ([`crate::pg::session::check_backup_privileges`]).
#[derive(Clone, Debug)]
pub struct RoleAccess {
    pub superuser: bool,
    /// The REPLICATION attribute, which a temporary replication slot needs.
    pub replication: bool,
    /// EXECUTE on `pg_switch_wal()` (superusers only, unless granted).
    pub switch_wal: bool,
    /// `max_replication_slots` less the slots that exist.
    pub free_slots: i64,
}

pub fn role_access(client: &mut Client) -> Result<RoleAccess> {
    let context = "reading the role's attributes and privileges";
    let row = client
        .query_one(
            "SELECT r.rolsuper, r.rolreplication, \
                    has_function_privilege('pg_switch_wal()', 'EXECUTE'), \
                    current_setting('max_replication_slots')::bigint \
                      - (SELECT count(*) FROM pg_replication_slots) \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .context(context)?;
    Ok(RoleAccess {
        superuser: row.try_get(0).context(context)?,
        replication: row.try_get(1).context(context)?,
        switch_wal: row.try_get(2).context(context)?,
        free_slots: row.try_get(3).context(context)?,
    })
}

/// How the server hands finished WAL segments over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSettings {
    /// `archive_command` as configured. Read from pg_settings' `reset_val`: its `setting`
    /// (and SHOW) say "(disabled)" while archive_mode is off.
    pub command: String,
    /// `archive_library` (PostgreSQL 15+), when set: the server then archives through the
    /// library and ignores archive_command.
    pub library: Option<String>,
}

pub fn archive_settings(client: &mut Client) -> Result<ArchiveSettings> {
    let context = "reading archive_command";
    let rows = client
        .query(
            "SELECT name, reset_val FROM pg_settings \
             WHERE name IN ('archive_command', 'archive_library')",
            &[],
        )
        .context(context)?;
    let mut command = None;
    let mut library = None;
    for row in rows {
        let name: String = row.try_get(0).context(context)?;
        let value: Option<String> = row.try_get(1).context(context)?;
        match name.as_str() {
            "archive_command" => command = value,
            _ => library = value.filter(|v| !v.is_empty()),
        }
    }
    let command =
        command.ok_or_else(|| Error::database("the server did not show archive_command"))?;
    Ok(ArchiveSettings { command, library })
}

/// `pg_stat_archiver`: how archive_command has fared since the statistics were reset.
#[derive(Clone, Debug, Default)]
pub struct ArchiverStats {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    /// Timestamps as the server prints them (its time zone).
    pub last_archived_time: Option<String>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<String>,
    /// The latest attempt failed: no file was archived since the last failure.
    pub failing: bool,
}

pub fn archiver_stats(client: &mut Client) -> Result<ArchiverStats> {
    let context = "reading pg_stat_archiver";
    let row = client
        .query_one(
            "SELECT archived_count, last_archived_wal, last_archived_time::text, \
                    failed_count, last_failed_wal, last_failed_time::text, \
                    last_failed_time IS NOT NULL \
                      AND (last_archived_time IS NULL OR last_failed_time > last_archived_time) \
             FROM pg_stat_archiver",
            &[],
        )
        .context(context)?;
    Ok(ArchiverStats {
        archived_count: row.try_get(0).context(context)?,
        last_archived_wal: row.try_get(1).context(context)?,
        last_archived_time: row.try_get(2).context(context)?,
        failed_count: row.try_get(3).context(context)?,
        last_failed_wal: row.try_get(4).context(context)?,
        last_failed_time: row.try_get(5).context(context)?,
        failing: row.try_get(6).context(context)?,
    })
}

/// Ends the current WAL segment (`pg_switch_wal()`) and returns the name of the segment it
/// completed, which the server hands to archive_command next. A transaction id is taken
/// first: its commit record is WAL to switch away from, so even an idle server completes a
/// new segment rather than naming one that went out long ago (perhaps to another archive).
/// Primary only: a standby cannot switch WAL.
pub fn switch_wal(client: &mut Client) -> Result<String> {
    client
        .batch_execute("SELECT pg_current_xact_id()")
        .context("writing a commit record before the WAL switch")?;
    let row = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .context("switching WAL (pg_switch_wal())")?;
    row.try_get(0).context("switching WAL (pg_switch_wal())")
}
