//! Several clusters in one repository: their data deduplicates against each other, their WAL
//! stays apart, and `--cluster NAME|SYSTEM_ID` selects one for snapshots, info, restore and
//! prune.

mod common;

use common::archiving::{server_now, switch_wal_and_wait_archived};
use common::cairn::{
    Cairn, assert_code, assert_success, json, new_target, stderr, str_field, u64_field,
    wait_promoted,
};
use common::pg::Cluster;

fn system_id(cluster: &Cluster) -> String {
    cluster.sql_one_string("SELECT system_identifier::text FROM pg_control_system()")
}

fn listed(cairn: &Cairn, selector: &str) -> Vec<serde_json::Value> {
    let out = cairn.run_ok(&["snapshots", "--cluster", selector, "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn rows(cluster: &Cluster) -> String {
    cluster.sql_one_string("SELECT string_agg(note, ',' ORDER BY note) FROM notes")
}

#[test]
fn two_clusters_share_one_repository_and_are_selected_by_name_or_system_id() {
    let cairn = Cairn::new();
    let mut conf = cairn.archiving_conf();
    let plain: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(billing) = Cluster::started_checksummed(15, &plain) else {
        return;
    };
    // This one is named by its cluster_name setting, the other by backup --cluster.
    conf.push("cluster_name = 'sales'".into());
    let named: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(sales) = Cluster::started_checksummed(15, &named) else {
        return;
    };
    let (sales_id, billing_id) = (system_id(&sales), system_id(&billing));
    assert_ne!(sales_id, billing_id);
    for (cluster, note) in [(&sales, "sales-1"), (&billing, "billing-1")] {
        cluster.pgbench_init(4);
        cluster.execute(&format!(
            "CREATE TABLE notes (note text); INSERT INTO notes VALUES ('{note}');"
        ));
    }

    let first_sales = cairn.backup_json(&sales, &[]);
    assert_eq!(first_sales["cluster_name"], "sales");
    let refused = cairn.backup(&billing, &["--cluster", "12345"]);
    assert_code(&refused, 2, "backup --cluster with an all-digit name");
    assert!(
        stderr(&refused).contains("system identifier"),
        "{}",
        stderr(&refused)
    );
    let first_billing = cairn.backup_json(&billing, &["--cluster", "billing"]);
    assert_eq!(first_billing["cluster_name"], "billing");
    // Same major, same kind of data: the second cluster's first backup finds most of its
    // chunks already stored by the first one's.
    let (sales_added, billing_added) = (
        u64_field(&first_sales, "stored_bytes"),
        u64_field(&first_billing, "stored_bytes"),
    );
    eprintln!(
        "first backups: sales added {sales_added} bytes of {}, billing {billing_added} of {}",
        u64_field(&first_sales, "logical_bytes"),
        u64_field(&first_billing, "logical_bytes")
    );
    assert!(
        billing_added * 2 < sales_added,
        "billing's first backup added {billing_added} bytes, sales' {sales_added}: no dedup \
         across clusters"
    );

    // A later point of billing to recover to, and WAL after it that must not be replayed.
    billing.execute("INSERT INTO notes VALUES ('billing-2')");
    let target = server_now(&billing);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    billing.execute("INSERT INTO notes VALUES ('billing-3')");
    sales.execute("INSERT INTO notes VALUES ('sales-2')");
    switch_wal_and_wait_archived(&billing);
    switch_wal_and_wait_archived(&sales);
    let second_billing = cairn.backup_json(&billing, &["--cluster", "billing"]);

    // Listing by name, by system identifier, and a selector naming nothing.
    let by_name = listed(&cairn, "billing");
    assert_eq!(by_name.len(), 2);
    assert!(
        by_name
            .iter()
            .all(|s| s["system_identifier"] == billing_id.as_str())
    );
    let by_id = listed(&cairn, &sales_id);
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0]["cluster_name"], "sales");
    let unknown = cairn.run(&["snapshots", "--cluster", "nope"]);
    assert_code(&unknown, 2, "snapshots --cluster nope");
    let message = stderr(&unknown);
    assert!(
        message.contains(&format!("sales ({sales_id})"))
            && message.contains(&format!("billing ({billing_id})")),
        "{message}"
    );
    let info = json(&cairn.run(&["info", "--cluster", "sales", "--json"]));
    let clusters = info["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0]["names"], serde_json::json!(["sales"]));
    assert_eq!(
        clusters[0]["timelines"][0]["timeline"], 1,
        "info --cluster sales shows its WAL: {info}"
    );

    // Restore needs to know which cluster; each restores its own data and WAL.
    let (_dir, pgdata) = new_target("ambiguous");
    let ambiguous = cairn.restore("latest", &pgdata, &[]);
    assert_code(&ambiguous, 2, "restore with two clusters and no --cluster");
    assert!(
        stderr(&ambiguous).contains("--cluster"),
        "{}",
        stderr(&ambiguous)
    );
    let (_dir, pgdata) = new_target("billing");
    let out = cairn.restore(
        "latest",
        &pgdata,
        &[
            "--cluster",
            "billing",
            "--target-time",
            &target,
            "--target-action",
            "promote",
        ],
    );
    assert_success(&out, "restore --cluster billing --target-time");
    let mut restored = Cluster::from_existing(billing.install(), &pgdata);
    restored.start();
    wait_promoted(&restored);
    assert_eq!(system_id(&restored), billing_id);
    assert_eq!(rows(&restored), "billing-1,billing-2");
    restored.stop();
    let (_dir, pgdata) = new_target("sales");
    let out = cairn.restore("latest", &pgdata, &["--cluster", &sales_id]);
    assert_success(
        &out,
        "restore --cluster SYSTEM_ID to the end of the archive",
    );
    let mut restored = Cluster::from_existing(sales.install(), &pgdata);
    restored.start();
    wait_promoted(&restored);
    assert_eq!(system_id(&restored), sales_id);
    assert_eq!(rows(&restored), "sales-1,sales-2");
    restored.stop();
    let wrong = cairn.restore(
        str_field(&first_sales, "snapshot"),
        &pgdata,
        &["--cluster", "billing"],
    );
    assert_code(
        &wrong,
        2,
        "restore of a sales snapshot with --cluster billing",
    );

    // Prune applies the policy to the selected cluster only.
    let out = cairn.run(&[
        "prune",
        "--cluster",
        "billing",
        "--keep-last",
        "1",
        "--json",
    ]);
    assert_success(&out, "prune --cluster billing --keep-last 1");
    let report = json(&out);
    let verdict = |id: &str| {
        report["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not in the prune report: {report}"))
            .clone()
    };
    assert_eq!(
        verdict(str_field(&first_billing, "snapshot"))["keep"],
        false
    );
    assert_eq!(
        verdict(str_field(&second_billing, "snapshot"))["keep"],
        true
    );
    let untouched = verdict(str_field(&first_sales, "snapshot"));
    assert_eq!(untouched["keep"], true);
    assert!(
        untouched["reasons"][0]
            .as_str()
            .unwrap()
            .contains("another cluster"),
        "{untouched}"
    );
    assert!(
        report["wal_expired"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["system_identifier"] == billing_id.as_str()),
        "prune --cluster billing expired another cluster's WAL: {report}"
    );
    assert_eq!(listed(&cairn, "billing").len(), 1);
    assert_eq!(listed(&cairn, "sales").len(), 1);
}
