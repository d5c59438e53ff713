//! The libpq password file (`~/.pgpass`, or `$PGPASSFILE`), read as libpq's
//! `passwordFromFile` does, so a DBA's existing password file works for pgcairn as for psql.
//!
//! Each line is `hostname:port:database:username:password`; `*` matches anything in the first
//! four fields, `\` escapes `:` and `\`, lines starting with `#` are comments, and the first
//! matching line wins. A Unix socket connection matches the host name `localhost`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The host name a socket directory (or no host at all) is looked up as.
const SOCKET_HOST: &str = "localhost";

/// What a connection is, for matching against the file.
pub struct Wanted<'a> {
    /// Host name, host address, or socket directory (starting with `/`).
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The password for `wanted` from the file at `path`, if the file exists, may be used, and has
/// a matching line. Like libpq, a file readable by group or others is ignored with a warning
/// on stderr, and an unreadable file is no password rather than an error.
pub fn read_password(path: &Path, wanted: &Wanted<'_>) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "pgcairn: warning: password file \"{}\" has group or world access; permissions \
             should be u=rw (0600) or less",
            path.display()
        );
        return None;
    }
    let content = fs::read_to_string(path).ok()?;
    lookup(&content, wanted)
}

/// The password of the first line of `content` that matches `wanted`.
pub fn lookup(content: &str, wanted: &Wanted<'_>) -> Option<String> {
    let host = if wanted.host.is_empty() || wanted.host.starts_with('/') {
        SOCKET_HOST
    } else {
        wanted.host
    };
    let port = wanted.port.to_string();
    let expected = [host, port.as_str(), wanted.dbname, wanted.user];
    content
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = split_fields(line);
            if fields.len() < 5 {
                return None;
            }
            let matches = expected
                .iter()
                .zip(&fields)
                .all(|(want, field)| field == "*" || field == want);
            // The password ends at the next unescaped colon, as in libpq.
            matches.then(|| fields[4].clone())
        })
}

/// Splits a line at unescaped `:`, removing the escapes.
fn split_fields(line: &str) -> Vec<String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted<'a>(host: &'a str, port: u16, dbname: &'a str, user: &'a str) -> Wanted<'a> {
        Wanted {
            host,
            port,
            dbname,
            user,
        }
    }

    const FILE: &str = "# comment:*:*:*:nope\n\
        db1:5432:sales:backup:first\n\
        db1:*:*:backup:second\n\
        localhost:5433:*:postgres:sock\\:et\n\
        *:*:*:esc\\\\aped:with:colons\n\
        short:line\n";

    #[test]
    fn first_matching_line_wins() {
        assert_eq!(
            lookup(FILE, &wanted("db1", 5432, "sales", "backup")).as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(FILE, &wanted("db1", 6000, "hr", "backup")).as_deref(),
            Some("second")
        );
        assert_eq!(lookup(FILE, &wanted("db2", 5432, "sales", "backup")), None);
        assert_eq!(lookup(FILE, &wanted("db1", 5432, "sales", "other")), None);
    }

    #[test]
    fn sockets_match_localhost_and_escapes_are_undone() {
        assert_eq!(
            lookup(FILE, &wanted("/tmp", 5433, "x", "postgres")).as_deref(),
            Some("sock:et")
        );
        assert_eq!(
            lookup(FILE, &wanted("", 5433, "x", "postgres")).as_deref(),
            Some("sock:et")
        );
        assert_eq!(lookup(FILE, &wanted("/tmp", 5432, "x", "postgres")), None);
        // An unescaped colon ends the password, as in libpq.
        assert_eq!(
            lookup(FILE, &wanted("h", 1, "d", "esc\\aped")).as_deref(),
            Some("with")
        );
        // Comments are never matched, even with wildcards.
        assert_eq!(lookup(FILE, &wanted("# comment", 1, "d", "u")), None);
    }

    #[test]
    fn files_open_to_others_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(&path, "*:*:*:*:secret\n").unwrap();
        let want = wanted("h", 1, "d", "u");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&path, &want).as_deref(), Some("secret"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_password(&path, &want), None);
        assert_eq!(read_password(&dir.path().join("missing"), &want), None);
        assert_eq!(read_password(dir.path(), &want), None);
    }
}
