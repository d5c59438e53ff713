//! Diagnostics through `tracing` (OpenDAL's requests and retries, at the levels `-v` asks
//! for), on stderr beside pgcairn's own messages. `PGCAIRN_LOG` takes a filter in
//! tracing-subscriber's syntax (`opendal=debug`, `debug`) and overrides the flags.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, quiet: bool) {
    let filter = match std::env::var("PGCAIRN_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(match (quiet, verbose) {
            (true, _) => "error",
            // Retries show by default: a flaky link should be visible in PostgreSQL's log
            // before it turns into failed archive_commands.
            (false, 0 | 1) => "warn",
            (false, 2) => "info,opendal=debug",
            (false, _) => "debug",
        }),
    };
    // A second initialisation (tests calling in-process) is harmless: keep the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}
