//! Offsite repositories: pgcairn against real S3 (s3s-fs), SFTP (OpenSSH) and WebDAV (rclone)
//! servers on 127.0.0.1, started by the test (tests/common/servers.rs; installed by
//! scripts/install-offsite-servers.sh).
//!
//! First the servers themselves, without pgcairn: each is reachable, with its credentials only,
//! and keeps what it is sent where the harness looks for it.
//!
//! Then, per backend, the whole life of a repository there: `init`; a real PostgreSQL 15 that
//! archives into it through `archive-push`; two backups; `archive-get` of every segment,
//! byte for byte; a point-in-time restore to a restore point made after the backups, started
//! and compared; `prune` forgetting the first snapshot and deleting its packs on the server;
//! `verify --read-data --strict`. Credentials come from a config file's `[storage]` table, which
//! restore passes on to the restored server's restore_command.
//!
//! And the failures an operator meets first, each a clear error with its documented exit code:
//! wrong S3 credentials, a missing bucket, nothing listening, a missing SFTP key.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{
    Cairn, assert_success, code, json, new_target, stderr, table_md5, wait_promoted,
};
use common::pg::{Cluster, run_as_cluster_owner};
use common::servers::{Remote, S3Server, SftpServer, WebdavServer, free_port, require_program};

fn curl(args: &[&str]) -> Output {
    let curl = require_program(Path::new("curl"), "curl");
    Command::new(curl)
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running curl")
}

/// curl's `--write-out %{http_code}` of a request, and the body.
fn http_status(args: &[&str]) -> (String, String) {
    let mut all = vec!["--output", "-", "--write-out", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_string(), body.to_string())
}

#[test]
fn s3_server_takes_signed_requests_only() {
    let server = S3Server::start();
    let object = format!("{}/{}/smoke/hello", server.endpoint(), server.bucket());
    let user = format!("{}:{}", server.access_key(), server.secret_key());
    let sigv4 = format!("aws:amz:{}:s3", S3Server::REGION);
    // s3s wants the payload hash header, which curl signs but does not add by itself.
    let signed = |more: &[&str]| -> (String, String) {
        let mut args = vec![
            "--aws-sigv4",
            &sigv4,
            "--user",
            &user,
            "--header",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ];
        args.extend_from_slice(more);
        http_status(&args)
    };
    let (status, body) = signed(&["--request", "PUT", "--data-binary", "hello", &object]);
    assert_eq!(status, "200", "signed PUT: {body}\n{}", server.log());
    let stored = server.bucket_dir().join("smoke/hello");
    assert_eq!(
        std::fs::read(&stored).ok(),
        Some(b"hello".to_vec()),
        "{}",
        stored.display()
    );

    let listing = format!("{}/{}?list-type=2", server.endpoint(), server.bucket());
    let (status, body) = signed(&[&listing]);
    assert_eq!(status, "200", "signed list: {body}");
    assert!(body.contains("<Key>smoke/hello</Key>"), "{body}");

    let (status, _) = http_status(&[&object]);
    assert_eq!(status, "403", "an unsigned GET must be refused");
    let wrong = format!("{}:not-the-secret", server.access_key());
    let (status, _) = http_status(&[
        "--aws-sigv4",
        &sigv4,
        "--user",
        &wrong,
        "--header",
        "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        &object,
    ]);
    assert_eq!(
        status, "403",
        "a GET signed with a wrong secret must be refused"
    );
}

#[test]
fn sftp_server_lets_the_client_key_in() {
    let server = SftpServer::start();
    let sftp = require_program(Path::new("sftp"), "sftp (openssh-client)");
    let target = server.data_dir().join("smoke");
    // As the cluster owner, like pgcairn's ssh: the key is that user's.
    let mut cmd = Command::new(sftp);
    cmd.args(server.ssh_options())
        .args(["-P", &server.port().to_string(), "-b", "-"])
        .arg(format!("{}@127.0.0.1", server.user()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_as_cluster_owner(&mut cmd);
    let mut child = cmd.spawn().expect("running sftp");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("sftp's stdin");
        writeln!(stdin, "mkdir {}", target.display()).unwrap();
        writeln!(stdin, "put /etc/hostname {}/hostname", target.display()).unwrap();
    }
    let out = child.wait_with_output().expect("waiting for sftp");
    assert!(
        out.status.success(),
        "sftp failed ({}):\n{}{}\nsshd:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert_eq!(
        std::fs::read(target.join("hostname")).unwrap(),
        std::fs::read("/etc/hostname").unwrap()
    );
}

#[test]
fn webdav_server_wants_its_password() {
    let server = WebdavServer::start();
    let url = format!("http://127.0.0.1:{}/hello", server.port());
    let user = format!("{}:{}", server.user(), server.password());
    let (status, body) = http_status(&[
        "--user",
        &user,
        "--request",
        "PUT",
        "--data-binary",
        "hello",
        &url,
    ]);
    assert_eq!(status, "201", "authenticated PUT: {body}\n{}", server.log());
    assert_eq!(
        std::fs::read(server.root_dir().join("hello")).ok(),
        Some(b"hello".to_vec())
    );
    let (status, _) = http_status(&[&url]);
    assert_eq!(status, "401", "a GET without the password must be refused");
    let (status, body) = http_status(&[
        "--user",
        &user,
        "--request",
        "PROPFIND",
        "--header",
        "Depth: 1",
        &format!("http://127.0.0.1:{}/", server.port()),
    ]);
    assert_eq!(status, "207", "PROPFIND: {body}");
    assert!(body.contains("hello"), "{body}");
}

/// Files under `dir`, recursively (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("reading a directory entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The WAL segment names in the server's pg_wal from `first` through `last`.
fn segments_between(cluster: &Cluster, first: &str, last: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cluster.pgdata().join("pg_wal"))
        .expect("listing pg_wal")
        .map(|e| {
            e.expect("reading pg_wal")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter(|n| n.as_str() >= first && n.as_str() <= last)
        .collect();
    names.sort();
    names
}

fn prune_json(cairn: &Cairn, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["prune", "--json"];
    all.extend_from_slice(args);
    let out = cairn.run(&all);
    assert_success(&out, &format!("{all:?}"));
    json(&out)
}

/// The whole life of a repository on `remote` (see the module's documentation).
/// Restores `cairn`'s latest snapshot to the restore point `offsite`, starts it, and returns
/// the checksum of `kept` there.
fn restored_at_point(cairn: &Cairn, cluster: &Cluster, name: &str) -> String {
    let (_dir, target) = new_target(name);
    let out = cairn.restore(
        "latest",
        &target,
        &["--target-name", "offsite", "--target-action", "promote"],
    );
    assert_success(&out, "restore --target-name offsite");
    let mut restored = Cluster::from_existing(cluster.install(), &target);
    restored.start();
    wait_promoted(&restored);
    let md5 = table_md5(&restored, "kept", "n");
    restored.stop();
    md5
}

/// The lifecycle on `remote`; then, with `copy_to`, `pgcairn copy` of what is left into a
/// repository on another backend, which must verify and restore on its own.
fn repository_lifecycle(remote: Remote, copy_to: Option<Remote>) {
    let started = std::time::Instant::now();
    let cairn = Cairn::on(remote);
    assert!(
        cairn.repo().join("config").is_file(),
        "init stored no config where the server keeps {}",
        cairn.repo().display()
    );
    let mut conf = cairn.archiving_conf();
    // Segments stay in pg_wal, to compare with what archive-get returns.
    conf.push("wal_keep_size = '1GB'".into());
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(mut cluster) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    cluster.execute(
        "CREATE TABLE kept (n int PRIMARY KEY, v text);
         INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, 50000) g;
         CREATE TABLE gone AS SELECT g, md5(random()::text) || md5(random()::text) AS v
           FROM generate_series(1, 150000) g;",
    );
    let first = switch_wal_and_wait_archived(&cluster);

    // Two snapshots; only the first holds `gone`, so forgetting it frees packs.
    let first_snapshot = cairn.backup_json(&cluster, &[]);
    cluster.execute(
        "DROP TABLE gone;
         INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(50001, 60000) g;",
    );
    let second_snapshot = cairn.backup_json(&cluster, &[]);

    // A restore point after both backups, and rows after it that a restore to it must lack.
    cluster.execute(
        "INSERT INTO kept SELECT g, 'before the point' FROM generate_series(60001, 61000) g",
    );
    let at_point = table_md5(&cluster, "kept", "n");
    cluster.sql_one_string("SELECT pg_create_restore_point('offsite')");
    cluster.execute(
        "INSERT INTO kept SELECT g, 'after the point' FROM generate_series(61001, 62000) g",
    );
    let last = switch_wal_and_wait_archived(&cluster);

    let segments = segments_between(&cluster, &first, &last);
    assert!(segments.len() >= 3, "{segments:?}");
    cairn.assert_archived_exactly(&system_id, &segments, |name| {
        cluster.pgdata().join("pg_wal").join(name)
    });
    let never = cairn.archive_get(&system_id, "0000000100000001000000FF", &cairn.path("never"));
    assert_eq!(
        code(&never),
        1,
        "archive-get of a segment never archived: {}",
        stderr(&never)
    );

    // Point-in-time recovery from the offsite archive, through the restore_command restore
    // writes (the same --repo and --config).
    assert_eq!(
        restored_at_point(&cairn, &cluster, "pitr"),
        at_point,
        "the restore to the restore point differs"
    );
    // Nothing writes to the repository from here on: prune may delete at once.
    cluster.stop();

    let packs_before = files_under(&cairn.repo().join("data")).len();
    let report = prune_json(&cairn, &["--keep-last", "1", "--unsafe-no-grace"]);
    let forgotten = report.to_string();
    assert!(
        forgotten.contains(first_snapshot["snapshot"].as_str().expect("snapshot id")),
        "the first snapshot was not forgotten: {report}"
    );
    // Packs condemned by the first run are deleted by the next.
    let again = prune_json(&cairn, &["--keep-last", "1", "--unsafe-no-grace"]);
    let deleted = report["done"]["packs_deleted"].as_u64().unwrap_or(0)
        + again["done"]["packs_deleted"].as_u64().unwrap_or(0);
    let packs_after = files_under(&cairn.repo().join("data")).len();
    assert!(
        deleted > 0 && packs_after < packs_before,
        "prune deleted {deleted} packs; the server holds {packs_after} (before: {packs_before}):\n{report}\n{again}"
    );
    assert_eq!(
        cairn.snapshot_ids(),
        vec![
            second_snapshot["snapshot"]
                .as_str()
                .expect("snapshot id")
                .to_string()
        ]
    );

    let out = cairn.run(&["verify", "--read-data", "--strict"]);
    assert_success(&out, "verify --read-data --strict");
    eprintln!("repository lifecycle took {:?}", started.elapsed());

    let Some(copy_to) = copy_to else {
        return;
    };
    // The target's credentials come from its URL and the environment: copy's --config is
    // the source's.
    let target = Cairn::on(copy_to.clone());
    let mut copy = cairn.command(&[
        "copy".as_ref(),
        "--to".as_ref(),
        target.location().as_os_str(),
        "--to-password-file".as_ref(),
        target.password_file().as_os_str(),
        "--json".as_ref(),
    ]);
    copy.envs(copy_to.env.iter().map(|(k, v)| (k, v)));
    let out = copy.output().expect("run pgcairn copy");
    assert_success(&out, "copy --to another backend");
    let out = target.run(&["verify", "--read-data", "--strict"]);
    assert_success(&out, "verify --read-data --strict of the copy");
    assert_eq!(
        restored_at_point(&target, &cluster, "from-copy"),
        at_point,
        "the copy restores to another state"
    );
    eprintln!("lifecycle and copy took {:?}", started.elapsed());
}

#[test]
fn s3_repository_lifecycle_and_copy_to_sftp() {
    let server = S3Server::start();
    let sftp = SftpServer::start();
    repository_lifecycle(server.remote("lifecycle"), Some(sftp.remote_in_url("copy")));
}

#[test]
fn sftp_repository_lifecycle() {
    let server = SftpServer::start();
    repository_lifecycle(server.remote("lifecycle"), None);
}

#[test]
fn webdav_repository_lifecycle() {
    let server = WebdavServer::start();
    repository_lifecycle(server.remote("lifecycle"), None);
}

/// pgcairn with `--repo URL` and `env`. Its config file allows one retry only: the failures
/// below would be retried for half a minute otherwise, to the same end.
fn pgcairn(url: &str, env: &[(String, String)], args: &[&str]) -> Output {
    let dir = common::pg::owned_temp_dir();
    let password = dir.path().join("password");
    common::cairn::write_owned(&password, "a password\n");
    let config = dir.path().join("pgcairn.toml");
    common::cairn::write_owned(&config, "[storage]\nretries = 1\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcairn"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PGCAIRN_INSECURE_TEST_KDF", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--repo")
        .arg(url)
        .arg("--config")
        .arg(&config)
        .arg("--password-file")
        .arg(&password)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(args)
        .stdin(Stdio::null());
    run_as_cluster_owner(&mut cmd);
    cmd.output().expect("running pgcairn")
}

/// A failure as the contract wants it: exit `expected`, no panic, one error line that
/// mentions each of `mentions` (any one of the alternatives separated by `|`).
fn assert_clear_failure(out: &Output, expected: i32, mentions: &[&str], what: &str) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
    assert_eq!(
        out.status.code(),
        Some(expected),
        "{what}: expected exit {expected}:\n{err}"
    );
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("pgcairn: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{what}: one error line expected:\n{err}");
    eprintln!("{what}: {}", errors[0]);
    let line = errors[0].to_lowercase();
    for mention in mentions {
        assert!(
            mention.split('|').any(|m| line.contains(&m.to_lowercase())),
            "{what}: the error does not mention {mention:?}:\n{err}"
        );
    }
}

/// `archive-get`, which must never call a storage failure "not found" (exit 1): anything
/// but a positive answer exits above 125 and stops recovery.
fn assert_archive_get_fails_hard(url: &str, env: &[(String, String)], what: &str) {
    let dest = std::env::temp_dir().join(format!("pgcairn-never-{}", std::process::id()));
    let dest = dest.to_string_lossy().into_owned();
    let out = pgcairn(
        url,
        env,
        &[
            "archive-get",
            "--system-id",
            "1",
            "000000010000000000000001",
            &dest,
        ],
    );
    assert!(
        !err_is_panic(&out),
        "{what}: archive-get panicked:\n{}",
        stderr(&out)
    );
    assert!(
        code(&out) > 125,
        "{what}: archive-get exited {} (must be above 125):\n{}",
        code(&out),
        stderr(&out)
    );
}

fn err_is_panic(out: &Output) -> bool {
    stderr(out).contains("panicked") || out.status.code() == Some(101)
}

#[test]
fn s3_wrong_credentials_and_a_missing_bucket_are_clear_errors() {
    let server = S3Server::start();
    let good = server.remote("errors");
    let mut wrong = good.env.clone();
    for (key, value) in &mut wrong {
        if key == "AWS_SECRET_ACCESS_KEY" {
            *value = "not-the-secret".into();
        }
    }
    let out = pgcairn(&good.url, &wrong, &["init"]);
    assert_clear_failure(
        &out,
        12,
        &["403|denied|signature|credential|forbidden"],
        "init with a wrong secret key",
    );
    assert!(
        files_under(&server.bucket_dir()).is_empty(),
        "a refused init stored something"
    );
    assert_archive_get_fails_hard(&good.url, &wrong, "a wrong secret key");

    // s3s-fs answers a GET in a missing bucket as S3 does for a missing key (and creates
    // buckets on PUT), so a missing bucket looks like a location without a repository.
    let missing = good.url.replacen(server.bucket(), "no-such-bucket", 1);
    let out = pgcairn(&missing, &good.env, &["snapshots"]);
    assert_clear_failure(
        &out,
        4,
        &["s3://no-such-bucket/", "no pgcairn repository|bucket"],
        "snapshots in a missing bucket",
    );
    assert_archive_get_fails_hard(&missing, &good.env, "a missing bucket");
}

#[test]
fn nothing_listening_is_a_clear_error_on_every_backend() {
    let port = free_port();
    // A key file there is (no server will ever ask for it).
    let dir = common::pg::owned_temp_dir();
    let key = dir.path().join("key");
    common::cairn::write_owned(&key, "not a key\n");
    let cases: Vec<(String, Vec<(String, String)>)> = vec![
        (
            format!("s3://bucket/repo?endpoint=http://127.0.0.1:{port}&region=us-east-1"),
            vec![
                ("AWS_ACCESS_KEY_ID".into(), "x".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "y".into()),
            ],
        ),
        (
            format!(
                "sftp://root@127.0.0.1:{port}/srv/repo?key={}&known_hosts=accept",
                key.display()
            ),
            Vec::new(),
        ),
        (
            format!("webdav+http://u@127.0.0.1:{port}/repo"),
            vec![("PGCAIRN_WEBDAV_PASSWORD".into(), "p".into())],
        ),
    ];
    for (url, env) in &cases {
        let out = pgcairn(url, env, &["snapshots"]);
        assert_clear_failure(
            &out,
            12,
            &[&format!("127.0.0.1:{port}|{port}|refused|connect")],
            &format!("snapshots at {url} with nothing listening"),
        );
        assert_archive_get_fails_hard(url, env, &format!("nothing listening at {url}"));
    }
}

#[test]
fn a_missing_sftp_key_is_a_clear_error() {
    let server = SftpServer::start();
    let remote = server.remote("nokey");
    let missing = server.client_key().with_file_name("no-such-key");
    let url = remote.url.replace(
        &server.client_key().display().to_string(),
        &missing.display().to_string(),
    );
    let out = pgcairn(&url, &[], &["init"]);
    assert_clear_failure(
        &out,
        2,
        &["no-such-key", "no such file"],
        "init with a missing SFTP key",
    );
    assert!(files_under(&server.data_dir()).is_empty());
}
