//! Error kinds and exit codes, defined once. Every failure a user can meet maps to one kind,
//! and every kind to one documented exit code, so scripts can act on the code alone.

use std::fmt;

/// What went wrong, coarsely enough that a script can decide what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `archive-get`: the requested file is not in the repository (PostgreSQL then ends
    /// recovery normally).
    NotFound,
    /// Bad command-line usage or an invalid setting.
    Usage,
    /// No password was available, or none of the repository's keys opens with it.
    Password,
    /// There is no repository at the given location.
    NoRepository,
    /// `init` found something already at the location.
    RepositoryExists,
    /// The operation was refused to protect the repository (e.g. removing the last key).
    Refused,
    /// An object on storage failed authentication, hashing or decoding: damage or tampering.
    Integrity,
    /// The repository (or one of its objects) uses a format version this build cannot read.
    UnsupportedFormat,
    /// The storage backend failed: unreachable, permission denied, I/O error.
    Storage,
    /// A local file or the local index cache failed.
    Local,
    /// PostgreSQL: no connection, the server refused a query, or its settings (wal_level,
    /// privileges) do not allow a backup.
    Database,
    /// The cluster's data failed verification (bad page checksums with
    /// `--fail-on-checksum-error`).
    DataCorruption,
    /// `backup` wrote a snapshot whose WAL is not all in the repository yet: it restores once
    /// the archive receives the missing segments.
    WalMissing,
    /// `verify --restore-test`: the restored snapshot did not start, reach consistency, or
    /// pass its checks.
    RestoreTestFailed,
    /// Stopped by SIGINT or SIGTERM; nothing partial was left behind.
    Interrupted,
    /// A bug: an invariant of pgcairn itself did not hold.
    Internal,
}

impl ErrorKind {
    /// The process exit code for this kind. Documented in README.md ("Exit codes").
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::NotFound => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Password => 3,
            ErrorKind::NoRepository => 4,
            ErrorKind::RepositoryExists => 5,
            ErrorKind::Refused => 6,
            ErrorKind::Integrity => 10,
            ErrorKind::UnsupportedFormat => 11,
            ErrorKind::Storage => 12,
            ErrorKind::Local => 13,
            ErrorKind::Database => 14,
            ErrorKind::DataCorruption => 15,
            ErrorKind::WalMissing => 16,
            ErrorKind::RestoreTestFailed => 17,
            ErrorKind::Interrupted => 130,
            ErrorKind::Internal => 70,
        }
    }
}

impl ErrorKind {
    /// The exit code for `archive-get`. PostgreSQL takes an exit code from 1 to 125 from
    /// restore_command for "no such file" and may end recovery there and promote; so every
    /// failure other than a positive "not found" exits above 125, which stops recovery.
    pub fn restore_command_exit_code(self) -> i32 {
        match self {
            ErrorKind::NotFound => 1,
            ErrorKind::Interrupted => 130,
            other => 150 + other.exit_code(),
        }
    }
}

/// An error with its kind and a chain of context, outermost first when displayed.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: Vec::new(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The innermost message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context.push(context.into());
        self
    }

    pub fn integrity(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Integrity, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    pub fn local(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Local, message)
    }

    pub fn database(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Database, message)
    }

    /// For `map_err`: a local I/O error while `doing` (e.g. "reading") `path`.
    pub fn io_at<'a>(
        doing: &'static str,
        path: &'a std::path::Path,
    ) -> impl Fn(std::io::Error) -> Error + 'a {
        move |e| Error::local_io(e, format!("{doing} {}", path.display()))
    }

    /// A local I/O error on `path`.
    pub fn local_io(err: std::io::Error, what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Local, format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for context in self.context.iter().rev() {
            write!(f, "{context}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Adds context to any error that converts into [`Error`].
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().with_context(context))
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().with_context(context()))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Error::new(ErrorKind::Local, format!("index cache: {err}"))
    }
}

impl From<postgres::Error> for Error {
    fn from(err: postgres::Error) -> Self {
        // The server's own message (with its SQLSTATE) says more than the client wrapper.
        let message = match err.as_db_error() {
            Some(db) => format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            ),
            None => err.to_string(),
        };
        Error::new(ErrorKind::Database, message)
    }
}

impl From<opendal::Error> for Error {
    fn from(err: opendal::Error) -> Self {
        Error::new(ErrorKind::Storage, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_shown_outermost_first() {
        let err: Result<()> = Err(Error::integrity("tag mismatch"));
        let err = err.context("blob 1234").context("pack abcd").unwrap_err();
        assert_eq!(err.to_string(), "pack abcd: blob 1234: tag mismatch");
        assert_eq!(err.kind().exit_code(), 10);
    }

    #[test]
    fn exit_codes_are_distinct() {
        use ErrorKind::*;
        let kinds = [
            NotFound,
            Usage,
            Password,
            NoRepository,
            RepositoryExists,
            Refused,
            Integrity,
            UnsupportedFormat,
            Storage,
            Local,
            Database,
            DataCorruption,
            WalMissing,
            RestoreTestFailed,
            Interrupted,
            Internal,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&0));
    }
}
