//! Recovery configuration for a restored data directory, PostgreSQL 12+ style: settings in
//! `postgresql.auto.conf` and an empty `recovery.signal`, so the server starts in archive
//! recovery, fetches WAL through `restore_command`, and stops where the user asked.
//!
//! The user's own lines in postgresql.auto.conf are kept; only the settings we own are disabled
//! (commented out, so nothing is lost) and written again in one block at the end. Running the
//! restore twice gives the same file, apart from the block's timestamp.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::pg::target;
use crate::pg::wal::Lsn;

/// Where the server starts recovery from and where it stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// As soon as the restored snapshot is consistent (`recovery_target = 'immediate'`).
    Immediate,
    /// A timestamp, as PostgreSQL parses it (`recovery_target_time`).
    Time(String),
    /// A WAL position `X/X` (`recovery_target_lsn`).
    Lsn(String),
    /// A transaction id (`recovery_target_xid`).
    Xid(String),
    /// A restore point made with pg_create_restore_point (`recovery_target_name`).
    Name(String),
}

/// What the server does on reaching the target (`recovery_target_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetAction {
    Pause,
    Promote,
    Shutdown,
}

/// Everything restore puts into the recovery configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverySettings {
    /// The complete command, `%f` and `%p` included; build its words with
    /// [`restore_command_arg`].
    pub restore_command: String,
    /// None: recover to the end of the available WAL.
    pub target: Option<RecoveryTarget>,
    pub target_action: Option<TargetAction>,
    /// `latest`, `current` or a timeline number.
    pub target_timeline: Option<String>,
    /// Set `archive_mode = off`, so a restored copy never pushes its WAL into the archive of the
    /// cluster it was copied from.
    pub archive_mode_off: bool,
}

const AUTO_CONF: &str = "postgresql.auto.conf";
/// The name ALTER SYSTEM itself uses for its temporary file, so a leftover from a crash is one
/// that backups (ours, pg_basebackup's, pgBackRest's) already skip and ALTER SYSTEM overwrites.
const AUTO_CONF_TMP: &str = "postgresql.auto.conf.tmp";
const RECOVERY_SIGNAL: &str = "recovery.signal";

/// First line of the block we append. Recognised on the next run, which replaces the block.
const BLOCK_HEADER: &str = "# Added by pgcairn restore";
/// Prefix of a user's setting we disabled.
const DISABLED: &str = "# Disabled by pgcairn restore: ";

/// The settings naming a recovery target. PostgreSQL refuses to start when more than one is set
/// (anywhere: postgresql.conf included), so the block sets every one of them.
const TARGET_SETTINGS: [&str; 5] = [
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
];

/// Configures `pgdata` for archive recovery: rewrites postgresql.auto.conf (atomically, keeping
/// its mode and owner) and creates an empty recovery.signal. Values the server would reject are
/// refused here, before anything is written.
pub fn write_recovery_config(pgdata: &Path, settings: &RecoverySettings) -> Result<()> {
    validate(settings)?;
    let dir_meta = fs::metadata(pgdata).map_err(|e| Error::local_io(e, pgdata.display()))?;
    if !dir_meta.is_dir() {
        return Err(Error::local(format!(
            "{}: not a directory",
            pgdata.display()
        )));
    }
    let path = pgdata.join(AUTO_CONF);
    let (existing, owner, mode) = match fs::read(&path) {
        Ok(bytes) => {
            let meta = fs::metadata(&path).map_err(|e| Error::local_io(e, path.display()))?;
            (bytes, (meta.uid(), meta.gid()), meta.mode() & 0o7777)
        }
        // initdb always writes one, but a directory restored from elsewhere may lack it; the
        // server's own default mode for it is 0600.
        Err(e) if e.kind() == IoErrorKind::NotFound => {
            (Vec::new(), (dir_meta.uid(), dir_meta.gid()), 0o600)
        }
        Err(e) => return Err(Error::local_io(e, path.display())),
    };
    let content = render(&existing, settings, &format_utc(crate::clock::now_secs()));
    let tmp = pgdata.join(AUTO_CONF_TMP);
    write_file(&tmp, &content, mode, owner)?;
    fs::rename(&tmp, &path).map_err(|e| {
        Error::local_io(e, format!("rename {} to {}", tmp.display(), path.display()))
    })?;
    // recovery.signal belongs to the data directory's owner like everything in it.
    write_file(
        &pgdata.join(RECOVERY_SIGNAL),
        b"",
        0o600,
        (dir_meta.uid(), dir_meta.gid()),
    )?;
    sync_dir(pgdata)
}

/// The settings [`write_recovery_config`] would append to postgresql.auto.conf, one line each,
/// exactly as written (without the timestamped header line), after the same checks. For
/// `restore --preview`.
pub fn settings_lines(settings: &RecoverySettings) -> Result<Vec<String>> {
    validate(settings)?;
    Ok(block(settings, "")
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect())
}

/// Quotes `arg` as one word for POSIX sh: left bare when it holds only characters the shell
/// gives no meaning to, else single-quoted with each `'` written as `'\''`.
pub fn shell_quote(arg: &str) -> String {
    let bare = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:,+@%".contains(&b));
    if bare {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// One word of a restore_command: shell-quoted, with `%` doubled, because the server replaces
/// `%f`, `%p`, `%r` in the command and reads `%%` as a literal percent sign.
pub fn restore_command_arg(arg: &str) -> String {
    shell_quote(arg).replace('%', "%%")
}

fn validate(settings: &RecoverySettings) -> Result<()> {
    let mut values = vec![("restore_command", settings.restore_command.as_str())];
    if settings.restore_command.trim().is_empty() {
        return Err(Error::usage("restore_command is empty"));
    }
    match &settings.target {
        None | Some(RecoveryTarget::Immediate) => {}
        Some(RecoveryTarget::Time(time)) => {
            if time.trim().is_empty() {
                return Err(Error::usage("the recovery target time is empty"));
            }
            values.push(("recovery target time", time));
        }
        Some(RecoveryTarget::Lsn(lsn)) => {
            lsn.parse::<Lsn>()?;
        }
        Some(RecoveryTarget::Xid(xid)) => {
            target::parse_target_xid(xid)?;
        }
        Some(RecoveryTarget::Name(name)) => {
            target::parse_target_name(name)?;
        }
    }
    if let Some(timeline) = &settings.target_timeline {
        let number = !timeline.is_empty() && timeline.bytes().all(|b| b.is_ascii_digit());
        let valid = timeline == "latest"
            || timeline == "current"
            || (number && timeline.parse::<u32>().is_ok_and(|t| t >= 1));
        if !valid {
            return Err(Error::usage(format!(
                "recovery target timeline {timeline:?} is not \"latest\", \"current\" or a timeline number"
            )));
        }
    }
    // The server reads settings as C strings: a NUL would silently cut the value short.
    for (what, value) in values {
        if value.contains('\0') {
            return Err(Error::usage(format!("{what} contains a NUL character")));
        }
    }
    Ok(())
}

/// The new postgresql.auto.conf: `existing` with our settings disabled and our previous block
/// removed, then a fresh block stamped `stamp`. Works on bytes: the file may hold values in the
/// server's encoding, which need not be UTF-8.
fn render(existing: &[u8], settings: &RecoverySettings, stamp: &str) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(existing.len() + 512);
    let mut in_our_block = false;
    for line in existing.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if body.starts_with(BLOCK_HEADER.as_bytes()) {
            in_our_block = true;
            continue;
        }
        let name = setting_name(body);
        if in_our_block {
            // The block is the header and the settings right after it; the first other line
            // ends it (a user may have appended below, or ALTER SYSTEM rewritten the file).
            if name.as_deref().is_some_and(is_ours_ever) {
                continue;
            }
            in_our_block = false;
        }
        if name.as_deref().is_some_and(|n| is_ours(n, settings)) {
            out.extend_from_slice(DISABLED.as_bytes());
            out.extend_from_slice(body);
            out.push(b'\n');
        } else {
            out.extend_from_slice(body);
            out.push(b'\n');
        }
    }
    // Drop trailing blank lines, so the blank line before the block does not pile up.
    while out.ends_with(b"\n\n") {
        out.pop();
    }
    if out == b"\n" {
        out.clear();
    }
    if !out.is_empty() {
        out.push(b'\n');
    }
    out.extend_from_slice(block(settings, stamp).as_bytes());
    out
}

fn block(settings: &RecoverySettings, stamp: &str) -> String {
    let mut lines = vec![format!("{BLOCK_HEADER} {stamp}")];
    let mut set = |name: &str, value: &str| lines.push(format!("{name} = {}", guc_quote(value)));
    set("restore_command", &settings.restore_command);
    let (target_name, target_value) = match &settings.target {
        None => ("", ""),
        Some(RecoveryTarget::Immediate) => ("recovery_target", "immediate"),
        Some(RecoveryTarget::Time(v)) => ("recovery_target_time", v.as_str()),
        Some(RecoveryTarget::Lsn(v)) => ("recovery_target_lsn", v.as_str()),
        Some(RecoveryTarget::Xid(v)) => ("recovery_target_xid", v.as_str()),
        Some(RecoveryTarget::Name(v)) => ("recovery_target_name", v.as_str()),
    };
    // Every other target setting is cleared, so one left in postgresql.conf cannot add a second
    // target (the server refuses to start) or, with no target of ours, stop recovery early.
    // The cleared ones come first: the server checks for a second target while it applies
    // each setting in file order, and an empty value resets the target it had.
    for name in TARGET_SETTINGS.iter().filter(|n| **n != target_name) {
        set(name, "");
    }
    if !target_name.is_empty() {
        set(target_name, target_value);
    }
    if let Some(action) = settings.target_action {
        let action = match action {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        };
        set("recovery_target_action", action);
    }
    if let Some(timeline) = &settings.target_timeline {
        set("recovery_target_timeline", timeline);
    }
    if settings.archive_mode_off {
        set("archive_mode", "off");
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Whether we own the setting `name` (lower case) in this run: it is disabled where the user set it.
fn is_ours(name: &str, settings: &RecoverySettings) -> bool {
    name == "restore_command"
        || name.starts_with("recovery_target")
        || (settings.archive_mode_off && name == "archive_mode")
}

/// Whether we may have written `name` in an earlier run's block.
fn is_ours_ever(name: &str) -> bool {
    name == "restore_command" || name.starts_with("recovery_target") || name == "archive_mode"
}

/// The setting a configuration line assigns, lower-cased (names are case-insensitive), or None
/// for blank lines, comments, and anything that is not `name [=] value`.
fn setting_name(line: &[u8]) -> Option<String> {
    let line = line.trim_ascii_start();
    let first = *line.first()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let len = line
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'$'))
        .count();
    let (name, rest) = line.split_at(len);
    // What follows the name: whitespace, then '=' or the value.
    match rest.first() {
        None => Some(String::from_utf8_lossy(name).to_ascii_lowercase()),
        Some(b) if b.is_ascii_whitespace() || *b == b'=' || *b == b'\'' => {
            Some(String::from_utf8_lossy(name).to_ascii_lowercase())
        }
        Some(_) => None,
    }
}

/// A value as a single-quoted string in PostgreSQL's configuration file syntax: `'` doubled,
/// backslash escaped (the server reads backslash escapes in quoted values), and line breaks
/// written as escapes since a quoted value cannot span lines.
pub fn guc_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str(r"\\"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Writes `path` whole and durably with exactly `mode`; when running as root, owned by `owner`
/// (for a data directory owned by postgres, a file left root's would be unreadable to the
/// server).
fn write_file(path: &Path, content: &[u8], mode: u32, owner: (u32, u32)) -> Result<()> {
    let io = |e| Error::local_io(e, path.display());
    let mut file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    // The mode given at creation is reduced by the umask, and an existing file keeps its own.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    // Only root may give a file away; anyone else writes files that are already theirs.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root && (meta.uid(), meta.gid()) != owner {
        std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1)).map_err(|e| {
            Error::local_io(
                e,
                format!("give {} to uid {} gid {}", path.display(), owner.0, owner.1),
            )
        })?;
    }
    file.write_all(content).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Makes the renames and creations in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::local_io(e, format!("fsync {}", dir.display())))
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn format_utc(secs: i64) -> String {
    format!("{} UTC", crate::clock::format_utc(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const STAMP: &str = "2026-11-18 11:06:40 UTC";
    const CLEARED_ALL: &str = "recovery_target = ''\n\
        recovery_target_lsn = ''\n\
        recovery_target_name = ''\n\
        recovery_target_time = ''\n\
        recovery_target_xid = ''\n";

    fn settings(target: Option<RecoveryTarget>) -> RecoverySettings {
        RecoverySettings {
            restore_command: "pgcairn archive-get %f %p".into(),
            target,
            target_action: None,
            target_timeline: None,
            archive_mode_off: false,
        }
    }

    fn render_str(existing: &str, settings: &RecoverySettings) -> String {
        String::from_utf8(render(existing.as_bytes(), settings, STAMP)).unwrap()
    }

    #[test]
    fn no_target() {
        let out = render_str("", &settings(None));
        assert_eq!(
            out,
            format!(
                "# Added by pgcairn restore {STAMP}\n\
                 restore_command = 'pgcairn archive-get %f %p'\n{CLEARED_ALL}"
            )
        );
    }

    #[test]
    fn each_target_kind() {
        let cases = [
            (RecoveryTarget::Immediate, "recovery_target = 'immediate'"),
            (
                RecoveryTarget::Time("2026-01-02 03:04:05+00".into()),
                "recovery_target_time = '2026-01-02 03:04:05+00'",
            ),
            (
                RecoveryTarget::Lsn("0/3000060".into()),
                "recovery_target_lsn = '0/3000060'",
            ),
            (
                RecoveryTarget::Xid("7461".into()),
                "recovery_target_xid = '7461'",
            ),
            (
                RecoveryTarget::Name("before upgrade".into()),
                "recovery_target_name = 'before upgrade'",
            ),
        ];
        for (target, line) in cases {
            let (name, _) = line.split_once(" = ").unwrap();
            let cleared: String = TARGET_SETTINGS
                .iter()
                .filter(|n| **n != name)
                .map(|n| format!("{n} = ''\n"))
                .collect();
            let out = render_str("", &settings(Some(target)));
            assert_eq!(
                out,
                format!(
                    "# Added by pgcairn restore {STAMP}\n\
                     restore_command = 'pgcairn archive-get %f %p'\n{cleared}{line}\n"
                )
            );
            // Exactly one target is set to a value.
            let set: Vec<&str> = out
                .lines()
                .filter(|l| l.starts_with("recovery_target") && !l.ends_with("= ''"))
                .collect();
            assert_eq!(set, [line]);
        }
    }

    #[test]
    fn preview_lines_are_the_block_without_its_header() {
        let s = settings(Some(RecoveryTarget::Lsn("0/3000060".into())));
        let lines = settings_lines(&s).unwrap();
        let block = render_str("", &s);
        assert_eq!(lines.join("\n") + "\n", block.split_once('\n').unwrap().1);
        assert!(settings_lines(&settings(Some(RecoveryTarget::Lsn("x".into())))).is_err());
    }

    #[test]
    fn action_timeline_and_archive_mode() {
        let mut s = settings(Some(RecoveryTarget::Immediate));
        s.target_action = Some(TargetAction::Promote);
        s.target_timeline = Some("latest".into());
        s.archive_mode_off = true;
        let out = render_str("", &s);
        assert!(out.ends_with(
            "recovery_target = 'immediate'\n\
             recovery_target_action = 'promote'\n\
             recovery_target_timeline = 'latest'\n\
             archive_mode = 'off'\n"
        ));
        for (action, word) in [
            (TargetAction::Pause, "pause"),
            (TargetAction::Shutdown, "shutdown"),
        ] {
            s.target_action = Some(action);
            assert!(render_str("", &s).contains(&format!("recovery_target_action = '{word}'\n")));
        }
    }

    #[test]
    fn quoting_of_paths_with_spaces_and_quotes() {
        let repo = "/srv/my backups/it's here";
        let word = restore_command_arg(repo);
        assert_eq!(word, r"'/srv/my backups/it'\''s here'");
        let command = format!("/usr/bin/pgcairn archive-get %f %p --repo {word}");
        let mut s = settings(None);
        s.restore_command = command.clone();
        let out = render_str("", &s);
        // In the file: quotes doubled, the backslash escaped.
        assert!(out.contains(
            r"restore_command = '/usr/bin/pgcairn archive-get %f %p --repo ''/srv/my backups/it''\\''''s here'''"
        ));
        // And sh, given the command as the server passes it, sees the path as one word.
        let run = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {word}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(run.stdout).unwrap(), format!("{repo}\n"));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/usr/bin/pgcairn"), "/usr/bin/pgcairn");
        assert_eq!(shell_quote("s3://bucket/prefix"), "s3://bucket/prefix");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("a=b"), "'a=b'");
        assert_eq!(shell_quote("~user"), "'~user'");
        assert_eq!(shell_quote("x;rm -rf /"), "'x;rm -rf /'");
        assert_eq!(restore_command_arg("/data/100%"), "/data/100%%");
        assert_eq!(restore_command_arg("/a b/%f"), "'/a b/%%f'");
    }

    #[test]
    fn guc_quoting() {
        assert_eq!(guc_quote(""), "''");
        assert_eq!(guc_quote("it's"), "'it''s'");
        assert_eq!(guc_quote(r"C:\path"), r"'C:\\path'");
        assert_eq!(guc_quote("a\nb\rc\td"), "'a\\nb\\rc\td'");
    }

    #[test]
    fn existing_settings_are_disabled_and_others_kept() {
        let existing = "# Do not edit this file manually!\n\
             # It will be overwritten by the ALTER SYSTEM command.\n\
             work_mem = '64MB'\n\
             restore_command = 'cp /old/%f %p'\n\
             \x20 Recovery_Target_Time='2020-01-01'\n\
             recovery_target_inclusive = off\n\
             recovery_target_action = 'pause'\n\
             recovery_target_timeline = '2'\n\
             archive_mode = on\n\
             archive_command = 'cp %p /old/%f'\n\
             restore_command_extra_thing = 1\n\
             # restore_command = 'already a comment'\n\
             \n";
        let mut s = settings(Some(RecoveryTarget::Lsn("0/5000028".into())));
        s.archive_mode_off = true;
        let out = render_str(existing, &s);
        let expected_head = "# Do not edit this file manually!\n\
             # It will be overwritten by the ALTER SYSTEM command.\n\
             work_mem = '64MB'\n\
             # Disabled by pgcairn restore: restore_command = 'cp /old/%f %p'\n\
             # Disabled by pgcairn restore:   Recovery_Target_Time='2020-01-01'\n\
             # Disabled by pgcairn restore: recovery_target_inclusive = off\n\
             # Disabled by pgcairn restore: recovery_target_action = 'pause'\n\
             # Disabled by pgcairn restore: recovery_target_timeline = '2'\n\
             # Disabled by pgcairn restore: archive_mode = on\n\
             archive_command = 'cp %p /old/%f'\n\
             restore_command_extra_thing = 1\n\
             # restore_command = 'already a comment'\n\
             \n\
             # Added by pgcairn restore ";
        assert!(out.starts_with(expected_head), "{out}");
        assert!(
            out.ends_with("recovery_target_lsn = '0/5000028'\narchive_mode = 'off'\n"),
            "{out}"
        );
        // Without archive_mode_off the user's archive_mode stays.
        let out = render_str("archive_mode = on\n", &settings(None));
        assert!(out.starts_with("archive_mode = on\n\n# Added"), "{out}");
    }

    #[test]
    fn idempotent_across_runs() {
        let existing = "work_mem = '64MB'\nrestore_command = 'cp /old/%f %p'\n";
        let mut s = settings(Some(RecoveryTarget::Name("x".into())));
        s.archive_mode_off = true;
        s.target_action = Some(TargetAction::Promote);
        let once = render(existing.as_bytes(), &s, STAMP);
        let twice = render(&once, &s, STAMP);
        assert_eq!(
            String::from_utf8_lossy(&twice),
            String::from_utf8_lossy(&once)
        );
        // A second run with other settings replaces the block rather than adding to it.
        let other = settings(None);
        let changed = render(&once, &other, STAMP);
        assert_eq!(changed, render(existing.as_bytes(), &other, STAMP));
        // Including our archive_mode line, although this run does not set it.
        assert!(!String::from_utf8_lossy(&changed).contains("archive_mode"));
    }

    #[test]
    fn a_line_after_our_block_ends_it() {
        let first = render(b"", &settings(None), STAMP);
        let mut edited = first.clone();
        edited.extend_from_slice(b"shared_buffers = '1GB'\n");
        let out = String::from_utf8(render(&edited, &settings(None), STAMP)).unwrap();
        assert!(
            out.starts_with("shared_buffers = '1GB'\n\n# Added by pgcairn restore"),
            "{out}"
        );
        assert_eq!(out.matches("# Added by pgcairn").count(), 1);
    }

    #[test]
    fn non_utf8_lines_survive() {
        let existing = b"application_name = 'caf\xe9'\nrestore_command = 'x'\n";
        let out = render(existing, &settings(None), STAMP);
        assert!(out.starts_with(
            b"application_name = 'caf\xe9'\n# Disabled by pgcairn restore: restore_command = 'x'\n"
        ));
    }

    #[test]
    fn setting_names() {
        assert_eq!(setting_name(b"work_mem = 1").as_deref(), Some("work_mem"));
        assert_eq!(setting_name(b"  Work_Mem=1").as_deref(), Some("work_mem"));
        assert_eq!(setting_name(b"\twork_mem 1").as_deref(), Some("work_mem"));
        assert_eq!(
            setting_name(b"ext.setting = 'x'").as_deref(),
            Some("ext.setting")
        );
        assert_eq!(
            setting_name(b"restore_command='x'").as_deref(),
            Some("restore_command")
        );
        assert_eq!(setting_name(b"# restore_command = 'x'"), None);
        assert_eq!(setting_name(b""), None);
        assert_eq!(setting_name(b"   "), None);
        assert_eq!(setting_name(b"1abc = 2"), None);
        assert_eq!(setting_name(b"abc-def = 2"), None);
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = [
            settings(Some(RecoveryTarget::Lsn("0/".into()))),
            settings(Some(RecoveryTarget::Lsn("0/123456789".into()))),
            settings(Some(RecoveryTarget::Lsn("G/1".into()))),
            settings(Some(RecoveryTarget::Xid("12a".into()))),
            settings(Some(RecoveryTarget::Xid("".into()))),
            settings(Some(RecoveryTarget::Name("".into()))),
            settings(Some(RecoveryTarget::Name("n".repeat(64)))),
            settings(Some(RecoveryTarget::Name("a\0b".into()))),
            settings(Some(RecoveryTarget::Time(" ".into()))),
            RecoverySettings {
                restore_command: " ".into(),
                ..settings(None)
            },
            RecoverySettings {
                restore_command: "a\0b".into(),
                ..settings(None)
            },
            RecoverySettings {
                target_timeline: Some("newest".into()),
                ..settings(None)
            },
            RecoverySettings {
                target_timeline: Some("0".into()),
                ..settings(None)
            },
        ];
        for s in bad {
            let err = validate(&s).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage, "{s:?}");
        }
        for timeline in ["latest", "current", "1", "42"] {
            let s = RecoverySettings {
                target_timeline: Some(timeline.into()),
                ..settings(Some(RecoveryTarget::Lsn("AB/CDEF0123".into())))
            };
            validate(&s).unwrap();
        }
    }

    #[test]
    fn writes_files_atomically_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join(AUTO_CONF);
        fs::write(&conf, "work_mem = '64MB'\nrestore_command = 'old'\n").unwrap();
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o640)).unwrap();
        let s = settings(Some(RecoveryTarget::Immediate));
        write_recovery_config(dir.path(), &s).unwrap();
        let text = fs::read_to_string(&conf).unwrap();
        assert!(text.starts_with(
            "work_mem = '64MB'\n# Disabled by pgcairn restore: restore_command = 'old'\n"
        ));
        assert!(text.contains("recovery_target = 'immediate'\n"));
        assert_eq!(fs::metadata(&conf).unwrap().mode() & 0o7777, 0o640);
        let signal = dir.path().join(RECOVERY_SIGNAL);
        assert_eq!(fs::read(&signal).unwrap(), b"");
        assert_eq!(fs::metadata(&signal).unwrap().mode() & 0o7777, 0o600);
        assert!(!dir.path().join(AUTO_CONF_TMP).exists());
        // Again: same content apart from the stamp.
        write_recovery_config(dir.path(), &s).unwrap();
        let again = fs::read_to_string(&conf).unwrap();
        let strip = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with(BLOCK_HEADER))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&again), strip(&text));
        assert_eq!(again.matches(BLOCK_HEADER).count(), 1);
        // A missing file is created 0600.
        fs::remove_file(&conf).unwrap();
        write_recovery_config(dir.path(), &s).unwrap();
        assert_eq!(fs::metadata(&conf).unwrap().mode() & 0o7777, 0o600);
        assert!(fs::read_to_string(&conf).unwrap().starts_with(BLOCK_HEADER));
    }

    #[test]
    fn refuses_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(Some(RecoveryTarget::Lsn("nope".into())));
        assert_eq!(
            write_recovery_config(dir.path(), &s).unwrap_err().kind(),
            ErrorKind::Usage
        );
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
        let missing = dir.path().join("missing");
        assert_eq!(
            write_recovery_config(&missing, &settings(None))
                .unwrap_err()
                .kind(),
            ErrorKind::Local
        );
    }

    #[test]
    fn utc_stamp() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
