//! Which snapshots a retention policy keeps: restic's `forget` rules, applied to one
//! cluster's snapshots at a time. Pure: snapshots, a time zone and the current time in,
//! one decision per snapshot out.
//!
//! The rules, ORed (a snapshot is kept if any rule keeps it):
//! - `last N`: the N newest snapshots.
//! - `hourly`, `daily`, `weekly`, `monthly`, `yearly N`: going from the newest snapshot to
//!   the oldest, the first (newest) snapshot of each local calendar period (hour, day, ISO
//!   week from Monday, month, year) is kept, for the N newest periods that have a snapshot.
//!   Periods without a snapshot are not counted. A period is its local wall-clock label
//!   (restic formats the time): when the clocks go back, both passes through 02:00–02:59
//!   are one hourly period; the day the clocks go forward is one daily period of 23 hours.
//! - The oldest snapshot is kept too when a counted rule has periods left over, so that a
//!   young repository keeps its full history (restic ≥ 0.16); its reason says `oldest`.
//! - `within D`: every snapshot younger than D before the *newest* snapshot, not before now,
//!   so that a cluster whose backups stopped keeps its last window. A snapshot exactly D
//!   older than the newest is outside. Snapshots dated after `now` (a wrong clock) are not
//!   taken as the newest, so they cannot push the window past the real snapshots.
//! - `tag T`: every snapshot carrying tag T.
//!
//! A policy with no rule is refused, and so is a result that would forget every snapshot
//! (only tags can do that: none carried one), as restic refuses both.
//!
//! Equal times: the snapshot that comes first among the candidates is taken as the newer, so
//! a caller that orders candidates the same way each run gets the same decisions each run.

use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::Duration;
use crate::error::{Error, ErrorKind, Result};

/// Why `prune` will not run without a rule: every snapshot would go.
pub const NO_RULE: &str = "refusing to prune with no keep rule: it would forget every snapshot; \
                           give at least one --keep-* option (or keep_* key in the config file)";

/// How many snapshots or periods a counted rule keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// At most this many; 0 turns the rule off, as in restic.
    Limited(u32),
    /// Every period (restic's `unlimited`, formerly -1).
    Unlimited,
}

impl Count {
    /// The rule keeps something: restic takes a count of 0 for a rule not given.
    fn is_active(self) -> bool {
        self != Count::Limited(0)
    }
}

impl FromStr for Count {
    type Err = Error;

    /// `7`, `unlimited`, or `-1` (restic's spelling of unlimited before 0.17).
    fn from_str(text: &str) -> Result<Count> {
        match text {
            "unlimited" | "-1" => Ok(Count::Unlimited),
            _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                text.parse().map(Count::Limited).map_err(|_| {
                    Error::usage(format!(
                        "invalid count {text:?}: expected a number up to {}, or \"unlimited\"",
                        u32::MAX
                    ))
                })
            }
            _ => Err(Error::usage(format!(
                "invalid count {text:?}: expected a number (e.g. 7) or \"unlimited\""
            ))),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Limited(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A number, or the string `"unlimited"`.
impl Serialize for Count {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Limited(n) => serializer.serialize_u32(*n),
            Count::Unlimited => serializer.serialize_str("unlimited"),
        }
    }
}

/// For the config file: `keep_daily = 7`, `keep_monthly = "unlimited"` (or -1).
impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Count, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(i64),
            Text(String),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Number(n) => n.to_string(),
            Written::Text(text) => text,
        };
        text.parse()
            .map_err(|e: Error| serde::de::Error::custom(e.message()))
    }
}

/// Which snapshots to keep. Rules left `None` (or given as 0, or a zero duration) are off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub last: Option<Count>,
    pub hourly: Option<Count>,
    pub daily: Option<Count>,
    pub weekly: Option<Count>,
    pub monthly: Option<Count>,
    pub yearly: Option<Count>,
    pub within: Option<Duration>,
    pub tags: Vec<String>,
}

/// A snapshot as the policy sees it; the caller maps decisions back by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// When the backup started, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    pub tags: Vec<String>,
}

/// What the policy says about one candidate: kept when any rule keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub keep: bool,
    /// Every rule that keeps it, in the order tag, within, last, hourly … yearly.
    pub reasons: Vec<Reason>,
}

/// A calendar period of a counted rule, in local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// One rule that keeps a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The snapshot carries this `--keep-tag`.
    Tag { tag: String },
    /// The snapshot is within `--keep-within` of the newest.
    Within { duration: Duration },
    /// One of the `--keep-last` newest snapshots.
    Last,
    /// The newest snapshot of `period` (e.g. `2026-11-20`, `2026-W47`); `oldest`: kept by the
    /// oldest-snapshot rule although a newer snapshot of the same period was kept already.
    Calendar {
        every: Period,
        period: String,
        oldest: bool,
    },
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    /// The rule's name, as in `--keep-daily` and in `--json`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period `time` falls in, from its local wall-clock fields: two snapshots are in
    /// the same period exactly when their labels are equal, and the label is what is shown.
    fn label(self, time: &Zoned) -> String {
        match self {
            Period::Hourly => format!("{} {:02}:00", time.date(), time.hour()),
            Period::Daily => time.date().to_string(),
            Period::Weekly => {
                let week = time.date().iso_week_date();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            Period::Monthly => format!("{:04}-{:02}", time.year(), time.month()),
            Period::Yearly => format!("{:04}", time.year()),
        }
    }
}

impl Reason {
    /// The rule's name, as in `--keep-<name>`.
    pub fn rule(&self) -> &'static str {
        match self {
            Reason::Tag { .. } => "tag",
            Reason::Within { .. } => "within",
            Reason::Last => "last",
            Reason::Calendar { every, .. } => every.name(),
        }
    }
}

/// `tag nightly`, `within 7d of the newest`, `last snapshot`, `daily snapshot 2026-11-20`,
/// `oldest monthly snapshot 2026-02`.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Tag { tag } => write!(f, "tag {tag}"),
            Reason::Within { duration } => write!(f, "within {duration} of the newest"),
            Reason::Last => f.write_str("last snapshot"),
            Reason::Calendar {
                every,
                period,
                oldest,
            } => {
                let oldest = if *oldest { "oldest " } else { "" };
                write!(f, "{oldest}{} snapshot {period}", every.name())
            }
        }
    }
}

/// `{"rule": "daily", "period": "2026-11-20", "oldest": false}`, `{"rule": "last"}`,
/// `{"rule": "within", "duration": "7d"}`, `{"rule": "tag", "tag": "nightly"}`: the rule
/// named as its option is.
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("rule", self.rule())?;
        match self {
            Reason::Tag { tag } => map.serialize_entry("tag", tag)?,
            Reason::Within { duration } => map.serialize_entry("duration", duration)?,
            Reason::Last => {}
            Reason::Calendar { period, oldest, .. } => {
                map.serialize_entry("period", period)?;
                map.serialize_entry("oldest", oldest)?;
            }
        }
        map.end()
    }
}

/// `keep: last snapshot, daily snapshot 2026-11-20` or `forget`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.keep {
            return f.write_str("forget");
        }
        f.write_str("keep: ")?;
        for (i, reason) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

/// One counted rule while the snapshots go by, newest first.
struct Counter {
    /// `None` for `last`, where every snapshot is a period of its own.
    every: Option<Period>,
    /// `None`: unlimited.
    remaining: Option<u32>,
    /// The period of the snapshot this rule kept last.
    last_period: Option<String>,
}

impl Counter {
    /// Whether this rule keeps `time`, the next older snapshot, and why.
    fn offer(&mut self, time: &Zoned, is_oldest: bool) -> Option<Reason> {
        if self.remaining == Some(0) {
            return None;
        }
        let reason = match self.every {
            None => Reason::Last,
            Some(every) => {
                let period = every.label(time);
                let seen = self.last_period.as_deref() == Some(period.as_str());
                // A period already kept keeps no second snapshot, except for the
                // oldest snapshot while this rule has periods to spare (restic).
                if seen && !is_oldest {
                    return None;
                }
                self.last_period = Some(period.clone());
                Reason::Calendar {
                    every,
                    period,
                    oldest: seen,
                }
            }
        };
        if let Some(remaining) = &mut self.remaining {
            *remaining -= 1;
        }
        Some(reason)
    }
}

impl Policy {
    /// No rule would keep anything: applying it would forget every snapshot.
    pub fn is_empty(&self) -> bool {
        self.counts()
            .all(|(_, count)| count.is_none_or(|c| !c.is_active()))
            && self.within.is_none_or(|d| d.is_zero())
            && self.tags.is_empty()
    }

    /// Refuses a policy that `prune` must not run with: an empty one ([`NO_RULE`]), and an
    /// empty tag, which matches no snapshot (restic's `--keep-tag ''` keeps the untagged
    /// ones; pgcairn does not mimic that).
    pub fn validate(&self) -> Result<()> {
        if self.tags.iter().any(|tag| tag.is_empty()) {
            return Err(Error::usage(
                "an empty --keep-tag matches no snapshot; give the tag to keep",
            ));
        }
        if self.is_empty() {
            return Err(Error::usage(NO_RULE));
        }
        Ok(())
    }

    /// The counted rules in restic's order, `None` standing for `last`.
    fn counts(&self) -> impl Iterator<Item = (Option<Period>, Option<Count>)> {
        let periods = [
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ];
        std::iter::once((None, self.last)).chain(Period::ALL.into_iter().map(Some).zip(periods))
    }

    /// Decides for each candidate, in the candidates' order. Calendar periods are those of
    /// `zone`; `now` only keeps snapshots dated in the future from counting as the newest
    /// for `within`.
    ///
    /// Refuses (as restic does) a policy that [`Policy::validate`] refuses, and a result that
    /// forgets every candidate, which only tags can lead to: no snapshot carried one. Either
    /// would be a slip that costs every backup of the cluster.
    pub fn apply(
        &self,
        candidates: &[Candidate],
        zone: &TimeZone,
        now: Timestamp,
    ) -> Result<Vec<Decision>> {
        self.validate()?;
        // Newest first. The sort is stable, so equal times keep the candidates' order.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(candidates[i].time_ns));

        let within = self.within.filter(|d| !d.is_zero()).map(|duration| {
            let now_ns = now.as_nanosecond();
            let newest = candidates
                .iter()
                .map(|c| c.time_ns)
                .filter(|&ns| i128::from(ns) < now_ns)
                .max();
            // No snapshot before now: the window starts nowhere and holds them all (restic:
            // the newest is then the zero time, year 1).
            let start = newest.and_then(|ns| duration.before(timestamp(ns), zone));
            (duration, start)
        });

        let mut counters: Vec<Counter> = self
            .counts()
            .filter_map(|(every, count)| {
                let remaining = match count? {
                    Count::Limited(0) => return None,
                    Count::Limited(n) => Some(n),
                    Count::Unlimited => None,
                };
                Some(Counter {
                    every,
                    remaining,
                    last_period: None,
                })
            })
            .collect();

        let mut decisions = vec![Decision::default(); candidates.len()];
        for (position, &index) in order.iter().enumerate() {
            let candidate = &candidates[index];
            let time = timestamp(candidate.time_ns).to_zoned(zone.clone());
            let reasons = &mut decisions[index].reasons;
            for tag in &self.tags {
                if candidate.tags.contains(tag) {
                    reasons.push(Reason::Tag { tag: tag.clone() });
                }
            }
            if let Some((duration, start)) = within {
                if start.is_none_or(|start| time.timestamp() > start) {
                    reasons.push(Reason::Within { duration });
                }
            }
            let is_oldest = position + 1 == order.len();
            for counter in &mut counters {
                reasons.extend(counter.offer(&time, is_oldest));
            }
        }
        for decision in &mut decisions {
            decision.keep = !decision.reasons.is_empty();
        }
        if !candidates.is_empty() && !decisions.iter().any(|d| d.keep) {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "refusing to forget all {} snapshots: none is tagged {}; \
                     add a rule such as --keep-last 1",
                    candidates.len(),
                    self.tags.join(" or ")
                ),
            ));
        }
        Ok(decisions)
    }
}

fn timestamp(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns))
        .expect("jiff's range (years -9999 to 9999) holds every i64 of nanoseconds")
}

/// `keep 2 last, 7 daily, all monthly snapshots; all within 30d of the newest; all tagged
/// nightly or manual`: the policy in effect, for the top of `prune`'s report.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counted: Vec<String> = self
            .counts()
            .filter_map(|(every, count)| {
                let how_many = match count? {
                    Count::Limited(0) => return None,
                    Count::Limited(n) => n.to_string(),
                    Count::Unlimited => "all".to_string(),
                };
                Some(format!("{how_many} {}", every.map_or("last", Period::name)))
            })
            .collect();
        let mut clauses = Vec::new();
        if !counted.is_empty() {
            clauses.push(format!("{} snapshots", counted.join(", ")));
        }
        if let Some(duration) = self.within.filter(|d| !d.is_zero()) {
            clauses.push(format!("all within {duration} of the newest"));
        }
        if !self.tags.is_empty() {
            clauses.push(format!("all tagged {}", self.tags.join(" or ")));
        }
        if clauses.is_empty() {
            return f.write_str("no keep rule");
        }
        write!(f, "keep {}", clauses.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZoneDatabase;
    use proptest::prelude::*;

    fn zone(name: &str) -> TimeZone {
        TimeZoneDatabase::bundled().get(name).unwrap()
    }

    /// `"last=2 daily=unlimited within=7d tag=nightly"`
    fn policy(spec: &str) -> Policy {
        let mut policy = Policy::default();
        for rule in spec.split_whitespace() {
            let (name, value) = rule.split_once('=').unwrap();
            let count = || Some(value.parse::<Count>().unwrap());
            match name {
                "last" => policy.last = count(),
                "hourly" => policy.hourly = count(),
                "daily" => policy.daily = count(),
                "weekly" => policy.weekly = count(),
                "monthly" => policy.monthly = count(),
                "yearly" => policy.yearly = count(),
                "within" => policy.within = Some(value.parse().unwrap()),
                "tag" => policy.tags.push(value.to_string()),
                _ => panic!("no rule {name}"),
            }
        }
        policy
    }

    fn ns(time: &str) -> i64 {
        let time: Timestamp = time.parse().unwrap();
        i64::try_from(time.as_nanosecond()).unwrap()
    }

    struct Case {
        name: &'static str,
        zone: &'static str,
        policy: &'static str,
        /// Empty: long after every snapshot.
        now: &'static str,
        /// Time with its UTC offset, tags (comma-separated), the expected decision.
        snapshots: &'static [(&'static str, &'static str, &'static str)],
    }

    const CASES: &[Case] = &[
        Case {
            name: "last keeps the N newest",
            zone: "UTC",
            policy: "last=2",
            now: "",
            snapshots: &[
                ("2026-11-18T10:00:00Z", "", "forget"),
                ("2026-11-20T10:00:00Z", "", "keep: last snapshot"),
                ("2026-11-19T10:00:00Z", "", "keep: last snapshot"),
                ("2026-11-17T10:00:00Z", "", "forget"),
            ],
        },
        Case {
            name: "last with fewer snapshots than N",
            zone: "UTC",
            policy: "last=5",
            now: "",
            snapshots: &[
                ("2026-11-18T10:00:00Z", "", "keep: last snapshot"),
                ("2026-11-19T10:00:00Z", "", "keep: last snapshot"),
            ],
        },
        Case {
            name: "last unlimited keeps all",
            zone: "UTC",
            policy: "last=unlimited",
            now: "",
            snapshots: &[
                ("2016-11-18T10:00:00Z", "", "keep: last snapshot"),
                ("2026-11-19T10:00:00Z", "", "keep: last snapshot"),
                ("2026-11-19T10:00:01Z", "", "keep: last snapshot"),
            ],
        },
        Case {
            name: "hourly keeps the newest of each of the N newest hours",
            zone: "UTC",
            policy: "hourly=2",
            now: "",
            snapshots: &[
                ("2026-11-20T10:05:00Z", "", "forget"),
                ("2026-11-20T10:40:00Z", "", "forget"),
                ("2026-11-20T11:10:00Z", "", "forget"),
                (
                    "2026-11-20T11:50:00Z",
                    "",
                    "keep: hourly snapshot 2026-11-20 11:00",
                ),
                (
                    "2026-11-20T12:00:00Z",
                    "",
                    "keep: hourly snapshot 2026-11-20 12:00",
                ),
            ],
        },
        Case {
            name: "the oldest snapshot is kept while a rule has periods to spare",
            zone: "UTC",
            policy: "hourly=3",
            now: "",
            snapshots: &[
                (
                    "2026-11-20T10:05:00Z",
                    "",
                    "keep: oldest hourly snapshot 2026-11-20 10:00",
                ),
                (
                    "2026-11-20T10:40:00Z",
                    "",
                    "keep: hourly snapshot 2026-11-20 10:00",
                ),
                (
                    "2026-11-20T11:10:00Z",
                    "",
                    "keep: hourly snapshot 2026-11-20 11:00",
                ),
            ],
        },
        Case {
            name: "the oldest snapshot is not kept once the periods are used up",
            zone: "UTC",
            policy: "hourly=2",
            now: "",
            snapshots: &[
                ("2026-11-20T10:05:00Z", "", "forget"),
                (
                    "2026-11-20T10:40:00Z",
                    "",
                    "keep: hourly snapshot 2026-11-20 10:00",
                ),
                (
                    "2026-11-20T11:10:00Z",
                    "",
                    "keep: hourly snapshot 2026-11-20 11:00",
                ),
            ],
        },
        Case {
            name: "a day ends at local midnight",
            zone: "Europe/Berlin",
            policy: "daily=2",
            now: "",
            snapshots: &[
                (
                    "2026-11-20T23:59:59.999+01:00",
                    "",
                    "keep: daily snapshot 2026-11-20",
                ),
                ("2026-11-21T00:00:00+01:00", "", "forget"),
                (
                    "2026-11-21T08:00:00+01:00",
                    "",
                    "keep: daily snapshot 2026-11-21",
                ),
            ],
        },
        Case {
            name: "the same instants in UTC fall on other days",
            zone: "UTC",
            policy: "daily=2",
            now: "",
            snapshots: &[
                ("2026-11-20T22:59:59.999Z", "", "forget"),
                (
                    "2026-11-20T23:00:00Z",
                    "",
                    "keep: daily snapshot 2026-11-20",
                ),
                (
                    "2026-11-21T07:00:00Z",
                    "",
                    "keep: daily snapshot 2026-11-21",
                ),
            ],
        },
        Case {
            name: "ISO weeks start on Monday and 2026 has a week 53",
            zone: "UTC",
            policy: "weekly=3",
            now: "",
            snapshots: &[
                ("2026-12-27T12:00:00Z", "", "keep: weekly snapshot 2026-W52"),
                ("2026-12-28T00:00:00Z", "", "forget"),
                ("2026-12-31T12:00:00Z", "", "forget"),
                ("2027-01-03T23:59:59Z", "", "keep: weekly snapshot 2026-W53"),
                ("2027-01-04T00:00:00Z", "", "keep: weekly snapshot 2027-W01"),
            ],
        },
        Case {
            name: "the ISO week's year is not always the calendar year",
            zone: "UTC",
            policy: "weekly=unlimited",
            now: "",
            snapshots: &[
                ("2025-12-28T12:00:00Z", "", "keep: weekly snapshot 2025-W52"),
                ("2025-12-29T12:00:00Z", "", "forget"),
                ("2026-01-01T12:00:00Z", "", "keep: weekly snapshot 2026-W01"),
            ],
        },
        Case {
            name: "months in local time",
            zone: "America/New_York",
            policy: "monthly=2",
            now: "",
            snapshots: &[
                (
                    "2026-01-31T23:30:00-05:00",
                    "",
                    "keep: monthly snapshot 2026-01",
                ),
                ("2026-02-01T00:30:00-05:00", "", "forget"),
                (
                    "2026-02-15T12:00:00-05:00",
                    "",
                    "keep: monthly snapshot 2026-02",
                ),
            ],
        },
        Case {
            name: "yearly with fewer years than N",
            zone: "America/New_York",
            policy: "yearly=5",
            now: "",
            snapshots: &[
                (
                    "2025-12-31T23:00:00-05:00",
                    "",
                    "keep: yearly snapshot 2025",
                ),
                ("2026-01-01T00:30:00-05:00", "", "forget"),
                (
                    "2026-06-01T12:00:00-04:00",
                    "",
                    "keep: yearly snapshot 2026",
                ),
            ],
        },
        Case {
            name: "one snapshot kept by several rules, periods counted per rule",
            zone: "UTC",
            policy: "last=1 daily=2 weekly=2 monthly=1",
            now: "",
            snapshots: &[
                ("2026-11-09T10:00:00Z", "", "forget"),
                (
                    "2026-11-15T10:00:00Z",
                    "",
                    "keep: daily snapshot 2026-11-15, weekly snapshot 2026-W46",
                ),
                ("2026-11-16T09:00:00Z", "", "forget"),
                (
                    "2026-11-16T10:00:00Z",
                    "",
                    "keep: last snapshot, daily snapshot 2026-11-16, \
                     weekly snapshot 2026-W47, monthly snapshot 2026-11",
                ),
            ],
        },
        Case {
            name: "tags keep every snapshot carrying one, exactly spelled",
            zone: "UTC",
            policy: "tag=nightly tag=manual last=1",
            now: "",
            snapshots: &[
                ("2026-11-17T10:00:00Z", "Nightly", "forget"),
                ("2026-11-18T10:00:00Z", "nightly", "keep: tag nightly"),
                ("2026-11-19T10:00:00Z", "weekly", "forget"),
                (
                    "2026-11-20T10:00:00Z",
                    "manual,nightly",
                    "keep: tag nightly, tag manual",
                ),
                ("2026-11-21T10:00:00Z", "", "keep: last snapshot"),
            ],
        },
        Case {
            name: "within counts from the newest snapshot, not from now",
            zone: "UTC",
            policy: "within=2d",
            now: "",
            snapshots: &[
                ("2026-11-10T12:00:00Z", "", "forget"),
                ("2026-11-18T12:00:00Z", "", "forget"),
                (
                    "2026-11-18T12:00:00.000000001Z",
                    "",
                    "keep: within 2d of the newest",
                ),
                ("2026-11-20T12:00:00Z", "", "keep: within 2d of the newest"),
            ],
        },
        Case {
            name: "within: a snapshot dated in the future is not the newest",
            zone: "UTC",
            policy: "within=3d",
            now: "2026-06-10T00:00:00Z",
            snapshots: &[
                ("2026-06-01T12:00:00Z", "", "forget"),
                ("2026-06-05T12:00:00Z", "", "forget"),
                ("2026-06-05T12:00:01Z", "", "keep: within 3d of the newest"),
                ("2026-06-08T12:00:00Z", "", "keep: within 3d of the newest"),
                ("2026-06-20T12:00:00Z", "", "keep: within 3d of the newest"),
            ],
        },
        Case {
            name: "within: all snapshots in the future are all kept",
            zone: "UTC",
            policy: "within=1d",
            now: "2020-01-01T00:00:00Z",
            snapshots: &[
                ("2026-06-01T12:00:00Z", "", "keep: within 1d of the newest"),
                ("2026-06-20T12:00:00Z", "", "keep: within 1d of the newest"),
            ],
        },
        Case {
            name: "within: days are calendar days across spring forward",
            zone: "Europe/Berlin",
            policy: "within=1d",
            now: "",
            snapshots: &[
                ("2026-03-28T11:30:00+01:00", "", "forget"),
                (
                    "2026-03-28T12:30:00+01:00",
                    "",
                    "keep: within 1d of the newest",
                ),
                (
                    "2026-03-29T12:00:00+02:00",
                    "",
                    "keep: within 1d of the newest",
                ),
            ],
        },
        Case {
            name: "within: hours are exact across spring forward",
            zone: "Europe/Berlin",
            policy: "within=24h",
            now: "",
            snapshots: &[
                ("2026-03-28T10:30:00+01:00", "", "forget"),
                (
                    "2026-03-28T11:30:00+01:00",
                    "",
                    "keep: within 24h of the newest",
                ),
                (
                    "2026-03-29T12:00:00+02:00",
                    "",
                    "keep: within 24h of the newest",
                ),
            ],
        },
        Case {
            name: "equal times: the first candidate is the newer",
            zone: "UTC",
            policy: "last=2",
            now: "",
            snapshots: &[
                ("2026-11-20T10:00:00Z", "", "keep: last snapshot"),
                ("2026-11-20T10:00:00Z", "", "keep: last snapshot"),
                ("2026-11-20T10:00:00Z", "", "forget"),
                ("2026-11-19T10:00:00Z", "", "forget"),
            ],
        },
        Case {
            name: "equal times: the second of a period is kept only as the oldest",
            zone: "UTC",
            policy: "daily=unlimited",
            now: "",
            snapshots: &[
                (
                    "2026-11-20T10:00:00Z",
                    "",
                    "keep: daily snapshot 2026-11-20",
                ),
                (
                    "2026-11-20T10:00:00Z",
                    "",
                    "keep: oldest daily snapshot 2026-11-20",
                ),
            ],
        },
        Case {
            name: "fall back: both passes through 02:xx are one hourly period",
            zone: "Europe/Berlin",
            policy: "hourly=2",
            now: "",
            snapshots: &[
                ("2026-10-25T02:10:00+02:00", "", "forget"),
                ("2026-10-25T02:50:00+02:00", "", "forget"),
                ("2026-10-25T02:10:00+01:00", "", "forget"),
                (
                    "2026-10-25T02:50:00+01:00",
                    "",
                    "keep: hourly snapshot 2026-10-25 02:00",
                ),
                (
                    "2026-10-25T03:10:00+01:00",
                    "",
                    "keep: hourly snapshot 2026-10-25 03:00",
                ),
            ],
        },
        Case {
            name: "fall back with unlimited hours: still one period for the repeated hour",
            zone: "Europe/Berlin",
            policy: "hourly=unlimited",
            now: "",
            snapshots: &[
                (
                    "2026-10-25T01:50:00+02:00",
                    "",
                    "keep: hourly snapshot 2026-10-25 01:00",
                ),
                ("2026-10-25T02:50:00+02:00", "", "forget"),
                ("2026-10-25T02:10:00+01:00", "", "forget"),
                (
                    "2026-10-25T02:50:00+01:00",
                    "",
                    "keep: hourly snapshot 2026-10-25 02:00",
                ),
            ],
        },
        Case {
            name: "fall back: the 25-hour day is one daily period",
            zone: "Europe/Berlin",
            policy: "daily=2",
            now: "",
            snapshots: &[
                (
                    "2026-10-24T23:30:00+02:00",
                    "",
                    "keep: daily snapshot 2026-10-24",
                ),
                ("2026-10-25T00:30:00+02:00", "", "forget"),
                (
                    "2026-10-25T23:30:00+01:00",
                    "",
                    "keep: daily snapshot 2026-10-25",
                ),
            ],
        },
        Case {
            name: "spring forward: the 23-hour day is one daily period",
            zone: "Europe/Berlin",
            policy: "daily=3",
            now: "",
            snapshots: &[
                (
                    "2026-03-28T12:00:00+01:00",
                    "",
                    "keep: daily snapshot 2026-03-28",
                ),
                ("2026-03-29T01:59:59+01:00", "", "forget"),
                ("2026-03-29T03:00:00+02:00", "", "forget"),
                (
                    "2026-03-29T23:59:00+02:00",
                    "",
                    "keep: daily snapshot 2026-03-29",
                ),
                (
                    "2026-03-30T00:00:00+02:00",
                    "",
                    "keep: daily snapshot 2026-03-30",
                ),
            ],
        },
        Case {
            name: "spring forward: one second apart, two hours apart on the clock",
            zone: "Europe/Berlin",
            policy: "hourly=2",
            now: "",
            snapshots: &[
                ("2026-03-29T00:30:00+01:00", "", "forget"),
                (
                    "2026-03-29T01:59:59+01:00",
                    "",
                    "keep: hourly snapshot 2026-03-29 01:00",
                ),
                ("2026-03-29T03:00:00+02:00", "", "forget"),
                (
                    "2026-03-29T03:30:00+02:00",
                    "",
                    "keep: hourly snapshot 2026-03-29 03:00",
                ),
            ],
        },
        Case {
            name: "Lord Howe goes back half an hour: 01:30-01:59 twice, one period",
            zone: "Australia/Lord_Howe",
            policy: "hourly=2",
            now: "",
            snapshots: &[
                ("2026-04-05T01:10:00+11:00", "", "forget"),
                ("2026-04-05T01:45:00+11:00", "", "forget"),
                (
                    "2026-04-05T01:45:00+10:30",
                    "",
                    "keep: hourly snapshot 2026-04-05 01:00",
                ),
                (
                    "2026-04-05T02:10:00+10:30",
                    "",
                    "keep: hourly snapshot 2026-04-05 02:00",
                ),
            ],
        },
        Case {
            name: "a rule given as 0 is off",
            zone: "UTC",
            policy: "last=1 daily=0",
            now: "",
            snapshots: &[
                ("2026-11-19T10:00:00Z", "", "forget"),
                ("2026-11-20T10:00:00Z", "", "keep: last snapshot"),
            ],
        },
    ];

    /// The worked example of docs/prune.md, word for word.
    #[test]
    fn worked_example_of_the_docs() {
        let snapshots: &[(&str, &str, &str)] = &[
            ("2026-11-09T02:00:00+01:00", "", "forget"),
            (
                "2026-11-15T02:00:00+01:00",
                "",
                "keep: weekly snapshot 2026-W46",
            ),
            ("2026-11-17T02:00:00+01:00", "", "forget"),
            (
                "2026-11-18T02:00:00+01:00",
                "",
                "keep: daily snapshot 2026-11-18",
            ),
            ("2026-11-19T02:00:00+01:00", "", "forget"),
            (
                "2026-11-19T14:00:00+01:00",
                "before-upgrade",
                "keep: tag before-upgrade, within 1d of the newest, last snapshot, \
                 daily snapshot 2026-11-19",
            ),
            (
                "2026-11-20T02:00:00+01:00",
                "",
                "keep: within 1d of the newest, last snapshot, daily snapshot 2026-11-20, \
                 weekly snapshot 2026-W47",
            ),
        ];
        let case = Case {
            name: "docs/prune.md",
            zone: "Europe/Berlin",
            policy: "last=2 daily=3 weekly=2 within=1d tag=before-upgrade",
            now: "",
            snapshots,
        };
        let check = |policy: &Policy| -> Vec<String> {
            policy
                .apply(&candidates(&case), &zone(case.zone), Timestamp::MAX)
                .unwrap()
                .iter()
                .map(Decision::to_string)
                .collect()
        };
        let expected: Vec<&str> = snapshots.iter().map(|s| s.2).collect();
        assert_eq!(check(&policy(case.policy)), expected);
        assert_eq!(
            policy(case.policy).to_string(),
            "keep 2 last, 3 daily, 2 weekly snapshots; all within 1d of the newest; \
             all tagged before-upgrade"
        );
        // With a third week to spare, the oldest snapshot stays although its week is kept.
        let decisions = check(&policy(
            "last=2 daily=3 weekly=3 within=1d tag=before-upgrade",
        ));
        assert_eq!(decisions[0], "keep: oldest weekly snapshot 2026-W46");
    }

    /// What restic 0.17 keeps of 40 nightly snapshots with `--keep-daily 7 --keep-weekly 4
    /// --keep-monthly 6`: the last 7 days, the Sundays of two more weeks, the ends of August
    /// and September, and the oldest snapshot, since the monthly rule has months to spare.
    #[test]
    fn forty_nights_as_restic_keeps_them() {
        let first = jiff::civil::date(2026, 8, 28).at(2, 0, 0, 0);
        let candidates: Vec<Candidate> = (0..40)
            .map(|day| {
                let night = first.checked_add(jiff::Span::new().days(day)).unwrap();
                let time = night.to_zoned(TimeZone::UTC).unwrap().timestamp();
                Candidate {
                    time_ns: i64::try_from(time.as_nanosecond()).unwrap(),
                    tags: vec![],
                }
            })
            .collect();
        let decisions = policy("daily=7 weekly=4 monthly=6")
            .apply(&candidates, &TimeZone::UTC, Timestamp::MAX)
            .unwrap();
        let kept: Vec<String> = candidates
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| d.keep)
            .map(|(c, _)| {
                timestamp(c.time_ns)
                    .to_zoned(TimeZone::UTC)
                    .date()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kept,
            [
                "2026-08-28",
                "2026-08-31",
                "2026-09-20",
                "2026-09-27",
                "2026-09-30",
                "2026-10-01",
                "2026-10-02",
                "2026-10-03",
                "2026-10-04",
                "2026-10-05",
                "2026-10-06",
            ]
        );
        assert_eq!(
            decisions[0].to_string(),
            "keep: oldest monthly snapshot 2026-08"
        );
    }

    fn candidates(case: &Case) -> Vec<Candidate> {
        case.snapshots
            .iter()
            .map(|(time, tags, _)| Candidate {
                time_ns: ns(time),
                tags: tags
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for case in CASES {
            let zone = zone(case.zone);
            let now = if case.now.is_empty() {
                "2100-01-01T00:00:00Z"
            } else {
                case.now
            };
            let now: Timestamp = now.parse().unwrap();
            let policy = policy(case.policy);
            let candidates = candidates(case);
            let decisions = policy.apply(&candidates, &zone, now).unwrap();
            for ((time, _, expected), decision) in case.snapshots.iter().zip(&decisions) {
                if decision.to_string() != *expected {
                    failures.push(format!(
                        "{}: {time}: expected {expected:?}, got {:?}",
                        case.name,
                        decision.to_string()
                    ));
                }
                assert_eq!(decision.keep, !decision.reasons.is_empty());
            }
            // With distinct times, the candidates' order does not matter.
            let mut times: Vec<i64> = candidates.iter().map(|c| c.time_ns).collect();
            times.sort();
            times.dedup();
            if times.len() == candidates.len() {
                let reversed: Vec<Candidate> = candidates.iter().rev().cloned().collect();
                let mut again = policy.apply(&reversed, &zone, now).unwrap();
                again.reverse();
                assert_eq!(again, decisions, "{}: order matters", case.name);
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn equal_times_are_decided_by_the_candidates_order() {
        let time = ns("2026-11-20T10:00:00Z");
        let candidate = |tag: &str| Candidate {
            time_ns: time,
            tags: vec![tag.into()],
        };
        let policy = policy("last=1");
        let kept = |candidates: &[Candidate]| -> Vec<String> {
            policy
                .apply(candidates, &TimeZone::UTC, Timestamp::MAX)
                .unwrap()
                .iter()
                .zip(candidates)
                .filter(|(d, _)| d.keep)
                .map(|(_, c)| c.tags[0].clone())
                .collect()
        };
        assert_eq!(kept(&[candidate("a"), candidate("b")]), ["a"]);
        assert_eq!(kept(&[candidate("b"), candidate("a")]), ["b"]);
    }

    #[test]
    fn no_candidates_no_decisions() {
        let decisions = policy("tag=x").apply(&[], &TimeZone::UTC, Timestamp::MAX);
        assert!(decisions.unwrap().is_empty());
    }

    #[test]
    fn an_empty_policy_is_refused() {
        for spec in [
            "",
            "last=0",
            "daily=0 weekly=0",
            "within=0d",
            "within=0h last=0",
        ] {
            let policy = policy(spec);
            assert!(policy.is_empty(), "{spec:?}");
            let err = policy.validate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Usage);
            assert_eq!(err.to_string(), NO_RULE);
            assert_eq!(policy.to_string(), "no keep rule");
        }
        for spec in [
            "last=1",
            "yearly=unlimited",
            "within=1h",
            "tag=x",
            "last=0 monthly=1",
        ] {
            assert!(!policy(spec).is_empty(), "{spec:?}");
            policy(spec).validate().unwrap();
        }
        let err = policy("last=1 tag=").validate().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
        assert!(err.to_string().contains("empty --keep-tag"), "{err}");
    }

    #[test]
    fn apply_refuses_to_forget_everything() {
        let at = |time: &str, tags: &[&str]| Candidate {
            time_ns: ns(time),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let apply = |spec: &str, candidates: &[Candidate]| {
            policy(spec).apply(candidates, &TimeZone::UTC, Timestamp::MAX)
        };
        let candidates = [
            at("2026-11-19T10:00:00Z", &["weekly"]),
            at("2026-11-20T10:00:00Z", &[]),
        ];
        let err = apply("", &candidates).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
        assert_eq!(err.to_string(), NO_RULE);

        let err = apply("tag=nightly tag=manual", &candidates).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Refused);
        assert_eq!(
            err.to_string(),
            "refusing to forget all 2 snapshots: none is tagged nightly or manual; \
             add a rule such as --keep-last 1"
        );
        let decisions = apply("tag=weekly", &candidates).unwrap();
        assert_eq!(decisions[0].to_string(), "keep: tag weekly");
        assert_eq!(decisions[1].to_string(), "forget");
    }

    #[test]
    fn counts_parse_from_the_command_line_and_the_config_file() {
        assert_eq!("7".parse::<Count>().unwrap(), Count::Limited(7));
        assert_eq!("0".parse::<Count>().unwrap(), Count::Limited(0));
        assert_eq!("unlimited".parse::<Count>().unwrap(), Count::Unlimited);
        assert_eq!("-1".parse::<Count>().unwrap(), Count::Unlimited);
        for bad in [
            "",
            "-2",
            "+3",
            "seven",
            "7d",
            "Unlimited",
            "4294967296",
            " 7",
        ] {
            let err = bad.parse::<Count>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Usage, "{bad:?}");
            assert!(err.to_string().contains("unlimited"), "{bad:?}: {err}");
        }

        #[derive(Debug, Deserialize)]
        struct Config {
            keep: Count,
        }
        let read = |text: &str| toml::from_str::<Config>(text).map(|c| c.keep);
        assert_eq!(read("keep = 7").unwrap(), Count::Limited(7));
        assert_eq!(read("keep = \"unlimited\"").unwrap(), Count::Unlimited);
        assert_eq!(read("keep = -1").unwrap(), Count::Unlimited);
        assert!(read("keep = -2").is_err());
        assert!(read("keep = \"all\"").is_err());
        assert!(read("keep = 1.5").is_err());

        assert_eq!(Count::Unlimited.to_string(), "unlimited");
        assert_eq!(serde_json::to_string(&Count::Limited(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&Count::Unlimited).unwrap(),
            "\"unlimited\""
        );
    }

    #[test]
    fn the_policy_says_what_it_keeps() {
        let policy = policy("tag=nightly tag=manual within=30d monthly=unlimited daily=7 last=2");
        assert_eq!(
            policy.to_string(),
            "keep 2 last, 7 daily, all monthly snapshots; all within 30d of the newest; \
             all tagged nightly or manual"
        );
        assert_eq!(
            super::tests::policy("within=1y").to_string(),
            "keep all within 1y of the newest"
        );
        assert_eq!(
            serde_json::to_value(&policy).unwrap(),
            serde_json::json!({
                "last": 2, "hourly": null, "daily": 7, "weekly": null,
                "monthly": "unlimited", "yearly": null, "within": "30d",
                "tags": ["nightly", "manual"],
            })
        );
    }

    #[test]
    fn decisions_serialise_with_the_rules_named_as_their_options() {
        let decision = Decision {
            keep: true,
            reasons: vec![
                Reason::Tag {
                    tag: "nightly".into(),
                },
                Reason::Within {
                    duration: "7d".parse().unwrap(),
                },
                Reason::Last,
                Reason::Calendar {
                    every: Period::Weekly,
                    period: "2026-W47".into(),
                    oldest: false,
                },
                Reason::Calendar {
                    every: Period::Monthly,
                    period: "2026-11".into(),
                    oldest: true,
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(&decision).unwrap(),
            serde_json::json!({
                "keep": true,
                "reasons": [
                    {"rule": "tag", "tag": "nightly"},
                    {"rule": "within", "duration": "7d"},
                    {"rule": "last"},
                    {"rule": "weekly", "period": "2026-W47", "oldest": false},
                    {"rule": "monthly", "period": "2026-11", "oldest": true},
                ],
            })
        );
        assert_eq!(
            decision.to_string(),
            "keep: tag nightly, within 7d of the newest, last snapshot, \
             weekly snapshot 2026-W47, oldest monthly snapshot 2026-11"
        );
        assert_eq!(Decision::default().to_string(), "forget");
        assert_eq!(
            serde_json::to_string(&Decision::default()).unwrap(),
            r#"{"keep":false,"reasons":[]}"#
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the snapshots: the candidates' order does not matter (distinct times),
        /// a rule keeps at most N snapshots, and, the oldest-snapshot rule aside, what a
        /// calendar rule keeps is the newest snapshot of its period, one per period.
        #[test]
        fn calendar_rules_keep_the_newest_of_each_period(
            offsets in proptest::collection::btree_set(0i64..3 * 366 * 24 * 60, 1..40),
            counts in proptest::collection::vec(0u32..6, 6),
            zone_name in prop::sample::select(vec!["UTC", "Europe/Berlin", "Australia/Lord_Howe"]),
        ) {
            prop_assume!(counts.iter().any(|&n| n > 0));
            let zone = zone(zone_name);
            let base = ns("2025-01-01T00:00:00Z");
            // Distinct minutes, oldest first.
            let candidates: Vec<Candidate> = offsets
                .iter()
                .map(|minutes| Candidate { time_ns: base + minutes * 60_000_000_000, tags: vec![] })
                .collect();
            let count = |i: usize| Some(Count::Limited(counts[i]));
            let policy = Policy {
                last: count(0), hourly: count(1), daily: count(2),
                weekly: count(3), monthly: count(4), yearly: count(5),
                ..Policy::default()
            };
            let decisions = policy.apply(&candidates, &zone, Timestamp::MAX).unwrap();

            let reversed: Vec<Candidate> = candidates.iter().rev().cloned().collect();
            let mut again = policy.apply(&reversed, &zone, Timestamp::MAX).unwrap();
            again.reverse();
            prop_assert_eq!(&again, &decisions);

            let counted = [
                ("last", counts[0]), ("hourly", counts[1]), ("daily", counts[2]),
                ("weekly", counts[3]), ("monthly", counts[4]), ("yearly", counts[5]),
            ];
            for (rule, n) in counted {
                let kept = decisions
                    .iter()
                    .filter(|d| d.reasons.iter().any(|r| r.rule() == rule))
                    .count();
                prop_assert!(kept <= n as usize, "{rule}: {kept} kept, {n} allowed");
            }
            for every in Period::ALL {
                let label = |c: &Candidate| every.label(&timestamp(c.time_ns).to_zoned(zone.clone()));
                let mut periods = Vec::new();
                for (index, decision) in decisions.iter().enumerate() {
                    for reason in &decision.reasons {
                        if let Reason::Calendar { every: e, period, oldest } = reason {
                            if *e != every || *oldest {
                                continue;
                            }
                            prop_assert_eq!(period, &label(&candidates[index]));
                            // Candidates are oldest first: nothing after it shares its period.
                            prop_assert!(candidates[index + 1..].iter().all(|c| &label(c) != period));
                            periods.push(period.clone());
                        }
                    }
                }
                let distinct = periods.len();
                periods.sort();
                periods.dedup();
                prop_assert_eq!(periods.len(), distinct);
            }
        }
    }
}
