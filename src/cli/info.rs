//! `pgcairn info`: what the repository holds and what it costs.

use std::collections::BTreeMap;

use clap::Args;

use super::GlobalOptions;
use super::format;
use crate::clock::format_utc;
use crate::error::Result;
use crate::repo::pack::BlobType;

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Example:
  pgcairn info
  pgcairn info --json | jq .dedup_ratio

Logical size is what the snapshots would take as plain copies; unique is after
deduplication; stored is after compression and encryption (the packs on storage).")]
pub struct InfoArgs {
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
    /// (timeline, first WAL, last WAL) of the WAL the snapshots carry.
    wal: BTreeMap<u32, (String, String)>,
}

pub fn run(global: &GlobalOptions, args: &InfoArgs) -> Result<()> {
    let repo = global
        .open_repository()?
        .load_index(global.cache_dir.as_deref())?;
    let snapshots = repo.load_snapshots()?;
    let (data, trees, lists, packs) = repo.with_cache(|c| -> Result<_> {
        Ok((
            c.blob_totals(BlobType::Data)?,
            c.blob_totals(BlobType::Tree)?,
            c.blob_totals(BlobType::ChunkList)?,
            c.packs()?,
        ))
    })?;
    let pack_bytes: u64 = packs.iter().map(|(_, size)| size).sum();
    let logical: u64 = snapshots.iter().map(|(_, s)| s.summary.logical_bytes).sum();
    let dedup = ratio(logical, data.raw_bytes);
    let compression = ratio(data.raw_bytes, data.stored_bytes);
    let mut clusters: BTreeMap<u64, ClusterSummary> = BTreeMap::new();
    for (_, s) in &snapshots {
        let Some(pg) = &s.postgres else { continue };
        let c = clusters.entry(pg.system_identifier).or_default();
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
            "packs": packs.len(),
            "pack_bytes": pack_bytes,
            "logical_bytes": logical,
            "unique_data_bytes": data.raw_bytes,
            "stored_data_bytes": data.stored_bytes,
            "data_chunks": data.blobs,
            "metadata_blobs": trees.blobs + lists.blobs,
            "metadata_stored_bytes": trees.stored_bytes + lists.stored_bytes,
            "dedup_ratio": dedup,
            "compression_ratio": compression,
            "clusters": clusters.iter().map(|(sysid, c)| serde_json::json!({
                "system_identifier": sysid.to_string(),
                "snapshots": c.snapshots,
                "first": format_utc(c.first_ns / 1_000_000_000),
                "last": format_utc(c.last_ns / 1_000_000_000),
                "postgres_versions": c.versions,
                "wal": c.wal.iter().map(|(tli, (a, b))| serde_json::json!({
                    "timeline": tli, "first": a, "last": b,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
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
        packs.len(),
        format::bytes(pack_bytes)
    );
    println!(
        "  logical {} -> unique {} (dedup {:.1}x) -> stored {} (compression {:.2}x)",
        format::bytes(logical),
        format::bytes(data.raw_bytes),
        dedup,
        format::bytes(data.stored_bytes),
        compression
    );
    println!(
        "  {} data chunks; metadata {} in {} blobs",
        data.blobs,
        format::bytes(trees.stored_bytes + lists.stored_bytes),
        trees.blobs + lists.blobs
    );
    for (sysid, c) in &clusters {
        let versions: Vec<String> = c
            .versions
            .iter()
            .map(|v| format!("{}.{}", v / 10000, v % 100))
            .collect();
        println!(
            "cluster {sysid} (PostgreSQL {}): {} snapshots, {} .. {}",
            versions.join(", "),
            c.snapshots,
            format_utc(c.first_ns / 1_000_000_000),
            format_utc(c.last_ns / 1_000_000_000)
        );
        for (tli, (a, b)) in &c.wal {
            println!("  timeline {tli}: WAL carried by snapshots {a} .. {b}");
        }
    }
    Ok(())
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}
