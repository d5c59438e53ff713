//! The primary of a standby being backed up, used only for what a standby cannot do itself:
//! a checkpoint (a standby's backup starts at its latest restartpoint, which can only follow a
//! checkpoint the primary wrote), its flushed WAL position (how far the standby must replay to
//! be current), and a WAL switch (a standby cannot end a segment, so the backup's last segment
//! reaches the archive only once the primary moves past it).

use postgres::Client;

use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::session::{ServerInfo, lsn_column, quote_ident};
use crate::pg::wal::{self, Lsn};

/// A connection to the primary of the standby being backed up.
pub struct Primary {
    client: Client,
    /// `off`, `on` or `always`: whether the primary archives its WAL.
    archive_mode: String,
}

impl Primary {
    /// Checks that `client` is connected to a primary of the same cluster as `standby`, and
    /// that the role may switch WAL there (checked now: the switch comes after the backup
    /// stopped, when failing would waste the whole backup).
    pub fn open(mut client: Client, standby: &ServerInfo) -> Result<Primary> {
        let context = "reading the primary's state (--primary-db)";
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), \
                 (SELECT system_identifier FROM pg_control_system()), \
                 current_setting('archive_mode'), \
                 has_function_privilege('pg_switch_wal()', 'EXECUTE'), current_user::text",
                &[],
            )
            .context(context)?;
        let in_recovery: bool = row.try_get(0).context(context)?;
        // The same bits as pg_control's unsigned 64-bit number (see ServerInfo).
        let system_identifier: i64 = row.try_get(1).context(context)?;
        let archive_mode: String = row.try_get(2).context(context)?;
        let may_switch: bool = row.try_get(3).context(context)?;
        let user: String = row.try_get(4).context(context)?;
        if in_recovery {
            return Err(Error::new(
                ErrorKind::Refused,
                "--primary-db connects to a server in recovery, not to a primary: give the \
                 connection of the primary at the end of the standby's replication chain",
            ));
        }
        if system_identifier as u64 != standby.system_identifier {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "--primary-db connects to the cluster with system identifier {}, but the \
                     standby backed up belongs to {}: it is not this standby's primary",
                    system_identifier as u64, standby.system_identifier
                ),
            ));
        }
        if !may_switch {
            return Err(Error::database(format!(
                "role {role} may not run pg_switch_wal() on the primary, which ends the backup's \
                 last WAL segment so that it is archived: connect as a superuser, or have one run \
                 GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {role};",
                role = quote_ident(&user)
            )));
        }
        Ok(Primary {
            client,
            archive_mode,
        })
    }

    /// The primary's `archive_mode`.
    pub fn archive_mode(&self) -> &str {
        &self.archive_mode
    }

    /// An immediate checkpoint, so that the standby's next restartpoint (where its backup
    /// starts) is at the primary's current position instead of up to checkpoint_timeout old.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.client.batch_execute("CHECKPOINT").context(
            "requesting a checkpoint on the primary (CHECKPOINT needs superuser, or on \
             PostgreSQL 15 and later the pg_checkpoint role)",
        )
    }

    /// How far the primary has flushed WAL: all the standby can receive, so the position it
    /// must replay to have everything the primary committed until now.
    pub fn flush_lsn(&mut self) -> Result<Lsn> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .context("reading the primary's WAL position")?;
        lsn_column(&row, 0, "pg_current_wal_flush_lsn() on the primary")
    }

    /// Makes sure segment `segno` of `timeline` is complete on the primary, so that it gets
    /// archived: switches WAL if the primary is still writing it. Returns false, doing nothing,
    /// when the primary writes another timeline (it has been promoted since the standby's
    /// timeline began, or the standby follows another primary), where it cannot end the
    /// segment.
    pub fn finish_segment(&mut self, timeline: u32, segno: u64, segment_size: u64) -> Result<bool> {
        let context = "reading the primary's WAL position";
        let row = self
            .client
            .query_one(
                "SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())",
                &[],
            )
            .context(context)?;
        let current = lsn_column(&row, 0, "pg_current_wal_lsn() on the primary")?;
        let file: String = row.try_get(1).context(context)?;
        let primary_timeline = wal::parse_segment_name(&file, segment_size)
            .map(|(tli, _)| tli)
            .ok_or_else(|| {
                Error::database(format!(
                    "pg_walfile_name() on the primary returned {file:?}"
                ))
            })?;
        if primary_timeline != timeline {
            return Ok(false);
        }
        if wal::segment_of(current, segment_size) <= segno {
            self.client
                .batch_execute("SELECT pg_switch_wal()")
                .context("switching WAL on the primary (pg_switch_wal())")?;
        }
        Ok(true)
    }
}
