//! What a restore writes: the snapshot's tree flattened into directories, symlinks and files
//! with their chunks, at their places on disk (tablespaces at their original or mapped
//! locations).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repo::IndexedRepository;
use crate::repo::id::BlobId;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{ChunkRef, Node, NodeKind, join_path};

pub struct PlannedDir {
    pub path: PathBuf,
    pub mode: u32,
}

pub struct PlannedLink {
    pub path: PathBuf,
    pub target: Vec<u8>,
}

pub struct PlannedFile {
    pub path: PathBuf,
    /// Path in the snapshot, relative to the data directory (for messages and pg_control).
    pub rel: Vec<u8>,
    pub node: Node,
    pub size: u64,
}

#[derive(Default)]
pub struct Plan {
    /// Parents before children.
    pub dirs: Vec<PlannedDir>,
    pub links: Vec<PlannedLink>,
    pub files: Vec<PlannedFile>,
}

/// A name from a tree blob, refused unless it is one plain path component: storage is not
/// trusted, and a name like `..` must not write outside the target.
fn component(name: &[u8]) -> Result<&std::ffi::OsStr> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::integrity(format!(
            "tree entry named {:?} is not a plain file name",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(std::ffi::OsStr::from_bytes(name))
}

/// Gives a symlink at a snapshot path a new target (tablespace links to their restored place).
type Relink<'a> = dyn Fn(&[u8], &Node) -> Option<Vec<u8>> + 'a;

impl Plan {
    /// Flattens `snapshot` for a restore into `pgdata`; `locate` maps a tablespace's original
    /// location to where it is restored.
    pub fn build(
        repo: &IndexedRepository,
        snapshot: &Snapshot,
        pgdata: &Path,
        locate: impl Fn(&[u8]) -> PathBuf,
    ) -> Result<Plan> {
        let mut plan = Plan::default();
        let mut tablespaces = Vec::new();
        if let Some(pg) = &snapshot.postgres {
            for ts in &pg.tablespaces {
                tablespaces.push((ts.oid, locate(&ts.location), &ts.root));
            }
        }
        plan.add_dir(
            repo,
            &snapshot.root,
            pgdata,
            b"",
            &|rel: &[u8], node: &Node| {
                // pg_tblspc/<oid> links point at where the tablespace is restored.
                let oid = rel.strip_prefix(b"pg_tblspc/")?;
                let (_, place, _) = tablespaces
                    .iter()
                    .find(|(o, _, _)| o.to_string().as_bytes() == oid)?;
                matches!(node.kind, NodeKind::Symlink { .. })
                    .then(|| place.as_os_str().as_bytes().to_vec())
            },
        )?;
        for (oid, place, root) in &tablespaces {
            plan.dirs.push(PlannedDir {
                path: place.clone(),
                mode: 0o700,
            });
            let rel = format!("pg_tblspc/{oid}");
            plan.add_dir(repo, root, place, rel.as_bytes(), &|_: &[u8], _: &Node| {
                None
            })?;
        }
        Ok(plan)
    }

    fn add_dir(
        &mut self,
        repo: &IndexedRepository,
        trees: &[BlobId],
        path: &Path,
        rel: &[u8],
        relink: &Relink,
    ) -> Result<()> {
        for node in repo.dir_entries(trees)? {
            let child = path.join(component(&node.name)?);
            let child_rel = join_path(rel, &node.name);
            match &node.kind {
                NodeKind::Dir { trees } => {
                    self.dirs.push(PlannedDir {
                        path: child.clone(),
                        mode: node.mode,
                    });
                    self.add_dir(repo, trees, &child, &child_rel, relink)?;
                }
                NodeKind::Symlink { target } => {
                    let target = relink(&child_rel, &node).unwrap_or_else(|| target.clone());
                    self.links.push(PlannedLink {
                        path: child,
                        target,
                    });
                }
                NodeKind::File { size, .. } => {
                    let size = *size;
                    self.files.push(PlannedFile {
                        path: child,
                        rel: child_rel,
                        node,
                        size,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A file's data chunks, checked against its size.
pub fn file_chunks(repo: &IndexedRepository, file: &PlannedFile) -> Result<Vec<ChunkRef>> {
    let NodeKind::File { content, .. } = &file.node.kind else {
        return Ok(Vec::new());
    };
    let chunks = repo.data_chunks(content)?;
    let total: u64 = chunks.iter().map(|c| c.len).sum();
    if total != file.size {
        return Err(Error::integrity(format!(
            "{}: its chunks add up to {total} bytes, the snapshot says {}",
            String::from_utf8_lossy(&file.rel),
            file.size
        )));
    }
    Ok(chunks)
}
