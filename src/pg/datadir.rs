//! What to back up from a data directory: the backup walker shows [`dispose`] each directory's
//! entries and gets back, per entry, whether to skip it, keep it, or descend into it, and which
//! kept files are relation files whose pages carry checksums.
//!
//! The rules follow pg_basebackup (src/backend/backup/basebackup.c: excludeDirContents,
//! excludeFiles, the pg_wal, temporary and unlogged relation handling in sendDir) and
//! pgBackRest (src/info/manifest.c, manifestBuildInfo). Where they differ, the comments say
//! which we follow and why. Skipping never loses anything a restore needs: every skipped item
//! is recreated, reset or ignored by the server when it starts.
//!
//! Paths are bytes (file names on Unix need not be UTF-8), relative to the data directory root,
//! with '/' separators.

/// What a kept file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A relation fork segment (`<relfilenode>[_fsm|_vm|_init][.<segment>]` in `global/` or a
    /// database directory): made of 8 KiB pages whose checksums the backup verifies, and whose
    /// changes come a page at a time. `segment` is the `.N` suffix, 0 without one.
    Relation { segment: u32 },
    /// Anything else: pg_control, pg_filenode.map, PG_VERSION, configuration, SLRU files…
    Other,
}

/// What the walker does with one directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Leave it out of the backup, and do not look inside.
    Skip,
    /// Keep the directory itself (its permissions matter to the server) but none of its contents.
    KeepDirEmpty,
    /// A directory to walk: call [`dispose`] on its entries.
    Descend,
    /// A file to back up.
    Keep(FileKind),
}

/// One entry of the directory being disposed of.
#[derive(Clone, Copy, Debug)]
pub struct EntryInfo<'a> {
    /// The entry's file name (`OsStr` bytes).
    pub name: &'a [u8],
    /// Whether it is a directory, after following a symlink (tablespaces under `pg_tblspc` are
    /// symlinks to directories, and so may `pg_wal` be).
    pub is_dir: bool,
}

/// pg_control, relative to the data directory. [`dispose`] keeps it like any other file, but the
/// walker must copy it after everything else, as pg_basebackup does: a restore that is cut short
/// then lacks it, and the directory cannot be started by mistake from a half-copied state.
pub const PG_CONTROL: &[u8] = b"global/pg_control";

/// Entries whose name starts with this are temporary files or directories (sorts, hashes,
/// `base/pgsql_tmp`, the tablespaces' `pgsql_tmp`) that the server deletes when it starts.
/// Both pg_basebackup and pgBackRest skip them anywhere in the tree.
const TEMP_PREFIX: &[u8] = b"pgsql_tmp";

/// The relation cache init file (and `pg_internal.init.<pid>` while one is being written). It is
/// rebuilt on startup, and a stale one would describe catalogs as they were, not as WAL replay
/// leaves them. pg_basebackup skips it by prefix anywhere; so do we.
const RELCACHE_INIT_PREFIX: &[u8] = b"pg_internal.init";

/// Directories in the data directory root kept empty (pg_basebackup's excludeDirContents,
/// pgBackRest's list is the same). The directories must exist for the server to start.
const EMPTY_DIRS: &[&[u8]] = &[
    // Dynamic shared memory segments: removed on startup (dsm_cleanup_for_mmap).
    b"pg_dynshmem",
    // LISTEN/NOTIFY queue: reset on startup (AsyncShmemInit).
    b"pg_notify",
    // Replication slots: a restored cluster is a new server; a slot copied from the original
    // would hold back WAL removal for a consumer that is not coming (see backup.sgml).
    b"pg_replslot",
    // Serializable transaction state: only for debugging after startup (SerialInit).
    b"pg_serial",
    // Exported snapshots: removed on startup (DeleteAllExportedSnapshotFiles).
    b"pg_snapshots",
    // Temporary statistics. PG 15+ no longer writes here, but extensions such as
    // pg_stat_statements still do, and the files are worthless to a new server.
    b"pg_stat_tmp",
    // Subtransaction parents: zeroed on startup (StartupSUBTRANS).
    b"pg_subtrans",
];

/// Files in the data directory root never backed up.
const ROOT_SKIP_FILES: &[&[u8]] = &[
    // The running postmaster's lock file and command line: a restored directory with either
    // would confuse pg_ctl and the server about who is running.
    b"postmaster.pid",
    b"postmaster.opts",
    // Written by a backup, not by the server: the snapshot stores the labels that
    // pg_backup_stop returned, and restore writes them. Any found on disk belong to an earlier
    // exclusive backup or restore and would point recovery at the wrong checkpoint.
    b"backup_label",
    b"tablespace_map",
    // What recovery renames those to when done (pgBackRest skips backup_label.old; the map is
    // the same leftover).
    b"backup_label.old",
    b"tablespace_map.old",
    // A manifest from the pg_basebackup that created this cluster: not ours, and wrong for it.
    b"backup_manifest",
    b"backup_manifest.tmp",
    // Recovery mode is chosen at restore time; restore writes recovery.signal itself. Copying
    // standby.signal would start a restored cluster as a standby.
    b"recovery.signal",
    b"standby.signal",
    // Temporary files of ALTER SYSTEM and the logging collector, renamed into place when done.
    b"postgresql.auto.conf.tmp",
    b"current_logfiles.tmp",
];

/// Before PG 12, recovery was configured by recovery.conf (renamed recovery.done when finished).
/// From 12 on a recovery.conf stops the server from starting at all, so a running cluster has
/// none; pgBackRest skips both only before 12, and so do we.
const ROOT_SKIP_FILES_BEFORE_12: &[&[u8]] = &[b"recovery.conf", b"recovery.done"];

/// Decides, for each entry of the directory `dir` (relative to the data directory root, `""`
/// for the root itself, e.g. `base/5` or `pg_tblspc/16384/PG_15_202209061/5`), what the backup
/// does with it. `major` is the server's major version (15 for 15.x). Returns one
/// [`Disposition`] per entry, in the same order.
///
/// The whole directory is passed at once because an unlogged relation is recognised by a
/// sibling file: its `_init` fork.
pub fn dispose(dir: &[u8], entries: &[EntryInfo<'_>], major: u32) -> Vec<Disposition> {
    let place = Place::of(dir, major);
    // Relations in this database directory that have an init fork: unlogged.
    let unlogged: Vec<&[u8]> = if place == Place::Database {
        entries
            .iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| RelationName::parse(e.name))
            .filter(|r| r.fork == Fork::Init)
            .map(|r| r.node)
            .collect()
    } else {
        Vec::new()
    };
    entries
        .iter()
        .map(|entry| dispose_one(place, entry, major, &unlogged))
        .collect()
}

/// Whether `name` is the tablespace subdirectory that belongs to a server of version `major`:
/// `PG_<major>_<catalog version>` (the PG 10+ naming; several versions can share a tablespace
/// location during pg_upgrade, each in its own subdirectory).
pub fn is_tablespace_version_dir(name: &[u8], major: u32) -> bool {
    let prefix = format!("PG_{major}_");
    name.strip_prefix(prefix.as_bytes()).is_some_and(all_digits)
}

/// Where in the data directory a directory sits, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Root,
    /// `pg_wal`
    Wal,
    /// `global`: shared catalogs, relation files plus pg_control and pg_filenode.map.
    Global,
    /// `pg_tblspc`: one symlink per tablespace, named by its OID.
    Tablespaces,
    /// `pg_tblspc/<oid>`: the tablespace location, with one subdirectory per server version.
    TablespaceRoot,
    /// `base/<oid>` or `pg_tblspc/<oid>/PG_<major>_<catversion>/<oid>`: one database's relations.
    Database,
    /// Anywhere else: nothing but the rules that hold everywhere.
    Elsewhere,
}

impl Place {
    fn of(dir: &[u8], major: u32) -> Place {
        if dir.is_empty() {
            return Place::Root;
        }
        let parts: Vec<&[u8]> = dir.split(|&b| b == b'/').collect();
        match parts.as_slice() {
            [b"pg_wal"] => Place::Wal,
            [b"global"] => Place::Global,
            [b"base", db] if all_digits(db) => Place::Database,
            [b"pg_tblspc"] => Place::Tablespaces,
            [b"pg_tblspc", oid] if all_digits(oid) => Place::TablespaceRoot,
            [b"pg_tblspc", oid, version, db]
                if all_digits(oid)
                    && is_tablespace_version_dir(version, major)
                    && all_digits(db) =>
            {
                Place::Database
            }
            _ => Place::Elsewhere,
        }
    }
}

fn dispose_one(place: Place, entry: &EntryInfo<'_>, major: u32, unlogged: &[&[u8]]) -> Disposition {
    let name = entry.name;
    // Rules that hold everywhere.
    if name.starts_with(TEMP_PREFIX) || name.starts_with(RELCACHE_INIT_PREFIX) {
        return Disposition::Skip;
    }
    match place {
        Place::Root => {
            if ROOT_SKIP_FILES.contains(&name)
                || (major < 12 && ROOT_SKIP_FILES_BEFORE_12.contains(&name))
            {
                return Disposition::Skip;
            }
            if entry.is_dir && EMPTY_DIRS.contains(&name) {
                return Disposition::KeepDirEmpty;
            }
        }
        Place::Wal => {
            // WAL is not copied from pg_wal: a snapshot takes the segments from its start to its
            // stop LSN through the archive, complete and verified, while the files here are being
            // written, recycled and removed under us. The server needs archive_status/ (and
            // summaries/ from 17 on, for the WAL summarizer) to exist.
            let keep_empty = entry.is_dir
                && (name == b"archive_status" || (major >= 17 && name == b"summaries"));
            return if keep_empty {
                Disposition::KeepDirEmpty
            } else {
                Disposition::Skip
            };
        }
        Place::TablespaceRoot => {
            // Only our own version's subdirectory: another one belongs to another cluster
            // sharing the location (pg_upgrade), as pg_basebackup's sendTablespace assumes.
            return if entry.is_dir && is_tablespace_version_dir(name, major) {
                Disposition::Descend
            } else {
                Disposition::Skip
            };
        }
        Place::Global => {
            if !entry.is_dir {
                if let Some(relation) = RelationName::parse(name) {
                    return Disposition::Keep(FileKind::Relation {
                        segment: relation.segment,
                    });
                }
            }
        }
        Place::Database => {
            // Temporary relations live only as long as their session; the server removes them on
            // startup (RemovePgTempFiles).
            if is_temp_relation(name) {
                return Disposition::Skip;
            }
            if !entry.is_dir {
                if let Some(relation) = RelationName::parse(name) {
                    // An unlogged relation is reset from its init fork after a restore (as after a
                    // crash), so its other forks would be copied only to be thrown away.
                    if relation.fork != Fork::Init && unlogged.contains(&relation.node) {
                        return Disposition::Skip;
                    }
                    return Disposition::Keep(FileKind::Relation {
                        segment: relation.segment,
                    });
                }
            }
        }
        Place::Tablespaces | Place::Elsewhere => {}
    }
    if entry.is_dir {
        Disposition::Descend
    } else {
        Disposition::Keep(FileKind::Other)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fork {
    Main,
    FreeSpace,
    Visibility,
    Init,
}

/// A relation file name: `<relfilenode>[_fsm|_vm|_init][.<segment>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RelationName<'a> {
    /// The relfilenode digits as written, to match sibling forks by name.
    node: &'a [u8],
    fork: Fork,
    segment: u32,
}

impl<'a> RelationName<'a> {
    fn parse(name: &'a [u8]) -> Option<RelationName<'a>> {
        let digits = name.iter().take_while(|b| b.is_ascii_digit()).count();
        let (node, rest) = name.split_at(digits);
        // A relfilenode is an OID: at most 10 digits, and it must fit in 32 bits.
        parse_u32(node)?;
        let (fork, rest) = if let Some(rest) = rest.strip_prefix(b"_fsm") {
            (Fork::FreeSpace, rest)
        } else if let Some(rest) = rest.strip_prefix(b"_vm") {
            (Fork::Visibility, rest)
        } else if let Some(rest) = rest.strip_prefix(b"_init") {
            (Fork::Init, rest)
        } else {
            (Fork::Main, rest)
        };
        let segment = match rest {
            [] => 0,
            // The first segment has no suffix, so ".0" never names one (pg_basebackup rejects
            // it as an invalid segment number).
            [b'.', number @ ..] => match parse_u32(number)? {
                0 => return None,
                n => n,
            },
            _ => return None,
        };
        Some(RelationName {
            node,
            fork,
            segment,
        })
    }
}

/// `t<backend>_<relation name>`: a temporary relation's file (PostgreSQL's
/// looks_like_temp_rel_name).
fn is_temp_relation(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b"t") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    match rest[digits..].strip_prefix(b"_") {
        Some(relation) => RelationName::parse(relation).is_some(),
        None => false,
    }
}

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// Decimal digits only (no sign, no spaces), fitting in a u32.
fn parse_u32(s: &[u8]) -> Option<u32> {
    if !all_digits(s) || s.len() > 10 {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    use Disposition::*;
    const REL0: Disposition = Keep(FileKind::Relation { segment: 0 });
    const OTHER: Disposition = Keep(FileKind::Other);

    fn rel(segment: u32) -> Disposition {
        Keep(FileKind::Relation { segment })
    }

    /// Disposes of files (names ending in '/' are directories) and returns name → disposition.
    fn run(dir: &str, names: &[&str], major: u32) -> BTreeMap<String, Disposition> {
        let entries: Vec<EntryInfo<'_>> = names
            .iter()
            .map(|n| EntryInfo {
                name: n.trim_end_matches('/').as_bytes(),
                is_dir: n.ends_with('/'),
            })
            .collect();
        let out = dispose(dir.as_bytes(), &entries, major);
        assert_eq!(out.len(), names.len());
        names.iter().map(|n| n.to_string()).zip(out).collect()
    }

    fn check(dir: &str, major: u32, expected: &[(&str, Disposition)]) {
        let names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
        let got = run(dir, &names, major);
        for (name, want) in expected {
            assert_eq!(got[*name], *want, "{dir}/{name} (PG {major})");
        }
    }

    #[test]
    fn root_files_that_are_skipped() {
        check(
            "",
            15,
            &[
                ("postmaster.pid", Skip),
                ("postmaster.opts", Skip),
                ("backup_label", Skip),
                ("backup_label.old", Skip),
                ("tablespace_map", Skip),
                ("tablespace_map.old", Skip),
                ("backup_manifest", Skip),
                ("backup_manifest.tmp", Skip),
                ("recovery.signal", Skip),
                ("standby.signal", Skip),
                ("postgresql.auto.conf.tmp", Skip),
                ("current_logfiles.tmp", Skip),
                ("pg_internal.init", Skip),
                // Kept: configuration and version files.
                ("PG_VERSION", OTHER),
                ("postgresql.conf", OTHER),
                ("postgresql.auto.conf", OTHER),
                ("pg_hba.conf", OTHER),
                ("pg_ident.conf", OTHER),
                ("current_logfiles", OTHER),
                ("recovery.conf", OTHER),
                ("recovery.done", OTHER),
                ("some.tmp", OTHER),
            ],
        );
        // recovery.conf configured recovery before 12.
        check("", 11, &[("recovery.conf", Skip), ("recovery.done", Skip)]);
    }

    #[test]
    fn root_directories() {
        check(
            "",
            15,
            &[
                ("pg_dynshmem/", KeepDirEmpty),
                ("pg_notify/", KeepDirEmpty),
                ("pg_replslot/", KeepDirEmpty),
                ("pg_serial/", KeepDirEmpty),
                ("pg_snapshots/", KeepDirEmpty),
                ("pg_stat_tmp/", KeepDirEmpty),
                ("pg_subtrans/", KeepDirEmpty),
                ("pg_wal/", Descend),
                ("pg_tblspc/", Descend),
                ("base/", Descend),
                ("global/", Descend),
                ("pg_xact/", Descend),
                ("pg_multixact/", Descend),
                ("pg_stat/", Descend),
                ("pg_logical/", Descend),
                ("pg_twophase/", Descend),
                ("pg_commit_ts/", Descend),
                ("log/", Descend),
                ("pgsql_tmp/", Skip),
            ],
        );
        // Those names are special only as directories in the root.
        check("", 15, &[("pg_notify", OTHER)]);
        check(
            "pg_logical",
            15,
            &[("pg_notify/", Descend), ("postmaster.pid", OTHER)],
        );
    }

    #[test]
    fn wal_directory_contents() {
        let names = [
            "000000010000000000000001",
            "000000010000000000000002.partial",
            "00000002.history",
            "000000010000000000000001.00000028.backup",
            "archive_status/",
            "summaries/",
            "xlogtemp.1234",
        ];
        let pg16 = run("pg_wal", &names, 16);
        let pg17 = run("pg_wal", &names, 17);
        for name in names {
            let (want16, want17) = match name {
                "archive_status/" => (KeepDirEmpty, KeepDirEmpty),
                "summaries/" => (Skip, KeepDirEmpty),
                _ => (Skip, Skip),
            };
            assert_eq!(pg16[name], want16, "{name} on 16");
            assert_eq!(pg17[name], want17, "{name} on 17");
        }
        // A file that happens to be called archive_status is not the directory.
        check("pg_wal", 15, &[("archive_status", Skip)]);
    }

    #[test]
    fn temp_files_are_skipped_anywhere() {
        for dir in [
            "",
            "base",
            "base/5",
            "global",
            "pg_tblspc/16384/PG_15_202209061",
            "pg_logical/x",
        ] {
            check(
                dir,
                15,
                &[
                    ("pgsql_tmp/", Skip),
                    ("pgsql_tmp12345.0", Skip),
                    ("pgsql_tmp_extra/", Skip),
                    ("pg_internal.init", Skip),
                    ("pg_internal.init.4711", Skip),
                ],
            );
        }
    }

    #[test]
    fn relation_files_in_database_directories() {
        for dir in [
            "base/1",
            "base/16384",
            "pg_tblspc/16400/PG_15_202209061/16384",
            "global",
        ] {
            check(
                dir,
                15,
                &[
                    ("1259", REL0),
                    ("1259_fsm", REL0),
                    ("1259_vm", REL0),
                    ("16384.1", rel(1)),
                    ("16384.17", rel(17)),
                    ("16384_fsm.2", rel(2)),
                    ("4294967295", REL0),
                    ("pg_filenode.map", OTHER),
                    ("PG_VERSION", OTHER),
                    // Not relation names: kept, but not page-verified.
                    ("pg_control", OTHER),
                    ("16384.0", OTHER),
                    ("16384.", OTHER),
                    ("16384_main", OTHER),
                    ("16384_vm_fsm", OTHER),
                    ("16384.1.2", OTHER),
                    ("4294967296", OTHER),
                    ("16384.4294967296", OTHER),
                    ("1234x", OTHER),
                    ("_fsm", OTHER),
                    ("16384/", Descend),
                ],
            );
        }
    }

    #[test]
    fn relation_names_elsewhere_are_plain_files() {
        for dir in [
            "",
            "base",
            "pg_xact",
            "pg_tblspc/16400/PG_15_202209061",
            "base/5/sub",
            "pg_tblspc/1/PG_14_202107181/5",
        ] {
            check(
                dir,
                15,
                &[("1259", OTHER), ("0000", OTHER), ("t3_1234", OTHER)],
            );
        }
    }

    #[test]
    fn temporary_relations_are_skipped_in_database_directories() {
        for dir in ["base/5", "pg_tblspc/16400/PG_15_202209061/5"] {
            check(
                dir,
                15,
                &[
                    ("t3_16384", Skip),
                    ("t3_16384.1", Skip),
                    ("t12_16384_fsm", Skip),
                    ("t12_16384_vm", Skip),
                    ("t12_16384_init", Skip),
                    ("t3_16384_fsm.4", Skip),
                    // Not temp relation names.
                    ("t_16384", OTHER),
                    ("t3_", OTHER),
                    ("t3_abc", OTHER),
                    ("t3x_16384", OTHER),
                    ("tx", OTHER),
                ],
            );
        }
    }

    #[test]
    fn unlogged_relations_keep_only_their_init_fork() {
        for dir in ["base/5", "pg_tblspc/16400/PG_15_202209061/5"] {
            check(
                dir,
                15,
                &[
                    // 16390 is unlogged: it has an init fork.
                    ("16390", Skip),
                    ("16390.1", Skip),
                    ("16390_fsm", Skip),
                    ("16390_vm", Skip),
                    ("16390_init", REL0),
                    ("16390_init.1", rel(1)),
                    // 16391 is logged; 163900 merely shares a prefix with 16390.
                    ("16391", REL0),
                    ("16391_fsm", REL0),
                    ("163900", REL0),
                    ("1639", REL0),
                ],
            );
        }
        // Only a file counts as an init fork.
        check("base/5", 15, &[("16392_init/", Descend), ("16392", REL0)]);
        // global/ has no unlogged relations; pg_basebackup only looks in database directories.
        check("global", 15, &[("1262_init", REL0), ("1262", REL0)]);
    }

    #[test]
    fn tablespaces() {
        check(
            "pg_tblspc",
            15,
            &[("16400/", Descend), ("16401/", Descend), ("stray", OTHER)],
        );
        check(
            "pg_tblspc/16400",
            15,
            &[
                ("PG_15_202209061/", Descend),
                ("PG_14_202107181/", Skip),
                ("PG_16_202307071/", Skip),
                ("PG_15_202209061", Skip),
                ("PG_15_/", Skip),
                ("stray/", Skip),
                ("stray", Skip),
            ],
        );
        check(
            "pg_tblspc/16400/PG_15_202209061",
            15,
            &[("5/", Descend), ("16384/", Descend), ("pgsql_tmp/", Skip)],
        );
    }

    #[test]
    fn tablespace_version_directory_names() {
        assert!(is_tablespace_version_dir(b"PG_15_202209061", 15));
        assert!(is_tablespace_version_dir(b"PG_17_202406281", 17));
        assert!(!is_tablespace_version_dir(b"PG_15_202209061", 16));
        assert!(!is_tablespace_version_dir(b"PG_1_202209061", 15));
        assert!(!is_tablespace_version_dir(b"PG_150_202209061", 15));
        assert!(!is_tablespace_version_dir(b"PG_15_", 15));
        assert!(!is_tablespace_version_dir(b"PG_15_2022x", 15));
        assert!(!is_tablespace_version_dir(b"pg_15_202209061", 15));
        assert!(!is_tablespace_version_dir(b"PG_9.6_201608131", 15));
    }

    #[test]
    fn non_utf8_names_are_plain_files() {
        let name = [0xFF, 0xFE, b'1'];
        let out = dispose(
            b"base/5",
            &[EntryInfo {
                name: &name,
                is_dir: false,
            }],
            15,
        );
        assert_eq!(out, [OTHER]);
        let out = dispose(
            &[b'b', 0xFF],
            &[EntryInfo {
                name: b"1259",
                is_dir: false,
            }],
            15,
        );
        assert_eq!(out, [OTHER]);
    }
}
