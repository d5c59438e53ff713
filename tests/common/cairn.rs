//! The `pgcairn` binary run against real clusters: a repository, index cache and password file
//! in a directory the cluster owner owns, and every command run as the cluster owner, so that
//! what restore writes belongs to the user the server runs as, and the restored server's
//! restore_command (pgcairn archive-get, with the same --password-file) can open the
//! repository too.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::pg::{Cluster, PgInstall, give_to_cluster_owner, owned_temp_dir, run_as_cluster_owner};
use super::servers::Remote;

pub const PASSWORD: &str = "correct horse battery staple";

/// A repository made with `pgcairn init`, and how to run pgcairn against it.
pub struct Cairn {
    dir: TempDir,
    /// A repository on a storage server; None: the local directory `repo`.
    remote: Option<Remote>,
}

impl Cairn {
    /// A fresh local repository (`init` with the test-only KDF).
    pub fn new() -> Cairn {
        Cairn::with_password(PASSWORD)
    }

    /// A fresh repository on a storage server, its credentials in a config file's
    /// `[storage]` table that every command (and so the restore_command restore writes) is
    /// given with `--config`.
    pub fn on(remote: Remote) -> Cairn {
        let cairn = Cairn::uninitialised_on(PASSWORD, Some(remote));
        cairn.run_ok(&["init"]);
        cairn
    }

    /// A fresh repository whose password (in [`Self::password_file`]) is `password`.
    pub fn with_password(password: &str) -> Cairn {
        Cairn::init_with::<&str>(password, &[])
    }

    /// A fresh repository made by `init` with `options`, whose password is `password`.
    pub fn init_with<S: AsRef<std::ffi::OsStr>>(password: &str, options: &[S]) -> Cairn {
        let cairn = Cairn::uninitialised(password);
        let mut args: Vec<OsString> = vec!["init".into()];
        args.extend(os_args(options));
        cairn.run_ok(&args);
        cairn
    }

    /// The directory and password files of a local repository that `init` has not created yet.
    pub fn uninitialised(password: &str) -> Cairn {
        Cairn::uninitialised_on(password, None)
    }

    fn uninitialised_on(password: &str, remote: Option<Remote>) -> Cairn {
        let cairn = Cairn {
            dir: owned_temp_dir(),
            remote,
        };
        write_owned(&cairn.password_file(), &format!("{password}\n"));
        write_owned(&cairn.path("wrong-password"), "not the password\n");
        if let Some(remote) = &cairn.remote {
            write_owned(&cairn.config_file(), &remote.storage_toml());
        }
        cairn
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory that holds the repository's objects: the repository itself, or where
    /// the storage server keeps them.
    pub fn repo(&self) -> PathBuf {
        match &self.remote {
            Some(remote) => remote.local_dir.clone(),
            None => self.path("repo"),
        }
    }

    /// What `--repo` says: the directory, or the server's URL.
    pub fn location(&self) -> OsString {
        match &self.remote {
            Some(remote) => remote.url.clone().into(),
            None => self.repo().into(),
        }
    }

    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// The config file with the remote's `[storage]` table.
    pub fn config_file(&self) -> PathBuf {
        self.path("pgcairn.toml")
    }

    /// `--config FILE` for a remote repository, nothing for a local one.
    fn config_args(&self) -> Vec<OsString> {
        match &self.remote {
            Some(_) => vec!["--config".into(), self.config_file().into()],
            None => Vec::new(),
        }
    }

    pub fn password_file(&self) -> PathBuf {
        self.path("password")
    }

    /// pgcairn with the repository, password file and cache given on the command line (as
    /// restore passes them on to restore_command), run as the cluster owner, no terminal.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        self.command_with_password(args, &self.password_file())
    }

    pub fn command_with_password<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        password_file: &Path,
    ) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcairn"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PGCAIRN_INSECURE_TEST_KDF", "1")
            .arg("--repo")
            .arg(self.location())
            .args(self.config_args())
            .arg("--password-file")
            .arg(password_file)
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .args(args)
            .stdin(Stdio::null());
        run_as_cluster_owner(&mut cmd);
        cmd
    }

    /// The postgresql.conf lines that make a cluster archive into this repository, as a DBA
    /// would write them (pgcairn archive-push with the repository, password file and cache).
    pub fn archiving_conf(&self) -> Vec<String> {
        self.archiving_conf_with("")
    }

    /// [`Cairn::archiving_conf`] with `before` ahead of pgcairn in the archive_command (shell:
    /// more commands, or environment assignments).
    pub fn archiving_conf_with(&self, before: &str) -> Vec<String> {
        let config: String = self
            .config_args()
            .iter()
            .map(|a| format!(" {}", a.to_string_lossy()))
            .collect();
        vec![
            "archive_mode = on".into(),
            format!(
                "archive_command = '{before}{} --repo \"{}\"{config} --password-file {} --cache-dir {} archive-push %p'",
                env!("CARGO_BIN_EXE_pgcairn"),
                self.location().to_string_lossy(),
                self.password_file().display(),
                self.path("cache").display()
            ),
        ]
    }

    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        let mut cmd = self.command(args);
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    /// Runs pgcairn and panics with its output unless it succeeds; returns stdout.
    pub fn run_ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert_success(&out, &format!("{:?}", os_args(args)));
        String::from_utf8(out.stdout).expect("pgcairn prints UTF-8")
    }

    /// `backup --fast --json` of `cluster` plus `extra`, whatever the outcome.
    pub fn backup(&self, cluster: &Cluster, extra: &[&str]) -> Output {
        let mut args: Vec<OsString> = vec!["backup".into(), "--pgdata".into()];
        args.push(cluster.pgdata().into());
        args.extend(["--db".into(), cluster.conninfo().into()]);
        args.extend(["--fast".into(), "--json".into()]);
        args.extend(extra.iter().map(OsString::from));
        self.run(&args)
    }

    /// A successful backup's JSON summary.
    pub fn backup_json(&self, cluster: &Cluster, extra: &[&str]) -> serde_json::Value {
        let out = self.backup(cluster, extra);
        assert_success(&out, "backup");
        json(&out)
    }

    /// `restore SNAPSHOT --pgdata DIR` plus `extra`, whatever the outcome.
    pub fn restore(&self, snapshot: &str, pgdata: &Path, extra: &[&str]) -> Output {
        let mut args: Vec<OsString> = vec!["restore".into(), snapshot.into(), "--pgdata".into()];
        args.push(pgdata.into());
        args.extend(extra.iter().map(OsString::from));
        self.run(&args)
    }

    /// A restore that must succeed, recovery set to stop at consistency and promote.
    pub fn restore_ok(&self, snapshot: &str, pgdata: &Path, extra: &[&str]) {
        let mut all = vec!["--target-immediate", "--target-action", "promote"];
        all.extend(extra);
        let out = self.restore(snapshot, pgdata, &all);
        assert_success(&out, "restore");
    }

    /// `snapshots --json`: the repository's snapshots, as pgcairn lists them.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.run_ok(&["snapshots", "--json"]);
        let list: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("snapshots --json printed no JSON ({e}):\n{out}"));
        list.as_array()
            .expect("snapshots --json prints an array")
            .clone()
    }

    /// The ids of the repository's snapshots, sorted: as `snapshots --json` lists them, which
    /// must be the snapshot objects on storage (none written partially or left unreadable).
    pub fn snapshot_ids(&self) -> Vec<String> {
        let mut listed: Vec<String> = self
            .snapshots()
            .iter()
            .map(|s| s["id"].as_str().expect("snapshot id").to_string())
            .collect();
        listed.sort();
        let stored = match std::fs::read_dir(self.repo().join("snapshots")) {
            Ok(dir) => dir
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            // The directory appears with the first snapshot.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("listing the repository's snapshots: {e}"),
        };
        let mut stored: Vec<String> = stored;
        stored.sort();
        assert_eq!(
            listed, stored,
            "snapshots listed vs snapshot objects stored"
        );
        listed
    }
}

impl Default for Cairn {
    fn default() -> Self {
        Cairn::new()
    }
}

fn os_args<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Writes a small file and gives it to the cluster owner, readable only by it.
pub fn write_owned(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    give_to_cluster_owner(path);
}

pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}", out.status))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Asserts the exit code, showing the output when it differs.
pub fn assert_code(out: &Output, expected: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(expected),
        "{what}: expected exit {expected}, got {}:\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("backup --json printed no JSON ({e}):\n{}", stdout(out)))
}

pub fn u64_field(value: &serde_json::Value, name: &str) -> u64 {
    value[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} missing from {value}"))
}

pub fn str_field<'a>(value: &'a serde_json::Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing from {value}"))
}

/// A path for a restore target that does not exist yet, in a directory the cluster owner
/// owns (kept alive by the returned TempDir).
pub fn new_target(name: &str) -> (TempDir, PathBuf) {
    let dir = owned_temp_dir();
    let path = dir.path().join(name);
    (dir, path)
}

/// Waits until a restored server has left recovery (promoted at its target).
pub fn wait_promoted(cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if cluster.sql_one_string("SELECT pg_is_in_recovery()") == "f" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the restored server did not finish recovery within 60 s; log:\n{}",
            cluster.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the cluster of `install` restored into `pgdata` and waits until it has promoted.
pub fn start_restored(install: &PgInstall, pgdata: &Path) -> Cluster {
    let mut restored = Cluster::from_existing(install, pgdata);
    restored.start();
    wait_promoted(&restored);
    restored
}

/// md5 over all rows of `table` in the order `order_by` (a column list).
pub fn table_md5(cluster: &Cluster, table: &str, order_by: &str) -> String {
    cluster.sql_one_string(&format!(
        "SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY {order_by})), 'empty') FROM {table} t"
    ))
}

/// One entry of a directory tree, as compared between two restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeEntry {
    Dir {
        mode: u32,
        uid: u32,
    },
    File {
        mode: u32,
        uid: u32,
        len: u64,
        hash: String,
    },
    Symlink {
        target: PathBuf,
    },
}

/// Every path under `root` (relative, not following symlinks) with its kind, mode, owner,
/// content hash or link target. `postgresql.auto.conf` is hashed without the timestamped
/// header line restore writes.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, TreeEntry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, TreeEntry>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let uid = meta.uid();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, TreeEntry::Symlink { target });
            } else if meta.is_dir() {
                out.insert(rel, TreeEntry::Dir { mode, uid });
                walk(root, &path, out);
            } else {
                let mut bytes = std::fs::read(&path).unwrap();
                if rel == Path::new("postgresql.auto.conf") {
                    let text = String::from_utf8_lossy(&bytes)
                        .lines()
                        .filter(|l| !l.starts_with("# Added by pgcairn restore"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    bytes = text.into_bytes();
                }
                let hash = blake3::hash(&bytes).to_hex().to_string();
                out.insert(
                    rel,
                    TreeEntry::File {
                        mode,
                        uid,
                        len: bytes.len() as u64,
                        hash,
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts two trees are equal, listing every difference.
pub fn assert_same_tree(
    a: &BTreeMap<PathBuf, TreeEntry>,
    b: &BTreeMap<PathBuf, TreeEntry>,
    what: &str,
) {
    let mut differences = Vec::new();
    for (path, entry) in a {
        match b.get(path) {
            None => differences.push(format!("only in the first: {}", path.display())),
            Some(other) if other != entry => differences.push(format!(
                "differs: {}: {entry:?} vs {other:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        differences.push(format!("only in the second: {}", path.display()));
    }
    assert!(
        differences.is_empty(),
        "{what}: {} differences:\n  {}",
        differences.len(),
        differences.join("\n  ")
    );
}
