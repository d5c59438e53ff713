//! `pgcairn info`: what the repository holds and what it costs.

use std::collections::BTreeMap;

use clap::Args;

use super::GlobalOptions;
use super::cluster_arg::{ClusterArg, Selection};
use super::format;
use crate::archive::window::{ClusterWal, Window};
use crate::clock::format_utc;
use crate::error::Result;
use crate::report::data::Space;
use crate::report::text::wal_lines;
use crate::verify::report::WindowRef;

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Example:
  pgcairn info
  pgcairn info --json | jq .dedup_ratio

Logical size is what the snapshots would take as plain copies; unique is after
deduplication; stored is after compression and encryption (the packs on storage).

Per cluster and timeline: the archived WAL segments, the gaps between them, and the
recoverable window: from the oldest restorable snapshot's consistency point (stop LSN, finish
time) to the end of the WAL that follows it without a gap (the last valid record's LSN and the
last commit time found in it; a time marked ~ is when the last segment was archived, for
segments whose commits are unknown). A gap ends a window; a snapshot after it starts another.
A timeline branched off another (a promotion) also has windows from its ancestors' snapshots
taken before it branched off, following its history file as recovery does (segments before
the switch from the ancestor, after it from the timeline itself).")]
pub struct InfoArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,

    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Snapshots of one cluster (one system identifier).
#[derive(Default)]
struct ClusterSummary {
    snapshots: usize,
    first_ns: i64,
    last_ns: i64,
    versions: Vec<u32>,
    /// The names its snapshots were taken under (`backup --cluster`).
    names: Vec<String>,
    /// (timeline, first WAL, last WAL) of the WAL the snapshots carry.
    wal: BTreeMap<u32, (String, String)>,
}

pub fn run(global: &GlobalOptions, args: &InfoArgs) -> Result<()> {
    let repo = global.open_indexed()?;
    let Selection {
        all: snapshots,
        selected,
        clusters: wal,
        ..
    } = args.cluster.read(&repo)?;
    let wal: BTreeMap<u64, ClusterWal> =
        wal.into_iter().map(|c| (c.system_identifier, c)).collect();
    let space = Space::measure(&repo, &snapshots)?;
    let (data, metadata) = (space.data, space.metadata);
    let (dedup, compression) = (space.dedup_ratio(), space.compression_ratio());
    let mut clusters: BTreeMap<u64, ClusterSummary> = BTreeMap::new();
    for (_, s) in &selected {
        let Some(pg) = &s.postgres else { continue };
        let c = clusters.entry(pg.system_identifier).or_default();
        if let Some(name) = &pg.cluster_name
            && !c.names.contains(name)
        {
            c.names.push(name.clone());
        }
        if c.snapshots == 0 {
            c.first_ns = s.started_ns;
        }
        c.snapshots += 1;
        c.last_ns = s.started_ns;
        if !c.versions.contains(&pg.server_version_num) {
            c.versions.push(pg.server_version_num);
        }
        let range = c
            .wal
            .entry(pg.timeline)
            .or_insert_with(|| (pg.start_wal.clone(), pg.stop_wal.clone()));
        range.0 = range.0.clone().min(pg.start_wal.clone());
        range.1 = range.1.clone().max(pg.stop_wal.clone());
    }
    if args.json {
        let value = serde_json::json!({
            "repository": repo.storage().location(),
            "id": repo.config().id.to_hex(),
            "format_version": repo.config().version,
            "snapshots": snapshots.len(),
            "packs": space.packs,
            "pack_bytes": space.pack_bytes,
            "logical_bytes": space.logical,
            "unique_data_bytes": data.raw_bytes,
            "stored_data_bytes": data.stored_bytes,
            "data_chunks": data.blobs,
            "metadata_blobs": metadata.blobs,
            "metadata_stored_bytes": metadata.stored_bytes,
            "dedup_ratio": dedup,
            "compression_ratio": compression,
            "clusters": clusters.iter().map(|(sysid, c)| serde_json::json!({
                "system_identifier": sysid.to_string(),
                "names": c.names,
                "snapshots": c.snapshots,
                "first": format_utc(c.first_ns / 1_000_000_000),
                "first_ns": c.first_ns,
                "last": format_utc(c.last_ns / 1_000_000_000),
                "last_ns": c.last_ns,
                "postgres_versions": c.versions,
                "wal": c.wal.iter().map(|(tli, (a, b))| serde_json::json!({
                    "timeline": tli, "first": a, "last": b,
                })).collect::<Vec<_>>(),
                "timelines": wal.get(sysid).map_or_else(|| serde_json::json!([]), wal_json),
            })).collect::<Vec<_>>(),
            "archives_without_snapshots": wal.values()
                .filter(|w| !clusters.contains_key(&w.system_identifier))
                .map(|w| serde_json::json!({
                    "system_identifier": w.system_identifier.to_string(),
                    "timelines": wal_json(w),
                }))
                .collect::<Vec<_>>(),
        });
        println!("{value}");
        return Ok(());
    }
    println!(
        "repository {} ({})",
        repo.storage().location(),
        repo.config().id.short()
    );
    println!(
        "  {} snapshots, {} packs, {} on storage",
        snapshots.len(),
        space.packs,
        format::bytes(space.pack_bytes)
    );
    println!(
        "  logical {} -> unique {} (dedup {:.1}x) -> stored {} (compression {:.2}x)",
        format::bytes(space.logical),
        format::bytes(data.raw_bytes),
        dedup,
        format::bytes(data.stored_bytes),
        compression
    );
    println!(
        "  {} data chunks; metadata {} in {} blobs",
        data.blobs,
        format::bytes(metadata.stored_bytes),
        metadata.blobs
    );
    for (sysid, c) in &clusters {
        let versions: Vec<String> = c.versions.iter().map(|v| format::pg_version(*v)).collect();
        let label = if c.names.is_empty() {
            sysid.to_string()
        } else {
            format!("{} ({sysid})", c.names.join(", "))
        };
        println!(
            "cluster {label}, PostgreSQL {}: {} snapshots, {} .. {}",
            versions.join(", "),
            c.snapshots,
            format_utc(c.first_ns / 1_000_000_000),
            format_utc(c.last_ns / 1_000_000_000)
        );
        for (tli, (a, b)) in &c.wal {
            println!("  timeline {tli}: WAL carried by snapshots {a} .. {b}");
        }
        if let Some(w) = wal.get(sysid) {
            for line in wal_lines(w) {
                println!("{line}");
            }
        }
    }
    for w in wal
        .values()
        .filter(|w| !clusters.contains_key(&w.system_identifier))
    {
        println!(
            "cluster {} (no snapshots): archived WAL",
            w.system_identifier
        );
        for line in wal_lines(w) {
            println!("{line}");
        }
    }
    Ok(())
}

/// A recoverable window for `--json`: as `verify --json` gives it.
pub(super) fn window_json(w: &Window) -> serde_json::Value {
    serde_json::json!(WindowRef::from(w))
}

/// A cluster's WAL for `--json`: per timeline, segments, runs, gaps and windows.
pub(super) fn wal_json(cluster: &ClusterWal) -> serde_json::Value {
    serde_json::Value::Array(
        cluster
            .timelines
            .iter()
            .map(|tl| {
                serde_json::json!({
                    "timeline": tl.timeline,
                    "segments": tl.segments,
                    "first_segment": tl.first_segment,
                    "last_segment": tl.last_segment,
                    "runs": tl.runs.iter().map(|(a, b)| serde_json::json!({"first": a, "last": b})).collect::<Vec<_>>(),
                    "gaps": tl.gaps.iter().map(|g| serde_json::json!({
                        "first_missing": g.first_missing,
                        "last_missing": g.last_missing,
                        "segments": g.segments,
                    })).collect::<Vec<_>>(),
                    "windows": tl.windows.iter().map(window_json).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}
