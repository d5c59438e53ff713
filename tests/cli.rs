//! The `pgcairn` binary: exit codes, messages, and that failures change nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(env.path("pass"), "first password\n").unwrap();
        std::fs::write(env.path("pass2"), "second password\n").unwrap();
        std::fs::write(env.path("wrong"), "not the password\n").unwrap();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// Runs pgcairn with the repository, cache and test KDF set, and no terminal.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pgcairn"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PGCAIRN_REPO", self.repo())
            .env("PGCAIRN_CACHE_DIR", self.path("cache"))
            .env("PGCAIRN_INSECURE_TEST_KDF", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn init(&self) {
        self.run_ok(&[
            "init",
            "--password-file",
            self.path("pass").to_str().unwrap(),
        ]);
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` with its content, to show a failed command changed nothing.
fn snapshot_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_creates_and_then_refuses() {
    let env = Env::new();
    let out = env.run_ok(&[
        "init",
        "--password-file",
        env.path("pass").to_str().unwrap(),
    ]);
    assert!(out.contains("created pgcairn repository"), "{out}");
    assert!(env.repo().join("config").exists());
    let before = snapshot_of(&env.repo());
    let again = env.run(&[
        "init",
        "--password-file",
        env.path("pass").to_str().unwrap(),
    ]);
    assert_eq!(code(&again), 5, "{}", stderr(&again));
    assert!(stderr(&again).contains("already exists"));
    assert_eq!(snapshot_of(&env.repo()), before);
}

#[test]
fn wrong_password_fails_with_code_3_and_writes_nothing() {
    let env = Env::new();
    env.init();
    let before = snapshot_of(&env.repo());
    let wrong = env.path("wrong");
    for args in [
        vec!["key", "list"],
        vec![
            "key",
            "add",
            "--new-password-file",
            env.path("pass2").to_str().unwrap(),
        ],
        vec![
            "key",
            "passwd",
            "--new-password-file",
            env.path("pass2").to_str().unwrap(),
        ],
        vec!["repair", "index"],
        vec!["verify"],
        // The source's password is checked before the target is looked at.
        vec!["copy", "--to", env.path("copy-target").to_str().unwrap()],
    ] {
        let mut full = args.clone();
        full.extend(["--password-file", wrong.to_str().unwrap()]);
        let out = env.run(&full);
        assert_eq!(code(&out), 3, "{full:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    }
    assert_eq!(snapshot_of(&env.repo()), before);
}

#[test]
fn no_password_and_no_terminal_is_a_clear_error() {
    let env = Env::new();
    env.init();
    let out = env.run(&["key", "list"]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("--password-file"), "{}", stderr(&out));
}

#[test]
fn password_from_the_environment() {
    let env = Env::new();
    env.init();
    let out = Command::new(env!("CARGO_BIN_EXE_pgcairn"))
        .args(["key", "list", "--json"])
        .env("PGCAIRN_REPO", env.repo())
        .env("PGCAIRN_CACHE_DIR", env.path("cache"))
        .env_remove("PGCAIRN_PASSWORD_FILE")
        .env("PGCAIRN_PASSWORD", "first password")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_repository_and_usage_errors() {
    let env = Env::new();
    let out = env.run(&[
        "key",
        "list",
        "--password-file",
        env.path("pass").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("pgcairn init"));
    assert_eq!(code(&env.run(&["frobnicate"])), 2);
    assert_eq!(code(&env.run(&["init", "--compression-level", "99"])), 2);
    let bad = env.run(&[
        "init",
        "--relation-chunks",
        "4K,8K,16K",
        "--password-file",
        env.path("pass").to_str().unwrap(),
    ]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(!env.repo().join("config").exists());
}

#[test]
fn key_lifecycle() {
    let env = Env::new();
    env.init();
    let pass = env.path("pass");
    let pass2 = env.path("pass2");
    let p = |f: &PathBuf| f.to_str().unwrap().to_string();

    let added = env.run_ok(&[
        "key",
        "add",
        "--password-file",
        &p(&pass),
        "--new-password-file",
        &p(&pass2),
    ]);
    let new_id = added.trim().rsplit(' ').next().unwrap().to_string();

    let listed: serde_json::Value = serde_json::from_str(&env.run_ok(&[
        "key",
        "list",
        "--json",
        "--password-file",
        &p(&pass2),
    ]))
    .unwrap();
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let in_use: Vec<_> = keys.iter().filter(|k| k["in_use"] == true).collect();
    assert_eq!(in_use.len(), 1);
    assert!(in_use[0]["id"].as_str().unwrap().starts_with(&new_id));
    let first_id = keys.iter().find(|k| k["in_use"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The key in use cannot remove itself.
    let out = env.run(&["key", "remove", &new_id, "--password-file", &p(&pass2)]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    // The other can; then the last key cannot be removed.
    env.run_ok(&[
        "key",
        "remove",
        &first_id[..8],
        "--password-file",
        &p(&pass2),
    ]);
    let out = env.run(&["key", "list", "--password-file", &p(&pass)]);
    assert_eq!(code(&out), 3);

    // passwd replaces the key: the old password stops working.
    std::fs::write(env.path("pass3"), "third password").unwrap();
    env.run_ok(&[
        "key",
        "passwd",
        "--password-file",
        &p(&pass2),
        "--new-password-file",
        &p(&env.path("pass3")),
    ]);
    assert_eq!(
        code(&env.run(&["key", "list", "--password-file", &p(&pass2)])),
        3
    );
    let text = env.run_ok(&["key", "list", "--password-file", &p(&env.path("pass3"))]);
    assert_eq!(
        text.lines().filter(|l| l.starts_with('*')).count(),
        1,
        "{text}"
    );
}

#[test]
fn new_password_without_file_or_terminal_is_refused() {
    let env = Env::new();
    env.init();
    let out = env.run(&[
        "key",
        "add",
        "--password-file",
        env.path("pass").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("--new-password-file"));
}

#[test]
fn config_file_supplies_repo_and_password_file() {
    let env = Env::new();
    std::fs::write(
        env.path("pgcairn.toml"),
        format!(
            "repo = {:?}\npassword_file = \"pass\"\n",
            env.path("elsewhere").to_str().unwrap()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgcairn"))
        .args([
            "--config",
            env.path("pgcairn.toml").to_str().unwrap(),
            "init",
        ])
        .env_remove("PGCAIRN_REPO")
        .env("PGCAIRN_INSECURE_TEST_KDF", "1")
        .env("PGCAIRN_CACHE_DIR", env.path("cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.path("elsewhere/config").exists());

    std::fs::write(env.path("bad.toml"), "repository = 'x'\n").unwrap();
    let out = env.run(&[
        "--config",
        env.path("bad.toml").to_str().unwrap(),
        "key",
        "list",
    ]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("unknown field"), "{}", stderr(&out));
}

#[test]
fn repair_index_from_the_command_line() {
    let env = Env::new();
    env.init();
    let out = env.run_ok(&[
        "repair",
        "index",
        "--password-file",
        env.path("pass").to_str().unwrap(),
    ]);
    assert!(out.contains("0 packs on storage"), "{out}");
}

#[test]
fn every_command_has_help_with_an_example() {
    let env = Env::new();
    for cmd in [
        vec!["init"],
        vec!["key"],
        vec!["repair"],
        vec!["key", "add"],
        vec!["key", "list"],
        vec!["key", "remove"],
        vec!["key", "passwd"],
        vec!["repair", "index"],
        vec!["verify"],
        vec!["check"],
        vec!["completions"],
        vec!["man"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let help = env.run_ok(&args);
        assert!(
            help.contains("Example"),
            "{cmd:?} --help has no example:\n{help}"
        );
    }
    let top = env.run_ok(&["--help"]);
    assert!(top.contains("Exit codes"), "{top}");
}

#[test]
fn restore_target_flags_are_checked_before_anything_is_opened() {
    let env = Env::new();
    env.init();
    let pass = env.path("pass");
    let pass = pass.to_str().unwrap();
    let target = env.path("restored");
    let target = target.to_str().unwrap();
    let usage = [
        // Two targets.
        vec!["--target-lsn", "0/1", "--target-immediate"],
        vec![
            "--target-time",
            "2026-01-01 00:00:00+00",
            "--target-xid",
            "1234",
        ],
        // An action with no target.
        vec!["--target-action", "promote"],
        // Not a timeline.
        vec!["--target-timeline", "newest"],
        vec!["--target-timeline", "0"],
        // Not an LSN.
        vec!["--target-lsn", "5000060"],
    ];
    for extra in usage {
        let mut args = vec!["restore", "--password-file", pass, "--pgdata", target];
        args.extend(&extra);
        let out = env.run(&args);
        assert_eq!(code(&out), 2, "{extra:?}: {}", stderr(&out));
    }
    // A well-formed target in an empty repository: no snapshot to restore, still nothing made.
    let out = env.run(&[
        "restore",
        "--password-file",
        pass,
        "--preview",
        "--target-lsn",
        "0/5000060",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no snapshots"), "{}", stderr(&out));
    assert!(!Path::new(target).exists());
}
