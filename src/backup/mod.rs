//! Backing up a running cluster into a snapshot: start backup mode, walk the data directory
//! and tablespaces into tree blobs, stop backup mode, add the WAL from the start through the
//! stop segment, and commit the snapshot. `pg` says what to copy; `repo` stores it.

mod ingest;
mod reuse;
mod standby;
mod walk;

use crate::repo::walcat::WalEntry;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::archive;
use crate::clock::{format_utc, now_ns, while_ticking};

use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::check::check_pgdata;
use crate::pg::checksum::PAGE_SIZE;
use crate::pg::primary::Primary;
use crate::pg::session::{BackupSession, BackupStart, BackupStop};
use crate::pg::wal;
use crate::repo::IndexedRepository;
use crate::repo::id::SnapshotId;
use crate::repo::lock::Locked;
use crate::repo::packer::PackerStats;
use crate::repo::snapshot::{PostgresBackup, Snapshot, Summary, TablespaceBackup};
use crate::repo::tree::{Node, NodeKind};

pub use ingest::{Counters, FileRole, Ingest, PageCheck, StoredFile};
pub use reuse::{ParentFiles, TIMESTAMP_MARGIN_NS};
use walk::{WalkTotals, Walker, node_from_metadata};

/// How often a running backup reports progress.
const PROGRESS_PERIOD: Duration = Duration::from_millis(250);
/// Read after every other file: see [`walk_global`].
const GLOBAL_PG_CONTROL: &[u8] = b"global/pg_control";

/// What to back up and how.
pub struct BackupRequest<'a> {
    pub pgdata: PathBuf,
    pub tags: Vec<String>,
    /// What `PostgresBackup::cluster_name` records.
    pub cluster_name: Option<String>,
    pub fast: bool,
    /// Read every file, even those the parent snapshot holds unchanged.
    pub reread: bool,
    /// Write no snapshot when a page fails its checksum.
    pub fail_on_checksum_error: bool,
    /// How long to wait, after backup stop, for the archive to receive the backup's WAL;
    /// zero does not wait (nor does a server with archive_mode off).
    pub archive_timeout: Duration,
    pub interrupted: &'a AtomicBool,
    /// The writer lock taken before the index was learned (format-spec §13); checked right
    /// before the snapshot is written.
    pub lock: &'a Locked,
}

/// What a running backup shows: its counters and the size of what it may read.
pub struct Progress<'a> {
    pub counters: &'a Counters,
    pub total_bytes: u64,
    pub phase: &'static str,
}

pub struct BackupReport {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    pub packer: PackerStats,
    pub parent_found: bool,
    /// Segments of the backup's WAL not in the archive when the wait ended (the snapshot
    /// carries them if they are not in `wal_missing`).
    pub unarchived: Vec<String>,
    /// The backup_label's `BACKUP FROM`: `primary`, or `standby`.
    pub backup_from: Option<String>,
    /// A standby's backup whose last segment no primary finished.
    pub stop_segment_unfinished: Option<UnfinishedSegment>,
}

/// The last segment of a standby's backup when no primary finished it: the snapshot carries
/// the standby's copy, still being written, and the archive receives the segment only when the
/// primary fills it.
pub struct UnfinishedSegment {
    pub name: String,
    /// The copy holds no WAL record after the snapshot's consistency point (the primary wrote
    /// nothing more). PostgreSQL stops at an immediate recovery target only before a following
    /// record, so until the primary writes more, a restore to `--target-immediate` of the
    /// snapshot fails; one to the end of the WAL works.
    pub ends_at_consistency: bool,
}

fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// The newest snapshot of the same data directory of the same cluster on this host: inode
/// numbers and timestamps are only comparable there.
fn find_parent(
    repo: &IndexedRepository,
    system_identifier: u64,
    pgdata: &[u8],
    hostname: &str,
) -> Result<Option<(SnapshotId, Snapshot)>> {
    // Oldest first: the last match is the newest.
    Ok(repo.load_snapshots()?.into_iter().rev().find(|(_, s)| {
        s.hostname == hostname
            && s.postgres
                .as_ref()
                .is_some_and(|pg| pg.system_identifier == system_identifier && pg.pgdata == pgdata)
    }))
}

/// Bytes of regular files under `dir`, for the progress estimate. Errors count as nothing.
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Runs a backup over `session` (connected, not yet started). On any error after backup mode
/// started, the caller drops the session, which stops backup mode; blobs already stored are
/// indexed, so the next attempt does not store them again. When the session's server is a
/// standby, `primary` (if given) is its primary, used as [`standby`] describes.
pub fn back_up(
    repo: &IndexedRepository,
    session: &mut BackupSession,
    mut primary: Option<&mut Primary>,
    request: &BackupRequest,
    on_progress: &(dyn Fn(&Progress) + Sync),
) -> Result<BackupReport> {
    check_pgdata(session.info(), &request.pgdata)?;
    let info = session.info().clone();
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    let pgdata_bytes = path_bytes(&request.pgdata);
    let parent = find_parent(repo, info.system_identifier, &pgdata_bytes, &hostname)?;
    let page_check_possible = info.data_checksums && info.block_size as usize == PAGE_SIZE;
    if info.data_checksums && !page_check_possible {
        eprintln!(
            "warning: block size {} is not 8 KiB; page checksums are not verified",
            info.block_size
        );
    }
    let total_bytes = tree_size(&request.pgdata)
        + info
            .tablespaces
            .iter()
            .map(|t| tree_size(&t.location))
            .sum::<u64>();

    let started_ns = now_ns();
    if info.in_recovery
        && let Some(primary) = primary.as_deref_mut()
    {
        standby::catch_up(
            session,
            primary,
            request.fast,
            request.archive_timeout,
            request.interrupted,
        )?;
    }
    let label = format!("pgcairn {}", format_utc(started_ns / 1_000_000_000));
    let start = session.start(&label, request.fast)?;
    if let Some(warning) = session.wal_reservation_warning() {
        eprintln!("warning: {warning}");
    }

    let packer = repo.packer();
    let ingest = Ingest {
        packer: &packer,
        gear: repo.gear_table(),
        chunker: repo.config().chunker,
        pages: page_check_possible.then_some(PageCheck {
            start_lsn: start.start_lsn.0,
            relation_segment_blocks: info.relation_segment_blocks,
        }),
        interrupted: request.interrupted,
        counters: Counters::default(),
        bad_pages: Default::default(),
    };
    let parent_files = match (&parent, request.reread) {
        (Some((_, p)), false) => Some(ParentFiles {
            started_ns: p.started_ns,
            bad_page_files: p
                .postgres
                .iter()
                .flat_map(|pg| &pg.bad_pages)
                .map(|b| b.path.clone())
                .collect(),
        }),
        _ => None,
    };
    let walker = Walker {
        ingest: &ingest,
        repo,
        parent: parent_files,
        major: info.major(),
        // Built on their own: pg_wal from the WAL the backup needs, global last of all.
        exclusions: &[b"pg_wal", b"global", GLOBAL_PG_CONTROL],
    };

    let phase = std::sync::Mutex::new("files");
    let tick = || {
        on_progress(&Progress {
            counters: &ingest.counters,
            total_bytes,
            phase: *phase.lock().unwrap_or_else(|p| p.into_inner()),
        })
    };
    let outcome = while_ticking(PROGRESS_PERIOD, tick, || {
        walk_cluster(
            &walker,
            session,
            primary,
            request,
            &start,
            parent.as_ref().map(|(_, p)| p),
            &phase,
        )
    });
    // Stored blobs are indexed even when the backup failed, so a retry finds them.
    let bad_pages =
        std::mem::take(&mut *ingest.bad_pages.lock().unwrap_or_else(|p| p.into_inner()));
    let counters = ingest.counters;
    let packer_stats = packer.flush();
    let Walked {
        root,
        totals,
        tablespaces,
        stop,
        start_seg,
        stop_seg,
        wal,
        unfinished,
    } = outcome?;
    // Releases before 14 write `master`.
    let backup_from = stop
        .label
        .backup_from
        .as_deref()
        .map(|from| if from == "master" { "primary" } else { from }.to_string());
    let packer_stats = packer_stats?;
    if request.fail_on_checksum_error && !bad_pages.is_empty() {
        let list: Vec<String> = bad_pages
            .iter()
            .map(|b| {
                format!(
                    "{} block {} (computed {:#06x}, stored {:#06x})",
                    String::from_utf8_lossy(&b.path),
                    b.block,
                    b.expected,
                    b.found
                )
            })
            .collect();
        return Err(Error::new(
            ErrorKind::DataCorruption,
            format!(
                "{} pages failed their checksum; no snapshot was written:\n  {}",
                bad_pages.len(),
                list.join("\n  ")
            ),
        ));
    }

    let snapshot = Snapshot {
        program_version: format!("pgcairn {}", env!("CARGO_PKG_VERSION")),
        started_ns,
        finished_ns: now_ns(),
        hostname,
        tags: request.tags.clone(),
        parent: parent.as_ref().map(|(id, _)| *id),
        root,
        postgres: Some(PostgresBackup {
            server_version_num: info.version_num,
            system_identifier: info.system_identifier,
            pgdata: pgdata_bytes,
            timeline: start.timeline,
            start_lsn: start.start_lsn.0,
            stop_lsn: stop.stop_lsn.0,
            start_wal: wal::segment_name(start.timeline, start_seg, info.wal_segment_size),
            stop_wal: wal::segment_name(start.timeline, stop_seg, info.wal_segment_size),
            wal_segment_size: info.wal_segment_size,
            backup_label: stop.backup_label,
            tablespace_map: stop.tablespace_map,
            data_checksums: info.data_checksums,
            tablespaces,
            bad_pages,
            wal_missing: wal.missing,
            cluster_name: request.cluster_name.clone(),
        }),
        summary: Summary {
            files: totals.files,
            dirs: totals.dirs,
            logical_bytes: totals.logical_bytes,
            read_bytes: counters.bytes_read.load(Ordering::Relaxed),
            reused_files: counters.files_reused.load(Ordering::Relaxed),
            new_blobs: packer_stats.new_blobs,
            new_stored_bytes: packer_stats.new_stored_bytes,
        },
    };
    request.lock.check_current()?;
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupReport {
        id,
        snapshot,
        packer: packer_stats,
        parent_found: parent.is_some(),
        unarchived: wal.unarchived,
        backup_from,
        stop_segment_unfinished: unfinished,
    })
}

/// What walking the cluster produced.
struct Walked {
    root: Vec<crate::repo::id::BlobId>,
    totals: WalkTotals,
    tablespaces: Vec<TablespaceBackup>,
    stop: BackupStop,
    start_seg: u64,
    stop_seg: u64,
    wal: WalCarried,
    unfinished: Option<UnfinishedSegment>,
}

/// The data directory and tablespaces, then backup stop, then the WAL the backup needs.
fn walk_cluster(
    walker: &Walker,
    session: &mut BackupSession,
    primary: Option<&mut Primary>,
    request: &BackupRequest,
    start: &BackupStart,
    parent: Option<&Snapshot>,
    phase: &std::sync::Mutex<&'static str>,
) -> Result<Walked> {
    let info = &session.info().clone();
    let set_phase = |p| *phase.lock().unwrap_or_else(|e| e.into_inner()) = p;
    let parent_root = parent.map(|p| p.root.as_slice());
    let (mut root, mut totals) = walker.walk_dir(&request.pgdata, b"", parent_root)?;
    let tablespaces = walk_tablespaces(walker, &info.tablespaces, parent, &mut totals)?;
    root.push(walk_global(
        walker,
        &request.pgdata,
        parent_root,
        &mut totals,
    )?);
    set_phase("stopping backup");
    let stop = if info.in_recovery {
        standby::stop(session, start)?
    } else {
        session.stop()?
    };
    let start_seg = wal::segment_of(start.start_lsn, info.wal_segment_size);
    let stop_seg = wal::prev_segment_of(stop.stop_lsn, info.wal_segment_size).max(start_seg);
    let names = wal::backup_wal_names(start.timeline, start_seg, stop_seg, info.wal_segment_size);
    let stop_name = wal::segment_name(start.timeline, stop_seg, info.wal_segment_size);
    let expected = if info.in_recovery {
        standby::finish_wal(primary, info, start.timeline, stop_seg)
    } else {
        // A primary's stop function switched WAL: every segment is finished.
        ArchiveExpectation {
            archived: info.archive_mode != "off",
            stop_segment: true,
        }
    };
    set_phase("waiting for the archive");
    let wait = if expected.archived {
        request.archive_timeout
    } else {
        Duration::ZERO
    };
    let archived = archive::wait_for_archive(
        walker.repo,
        info.system_identifier,
        &names,
        &|name| expected.stop_segment || name != stop_name,
        wait,
        request.interrupted,
    )?;
    set_phase("WAL");
    // Read before the standby's copy of an unfinished last segment is: it holds at least this.
    let replayed = if info.in_recovery && !expected.stop_segment {
        Some(session.recovery_state()?.replayed)
    } else {
        None
    };
    let (wal_dir, mut wal) = walk_wal(
        walker,
        &request.pgdata,
        &names,
        &archived,
        info.major(),
        &mut totals,
    )?;
    let unfinished = match replayed {
        Some(replayed)
            if !archived.contains_key(&stop_name) && !wal.missing.contains(&stop_name) =>
        {
            wal.unarchived.retain(|n| *n != stop_name);
            Some(UnfinishedSegment {
                name: stop_name,
                ends_at_consistency: replayed <= stop.stop_lsn,
            })
        }
        _ => None,
    };
    session.release_wal_reservation();
    root.push(wal_dir);
    let root = walker.ingest.packer.add_dir(root)?;
    Ok(Walked {
        root,
        totals,
        tablespaces,
        stop,
        start_seg,
        stop_seg,
        wal,
        unfinished,
    })
}

/// The `global` directory, walked after the rest of the cluster, with `pg_control` read last
/// of all files. A backup from a standby is consistent where the minimum recovery point in the
/// pg_control it holds says (PostgreSQL takes the backup's end from there, having no end-of-
/// backup record), so that copy must be at least as new as every page copied; the standby
/// advances the point before it writes a page. pg_basebackup sends pg_control last for the
/// same reason. The stop function comes after, so the point is not past the stop LSN, and
/// the WAL the snapshot carries reaches it.
fn walk_global(
    walker: &Walker,
    pgdata: &Path,
    parent_root: Option<&[crate::repo::id::BlobId]>,
    totals: &mut WalkTotals,
) -> Result<Node> {
    let dir = pgdata.join("global");
    let parent_trees = match (&walker.parent, parent_root) {
        (Some(_), Some(root)) => walker
            .repo
            .dir_entries(root)?
            .into_iter()
            .find(|n| n.name == b"global")
            .and_then(|n| match n.kind {
                NodeKind::Dir { trees } => Some(trees),
                _ => None,
            }),
        _ => None,
    };
    let (mut nodes, walked) = walker.walk_dir(&dir, b"global", parent_trees.as_deref())?;
    let path = pgdata.join(std::ffi::OsStr::from_bytes(GLOBAL_PG_CONTROL));
    let meta = std::fs::symlink_metadata(&path).map_err(Error::io_at("reading", &path))?;
    // Always read: the parent's copy is never the one the snapshot's WAL ends at.
    let control = walker
        .file(
            &path,
            GLOBAL_PG_CONTROL,
            b"pg_control",
            &meta,
            FileRole::Other,
            None,
        )?
        .ok_or_else(|| Error::local(format!("{} vanished", path.display())))?;
    if let NodeKind::File { size, .. } = &control.kind {
        totals.files += 1;
        totals.logical_bytes += size;
    }
    nodes.push(control);
    let dir_meta = std::fs::metadata(&dir).map_err(Error::io_at("reading", &dir))?;
    let trees = walker.ingest.packer.add_dir(nodes)?;
    totals.files += walked.files;
    totals.dirs += walked.dirs + 1;
    totals.logical_bytes += walked.logical_bytes;
    Ok(node_from_metadata(
        b"global",
        &dir_meta,
        NodeKind::Dir { trees },
    ))
}

/// Walks each tablespace's directory (only the server's own version directory is kept).
fn walk_tablespaces(
    walker: &Walker,
    tablespaces: &[crate::pg::session::Tablespace],
    parent: Option<&Snapshot>,
    totals: &mut WalkTotals,
) -> Result<Vec<TablespaceBackup>> {
    let mut out = Vec::new();
    for ts in tablespaces {
        let location = path_bytes(&ts.location);
        let parent_root = parent
            .and_then(|p| p.postgres.as_ref())
            .and_then(|pg| {
                pg.tablespaces
                    .iter()
                    .find(|t| t.oid == ts.oid && t.location == location)
            })
            .map(|t| t.root.as_slice());
        let rel = format!("pg_tblspc/{}", ts.oid);
        let (nodes, t) = walker
            .walk_dir(&ts.location, rel.as_bytes(), parent_root)
            .with_context(|| format!("tablespace {} at {}", ts.oid, ts.location.display()))?;
        totals.files += t.files;
        totals.dirs += t.dirs;
        totals.logical_bytes += t.logical_bytes;
        out.push(TablespaceBackup {
            oid: ts.oid,
            location,
            root: walker.ingest.packer.add_dir(nodes)?,
        });
    }
    Ok(out)
}

/// Where the snapshot's WAL came from.
struct WalCarried {
    /// Not in the archive when the wait ended.
    unarchived: Vec<String>,
    /// Neither archived nor still in the server's pg_wal: the snapshot does not carry them.
    missing: Vec<String>,
}

/// Which of the backup's WAL the archive is expected to receive.
struct ArchiveExpectation {
    /// Someone archives this cluster's WAL.
    archived: bool,
    /// The backup's last segment will be archived too: the server finished it. Otherwise it is
    /// still being written, and reaches the archive only when the primary fills it.
    stop_segment: bool,
}

/// The snapshot's `pg_wal`: its kept subdirectories (empty) and the WAL files the backup
/// needs: the archived copy of each when there is one (nothing to read, and the exact bytes
/// PostgreSQL archived), else the file in the server's pg_wal, where the replication slot held
/// it.
fn walk_wal(
    walker: &Walker,
    pgdata: &Path,
    names: &[String],
    archived: &HashMap<String, WalEntry>,
    major: u32,
    totals: &mut WalkTotals,
) -> Result<(Node, WalCarried)> {
    let dir = pgdata.join("pg_wal");
    let stat = |p: &Path| {
        std::fs::metadata(p).map_err(|e| Error::local_io(e, format!("reading {}", p.display())))
    };
    let dir_meta = stat(&dir)?;
    let mut nodes = Vec::new();
    let mut subdirs = vec![&b"archive_status"[..]];
    if major >= 17 {
        subdirs.push(b"summaries");
    }
    for name in subdirs {
        let path = dir.join(std::ffi::OsStr::from_bytes(name));
        if let Ok(meta) = std::fs::metadata(&path) {
            let trees = walker.ingest.packer.add_dir(Vec::new())?;
            nodes.push(node_from_metadata(name, &meta, NodeKind::Dir { trees }));
            totals.dirs += 1;
        }
    }
    let mut carried = WalCarried {
        unarchived: Vec::new(),
        missing: Vec::new(),
    };
    let files: Vec<(&String, Result<Option<Node>>)> = {
        use rayon::prelude::*;
        names
            .par_iter()
            .map(|name| {
                if let Some(entry) = archived.get(name) {
                    return (name, Ok(Some(archived_node(entry, &dir_meta))));
                }
                let path = dir.join(name);
                let Ok(meta) = std::fs::metadata(&path) else {
                    return (name, Ok(None));
                };
                let rel = format!("pg_wal/{name}");
                let node = walker.file(
                    &path,
                    rel.as_bytes(),
                    name.as_bytes(),
                    &meta,
                    FileRole::Wal,
                    None,
                );
                (name, node)
            })
            .collect()
    };
    for (name, file) in files {
        if !archived.contains_key(name) {
            carried.unarchived.push(name.clone());
        }
        let Some(node) = file? else {
            // A history file is only there after a promotion; a segment must be somewhere.
            if !wal::is_history_file_name(name) {
                carried.missing.push(name.clone());
            }
            continue;
        };
        if let NodeKind::File { size, .. } = &node.kind {
            totals.files += 1;
            totals.logical_bytes += size;
        }
        nodes.push(node);
    }
    carried.unarchived.retain(|n| !carried.missing.contains(n));
    let trees = walker.ingest.packer.add_dir(nodes)?;
    totals.dirs += 1;
    Ok((
        node_from_metadata(b"pg_wal", &dir_meta, NodeKind::Dir { trees }),
        carried,
    ))
}

/// The node of a WAL file taken from the archive: the server's pg_wal files are private to
/// its owner, who also owns the directory.
fn archived_node(entry: &WalEntry, pg_wal: &std::fs::Metadata) -> Node {
    use std::os::unix::fs::MetadataExt;
    entry.as_node(pg_wal.uid(), pg_wal.gid())
}
