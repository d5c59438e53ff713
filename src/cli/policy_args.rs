//! The retention policy's options: `--keep-*` on the command line, or the `keep_*` keys of
//! the config file, never a mix of the two.

use clap::Args;

use crate::error::Result;
use crate::prune::duration::Duration;
use crate::prune::policy::{Count, Policy};

/// The long help of a command that takes [`PolicyArgs`] (`after_long_help`): an example,
/// then the rules in one paragraph.
pub const HELP: &str = "\
Example: the 3 newest snapshots, one a day for a week, one a week for a month, one a month for a
year, every snapshot tagged release and every snapshot of the last 2 days:
  pgcairn prune --keep-last 3 --keep-daily 7 --keep-weekly 5 --keep-monthly 12 \\
                --keep-tag release --keep-within 2d --dry-run

The rules are restic's (forget), applied to each cluster's snapshots: a snapshot is kept if any
rule keeps it. Going from the newest snapshot to the oldest, --keep-hourly/daily/weekly/monthly/
yearly N keeps the newest snapshot of each of the N most recent hours, days, ISO weeks (Monday to
Sunday), months or years that have one; periods without a snapshot do not count. Periods are
those of the local time zone (TZ) of the machine running pgcairn: keep it the same from run to
run. While a rule has periods to spare, the oldest snapshot is kept too (shown as \"oldest\").
--keep-within counts back from the newest snapshot, not from now, so a cluster whose backups
stopped keeps its last window. N may be \"unlimited\".

Without any --keep-* option the config file's keep_* keys apply (keep_daily = 7,
keep_within = \"30d\", keep_tag = [\"release\"]); one --keep-* option replaces them all. With
no rule from either, pgcairn refuses to run: it would forget every snapshot.";

#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(next_help_heading = "Retention policy")]
pub struct PolicyArgs {
    /// Keep the N newest snapshots ("unlimited": all).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<Count>,

    /// Keep the newest snapshot of each of the N latest hours that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<Count>,

    /// Keep the newest snapshot of each of the N latest days that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<Count>,

    /// Keep the newest snapshot of each of the N latest ISO weeks (from Monday) that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<Count>,

    /// Keep the newest snapshot of each of the N latest months that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<Count>,

    /// Keep the newest snapshot of each of the N latest years that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<Count>,

    /// Keep every snapshot within DURATION of the newest snapshot (not of now), e.g. 30d,
    /// 2w, 36h, 1y6m, 2y5m7d3h (y years, m months, w weeks, d days, h hours, min minutes,
    /// s seconds).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<Duration>,

    /// Keep every snapshot tagged TAG (repeat for more tags; one is enough to keep).
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
}

impl PolicyArgs {
    fn given(&self) -> bool {
        *self != PolicyArgs::default()
    }

    /// The policy in effect: the command line's when any `--keep-*` option is given, else
    /// `config` (the config file's `keep_*` keys). Whole, not rule by rule: rules are ORed,
    /// so merging could only ever keep more than the command line says, and a one-off
    /// `--keep-last 1` would silently keep the file's dailies too. Refused when it has no
    /// rule (or an empty tag).
    pub fn resolve(&self, config: &Policy) -> Result<Policy> {
        let policy = if self.given() {
            Policy {
                last: self.keep_last,
                hourly: self.keep_hourly,
                daily: self.keep_daily,
                weekly: self.keep_weekly,
                monthly: self.keep_monthly,
                yearly: self.keep_yearly,
                within: self.keep_within,
                tags: self.keep_tags.clone(),
            }
        } else {
            config.clone()
        };
        policy.validate()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::policy::NO_RULE;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    #[command(after_long_help = HELP)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<PolicyArgs, clap::Error> {
        let args = std::iter::once("pgcairn").chain(args.iter().copied());
        Cli::try_parse_from(args).map(|cli| cli.policy)
    }

    fn config() -> Policy {
        Policy {
            daily: Some(Count::Limited(7)),
            within: Some("30d".parse().unwrap()),
            tags: vec!["release".into()],
            ..Policy::default()
        }
    }

    #[test]
    fn every_rule_from_the_command_line() {
        let args = parse(&[
            "--keep-last",
            "3",
            "--keep-hourly",
            "24",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "unlimited",
            "--keep-monthly",
            "-1",
            "--keep-yearly=10",
            "--keep-within",
            "2y5m7d3h",
            "--keep-tag",
            "nightly",
            "--keep-tag",
            "manual",
        ])
        .unwrap();
        let policy = args.resolve(&config()).unwrap();
        assert_eq!(
            policy,
            Policy {
                last: Some(Count::Limited(3)),
                hourly: Some(Count::Limited(24)),
                daily: Some(Count::Limited(7)),
                weekly: Some(Count::Unlimited),
                monthly: Some(Count::Unlimited),
                yearly: Some(Count::Limited(10)),
                within: Some("2y5m7d3h".parse().unwrap()),
                tags: vec!["nightly".into(), "manual".into()],
            }
        );
    }

    #[test]
    fn bad_values_are_usage_errors_that_say_what_is_expected() {
        let cases = [
            (
                &["--keep-daily", "seven"][..],
                "expected a number (e.g. 7) or \"unlimited\"",
            ),
            (&["--keep-daily", "-2"][..], "invalid count \"-2\""),
            (&["--keep-within", "5 days"][..], "examples: 7d, 36h"),
            (&["--keep-within", "90"][..], "no unit after 90"),
        ];
        for (args, expected) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}"
            );
            assert_eq!(err.exit_code(), crate::ErrorKind::Usage.exit_code());
            assert!(err.to_string().contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn any_keep_option_replaces_the_config_files_policy_whole() {
        let policy = parse(&["--keep-last", "1"])
            .unwrap()
            .resolve(&config())
            .unwrap();
        assert_eq!(
            policy,
            Policy {
                last: Some(Count::Limited(1)),
                ..Policy::default()
            }
        );
        let policy = parse(&["--keep-tag", "x"])
            .unwrap()
            .resolve(&config())
            .unwrap();
        assert_eq!(policy.tags, ["x"]);
        assert_eq!(policy.daily, None);
        assert_eq!(policy.within, None);
    }

    #[test]
    fn without_keep_options_the_config_files_policy_applies() {
        let policy = parse(&[]).unwrap().resolve(&config()).unwrap();
        assert_eq!(policy, config());
    }

    #[test]
    fn no_rule_from_either_is_refused() {
        let cases: [(&[&str], Policy); 4] = [
            (&[], Policy::default()),
            // Given, so it replaces the file's policy; and 0 is no rule, as in restic.
            (&["--keep-daily", "0"], config()),
            (&["--keep-within", "0d"], config()),
            (
                &[],
                Policy {
                    last: Some(Count::Limited(0)),
                    ..Policy::default()
                },
            ),
        ];
        for (args, config) in cases {
            let err = parse(args).unwrap().resolve(&config).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Usage, "{args:?}");
            assert_eq!(err.to_string(), NO_RULE);
        }
        let err = parse(&["--keep-tag", ""])
            .unwrap()
            .resolve(&config())
            .unwrap_err();
        assert!(err.to_string().contains("empty --keep-tag"), "{err}");
    }

    #[test]
    fn help_teaches_the_rules_with_an_example() {
        let help = Cli::command().render_long_help().to_string();
        for expected in [
            "Retention policy:",
            "--keep-within <DURATION>",
            "--keep-tag <TAG>",
            "pgcairn prune --keep-last 3 --keep-daily 7",
            "not from now",
            "keep_daily = 7",
        ] {
            assert!(help.contains(expected), "{expected:?} not in:\n{help}");
        }
    }
}
