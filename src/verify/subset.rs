//! Which packs `verify --read-data` reads: all of them, a share that rotates so that repeated
//! runs cover everything, or one fixed part of a partition.
//!
//! Pack ids are hashes, so the first 8 bytes of an id, as a number, place each pack uniformly
//! on a ring of 2^64 positions. A share of p% reads the sector of the ring that starts where the
//! previous run stopped and spans p% of it, then moves the starting point past the sector: runs
//! of 10% read consecutive sectors, and ten of them cover the whole ring, so every pack that
//! existed throughout (and any added meanwhile in a sector not yet read). Sectors are rounded up,
//! so the runs never leave a sliver between them. Each run reads about p% of the packs; in a
//! repository of few packs the count varies from run to run, the coverage does not.
//!
//! WAL catalogue entries are objects named by hashes too, and are read again by the same sector.
//!
//! The starting point is kept per repository in the local cache directory, so it is per host:
//! two hosts verifying one repository each rotate on their own.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The ring has 2^64 positions; sectors are measured in u128 so that "all of it" is expressible.
const RING: u128 = 1 << 64;

/// What `--read-data[=SUBSET]` asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataSubset {
    /// Every pack.
    All,
    /// A share of the packs, in percent (0 < p < 100), continuing where the last run stopped.
    Rotating(f64),
    /// Part `n` (from 1) of `of` equal parts, the same packs every time (restic's `n/t`).
    Part { n: u64, of: u64 },
}

impl FromStr for DataSubset {
    type Err = Error;

    /// `N%`, `N.M%` or a bare number: a rotating share in percent (100 is everything);
    /// `n/t`: part n of t.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let usage = || {
            Error::usage(format!(
                "--read-data={s:?}: give a percentage (10%, 2.5% or 10) or a part n/t (1/7)"
            ))
        };
        if let Some((n, of)) = s.split_once('/') {
            let n: u64 = n.trim().parse().map_err(|_| usage())?;
            let of: u64 = of.trim().parse().map_err(|_| usage())?;
            if of == 0 || n == 0 || n > of {
                return Err(Error::usage(format!(
                    "--read-data={s}: part n/t needs 1 <= n <= t"
                )));
            }
            return Ok(if of == 1 {
                DataSubset::All
            } else {
                DataSubset::Part { n, of }
            });
        }
        let number = s.strip_suffix('%').unwrap_or(s).trim();
        let percent: f64 = number.parse().map_err(|_| usage())?;
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(Error::usage(format!(
                "--read-data={s}: the percentage must be above 0 and at most 100"
            )));
        }
        Ok(if percent >= 100.0 {
            DataSubset::All
        } else {
            DataSubset::Rotating(percent)
        })
    }
}

impl std::fmt::Display for DataSubset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSubset::All => f.write_str("all"),
            DataSubset::Rotating(p) => write!(f, "{p}%"),
            DataSubset::Part { n, of } => write!(f, "{n}/{of}"),
        }
    }
}

/// An sector of the ring: `len` positions from `start`, wrapping around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sector {
    pub start: u64,
    pub len: u128,
}

impl Sector {
    pub const WHOLE: Sector = Sector {
        start: 0,
        len: RING,
    };

    /// Whether the object with this id (a pack, or a WAL catalogue entry's name) lies on it.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        let offset = position(id).wrapping_sub(self.start);
        u128::from(offset) < self.len
    }

    /// Where the next sector starts.
    pub fn end(&self) -> u64 {
        // Truncation is the wrap-around: the ring is 2^64 long.
        (u128::from(self.start) + self.len) as u64
    }
}

/// A pack's place on the ring.
fn position(id: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id[..8]);
    u64::from_be_bytes(first)
}

/// The sector this run reads, from the position the previous run left (`start`).
pub fn sector(subset: DataSubset, start: u64) -> Sector {
    match subset {
        DataSubset::All => Sector::WHOLE,
        DataSubset::Rotating(percent) => {
            // In parts per 10^6 of a percent, rounded up: exact for any percentage written
            // with up to six decimals, and never short of the share asked for.
            let millionths = (percent * 1e6).ceil() as u128;
            let len = (RING * millionths).div_ceil(100_000_000).clamp(1, RING);
            Sector { start, len }
        }
        DataSubset::Part { n, of } => {
            let (n, of) = (u128::from(n), u128::from(of));
            let from = RING * (n - 1) / of;
            let to = RING * n / of;
            Sector {
                start: from as u64,
                len: to - from,
            }
        }
    }
}

/// Where the rotation of `--read-data=PERCENT` stands for one repository on this host.
pub struct Rotation {
    path: PathBuf,
}

impl Rotation {
    /// The rotation state in `repo_cache_dir`, the repository's directory of the local cache.
    pub fn new(repo_cache_dir: &Path) -> Rotation {
        Rotation {
            path: repo_cache_dir.join("verify-read-data"),
        }
    }

    /// Where the next run starts: where the last one stopped, or 0 the first time (or when
    /// the file is unreadable: the worst that costs is reading some packs sooner again).
    pub fn start(&self) -> u64 {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| {
                let value = text.lines().next()?.strip_prefix("next ")?;
                u64::from_str_radix(value.trim(), 16).ok()
            })
            .unwrap_or(0)
    }

    /// Records where the next run starts; atomically, so an interrupted write leaves the old
    /// position.
    pub fn save(&self, next: u64) -> Result<()> {
        let staged = self.path.with_extension("new");
        let text = format!(
            "next {next:016x}\n# where the next `pgcairn verify --read-data=PERCENT` on this host \
             starts reading packs\n"
        );
        std::fs::write(&staged, text).map_err(Error::io_at("writing", &staged))?;
        std::fs::rename(&staged, &self.path).map_err(Error::io_at("renaming", &staged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_at(position: u64) -> [u8; 32] {
        let mut id = [0x5a; 32];
        id[..8].copy_from_slice(&position.to_be_bytes());
        id
    }

    #[test]
    fn parses_percentages_and_parts() {
        let parse = |s: &str| s.parse::<DataSubset>();
        assert_eq!(parse("10%").unwrap(), DataSubset::Rotating(10.0));
        assert_eq!(parse("2.5%").unwrap(), DataSubset::Rotating(2.5));
        assert_eq!(parse("15").unwrap(), DataSubset::Rotating(15.0));
        assert_eq!(parse("100%").unwrap(), DataSubset::All);
        assert_eq!(parse("2/7").unwrap(), DataSubset::Part { n: 2, of: 7 });
        assert_eq!(parse("1/1").unwrap(), DataSubset::All);
        for bad in ["0", "0%", "101%", "-5", "abc", "3/2", "0/4", "1/0", "%", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotating_sectors_cover_the_ring_in_as_many_runs_as_the_share_says() {
        for (percent, runs) in [(10.0, 10), (50.0, 2), (33.3, 4), (2.5, 40), (12.5, 8)] {
            let mut start = 0xdead_beef_0000_0000;
            let first = start;
            let mut covered: u128 = 0;
            for _ in 0..runs {
                let a = sector(DataSubset::Rotating(percent), start);
                covered += a.len;
                start = a.end();
            }
            assert!(
                covered >= RING,
                "{percent}% in {runs} runs covers {covered}"
            );
            // The last sector passed the first start: every position was in some sector.
            let last = sector(DataSubset::Rotating(percent), first);
            assert!(last.contains(&id_at(first)));
        }
    }

    #[test]
    fn a_sector_wraps_around_the_end_of_the_ring() {
        let a = sector(DataSubset::Rotating(50.0), u64::MAX - 10);
        assert!(a.contains(&id_at(u64::MAX)));
        assert!(a.contains(&id_at(0)));
        assert!(a.contains(&id_at(1 << 62)));
        assert!(!a.contains(&id_at(u64::MAX - 11)));
        assert!(!a.contains(&id_at(3 << 62)));
        assert!(Sector::WHOLE.contains(&id_at(u64::MAX)));
    }

    #[test]
    fn parts_partition_the_ring() {
        for position in [0, 1, u64::MAX / 3, u64::MAX / 3 + 1, u64::MAX - 1, u64::MAX] {
            let id = id_at(position);
            let owners: Vec<u64> = (1..=3)
                .filter(|n| sector(DataSubset::Part { n: *n, of: 3 }, 0).contains(&id))
                .collect();
            assert_eq!(owners.len(), 1, "position {position:x}: {owners:?}");
        }
    }

    #[test]
    fn the_rotation_survives_between_runs_and_starts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation::new(dir.path());
        assert_eq!(rotation.start(), 0);
        rotation.save(0x1234_5678_9abc_def0).unwrap();
        assert_eq!(Rotation::new(dir.path()).start(), 0x1234_5678_9abc_def0);
        std::fs::write(dir.path().join("verify-read-data"), "garbage").unwrap();
        assert_eq!(rotation.start(), 0);
    }
}
