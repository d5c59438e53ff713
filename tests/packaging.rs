//! What a package installs beside the binary: shell completions and man pages generated from
//! the clap definitions (completed with by bash and fish, parsed by zsh, rendered by groff and
//! man), and the example systemd units in contrib/systemd (checked by systemd-analyze, their
//! commands run against a real PostgreSQL cluster in a file system as read-only as the units'
//! hardening makes it). scripts/install-packaging-tools.sh installs the shells and tools.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::cairn::{Cairn, assert_success, stderr, stdout, write_owned};
use common::pg::{Cluster, give_to_cluster_owner, owned_temp_dir};
use pgcairn::cli::archive_get::FILL_QUEUE_COMMAND;
use pgcairn::cli::archive_push::WORKER_COMMAND;

const INSTALL_TOOLS: &str = "scripts/install-packaging-tools.sh";

/// Runs the built pgcairn with `args`; panics unless it succeeds; returns stdout.
fn pgcairn(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pgcairn"))
        .args(args)
        .env_remove("PGCAIRN_CONFIG")
        .output()
        .expect("running pgcairn");
    assert_success(&out, &format!("pgcairn {args:?}"));
    stdout(&out)
}

/// Runs a tool the packaging tests need, saying how to install it when it is missing.
fn tool(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?} ({err}): {INSTALL_TOOLS} installs it"))
}

fn completion_script(shell: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("pgcairn.{shell}"));
    std::fs::write(&path, pgcairn(&["completions", shell])).unwrap();
    path
}

#[test]
fn every_shell_gets_a_script_without_the_internal_commands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = pgcairn(&["completions", shell]);
        // Options as each shell spells them: fish writes `-l pgdata`.
        for wanted in ["archive-push", "pgdata", "target-action", "passwd"] {
            assert!(script.contains(wanted), "{shell}: no {wanted}");
        }
        for internal in [WORKER_COMMAND, FILL_QUEUE_COMMAND] {
            assert!(!script.contains(internal), "{shell} offers {internal}");
        }
    }
}

#[test]
fn bash_completes_commands_options_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script("bash", dir.path());
    // What bash does on TAB: the words of the line in COMP_WORDS, the function that
    // `complete -F` registered called with the command, the word being completed and the
    // one before it; the candidates come back in COMPREPLY.
    let driver = r#"
        source "$1"
        complete_line() {
            COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
            COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
            _pgcairn pgcairn "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
            echo "$* => ${COMPREPLY[*]}"
        }
        complete_line pgcairn archive-
        complete_line pgcairn backup --pg
        complete_line pgcairn restore --target-action ''
        complete_line pgcairn key p
        complete_line pgcairn completions f
        complete_line pgcairn ''
    "#;
    let out = tool(
        Command::new("bash")
            .args(["--norc", "--noprofile", "-c", driver, "bash"])
            .arg(&script),
    );
    assert_success(&out, "bash completion");
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        &lines[..5],
        [
            "pgcairn archive- => archive-push archive-get",
            "pgcairn backup --pg => --pgdata",
            "pgcairn restore --target-action  => pause promote shutdown",
            "pgcairn key p => passwd",
            "pgcairn completions f => fish",
        ],
        "{}",
        stderr(&out)
    );
    let commands: BTreeSet<&str> = lines[5].split(" => ").nth(1).unwrap().split(' ').collect();
    for wanted in [
        "init", "backup", "restore", "verify", "key", "man", "--repo",
    ] {
        assert!(
            commands.contains(wanted),
            "{wanted} not offered: {commands:?}"
        );
    }
    assert!(!commands.contains(WORKER_COMMAND), "{commands:?}");
}

#[test]
fn zsh_and_fish_parse_their_scripts_and_fish_completes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let zsh = completion_script("zsh", dir.path());
    let out = tool(Command::new("zsh").arg("-n").arg(&zsh));
    assert_success(&out, "zsh -n on the completion script");
    // The check does look at the script: cut short, it is refused.
    let text = std::fs::read_to_string(&zsh).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = dir.path().join("cut.zsh");
    std::fs::write(&cut, lines[..lines.len() / 2].join("\n")).unwrap();
    assert!(
        !tool(Command::new("zsh").arg("-n").arg(&cut))
            .status
            .success()
    );

    let fish = completion_script("fish", dir.path());
    let out = tool(Command::new("fish").arg("--no-execute").arg(&fish));
    assert_success(&out, "fish --no-execute on the completion script");
    let out = tool(
        Command::new("fish")
            .args(["--no-config", "-c"])
            .arg(format!(
                "source {}; complete -C 'pgcairn backup --pg'; complete -C 'pgcairn archive-'",
                fish.display()
            )),
    );
    assert_success(&out, "fish complete -C");
    let printed = stdout(&out);
    let offered: Vec<&str> = printed
        .lines()
        .map(|line| line.split('\t').next().unwrap())
        .collect();
    assert_eq!(offered, ["--pgdata", "archive-get", "archive-push"]);
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The commands `pgcairn <path> --help` lists under "Commands:", but `help`.
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = pgcairn(&args);
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        // Deeper lines are wrapped descriptions.
        .filter(|line| indent(line) == 2)
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The long options `pgcairn <path> --help` lists.
fn long_options(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    pgcairn(&args)
        .lines()
        // Option lines are indented 2 (`-v, --verbose`) or 6 (`--repo <URL>`); deeper ones
        // are wrapped descriptions.
        .filter(|line| indent(line) <= 6)
        .filter_map(|line| {
            let option = line
                .split_whitespace()
                .find(|word| word.starts_with("--"))?;
            let name: String = option[2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(format!("--{name}"))
        })
        .collect()
}

/// Every command path, [] for pgcairn itself, then [init], …, [key], [key, add], ….
fn command_paths(path: Vec<&str>, all: &mut Vec<Vec<String>>) {
    all.push(path.iter().map(|p| p.to_string()).collect());
    for child in subcommands(&path) {
        let mut sub = path.clone();
        sub.push(&child);
        command_paths(sub, all);
    }
}

/// The man page of a command path: pgcairn-key-add.1 for [key, add].
fn page_name(path: &[&str]) -> String {
    let mut name = vec!["pgcairn"];
    name.extend(path);
    format!("{}.1", name.join("-"))
}

#[test]
fn man_pages_cover_every_command_render_cleanly_and_list_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let printed = pgcairn(&["man", "--out-dir", out_dir.to_str().unwrap()]);

    let mut paths = Vec::new();
    command_paths(Vec::new(), &mut paths);
    let paths: Vec<Vec<&str>> = paths
        .iter()
        .map(|path| path.iter().map(String::as_str).collect())
        .collect();
    let expected: BTreeSet<String> = paths.iter().map(|path| page_name(path)).collect();
    let written: BTreeSet<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, expected);
    for page in [
        "pgcairn.1",
        "pgcairn-backup.1",
        "pgcairn-key-add.1",
        "pgcairn-repair-index.1",
    ] {
        assert!(written.contains(page), "no {page}: {written:?}");
    }
    let listed: BTreeSet<String> = printed
        .lines()
        .map(|line| {
            Path::new(line)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(listed, written, "the paths printed are the pages written");

    for path in &paths {
        let page = out_dir.join(page_name(path));
        let out = tool(Command::new("groff").args(["-man", "-ww", "-z"]).arg(&page));
        assert_success(&out, &format!("groff on {}", page.display()));
        assert_eq!(stderr(&out), "", "groff warns about {}", page.display());

        let out = tool(
            Command::new("man")
                .arg("-l")
                .arg(&page)
                .env("MANWIDTH", "200")
                .env("LC_ALL", "C")
                .env("MANPAGER", "cat")
                .stdin(Stdio::null()),
        );
        assert_success(&out, &format!("man -l {}", page.display()));
        let text = stdout(&out);
        let options = long_options(path);
        assert!(
            options.contains(&"--help".to_string()),
            "{path:?}: {options:?}"
        );
        for option in options {
            assert!(
                text.contains(&option),
                "{} does not mention {option}:\n{text}",
                page.display()
            );
        }
    }
    let backup = std::fs::read_to_string(out_dir.join("pgcairn-backup.1")).unwrap();
    assert!(
        backup.contains("Examples:\n.nf\n  pgcairn backup"),
        "the examples keep their lines:\n{backup}"
    );
}

/// Where the example units are, and the site-specific values they carry: what an administrator
/// edits, and what these tests replace with their own.
const UNITS: &str = "contrib/systemd";
const BINARY: &str = "/usr/local/bin/pgcairn";
const CONFIG: &str = "/etc/pgcairn/pgcairn.toml";
const LOCAL_REPO: &str = "/backup/pgcairn";
const TEXTFILE_DIR: &str = "/var/lib/node_exporter/textfile";

fn unit_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(UNITS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn systemd_analyze_verifies_the_units() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = unit_files()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for unit in ["backup", "prune", "verify"] {
        for kind in ["service", "timer"] {
            let name = format!("pgcairn-{unit}.{kind}");
            assert!(names.contains(&name), "no {name} in {UNITS}: {names:?}");
        }
    }
    // systemd-analyze checks that ExecStart's program exists and that the man pages named
    // in Documentation= open: the built binary stands in for the installed one, and the
    // generated pages are put on MANPATH.
    let mut copies = Vec::new();
    for file in unit_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let copy = dir.path().join(file.file_name().unwrap());
        std::fs::write(&copy, text.replace(BINARY, env!("CARGO_BIN_EXE_pgcairn"))).unwrap();
        copies.push(copy);
    }
    let man = dir.path().join("man");
    pgcairn(&["man", "--out-dir", man.join("man1").to_str().unwrap()]);
    let verify = |units: &[PathBuf]| {
        tool(
            Command::new("systemd-analyze")
                .arg("verify")
                .args(units)
                .env("MANPATH", &man)
                .env("SYSTEMD_LOG_COLOR", "0"),
        )
    };
    let out = verify(&copies);
    assert_success(&out, "systemd-analyze verify");
    assert_eq!(stderr(&out), "", "systemd-analyze has remarks");

    // A mistake in a unit is reported.
    let broken = dir.path().join("pgcairn-broken.service");
    std::fs::write(
        &broken,
        "[Service]\nType=oneshot\nNicety=10\nExecStart=/bin/true\n",
    )
    .unwrap();
    let out = verify(&[broken]);
    assert!(stderr(&out).contains("Nicety"), "{}", stderr(&out));
}

/// A unit file's [Service] settings, in order (a key may repeat).
struct Service {
    name: String,
    settings: Vec<(String, String)>,
}

impl Service {
    fn read(name: &str) -> Service {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(UNITS).join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut section = "";
        let mut settings = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
            } else if section == "[Service]" {
                let (key, value) = line.split_once('=').unwrap();
                settings.push((key.to_string(), value.to_string()));
            }
        }
        Service {
            name: name.to_string(),
            settings,
        }
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, key: &str) -> &str {
        let values = self.all(key);
        assert_eq!(values.len(), 1, "{}: {key}", self.name);
        values[0]
    }
}

/// A test's stand-ins for the machine the units are written for.
struct Site<'a> {
    cairn: &'a Cairn,
    cluster: &'a Cluster,
    config: PathBuf,
    /// What PrivateTmp= gives the unit: a /tmp of its own (TMPDIR here).
    tmp: tempfile::TempDir,
}

impl Site<'_> {
    /// Where node_exporter's textfile collector would read, made as its package makes it.
    fn textfile_dir(&self) -> PathBuf {
        let dir = self.cairn.path("textfile");
        if !dir.exists() {
            std::fs::create_dir(&dir).unwrap();
            give_to_cluster_owner(&dir);
        }
        dir
    }

    /// Runs the unit's ExecStart as systemd would: its program and arguments, its environment,
    /// writing only where its ReadWritePaths= and CacheDirectory= allow; the unit's site
    /// values replaced with the test's.
    fn run(&self, unit: &Service) -> Output {
        let exec: Vec<&str> = unit.one("ExecStart").split_whitespace().collect();
        assert_eq!(exec[0], BINARY, "{}", unit.name);
        let args: Vec<String> = exec[1..]
            .iter()
            .map(|arg| match *arg {
                CONFIG => self.config.to_string_lossy().into_owned(),
                other if other.starts_with(TEXTFILE_DIR) => self
                    .textfile_dir()
                    .join(&other[TEXTFILE_DIR.len() + 1..])
                    .to_string_lossy()
                    .into_owned(),
                other => {
                    assert!(
                        !other.starts_with('/'),
                        "{}: which site path is {other}?",
                        unit.name
                    );
                    other.to_string()
                }
            })
            .collect();

        let cache = self.cairn.path("cache");
        // systemd makes the CacheDirectory= before it starts the unit.
        if !cache.exists() {
            std::fs::create_dir(&cache).unwrap();
            give_to_cluster_owner(&cache);
        }
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            (
                "TMPDIR".into(),
                self.tmp.path().to_string_lossy().into_owned(),
            ),
            ("PGCAIRN_INSECURE_TEST_KDF".into(), "1".into()),
            // The test cluster's superuser, also when the tests do not run as `postgres`.
            ("PGUSER".into(), "postgres".into()),
        ];
        for assignment in unit.all("Environment") {
            let (name, value) = assignment.split_once('=').unwrap();
            let value = match name {
                "PGDATA" => self.cluster.pgdata().to_path_buf(),
                "PGHOST" => self.cluster.socket_dir().to_path_buf(),
                "PGPORT" => PathBuf::from(self.cluster.port().to_string()),
                "PGCAIRN_CACHE_DIR" => {
                    let dir = format!("/var/cache/{}", unit.one("CacheDirectory"));
                    assert_eq!(
                        value, dir,
                        "{}: the cache is systemd's CacheDirectory",
                        unit.name
                    );
                    cache.clone()
                }
                other => panic!(
                    "{}: Environment={other}: a site value the test knows nothing of",
                    unit.name
                ),
            };
            env.push((name.to_string(), value.to_string_lossy().into_owned()));
        }

        let mut writable = vec![cache, self.tmp.path().to_path_buf()];
        for path in unit.all("ReadWritePaths") {
            writable.push(match path.trim_start_matches('-') {
                LOCAL_REPO => self.cairn.repo(),
                TEXTFILE_DIR => self.textfile_dir(),
                other => panic!("{}: which site path is {other}?", unit.name),
            });
        }
        run_confined(
            Path::new(env!("CARGO_BIN_EXE_pgcairn")),
            &args,
            &env,
            &writable,
        )
    }
}

/// Runs `program` as systemd runs a unit with ProtectSystem=strict, ReadWritePaths=`writable`
/// and User=postgres: in a mount namespace of its own where every file system is read-only
/// but for those directories, as the cluster owner. That takes root, as the tests are run in
/// CI; as another user the command runs unconfined, as that user (who then owns the cluster).
fn run_confined(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    writable: &[PathBuf],
) -> Output {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let script = r#"
            findmnt -rn -o TARGET | while read -r target; do
                case "$target" in
                    /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) ;;
                    *) mount -o remount,bind,ro "$target" ;;
                esac
            done
            while [ "$1" != -- ]; do
                mount --bind "$1" "$1"
                mount -o remount,bind,rw "$1"
                shift
            done
            shift
            exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
        "#;
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-ec",
            script,
            "sh",
        ])
        .args(writable)
        .arg("--")
        .arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("running {program:?} confined: {err}"))
}

#[test]
fn the_units_back_up_prune_verify_and_report_on_a_real_cluster() {
    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    let config = cairn.path("pgcairn.toml");
    write_owned(
        &config,
        &format!(
            "repo = \"{}\"\npassword_file = \"{}\"\nkeep_last = 1\n",
            cairn.repo().display(),
            cairn.password_file().display()
        ),
    );
    let site = Site {
        cairn: &cairn,
        cluster: &cluster,
        config,
        tmp: owned_temp_dir(),
    };

    // The confinement holds: outside the writable directories nothing can be written.
    if unsafe { libc::geteuid() } == 0 {
        let probe = cairn.path("probe");
        let out = run_confined(
            Path::new("/usr/bin/touch"),
            &[probe.to_string_lossy().into_owned()],
            &[],
            &[cairn.repo()],
        );
        assert!(!out.status.success() && !probe.exists(), "{}", stderr(&out));
    }

    let backup = Service::read("pgcairn-backup.service");
    let out = site.run(&backup);
    assert_success(&out, "the backup unit's command");
    cluster.execute("CREATE TABLE after_first AS SELECT generate_series(1, 10000) AS n");
    assert_success(&site.run(&backup), "the backup unit's command, again");
    let snapshots = cairn.snapshots();
    assert_eq!(snapshots.len(), 2);
    for snapshot in &snapshots {
        assert_eq!(
            snapshot["tags"],
            serde_json::json!(["nightly"]),
            "{snapshot}"
        );
    }

    let out = site.run(&Service::read("pgcairn-prune.service"));
    assert_success(
        &out,
        "the prune unit's command (keep_last = 1 from the config file)",
    );
    assert_eq!(cairn.snapshot_ids(), [snapshots[1]["id"].as_str().unwrap()]);

    let out = site.run(&Service::read("pgcairn-verify.service"));
    assert_success(
        &out,
        "the verify unit's command, with the repository read-only",
    );
    assert!(stdout(&out).contains("read data (10%"), "{}", stdout(&out));

    let out = site.run(&Service::read("pgcairn-metrics.service"));
    assert_success(&out, "the metrics unit's command");
    let metrics = std::fs::read_to_string(site.textfile_dir().join("pgcairn.prom")).unwrap();
    assert!(
        metrics.contains("\npgcairn_up 1\n")
            && metrics.contains("pgcairn_last_backup_age_seconds{"),
        "{metrics}"
    );
}
