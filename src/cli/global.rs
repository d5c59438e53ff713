//! Options every command takes, merged from the command line, the environment and the config
//! file (in that order of precedence).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::error::{Context, Error, Result};
use crate::repo::Repository;
use crate::storage::Storage;

use super::password;

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOptions {
    /// Repository location: a local directory path.
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

    /// TOML file with the same settings (repo, password_file, cache_dir).
    #[arg(long, global = true, env = "PGCAIRN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the local index cache [default: $XDG_CACHE_HOME/pgcairn].
    #[arg(long, global = true, env = "PGCAIRN_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The settings a config file may hold.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    repo: Option<String>,
    password_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
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
        self.repo = self.repo.or(file.repo);
        self.password_file = self
            .password_file
            .or(file.password_file.map(|p| base.join(p)));
        self.cache_dir = self.cache_dir.or(file.cache_dir.map(|p| base.join(p)));
        Ok(self)
    }

    pub fn storage(&self) -> Result<Storage> {
        let url = self.repo.as_deref().ok_or_else(|| {
            Error::usage("no repository given: use --repo, PGCAIRN_REPO or `repo` in --config")
        })?;
        Storage::open(url).with_context(|| format!("repository {url}"))
    }

    /// Opens the repository with the password from the usual sources.
    pub fn open_repository(&self) -> Result<Repository> {
        let storage = self.storage()?;
        let password = password::current(self.password_file.as_deref())?;
        Repository::open(storage, &password)
    }
}
