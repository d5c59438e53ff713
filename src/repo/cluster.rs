//! Clusters in one repository: the names snapshots carry (format-spec §9) and how commands
//! select a cluster by name or system identifier.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use super::snapshot::PostgresBackup;
use crate::error::{Error, Result};

const MAX_NAME_CHARS: usize = 64;

/// A system identifier in reports: shown in decimal, and serialised as a JSON string because
/// it exceeds the integers JSON readers such as jq keep exact (2^53).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemId(pub u64);

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for SystemId {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why `name` cannot be stored as a cluster name, if it cannot.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some("it is longer than 64 characters")
    } else if name.chars().any(char::is_control) {
        Some("it holds a control character")
    } else if name.bytes().all(|b| b.is_ascii_digit()) {
        Some("it is all digits, so it would read as a system identifier")
    } else {
        None
    }
}

/// The name a backup records: `given` (`backup --cluster`), which must be valid, else the
/// server's `cluster_name` setting when it is a valid name, else none.
pub fn name_for_backup(given: Option<&str>, server_setting: &str) -> Result<Option<String>> {
    if let Some(name) = given {
        if let Some(problem) = name_problem(name) {
            return Err(Error::usage(format!(
                "--cluster {name:?} cannot name a cluster: {problem}"
            )));
        }
        return Ok(Some(name.to_owned()));
    }
    Ok(name_problem(server_setting)
        .is_none()
        .then(|| server_setting.to_owned()))
}

/// `--cluster NAME|SYSTEM_ID`: the snapshots whose cluster carries that name or has that
/// system identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSelector(String);

impl FromStr for ClusterSelector {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        if text.is_empty() {
            return Err("a cluster name or system identifier is needed".into());
        }
        Ok(ClusterSelector(text.to_owned()))
    }
}

impl fmt::Display for ClusterSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ClusterSelector {
    pub fn matches(&self, pg: &PostgresBackup) -> bool {
        pg.cluster_name.as_deref() == Some(self.0.as_str())
            || self.matches_system_id(pg.system_identifier)
    }

    /// Whether the selector is this system identifier: all a cluster that only archived WAL
    /// (no snapshot, so no name) can be selected by.
    pub fn matches_system_id(&self, system_identifier: u64) -> bool {
        self.0.parse::<u64>() == Ok(system_identifier)
    }

    /// The system identifiers the selector names among the clusters of `backups`: every
    /// cluster that carried the name, or the one with that identifier. None is an error that
    /// lists the clusters there are.
    pub fn system_ids<'a>(
        &self,
        backups: impl IntoIterator<Item = &'a PostgresBackup>,
    ) -> Result<BTreeSet<u64>> {
        let known = Clusters::of(backups);
        let matching: BTreeSet<u64> = known
            .names
            .iter()
            .filter(|(id, names)| {
                self.matches_system_id(**id) || names.iter().any(|n| n.as_str() == self.0)
            })
            .map(|(id, _)| *id)
            .collect();
        if matching.is_empty() {
            return Err(Error::usage(format!(
                "the repository has no snapshot of a cluster named or identified {:?} (it has {})",
                self.0,
                known.describe()
            )));
        }
        Ok(matching)
    }

    /// The one system identifier the selector names among the clusters of `backups`. A name
    /// carried by several clusters (one re-created or upgraded) is refused: their WAL differ,
    /// and picking one would be a guess.
    pub fn resolve<'a>(
        &self,
        backups: impl IntoIterator<Item = &'a PostgresBackup>,
    ) -> Result<u64> {
        let matching: Vec<u64> = self.system_ids(backups)?.into_iter().collect();
        match matching.as_slice() {
            [only] => Ok(*only),
            many => Err(Error::usage(format!(
                "{:?} names {} clusters ({}): give the system identifier of the one you mean",
                self.0,
                many.len(),
                many.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// The clusters snapshots belong to, with the names each was backed up under.
#[derive(Debug, Default)]
pub struct Clusters {
    pub names: BTreeMap<u64, Vec<String>>,
}

impl Clusters {
    pub fn of<'a>(backups: impl IntoIterator<Item = &'a PostgresBackup>) -> Clusters {
        let mut names: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for pg in backups {
            let entry = names.entry(pg.system_identifier).or_default();
            if let Some(name) = &pg.cluster_name
                && !entry.contains(name)
            {
                entry.push(name.clone());
            }
        }
        Clusters { names }
    }

    /// "main (7301234567890123456), 7309876543210987654" or "none".
    pub fn describe(&self) -> String {
        if self.names.is_empty() {
            return "none".into();
        }
        self.names
            .iter()
            .map(|(id, names)| match names.as_slice() {
                [] => id.to_string(),
                names => format!("{} ({id})", names.join(", ")),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(system_identifier: u64, name: Option<&str>) -> PostgresBackup {
        let (_, snapshot) = crate::archive::window::tests::snapshot(1, 1, 1, 1, 100);
        let mut pg = snapshot.postgres.unwrap();
        pg.system_identifier = system_identifier;
        pg.cluster_name = name.map(str::to_owned);
        pg
    }

    fn select(text: &str) -> ClusterSelector {
        text.parse().unwrap()
    }

    #[test]
    fn names_that_could_be_mistaken_or_garble_a_terminal_are_refused() {
        assert!(name_problem("main").is_none());
        assert!(name_problem("15/main").is_none());
        assert!(name_problem("").is_some());
        assert!(name_problem("7301234567890123456").is_some());
        assert!(name_problem("a\u{1b}[2J").is_some());
        assert!(name_problem(&"x".repeat(65)).is_some());
        assert!(name_problem(&"é".repeat(64)).is_none());
    }

    #[test]
    fn a_backup_is_named_by_the_option_else_by_a_usable_server_setting() {
        assert_eq!(
            name_for_backup(Some("sales"), "15/main").unwrap(),
            Some("sales".into())
        );
        assert_eq!(
            name_for_backup(None, "15/main").unwrap(),
            Some("15/main".into())
        );
        assert_eq!(name_for_backup(None, "").unwrap(), None);
        assert_eq!(name_for_backup(None, "42").unwrap(), None);
        assert!(name_for_backup(Some("42"), "").is_err());
    }

    #[test]
    fn selects_by_name_or_system_identifier() {
        let backups = [backup(1, Some("a")), backup(2, Some("b")), backup(3, None)];
        assert_eq!(select("a").resolve(&backups).unwrap(), 1);
        assert_eq!(select("2").resolve(&backups).unwrap(), 2);
        assert_eq!(select("3").resolve(&backups).unwrap(), 3);
        assert!(select("a").matches(&backups[0]));
        assert!(!select("a").matches(&backups[1]));
        let err = select("c").resolve(&backups).unwrap_err().to_string();
        assert!(err.contains("a (1), b (2), 3"), "{err}");
    }

    #[test]
    fn a_name_carried_by_two_clusters_lists_both_but_restores_neither() {
        let backups = [backup(1, Some("main")), backup(2, Some("main"))];
        assert_eq!(
            select("main").system_ids(&backups).unwrap(),
            BTreeSet::from([1, 2])
        );
        let err = select("main").resolve(&backups).unwrap_err().to_string();
        assert!(err.contains("1, 2"), "{err}");
        assert_eq!(select("2").resolve(&backups).unwrap(), 2);
    }

    #[test]
    fn a_renamed_cluster_answers_to_every_name_it_had() {
        let backups = [backup(1, Some("old")), backup(1, Some("new"))];
        assert_eq!(select("old").resolve(&backups).unwrap(), 1);
        assert_eq!(select("new").resolve(&backups).unwrap(), 1);
        assert_eq!(Clusters::of(&backups).describe(), "old, new (1)");
    }
}
