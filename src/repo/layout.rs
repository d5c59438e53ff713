//! Where each object lives on storage.

use super::id::{IndexId, KeyId, PackId, SnapshotId};

pub const CONFIG: &str = "config";
pub const KEYS: &str = "keys";
pub const INDEX: &str = "index";
pub const SNAPSHOTS: &str = "snapshots";
pub const DATA: &str = "data";
pub const WAL: &str = "wal";
pub const LOCKS: &str = "locks";

pub fn key(id: &KeyId) -> String {
    format!("{KEYS}/{id}")
}

pub fn index(id: &IndexId) -> String {
    format!("{INDEX}/{id}")
}

pub fn snapshot(id: &SnapshotId) -> String {
    format!("{SNAPSHOTS}/{id}")
}

/// Packs are spread over 256 directories by their first byte.
pub fn pack(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("{DATA}/{}/{hex}", &hex[..2])
}

/// The pack id in a name listed under `data/` (`ab/ab12…`), if it is one.
pub fn pack_from_listing(name: &str) -> Option<PackId> {
    let (dir, file) = name.split_once('/')?;
    let id = PackId::from_hex(file).ok()?;
    (id.to_hex()[..2] == *dir).then_some(id)
}

/// A WAL catalogue entry, named by the keyed hash of its cluster and file name.
pub fn wal_entry(name: &[u8; 32]) -> String {
    format!("{WAL}/{}", hex::encode(name))
}

/// A lock object, named by the hash of its bytes.
pub fn lock(name: &[u8; 32]) -> String {
    format!("{LOCKS}/{}", hex::encode(name))
}

/// The object name of a WAL catalogue entry listed under `wal/`, if it is one.
pub fn wal_object_from_listing(name: &str) -> Option<[u8; 32]> {
    let mut object = [0u8; 32];
    hex::decode_to_slice(name, &mut object)
        .ok()
        .map(|()| object)
}
