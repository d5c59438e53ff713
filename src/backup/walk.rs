//! Walks a directory tree into snapshot tree blobs, bottom-up: each directory's entries are
//! stored as tree blobs once its children are. Files are read in parallel; a file that the
//! parent snapshot already holds unchanged is taken from it without reading (see
//! [`super::reuse`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::ingest::{FileRole, Ingest};
use super::reuse::ParentFiles;
use crate::error::{Error, Result};
use crate::pg::datadir::{self, Disposition, EntryInfo, FileKind};
use crate::repo::IndexedRepository;
use crate::repo::id::BlobId;
use crate::repo::tree::{Node, NodeKind, join_path};

pub struct Walker<'a> {
    pub ingest: &'a Ingest<'a>,
    pub repo: &'a IndexedRepository,
    pub parent: Option<ParentFiles>,
    pub major: u32,
    /// Paths, relative to the data directory, the caller builds itself (`pg_wal`).
    pub exclusions: &'a [&'a [u8]],
}

/// What a walk saw, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkTotals {
    pub files: u64,
    pub dirs: u64,
    pub logical_bytes: u64,
}

impl WalkTotals {
    fn add(&mut self, other: WalkTotals) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.logical_bytes += other.logical_bytes;
    }
}

/// A node's metadata from `lstat`, with the content still to fill in.
pub fn node_from_metadata(name: &[u8], meta: &Metadata, kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
        kind,
    }
}

impl Walker<'_> {
    /// The entries of directory `abs` (at `rel` in the snapshot) as nodes, unsorted.
    /// `parent_trees` are the same directory's tree blobs in the parent snapshot.
    pub fn walk_dir(
        &self,
        abs: &Path,
        rel: &[u8],
        parent_trees: Option<&[BlobId]>,
    ) -> Result<(Vec<Node>, WalkTotals)> {
        self.ingest.check_interrupted()?;
        let mut entries: Vec<(OsString, Metadata, bool)> = Vec::new();
        for entry in std::fs::read_dir(abs).map_err(Error::io_at("reading", abs))? {
            let entry = entry.map_err(Error::io_at("reading", abs))?;
            let name = entry.file_name();
            if self
                .exclusions
                .contains(&join_path(rel, name.as_bytes()).as_slice())
            {
                continue;
            }
            let path = entry.path();
            // Files come and go while the server runs: one that vanished is left out, and
            // WAL replay removes it as well.
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io_at("reading", &path)(e)),
            };
            let is_dir = if meta.file_type().is_symlink() {
                std::fs::metadata(&path).is_ok_and(|m| m.is_dir())
            } else {
                meta.is_dir()
            };
            entries.push((name, meta, is_dir));
        }
        let infos: Vec<EntryInfo> = entries
            .iter()
            .map(|(name, _, is_dir)| EntryInfo {
                name: name.as_bytes(),
                is_dir: *is_dir,
            })
            .collect();
        let dispositions = datadir::dispose(rel, &infos, self.major);
        let parent_nodes: HashMap<Vec<u8>, Node> = match (&self.parent, parent_trees) {
            (Some(_), Some(trees)) => self
                .repo
                .dir_entries(trees)?
                .into_iter()
                .map(|n| (n.name.clone(), n))
                .collect(),
            _ => HashMap::new(),
        };
        let results: Vec<Result<Option<(Node, WalkTotals)>>> = entries
            .par_iter()
            .zip(dispositions.par_iter())
            .map(|((name, meta, _), disposition)| {
                let name = name.as_bytes();
                self.entry(abs, rel, name, meta, *disposition, parent_nodes.get(name))
            })
            .collect();
        let mut nodes = Vec::new();
        let mut totals = WalkTotals::default();
        for result in results {
            if let Some((node, t)) = result? {
                nodes.push(node);
                totals.add(t);
            }
        }
        Ok((nodes, totals))
    }

    fn entry(
        &self,
        dir_abs: &Path,
        dir_rel: &[u8],
        name: &[u8],
        meta: &Metadata,
        disposition: Disposition,
        parent: Option<&Node>,
    ) -> Result<Option<(Node, WalkTotals)>> {
        let abs = dir_abs.join(std::ffi::OsStr::from_bytes(name));
        let rel = join_path(dir_rel, name);
        let file_type = meta.file_type();
        let dir_totals = WalkTotals {
            dirs: 1,
            ..WalkTotals::default()
        };
        match disposition {
            Disposition::Skip => Ok(None),
            // Tablespaces under pg_tblspc are stored as links here and walked on their own.
            _ if file_type.is_symlink() => {
                let target = match std::fs::read_link(&abs) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(Error::io_at("reading", &abs)(e)),
                };
                let kind = NodeKind::Symlink {
                    target: target.as_os_str().as_bytes().to_vec(),
                };
                Ok(Some((
                    node_from_metadata(name, meta, kind),
                    WalkTotals::default(),
                )))
            }
            Disposition::KeepDirEmpty if file_type.is_dir() => {
                let trees = self.ingest.packer.add_dir(Vec::new())?;
                let node = node_from_metadata(name, meta, NodeKind::Dir { trees });
                Ok(Some((node, dir_totals)))
            }
            Disposition::Descend if file_type.is_dir() => {
                let parent_trees = match parent.map(|n| &n.kind) {
                    Some(NodeKind::Dir { trees }) => Some(trees.as_slice()),
                    _ => None,
                };
                let (children, mut totals) = self.walk_dir(&abs, &rel, parent_trees)?;
                let trees = self.ingest.packer.add_dir(children)?;
                totals.add(dir_totals);
                Ok(Some((
                    node_from_metadata(name, meta, NodeKind::Dir { trees }),
                    totals,
                )))
            }
            Disposition::Keep(kind) if file_type.is_file() => {
                let role = match kind {
                    FileKind::Relation { segment } => FileRole::Relation { segment },
                    FileKind::Other => FileRole::Other,
                };
                let Some(node) = self.file(&abs, &rel, name, meta, role, parent)? else {
                    return Ok(None);
                };
                let size = match &node.kind {
                    NodeKind::File { size, .. } => *size,
                    _ => 0,
                };
                let totals = WalkTotals {
                    files: 1,
                    dirs: 0,
                    logical_bytes: size,
                };
                Ok(Some((node, totals)))
            }
            // Sockets, FIFOs, devices, or an entry whose type changed since it was listed:
            // nothing a server needs back.
            _ => Ok(None),
        }
    }

    /// A file's node: from the parent snapshot when it is safely unchanged, else read.
    pub fn file(
        &self,
        abs: &Path,
        rel: &[u8],
        name: &[u8],
        meta: &Metadata,
        role: FileRole,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        let fresh = node_from_metadata(
            name,
            meta,
            NodeKind::File {
                size: meta.len(),
                content: Default::default(),
            },
        );
        if let (Some(files), Some(old)) = (&self.parent, parent)
            && files.reusable(rel, old, &fresh)
        {
            let counters = &self.ingest.counters;
            counters.files_reused.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes_reused
                .fetch_add(meta.len(), Ordering::Relaxed);
            return Ok(Some(Node {
                kind: old.kind.clone(),
                ..fresh
            }));
        }
        let Some(stored) = self.ingest.store_file(abs, rel, role)? else {
            return Ok(None);
        };
        let content = self.ingest.packer.add_chunk_list(stored.chunks)?;
        Ok(Some(Node {
            kind: NodeKind::File {
                size: stored.size,
                content,
            },
            ..fresh
        }))
    }
}
