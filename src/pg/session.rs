//! The backup session: one held connection that checks the server can be backed up, starts a
//! non-exclusive backup, and stops it.
//!
//! A non-exclusive backup belongs to the session that started it and is aborted by the server
//! when that session ends, so the [`postgres::Client`] is owned here for the whole backup, and
//! the stop function is called exactly once: by [`BackupSession::stop`], or by `Drop` when the
//! caller returns early (error, interruption) without stopping.

use std::path::PathBuf;
use std::time::SystemTime;

use postgres::Client;
use rand::Rng;

use crate::error::{Context, Error, Result};
use crate::pg::label::BackupLabel;
use crate::pg::wal::{self, Lsn};

/// The oldest and newest majors pgcairn knows the backup API and file layout of.
pub const OLDEST_MAJOR: u32 = 13;
pub const NEWEST_MAJOR: u32 = 18;

/// A tablespace other than pg_default and pg_global.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tablespace {
    pub oid: u32,
    /// As `pg_tablespace_location` gives it: absolute, or relative to the data directory for
    /// an in-place tablespace (`pg_tblspc/16385`, PostgreSQL 15+ with
    /// `allow_in_place_tablespaces`).
    pub location: PathBuf,
}

/// What the server says about itself, read when the session opens.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 150008.
    pub version_num: u32,
    /// From `pg_control_system()`; the same value as the first field of pg_control.
    pub system_identifier: u64,
    /// `data_directory`; None when the role may not read it (it needs superuser or
    /// pg_read_all_settings).
    pub data_directory: Option<PathBuf>,
    /// WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// Page size in bytes (`block_size`).
    pub block_size: u32,
    /// Blocks per relation segment file (`segment_size`, RELSEG_SIZE).
    pub relation_segment_blocks: u32,
    pub data_checksums: bool,
    pub wal_level: String,
    /// `off`, `on` or `always`: whether finished segments go to archive_command.
    pub archive_mode: String,
    /// True on a standby.
    pub in_recovery: bool,
    /// The role the session runs as.
    pub user: String,
    /// The `cluster_name` setting; empty when unset.
    pub cluster_name: String,
    pub tablespaces: Vec<Tablespace>,
}

impl ServerInfo {
    /// The major version: 13, 15, 18…
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

/// What starting a backup returned.
#[derive(Clone, Debug)]
pub struct BackupStart {
    /// Where replay of this backup starts (the redo pointer of its checkpoint).
    pub start_lsn: Lsn,
    /// The timeline of that checkpoint, the backup's START TIMELINE.
    pub timeline: u32,
    /// Just before the start function was called (a spread checkpoint may take minutes).
    pub started_at: SystemTime,
}

/// What stopping a backup returned.
#[derive(Clone, Debug)]
pub struct BackupStop {
    /// The end of the WAL the backup needs to be consistent.
    pub stop_lsn: Lsn,
    /// The backup_label file, byte for byte as the server sent it.
    pub backup_label: Vec<u8>,
    /// The tablespace_map file, byte for byte; None when the cluster has no tablespaces.
    pub tablespace_map: Option<Vec<u8>>,
    /// `backup_label` parsed.
    pub label: BackupLabel,
}

/// A standby's progress, as [`BackupSession::recovery_state`] reads it.
#[derive(Clone, Copy, Debug)]
pub struct RecoveryState {
    pub in_recovery: bool,
    /// The end of the last WAL record replayed.
    pub replayed: Lsn,
    /// The timeline of the minimum recovery point in pg_control (0 when the server is not in
    /// recovery): the timeline a backup stopped now ends on.
    pub min_recovery_timeline: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Started,
    /// Stopped, or a stop was attempted: either way it is not tried again.
    Stopped,
}

/// The SQL of the backup API, which was renamed in 15 (and lost its exclusive mode).
struct BackupApi {
    start: &'static str,
    stop: &'static str,
    start_signature: &'static str,
    stop_signature: &'static str,
}

const API_15: BackupApi = BackupApi {
    start: "SELECT pg_backup_start($1, $2)::text",
    stop: "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)",
    start_signature: "pg_backup_start(text, boolean)",
    stop_signature: "pg_backup_stop(boolean)",
};

/// 13 and 14: the third argument of pg_start_backup and the first of pg_stop_backup select the
/// non-exclusive mode; wait_for_archive is off because pgcairn waits for the WAL itself.
const API_13: BackupApi = BackupApi {
    start: "SELECT pg_start_backup($1, $2, false)::text",
    stop: "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)",
    start_signature: "pg_start_backup(text, boolean, boolean)",
    stop_signature: "pg_stop_backup(boolean, boolean)",
};

/// One connection holding (at most) one non-exclusive backup.
pub struct BackupSession {
    client: Client,
    info: ServerInfo,
    api: &'static BackupApi,
    state: State,
    /// The temporary replication slot that holds WAL from before the backup's start.
    slot: Option<String>,
    /// Why WAL could not be reserved, when it could not.
    reservation_warning: Option<String>,
}

impl BackupSession {
    /// Reads what the server is and refuses one that cannot be backed up: an unsupported
    /// version, `wal_level = minimal`, or a role that may not run the backup functions.
    pub fn open(mut client: Client) -> Result<Self> {
        let info = read_server_info(&mut client)?;
        check_wal_level(&info)?;
        check_backup_privileges(&mut client, &info)?;
        let major = info.major();
        let api = backup_api(major);
        // The session sits idle for as long as the files take to copy; timeouts meant for
        // application sessions must not end it, which would abort the backup.
        let mut settings = "SET statement_timeout = 0; SET lock_timeout = 0;".to_string();
        if major >= 14 {
            settings.push_str(" SET idle_session_timeout = 0;");
        }
        client
            .batch_execute(&settings)
            .context("disabling session timeouts for the backup session")?;
        Ok(BackupSession {
            client,
            info,
            api,
            state: State::Idle,
            slot: None,
            reservation_warning: None,
        })
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Starts the backup (`pg_backup_start`, `pg_start_backup` before 15). `fast` asks for an
    /// immediate checkpoint instead of a spread one. Before that, reserves WAL with a temporary
    /// replication slot where the role and settings allow one (see
    /// [`wal_reservation_warning`](Self::wal_reservation_warning)).
    pub fn start(&mut self, label: &str, fast: bool) -> Result<BackupStart> {
        if self.state != State::Idle {
            return Err(Error::internal(
                "a backup was already started in this session",
            ));
        }
        self.reserve_wal();
        let started_at = SystemTime::now();
        let row = match self.client.query_one(self.api.start, &[&label, &fast]) {
            Ok(row) => row,
            Err(err) => {
                self.release_wal_reservation();
                return Err(Error::from(err).with_context(format!(
                    "starting the backup ({})",
                    self.api.start_signature
                )));
            }
        };
        self.state = State::Started;
        let start_lsn = lsn_column(&row, 0, "the backup start function")?;
        // The label's START TIMELINE is the timeline of the checkpoint in pg_control, which the
        // start function just read; the same field is visible here, on a primary and a standby.
        let row = self
            .client
            .query_one(
                "SELECT timeline_id, redo_lsn::text FROM pg_control_checkpoint()",
                &[],
            )
            .context("reading the backup's timeline from pg_control_checkpoint()")?;
        let timeline: i32 = row
            .try_get(0)
            .context("reading the backup's timeline from pg_control_checkpoint()")?;
        let timeline = u32::try_from(timeline)
            .ok()
            .filter(|&tli| tli > 0)
            .ok_or_else(|| {
                Error::database(format!("pg_control_checkpoint(): bad timeline {timeline}"))
            })?;
        Ok(BackupStart {
            start_lsn,
            timeline,
            started_at,
        })
    }

    /// Stops the backup (`pg_backup_stop`, `pg_stop_backup` before 15) without waiting for WAL
    /// archiving, and returns the files to store. Called once: after an error here the backup
    /// is over all the same (the server aborts it when the session ends).
    ///
    /// The WAL reservation is kept, so that WAL up to the stop segment cannot be recycled
    /// before the caller has captured it: release it with
    /// [`release_wal_reservation`](Self::release_wal_reservation), or drop the session.
    pub fn stop(&mut self) -> Result<BackupStop> {
        if self.state != State::Started {
            return Err(Error::internal("no backup in progress in this session"));
        }
        self.state = State::Stopped;
        let context = || format!("stopping the backup ({})", self.api.stop_signature);
        let row = self
            .client
            .query_one(self.api.stop, &[])
            .with_context(context)?;
        let stop_lsn = lsn_column(&row, 0, "the backup stop function")?;
        let labelfile: String = row.try_get(1).with_context(context)?;
        let spcmapfile: Option<String> = row.try_get(2).with_context(context)?;
        let label = BackupLabel::parse(&labelfile)?;
        Ok(BackupStop {
            stop_lsn,
            backup_label: labelfile.into_bytes(),
            tablespace_map: spcmapfile
                .filter(|map| !map.is_empty())
                .map(String::into_bytes),
            label,
        })
    }

    /// The server's current WAL position: the insert position (`pg_current_wal_lsn()`) on a
    /// primary, the last replayed one (`pg_last_wal_replay_lsn()`) on a standby.
    pub fn current_lsn(&mut self) -> Result<Lsn> {
        let row = self
            .client
            .query_one(
                "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_lsn() END)::text",
                &[],
            )
            .context("reading the current WAL position")?;
        lsn_column(&row, 0, "the current WAL position")
    }

    /// Where a standby's recovery stands; on a primary (or a standby promoted since),
    /// `in_recovery` is false.
    pub fn recovery_state(&mut self) -> Result<RecoveryState> {
        let context = "reading the standby's recovery state";
        let row = self
            .client
            .query_one(
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
                 min_recovery_end_timeline FROM pg_control_recovery()",
                &[],
            )
            .context(context)?;
        let in_recovery: bool = row.try_get(0).context(context)?;
        // NULL until the first record is replayed: nothing replayed yet.
        let replayed =
            optional_lsn_column(&row, 1, "pg_last_wal_replay_lsn()")?.unwrap_or(Lsn::ZERO);
        let timeline: i32 = row.try_get(2).context(context)?;
        Ok(RecoveryState {
            in_recovery,
            replayed,
            min_recovery_timeline: u32::try_from(timeline).unwrap_or(0),
        })
    }

    /// Why WAL could not be reserved for this backup, if it could not. Without the reservation
    /// a checkpoint during a long backup may recycle segments the backup needs before they are
    /// archived or copied.
    pub fn wal_reservation_warning(&self) -> Option<&str> {
        self.reservation_warning.as_deref()
    }

    /// The temporary replication slot reserving WAL for this backup, while it is held.
    pub fn wal_reservation_slot(&self) -> Option<&str> {
        self.slot.as_deref()
    }

    /// Drops the temporary slot, letting the server recycle WAL the backup needed. Failure is
    /// harmless: a temporary slot goes away with the session anyway.
    pub fn release_wal_reservation(&mut self) {
        if let Some(slot) = self.slot.take() {
            let _ = self
                .client
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot]);
        }
    }

    /// The session's connection, for queries that must run in it while the backup is on. The
    /// caller must not end the session (that would abort the backup).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Creates a temporary physical slot that reserves WAL at once (from the last checkpoint's
    /// redo pointer, which is at or before the start LSN to come), as pg_basebackup does.
    fn reserve_wal(&mut self) {
        let slot = format!(
            "pgcairn_{}_{:08x}",
            std::process::id(),
            rand::thread_rng().r#gen::<u32>()
        );
        match self.client.execute(
            "SELECT pg_create_physical_replication_slot($1, true, true)",
            &[&slot],
        ) {
            Ok(_) => {
                self.slot = Some(slot);
                self.reservation_warning = None;
            }
            Err(err) => {
                self.reservation_warning = Some(format!(
                    "could not reserve WAL with a temporary replication slot ({}); a checkpoint \
                     during the backup may recycle WAL segments it needs before they are \
                     archived or copied. Give role {} the REPLICATION attribute and keep \
                     max_replication_slots above the slots in use.",
                    Error::from(err).message(),
                    quote_ident(&self.info.user)
                ));
            }
        }
    }
}

impl Drop for BackupSession {
    fn drop(&mut self) {
        if self.state == State::Started {
            self.state = State::Stopped;
            if let Err(err) = self.client.query(self.api.stop, &[]) {
                // Nothing to return an error to; the server aborts the backup when the session
                // closes, which happens right after this.
                eprintln!(
                    "pgcairn: warning: could not stop the unfinished backup ({}): {}",
                    self.api.stop_signature,
                    Error::from(err)
                );
            }
        }
        self.release_wal_reservation();
    }
}

/// Reads what the server is ([`ServerInfo`]); refuses only a major version pgcairn does not
/// know. Whether it can be backed up is for [`check_wal_level`] and
/// [`check_backup_privileges`] to say.
pub fn read_server_info(client: &mut Client) -> Result<ServerInfo> {
    let version_num = version_num(client)?;
    let major = version_num / 10000;
    if !(OLDEST_MAJOR..=NEWEST_MAJOR).contains(&major) {
        return Err(Error::database(format!(
            "PostgreSQL {} is not supported: pgcairn backs up PostgreSQL {OLDEST_MAJOR} to \
             {NEWEST_MAJOR}",
            version_text(version_num)
        )));
    }
    server_info(client, version_num)
}

/// Refuses `wal_level = minimal`, which cannot make an online backup.
pub fn check_wal_level(info: &ServerInfo) -> Result<()> {
    if info.wal_level == "minimal" {
        return Err(Error::database(
            "the server runs with wal_level = minimal, which cannot make an online backup: \
             set wal_level = replica (or logical) in postgresql.conf and restart the server",
        ));
    }
    Ok(())
}

fn backup_api(major: u32) -> &'static BackupApi {
    if major >= 15 { &API_15 } else { &API_13 }
}

fn version_num(client: &mut Client) -> Result<u32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .context("reading the server version")?;
    let text: String = row.try_get(0).context("reading the server version")?;
    text.trim()
        .parse()
        .map_err(|_| Error::database(format!("unexpected server_version_num {text:?}")))
}

/// `150008` → `15.8`, `130023` → `13.23`.
pub fn version_text(version_num: u32) -> String {
    format!("{}.{}", version_num / 10000, version_num % 10000)
}

fn server_info(client: &mut Client, version_num: u32) -> Result<ServerInfo> {
    let context = "reading the server's settings";
    let names = [
        "wal_level",
        "archive_mode",
        "wal_segment_size",
        "block_size",
        "segment_size",
        "data_checksums",
        "data_directory",
        "cluster_name",
    ];
    // pg_settings leaves out the rows the role may not read (data_directory without
    // pg_read_all_settings) instead of failing the query as SHOW would.
    let rows = client
        .query(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)",
            &[&&names[..]],
        )
        .context(context)?;
    let mut settings = std::collections::HashMap::new();
    for row in rows {
        let name: String = row.try_get(0).context(context)?;
        let setting: String = row.try_get(1).context(context)?;
        let unit: Option<String> = row.try_get(2).context(context)?;
        settings.insert(name, (setting, unit));
    }
    let get = |name: &str| {
        settings
            .get(name)
            .ok_or_else(|| Error::database(format!("the server did not show setting {name}")))
    };
    let bytes = |name: &str| -> Result<u64> {
        let (setting, unit) = get(name)?;
        setting_bytes(setting, unit.as_deref()).ok_or_else(|| {
            Error::database(format!(
                "unexpected value {setting:?} (unit {unit:?}) for setting {name}"
            ))
        })
    };

    let wal_segment_size = bytes("wal_segment_size")?;
    if !wal::is_valid_segment_size(wal_segment_size) {
        return Err(Error::database(format!(
            "unexpected wal_segment_size of {wal_segment_size} bytes"
        )));
    }
    let block_size = bytes("block_size")?;
    let relation_segment = bytes("segment_size")?;
    let valid_block = block_size.is_power_of_two() && (1024..=32768).contains(&block_size);
    if !valid_block || relation_segment % block_size != 0 {
        return Err(Error::database(format!(
            "unexpected block_size {block_size} or segment_size {relation_segment}"
        )));
    }
    let relation_segment_blocks = u32::try_from(relation_segment / block_size)
        .map_err(|_| Error::database(format!("unexpected segment_size {relation_segment}")))?;
    let data_checksums = get("data_checksums")?.0 == "on";
    let wal_level = get("wal_level")?.0.clone();
    let archive_mode = get("archive_mode")?.0.clone();
    let cluster_name = get("cluster_name")?.0.clone();
    let data_directory = settings
        .get("data_directory")
        .map(|(dir, _)| PathBuf::from(dir));

    let row = client
        .query_one(
            "SELECT (SELECT system_identifier FROM pg_control_system()), pg_is_in_recovery(), \
             current_user::text",
            &[],
        )
        .context("reading the system identifier (pg_control_system())")?;
    // pg_control stores an unsigned 64-bit number that SQL shows as bigint: same bits.
    let system_identifier: i64 = row.try_get(0).context(context)?;
    let in_recovery: bool = row.try_get(1).context(context)?;
    let user: String = row.try_get(2).context(context)?;

    let rows = client
        .query(
            "SELECT oid, pg_tablespace_location(oid) FROM pg_tablespace \
             WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid",
            &[],
        )
        .context("listing tablespaces")?;
    let mut tablespaces = Vec::with_capacity(rows.len());
    for row in rows {
        let oid: u32 = row.try_get(0).context("listing tablespaces")?;
        let location: String = row.try_get(1).context("listing tablespaces")?;
        tablespaces.push(Tablespace {
            oid,
            location: PathBuf::from(location),
        });
    }

    Ok(ServerInfo {
        version_num,
        system_identifier: system_identifier as u64,
        data_directory,
        wal_segment_size,
        block_size: block_size as u32,
        relation_segment_blocks,
        data_checksums,
        wal_level,
        archive_mode,
        in_recovery,
        user,
        cluster_name,
        tablespaces,
    })
}

/// A size setting in bytes, from pg_settings' `setting` and `unit` (`B`, `kB`, `8kB`, `MB`…;
/// no unit for block_size).
fn setting_bytes(setting: &str, unit: Option<&str>) -> Option<u64> {
    let value: u64 = setting.trim().parse().ok()?;
    let multiplier = match unit {
        None | Some("") => 1,
        Some(unit) => {
            let digits = unit.bytes().take_while(u8::is_ascii_digit).count();
            let (count, name) = unit.split_at(digits);
            let count: u64 = if count.is_empty() {
                1
            } else {
                count.parse().ok()?
            };
            let size: u64 = match name {
                "B" => 1,
                "kB" => 1 << 10,
                "MB" => 1 << 20,
                "GB" => 1 << 30,
                "TB" => 1 << 40,
                _ => return None,
            };
            count.checked_mul(size)?
        }
    };
    value.checked_mul(multiplier)
}

/// Refuses a role that may not run the backup functions, saying what to grant.
pub fn check_backup_privileges(client: &mut Client, info: &ServerInfo) -> Result<()> {
    let api = backup_api(info.major());
    let user = &info.user;
    let sql = format!(
        "SELECT has_function_privilege('{}', 'EXECUTE') AND has_function_privilege('{}', 'EXECUTE')",
        api.start_signature, api.stop_signature
    );
    let row = client
        .query_one(sql.as_str(), &[])
        .context("checking the privilege to run the backup functions")?;
    let allowed: bool = row
        .try_get(0)
        .context("checking the privilege to run the backup functions")?;
    if allowed {
        return Ok(());
    }
    let role = quote_ident(user);
    Err(Error::database(format!(
        "role {role} may not run {start} and {stop}: connect as a superuser, or have one run \
         GRANT EXECUTE ON FUNCTION {start} TO {role}; GRANT EXECUTE ON FUNCTION {stop} TO {role};",
        start = api.start_signature,
        stop = api.stop_signature,
    )))
}

/// `"name"` with embedded quotes doubled, as SQL wants an identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An LSN from a text column (the queries cast pg_lsn to text).
pub(crate) fn lsn_column(row: &postgres::Row, index: usize, what: &str) -> Result<Lsn> {
    optional_lsn_column(row, index, what)?
        .ok_or_else(|| Error::database(format!("{what} returned no LSN")))
}

/// [`lsn_column`] where NULL is an answer.
fn optional_lsn_column(row: &postgres::Row, index: usize, what: &str) -> Result<Option<Lsn>> {
    let text: Option<String> = row
        .try_get(index)
        .with_context(|| format!("reading {what}"))?;
    text.map(|text| {
        text.parse()
            .map_err(|err: Error| Error::database(format!("{what} returned {}", err.message())))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_settings_in_bytes() {
        assert_eq!(setting_bytes("16777216", Some("B")), Some(16 << 20));
        assert_eq!(setting_bytes("8192", None), Some(8192));
        assert_eq!(setting_bytes("131072", Some("8kB")), Some(1 << 30));
        assert_eq!(setting_bytes("16", Some("MB")), Some(16 << 20));
        assert_eq!(setting_bytes("2048", Some("kB")), Some(2 << 20));
        assert_eq!(setting_bytes("x", None), None);
        assert_eq!(setting_bytes("1", Some("parsecs")), None);
        assert_eq!(setting_bytes("18446744073709551615", Some("kB")), None);
    }

    #[test]
    fn version_text_and_quoting() {
        assert_eq!(version_text(150008), "15.8");
        assert_eq!(version_text(130023), "13.23");
        assert_eq!(quote_ident("backup"), "\"backup\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
