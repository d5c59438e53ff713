//! Where an archive_command sends WAL: the repository a pgcairn archive-push in it names,
//! compared with ours.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::GlobalOptions;

use crate::pg::archive_command::{self, Invocation};
use crate::storage::Location;

/// Where an archive_command sends WAL, as far as it says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Destination {
    /// `pgcairn ... archive-push` into this repository; `how` says which setting named it.
    Here { how: String },
    /// `pgcairn ... archive-push` into another repository.
    Elsewhere { repo: String, how: String },
    /// `pgcairn ... archive-push`, into a repository that cannot be told from here.
    Unknown { why: String },
    /// pgcairn runs, but not archive-push.
    NotArchivePush,
    /// pgcairn runs in a way this does not follow (a wrapper script, shell variables).
    Opaque,
    /// Nothing in it runs pgcairn.
    NotPgcairn,
}

/// Where `command` archives, compared with this repository `ours`; `server_dir` is where the
/// server runs it (relative paths in it start there).
pub(super) fn destination(command: &str, ours: &str, server_dir: Option<&Path>) -> Destination {
    let Some(commands) = archive_command::simple_commands(command) else {
        return if command.contains("pgcairn") {
            Destination::Opaque
        } else {
            Destination::NotPgcairn
        };
    };
    let Some(invocation) = archive_command::invocation_of(&commands, "pgcairn") else {
        let wrapper = commands.iter().any(|c| {
            c.words
                .first()
                .is_some_and(|program| script_mentions_pgcairn(program, server_dir))
        });
        return if wrapper || command.contains("pgcairn") {
            Destination::Opaque
        } else {
            Destination::NotPgcairn
        };
    };
    if !invocation.args.iter().any(|a| a == "archive-push") {
        return Destination::NotArchivePush;
    }
    let (repo, how) = match named_repository(&invocation, server_dir) {
        Ok(named) => named,
        Err(why) => return Destination::Unknown { why },
    };
    match same_repository(&repo, server_dir, ours) {
        Some(true) => Destination::Here { how },
        Some(false) => Destination::Elsewhere { repo, how },
        None => Destination::Unknown {
            why: format!(
                "its repository {repo} is relative to the data directory, which the role may \
                 not read (give --pgdata)"
            ),
        },
    }
}

/// Whether `program` is a script (readable here) that mentions pgcairn: a wrapper.
fn script_mentions_pgcairn(program: &str, server_dir: Option<&Path>) -> bool {
    use std::io::Read;
    let path = Path::new(program);
    let path = match (program.contains('/'), path.is_relative(), server_dir) {
        (false, ..) => return false,
        (true, false, _) => path.to_path_buf(),
        (true, true, Some(dir)) => dir.join(path),
        (true, true, None) => return false,
    };
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(64 << 10).read_to_end(&mut head))
        .is_ok_and(|_| head.windows(7).any(|w| w == b"pgcairn"))
}

/// The repository a pgcairn invocation names, and by which setting, as pgcairn would resolve
/// it: `--repo`, else `PGCAIRN_REPO`, else `repo` of the config file (`--config`, else
/// `PGCAIRN_CONFIG`). Err says why it cannot be told.
fn named_repository(
    invocation: &Invocation,
    server_dir: Option<&Path>,
) -> std::result::Result<(String, String), String> {
    let option = |name: &str| {
        let mut args = invocation.args.iter();
        let prefix = format!("{name}=");
        while let Some(arg) = args.next() {
            if arg == name {
                return args.next().cloned();
            }
            if let Some(value) = arg.strip_prefix(&prefix) {
                return Some(value.to_string());
            }
        }
        None
    };
    if let Some(repo) = option("--repo") {
        return Ok((repo, "--repo".into()));
    }
    if let Some(repo) = invocation.env_var("PGCAIRN_REPO") {
        return Ok((repo.to_string(), "PGCAIRN_REPO".into()));
    }
    let config =
        option("--config").or_else(|| invocation.env_var("PGCAIRN_CONFIG").map(String::from));
    let Some(config) = config else {
        return Err(
            "its repository comes from the server's environment (PGCAIRN_REPO or \
             PGCAIRN_CONFIG), which check cannot see"
                .into(),
        );
    };
    let path = Path::new(&config);
    let path = match (path.is_relative(), server_dir) {
        (false, _) => path.to_path_buf(),
        (true, Some(dir)) => dir.join(path),
        (true, None) => {
            return Err(format!(
                "its config file {config} is relative to the data directory, which the role may \
                 not read (give --pgdata)"
            ));
        }
    };
    let options = GlobalOptions {
        config: Some(path.clone()),
        ..GlobalOptions::default()
    }
    .resolve()
    .map_err(|e| format!("its config file cannot be read here ({e})"))?;
    let repo = options
        .repo
        .ok_or_else(|| format!("its config file {} has no repo", path.display()))?;
    Ok((repo, format!("repo in {}", path.display())))
}

/// Whether repository URLs `theirs` (relative paths from `base`) and `ours` (relative paths
/// from here) are the same repository; None when `theirs` is relative and `base` unknown.
fn same_repository(theirs: &str, base: Option<&Path>, ours: &str) -> Option<bool> {
    let parse = |url: &str| Location::parse(url, &BTreeMap::new(), &|_| None).ok();
    let (Some(a), Some(b)) = (parse(theirs), parse(ours)) else {
        return Some(theirs == ours);
    };
    let canonical = |path: &Path| {
        std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    Some(match (a.path.as_deref(), b.path.as_deref()) {
        (Some(theirs), Some(ours)) => {
            let theirs = if theirs.is_relative() {
                base?.join(theirs)
            } else {
                theirs.to_path_buf()
            };
            canonical(&theirs) == canonical(ours)
        }
        (None, None) => {
            a.service == b.service
                && a.display.trim_end_matches('/') == b.display.trim_end_matches('/')
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_of_an_archive_command() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let ours = repo.to_str().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let here = |how: &str| Destination::Here { how: how.into() };
        let cases = [
            (
                format!("/usr/bin/pgcairn --repo {ours} archive-push %p"),
                here("--repo"),
            ),
            (
                format!("pgcairn archive-push --repo={ours}/ %p"),
                here("--repo"),
            ),
            (
                format!("PGCAIRN_REPO={ours} exec pgcairn archive-push %p"),
                here("PGCAIRN_REPO"),
            ),
            // Relative to the data directory the server runs it from.
            (
                "pgcairn --repo ../repo archive-push %p".into(),
                here("--repo"),
            ),
            (
                "pgcairn --repo /elsewhere archive-push %p".into(),
                Destination::Elsewhere {
                    repo: "/elsewhere".into(),
                    how: "--repo".into(),
                },
            ),
            (
                format!("pgcairn --repo {ours} archive-get %f %p"),
                Destination::NotArchivePush,
            ),
            ("cp %p /mnt/archive/%f".into(), Destination::NotPgcairn),
            ("".into(), Destination::NotPgcairn),
            (
                "sh -c 'pgcairn archive-push %p'".into(),
                Destination::Opaque,
            ),
            (
                "pgcairn --repo $R archive-push %p".into(),
                Destination::Opaque,
            ),
        ];
        for (command, expected) in cases {
            assert_eq!(
                destination(&command, ours, Some(&data)),
                expected,
                "{command}"
            );
        }
        assert!(matches!(
            destination("pgcairn archive-push %p", ours, Some(&data)),
            Destination::Unknown { .. }
        ));
        assert!(matches!(
            destination("pgcairn --repo ../repo archive-push %p", ours, None),
            Destination::Unknown { .. }
        ));

        // The config file the command names, relative to the data directory.
        std::fs::write(data.join("p.toml"), format!("repo = {ours:?}\n")).unwrap();
        assert_eq!(
            destination("pgcairn --config p.toml archive-push %p", ours, Some(&data)),
            Destination::Here {
                how: format!("repo in {}", data.join("p.toml").display())
            }
        );
        assert!(matches!(
            destination(
                "pgcairn --config nope.toml archive-push %p",
                ours,
                Some(&data)
            ),
            Destination::Unknown { .. }
        ));

        // A wrapper script that runs pgcairn.
        let script = dir.path().join("archive.sh");
        std::fs::write(&script, "#!/bin/sh\nexec pgcairn archive-push \"$1\"\n").unwrap();
        let command = format!("{} %p", script.display());
        assert_eq!(
            destination(&command, ours, Some(&data)),
            Destination::Opaque
        );
    }

    #[test]
    fn remote_repositories_compare_by_location() {
        assert_eq!(
            same_repository("s3://b/p?region=x", None, "s3://b/p/"),
            Some(true)
        );
        assert_eq!(same_repository("s3://b/p", None, "s3://b/q"), Some(false));
        assert_eq!(same_repository("s3://b/p", None, "/b/p"), Some(false));
        assert_eq!(same_repository("relative", None, "/x"), None);
    }
}
