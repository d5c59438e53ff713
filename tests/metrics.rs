//! `pgcairn metrics`: Prometheus text format that a scraper accepts, with values that match
//! the repository, and a file that says so when the repository cannot be read.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, assert_code, assert_success, u64_field};

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text format strictly: every sample's metric has HELP and TYPE lines before it
/// and its samples follow them as one group, names and labels are well formed, values are
/// floats, nothing else is there.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed = BTreeMap::new();
    let mut current = String::new();
    let mut samples = Vec::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(name_ok(name) && !help.is_empty(), "bad HELP line {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert_eq!(kind, "gauge", "{line}");
            assert!(
                typed.insert(name.to_string(), ()).is_none(),
                "TYPE of {name} twice"
            );
            current = name.to_string();
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in body.split("\",") {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    assert!(name_ok(k), "bad label name in {line:?}");
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name, labels)
            }
        };
        assert!(
            typed.contains_key(name),
            "{name} sampled before its TYPE line"
        );
        assert_eq!(
            name, current,
            "a sample of {name} outside its family's group"
        );
        samples.push((name.to_string(), labels, value));
    }
    samples
}

fn value(samples: &[Sample], name: &str, cluster: Option<&str>) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && cluster.is_none_or(|c| labels.get("cluster").map(String::as_str) == Some(c))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{name} for {cluster:?}: {found:?}");
    found[0]
}

#[test]
fn metrics_describe_the_repository_and_a_failed_run_says_so() {
    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    cluster.pgbench_init(2);
    let first = cairn.backup_json(&cluster, &["--cluster", "main"]);
    cluster.pgbench(&["-n", "-t", "200"]);
    let second = cairn.backup_json(&cluster, &["--cluster", "main"]);
    // A commit after the last backup: the recoverable window reaches past it.
    cluster.execute("CREATE TABLE after_the_backups (id int)");
    switch_wal_and_wait_archived(&cluster);

    let text = cairn.run_ok(&["metrics"]);
    let samples = parse(&text);
    let get = |name: &str| value(&samples, name, Some("main"));
    let repo = |name: &str| value(&samples, name, None);
    assert_eq!(repo("pgcairn_up"), 1.0);
    assert_eq!(repo("pgcairn_repository_snapshots"), 2.0);
    assert_eq!(get("pgcairn_snapshots"), 2.0);
    assert_eq!(
        get("pgcairn_last_backup_logical_bytes"),
        u64_field(&second, "logical_bytes") as f64
    );
    assert_eq!(
        get("pgcairn_last_backup_added_bytes"),
        u64_field(&second, "stored_bytes") as f64
    );
    assert!(get("pgcairn_last_backup_age_seconds") < 600.0);
    assert_eq!(get("pgcairn_last_backup_restorable"), 1.0);
    assert!(get("pgcairn_archive_lag_seconds") < 600.0);
    assert_eq!(get("pgcairn_recoverable"), 1.0);
    assert_eq!(get("pgcairn_archive_gaps"), 0.0);
    // The window starts at the first backup's consistency point and reaches past the second,
    // to the commit after it.
    let start = get("pgcairn_recoverable_window_start_timestamp_seconds");
    let end = get("pgcairn_recoverable_window_end_timestamp_seconds");
    assert!(
        end >= get("pgcairn_last_backup_timestamp_seconds") - 1.0 && start < end,
        "window {start}..{end}"
    );
    assert!((get("pgcairn_recoverable_window_seconds") - (end - start)).abs() < 0.01);
    let system_id = first["system_identifier"].as_str().unwrap();
    assert!(samples.iter().any(|(n, l, _)| n == "pgcairn_snapshots"
        && l.get("system_identifier").map(String::as_str) == Some(system_id)));
    // The repository's size is its pack files' size on disk.
    let repo_dir = cairn.repo();
    let pack_bytes: u64 = common::object_files(repo_dir.parent().unwrap())
        .iter()
        .filter(|path| path.starts_with("data"))
        .map(|path| std::fs::metadata(repo_dir.join(path)).unwrap().len())
        .sum();
    assert_eq!(repo("pgcairn_repository_size_bytes"), pack_bytes as f64);
    assert!(repo("pgcairn_repository_dedup_ratio") >= 1.0);

    // --output writes a file a collector running as another user can read.
    let file = cairn.path("textfile/pgcairn.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    common::pg::give_to_cluster_owner(file.parent().unwrap());
    cairn.run_ok(&["metrics", "--output", file.to_str().unwrap()]);
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(parse(&written).len(), samples.len());
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // A run that cannot open the repository still replaces the file, and exits as it failed.
    let wrong = cairn.path("wrong-password");
    common::cairn::write_owned(&wrong, "not the password\n");
    let out = cairn
        .command_with_password(&["metrics", "--output", file.to_str().unwrap()], &wrong)
        .output()
        .unwrap();
    assert_code(&out, 3, "metrics with a wrong password");
    let failed = parse(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(value(&failed, "pgcairn_up", None), 0.0);
    assert_eq!(value(&failed, "pgcairn_error_exit_code", None), 3.0);

    let out = cairn.run(&["metrics", "--cluster", "nope"]);
    assert_code(&out, 2, "metrics --cluster nope");
    assert_success(
        &cairn.run(&["metrics", "--cluster", system_id]),
        "metrics --cluster ID",
    );
}
