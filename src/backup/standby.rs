//! Backing up a hot standby. The backup API runs on the standby, in the held session as on a
//! primary (PostgreSQL allows the non-exclusive API during recovery: the backup starts at the
//! standby's latest restartpoint, and the backup_label says `BACKUP FROM: standby`), and the
//! files are read from the standby's data directory. What a standby cannot do, the primary
//! does when `--primary-db` gives it (see [`crate::pg::primary`]). Without it the backup is
//! still complete and restorable: it starts at whatever restartpoint the standby reaches, and
//! the last WAL segment comes from the standby's pg_wal.
//!
//! What the standby can do wrong during the backup is refused: a promotion (the server's stop
//! function fails, or it is seen right after) and a switch to a new timeline (the WAL from the
//! start to the stop would span two timelines, which a snapshot's WAL range cannot).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::ArchiveExpectation;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::primary::Primary;
use crate::pg::session::{BackupSession, BackupStart, BackupStop, ServerInfo};
use crate::pg::wal::{self, Lsn};

/// How often the standby's replay position is read while it catches up.
const REPLAY_POLL: Duration = Duration::from_millis(100);

/// Before the backup starts: with `fast`, a checkpoint on the primary, so that the standby's
/// restartpoint (the backup's start) is now rather than up to checkpoint_timeout ago; then a
/// wait until the standby has replayed all the WAL the primary had flushed, so that the
/// snapshot holds what the primary committed before the backup began. The wait ends with an
/// error when replay stalls for `stall_timeout` (it may take longer as long as it advances);
/// zero does not wait.
pub fn catch_up(
    session: &mut BackupSession,
    primary: &mut Primary,
    fast: bool,
    stall_timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<()> {
    if fast {
        primary.checkpoint()?;
    }
    let target = primary.flush_lsn()?;
    if stall_timeout.is_zero() {
        return Ok(());
    }
    let mut last = Lsn::ZERO;
    let mut deadline = Instant::now() + stall_timeout;
    loop {
        let state = session.recovery_state()?;
        if !state.in_recovery {
            return Err(promoted("before the backup started"));
        }
        if state.replayed >= target {
            return Ok(());
        }
        if state.replayed > last {
            last = state.replayed;
            deadline = Instant::now() + stall_timeout;
        } else if Instant::now() >= deadline {
            return Err(Error::database(format!(
                "the standby replayed nothing for {} s, at {} of the {} the primary had \
                 flushed: is replication broken, or replay paused (pg_is_wal_replay_paused())? \
                 No backup was started",
                stall_timeout.as_secs(),
                state.replayed,
                target
            )));
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        std::thread::sleep(REPLAY_POLL);
    }
}

/// Stops the backup, and refuses one during which the standby stopped being one it could be
/// taken from. The server's stop function fails by itself when the standby was promoted after
/// the start (said here in pgcairn's words); this also catches a promotion before the start
/// (the backup then ran as a primary's, while pgcairn planned a standby's), one right after
/// the stop (when the WAL the snapshot needs may already be renamed `.partial`), and a switch
/// to a new timeline.
pub fn stop(session: &mut BackupSession, start: &BackupStart) -> Result<BackupStop> {
    let stop = match session.stop() {
        Ok(stop) => stop,
        Err(err) => {
            return Err(match session.recovery_state() {
                Ok(state) if !state.in_recovery => promoted(&format!(
                    "during the backup (the server: {})",
                    err.message()
                )),
                _ => err,
            });
        }
    };
    if stop.label.backup_from.as_deref() != Some("standby") {
        return Err(promoted("before the backup started"));
    }
    let state = session.recovery_state()?;
    if !state.in_recovery {
        return Err(promoted("during the backup"));
    }
    if state.min_recovery_timeline != start.timeline {
        return Err(Error::database(format!(
            "the standby moved from timeline {} to {} during the backup (its primary was \
             promoted), so the backup's WAL spans two timelines; no snapshot was written: back \
             up again once the standby follows the new primary",
            start.timeline, state.min_recovery_timeline
        )));
    }
    Ok(stop)
}

fn promoted(when: &str) -> Error {
    Error::database(format!(
        "the standby was promoted {when}; no snapshot was written: back up again, from the new \
         primary or a standby of it"
    ))
}

/// After backup stop, asks the primary (if any) to finish the backup's last segment, and says
/// what the archive can be waited for. Someone archives when the primary does, or the standby
/// with archive_mode = always; without `--primary-db`, the standby's archive_mode other than
/// off is taken to mean that its primary archives (as the setting means on a primary). A
/// primary that fails now is not worth failing a finished backup for: its segment is taken
/// from the standby's pg_wal, with a warning.
pub fn finish_wal(
    primary: Option<&mut Primary>,
    standby: &ServerInfo,
    timeline: u32,
    stop_seg: u64,
) -> ArchiveExpectation {
    let Some(primary) = primary else {
        return ArchiveExpectation {
            archived: standby.archive_mode != "off",
            stop_segment: false,
        };
    };
    let archived = primary.archive_mode() != "off" || standby.archive_mode == "always";
    let size = standby.wal_segment_size;
    let name = wal::segment_name(timeline, stop_seg, size);
    let stop_segment = match primary.finish_segment(timeline, stop_seg, size) {
        Ok(true) => true,
        Ok(false) => {
            eprintln!(
                "pgcairn: warning: the primary no longer writes timeline {timeline}, so it \
                 cannot finish WAL segment {name}: the snapshot takes it from the standby's \
                 pg_wal"
            );
            false
        }
        Err(err) => {
            eprintln!(
                "pgcairn: warning: {err}; the snapshot takes WAL segment {name} from the \
                 standby's pg_wal, and the archive receives it when the primary fills it"
            );
            false
        }
    };
    ArchiveExpectation {
        archived,
        stop_segment,
    }
}
