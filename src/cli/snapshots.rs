//! `pgcairn snapshots`: list the snapshots, oldest first.

use clap::Args;

use super::GlobalOptions;
use super::format;
use crate::clock::format_utc;
use crate::error::Result;
use crate::pg::wal::Lsn;

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Example:
  pgcairn snapshots
  pgcairn snapshots --json | jq -r '.[-1].id'

ADDED is what the backup stored after deduplication and compression: the cost of keeping it.")]
pub struct SnapshotsArgs {
    /// One JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalOptions, args: &SnapshotsArgs) -> Result<()> {
    let repo = global.open_repository()?;
    let snapshots = repo.load_snapshots()?;
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
                    "pgdata": pg.map(|p| String::from_utf8_lossy(&p.pgdata).into_owned()),
                    "timeline": pg.map(|p| p.timeline),
                    "start_lsn": pg.map(|p| Lsn(p.start_lsn).to_string()),
                    "stop_lsn": pg.map(|p| Lsn(p.stop_lsn).to_string()),
                    "start_wal": pg.map(|p| p.start_wal.clone()),
                    "stop_wal": pg.map(|p| p.stop_wal.clone()),
                    "bad_pages": pg.map(|p| p.bad_pages.len()),
                    "files": s.summary.files,
                    "logical_bytes": s.summary.logical_bytes,
                    "added_bytes": s.summary.new_stored_bytes,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if snapshots.is_empty() {
        if !global.quiet {
            println!("no snapshots");
        }
        return Ok(());
    }
    println!(
        "{:<8}  {:<19}  {:>7}  {:<20}  {:>3}  {:<23}  {:>9}  {:>9}  tags",
        "ID", "TIME (UTC)", "PG", "SYSTEM ID", "TLI", "LSN START..STOP", "SIZE", "ADDED"
    );
    for (id, s) in &snapshots {
        let (version, sysid, tli, lsns) = match &s.postgres {
            Some(pg) => (
                format!(
                    "{}.{}",
                    pg.server_version_num / 10000,
                    pg.server_version_num % 100
                ),
                pg.system_identifier.to_string(),
                pg.timeline.to_string(),
                format!("{}..{}", Lsn(pg.start_lsn), Lsn(pg.stop_lsn)),
            ),
            None => Default::default(),
        };
        println!(
            "{:<8}  {:<19}  {:>7}  {:<20}  {:>3}  {:<23}  {:>9}  {:>9}  {}",
            id.short(),
            format_utc(s.started_ns / 1_000_000_000),
            version,
            sysid,
            tli,
            lsns,
            format::bytes(s.summary.logical_bytes),
            format::bytes(s.summary.new_stored_bytes),
            s.tags.join(",")
        );
    }
    Ok(())
}
