//! Real PostgreSQL servers for integration tests: find an installation of a major version, make
//! a throwaway cluster with initdb, run it as a child process, talk to it, stop it; read its
//! configuration as the server would (`postgres -C`) and walk its data directory as a backup
//! does.
//!
//! PostgreSQL refuses to run as root, and CI runs the tests as root: then every server program
//! (and, through [`run_as_cluster_owner`], pgcairn itself where file ownership matters) runs as
//! the `postgres` OS user, in directories that user owns.

use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgcairn::pg::datadir::{Disposition, EntryInfo, dispose};
use tempfile::TempDir;

/// Where Debian's packages put each major's programs.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// pgbench from Debian's PostgreSQL 15; it works against servers of the other majors too.
const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";
/// pg_checksums from Debian's PostgreSQL 15 (the npm builds ship only initdb, pg_ctl and
/// postgres). It reads the pg_control of 13 to 16, whose layout is the same
/// (PG_CONTROL_VERSION 1300), and refuses the others'.
const PG_CHECKSUMS: &str = "/usr/lib/postgresql/15/bin/pg_checksums";
const PG_CHECKSUMS_MAJORS: std::ops::RangeInclusive<u32> = 13..=16;
/// The tables `pgbench -i` makes, with the columns that order their rows.
pub const PGBENCH_TABLES: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_branches", "bid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_history", "tid, bid, aid, delta, mtime"),
];
/// Debian's PostgreSQL 15 programs, for the majors whose builds have only the server: its
/// client programs work with servers of older majors too.
const DEBIAN_15_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Set to 1 to let tests that need a missing installation pass without running.
const SKIP_MISSING_ENV: &str = "PGCAIRN_TEST_SKIP_MISSING_PG";
/// Where scripts/fetch-postgres.sh puts the majors Debian does not provide here.
const ROOT_ENV: &str = "PGCAIRN_TEST_PG_ROOT";
/// Set to 1 to take a fetched installation before Debian's (scripts/pg-matrix.sh runs every
/// major from the same npm builds).
const PREFER_FETCHED_ENV: &str = "PGCAIRN_TEST_PG_PREFER_FETCHED";
/// How long a server gets to start accepting connections or to shut down.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);

/// The programs of one PostgreSQL major version.
#[derive(Clone, Debug)]
pub struct PgInstall {
    pub major: u32,
    pub bin_dir: PathBuf,
}

impl PgInstall {
    /// Debian's installation of `major`, else the one scripts/fetch-postgres.sh put under
    /// `$PGCAIRN_TEST_PG_ROOT` (default `target/postgres`); the other way round when
    /// PGCAIRN_TEST_PG_PREFER_FETCHED=1.
    pub fn find(major: u32) -> Option<PgInstall> {
        let debian = Path::new(DEBIAN_ROOT).join(major.to_string()).join("bin");
        let fetched = fetched_root().join(major.to_string()).join("bin");
        let mut dirs = [debian, fetched];
        if std::env::var(PREFER_FETCHED_ENV).as_deref() == Ok("1") {
            dirs.reverse();
        }
        dirs.into_iter()
            .find(|dir| dir.join("postgres").is_file() && dir.join("initdb").is_file())
            .map(|bin_dir| PgInstall { major, bin_dir })
    }

    /// The installation of `major`. Panics, saying how to install it, when there is none, unless
    /// PGCAIRN_TEST_SKIP_MISSING_PG=1, when it returns None and the test should return early.
    pub fn require(major: u32) -> Option<PgInstall> {
        if let Some(install) = PgInstall::find(major) {
            return Some(install);
        }
        let how = if major == 15 {
            "apt-get install postgresql-15".to_string()
        } else {
            format!("scripts/fetch-postgres.sh {major}")
        };
        if std::env::var(SKIP_MISSING_ENV).as_deref() == Ok("1") {
            eprintln!("skipping: PostgreSQL {major} is not installed ({how} installs it)");
            return None;
        }
        panic!(
            "PostgreSQL {major} is not installed: looked in {DEBIAN_ROOT}/{major}/bin and {}/{major}/bin. \
             Install it with `{how}`, or set {SKIP_MISSING_ENV}=1 to skip the tests that need it.",
            fetched_root().display()
        );
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Client program `name` of this installation, else Debian's PostgreSQL 15's.
    pub fn client_program(&self, name: &str) -> PathBuf {
        let own = self.program(name);
        if own.is_file() {
            own
        } else {
            Path::new(DEBIAN_15_BIN).join(name)
        }
    }
}

fn fetched_root() -> PathBuf {
    match std::env::var_os(ROOT_ENV) {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/postgres"),
    }
}

/// The OS user that owns clusters: the `postgres` user when running as root, else whoever runs.
#[derive(Debug)]
struct Owner {
    uid: u32,
    gid: u32,
    home: String,
}

/// Some(owner) when the tests run as root and must switch users; None when they need not.
fn cluster_owner() -> Option<&'static Owner> {
    static OWNER: OnceLock<Option<Owner>> = OnceLock::new();
    OWNER
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                return None;
            }
            let passwd = fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
            let entry = passwd
                .lines()
                .map(|line| line.split(':').collect::<Vec<_>>())
                .find(|fields| fields.first() == Some(&"postgres") && fields.len() >= 6)
                .expect(
                    "the tests run as root, and PostgreSQL refuses to: they need a `postgres` OS \
                     user to run servers as (apt-get install postgresql-15 creates one)",
                );
            Some(Owner {
                uid: entry[2].parse().expect("uid in /etc/passwd"),
                gid: entry[3].parse().expect("gid in /etc/passwd"),
                home: entry[5].to_string(),
            })
        })
        .as_ref()
}

/// Makes `cmd` run as the cluster owner (the `postgres` user when the tests run as root), with
/// that user's HOME, so that files it creates belong to the same user as the cluster's.
pub fn run_as_cluster_owner(cmd: &mut Command) -> &mut Command {
    if let Some(owner) = cluster_owner() {
        cmd.uid(owner.uid)
            .gid(owner.gid)
            .env("HOME", &owner.home)
            .env("USER", "postgres")
            .env("LOGNAME", "postgres");
    }
    cmd
}

/// Runs `cmd` as the cluster owner to completion; panics with its output if it fails.
pub fn run_as_owner(cmd: &mut Command, what: &str) -> Output {
    let output = run_as_cluster_owner(cmd)
        .output()
        .unwrap_or_else(|err| panic!("{what}: cannot run {cmd:?}: {err}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Gives `path` to the cluster owner (nothing to do when not running as root).
pub fn give_to_cluster_owner(path: &Path) {
    if let Some(owner) = cluster_owner() {
        chown(path, Some(owner.uid), Some(owner.gid))
            .unwrap_or_else(|err| panic!("chown {}: {err}", path.display()));
    }
}

/// A temporary directory that the cluster owner can write (for repositories, cache directories,
/// password files, tablespaces).
pub fn owned_temp_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgcairn-test-")
        .tempdir()
        .expect("creating a temporary directory");
    give_to_cluster_owner(dir.path());
    dir
}

/// How to make a cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// initdb -k (off otherwise, also on 18 where initdb enables them by default).
    pub data_checksums: bool,
    /// postgresql.conf lines added after the harness's own, so they win.
    pub extra_conf: Vec<String>,
}

/// A PostgreSQL cluster in a temporary directory, run as a child process.
pub struct Cluster {
    install: PgInstall,
    /// Holds the socket directory and log; also the data directory unless it came from
    /// elsewhere ([`Cluster::from_existing`]).
    dir: TempDir,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    server: Option<Child>,
}

impl Cluster {
    /// Runs initdb into a fresh temporary directory. The cluster is not started.
    pub fn init(install: &PgInstall, opts: ClusterOptions) -> Cluster {
        let dir = owned_temp_dir();
        let pgdata = dir.path().join("data");
        let mut initdb = Command::new(install.program("initdb"));
        initdb
            .arg("-D")
            .arg(&pgdata)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .args(["--locale=C", "--encoding=UTF8"]);
        if opts.data_checksums {
            initdb.arg("-k");
        } else if install.major >= 18 {
            initdb.arg("--no-data-checksums");
        }
        run_as_owner(&mut initdb, "initdb");

        let mut conf = String::from(
            "\n# pgcairn test harness\n\
             wal_level = replica\n\
             max_wal_senders = 4\n\
             max_replication_slots = 4\n\
             fsync = off\n\
             full_page_writes = on\n\
             log_min_messages = warning\n\
             log_checkpoints = off\n",
        );
        for line in &opts.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        append(&pgdata.join("postgresql.conf"), &conf);
        Cluster::new(install, dir, pgdata)
    }

    /// initdb of `major` with data checksums and `extra_conf`; not started. None when `major` is
    /// not installed and the run opted into skipping ([`PgInstall::require`]).
    pub fn checksummed(major: u32, extra_conf: &[&str]) -> Option<Cluster> {
        let install = PgInstall::require(major)?;
        Some(Cluster::init(
            &install,
            ClusterOptions {
                data_checksums: true,
                extra_conf: extra_conf.iter().map(|s| s.to_string()).collect(),
            },
        ))
    }

    /// [`Cluster::checksummed`], started.
    pub fn started_checksummed(major: u32, extra_conf: &[&str]) -> Option<Cluster> {
        let mut cluster = Cluster::checksummed(major, extra_conf)?;
        cluster.start();
        Some(cluster)
    }

    /// A streaming hot standby of the running `primary`, made by pg_basebackup -R (standby.signal)
    /// and streaming over the primary's socket, with `extra_conf` appended to its
    /// postgresql.conf (a copy of the primary's). Not started.
    pub fn standby_of(primary: &Cluster, extra_conf: &[&str]) -> Cluster {
        let dir = owned_temp_dir();
        let pgdata = dir.path().join("data");
        let mut cmd = Command::new(primary.install.client_program("pg_basebackup"));
        cmd.arg("-D")
            .arg(&pgdata)
            .arg("-h")
            .arg(&primary.socket_dir)
            .arg("-p")
            .arg(primary.port.to_string())
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ]);
        run_as_owner(&mut cmd, "pg_basebackup of the primary");
        // -R writes options of its own libpq (sslsni, from 14), which an older server's
        // walreceiver refuses; this one (the last setting wins) any libpq accepts.
        append(
            &pgdata.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host={} port={} user=postgres'\n",
                primary.socket_dir.display(),
                primary.port
            ),
        );
        let conf: String = extra_conf.iter().map(|line| format!("{line}\n")).collect();
        append(
            &pgdata.join("postgresql.conf"),
            &format!("\n# standby\n{conf}"),
        );
        Cluster::new(&primary.install, dir, pgdata)
    }

    /// A cluster over an existing data directory (a restored one), owned by the cluster owner.
    /// Not started.
    pub fn from_existing(install: &PgInstall, pgdata: &Path) -> Cluster {
        Cluster::new(install, owned_temp_dir(), pgdata.to_path_buf())
    }

    fn new(install: &PgInstall, dir: TempDir, pgdata: PathBuf) -> Cluster {
        let socket_dir = dir.path().join("sock");
        fs::create_dir(&socket_dir).expect("creating the socket directory");
        give_to_cluster_owner(&socket_dir);
        let log_path = dir.path().join("server.log");
        Cluster {
            install: install.clone(),
            dir,
            pgdata,
            socket_dir,
            log_path,
            port: 0,
            server: None,
        }
    }

    /// Starts the server and waits until it accepts connections; panics with its log if it
    /// does not.
    pub fn start(&mut self) {
        if let Err(err) = self.try_start() {
            panic!("{err}");
        }
    }

    /// Starts the server and waits until it accepts connections, or says why it did not.
    pub fn try_start(&mut self) -> Result<(), String> {
        assert!(self.server.is_none(), "the server is already running");
        // A port is picked free by binding it and letting go; another process can take it in
        // between, so a server that cannot bind is retried on a new port.
        let mut last_error = String::new();
        for _ in 0..3 {
            self.port = free_port();
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(err) => {
                    let log = self.log();
                    let retry = log.contains("could not bind") || log.contains("could not create");
                    last_error = err;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|err| format!("opening {}: {err}", self.log_path.display()))?;
        give_to_cluster_owner(&self.log_path);
        let log_err = log
            .try_clone()
            .map_err(|err| format!("opening {}: {err}", self.log_path.display()))?;
        let mut cmd = Command::new(self.install.program("postgres"));
        cmd.arg("-D")
            .arg(&self.pgdata)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.socket_dir.display()
            ))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = run_as_cluster_owner(&mut cmd)
            .spawn()
            .map_err(|err| format!("cannot start {cmd:?}: {err}"))?;
        self.server = Some(child);

        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            let exited = self
                .server
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.server = None;
                return Err(format!(
                    "PostgreSQL {} in {} exited ({status}) before accepting connections; log:\n{}",
                    self.install.major,
                    self.pgdata.display(),
                    self.log()
                ));
            }
            match postgres::Client::connect(&self.conninfo(), postgres::NoTls) {
                Ok(_) => return Ok(()),
                Err(err) if Instant::now() > deadline => {
                    self.stop();
                    return Err(format!(
                        "PostgreSQL {} in {} did not accept connections within {SERVER_TIMEOUT:?} \
                         ({err}); log:\n{}",
                        self.install.major,
                        self.pgdata.display(),
                        self.log()
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Fast shutdown (SIGINT) and wait for the server to exit. Nothing if not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; pid is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Waits for the server to exit by itself (e.g. recovery_target_action = shutdown) and
    /// returns whether it did within `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(child) = self.server.as_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                self.server = None;
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    pub fn is_running(&mut self) -> bool {
        match self.server.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port (valid once started; a restart may pick another).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A temporary directory living as long as the cluster, owned by the cluster owner.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// libpq connection string over the Unix socket, as the superuser `postgres`.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.socket_dir.display(),
            self.port
        )
    }

    /// A new connection as `postgres`.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.conninfo(), postgres::NoTls)
            .unwrap_or_else(|err| panic!("connecting to {}: {err}", self.conninfo()))
    }

    /// Runs one statement with no parameters in a new connection and returns its rows.
    pub fn sql(&self, sql: &str) -> Vec<postgres::Row> {
        self.client()
            .query(sql, &[])
            .unwrap_or_else(|err| panic!("{sql}: {err}\nlog:\n{}", self.log()))
    }

    /// Runs statements (several, separated by `;`) in a new connection.
    pub fn execute(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|err| panic!("{sql}: {err}\nlog:\n{}", self.log()))
    }

    /// The first column of the single row `sql` returns, as text (whatever its type).
    pub fn sql_one_string(&self, sql: &str) -> String {
        let messages = self
            .client()
            .simple_query(sql)
            .unwrap_or_else(|err| panic!("{sql}: {err}\nlog:\n{}", self.log()));
        let rows: Vec<_> = messages
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect();
        assert_eq!(rows.len(), 1, "{sql} returned {} rows", rows.len());
        rows[0]
            .get(0)
            .unwrap_or_else(|| panic!("{sql} returned NULL"))
            .to_string()
    }

    /// `pgbench -i -s scale`.
    pub fn pgbench_init(&self, scale: u32) {
        self.pgbench(&["-i", "-q", "-s", &scale.to_string()]);
    }

    /// pgbench with `args` against this cluster's database `postgres`; returns its stdout.
    pub fn pgbench(&self, args: &[&str]) -> String {
        let output = run_as_owner(&mut self.pgbench_command(args), "pgbench");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The pgbench command [`Cluster::pgbench`] runs, to run it in the background (as the
    /// cluster owner: spawn it through [`run_as_cluster_owner`]).
    pub fn pgbench_command(&self, args: &[&str]) -> Command {
        assert!(
            Path::new(PGBENCH).is_file(),
            "pgbench not found at {PGBENCH}: apt-get install postgresql-15"
        );
        let mut cmd = Command::new(PGBENCH);
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres"])
            .args(args)
            .arg("postgres")
            .env_remove("PGPASSWORD");
        cmd
    }

    /// The pgbench invariant: every transaction adds the same delta to one account, teller and
    /// branch and records it in the history, so the four sums agree in any committed state.
    pub fn assert_pgbench_consistent(&self) {
        let sums = self.sql_one_string(
            "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts) || ' ' || \
                    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches) || ' ' || \
                    (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers) || ' ' || \
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
        );
        let sums: Vec<&str> = sums.split(' ').collect();
        assert!(
            sums.iter().all(|s| *s == sums[0]),
            "pgbench balances disagree (accounts, branches, tellers, history): {sums:?}"
        );
    }

    /// Checks the checksum of every data page; the server is stopped afterwards. With
    /// `pg_checksums --check` where there is one that reads this major's pg_control (the
    /// installation's own, else Debian's 15 for 13 to 16). Otherwise (the npm builds of 17 and
    /// 18) the server itself, freshly started so that no page comes from memory, reads every
    /// fork of every relation in every database it accepts connections to through shared
    /// buffers (pg_prewarm), and a page whose checksum does not match fails the read.
    pub fn assert_page_checksums(&mut self) {
        self.stop();
        let own = self.install.program("pg_checksums");
        let pg_checksums = if own.is_file() {
            Some(own)
        } else if PG_CHECKSUMS_MAJORS.contains(&self.install.major) {
            Some(PathBuf::from(PG_CHECKSUMS))
        } else {
            None
        };
        if let Some(program) = pg_checksums {
            let mut cmd = Command::new(program);
            cmd.arg("--check").arg("-D").arg(&self.pgdata);
            run_as_owner(&mut cmd, "pg_checksums --check");
            return;
        }
        self.start();
        let databases = self.sql("SELECT datname FROM pg_database WHERE datallowconn");
        for row in databases {
            let database: String = row.get(0);
            let conninfo = format!("{} dbname='{database}'", self.conninfo());
            let mut client = postgres::Client::connect(&conninfo, postgres::NoTls)
                .unwrap_or_else(|err| panic!("connecting to {conninfo}: {err}"));
            let pages: i64 = client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
                .and_then(|()| {
                    client.query_one(
                        "SELECT coalesce(sum(pg_prewarm(c.oid, 'buffer', f.fork)), 0)::bigint \
                         FROM pg_class c, unnest(ARRAY['main', 'fsm', 'vm', 'init']) f(fork) \
                         WHERE c.relkind IN ('r', 'i', 't', 'm', 'S') \
                           AND c.relpersistence <> 't' \
                           AND pg_relation_size(c.oid, f.fork) > 0",
                        &[],
                    )
                })
                .map(|row| row.get(0))
                .unwrap_or_else(|err| {
                    panic!(
                        "reading every page of database {database}: {}\nlog:\n{}",
                        err.as_db_error()
                            .map_or(err.to_string(), |db| db.message().to_string()),
                        self.log()
                    )
                });
            assert!(pages > 0, "database {database}: no pages read");
        }
        self.stop();
    }

    /// The value of `setting` as the server reads it from the configuration files (running
    /// every setting's checks): `postgres -C setting`, run as the cluster owner. For settings
    /// that are not computed at run time the server need not be running.
    pub fn config_value(&self, setting: &str) -> String {
        let mut cmd = Command::new(self.install.program("postgres"));
        cmd.args(["-C", setting, "-D"]).arg(&self.pgdata);
        let output = run_as_owner(&mut cmd, &format!("postgres -C {setting}"));
        String::from_utf8(output.stdout)
            .expect("postgres -C prints UTF-8")
            .trim_end_matches('\n')
            .to_string()
    }

    /// Walks the data directory the way a backup does: asks [`dispose`] (for this cluster's
    /// major) about each directory's entries and descends, following symlinks (pg_tblspc).
    /// Calls `visit` with each entry's path relative to the data directory, its disposition and,
    /// for kept files, their contents (empty otherwise). Entries that vanish mid-walk (a running
    /// server's temporary files) are passed by.
    pub fn walk(&self, visit: &mut dyn FnMut(&str, Disposition, &[u8])) {
        walk_dir(&self.pgdata, "", self.install.major, visit);
    }

    /// Field `name` of what pg_controldata prints about the (stopped) cluster, e.g.
    /// `Minimum recovery ending location`.
    pub fn control_data(&self, name: &str) -> String {
        let mut cmd = Command::new(self.install.client_program("pg_controldata"));
        cmd.arg(&self.pgdata);
        let output = run_as_owner(&mut cmd, "pg_controldata");
        let prefix = format!("{name}:");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("pg_controldata prints no {name:?}"))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        match fs::read(&self.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => format!("(cannot read {}: {err})", self.log_path.display()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn walk_dir(pgdata: &Path, rel: &str, major: u32, visit: &mut dyn FnMut(&str, Disposition, &[u8])) {
    let mut names = Vec::new();
    for entry in fs::read_dir(pgdata.join(rel)).expect("reading the data directory") {
        let entry = entry.expect("reading a directory entry");
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        names.push((entry.file_name().into_encoded_bytes(), meta.is_dir()));
    }
    names.sort();
    let infos: Vec<EntryInfo<'_>> = names
        .iter()
        .map(|(name, is_dir)| EntryInfo {
            name,
            is_dir: *is_dir,
        })
        .collect();
    let dispositions = dispose(rel.as_bytes(), &infos, major);
    assert_eq!(dispositions.len(), infos.len());
    for (info, disposition) in infos.iter().zip(dispositions) {
        let name = String::from_utf8_lossy(info.name);
        let path = if rel.is_empty() {
            name.into_owned()
        } else {
            format!("{rel}/{name}")
        };
        match disposition {
            Disposition::Keep(_) => {
                let Ok(bytes) = fs::read(pgdata.join(&path)) else {
                    continue;
                };
                visit(&path, disposition, &bytes);
            }
            Disposition::Descend => {
                visit(&path, disposition, &[]);
                walk_dir(pgdata, &path, major, visit);
            }
            Disposition::Skip | Disposition::KeepDirEmpty => visit(&path, disposition, &[]),
        }
    }
}

/// Appends `text` to a configuration file (the last setting of a name wins).
pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = File::options()
        .append(true)
        .open(path)
        .unwrap_or_else(|err| panic!("opening {}: {err}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("finding a free port")
}

/// A started, checksummed cluster of `major` whose table `victim` (2000 rows) has block 1
/// damaged on disk while the server was down: the middle of the page, clear of its header, so
/// its checksum no longer matches. `settle` runs while the server is stopped. Returns the
/// cluster and the relation's path in the data directory.
pub fn cluster_with_a_damaged_page(major: u32, settle: impl FnOnce()) -> Option<(Cluster, String)> {
    use std::os::unix::fs::FileExt;
    let mut source = Cluster::started_checksummed(major, &["autovacuum = off"])?;
    source.execute(
        "CREATE TABLE victim (id int, v text);
         INSERT INTO victim SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 2000) g;",
    );
    source.execute("VACUUM (FREEZE, ANALYZE) victim");
    source.execute("CHECKPOINT");
    let rel = source.sql_one_string("SELECT pg_relation_filepath('victim')");
    source.stop();
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(source.pgdata().join(&rel))
        .unwrap();
    let mut bytes = [0u8; 16];
    file.read_exact_at(&mut bytes, 8192 + 4000).unwrap();
    for b in &mut bytes {
        *b ^= 0xff;
    }
    file.write_all_at(&bytes, 8192 + 4000).unwrap();
    drop(file);
    settle();
    source.start();
    Some((source, rel))
}
