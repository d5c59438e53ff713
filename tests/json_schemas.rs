//! Every `--json` output, produced for real, checked against its schema in docs/json/: a
//! PostgreSQL 15 cluster archiving through pgcairn, two backups, snapshots, info, restore
//! (preview and real), check, verify (--read-data, --restore-test), key list, copy (dry run and real)
//! into a second repository, prune (dry run and real); init, key add/passwd/remove and repair
//! index on a repository of their own. The schemas are closed (no unknown keys), so a key added
//! to an output without its schema and docs/json.md fails here. Also: each schema is valid
//! draft 2020-12, every schema is exercised, and every example in docs/json.md validates.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, assert_success, json, new_target, stdout, str_field, write_owned};
use common::json_schema::{
    assert_conforms, problems, read_json, schema_dir, schema_names, validator,
};
use common::pg::owned_temp_dir;

/// Checks outputs against schemas, and remembers which schemas it used.
#[derive(Default)]
struct Checker {
    used: Mutex<BTreeSet<String>>,
}

impl Checker {
    /// Asserts that `value` (the output of `what`) conforms to schema `name`.
    fn check(&self, name: &str, what: &str, value: &Value) {
        assert_conforms(name, what, value);
        self.used.lock().unwrap().insert(name.to_owned());
    }

    /// Runs pgcairn `args` against `cairn`, asserts success, checks stdout against `name`.
    fn run<S: AsRef<std::ffi::OsStr>>(&self, cairn: &Cairn, name: &str, args: &[S]) -> Value {
        let what = format!("{:?}", args.iter().map(|a| a.as_ref()).collect::<Vec<_>>());
        let out = cairn.run(args);
        assert_success(&out, &what);
        let value = json(&out);
        assert_eq!(
            stdout(&out).lines().count(),
            1,
            "{what}: --json prints one line"
        );
        self.check(name, &what, &value);
        value
    }
}

#[test]
fn every_schema_is_valid_draft_2020_12() {
    let mut files: Vec<String> = schema_names().into_iter().collect();
    files.push("defs.json".into());
    for name in &files {
        let schema = read_json(&schema_dir().join(name));
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{name} is not a valid draft 2020-12 schema: {e}");
        }
        if name.ends_with(".schema.json") {
            validator(name);
        }
    }
}

/// Each `### ` section of docs/json.md that links a schema has examples, and they conform;
/// every schema has such a section.
#[test]
fn the_examples_in_docs_json_md_conform() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
        .unwrap();
    let mut documented = BTreeSet::new();
    for section in doc.split("\n### ").skip(1) {
        let section = section.split("\n## ").next().unwrap();
        let title = section.lines().next().unwrap_or_default();
        let linked: Vec<&str> = section
            .split("](json/")
            .skip(1)
            .filter_map(|rest| rest.split_once(')'))
            .map(|(file, _)| file)
            .filter(|file| file.ends_with(".schema.json"))
            .collect();
        let [name] = linked[..] else {
            panic!("docs/json.md section {title:?} links {linked:?}: one schema expected");
        };
        let examples: Vec<&str> = section
            .split("```json\n")
            .skip(1)
            .map(|block| block.split("\n```").next().unwrap())
            .collect();
        assert!(!examples.is_empty(), "section {title:?} has no example");
        for example in examples {
            let value: Value = serde_json::from_str(example)
                .unwrap_or_else(|e| panic!("section {title:?}: example is not JSON: {e}"));
            let found = problems(name, &value);
            assert!(
                found.is_empty(),
                "docs/json.md section {title:?}: example does not match {name}:\n  {}",
                found.join("\n  ")
            );
        }
        documented.insert(name.to_owned());
    }
    assert_eq!(
        documented,
        schema_names(),
        "schemas documented in docs/json.md"
    );
}

/// The schemas are strict: an unknown key, a retyped key or a null where none may be fails.
#[test]
fn the_schemas_refuse_what_they_do_not_describe() {
    let doc = std::fs::read_to_string(schema_dir().join("../json.md")).unwrap();
    // The key list example: small, with nested objects.
    let example = doc
        .split("```json\n")
        .map(|block| block.split("\n```").next().unwrap())
        .find(|block| block.contains("\"keys\""))
        .expect("docs/json.md shows key list --json");
    let good: Value = serde_json::from_str(example).unwrap();
    assert!(problems("key-list.schema.json", &good).is_empty());
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: [Mutation; 5] = [
        ("an unknown key", |v| v["keys"][0]["colour"] = "blue".into()),
        ("an id as a number", |v| v["keys"][0]["id"] = 7.into()),
        ("a null where none may be", |v| {
            v["keys"][0]["in_use"] = Value::Null
        }),
        ("a time in another format", |v| {
            v["keys"][0]["created"] = "2026-11-21T12:00:00Z".into()
        }),
        ("a missing key", |v| {
            v["keys"][0].as_object_mut().unwrap().remove("in_use");
        }),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(
            !problems("key-list.schema.json", &bad).is_empty(),
            "key-list.schema.json accepts {what}: {bad}"
        );
    }
}

#[test]
fn every_output_matches_its_schema() {
    let began = Instant::now();
    let checker = Checker::default();
    commands_without_a_cluster(&checker);

    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    cluster.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 10000) g;",
    );
    let backup = |extra: &[&str]| {
        let mut args: Vec<OsString> = vec!["backup".into(), "--pgdata".into()];
        args.push(cluster.pgdata().into());
        args.extend(["--db".into(), cluster.conninfo().into(), "--fast".into()]);
        args.extend(["--json".into()]);
        args.extend(extra.iter().map(OsString::from));
        checker.run(&cairn, "backup.schema.json", &args)
    };
    let first = backup(&[]);
    cluster.execute("UPDATE t SET v = 'changed' WHERE id <= 100");
    switch_wal_and_wait_archived(&cluster);
    let second = backup(&["--tag", "nightly", "--cluster", "main"]);
    assert_eq!(second["parent"], first["snapshot"], "{second}");
    switch_wal_and_wait_archived(&cluster);

    let mut args: Vec<OsString> = vec!["check".into(), "--pgdata".into()];
    args.push(cluster.pgdata().into());
    args.extend(["--db".into(), cluster.conninfo().into(), "--json".into()]);
    let checked = checker.run(&cairn, "check.schema.json", &args);
    assert_eq!(checked["status"], "ok", "{checked}");

    let listed = checker.run(&cairn, "snapshots.schema.json", &["snapshots", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    checker.run(&cairn, "info.schema.json", &["info", "--json"]);

    let preview = checker.run(
        &cairn,
        "restore.schema.json",
        &["restore", "--preview", "--json"],
    );
    assert!(preview["restored"].is_null(), "{preview}");
    let (_dir, pgdata) = new_target("restored");
    let restored = checker.run(
        &cairn,
        "restore.schema.json",
        &[
            OsString::from("restore"),
            str_field(&first, "snapshot").into(),
            "--pgdata".into(),
            pgdata.clone().into(),
            "--target-immediate".into(),
            "--json".into(),
        ],
    );
    assert_eq!(restored["preview"], false, "{restored}");
    assert!(pgdata.join("backup_label").exists());

    checker.run(
        &cairn,
        "verify.schema.json",
        &["verify", "--read-data", "--json"],
    );
    let scratch = owned_temp_dir();
    let tested = checker.run(
        &cairn,
        "verify-restore-test.schema.json",
        &[
            OsString::from("verify"),
            "--restore-test".into(),
            "--restore-test-check".into(),
            "quick".into(),
            "--restore-test-dir".into(),
            scratch.path().into(),
            "--json".into(),
        ],
    );
    assert_eq!(tested["passed"], true, "{tested}");

    checker.run(&cairn, "key-list.schema.json", &["key", "list", "--json"]);

    let target = Cairn::with_password("the offsite copy's password");
    let copy = |extra: &[&str], schema: &str| {
        let mut args: Vec<OsString> = vec!["copy".into(), "--to".into(), target.repo().into()];
        args.extend(["--to-password-file".into(), target.password_file().into()]);
        args.push("--json".into());
        args.extend(extra.iter().map(OsString::from));
        checker.run(&cairn, schema, &args)
    };
    let planned = copy(&["--dry-run"], "copy-dry-run.schema.json");
    assert_eq!(planned["snapshots_to_copy"], 2, "{planned}");
    let copied = copy(&[], "copy.schema.json");
    assert_eq!(copied["snapshots_copied"], 2, "{copied}");

    let prune = |extra: &[&str]| {
        let mut args = vec!["prune", "--keep-last", "1", "--unsafe-no-grace", "--json"];
        args.extend(extra);
        checker.run(&cairn, "prune.schema.json", &args)
    };
    let dry = prune(&["--dry-run"]);
    assert!(dry["done"].is_null(), "{dry}");
    let pruned = prune(&[]);
    assert!(pruned["done"].is_object(), "{pruned}");

    assert_eq!(
        *checker.used.lock().unwrap(),
        schema_names(),
        "schemas exercised by this test vs docs/json/*.schema.json"
    );
    eprintln!(
        "every output checked in {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

/// `init`, `key add`, `key passwd`, `key remove`, `repair index` on a repository of their own
/// (a password change would disturb the other commands).
fn commands_without_a_cluster(checker: &Checker) {
    let cairn = Cairn::uninitialised(common::cairn::PASSWORD);
    let init = checker.run(&cairn, "init.schema.json", &["init", "--json"]);
    let key = |command: &[&str], password: &Path, new: Option<&Path>| {
        let mut args: Vec<OsString> = command.iter().map(OsString::from).collect();
        if let Some(new) = new {
            args.extend(["--new-password-file".into(), new.into()]);
        }
        args.push("--json".into());
        let out = cairn
            .command_with_password(&args, password)
            .output()
            .unwrap();
        assert_success(&out, &format!("{command:?}"));
        let value = json(&out);
        checker.check("key-change.schema.json", &format!("{command:?}"), &value);
        value
    };
    let (second, third) = (cairn.path("second"), cairn.path("third"));
    write_owned(&second, "a second password\n");
    write_owned(&third, "a third password\n");
    let added = key(&["key", "add"], &cairn.password_file(), Some(&second));
    let replaced = key(&["key", "passwd"], &second, Some(&third));
    assert_eq!(replaced["removed"], added["added"], "{replaced}");
    let removed = key(
        &["key", "remove", &str_field(&init, "key")[..8]],
        &third,
        None,
    );
    assert_eq!(removed["removed"], init["key"], "{removed}");
    let out = cairn
        .command_with_password(&["repair", "index", "--json"], &third)
        .output()
        .unwrap();
    assert_success(&out, "repair index --json");
    checker.check("repair-index.schema.json", "repair index", &json(&out));
}
