//! How numbers are shown to people: sizes in binary units, durations, rates.

use std::time::Duration;

/// `1.5 GiB`, `812 KiB`, `17 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `15.8` for a `server_version_num` of 150008.
pub fn pg_version(server_version_num: u32) -> String {
    format!(
        "{}.{}",
        server_version_num / 10000,
        server_version_num % 100
    )
}

/// `4.2 s`, `3 min 12 s`, `2 h 5 min`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{} min {} s", secs as u64 / 60, secs as u64 % 60)
    } else {
        format!("{} h {} min", secs as u64 / 3600, secs as u64 % 3600 / 60)
    }
}

/// Bytes per second as `MiB/s`.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!("{}/s", self::bytes((bytes as f64 / secs) as u64))
}

/// A cluster as people call it: "main (7301234567890123456)", or the system identifier alone
/// when the backup recorded no name.
pub fn cluster(pg: &crate::repo::snapshot::PostgresBackup) -> String {
    match &pg.cluster_name {
        Some(name) => format!("{name} ({})", pg.system_identifier),
        None => pg.system_identifier.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(17), "17 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(200 << 20), "200 MiB");
        assert_eq!(pg_version(150008), "15.8");
        assert_eq!(pg_version(180000), "18.0");
        assert_eq!(duration(Duration::from_millis(4200)), "4.2 s");
        assert_eq!(duration(Duration::from_secs(192)), "3 min 12 s");
    }
}
