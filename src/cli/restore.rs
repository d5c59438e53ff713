//! `pgcairn restore`: rebuild a data directory from a snapshot and configure recovery.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{ArgGroup, Args, ValueEnum};

use super::GlobalOptions;
use super::format;
use super::progress::Progress;
use crate::archive::window::WalIndex;
use crate::clock::format_utc;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::history::{HistoryEntry, is_on_history, timeline_at};
use crate::pg::recovery::{self, RecoverySettings, RecoveryTarget, TargetAction};
use crate::pg::target::{parse_target_name, parse_target_time, parse_target_xid};
use crate::pg::wal::{self, Lsn};
use crate::repo::IndexedRepository;
use crate::repo::cluster::ClusterSelector;
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::{PostgresBackup, Snapshot};
use crate::restore::select::{self, Aim, Candidate, WalEnd, WalPlan};
use crate::restore::{self, RestoreReport, RestoreRequest};

#[derive(Args, Debug, Clone)]
#[command(
    group(ArgGroup::new("target").multiple(false).args([
        "target_time", "target_lsn", "target_xid", "target_name", "target_immediate",
    ])),
    after_help = "\
Examples:
  pgcairn restore --pgdata /var/lib/postgresql/15/restored
  pgcairn restore --pgdata /srv/pg --target-time '2026-11-21 12:00:00+00' --target-action promote
  pgcairn restore --preview --target-lsn 0/5000060 --json
  pgcairn restore --pgdata /srv/pg --target-immediate --json | jq .restored.bytes
  pgcairn restore 3c44142e --pgdata /srv/pg --target-immediate --target-action promote
  pgcairn restore --pgdata /srv/pg --target-name 'before upgrade' --cluster sales
  pgcairn restore latest --pgdata /srv/pg --delta --tablespace-map /mnt/ts1=/srv/ts1

Which snapshot: without SNAPSHOT (or with `latest`), a time or LSN target picks the newest
snapshot consistent at or before the target (its stop LSN, the time it finished), and so does
a restore point the archived WAL's scans found (on the way to the target timeline; the newest
of that name), and an xid, by the first archived segment whose commits span it (a prepared
transaction's, or one committed in a snapshot's own stop segment, cannot be placed: then the
newest snapshot is taken, and an older one must be named); no target picks the newest. Only restorable snapshots count (every WAL segment
the snapshot needs is in the snapshot or the archive; `pgcairn snapshots` shows which are), and
only those on the history of the target timeline. A repository holding several clusters needs
--system-id. A SNAPSHOT named with a time or LSN target earlier than its consistency point is
refused: recovery cannot stop before a snapshot is consistent.

At most one target; without one, recovery replays all archived WAL. --target-time takes a
time with an offset or zone (without one, this machine's local time) and is written in UTC, so
the server's timezone setting cannot change its meaning.

--preview prints the plan (snapshot, WAL to replay and whether the archive has all of it,
bytes to fetch, the recovery settings as they would be written) and changes nothing. --json
prints the plan as one object (docs/json.md), after a restore with `restored` (files and bytes
written, seconds); with --preview, `restored` is null.

The directory (and each tablespace directory) must be missing or empty, unless --delta is
given: then files whose chunks already match are left alone, others rewritten, and anything
the snapshot does not have is removed. Files get the running user as owner: run restore as
the user the server runs as.

The restored directory has backup_label (and tablespace_map), recovery.signal, and in
postgresql.auto.conf a restore_command that calls this pgcairn with the same --repo,
--config, --password-file and --cache-dir (never a password), and archive_mode = off (use
--archive-mode preserve to keep archiving, e.g. when replacing the primary itself).
pg_control is written last and everything is fsynced before restore reports success.

Exit codes: 0 done (or previewed); 2 usage (bad target, several clusters and no --system-id);
4 no repository; 6 refused: the target is before the snapshot's consistency point (or before
every snapshot's), the snapshot's WAL is not all archived, no snapshot is on the target
timeline's history, the directory is not empty (without --delta) or a server runs in it;
10 damaged data in the repository; 13 local I/O error; 130 interrupted."
)]
pub struct RestoreArgs {
    /// Snapshot id (or a unique prefix of it); `latest` or nothing: chosen by the target.
    #[arg(value_name = "SNAPSHOT|latest")]
    pub snapshot: Option<String>,

    /// Data directory to restore into [env: PGDATA].
    #[arg(
        long,
        env = "PGDATA",
        value_name = "DIR",
        required_unless_present = "preview"
    )]
    pub pgdata: Option<PathBuf>,

    /// Reuse an existing data directory: rewrite only what differs.
    #[arg(long)]
    pub delta: bool,

    /// Restore the tablespace at OLD to NEW instead (repeatable).
    #[arg(long = "tablespace-map", value_name = "OLD=NEW", value_parser = parse_mapping)]
    pub tablespace_map: Vec<(PathBuf, PathBuf)>,

    /// Stop at this time (recovery_target_time), e.g. '2026-11-21 12:00:00+00'.
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,

    /// Stop at this WAL position (recovery_target_lsn), e.g. 0/5000060.
    #[arg(long, value_name = "LSN")]
    pub target_lsn: Option<String>,

    /// Stop at this transaction (recovery_target_xid).
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<String>,

    /// Stop at this restore point, made by pg_create_restore_point (recovery_target_name).
    #[arg(long, value_name = "NAME")]
    pub target_name: Option<String>,

    /// Stop as soon as the snapshot is consistent.
    #[arg(long)]
    pub target_immediate: bool,

    /// What the server does at the recovery target [default: pause, PostgreSQL's default].
    #[arg(long, value_enum, requires = "target")]
    pub target_action: Option<Action>,

    /// Timeline to recover into: a number, `latest` (the newest in the archive; PostgreSQL's
    /// default) or `current` (the snapshot's).
    #[arg(long, value_name = "TLI|latest|current", value_parser = parse_timeline)]
    pub target_timeline: Option<String>,

    /// The cluster to restore, when the repository holds snapshots of several: the name it
    /// was backed up under (backup --cluster, else its cluster_name setting) or its system
    /// identifier.
    #[arg(long, alias = "system-id", value_name = "NAME|SYSTEM_ID")]
    pub cluster: Option<ClusterSelector>,

    /// Print the plan and change nothing.
    #[arg(long)]
    pub preview: bool,

    /// Print the plan as one JSON object on stdout, after a restore with what it wrote
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,

    /// Whether the restored server keeps archive_mode.
    #[arg(long, value_enum, default_value_t = ArchiveMode::Off)]
    pub archive_mode: ArchiveMode,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Action {
    Pause,
    Promote,
    Shutdown,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveMode {
    /// archive_mode = off: a restored copy never pushes WAL into the original's archive.
    Off,
    /// Keep the snapshot's archive_mode setting.
    Preserve,
}

fn parse_mapping(text: &str) -> std::result::Result<(PathBuf, PathBuf), String> {
    let (old, new) = text
        .split_once('=')
        .ok_or_else(|| format!("expected OLD=NEW, got {text:?}"))?;
    if !old.starts_with('/') || !new.starts_with('/') {
        return Err(format!("both paths must be absolute: {text:?}"));
    }
    Ok((PathBuf::from(old), PathBuf::from(new)))
}

/// `--target-timeline`: what `recovery_target_timeline` accepts.
fn parse_timeline(text: &str) -> std::result::Result<String, String> {
    let number = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u32>().is_ok_and(|t| t >= 1);
    if number || text == "latest" || text == "current" {
        Ok(text.to_string())
    } else {
        Err(format!(
            "expected a timeline number, \"latest\" or \"current\", got {text:?}"
        ))
    }
}

/// The recovery target of the command line, in the three forms restore needs.
struct Target {
    /// What is written for the server.
    recovery: Option<RecoveryTarget>,
    /// What the snapshot's consistency point must not be after.
    aim: Aim,
    /// Where replay is expected to end.
    end: WalEnd,
    /// `--target-xid`: the transaction, whose commit the archive's summaries may place.
    xid: Option<u32>,
}

impl Target {
    fn of(args: &RestoreArgs) -> Result<Target> {
        let target = |recovery, aim, end| Target {
            recovery: Some(recovery),
            aim,
            end,
            xid: None,
        };
        Ok(if let Some(text) = &args.target_time {
            let time = parse_target_time(text)?;
            target(
                RecoveryTarget::Time(time.text),
                Aim::Time(time.unix_micros),
                WalEnd::Time(time.unix_micros),
            )
        } else if let Some(text) = &args.target_lsn {
            let lsn: Lsn = text.parse()?;
            target(
                RecoveryTarget::Lsn(lsn.to_string()),
                Aim::Lsn(lsn),
                WalEnd::Lsn(lsn),
            )
        } else if let Some(text) = &args.target_xid {
            let xid = parse_target_xid(text)?;
            Target {
                xid: Some(xid.xid),
                ..target(
                    RecoveryTarget::Xid(xid.text()),
                    Aim::Newest,
                    WalEnd::EndOfArchive,
                )
            }
        } else if let Some(text) = &args.target_name {
            let name = parse_target_name(text)?.to_string();
            target(
                RecoveryTarget::Name(name.clone()),
                Aim::Newest,
                WalEnd::RestorePoint(name),
            )
        } else if args.target_immediate {
            target(RecoveryTarget::Immediate, Aim::Newest, WalEnd::Consistency)
        } else {
            Target {
                recovery: None,
                aim: Aim::Newest,
                end: WalEnd::EndOfArchive,
                xid: None,
            }
        })
    }
}

/// The timeline recovery heads for and its history: which snapshots can reach it, and from
/// which timeline each segment is read.
struct TimelinePath {
    /// None: `current`, each snapshot's own timeline.
    target: Option<u32>,
    /// The target timeline's history file, parsed; empty for timeline 1.
    history: Vec<HistoryEntry>,
}

impl TimelinePath {
    /// The timeline `--target-timeline` names for cluster `system_id` (default `latest`, as on
    /// PostgreSQL 12 and later), with its history from the archive.
    fn resolve(
        repo: &IndexedRepository,
        archive: &WalIndex,
        candidates: &[Candidate],
        system_id: u64,
        requested: Option<&str>,
    ) -> Result<TimelinePath> {
        let target = match requested {
            Some("current") => {
                return Ok(TimelinePath {
                    target: None,
                    history: Vec::new(),
                });
            }
            // The server's findNewestTimeLine: up from the known timelines while the archive
            // has the next one's history file.
            None | Some("latest") => {
                let mut newest = candidates
                    .iter()
                    .filter(|c| c.pg.system_identifier == system_id)
                    .map(|c| c.pg.timeline)
                    .max()
                    .unwrap_or(1);
                while archive.contains(system_id, &wal::history_file_name(newest + 1)) {
                    newest += 1;
                }
                newest
            }
            Some(number) => number
                .parse()
                .map_err(|_| Error::usage(format!("invalid timeline {number:?}")))?,
        };
        let history = if target == 1 {
            Vec::new()
        } else {
            let name = wal::history_file_name(target);
            let entry = archive.get(system_id, &name).ok_or_else(|| {
                Error::new(
                    ErrorKind::Refused,
                    format!(
                        "timeline {target} has no history file ({name}) in the archive of cluster \
                         {system_id}; the server could not recover into it"
                    ),
                )
            })?;
            crate::archive::read_history(repo, entry)?
        };
        Ok(TimelinePath {
            target: Some(target),
            history,
        })
    }

    /// Whether recovery from this snapshot can head for the target timeline.
    fn reaches(&self, pg: &PostgresBackup) -> bool {
        match self.target {
            None => true,
            Some(t) => is_on_history(&self.history, t, pg.timeline, Lsn(pg.stop_lsn)),
        }
    }

    /// Whether recovery into the target timeline reads the WAL at `lsn` from `timeline`.
    fn reads(&self, timeline: u32, lsn: Lsn) -> bool {
        match self.target {
            None => true,
            Some(t) => timeline_at(&self.history, t, lsn) == timeline,
        }
    }

    /// The timeline segment `segno` is read from, recovering `pg` into the target
    /// (XLogFileReadAnyTLI: the newest timeline of the history that began by the segment's
    /// end).
    fn timeline_of(&self, pg: &PostgresBackup, segno: u64) -> u32 {
        match self.target {
            None => pg.timeline,
            Some(t) => {
                let last_byte = (segno + 1) * pg.wal_segment_size - 1;
                timeline_at(&self.history, t, Lsn(last_byte))
            }
        }
    }
}

/// What the choice of snapshot aims at: for a restore point, where the archive's scans found
/// it on the way to the target timeline (a snapshot consistent after it could not stop there);
/// else what the target says.
fn aim_of(target: &Target, timelines: &TimelinePath, archive: &WalIndex, system_id: u64) -> Aim {
    let on_path = |timeline, lsn| timelines.reads(timeline, lsn);
    let found = match (&target.end, target.xid) {
        (WalEnd::RestorePoint(name), _) => {
            select::restore_point_lsn(archive, system_id, name, &on_path)
        }
        (_, Some(xid)) => select::xid_commit_lsn(archive, system_id, xid, &on_path),
        _ => None,
    };
    found.map_or(target.aim, Aim::Lsn)
}

/// What a restore will do, computed before anything is written.
struct Plan<'a> {
    chosen: Candidate<'a>,
    wal: WalPlan,
    recovery: RecoverySettings,
    end: WalEnd,
}

fn plan<'a>(
    global: &GlobalOptions,
    args: &RestoreArgs,
    repo: &IndexedRepository,
    candidates: &[Candidate<'a>],
    archive: &WalIndex,
    target: Target,
) -> Result<Plan<'a>> {
    let named = args.snapshot.as_deref().filter(|s| *s != "latest");
    let resolve_timeline = |sysid| {
        TimelinePath::resolve(
            repo,
            archive,
            candidates,
            sysid,
            args.target_timeline.as_deref(),
        )
    };
    let (chosen, timelines) = match named {
        Some(prefix) => {
            let id = repo.find_snapshot(prefix)?;
            let chosen = *candidates.iter().find(|c| c.id == id).ok_or_else(|| {
                Error::usage(format!(
                    "snapshot {} is not of a PostgreSQL cluster; nothing to restore",
                    id.short()
                ))
            })?;
            select::check_cluster(candidates, args.cluster.as_ref(), &chosen)?;
            let sysid = chosen.pg.system_identifier;
            let timelines = resolve_timeline(sysid)?;
            let aim = aim_of(&target, &timelines, archive, sysid);
            select::check_chosen(&chosen, aim, archive)?;
            if !timelines.reaches(chosen.pg) {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "snapshot {} (timeline {}, consistent at {}) is not on the history of \
                         timeline {}; choose a snapshot of that timeline or give \
                         --target-timeline current",
                        id.short(),
                        chosen.pg.timeline,
                        Lsn(chosen.pg.stop_lsn),
                        timelines.target.unwrap_or(chosen.pg.timeline)
                    ),
                ));
            }
            (chosen, timelines)
        }
        None => {
            let sysid = select::cluster_to_restore(candidates, args.cluster.as_ref())?;
            let timelines = resolve_timeline(sysid)?;
            let aim = aim_of(&target, &timelines, archive, sysid);
            let reaches = |pg: &PostgresBackup| timelines.reaches(pg);
            let chosen =
                select::choose(candidates, sysid, aim, archive, &reaches).or_else(|e| {
                    // Summaries place an xid only to the segment: when no snapshot ends before that
                    // segment starts, the newest is the best guess, as without summaries.
                    match target.xid {
                        Some(_) => select::choose(candidates, sysid, target.aim, archive, &reaches),
                        None => Err(e),
                    }
                })?;
            (chosen, timelines)
        }
    };
    let wal = select::wal_plan(chosen.pg, &target.end, archive, &|segno| {
        timelines.timeline_of(chosen.pg, segno)
    });
    let recovery = RecoverySettings {
        restore_command: global.server_command(&format!(
            "archive-get --system-id {} %f \"%p\"",
            chosen.pg.system_identifier
        ))?,
        target: target.recovery,
        target_action: args.target_action.map(|a| match a {
            Action::Pause => TargetAction::Pause,
            Action::Promote => TargetAction::Promote,
            Action::Shutdown => TargetAction::Shutdown,
        }),
        target_timeline: args.target_timeline.clone(),
        archive_mode_off: args.archive_mode == ArchiveMode::Off,
    };
    Ok(Plan {
        chosen,
        wal,
        recovery,
        end: target.end,
    })
}

/// Where the plan expects replay to end, in words.
fn describe_end(plan: &Plan) -> String {
    let last = plan.wal.last().unwrap_or("?");
    match (&plan.end, plan.wal.target_found) {
        (WalEnd::Consistency, _) => "at the snapshot's consistency point".to_string(),
        (WalEnd::Lsn(l), _) => format!("at LSN {l}, in {last}"),
        (WalEnd::Time(t), true) => format!(
            "at {} (the first commit after it is in {last})",
            select::format_time_us(*t)
        ),
        (WalEnd::Time(t), false) => format!(
            "at {}; no archived commit after it was found, so replay runs to the end of the \
             WAL ({last}) and may not reach it",
            select::format_time_us(*t)
        ),
        (WalEnd::RestorePoint(n), true) => format!("at restore point {n:?}, in {last}"),
        (WalEnd::RestorePoint(n), false) => format!(
            "at restore point {n:?}, not found in the archived WAL's scans: replay runs to the \
             end of the WAL ({last}) and may not reach it"
        ),
        (WalEnd::EndOfArchive, _) => format!("at the end of the contiguous WAL, {last}"),
    }
}

/// A snapshot as `restore --json` and `verify --restore-test --json` name it.
pub(super) fn snapshot_json(
    id: &SnapshotId,
    snapshot: &Snapshot,
    pg: &PostgresBackup,
) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_hex(),
        "time": format_utc(snapshot.started_ns / 1_000_000_000),
        "started_ns": snapshot.started_ns,
        "finished": format_utc(snapshot.finished_ns / 1_000_000_000),
        "finished_ns": snapshot.finished_ns,
        "postgres_version": pg.server_version_num,
        "system_identifier": pg.system_identifier.to_string(),
        "cluster_name": pg.cluster_name,
        "timeline": pg.timeline,
        "start_lsn": Lsn(pg.start_lsn).to_string(),
        "stop_lsn": Lsn(pg.stop_lsn).to_string(),
        "bad_pages": pg.bad_pages.len(),
    })
}

/// Segments of the plan's WAL that only the snapshot holds (not archived).
fn in_snapshot_only(plan: &Plan) -> usize {
    plan.wal
        .segments
        .iter()
        .filter(|s| s.archived.is_none() && s.in_snapshot)
        .count()
}

/// The plan, and what a restore did (None: a preview), for `--json`.
fn plan_json(
    plan: &Plan,
    restored: Option<(&Path, &RestoreReport, Duration)>,
) -> Result<serde_json::Value> {
    let logical = plan.chosen.snapshot.summary.logical_bytes;
    Ok(serde_json::json!({
        "preview": restored.is_none(),
        "snapshot": snapshot_json(&plan.chosen.id, plan.chosen.snapshot, plan.chosen.pg),
        "wal": {
            "first": plan.wal.first(),
            "last": plan.wal.last(),
            "segments": plan.wal.segments.len(),
            "archived_segments": plan.wal.segments.iter().filter(|s| s.archived.is_some()).count(),
            "in_snapshot_only": in_snapshot_only(plan),
            "missing": plan.wal.missing,
            "complete": plan.wal.missing.is_empty(),
            "target_found": plan.wal.target_found,
            "ends": describe_end(plan),
        },
        "bytes": {
            "snapshot": logical,
            "wal": plan.wal.archived_bytes,
            "total": logical + plan.wal.archived_bytes,
        },
        "recovery_settings": recovery::settings_lines(&plan.recovery)?,
        "restored": restored.map(|(pgdata, report, elapsed)| serde_json::json!({
            "pgdata": pgdata.display().to_string(),
            "files": report.files,
            "bytes": report.bytes,
            "bytes_written": report.bytes_written,
            "bytes_kept": report.bytes_kept,
            "removed": report.removed,
            "seconds": elapsed.as_secs_f64(),
        })),
    }))
}

fn print_preview(plan: &Plan, json: bool) -> Result<()> {
    if json {
        println!("{}", plan_json(plan, None)?);
        return Ok(());
    }
    let settings = recovery::settings_lines(&plan.recovery)?;
    let pg = plan.chosen.pg;
    let snapshot = plan.chosen.snapshot;
    let logical = snapshot.summary.logical_bytes;
    let in_snapshot_only = in_snapshot_only(plan);
    println!("restore plan (preview; nothing was changed)");
    println!(
        "  snapshot  {} taken {} UTC, cluster {}, timeline {}, LSN {} .. {} (consistent at {}, \
         finished {})",
        plan.chosen.id.short(),
        format_utc(snapshot.started_ns / 1_000_000_000),
        pg.system_identifier,
        pg.timeline,
        Lsn(pg.start_lsn),
        Lsn(pg.stop_lsn),
        Lsn(pg.stop_lsn),
        select::format_time_us(snapshot.finished_ns / 1000)
    );
    println!(
        "  WAL       {} .. {}: {} segments, {} archived ({}), {} only in the snapshot",
        plan.wal.first().unwrap_or("-"),
        plan.wal.last().unwrap_or("-"),
        plan.wal.segments.len(),
        plan.wal.segments.len() - plan.wal.missing.len() - in_snapshot_only,
        format::bytes(plan.wal.archived_bytes),
        in_snapshot_only
    );
    if plan.wal.missing.is_empty() {
        println!("            every segment of the range is available");
    } else {
        println!(
            "            MISSING from the archive (recovery stops at the first): {}",
            plan.wal.missing.join(", ")
        );
    }
    println!("  stops     {}", describe_end(plan));
    println!(
        "  fetch     {} (snapshot {} + archived WAL {})",
        format::bytes(logical + plan.wal.archived_bytes),
        format::bytes(logical),
        format::bytes(plan.wal.archived_bytes)
    );
    println!("  settings  (appended to postgresql.auto.conf, with recovery.signal)");
    for line in settings {
        println!("    {line}");
    }
    Ok(())
}

pub fn run(global: &GlobalOptions, args: &RestoreArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    // A bad target is a usage error before the password is asked for.
    let target = Target::of(args)?;
    let repo = global.open_indexed()?;
    let catalogue = repo.wal_catalogue()?;
    let archive = WalIndex::new(&catalogue);
    let snapshots = repo.load_snapshots()?;
    let candidates = select::candidates(&snapshots);
    let plan = plan(global, args, &repo, &candidates, &archive, target)?;
    if args.preview {
        return print_preview(&plan, args.json);
    }
    let Some(pgdata) = &args.pgdata else {
        return Err(Error::usage("--pgdata is required (or PGDATA)"));
    };
    let (id, snapshot) = (plan.chosen.id, plan.chosen.snapshot);
    if global.password_file.is_none() && std::env::var_os("PGCAIRN_PASSWORD").is_some() {
        eprintln!(
            "pgcairn: note: the password came from PGCAIRN_PASSWORD; the server's \
             restore_command needs it too (set it in the server's environment, or restore with \
             --password-file so the command carries the file's path)"
        );
    }
    if !plan.wal.missing.is_empty() && !global.quiet {
        eprintln!(
            "pgcairn: warning: WAL the recovery needs is not in the archive: {}; recovery will \
             stop at the first missing segment",
            plan.wal.missing.join(", ")
        );
    }
    let request = RestoreRequest {
        pgdata: super::global::absolute(pgdata)?,
        delta: args.delta,
        tablespace_map: args.tablespace_map.clone(),
        recovery: plan.recovery.clone(),
        interrupted: &interrupted,
    };
    let began = Instant::now();
    let progress = Mutex::new(Progress::new(global.quiet));
    let report = restore::restore(&repo, snapshot, &request, &|p| {
        let written = p.counters.bytes_written.load(Ordering::Relaxed)
            + p.counters.bytes_kept.load(Ordering::Relaxed);
        let files = p.counters.files_done.load(Ordering::Relaxed);
        progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(|| {
                format!(
                    "restoring: {} / {}, {files} files, {}",
                    format::bytes(written),
                    format::bytes(p.total_bytes),
                    format::rate(written, began.elapsed())
                )
            });
    });
    progress.lock().unwrap_or_else(|e| e.into_inner()).finish();
    let report = report?;
    if args.json {
        let restored = (request.pgdata.as_path(), &report, began.elapsed());
        println!("{}", plan_json(&plan, Some(restored))?);
    } else if !global.quiet {
        let pg = snapshot.postgres.as_ref();
        println!(
            "restored snapshot {} into {}: {} files, {} ({} written, {} already in place{}) in {}",
            id.short(),
            request.pgdata.display(),
            report.files,
            format::bytes(report.bytes),
            format::bytes(report.bytes_written),
            format::bytes(report.bytes_kept),
            if report.removed > 0 {
                format!(", {} extra entries removed", report.removed)
            } else {
                String::new()
            },
            format::duration(began.elapsed())
        );
        if let Some(pg) = pg {
            println!(
                "  recovery replays WAL from {} (consistent at {}) and stops {}",
                Lsn(pg.start_lsn),
                Lsn(pg.stop_lsn),
                describe_end(&plan)
            );
        }
        println!("  start the server to begin recovery");
    }
    Ok(())
}
