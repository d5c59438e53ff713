//! Connecting to PostgreSQL the way libpq does, so that `--db` and the `PG*` environment mean
//! what they mean to psql and pg_basebackup.
//!
//! rust-postgres parses connection strings (keyword/value and `postgresql://` URLs) but reads no
//! environment and has its own defaults; [`resolve`] fills in what the string leaves out, in
//! libpq's order: the string, then the environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`,
//! `PGPASSWORD`, `PGAPPNAME`, `PGOPTIONS`, `PGCONNECT_TIMEOUT`, `PGSSLMODE`), then libpq's
//! defaults, and last the password file (`PGPASSFILE`, else `~/.pgpass`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};
use crate::pg::osuser::{self, UserKey};
use crate::pg::pgpass;

/// Where libpq looks for the server's Unix socket when no host is given: Debian's and Red Hat's
/// builds use the first, upstream's the second.
const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];
const DEFAULT_PORT: u16 = 5432;
/// libpq waits forever by default; a backup from cron should not hang on an unreachable host.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const APPLICATION_NAME: &str = "pgcairn";

/// Looks up an environment variable.
pub type VarLookup = Box<dyn Fn(&str) -> Option<String>>;

/// What libpq consults besides the connection string, as functions so that [`resolve`] can be
/// tested without touching the process environment.
pub struct LibpqEnv {
    /// An environment variable.
    pub var: VarLookup,
    /// The operating system user name of the effective uid, libpq's default user.
    pub os_user: Box<dyn Fn() -> Option<String>>,
    /// Whether a path (a socket directory or socket file) exists.
    pub path_exists: Box<dyn Fn(&Path) -> bool>,
}

impl LibpqEnv {
    /// The real environment, user database and file system.
    pub fn system() -> LibpqEnv {
        LibpqEnv {
            var: Box::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
            os_user: Box::new(effective_user_name),
            path_exists: Box::new(|path| path.exists()),
        }
    }
}

/// Opens a connection from a libpq connection string (or none), completed from the environment.
pub fn connect(conninfo: Option<&str>) -> Result<Client> {
    let config = resolve(conninfo, &LibpqEnv::system())?;
    connect_with(&config)
}

/// Opens a connection with a resolved configuration; a failure names where it tried and as whom.
pub fn connect_with(config: &Config) -> Result<Client> {
    config.connect(NoTls).map_err(|err| {
        let reason = Error::from(err);
        Error::database(format!(
            "cannot connect to PostgreSQL at {} as user {}: {}",
            describe_target(config),
            config.get_user().unwrap_or("?"),
            reason.message()
        ))
    })
}

/// The connection settings for `conninfo` with everything it does not give taken from the
/// environment and libpq's defaults.
pub fn resolve(conninfo: Option<&str>, env: &LibpqEnv) -> Result<Config> {
    let mut config = match conninfo.map(str::trim).filter(|s| !s.is_empty()) {
        // The string itself is not repeated: it may hold a password.
        Some(text) => Config::from_str(text)
            .map_err(|err| Error::usage(format!("invalid PostgreSQL connection string: {err}")))?,
        None => Config::new(),
    };
    let var = |name: &str| (env.var)(name).filter(|v| !v.is_empty());

    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        if let Some(hosts) = var("PGHOST") {
            // A list, like the host keyword; a leading `/` makes a socket directory.
            for host in hosts.split(',') {
                config.host(host);
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(ports) = var("PGPORT") {
            for port in ports.split(',') {
                let port = match port.trim() {
                    "" => DEFAULT_PORT,
                    text => text
                        .parse()
                        .map_err(|_| Error::usage(format!("invalid PGPORT value {ports:?}")))?,
                };
                config.port(port);
            }
        }
    }
    if config.get_user().is_none() {
        let user = var("PGUSER").or_else(|| (env.os_user)()).ok_or_else(|| {
            Error::usage(
                "cannot tell which PostgreSQL user to connect as: give user= in --db or set PGUSER",
            )
        })?;
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        // libpq's default database is the user's namesake.
        let dbname = var("PGDATABASE").or_else(|| config.get_user().map(str::to_owned));
        if let Some(dbname) = dbname {
            config.dbname(&dbname);
        }
    }
    if config.get_password().is_none() {
        if let Some(password) = var("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_application_name().is_none() {
        let name = var("PGAPPNAME").unwrap_or_else(|| APPLICATION_NAME.to_string());
        config.application_name(&name);
    }
    if config.get_options().is_none() {
        if let Some(options) = var("PGOPTIONS") {
            config.options(&options);
        }
    }
    if config.get_connect_timeout().is_none() {
        let timeout = match var("PGCONNECT_TIMEOUT") {
            Some(text) => match text.trim().parse::<i64>() {
                // As in libpq, zero or less means wait forever.
                Ok(secs) if secs <= 0 => None,
                Ok(secs) => Some(Duration::from_secs(secs.unsigned_abs())),
                Err(_) => {
                    return Err(Error::usage(format!(
                        "invalid PGCONNECT_TIMEOUT value {text:?}"
                    )));
                }
            },
            None => Some(DEFAULT_CONNECT_TIMEOUT),
        };
        if let Some(timeout) = timeout {
            config.connect_timeout(timeout);
        }
    }
    if let Some(mode) = var("PGSSLMODE") {
        // The string's sslmode cannot be told apart from the default `prefer`, so the
        // environment only applies when the string says nothing about it.
        let given_in_string = conninfo.is_some_and(|s| s.contains("sslmode"));
        if !given_in_string {
            config.ssl_mode(match mode.as_str() {
                "disable" | "allow" => SslMode::Disable,
                "prefer" => SslMode::Prefer,
                // pgcairn connects without TLS: asking for it must fail, not be dropped.
                "require" | "verify-ca" | "verify-full" => SslMode::Require,
                _ => return Err(Error::usage(format!("invalid PGSSLMODE value {mode:?}"))),
            });
        }
    }

    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        let port = config.get_ports().first().copied().unwrap_or(DEFAULT_PORT);
        config.host_path(default_socket_dir(port, &*env.path_exists));
    }
    if config.get_password().is_none() {
        let file = var("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| Path::new(&home).join(".pgpass")));
        if let Some(password) = file.and_then(|file| password_from_file(&config, &file)) {
            config.password(password);
        }
    }
    Ok(config)
}

/// The password file's password for the first host of `config` (rust-postgres takes one
/// password for all hosts, where libpq looks one up per host).
fn password_from_file(config: &Config, file: &Path) -> Option<String> {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => config.get_hostaddrs().first()?.to_string(),
    };
    let wanted = pgpass::Wanted {
        host: &host,
        port: config.get_ports().first().copied().unwrap_or(DEFAULT_PORT),
        dbname: config.get_dbname().unwrap_or_default(),
        user: config.get_user().unwrap_or_default(),
    };
    pgpass::read_password(file, &wanted)
}

/// The socket directory used when no host is given. libpq has one compiled in, which differs
/// between packagings; pgcairn takes the one where a server is listening on `port`, else the
/// first that exists, so that it finds the same server psql would on this machine.
fn default_socket_dir(port: u16, exists: &dyn Fn(&Path) -> bool) -> PathBuf {
    let dirs = DEFAULT_SOCKET_DIRS.map(PathBuf::from);
    let listening = dirs
        .iter()
        .find(|dir| exists(&dir.join(format!(".s.PGSQL.{port}"))));
    let present = || dirs.iter().find(|dir| exists(dir));
    listening
        .or_else(present)
        .unwrap_or(&dirs[DEFAULT_SOCKET_DIRS.len() - 1])
        .clone()
}

/// Where a configuration connects, for messages: `/tmp/.s.PGSQL.5433`, `db1:5432`, or a list.
pub fn describe_target(config: &Config) -> String {
    let ports = config.get_ports();
    let port_for = |i: usize| match ports {
        [] => DEFAULT_PORT,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(DEFAULT_PORT),
    };
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(i, addr)| tcp_target(&addr.to_string(), port_for(i)))
            .collect()
    } else {
        config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(name) => tcp_target(name, port_for(i)),
                Host::Unix(dir) => dir
                    .join(format!(".s.PGSQL.{}", port_for(i)))
                    .display()
                    .to_string(),
            })
            .collect()
    };
    if hosts.is_empty() {
        "(no host)".to_string()
    } else {
        hosts.join(", ")
    }
}

fn tcp_target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The user name of the effective uid, as libpq's `pg_fe_getusername` finds it (not `$USER`,
/// which anyone can set).
pub fn effective_user_name() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    osuser::lookup(UserKey::Uid(uid)).map(|user| user.name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::error::ErrorKind;

    fn env(vars: &[(&str, &str)], existing: &[&str]) -> LibpqEnv {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let existing: Vec<PathBuf> = existing.iter().map(PathBuf::from).collect();
        LibpqEnv {
            var: Box::new(move |name| vars.get(name).cloned()),
            os_user: Box::new(|| Some("osuser".to_string())),
            path_exists: Box::new(move |path| existing.iter().any(|p| p == path)),
        }
    }

    fn hosts(config: &Config) -> Vec<String> {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => format!("tcp:{name}"),
                Host::Unix(dir) => format!("unix:{}", dir.display()),
            })
            .collect()
    }

    #[test]
    fn string_wins_over_environment() {
        let env = env(
            &[
                ("PGHOST", "/env/sock"),
                ("PGPORT", "6000"),
                ("PGUSER", "envuser"),
                ("PGDATABASE", "envdb"),
                ("PGAPPNAME", "envapp"),
                ("PGPASSWORD", "envpw"),
            ],
            &[],
        );
        let config = resolve(
            Some(
                "host=/tmp port=5433 user=postgres dbname=postgres password=pw application_name=x",
            ),
            &env,
        )
        .unwrap();
        assert_eq!(hosts(&config), ["unix:/tmp"]);
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(config.get_user(), Some("postgres"));
        assert_eq!(config.get_dbname(), Some("postgres"));
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(describe_target(&config), "/tmp/.s.PGSQL.5433");
    }

    #[test]
    fn environment_fills_what_the_string_leaves_out() {
        let env = env(
            &[
                ("PGHOST", "db1,/run/pg"),
                ("PGPORT", "6000"),
                ("PGUSER", "envuser"),
                ("PGPASSWORD", "envpw"),
                ("PGAPPNAME", "envapp"),
                ("PGCONNECT_TIMEOUT", "7"),
            ],
            &[],
        );
        let config = resolve(Some("dbname=sales"), &env).unwrap();
        assert_eq!(hosts(&config), ["tcp:db1", "unix:/run/pg"]);
        assert_eq!(config.get_ports(), [6000]);
        assert_eq!(config.get_user(), Some("envuser"));
        assert_eq!(config.get_dbname(), Some("sales"));
        assert_eq!(config.get_password(), Some(&b"envpw"[..]));
        assert_eq!(config.get_application_name(), Some("envapp"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(7)));
        assert_eq!(describe_target(&config), "db1:6000, /run/pg/.s.PGSQL.6000");
    }

    #[test]
    fn url_form_is_understood() {
        let env = env(&[("PGHOST", "/env"), ("PGUSER", "envuser")], &[]);
        let config = resolve(Some("postgresql://backup@db2:5444/app"), &env).unwrap();
        assert_eq!(hosts(&config), ["tcp:db2"]);
        assert_eq!(config.get_ports(), [5444]);
        assert_eq!(config.get_user(), Some("backup"));
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(config.get_application_name(), Some("pgcairn"));
        assert_eq!(describe_target(&config), "db2:5444");

        let config = resolve(Some("postgresql://[::1]:5444/app"), &env).unwrap();
        assert_eq!(config.get_user(), Some("envuser"));
        assert_eq!(describe_target(&config), "[::1]:5444");
    }

    #[test]
    fn libpq_defaults_last() {
        // Nothing given: the OS user, its namesake database, a socket directory, port 5432.
        let config = resolve(None, &env(&[], &["/var/run/postgresql", "/tmp"])).unwrap();
        assert_eq!(config.get_user(), Some("osuser"));
        assert_eq!(config.get_dbname(), Some("osuser"));
        assert_eq!(hosts(&config), ["unix:/var/run/postgresql"]);
        assert!(config.get_ports().is_empty());
        assert_eq!(
            describe_target(&config),
            "/var/run/postgresql/.s.PGSQL.5432"
        );
        assert_eq!(config.get_application_name(), Some("pgcairn"));
        assert_eq!(config.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(config.get_password(), None);

        // The directory where a server listens on the port wins over one that merely exists.
        let config = resolve(
            Some("port=5433"),
            &env(&[], &["/var/run/postgresql", "/tmp", "/tmp/.s.PGSQL.5433"]),
        )
        .unwrap();
        assert_eq!(describe_target(&config), "/tmp/.s.PGSQL.5433");

        let config = resolve(None, &env(&[("PGUSER", "u")], &["/tmp"])).unwrap();
        assert_eq!(hosts(&config), ["unix:/tmp"]);
        assert_eq!(config.get_dbname(), Some("u"));

        let config = resolve(Some(""), &env(&[], &[])).unwrap();
        assert_eq!(hosts(&config), ["unix:/tmp"]);
    }

    #[test]
    fn empty_environment_values_count_as_unset() {
        let config = resolve(None, &env(&[("PGUSER", ""), ("PGHOST", "")], &["/tmp"])).unwrap();
        assert_eq!(config.get_user(), Some("osuser"));
        assert_eq!(hosts(&config), ["unix:/tmp"]);
    }

    #[test]
    fn hostaddr_alone_needs_no_default_host() {
        let config = resolve(Some("hostaddr=127.0.0.1 port=6543"), &env(&[], &["/tmp"])).unwrap();
        assert!(config.get_hosts().is_empty());
        assert_eq!(describe_target(&config), "127.0.0.1:6543");
    }

    #[test]
    fn bad_settings_are_usage_errors_without_echoing_secrets() {
        let err = resolve(Some("password=hunter2 nonsense=1"), &env(&[], &[])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let err = resolve(None, &env(&[("PGPORT", "54x")], &[])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(err.to_string().contains("PGPORT"), "{err}");

        let err = resolve(None, &env(&[("PGCONNECT_TIMEOUT", "soon")], &[])).unwrap_err();
        assert!(err.to_string().contains("PGCONNECT_TIMEOUT"), "{err}");

        let err = resolve(None, &env(&[("PGSSLMODE", "maybe")], &[])).unwrap_err();
        assert!(err.to_string().contains("PGSSLMODE"), "{err}");

        let mut no_user = env(&[], &[]);
        no_user.os_user = Box::new(|| None);
        let err = resolve(None, &no_user).unwrap_err();
        assert!(err.to_string().contains("PGUSER"), "{err}");
    }

    #[test]
    fn connect_timeout_zero_means_forever_and_sslmode_from_env() {
        let config = resolve(
            None,
            &env(&[("PGCONNECT_TIMEOUT", "0"), ("PGSSLMODE", "require")], &[]),
        )
        .unwrap();
        assert_eq!(config.get_connect_timeout(), None);
        assert_eq!(config.get_ssl_mode(), SslMode::Require);

        let config = resolve(
            Some("sslmode=disable"),
            &env(&[("PGSSLMODE", "require")], &[]),
        )
        .unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn password_file_is_the_last_resort() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "db1:5432:sales:backup:from-file\nlocalhost:5432:*:*:socket-pw\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = file.display().to_string();

        let vars = [("PGPASSFILE", file.as_str())];
        let config = resolve(Some("host=db1 dbname=sales user=backup"), &env(&vars, &[])).unwrap();
        assert_eq!(config.get_password(), Some(&b"from-file"[..]));
        // A socket connection is looked up as localhost.
        let config = resolve(Some("host=/tmp user=u"), &env(&vars, &[])).unwrap();
        assert_eq!(config.get_password(), Some(&b"socket-pw"[..]));
        // Given passwords win.
        let config = resolve(
            Some("host=db1 dbname=sales user=backup password=given"),
            &env(&vars, &[]),
        )
        .unwrap();
        assert_eq!(config.get_password(), Some(&b"given"[..]));
        let with_env = [("PGPASSFILE", file.as_str()), ("PGPASSWORD", "env")];
        let config = resolve(
            Some("host=db1 dbname=sales user=backup"),
            &env(&with_env, &[]),
        )
        .unwrap();
        assert_eq!(config.get_password(), Some(&b"env"[..]));
        // ~/.pgpass when PGPASSFILE is not set.
        std::fs::rename(&file, dir.path().join(".pgpass")).unwrap();
        let home = dir.path().display().to_string();
        let config = resolve(
            Some("host=db1 dbname=sales user=backup"),
            &env(&[("HOME", &home)], &[]),
        )
        .unwrap();
        assert_eq!(config.get_password(), Some(&b"from-file"[..]));
    }

    #[test]
    fn effective_user_has_a_name() {
        // Whoever runs the tests exists in the user database.
        assert!(effective_user_name().is_some_and(|name| !name.is_empty()));
    }
}
