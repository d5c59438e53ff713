//! Offsite repositories: pgcairn against real S3 (s3s-fs), SFTP (OpenSSH) and WebDAV (rclone)
//! servers on 127.0.0.1, started by the test (tests/common/servers.rs; installed by
//! scripts/install-offsite-servers.sh).
//!
//! First the servers themselves, without pgcairn: each is reachable, with its credentials only,
//! and keeps what it is sent where the harness looks for it.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::pg::run_as_cluster_owner;
use common::servers::{S3Server, SftpServer, WebdavServer, require_program};

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
