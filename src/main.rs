//! Command-line parsing only: hands a typed command to the library.

use clap::{CommandFactory, Parser, Subcommand};

use pgcairn::cli::{self, GlobalOptions};

#[derive(Parser, Debug)]
#[command(
    name = "pgcairn",
    version,
    about = "Deduplicating, encrypted, incremental-forever backups of PostgreSQL",
    after_help = "\
Quick start:
  printf '%s\\n' 'a long passphrase' > ~/.pgcairn-pass && chmod 600 ~/.pgcairn-pass
  export PGCAIRN_REPO=/backup/pgcairn PGCAIRN_PASSWORD_FILE=~/.pgcairn-pass
  pgcairn init
  pgcairn key list

For scripts and monitoring, commands take --json: one JSON document on stdout, its shape
documented and kept stable (docs/json.md).

Exit codes: 0 success, 1 archive-get: not in the repository, 2 usage, 3 password,
4 no repository, 5 repository exists, 6 refused, 10 damaged or tampered data, 11 unsupported
format version, 12 storage error, 13 local error, 14 PostgreSQL (connection, settings,
privileges), 15 bad page checksums (backup --fail-on-checksum-error), 16 backup written but its WAL is
not all in the repository yet, 17 verify --restore-test: the restored snapshot did not start,
reach consistency or pass its checks, 70 internal error,
130 interrupted. archive-get adds 150 to every code but 1 and 130, so that the server stops
recovery on a failure instead of taking it for the end of the archive."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a repository (refuses if anything is already at the location).
    Init(cli::init::InitArgs),
    /// Back up a running cluster into a new snapshot.
    Backup(cli::backup::BackupArgs),
    /// List the snapshots.
    Snapshots(cli::snapshots::SnapshotsArgs),
    /// Summarise the repository: size, dedup and compression, clusters.
    Info(cli::info::InfoArgs),
    /// Write a self-contained HTML page with charts of the repository over time.
    Report(cli::report::ReportArgs),
    /// Write the repository's state as Prometheus metrics (node_exporter textfile collector).
    Metrics(cli::metrics::MetricsArgs),
    /// Rebuild a data directory from a snapshot and configure recovery.
    Restore(cli::restore::RestoreArgs),
    /// Copy snapshots and their WAL into another repository (an offsite copy), incrementally.
    Copy(cli::copy::CopyArgs),
    /// Archive a WAL file for the server's archive_command.
    ArchivePush(cli::archive_push::ArchivePushArgs),
    #[command(name = cli::archive_push::WORKER_COMMAND, hide = true)]
    ArchivePushWorker(cli::archive_push::WorkerArgs),
    /// Fetch a WAL file for the server's restore_command (exit 1: not in the repository).
    ArchiveGet(cli::archive_get::ArchiveGetArgs),
    /// Fill archive-get's prefetch queue (started by archive-get --prefetch).
    #[command(name = cli::archive_get::FILL_QUEUE_COMMAND, hide = true)]
    ArchiveGetFillQueue(cli::archive_get::FillQueueArgs),
    /// Check a running cluster's settings and privileges against the repository, then switch
    /// WAL and wait for the segment to arrive.
    Check(cli::check::CheckArgs),
    /// Forget snapshots outside a retention policy, expire WAL, reclaim space.
    Prune(cli::prune::PruneArgs),
    /// Check the repository: structure, references, WAL continuity; with --read-data, every
    /// byte; with --restore-test, restore a snapshot, start it and check it.
    Verify(cli::verify::VerifyArgs),
    /// Manage the passwords (key files) that unlock the repository.
    #[command(
        subcommand,
        after_help = "Example:\n  pgcairn key add --new-password-file ~/.pgcairn-ops\n\n\
                      Every key wraps the same master keys: adding or removing a password never \
                      re-encrypts data."
    )]
    Key(cli::key::KeyCommand),
    /// Rebuild derived data from what is on storage.
    #[command(
        subcommand,
        after_help = "Example:\n  pgcairn repair index --repo /backup/pgcairn"
    )]
    Repair(cli::repair::RepairCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cli::completions::CompletionsArgs),
    /// Write man pages for pgcairn and each of its commands into a directory.
    Man(cli::man::ManArgs),
}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|err| {
        // A restore_command with a typo must stop recovery, not look like the end of the
        // archive: archive-get's usage errors exit above 125 too.
        let for_recovery = std::env::args().any(|a| a == "archive-get") && err.use_stderr();
        if for_recovery {
            let _ = err.print();
            std::process::exit(pgcairn::ErrorKind::Usage.restore_command_exit_code());
        }
        err.exit()
    });
    cli::logging::init(cli.global.verbose, cli.global.quiet);
    let result = cli.global.resolve().and_then(|global| match &cli.command {
        Command::Init(args) => cli::init::run(&global, args),
        Command::Backup(args) => cli::backup::run(&global, args),
        Command::Restore(args) => cli::restore::run(&global, args),
        Command::Copy(args) => cli::copy::run(&global, args),
        Command::Snapshots(args) => cli::snapshots::run(&global, args),
        Command::Info(args) => cli::info::run(&global, args),
        Command::Report(args) => cli::report::run(&global, args),
        Command::Metrics(args) => cli::metrics::run(&global, args),
        Command::ArchivePush(args) => cli::archive_push::run(&global, args),
        Command::ArchivePushWorker(args) => cli::archive_push::run_worker(&global, args),
        Command::ArchiveGet(args) => cli::archive_get::run(&global, args),
        Command::ArchiveGetFillQueue(args) => cli::archive_get::run_fill_queue(&global, args),
        Command::Check(args) => cli::check::run(&global, args),
        Command::Prune(args) => cli::prune::run(&global, args),
        Command::Verify(args) => cli::verify::run(&global, args),
        Command::Key(command) => cli::key::run(&global, command),
        Command::Repair(command) => cli::repair::run(&global, command),
        Command::Completions(args) => cli::completions::run(Cli::command(), args),
        Command::Man(args) => cli::man::run(Cli::command(), args),
    });
    if let Err(err) = result {
        eprintln!("pgcairn: error: {err}");
        let code = match cli.command {
            Command::ArchiveGet(_) => err.kind().restore_command_exit_code(),
            _ => err.kind().exit_code(),
        };
        std::process::exit(code);
    }
}
