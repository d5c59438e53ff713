//! Storage servers for the offsite tests, each run on 127.0.0.1 on a free port over a temporary
//! directory and stopped by PID when dropped: an S3 server (s3s-fs, which checks SigV4
//! signatures), an SFTP server (OpenSSH's sshd with internal-sftp, its own host key, config
//! and client key pair) and a WebDAV server (`rclone serve webdav`).
//!
//! Each gives a [`Remote`]: the repository URL pgcairn is given, and the credentials as
//! environment variables and as a config file's `[storage]` table. The servers keep objects
//! as plain files, so [`Remote::local_dir`] lets a test look at what pgcairn stored.
//!
//! The programs come from scripts/install-offsite-servers.sh; a missing one fails the test,
//! naming the script (no silent skipping).

use std::fs::{self, File};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::pg::{give_to_cluster_owner, owned_temp_dir};

pub const INSTALL_SCRIPT: &str = "scripts/install-offsite-servers.sh";
/// Where the install script puts what it builds with cargo; overridable like the script.
const TOOLS_ENV: &str = "PGCAIRN_TEST_TOOLS";
/// How long a server gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How pgcairn reaches one repository on a server.
#[derive(Clone, Debug)]
pub struct Remote {
    /// The `--repo` URL.
    pub url: String,
    /// Credentials as environment variables.
    pub env: Vec<(String, String)>,
    /// The same credentials as `[storage]` keys of a config file.
    pub storage: Vec<(String, String)>,
    /// Where the server keeps this repository's objects on the local disk.
    pub local_dir: PathBuf,
}

impl Remote {
    /// The `[storage]` table, for a config file.
    pub fn storage_toml(&self) -> String {
        let mut toml = String::from("[storage]\n");
        for (key, value) in &self.storage {
            toml.push_str(&format!("{key} = {value:?}\n"));
        }
        toml
    }
}

/// A program the offsite tests need; panics naming the install script when it is missing.
pub fn require_program(path: &Path, what: &str) -> PathBuf {
    if path.is_file() {
        return path.to_path_buf();
    }
    if path.components().count() == 1 {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(path))
                .find(|p| p.is_file())
        });
        if let Some(found) = found {
            return found;
        }
    }
    panic!(
        "{what} ({}) is not installed: run {INSTALL_SCRIPT} (scripts/test.sh does)",
        path.display()
    );
}

fn tools_bin(name: &str) -> PathBuf {
    let root = match std::env::var_os(TOOLS_ENV) {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools"),
    };
    root.join("bin").join(name)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("finding a free port")
}

/// A server process, killed and reaped when dropped.
struct Process {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Process {
    /// Starts the command `make(port)` builds, on a free port, and waits until the port
    /// accepts connections. A port picked free can be taken before the server binds it, so a
    /// server that exits early is tried again on another port.
    fn start(what: &str, mut log: PathBuf, make: impl Fn(u16) -> Command) -> Process {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = make(port);
            let out = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
            let err = out.try_clone().expect("duplicating a log file handle");
            cmd.stdin(Stdio::null()).stdout(out).stderr(err);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
            let mut process = Process { child, port, log };
            match process.wait_listening(what) {
                Ok(()) => return process,
                Err(message) => {
                    last = message;
                    log = std::mem::take(&mut process.log);
                }
            }
        }
        panic!("{last}");
    }

    fn wait_listening(&mut self, what: &str) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{what} exited ({status}) before listening on {addr}; its output:\n{}",
                    self.output()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{what} did not listen on {addr} within {START_TIMEOUT:?}; its output:\n{}",
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server printed so far.
    fn output(&self) -> String {
        let mut text = String::new();
        match File::open(&self.log) {
            Ok(mut file) => {
                let _ = file.read_to_string(&mut text);
            }
            Err(e) => text = format!("(cannot read {}: {e})", self.log.display()),
        }
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Our own child, not yet reaped: its PID cannot have been reused.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a setup program to completion; panics with its output if it fails.
fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// s3s-fs over a temporary directory, one bucket, SigV4 with one access key.
pub struct S3Server {
    process: Process,
    dir: TempDir,
    bucket: String,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    pub const REGION: &str = "us-east-1";

    pub fn start() -> S3Server {
        let program = require_program(&tools_bin("s3s-fs"), "s3s-fs");
        let dir = owned_temp_dir();
        let root = dir.path().join("root");
        let bucket = "pgcairn-test".to_string();
        // s3s-fs keeps a bucket as a directory under its root, and objects as files in it.
        fs::create_dir_all(root.join(&bucket)).expect("creating the bucket directory");
        let access_key = "PGCAIRNTESTACCESSKEY".to_string();
        let secret_key = format!("test-secret-{}", std::process::id());
        let process = Process::start("s3s-fs", dir.path().join("s3s-fs.log"), |port| {
            let mut cmd = Command::new(&program);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", &access_key, "--secret-key", &secret_key])
                .arg(&root);
            cmd
        });
        S3Server {
            process,
            dir,
            bucket,
            access_key,
            secret_key,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// `s3://BUCKET/NAME?endpoint=…&region=…`: everything but the credentials.
    pub fn repo_url(&self, name: &str) -> String {
        format!(
            "s3://{}/{name}?endpoint={}&region={}",
            self.bucket,
            self.endpoint(),
            Self::REGION
        )
    }

    /// The directory that holds the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join("root").join(&self.bucket)
    }

    pub fn remote(&self, name: &str) -> Remote {
        Remote {
            url: self.repo_url(name),
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
                ("AWS_REGION".into(), Self::REGION.into()),
                ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ],
            storage: vec![
                ("access_key_id".into(), self.access_key.clone()),
                ("secret_access_key".into(), self.secret_key.clone()),
            ],
            local_dir: self.bucket_dir().join(name),
        }
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.process.output()
    }
}

/// OpenSSH's sshd with internal-sftp, on its own config, host key and client key pair.
pub struct SftpServer {
    process: Process,
    dir: TempDir,
    user: String,
}

impl SftpServer {
    pub fn start() -> SftpServer {
        let sshd = require_program(Path::new("/usr/sbin/sshd"), "sshd (openssh-server)");
        let keygen = require_program(Path::new("ssh-keygen"), "ssh-keygen (openssh-client)");
        // OpenDAL's sftp service runs the system ssh client.
        require_program(Path::new("ssh"), "ssh (openssh-client)");
        let dir = owned_temp_dir();
        let base = dir.path();
        for (key, owned) in [("host_key", false), ("client_key", true)] {
            run(
                Command::new(&keygen)
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "pgcairn-test", "-f"])
                    .arg(base.join(key)),
                "ssh-keygen",
            );
            // pgcairn (and so ssh) runs as the cluster owner, which must read the client key.
            if owned {
                give_to_cluster_owner(&base.join(key));
            }
        }
        fs::copy(base.join("client_key.pub"), base.join("authorized_keys"))
            .expect("writing authorized_keys");
        let data = base.join("data");
        fs::create_dir(&data).expect("creating the SFTP data directory");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        // sshd's privilege separation needs this directory, which Debian creates only when
        // its service starts.
        if root {
            fs::create_dir_all("/run/sshd").expect("creating /run/sshd");
            fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755))
                .expect("chmod /run/sshd");
        }
        let user = if root {
            "root".to_string()
        } else {
            std::env::var("USER").expect("USER names the user sshd lets in")
        };
        let config = base.join("sshd_config");
        let process = Process::start("sshd", base.join("sshd.log"), |port| {
            fs::write(
                &config,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {host_key}\n\
                     PidFile {pid}\n\
                     AuthorizedKeysFile {authorized}\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     Subsystem sftp internal-sftp\n",
                    host_key = base.join("host_key").display(),
                    pid = base.join("sshd.pid").display(),
                    authorized = base.join("authorized_keys").display(),
                ),
            )
            .expect("writing sshd_config");
            let mut cmd = Command::new(&sshd);
            cmd.args(["-D", "-e", "-f"]).arg(&config);
            cmd
        });
        SftpServer { process, dir, user }
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The private key the server lets in, owned by the cluster owner.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The directory repositories go under (an absolute path on the server).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `sftp://USER@127.0.0.1:PORT/ABSOLUTE/PATH?key=…&known_hosts=accept`. Host keys are
    /// accepted: each server has a fresh one on a port another one may have had before.
    pub fn repo_url(&self, name: &str) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}?key={}&known_hosts=accept",
            self.user,
            self.port(),
            self.data_dir().join(name).display(),
            self.client_key().display()
        )
    }

    pub fn remote(&self, name: &str) -> Remote {
        Remote {
            url: self.repo_url(name),
            env: Vec::new(),
            storage: vec![
                ("key".into(), self.client_key().display().to_string()),
                ("known_hosts_strategy".into(), "accept".into()),
            ],
            local_dir: self.data_dir().join(name),
        }
    }

    /// A repository whose URL carries everything (key, host key policy), with no config
    /// file: as a `copy --to` target is named.
    pub fn remote_in_url(&self, name: &str) -> Remote {
        Remote {
            storage: Vec::new(),
            ..self.remote(name)
        }
    }

    /// ssh options that reach this server with the client key, without host key checks and
    /// without touching any known_hosts file.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.client_key().display().to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    pub fn log(&self) -> String {
        self.process.output()
    }
}

/// `rclone serve webdav` over a temporary directory, with a user and password.
pub struct WebdavServer {
    process: Process,
    dir: TempDir,
    user: String,
    password: String,
}

impl WebdavServer {
    pub fn start() -> WebdavServer {
        let rclone = require_program(Path::new("rclone"), "rclone");
        let dir = owned_temp_dir();
        let root = dir.path().join("root");
        fs::create_dir(&root).expect("creating the WebDAV root");
        let user = "pgcairn".to_string();
        let password = format!("test-password-{}", std::process::id());
        // rclone wants a config file even to serve a local directory; an empty one keeps it
        // away from the user's.
        let config = dir.path().join("rclone.conf");
        fs::write(&config, "").expect("writing rclone.conf");
        let process = Process::start(
            "rclone serve webdav",
            dir.path().join("rclone.log"),
            |port| {
                let mut cmd = Command::new(&rclone);
                cmd.args(["serve", "webdav"])
                    .arg(&root)
                    .args(["--addr", &format!("127.0.0.1:{port}")])
                    .args(["--user", &user, "--pass", &password])
                    .arg("--config")
                    .arg(&config);
                cmd
            },
        );
        WebdavServer {
            process,
            dir,
            user,
            password,
        }
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `webdav+http://USER@127.0.0.1:PORT/NAME`.
    pub fn repo_url(&self, name: &str) -> String {
        format!(
            "webdav+http://{}@127.0.0.1:{}/{name}",
            self.user,
            self.port()
        )
    }

    pub fn remote(&self, name: &str) -> Remote {
        Remote {
            url: self.repo_url(name),
            env: vec![
                ("PGCAIRN_WEBDAV_USER".into(), self.user.clone()),
                ("PGCAIRN_WEBDAV_PASSWORD".into(), self.password.clone()),
            ],
            storage: vec![
                ("username".into(), self.user.clone()),
                ("password".into(), self.password.clone()),
            ],
            local_dir: self.root_dir().join(name),
        }
    }

    pub fn log(&self) -> String {
        self.process.output()
    }
}
