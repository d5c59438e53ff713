//! `pgcairn init`: create a repository.

use clap::Args;

use super::{GlobalOptions, password};
use crate::chunk::{ChunkSizes, ChunkerParams};
use crate::error::{Context, Error, Result};
use crate::repo::random::RandomSource;
use crate::repo::{ChunkKeys, InitOptions, Repository};
use crate::storage::Storage;

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  # A local repository, password from a file readable only by you:
  pgcairn init --repo /backup/pgcairn --password-file ~/.pgcairn-pass

  # Repository and password file named in a config file:
  pgcairn --config /etc/pgcairn.toml init

  # An offsite copy target that cuts and names chunks as the local repository does:
  pgcairn init --repo /mnt/offsite/pgcairn --password-file ~/.pgcairn-offsite \
      --copy-chunker-params-from /backup/pgcairn --from-password-file ~/.pgcairn-pass

--copy-chunker-params-from takes another repository's chunker parameters and its chunk-id and
chunker keys (not its data key or password): `pgcairn copy` between the two then needs no id
translation and reads no chunk the target has, and backups into either deduplicate against
copies. The price: whoever holds either repository's password can tell which chunks the two
share, so the target's storage is no longer independent of the source's (see SECURITY.md).

`--json` prints the repository's id, first key, settings and the storage guarantees the
probe found (docs/json.md), e.g. `pgcairn init --json | jq .storage.conditional_create_works`.

The location must be empty or not exist. Keep the password safe: without it (or another key
added with `pgcairn key add`) the backups cannot be read by anyone, including you.")]
pub struct InitArgs {
    /// zstd level for new data (1-19; 0 stores uncompressed).
    #[arg(long, default_value_t = crate::repo::DEFAULT_COMPRESSION_LEVEL, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compression_level: i32,

    /// Target pack file size, e.g. 16M (larger packs mean fewer objects on storage and more
    /// memory while backing up).
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    pub pack_size: u32,

    /// Chunk sizes for relation files as MIN,AVG,MAX, multiples of 8K (fixed for the
    /// repository's life).
    #[arg(long, value_name = "MIN,AVG,MAX", value_parser = parse_sizes)]
    pub relation_chunks: Option<ChunkSizes>,

    /// Chunk sizes for WAL files as MIN,AVG,MAX.
    #[arg(long, value_name = "MIN,AVG,MAX", value_parser = parse_sizes)]
    pub wal_chunks: Option<ChunkSizes>,

    /// Chunk sizes for other files as MIN,AVG,MAX.
    #[arg(long, value_name = "MIN,AVG,MAX", value_parser = parse_sizes)]
    pub other_chunks: Option<ChunkSizes>,

    /// Share the chunker parameters and the chunk-id and chunker keys of the repository at URL
    /// (not its data key or password), so that `copy` from it needs no id translation.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with_all = ["relation_chunks", "wal_chunks", "other_chunks"]
    )]
    pub copy_chunker_params_from: Option<String>,

    /// The password of the --copy-chunker-params-from repository, from the first line of this
    /// file (else PGCAIRN_FROM_PASSWORD, else a prompt).
    #[arg(
        long,
        env = "PGCAIRN_FROM_PASSWORD_FILE",
        value_name = "PATH",
        requires = "copy_chunker_params_from"
    )]
    pub from_password_file: Option<std::path::PathBuf>,

    /// Print the new repository (id, first key, settings, the storage guarantees found) as
    /// one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// The repository whose chunker parameters and keys `init` shares: its chunker parameters
/// and chunk keys.
fn shared_chunking(args: &InitArgs, url: &str) -> Result<(ChunkerParams, ChunkKeys)> {
    let context = || format!("--copy-chunker-params-from {url}");
    let storage = Storage::open(url).with_context(context)?;
    let password = password::Source {
        file: args.from_password_file.as_deref(),
        env: "PGCAIRN_FROM_PASSWORD",
        prompt: "password of the repository to copy chunker parameters from",
        options: "--from-password-file, PGCAIRN_FROM_PASSWORD_FILE or PGCAIRN_FROM_PASSWORD",
    }
    .read()
    .with_context(context)?;
    let from = Repository::open(storage, &password).with_context(context)?;
    Ok((from.config().chunker, from.chunk_keys()))
}

/// Parses `8K`, `16M`, `4096`.
pub fn parse_size(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size"))?;
    let unit: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        _ => return Err(format!("{text:?}: unknown unit (use K or M)")),
    };
    u32::try_from(value * unit).map_err(|_| format!("{text:?} is too large"))
}

/// Parses `MIN,AVG,MAX`, e.g. `8K,16K,64K`.
pub fn parse_sizes(text: &str) -> Result<ChunkSizes, String> {
    let parts: Vec<u32> = text.split(',').map(parse_size).collect::<Result<_, _>>()?;
    match parts[..] {
        [min, avg, max] => Ok(ChunkSizes { min, avg, max }),
        _ => Err(format!("{text:?}: expected MIN,AVG,MAX")),
    }
}

pub fn run(global: &GlobalOptions, args: &InitArgs) -> Result<()> {
    let storage = global.storage()?;
    let defaults = ChunkerParams::default();
    let (chunker, chunk_keys) = match &args.copy_chunker_params_from {
        Some(url) => {
            let (chunker, keys) = shared_chunking(args, url)?;
            (chunker, Some(keys))
        }
        None => (
            ChunkerParams {
                relation: args.relation_chunks.unwrap_or(defaults.relation),
                wal: args.wal_chunks.unwrap_or(defaults.wal),
                other: args.other_chunks.unwrap_or(defaults.other),
            },
            None,
        ),
    };
    chunker.validate()?;
    if args.pack_size < 1 << 20 {
        return Err(Error::usage("--pack-size must be at least 1M"));
    }
    // Before the password prompt: bad credentials or a missing bucket fail at once.
    let guarantees = storage.probe()?;
    if !global.quiet && !args.json {
        println!("storage {}", guarantees);
    }
    if !guarantees.conditional_create_works {
        eprintln!(
            "pgcairn: note: this backend cannot refuse a second writer of the same WAL \
             file; two servers archiving the same cluster (a split brain) could replace \
             each other's WAL there. See docs/storage.md."
        );
    }
    let password = password::for_init(global.password_file.as_deref())?;
    let options = InitOptions {
        chunker,
        pack_size: args.pack_size,
        compression_level: args.compression_level,
        kdf: password::kdf_for_new_key()?,
        chunk_keys,
    };
    let repo = Repository::init(storage, &password, &options, RandomSource::System)?;
    if args.json {
        let config = repo.config();
        let value = serde_json::json!({
            "repository": repo.storage().location(),
            "id": config.id.to_hex(),
            "format_version": config.version,
            "key": repo.key_in_use().to_hex(),
            "compression_level": config.compression_level,
            "pack_size": config.pack_size,
            "chunker": config.chunker,
            "chunker_shared": args.copy_chunker_params_from.is_some(),
            "storage": {
                "service": guarantees.service.id(),
                "publishes_whole": guarantees.service.publishes_whole(),
                "create_new": guarantees.create_new.id(),
                "conditional_create_works": guarantees.conditional_create_works,
            },
        });
        println!("{value}");
    } else if !global.quiet {
        println!(
            "created pgcairn repository {} at {}",
            repo.config().id.short(),
            repo.storage().location()
        );
        println!("first key: {}", repo.key_in_use().short());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8K"), Ok(8192));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1G").is_err());
        assert!(parse_size("x").is_err());
        assert_eq!(
            parse_sizes("8K,16K,64K"),
            Ok(ChunkSizes {
                min: 8192,
                avg: 16384,
                max: 65536
            })
        );
        assert!(parse_sizes("8K,16K").is_err());
    }
}
