//! Builds the OpenDAL operator for a [`Location`], wrapped in the layers every remote
//! repository needs: a timeout on each attempt, retries with jittered backoff, a bound on
//! requests in flight, and tracing.
//!
//! Layer order matters, and OpenDAL applies the last one added outermost. A call goes
//! tracing → retry → concurrency limit → timeout → service: each attempt gets its own
//! timeout (so a stalled attempt is retried rather than failing the operation), waiting for
//! a permit does not count against it, and a retry's backoff does not hold a permit.

use std::collections::BTreeMap;
use std::time::Duration;

use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer, TracingLayer};
use opendal::{Operator, services};

use super::location::{Location, Service};
use super::storage_error;
use crate::error::{Error, Result};

/// How patient pgcairn is with a remote backend; `[storage]` keys of the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Limit for one attempt of an operation without a body (stat, list page, delete).
    pub timeout: Duration,
    /// Limit for one read or write call of a transfer: an upload of one pack must fit.
    pub io_timeout: Duration,
    /// Attempts after the first, for errors the backend marks temporary.
    pub retries: usize,
    /// Requests in flight at once, across all threads of the command.
    pub connections: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            timeout: Duration::from_secs(60),
            // 8 MiB packs over a 1 Mbit/s uplink take about a minute.
            io_timeout: Duration::from_secs(180),
            // With backoff from 0.5 s doubling to at most 16 s, six retries wait about 30 s
            // in all: long enough to ride out a restarting server, short enough that
            // archive-push reports a dead one before PostgreSQL's own retry.
            retries: 6,
            connections: 16,
        }
    }
}

impl Tuning {
    /// pgcairn's own `[storage]` keys, for any remote backend.
    pub const KEYS: [&'static str; 4] = ["timeout", "io_timeout", "retries", "connections"];

    /// Takes pgcairn's own keys (`timeout`, `io_timeout`, `retries`, `connections`) out of a
    /// `[storage]` table, leaving the backend's options.
    pub fn take_from(options: &mut BTreeMap<String, String>) -> Result<Tuning> {
        let mut tuning = Tuning::default();
        if let Some(text) = options.remove("timeout") {
            tuning.timeout = seconds("timeout", &text)?;
        }
        if let Some(text) = options.remove("io_timeout") {
            tuning.io_timeout = seconds("io_timeout", &text)?;
        }
        if let Some(text) = options.remove("retries") {
            tuning.retries = count("retries", &text, 0)?;
        }
        if let Some(text) = options.remove("connections") {
            tuning.connections = count("connections", &text, 1)?;
        }
        Ok(tuning)
    }
}

fn count(key: &str, text: &str, min: usize) -> Result<usize> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            Error::usage(format!(
                "[storage] {key} = {text:?}: expected a whole number ≥ {min}"
            ))
        })
}

fn seconds(key: &str, text: &str) -> Result<Duration> {
    text.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| Error::usage(format!("[storage] {key} = {text:?}: expected seconds, > 0")))
}

/// The bare service a remote location names, before layers.
pub fn service(location: &Location) -> Result<Operator> {
    // The HTTP client OpenDAL's HTTP services share; installing it twice keeps the first.
    opendal::install_default();
    let options = location.options.clone();
    let built = match location.service {
        Service::S3 => Operator::from_iter::<services::S3>(s3_defaults(options)),
        Service::Sftp => {
            check_key_file(&options)?;
            Operator::from_iter::<services::Sftp>(options)
        }
        Service::Webdav => Operator::from_iter::<services::Webdav>(options),
        Service::Gcs => Operator::from_iter::<services::Gcs>(options),
        Service::Azblob => Operator::from_iter::<services::Azblob>(azblob_defaults(options)),
        Service::Local | Service::Memory => {
            return Err(Error::internal("connect::service is for remote backends"));
        }
    };
    built.map_err(|e| storage_error(e, "configuring", &location.display))
}

/// ssh only warns about an identity file it cannot read, then fails with "Permission denied
/// (publickey)", which hides the mistake: a key file that cannot be opened is said so first.
fn check_key_file(options: &BTreeMap<String, String>) -> Result<()> {
    match options.get("key") {
        Some(key) => std::fs::File::open(key)
            .map(drop)
            .map_err(|e| Error::usage(format!("SFTP key file {key}: {e}"))),
        None => Ok(()),
    }
}

fn s3_defaults(mut options: BTreeMap<String, String>) -> BTreeMap<String, String> {
    // S3-compatible servers (MinIO, Ceph, s3s) take any region but the signature needs one;
    // AWS itself redirects a wrong one with a clear error.
    options
        .entry("region".into())
        .or_insert_with(|| "us-east-1".into());
    options
}

fn azblob_defaults(mut options: BTreeMap<String, String>) -> BTreeMap<String, String> {
    if !options.contains_key("endpoint")
        && let Some(account) = options.get("account_name")
    {
        let endpoint = format!("https://{account}.blob.core.windows.net");
        options.insert("endpoint".into(), endpoint);
    }
    options
}

/// Wraps an operator in the layers described in the module comment.
pub fn with_layers(op: Operator, tuning: &Tuning) -> Operator {
    op.layer(
        TimeoutLayer::new()
            .with_timeout(tuning.timeout)
            .with_io_timeout(tuning.io_timeout),
    )
    .layer(ConcurrentLimitLayer::new(tuning.connections))
    .layer(
        RetryLayer::new()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(16))
            .with_max_times(tuning.retries)
            .with_notify(ReportRetry),
    )
    .layer(TracingLayer::new())
}

/// Says on stderr (through tracing, at warning level) that an operation is being retried:
/// a flaky link shows in PostgreSQL's log before it becomes a failed archive_command.
struct ReportRetry;

impl opendal::layers::RetryInterceptor for ReportRetry {
    fn intercept(&self, event: opendal::layers::RetryEvent<'_>) {
        tracing::warn!(
            "storage: {} failed (attempt {}), retrying in {:.1} s: {}",
            event.op,
            event.attempt,
            event.retry_after.as_secs_f64(),
            super::errors::explain(event.err)
        );
        tracing::debug!("storage: {} failed: {}", event.op, event.err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_keys_are_taken_out_and_checked() {
        let mut options = BTreeMap::from([
            ("retries".to_string(), "2".to_string()),
            ("timeout".to_string(), "5".to_string()),
            ("endpoint".to_string(), "http://x".to_string()),
        ]);
        let tuning = Tuning::take_from(&mut options).unwrap();
        assert_eq!(tuning.retries, 2);
        assert_eq!(tuning.timeout, Duration::from_secs(5));
        assert_eq!(tuning.connections, Tuning::default().connections);
        assert_eq!(options.len(), 1, "backend options stay");

        let mut every = Tuning::KEYS
            .map(|k| (k.to_string(), "1".to_string()))
            .into();
        Tuning::take_from(&mut every).unwrap();
        assert_eq!(
            every,
            BTreeMap::new(),
            "Tuning::KEYS are the keys take_from takes"
        );

        for (key, value) in [("connections", "0"), ("timeout", "soon"), ("retries", "-1")] {
            let mut options = BTreeMap::from([(key.to_string(), value.to_string())]);
            let err = Tuning::take_from(&mut options).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn an_sftp_key_that_cannot_be_read_is_a_usage_error_naming_it() {
        let url = "sftp://u@127.0.0.1:1/srv/repo?key=/nonexistent/id_ed25519";
        let location = Location::parse(url, &BTreeMap::new(), &|_| None).unwrap();
        let err = service(&location).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Usage);
        assert!(err.to_string().contains("/nonexistent/id_ed25519"), "{err}");
    }
}
