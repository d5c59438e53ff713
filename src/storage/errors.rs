//! Storage errors a DBA can act on: "access denied, check the credentials" rather than an
//! HTTP response dump. OpenDAL's whole error goes to the debug log (`-vvv`).

use opendal::ErrorKind as DalKind;

use crate::error::{Error, ErrorKind};

/// `doing` `what`: the reason, and what to check.
pub fn storage_error(err: opendal::Error, doing: &str, what: &str) -> Error {
    let kind = match err.kind() {
        DalKind::ConfigInvalid | DalKind::Unsupported => ErrorKind::Usage,
        _ => ErrorKind::Storage,
    };
    tracing::debug!("{doing} {what}: {err}");
    Error::new(kind, format!("{doing} {what}: {}", explain(&err)))
}

pub fn explain(err: &opendal::Error) -> String {
    // OpenDAL keeps the HTTP status only in the error's context, which it prints.
    let detail = err.to_string();
    let cause = root_cause(err);
    let status = ["401", "403"]
        .into_iter()
        .find(|code| detail.contains(&format!("status: {code}")));
    if err.kind() == DalKind::PermissionDenied || status.is_some() {
        // The cause tells an HTTP refusal from a file the local user may not write, where
        // credentials are beside the point.
        let why = match status {
            Some(code) => format!("HTTP {code}"),
            None => cause.clone(),
        };
        return format!(
            "access denied ({why}): check the credentials (environment or the config file's \
             [storage] table) and that they may use this bucket or path"
        );
    }
    if names_missing_container(err) {
        return "the bucket (or container) does not exist: create it first".into();
    }
    let lower = cause.to_lowercase();
    if lower.contains("connection refused") {
        return format!(
            "connection refused ({cause}): is the server running, and is the \
                        endpoint right?"
        );
    }
    if lower.contains("dns error") || lower.contains("failed to lookup") {
        return format!("cannot resolve the host name ({cause})");
    }
    if lower.contains("timed out") || err.message().contains("timeout") {
        return format!(
            "timed out ({cause}); the [storage] timeout and io_timeout settings \
                        set the limits"
        );
    }
    match err.kind() {
        DalKind::NotFound => "not found".into(),
        DalKind::Unsupported => format!("not supported by this backend ({})", err.message()),
        DalKind::RateLimited => format!("rate limited by the server ({})", err.message()),
        _ if cause != err.message() => format!("{}: {cause}", err.message()),
        _ => err.message().to_string(),
    }
}

/// The innermost error's text: for a network failure, the operating system's reason.
fn root_cause(err: &opendal::Error) -> String {
    let mut current: &dyn std::error::Error = err;
    while let Some(next) = current.source() {
        current = next;
    }
    if std::ptr::addr_eq(current, err as &dyn std::error::Error) {
        err.message().to_string()
    } else {
        current.to_string()
    }
}

/// Whether the error says the object (or directory) is not there: an answer, unlike a bucket
/// or container that is not there, which is a mistake to report.
pub fn is_absent(err: &opendal::Error) -> bool {
    err.kind() == DalKind::NotFound && !names_missing_container(err)
}

fn names_missing_container(err: &opendal::Error) -> bool {
    let detail = err.to_string();
    detail.contains("NoSuchBucket") || detail.contains("ContainerNotFound")
}
