//! Repository URLs: which backend, where, and with which options.
//!
//! Options come from three places, later ones winning: the config file's `[storage]` table,
//! the backend's usual environment variables, and the URL's query (`?endpoint=...`). Secrets
//! belong in the environment or the config file; a URL may be printed in logs and messages,
//! so [`Location::display`] never shows its query.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The backends a repository can live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Local,
    Memory,
    S3,
    Sftp,
    Webdav,
    Gcs,
    Azblob,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Local => "local directory",
            Service::Memory => "memory",
            Service::S3 => "S3",
            Service::Sftp => "SFTP",
            Service::Webdav => "WebDAV",
            Service::Gcs => "Google Cloud Storage",
            Service::Azblob => "Azure Blob Storage",
        }
    }

    /// The service as scripts name it (`init --json`): its URL scheme, `local` for a path.
    pub fn id(self) -> &'static str {
        match self {
            Service::Local => "local",
            Service::Memory => "memory",
            Service::S3 => "s3",
            Service::Sftp => "sftp",
            Service::Webdav => "webdav",
            Service::Gcs => "gcs",
            Service::Azblob => "azblob",
        }
    }

    /// Whether a write becomes visible under its name only once complete. Object stores
    /// publish an upload whole; SFTP and WebDAV servers write into the named file as bytes
    /// arrive, so writes there go to a staging name first and are renamed into place.
    pub fn publishes_whole(self) -> bool {
        !matches!(self, Service::Sftp | Service::Webdav)
    }
}

/// A parsed repository URL.
#[derive(Debug, Clone)]
pub struct Location {
    pub service: Service,
    /// Where a local repository is (`Service::Local` only).
    pub path: Option<PathBuf>,
    /// OpenDAL's options for the service (`bucket`, `root`, `endpoint`, credentials...).
    pub options: BTreeMap<String, String>,
    /// The URL without its query or any password, for messages.
    pub display: String,
}

/// Environment variables each service reads, and the option each one sets.
const ENVIRONMENT: &[(Service, &str, &str)] = &[
    (Service::S3, "AWS_ACCESS_KEY_ID", "access_key_id"),
    (Service::S3, "AWS_SECRET_ACCESS_KEY", "secret_access_key"),
    (Service::S3, "AWS_SESSION_TOKEN", "session_token"),
    (Service::S3, "AWS_DEFAULT_REGION", "region"),
    (Service::S3, "AWS_REGION", "region"),
    (Service::S3, "AWS_ENDPOINT_URL", "endpoint"),
    (Service::S3, "AWS_ENDPOINT_URL_S3", "endpoint"),
    (Service::S3, "AWS_PROFILE", "profile"),
    (
        Service::Gcs,
        "GOOGLE_APPLICATION_CREDENTIALS",
        "credential_path",
    ),
    (Service::Gcs, "STORAGE_EMULATOR_HOST", "endpoint"),
    (Service::Azblob, "AZURE_STORAGE_ACCOUNT", "account_name"),
    (Service::Azblob, "AZURE_STORAGE_KEY", "account_key"),
    (Service::Azblob, "AZURE_STORAGE_SAS_TOKEN", "sas_token"),
    (Service::Azblob, "AZURE_STORAGE_ENDPOINT", "endpoint"),
    (Service::Webdav, "PGCAIRN_WEBDAV_USER", "username"),
    (Service::Webdav, "PGCAIRN_WEBDAV_PASSWORD", "password"),
    (Service::Sftp, "PGCAIRN_SFTP_KEY", "key"),
];

/// Query keys accepted in a URL, per service, and the option each one sets. Short names are
/// what users type; OpenDAL's own names are accepted too.
const QUERY: &[(Service, &str, &str)] = &[
    (Service::S3, "endpoint", "endpoint"),
    (Service::S3, "region", "region"),
    (Service::S3, "profile", "profile"),
    (Service::S3, "storage_class", "default_storage_class"),
    (Service::Gcs, "endpoint", "endpoint"),
    (Service::Gcs, "credential_path", "credential_path"),
    (Service::Azblob, "endpoint", "endpoint"),
    (Service::Azblob, "account", "account_name"),
    (Service::Sftp, "key", "key"),
    (Service::Sftp, "known_hosts", "known_hosts_strategy"),
];

/// A backend option pgcairn sets from somewhere besides the `[storage]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOption {
    /// OpenDAL's name for it, which is also its `[storage]` key.
    pub key: &'static str,
    /// The environment variables that set it (a later one wins).
    pub env: Vec<&'static str>,
    /// The URL query key that sets it.
    pub query: Option<&'static str>,
}

/// The options of `service` that pgcairn sets from the environment or the URL query,
/// sorted by key (docs/config.md lists them). The `[storage]` table may hold any other option
/// of OpenDAL's service as well; it is passed on as it is.
pub fn known_options(service: Service) -> Vec<KnownOption> {
    let mut known: BTreeMap<&'static str, KnownOption> = BTreeMap::new();
    fn option<'a>(
        known: &'a mut BTreeMap<&'static str, KnownOption>,
        key: &'static str,
    ) -> &'a mut KnownOption {
        known.entry(key).or_insert_with(|| KnownOption {
            key,
            env: Vec::new(),
            query: None,
        })
    }
    for (_, var, key) in ENVIRONMENT.iter().filter(|(s, ..)| *s == service) {
        option(&mut known, key).env.push(var);
    }
    for (_, name, key) in QUERY.iter().filter(|(s, ..)| *s == service) {
        option(&mut known, key).query = Some(name);
    }
    known.into_values().collect()
}

impl Location {
    /// Parses a repository URL. `config` is the config file's `[storage]` table and
    /// `env` looks up an environment variable (the process's, or a test's).
    pub fn parse(
        url: &str,
        config: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Location> {
        if url.is_empty() {
            return Err(Error::usage("repository path is empty"));
        }
        if url == "memory://" {
            return Ok(Location::simple(Service::Memory, None, url));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(Location::simple(Service::Local, Some(url.into()), url));
        };
        let service = match scheme {
            "file" if !rest.is_empty() => {
                return Ok(Location::simple(Service::Local, Some(rest.into()), url));
            }
            "s3" => Service::S3,
            "sftp" => Service::Sftp,
            "webdav" | "webdav+http" | "webdav+https" => Service::Webdav,
            "gcs" | "gs" => Service::Gcs,
            "azblob" => Service::Azblob,
            _ => {
                return Err(Error::usage(format!(
                    "repository URL {url:?}: unknown scheme {scheme}://; use a local path, \
                     s3://, sftp://, webdav://, gcs:// or azblob://"
                )));
            }
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, path.trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(Error::usage(format!(
                "repository URL {url:?}: no {} after {scheme}://",
                match service {
                    Service::S3 | Service::Gcs => "bucket",
                    Service::Azblob => "container",
                    _ => "host",
                }
            )));
        }

        let mut options = config.clone();
        for (env_service, var, key) in ENVIRONMENT {
            if *env_service == service
                && let Some(value) = env(var).filter(|v| !v.is_empty())
            {
                options.insert((*key).into(), value);
            }
        }
        let display = match service {
            Service::S3 | Service::Gcs => {
                options.insert("bucket".into(), authority.into());
                options.insert("root".into(), format!("/{path}"));
                format!("{scheme}://{authority}/{path}")
            }
            Service::Azblob => {
                options.insert("container".into(), authority.into());
                options.insert("root".into(), format!("/{path}"));
                format!("{scheme}://{authority}/{path}")
            }
            Service::Sftp => {
                let (user, host) = split_user(authority, url)?;
                if let Some(user) = user {
                    options.insert("user".into(), user.into());
                }
                options.insert("endpoint".into(), format!("ssh://{host}"));
                options.insert("root".into(), format!("/{path}"));
                format!("sftp://{authority}/{path}")
            }
            Service::Webdav => {
                let (user, host) = split_user(authority, url)?;
                if let Some(user) = user {
                    options.insert("username".into(), user.into());
                }
                let http = if scheme == "webdav+http" {
                    "http"
                } else {
                    "https"
                };
                options.insert("endpoint".into(), format!("{http}://{host}"));
                options.insert("root".into(), format!("/{path}"));
                format!("{scheme}://{authority}/{path}")
            }
            Service::Local | Service::Memory => unreachable!("handled above"),
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| {
                Error::usage(format!("repository URL {url:?}: bad escape in {key}"))
            })?;
            let option = QUERY
                .iter()
                .find(|(s, name, _)| *s == service && *name == key)
                .map(|(_, _, option)| *option)
                .ok_or_else(|| {
                    let known: Vec<&str> = QUERY
                        .iter()
                        .filter(|(s, ..)| *s == service)
                        .map(|(_, name, _)| *name)
                        .collect();
                    Error::usage(format!(
                        "repository URL {url:?}: unknown option {key:?} for {}; known: {}",
                        service.name(),
                        known.join(", ")
                    ))
                })?;
            options.insert(option.into(), value);
        }
        Ok(Location {
            service,
            path: None,
            options,
            display,
        })
    }

    fn simple(service: Service, path: Option<PathBuf>, url: &str) -> Location {
        Location {
            service,
            path,
            options: BTreeMap::new(),
            display: url.into(),
        }
    }
}

/// `user@host` → (Some(user), host). A password in the URL is refused: URLs end up in logs,
/// shell history and `ps`.
fn split_user<'a>(authority: &'a str, url: &str) -> Result<(Option<&'a str>, &'a str)> {
    let Some((user, host)) = authority.rsplit_once('@') else {
        return Ok((None, authority));
    };
    if user.contains(':') {
        return Err(Error::usage(format!(
            "repository URL {:?}: do not put a password in the URL; use the environment or \
             the config file's [storage] table",
            url.replace(user, "USER:***")
        )));
    }
    Ok((Some(user), host))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, env: &[(&str, &str)]) -> Result<Location> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Location::parse(url, &BTreeMap::new(), &|var| {
            env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
        })
    }

    fn option<'a>(loc: &'a Location, key: &str) -> Option<&'a str> {
        loc.options.get(key).map(String::as_str)
    }

    #[test]
    fn plain_paths_and_file_urls_are_local() {
        let loc = parse("/var/backups/pg", &[]).unwrap();
        assert_eq!(loc.service, Service::Local);
        assert_eq!(loc.path.unwrap(), PathBuf::from("/var/backups/pg"));
        let loc = parse("file:///srv/repo", &[]).unwrap();
        assert_eq!(loc.path.unwrap(), PathBuf::from("/srv/repo"));
        assert_eq!(parse("relative/dir", &[]).unwrap().service, Service::Local);
    }

    #[test]
    fn s3_takes_bucket_prefix_environment_and_query_in_that_order() {
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://env:9000"),
        ];
        let loc = parse(
            "s3://backups/pg/main?endpoint=http%3A%2F%2F127.0.0.1%3A9000",
            &env,
        )
        .unwrap();
        assert_eq!(loc.service, Service::S3);
        assert_eq!(option(&loc, "bucket"), Some("backups"));
        assert_eq!(option(&loc, "root"), Some("/pg/main"));
        assert_eq!(option(&loc, "access_key_id"), Some("AKID"));
        assert_eq!(option(&loc, "region"), Some("eu-west-1"));
        assert_eq!(option(&loc, "endpoint"), Some("http://127.0.0.1:9000"));
        assert_eq!(
            loc.display, "s3://backups/pg/main",
            "the query is not shown"
        );
    }

    #[test]
    fn the_service_specific_endpoint_variable_wins() {
        let env = [
            ("AWS_ENDPOINT_URL", "http://general"),
            ("AWS_ENDPOINT_URL_S3", "http://s3-only"),
        ];
        let loc = parse("s3://b", &env).unwrap();
        assert_eq!(option(&loc, "endpoint"), Some("http://s3-only"));
        assert_eq!(option(&loc, "root"), Some("/"));
    }

    #[test]
    fn config_file_options_yield_to_the_environment() {
        let config = BTreeMap::from([
            ("region".to_string(), "us-east-2".to_string()),
            ("access_key_id".to_string(), "from-config".to_string()),
        ]);
        let loc = Location::parse("s3://b/p", &config, &|var| {
            (var == "AWS_ACCESS_KEY_ID").then(|| "from-env".to_string())
        })
        .unwrap();
        assert_eq!(option(&loc, "access_key_id"), Some("from-env"));
        assert_eq!(option(&loc, "region"), Some("us-east-2"));
    }

    #[test]
    fn sftp_and_webdav_split_user_host_and_path() {
        let loc = parse(
            "sftp://backup@10.0.0.5:2222/srv/repo?key=/k/id&known_hosts=add",
            &[],
        )
        .unwrap();
        assert_eq!(option(&loc, "user"), Some("backup"));
        assert_eq!(option(&loc, "endpoint"), Some("ssh://10.0.0.5:2222"));
        assert_eq!(option(&loc, "root"), Some("/srv/repo"));
        assert_eq!(option(&loc, "key"), Some("/k/id"));
        assert_eq!(option(&loc, "known_hosts_strategy"), Some("add"));

        let loc = parse("webdav://dav.example.com/remote.php/dav/files/u/pg", &[]).unwrap();
        assert_eq!(option(&loc, "endpoint"), Some("https://dav.example.com"));
        assert_eq!(option(&loc, "root"), Some("/remote.php/dav/files/u/pg"));
        let loc = parse(
            "webdav+http://u@127.0.0.1:8080/repo",
            &[("PGCAIRN_WEBDAV_PASSWORD", "pw")],
        )
        .unwrap();
        assert_eq!(option(&loc, "endpoint"), Some("http://127.0.0.1:8080"));
        assert_eq!(option(&loc, "username"), Some("u"));
        assert_eq!(option(&loc, "password"), Some("pw"));
    }

    #[test]
    fn gcs_and_azblob_take_bucket_or_container() {
        let loc = parse(
            "gcs://bkt/a/b",
            &[("GOOGLE_APPLICATION_CREDENTIALS", "/c.json")],
        )
        .unwrap();
        assert_eq!(option(&loc, "bucket"), Some("bkt"));
        assert_eq!(option(&loc, "credential_path"), Some("/c.json"));
        let loc = parse("azblob://cont/x", &[("AZURE_STORAGE_ACCOUNT", "acct")]).unwrap();
        assert_eq!(option(&loc, "container"), Some("cont"));
        assert_eq!(option(&loc, "account_name"), Some("acct"));
    }

    #[test]
    fn mistakes_are_usage_errors_that_say_what_is_wrong() {
        use crate::error::ErrorKind;
        let cases = [
            ("gopher://x/y", "unknown scheme"),
            ("s3:///prefix", "no bucket"),
            (
                "s3://b/p?endpoint=http://x&colour=blue",
                "unknown option \"colour\"",
            ),
            ("sftp://u:hunter2@host/p", "do not put a password"),
            ("s3://b/p?region=%zz", "bad escape"),
            ("", "empty"),
        ];
        for (url, expected) in cases {
            let err = parse(url, &[]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage, "{url}");
            assert!(err.to_string().contains(expected), "{url}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{url}: {err}");
        }
    }
}
