//! The repository end to end on the local filesystem backend: every object type written and
//! read back, damage of every kind detected and named, the index cache rebuilt.

mod common;

use common::*;
use pgcairn::ErrorKind;
use pgcairn::crypto::KdfParams;
use pgcairn::repo::id::BlobId;
use pgcairn::repo::pack::BlobType;
use pgcairn::repo::random::RandomSource;
use pgcairn::repo::{InitOptions, Repository};
use pgcairn::storage::Storage;

/// Reads everything a snapshot references: fails if any object on the way is damaged.
fn read_everything(dir: &std::path::Path, stored: &Stored) -> pgcairn::Result<()> {
    let repo = open_indexed(dir)?;
    let snapshot = repo.load_snapshot(&stored.snapshot_id)?;
    assert_eq!(snapshot, stored.snapshot);
    for (path, content) in &stored.files {
        assert_eq!(&read_file(&repo, &snapshot.root, path)?, content, "{path}");
    }
    for (pack, size) in repo.with_cache(|c| c.packs())? {
        repo.check_pack(&pack, size)?;
    }
    Ok(())
}

#[test]
fn every_object_type_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let repo_id = repo.config().id;
    let mut repo = repo.load_index(Some(&dir.path().join("cache"))).unwrap();
    let stored = populate(&mut repo);
    drop(repo);

    let reopened = open_repo(dir.path()).unwrap();
    assert_eq!(reopened.config().id, repo_id);
    assert_eq!(reopened.list_snapshots().unwrap(), vec![stored.snapshot_id]);
    let indexed = reopened
        .load_index(Some(&dir.path().join("cache")))
        .unwrap();
    // The 2 MiB file has ~150 chunks: more than fit inline, so chunk-list blobs exist.
    let entries = indexed.with_cache(|c| c.entries()).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.entry.blob_type == BlobType::ChunkList)
    );
    assert!(entries.iter().any(|e| e.entry.blob_type == BlobType::Tree));
    for index in indexed.list_index_files().unwrap() {
        assert!(!indexed.load_index_file(&index).unwrap().packs.is_empty());
    }
    read_everything(dir.path(), &stored).unwrap();
}

#[test]
fn unchanged_data_is_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    let first = populate(&mut repo);
    let objects_before = object_files(dir.path()).len();
    let second = populate(&mut repo);
    // Same trees, same root: only a new snapshot object (different id: same content but a
    // fresh nonce) and no new pack or index file.
    assert_eq!(first.snapshot.root, second.snapshot.root);
    assert_eq!(object_files(dir.path()).len(), objects_before + 1);
}

/// Flips one byte of `path` at `offset` (from the end if negative).
fn flip(dir: &std::path::Path, path: &std::path::Path, offset: i64) {
    let full = dir.join("repo").join(path);
    let mut bytes = std::fs::read(&full).unwrap();
    let at = if offset < 0 {
        bytes.len() as i64 + offset
    } else {
        offset
    } as usize;
    bytes[at] ^= 0x20;
    std::fs::write(&full, bytes).unwrap();
}

#[test]
fn a_flipped_byte_in_any_object_is_detected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    let stored = populate(&mut repo);
    drop(repo);
    let pristine = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("repo"), &pristine.path().join("repo"));

    let objects = object_files(dir.path());
    assert!(objects.len() >= 6, "{objects:?}");
    for object in &objects {
        for offset in [0i64, 12, 40, -20, -1] {
            let len = std::fs::metadata(dir.path().join("repo").join(object))
                .unwrap()
                .len() as i64;
            if offset.abs() >= len {
                continue;
            }
            flip(dir.path(), object, offset);
            let _ = std::fs::remove_dir_all(dir.path().join("cache"));
            let err = read_everything(dir.path(), &stored).expect_err(&format!(
                "flip at {offset} in {} not detected",
                object.display()
            ));
            let name = object.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Integrity | ErrorKind::UnsupportedFormat
                ),
                "{}: {err} ({:?})",
                object.display(),
                err.kind()
            );
            assert!(
                err.to_string().contains(&name),
                "{}: error does not name it: {err}",
                object.display()
            );
            // Restore before the next flip.
            std::fs::copy(
                pristine.path().join("repo").join(object),
                dir.path().join("repo").join(object),
            )
            .unwrap();
        }
    }
    read_everything(dir.path(), &stored).unwrap();
}

#[test]
fn truncation_of_any_object_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    let stored = populate(&mut repo);
    drop(repo);
    for object in object_files(dir.path()) {
        let full = dir.path().join("repo").join(&object);
        let original = std::fs::read(&full).unwrap();
        for keep in [original.len() - 1, original.len() / 2, 3] {
            std::fs::write(&full, &original[..keep]).unwrap();
            let _ = std::fs::remove_dir_all(dir.path().join("cache"));
            let err = read_everything(dir.path(), &stored).expect_err(&format!(
                "{} cut to {keep} bytes not detected",
                object.display()
            ));
            let name = object.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                err.to_string().contains(&name),
                "{}: {err}",
                object.display()
            );
        }
        std::fs::write(&full, &original).unwrap();
    }
    read_everything(dir.path(), &stored).unwrap();
}

#[test]
fn objects_swapped_between_names_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    let stored = populate(&mut repo);
    let second = repo.save_snapshot(&stored.snapshot).unwrap();
    drop(repo);
    let a = dir
        .path()
        .join("repo/snapshots")
        .join(stored.snapshot_id.to_hex());
    let b = dir.path().join("repo/snapshots").join(second.to_hex());
    let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, &bytes_b).unwrap();
    std::fs::write(&b, &bytes_a).unwrap();
    let err = read_everything(dir.path(), &stored).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
    assert!(err.to_string().contains("does not match its name"), "{err}");
}

#[test]
fn wrong_password_is_a_password_error() {
    let dir = tempfile::tempdir().unwrap();
    init_repo(dir.path());
    let err = Repository::open(Storage::local(&dir.path().join("repo")).unwrap(), b"nope")
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Password);
    assert!(err.to_string().contains("wrong password"), "{err}");
}

#[test]
fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    init_repo(dir.path());
    let config = dir.path().join("repo/config");
    let mut bytes = std::fs::read(&config).unwrap();
    for (version, advice) in [
        (5u8, "upgrade pgcairn"),
        (3, "pre-release"),
        (2, "pre-release"),
        (1, "pre-release"),
    ] {
        bytes[8] = version;
        std::fs::write(&config, &bytes).unwrap();
        let err = open_repo(dir.path()).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::UnsupportedFormat);
        assert!(
            err.to_string().contains(&format!("version {version}")),
            "{err}"
        );
        assert!(err.to_string().contains(advice), "{err}");
    }
}

#[test]
fn init_refuses_an_existing_repository_or_a_non_empty_location() {
    let dir = tempfile::tempdir().unwrap();
    init_repo(dir.path());
    let before = object_files(dir.path());
    let again = Repository::init(
        Storage::local(&dir.path().join("repo")).unwrap(),
        PASSWORD,
        &init_options(),
        RandomSource::System,
    );
    assert_eq!(again.err().unwrap().kind(), ErrorKind::RepositoryExists);
    assert_eq!(object_files(dir.path()), before);

    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), b"hi").unwrap();
    let err = Repository::init(
        Storage::local(other.path()).unwrap(),
        PASSWORD,
        &InitOptions::with_kdf(KdfParams::INSECURE_FOR_TESTS),
        RandomSource::System,
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::RepositoryExists);
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn deleted_or_stale_index_cache_is_rebuilt_and_equal() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    populate(&mut repo);
    let expected = repo.with_cache(|c| c.entries()).unwrap();
    drop(repo);

    // Deleted: rebuilt from the index files.
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    let repo = open_indexed(dir.path()).unwrap();
    assert_eq!(repo.with_cache(|c| c.entries()).unwrap(), expected);
    drop(repo);

    // Stale: a copy of the cache from before more data was written learns the new index files.
    let stale = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("cache"), stale.path());
    let repo = open_indexed(dir.path()).unwrap();
    let packer = repo.packer();
    packer
        .add(BlobType::Data, &sample_bytes(10_000, 99))
        .unwrap();
    packer.flush().unwrap();
    let grown = repo.with_cache(|c| c.entries()).unwrap();
    assert_eq!(grown.len(), expected.len() + 1);
    drop(repo);
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    copy_dir(stale.path(), &dir.path().join("cache"));
    assert_eq!(
        open_indexed(dir.path())
            .unwrap()
            .with_cache(|c| c.entries())
            .unwrap(),
        grown
    );

    // An index file deleted on storage disappears from the cache: no answer from a stale cache.
    for index in std::fs::read_dir(dir.path().join("repo/index")).unwrap() {
        std::fs::remove_file(index.unwrap().path()).unwrap();
    }
    let repo = open_indexed(dir.path()).unwrap();
    assert!(repo.with_cache(|c| c.entries()).unwrap().is_empty());
    assert!(repo.read_blob(BlobType::Data, &grown[0].entry.id).is_err());
}

#[test]
fn repair_rebuilds_the_index_from_pack_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    let stored = populate(&mut repo);
    let expected = repo.with_cache(|c| c.entries()).unwrap();
    drop(repo);
    std::fs::remove_dir_all(dir.path().join("repo/index")).unwrap();
    assert!(
        open_indexed(dir.path())
            .unwrap()
            .with_cache(|c| c.entries())
            .unwrap()
            .is_empty()
    );
    let (repo, report) = repair(dir.path());
    assert_eq!(report.packs_reindexed, report.packs_on_storage);
    assert!(report.damaged_packs.is_empty());
    assert_eq!(repo.with_cache(|c| c.entries()).unwrap(), expected);
    drop(repo);
    read_everything(dir.path(), &stored).unwrap();

    // A second repair finds nothing to do.
    assert_eq!(repair(dir.path()).1.packs_reindexed, 0);
}

fn repair(
    dir: &std::path::Path,
) -> (
    pgcairn::repo::IndexedRepository,
    pgcairn::repo::RepairReport,
) {
    open_repo(dir)
        .unwrap()
        .repair_index(Some(&dir.join("cache")), |_, _| {})
        .unwrap()
}

#[test]
fn repair_replaces_a_damaged_index_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    let stored = populate(&mut repo);
    let expected = repo.with_cache(|c| c.entries()).unwrap();
    drop(repo);
    let index = object_files(dir.path())
        .into_iter()
        .find(|p| p.starts_with("index"))
        .unwrap();
    flip(dir.path(), &index, 30);
    // (A cache that already holds the file's authenticated content would not notice.)
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    let err = open_indexed(dir.path()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Integrity);

    let (repo, report) = repair(dir.path());
    assert_eq!(report.damaged_index_files.len(), 1);
    assert_eq!(
        report.damaged_index_files[0].0.to_hex(),
        index.file_name().unwrap().to_string_lossy()
    );
    assert_eq!(report.packs_reindexed, report.packs_on_storage);
    assert_eq!(repo.with_cache(|c| c.entries()).unwrap(), expected);
    drop(repo);
    assert!(!dir.path().join("repo").join(&index).exists());
    read_everything(dir.path(), &stored).unwrap();
}

#[test]
fn repair_reports_a_damaged_pack_and_indexes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    populate(&mut repo);
    drop(repo);
    std::fs::remove_dir_all(dir.path().join("repo/index")).unwrap();
    let packs: Vec<_> = object_files(dir.path())
        .into_iter()
        .filter(|p| p.starts_with("data"))
        .collect();
    assert!(packs.len() >= 2);
    flip(dir.path(), &packs[0], -10);
    let (_, report) = repair(dir.path());
    assert_eq!(report.damaged_packs.len(), 1);
    assert_eq!(report.packs_reindexed, packs.len() - 1);
    let damaged_name = packs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(report.damaged_packs[0].0.to_hex(), damaged_name);
}

#[test]
fn keys_add_remove_and_change_password() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let first = repo.key_in_use();
    let second = repo
        .add_key(b"second password", KdfParams::INSECURE_FOR_TESTS)
        .unwrap();
    let keys = repo.list_keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.description.is_ok()));
    assert!(keys.iter().find(|k| k.id == first).unwrap().in_use);

    // Refused: the key in use.
    assert_eq!(
        repo.remove_key(&first).unwrap_err().kind(),
        ErrorKind::Refused
    );
    // Opened with the second password, the first key can go; then the last one cannot.
    let storage = Storage::local(&dir.path().join("repo")).unwrap();
    let via_second = Repository::open(storage, b"second password").unwrap();
    assert_eq!(via_second.key_in_use(), second);
    via_second.remove_key(&first).unwrap();
    assert_eq!(
        via_second.remove_key(&second).unwrap_err().kind(),
        ErrorKind::Refused
    );
    assert_eq!(
        open_repo(dir.path()).err().unwrap().kind(),
        ErrorKind::Password
    );

    // passwd: the new password works, the old one no longer does, still one key.
    let mut repo = via_second;
    let replaced = repo
        .change_password(b"third", KdfParams::INSECURE_FOR_TESTS)
        .unwrap();
    assert_eq!(repo.list_keys().unwrap().len(), 1);
    let storage = || Storage::local(&dir.path().join("repo")).unwrap();
    assert_eq!(
        Repository::open(storage(), b"third").unwrap().key_in_use(),
        replaced
    );
    assert!(Repository::open(storage(), b"second password").is_err());
}

#[test]
fn a_damaged_key_file_is_reported_as_damage_not_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    init_repo(dir.path());
    let key = object_files(dir.path())
        .into_iter()
        .find(|p| p.starts_with("keys"))
        .unwrap();
    flip(dir.path(), &key, -5);
    let err = open_repo(dir.path()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Integrity);
    assert!(
        err.to_string()
            .contains(&*key.file_name().unwrap().to_string_lossy()),
        "{err}"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn locating_many_blobs_agrees_with_single_lookups_by_scan_and_by_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = init_indexed(dir.path());
    populate(&mut repo);
    let entries = repo.with_cache(|c| c.entries()).unwrap();
    let data: Vec<BlobId> = entries
        .iter()
        .filter(|e| e.entry.blob_type == BlobType::Data)
        .map(|e| e.entry.id)
        .collect();
    assert!(data.len() > 16, "populate stores {} data blobs", data.len());
    let unknown = BlobId([0x5a; 32]);
    // All of them: answered by one scan. Two of them: by lookups.
    for wanted in [data.clone(), data[..2].to_vec()] {
        let mut ids: std::collections::HashMap<BlobId, usize> =
            wanted.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        ids.insert(unknown, usize::MAX);
        let mut found = Vec::new();
        repo.with_cache(|c| c.locate_many(BlobType::Data, &mut ids, |loc, i| found.push((loc, i))))
            .unwrap();
        assert_eq!(found.len(), wanted.len());
        for (loc, i) in found {
            assert_eq!(loc.entry.id, wanted[i]);
            let single = repo
                .with_cache(|c| c.lookup(BlobType::Data, &wanted[i]))
                .unwrap()
                .unwrap();
            assert_eq!(loc, single);
        }
        // Only the unknown id is left.
        assert_eq!(ids.into_keys().collect::<Vec<_>>(), vec![unknown]);
    }
}
