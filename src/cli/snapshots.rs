//! `pgcairn snapshots`: list the snapshots, oldest first.

use clap::Args;

use super::GlobalOptions;
use super::cluster_arg::{ClusterArg, Selection};
use super::format;
use crate::archive::window::{self, WalIndex};
use crate::clock::format_utc;
use crate::error::Result;
use crate::pg::wal::Lsn;
use crate::repo::snapshot::Snapshot;
use crate::report::text::{status, wal_lines};

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Example:
  pgcairn snapshots
  pgcairn snapshots --json | jq -r '.[-1].id'

ADDED is what the backup stored after deduplication and compression: the cost of keeping it.
STATUS is ok when the snapshot is restorable: every WAL segment from its start to its stop is
in the snapshot or in the archive; else it names the missing segments, and restore refuses
the snapshot until they are archived. --json says the same with `restorable` and
`wal_missing` (`wal_not_in_snapshot`: what the backup could not take itself).

After the table, per cluster and timeline: archived WAL, gaps, and the recoverable windows
(see `pgcairn info --help`).")]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,

    /// One JSON array on stdout (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalOptions, args: &SnapshotsArgs) -> Result<()> {
    let repo = global.open_indexed()?;
    let Selection {
        catalogue,
        selected: snapshots,
        clusters,
        ..
    } = args.cluster.read(&repo)?;
    let archive = WalIndex::new(&catalogue);
    // Segments a snapshot needs that neither it nor the archive has: not restorable.
    let missing = |s: &Snapshot| -> Vec<String> {
        s.postgres
            .as_ref()
            .map(|pg| window::missing_wal(pg, &archive))
            .unwrap_or_default()
    };
    if args.json {
        let list: Vec<serde_json::Value> = snapshots
            .iter()
            .map(|(id, s)| {
                let pg = s.postgres.as_ref();
                serde_json::json!({
                    "id": id.to_hex(),
                    "time": format_utc(s.started_ns / 1_000_000_000),
                    "started_ns": s.started_ns,
                    "finished_ns": s.finished_ns,
                    "hostname": s.hostname,
                    "tags": s.tags,
                    "parent": s.parent.map(|p| p.to_hex()),
                    "postgres_version": pg.map(|p| p.server_version_num),
                    "system_identifier": pg.map(|p| p.system_identifier.to_string()),
                    "cluster_name": pg.and_then(|p| p.cluster_name.clone()),
                    "pgdata": pg.map(|p| String::from_utf8_lossy(&p.pgdata).into_owned()),
                    "timeline": pg.map(|p| p.timeline),
                    "start_lsn": pg.map(|p| Lsn(p.start_lsn).to_string()),
                    "stop_lsn": pg.map(|p| Lsn(p.stop_lsn).to_string()),
                    "start_wal": pg.map(|p| p.start_wal.clone()),
                    "stop_wal": pg.map(|p| p.stop_wal.clone()),
                    "bad_pages": pg.map(|p| p.bad_pages.len()),
                    "restorable": pg.is_some() && missing(s).is_empty(),
                    "wal_missing": missing(s),
                    "wal_not_in_snapshot": pg.map(|p| p.wal_missing.clone()),
                    "window": pg
                        .and_then(|pg| window::window_of(&clusters, pg))
                        .map(super::info::window_json),
                    "files": s.summary.files,
                    "logical_bytes": s.summary.logical_bytes,
                    "added_bytes": s.summary.new_stored_bytes,
                })
            })
            .collect();
        // Windows go to `info --json`; `snapshots --json` stays an array (scripts index it).
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if snapshots.is_empty() {
        if !global.quiet {
            println!("no snapshots");
        }
        return Ok(());
    }
    let name_width = snapshots
        .iter()
        .filter_map(|(_, s)| s.postgres.as_ref()?.cluster_name.as_ref())
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max("CLUSTER".len());
    println!(
        "{:<8}  {:<19}  {:<name_width$}  {:>7}  {:<20}  {:>3}  {:<23}  {:>9}  {:>9}  {:<6}  tags",
        "ID",
        "TIME (UTC)",
        "CLUSTER",
        "PG",
        "SYSTEM ID",
        "TLI",
        "LSN START..STOP",
        "SIZE",
        "ADDED",
        "STATUS"
    );
    for (id, s) in &snapshots {
        let name = s
            .postgres
            .as_ref()
            .and_then(|pg| pg.cluster_name.as_deref())
            .unwrap_or("-");
        let (version, sysid, tli, lsns) = match &s.postgres {
            Some(pg) => (
                format::pg_version(pg.server_version_num),
                pg.system_identifier.to_string(),
                pg.timeline.to_string(),
                format!("{}..{}", Lsn(pg.start_lsn), Lsn(pg.stop_lsn)),
            ),
            None => Default::default(),
        };
        let status = status(s.postgres.as_ref(), &missing(s));
        println!(
            "{:<8}  {:<19}  {:<name_width$}  {:>7}  {:<20}  {:>3}  {:<23}  {:>9}  {:>9}  {:<6}  {}",
            id.short(),
            format_utc(s.started_ns / 1_000_000_000),
            name,
            version,
            sysid,
            tli,
            lsns,
            format::bytes(s.summary.logical_bytes),
            format::bytes(s.summary.new_stored_bytes),
            status,
            s.tags.join(",")
        );
    }
    for cluster in &clusters {
        println!();
        println!("cluster {}:", cluster.system_identifier);
        for line in wal_lines(cluster) {
            println!("{line}");
        }
    }
    Ok(())
}
