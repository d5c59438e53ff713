//! Options every command takes, merged from the command line, the environment and the config
//! file (in that order of precedence).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::pg::recovery::restore_command_arg;
use crate::prune::duration::Duration;
use crate::prune::policy::{Count, Policy};
use crate::repo::keycache::KeyCache;
use crate::repo::{IndexedRepository, Repository, cache};
use crate::storage::Storage;

use super::password;

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOptions {
    /// Repository location: a local directory path, or s3://BUCKET/PREFIX,
    /// sftp://USER@HOST/PATH, webdav://HOST/PATH (webdav+http:// for plain HTTP),
    /// gcs://BUCKET/PREFIX, azblob://CONTAINER/PREFIX. Credentials come from each service's
    /// usual environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL; GOOGLE_APPLICATION_CREDENTIALS; AZURE_STORAGE_ACCOUNT,
    /// AZURE_STORAGE_KEY; PGCAIRN_WEBDAV_USER, PGCAIRN_WEBDAV_PASSWORD) or the config file's
    /// [storage] table; see docs/storage.md.
    #[arg(long, global = true, env = "PGCAIRN_REPO", value_name = "URL")]
    pub repo: Option<String>,

    /// Read the repository password from the first line of this file.
    #[arg(
        long,
        global = true,
        env = "PGCAIRN_PASSWORD_FILE",
        value_name = "PATH"
    )]
    pub password_file: Option<PathBuf>,

    /// TOML file with the same settings (repo, password_file, cache_dir, key_cache), and
    /// archive_get_prefetch (archive-get --prefetch), archive_async (archive-push --async),
    /// the retention policy (keep_last, keep_daily, ..., keep_within, keep_tag) and a
    /// [storage] table; the command line and environment win over it. Every key, with an
    /// example file: docs/config.md.
    #[arg(long, global = true, env = "PGCAIRN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the local index cache [default: $XDG_CACHE_HOME/pgcairn].
    #[arg(long, global = true, env = "PGCAIRN_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Never cache the unlocked repository keys (archive-push and archive-get cache them, so
    /// that they do not pay the password KDF per WAL file; see SECURITY.md).
    #[arg(long, global = true, env = "PGCAIRN_NO_KEY_CACHE")]
    pub no_key_cache: bool,

    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// `archive_get_prefetch` from the config file: archive-get's --prefetch when not given.
    #[arg(skip)]
    pub archive_get_prefetch: Option<u32>,

    /// `archive_async = true` in the config file: archive-push as with --async.
    #[arg(skip)]
    pub archive_async: bool,

    /// The config file's `keep_*` keys: the retention policy when no `--keep-*` option is
    /// given (see `PolicyArgs::resolve`).
    #[arg(skip)]
    pub config_policy: Policy,

    /// The config file's `[storage]` table: backend options and credentials, and pgcairn's
    /// timeout, io_timeout, retries and connections.
    #[arg(skip)]
    pub storage_options: BTreeMap<String, String>,
}

/// The settings a config file may hold.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    repo: Option<String>,
    password_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    key_cache: Option<bool>,
    archive_get_prefetch: Option<u32>,
    archive_async: Option<bool>,
    // Named as the options are (`--keep-daily` → `keep_daily`), flat like the keys above.
    keep_last: Option<Count>,
    keep_hourly: Option<Count>,
    keep_daily: Option<Count>,
    keep_weekly: Option<Count>,
    keep_monthly: Option<Count>,
    keep_yearly: Option<Count>,
    keep_within: Option<Duration>,
    #[serde(default)]
    keep_tag: Vec<String>,
    #[serde(default)]
    storage: BTreeMap<String, toml::Value>,
}

impl GlobalOptions {
    /// Fills options not given on the command line or in the environment from `--config`.
    pub fn resolve(mut self) -> Result<Self> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::usage(format!("config file {}: {e}", path.display())))?;
        let file: ConfigFile = toml::from_str(&text)
            .map_err(|e| Error::usage(format!("config file {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        // A local repository path, like the other paths here, is relative to the file, not
        // to wherever the command runs (archive-push runs in the data directory).
        let repo =
            file.repo.map(
                |repo| match repo.contains("://") || Path::new(&repo).is_absolute() {
                    true => repo,
                    false => base.join(&repo).to_string_lossy().into_owned(),
                },
            );
        self.repo = self.repo.or(repo);
        self.password_file = self
            .password_file
            .or(file.password_file.map(|p| base.join(p)));
        self.cache_dir = self.cache_dir.or(file.cache_dir.map(|p| base.join(p)));
        self.no_key_cache |= file.key_cache == Some(false);
        self.archive_get_prefetch = file.archive_get_prefetch;
        self.archive_async = file.archive_async.unwrap_or(false);
        self.config_policy = Policy {
            last: file.keep_last,
            hourly: file.keep_hourly,
            daily: file.keep_daily,
            weekly: file.keep_weekly,
            monthly: file.keep_monthly,
            yearly: file.keep_yearly,
            within: file.keep_within,
            tags: file.keep_tag,
        };
        self.storage_options = file
            .storage
            .into_iter()
            .map(|(key, value)| match value {
                toml::Value::String(text) => Ok((key, text)),
                toml::Value::Integer(n) => Ok((key, n.to_string())),
                toml::Value::Boolean(b) => Ok((key, b.to_string())),
                other => Err(Error::usage(format!(
                    "config file {}: [storage] {key}: expected a string, number or boolean, \
                     found {}",
                    path.display(),
                    other.type_str()
                ))),
            })
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// Command-line arguments that give another pgcairn process these options as resolved
    /// (for archive-get's prefetch worker). The config file was read already; its settings
    /// are passed on as arguments, which win over the environment the process inherits.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        // The config file too, for what has no option (the [storage] table); the options
        // below win over it as they did here.
        if let Some(config) = &self.config {
            args.extend(["--config".into(), config.into()]);
        }
        if let Some(repo) = &self.repo {
            args.extend(["--repo".into(), repo.into()]);
        }
        if let Some(path) = &self.password_file {
            args.extend(["--password-file".into(), path.into()]);
        }
        if let Some(dir) = &self.cache_dir {
            args.extend(["--cache-dir".into(), dir.into()]);
        }
        if self.no_key_cache {
            args.push("--no-key-cache".into());
        }
        args.extend((0..self.verbose).map(|_| "--verbose".into()));
        if self.quiet {
            args.push("--quiet".into());
        }
        args
    }

    /// This binary with the repository options given to this process (paths made absolute,
    /// never a password), then `tail`: a command for the server to run as restore_command or
    /// archive_command, which it runs from the data directory. Words are shell-quoted with `%`
    /// doubled; `tail` is taken as written (`archive-push %p`).
    pub fn server_command(&self, tail: &str) -> Result<String> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::local(format!("finding the pgcairn executable: {e}")))?;
        let mut words = vec![restore_command_arg(&exe.to_string_lossy())];
        let mut push = |flag: &str, value: String| {
            words.push(flag.to_string());
            words.push(restore_command_arg(&value));
        };
        if let Some(repo) = &self.repo {
            let repo = if repo.contains("://") {
                repo.clone()
            } else {
                absolute(Path::new(repo))?.to_string_lossy().into_owned()
            };
            push("--repo", repo);
        }
        for (flag, path) in [
            ("--config", &self.config),
            ("--password-file", &self.password_file),
            ("--cache-dir", &self.cache_dir),
        ] {
            if let Some(path) = path {
                push(flag, absolute(path)?.to_string_lossy().into_owned());
            }
        }
        words.push(tail.to_string());
        Ok(words.join(" "))
    }

    pub fn storage(&self) -> Result<Storage> {
        let url = self.repo.as_deref().ok_or_else(|| {
            Error::usage("no repository given: use --repo, PGCAIRN_REPO or `repo` in --config")
        })?;
        Storage::open_with(url, &self.storage_options)
    }

    /// Opens the repository with the password from the usual sources.
    pub fn open_repository(&self) -> Result<Repository> {
        let storage = self.storage()?;
        let password = password::current(self.password_file.as_deref())?;
        Repository::open(storage, &password)
    }

    /// Opens the repository and its index cache, not yet brought in step with storage.
    pub fn open_unsynced(&self) -> Result<IndexedRepository> {
        self.open_repository()?
            .open_cache(self.cache_dir.as_deref())
    }

    /// Opens the repository and brings its index cache in step with storage.
    pub fn open_indexed(&self) -> Result<IndexedRepository> {
        self.open_repository()?
            .load_index(self.cache_dir.as_deref())
    }

    /// Opens the repository for a command the server runs once per WAL file: keys from the
    /// key cache unless it is turned off, and the index cache synced at most `max_age` ago.
    pub fn open_for_wal(&self, max_age: std::time::Duration) -> Result<IndexedRepository> {
        let storage = self.storage()?;
        let password = || password::current(self.password_file.as_deref());
        let repo = if self.no_key_cache {
            Repository::open(storage, &password()?)?
        } else {
            let base = cache::base_dir(self.cache_dir.as_deref())?;
            let key_cache = KeyCache::for_location(&base, storage.location());
            Repository::open_with_key_cache(storage, &key_cache, password)?
        };
        repo.load_index_synced_within(self.cache_dir.as_deref(), max_age)
    }
}

/// An absolute form of a path given relative to the current directory: the server runs
/// restore_command and archive_command from the data directory.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::usage(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches, Parser};
    use std::collections::BTreeSet;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        global: GlobalOptions,
    }

    #[test]
    fn options_survive_being_passed_on_as_arguments() {
        let options = GlobalOptions {
            repo: Some("/backup/with space".into()),
            password_file: Some("pass".into()),
            cache_dir: Some("/var/cache/x".into()),
            no_key_cache: true,
            verbose: 2,
            ..GlobalOptions::default()
        };
        let mut args = vec![std::ffi::OsString::from("pgcairn")];
        args.extend(options.to_args());
        let matches = <Cli as clap::CommandFactory>::command().get_matches_from(args);
        let parsed = GlobalOptions::from_arg_matches(&matches).unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{options:?}"));
    }

    #[test]
    fn a_local_repository_in_the_config_file_is_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgcairn.toml");
        let repo_of = |line: &str| {
            std::fs::write(&path, line).unwrap();
            GlobalOptions {
                config: Some(path.clone()),
                ..GlobalOptions::default()
            }
            .resolve()
            .unwrap()
            .repo
            .unwrap()
        };
        let relative = dir.path().join("repo").to_string_lossy().into_owned();
        assert_eq!(repo_of("repo = \"repo\""), relative);
        assert_eq!(repo_of("repo = \"/backup\""), "/backup");
        assert_eq!(repo_of("repo = \"s3://bucket/p\""), "s3://bucket/p");
    }

    #[test]
    fn config_file_holds_the_retention_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgcairn.toml");
        std::fs::write(
            &path,
            "repo = \"/backup\"\n\
             keep_last = 3\n\
             keep_daily = 7\n\
             keep_monthly = \"unlimited\"\n\
             keep_yearly = -1\n\
             keep_within = \"2w\"\n\
             keep_tag = [\"release\", \"manual\"]\n",
        )
        .unwrap();
        let options = GlobalOptions {
            config: Some(path.clone()),
            ..GlobalOptions::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            options.config_policy,
            Policy {
                last: Some(Count::Limited(3)),
                daily: Some(Count::Limited(7)),
                monthly: Some(Count::Unlimited),
                yearly: Some(Count::Unlimited),
                within: Some("2w".parse().unwrap()),
                tags: vec!["release".into(), "manual".into()],
                ..Policy::default()
            }
        );

        for bad in [
            "keep_dayly = 7",
            "keep_daily = \"seven\"",
            "keep_within = \"2 weeks\"",
            "keep_tag = \"release\"",
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = GlobalOptions {
                config: Some(path.clone()),
                ..GlobalOptions::default()
            }
            .resolve()
            .unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Usage, "{bad}");
            assert!(err.to_string().contains("config file"), "{bad}: {err}");
        }
    }

    /// docs/config.md, which documents every setting; the tests below hold it to the code.
    const CONFIG_DOC: &str = include_str!("../../docs/config.md");

    /// The text of the doc's section `heading`, up to the next section.
    fn doc_section(heading: &str) -> &'static str {
        let start = CONFIG_DOC
            .find(&format!("\n## {heading}\n"))
            .unwrap_or_else(|| panic!("docs/config.md has no section {heading:?}"));
        let rest = &CONFIG_DOC[start + 1..];
        &rest[..rest[3..].find("\n## ").map_or(rest.len(), |end| end + 3)]
    }

    /// The cells of the first table in `section`, row by row, without the header.
    fn table_rows(section: &str) -> Vec<Vec<&str>> {
        section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2)
            .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
            .collect()
    }

    /// The `quoted` words of a table cell.
    fn backticked(cell: &str) -> BTreeSet<&str> {
        cell.split('`').skip(1).step_by(2).collect()
    }

    fn complete_example() -> &'static str {
        let section = doc_section("A complete example");
        let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
        &section[start..start + section[start..].find("```").expect("its end")]
    }

    #[test]
    fn the_documented_example_sets_every_setting_the_settings_table_lists() {
        let example = complete_example();
        let parsed: ConfigFile = toml::from_str(example).expect("the example parses");
        // No `..`: a new setting breaks this until the example (and so the doc) has it.
        let ConfigFile {
            repo,
            password_file,
            cache_dir,
            key_cache,
            archive_get_prefetch,
            archive_async,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            keep_tag,
            storage,
        } = parsed;
        assert!(repo.is_some() && password_file.is_some() && cache_dir.is_some());
        assert!(key_cache.is_some() && archive_get_prefetch.is_some() && archive_async.is_some());
        let counts = [
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
        ];
        assert!(counts.iter().all(Option::is_some), "{counts:?}");
        assert!(keep_within.is_some() && !keep_tag.is_empty() && !storage.is_empty());

        let keys: BTreeSet<String> = toml::from_str::<toml::Table>(example)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let documented: BTreeSet<String> = table_rows(doc_section("Settings"))
            .iter()
            .map(|row| {
                row[0]
                    .trim_matches(|c| c == '`' || c == '[' || c == ']')
                    .to_string()
            })
            .collect();
        assert_eq!(documented, keys, "the Settings table vs the example's keys");

        // The example resolves, its [storage] keys included.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgcairn.toml");
        std::fs::write(&path, example).unwrap();
        let options = GlobalOptions {
            config: Some(path),
            ..GlobalOptions::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(options.password_file, Some(dir.path().join("password")));
        let url = options.repo.clone().unwrap();
        let service = crate::storage::Location::parse(&url, &BTreeMap::new(), &|_| None)
            .unwrap()
            .service;
        let known: BTreeSet<&str> = crate::storage::known_options(service)
            .iter()
            .map(|o| o.key)
            .chain(crate::storage::Tuning::KEYS)
            .collect();
        for key in options.storage_options.keys() {
            assert!(
                known.contains(key.as_str()),
                "[storage] {key} in the example"
            );
        }
    }

    #[test]
    fn the_documented_storage_keys_are_the_ones_pgcairn_knows() {
        use crate::storage::{Location, Service, Tuning, known_options};
        type Documented<'a> = BTreeMap<(&'a str, &'a str), (BTreeSet<&'a str>, BTreeSet<&'a str>)>;
        let remote = ["s3", "sftp", "webdav", "gcs", "azblob"];
        let service_of = |scheme: &str| -> Service {
            Location::parse(&format!("{scheme}://host/path"), &BTreeMap::new(), &|_| {
                None
            })
            .unwrap()
            .service
        };
        let mut code: Documented = BTreeMap::new();
        for scheme in remote {
            for key in Tuning::KEYS {
                code.insert((scheme, key), Default::default());
            }
            for option in known_options(service_of(scheme)) {
                let query = option.query.into_iter().collect();
                let env = option.env.into_iter().collect();
                code.insert((scheme, option.key), (env, query));
            }
        }
        let mut documented: Documented = BTreeMap::new();
        for row in table_rows(doc_section("The `[storage]` table")) {
            let key = row[0].trim_matches('`');
            for scheme in row[1].split(", ") {
                assert!(
                    remote.contains(&scheme),
                    "{key}: unknown backend {scheme:?}"
                );
                let entry = (backticked(row[2]), backticked(row[3]));
                assert!(
                    documented.insert((scheme, key), entry).is_none(),
                    "{key} twice"
                );
            }
        }
        assert_eq!(documented, code);
    }

    #[test]
    fn config_file_takes_the_prefetch_depth_and_still_refuses_unknown_keys() {
        let file: ConfigFile = toml::from_str("archive_get_prefetch = 4").unwrap();
        assert_eq!(file.archive_get_prefetch, Some(4));
        assert!(toml::from_str::<ConfigFile>("archive_get_prefetsh = 4").is_err());
    }
}
