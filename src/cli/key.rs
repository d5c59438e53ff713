//! `pgcairn key add|list|remove|passwd`: manage the passwords that unlock the repository.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{GlobalOptions, password};
use crate::error::Result;
use crate::repo::id::KeyId;

#[derive(Subcommand, Debug, Clone)]
pub enum KeyCommand {
    /// Add a password: a new key file wrapping the same master keys.
    #[command(after_help = "\
Example:
  pgcairn key add --repo /backup/pgcairn --password-file ~/.pgcairn-pass \\
      --new-password-file ~/.pgcairn-pass-ops

The current password (from --password-file, PGCAIRN_PASSWORD_FILE, PGCAIRN_PASSWORD or a prompt)
opens the repository; the new one is read from --new-password-file or asked twice on the terminal.")]
    Add(NewPasswordArgs),

    /// List the keys: id, creation time, host and user that created each.
    #[command(after_help = "\
Examples:
  pgcairn key list --repo /backup/pgcairn --password-file ~/.pgcairn-pass
  pgcairn key list --json | jq -r '.keys[] | select(.in_use | not) | .id'

The key this command was opened with is marked with '*' (`in_use` in --json).")]
    List(ListArgs),

    /// Remove a key (by id or a unique prefix of it).
    #[command(after_help = "\
Example:
  pgcairn key remove 3f9a12bc --repo /backup/pgcairn --password-file ~/.pgcairn-pass-ops

Refuses to remove the last key, and the key the command was opened with (open with another
password to remove it, or use `key passwd` to replace it).")]
    Remove(RemoveArgs),

    /// Change the password of the key in use (a new key file replaces it).
    #[command(after_help = "\
Example:
  pgcairn key passwd --repo /backup/pgcairn --password-file ~/.pgcairn-pass \\
      --new-password-file ~/.pgcairn-pass-2026

The new key file is written and made durable before the old one is removed.")]
    Passwd(NewPasswordArgs),
}

#[derive(Args, Debug, Clone)]
pub struct NewPasswordArgs {
    /// Read the new password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,

    /// Print the ids of the key added and the key removed as one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Print one JSON object for scripts: {"keys": [...]} (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RemoveArgs {
    /// Key id, or a unique prefix of it.
    pub id: String,

    /// Print the id of the key removed as one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// What `key add`, `key passwd` and `key remove` changed, for people or as JSON (one shape for
/// the three, so that a script handles them alike).
fn report_change(global: &GlobalOptions, json: bool, added: Option<KeyId>, removed: Option<KeyId>) {
    if json {
        let value = serde_json::json!({
            "added": added.map(|id| id.to_hex()),
            "removed": removed.map(|id| id.to_hex()),
        });
        println!("{value}");
        return;
    }
    if global.quiet {
        return;
    }
    match (added, removed) {
        (Some(new), Some(old)) => println!("replaced key {} by key {}", old.short(), new.short()),
        (Some(new), None) => println!("added key {}", new.short()),
        (None, Some(old)) => println!("removed key {}", old.short()),
        (None, None) => {}
    }
}

pub fn run(global: &GlobalOptions, command: &KeyCommand) -> Result<()> {
    let mut repo = global.open_repository()?;
    match command {
        KeyCommand::Add(args) => {
            let new = password::new(args.new_password_file.as_deref(), "new password")?;
            let id = repo.add_key(&new, password::kdf_for_new_key()?)?;
            report_change(global, args.json, Some(id), None);
        }
        KeyCommand::Passwd(args) => {
            let new = password::new(args.new_password_file.as_deref(), "new password")?;
            let old = repo.key_in_use();
            let id = repo.change_password(&new, password::kdf_for_new_key()?)?;
            report_change(global, args.json, Some(id), Some(old));
        }
        KeyCommand::Remove(args) => {
            let id = repo.find_key(&args.id)?;
            repo.remove_key(&id)?;
            report_change(global, args.json, None, Some(id));
        }
        KeyCommand::List(args) => {
            let keys = repo.list_keys()?;
            if args.json {
                // Every key has every field: null where its description did not decrypt.
                let rows: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|k| {
                        let d = k.description.as_ref().ok();
                        serde_json::json!({
                            "id": k.id.to_hex(),
                            "in_use": k.in_use,
                            "created": d.map(|d| crate::clock::format_utc(d.created)),
                            "created_ns": d.map(|d| d.created.saturating_mul(1_000_000_000)),
                            "hostname": d.map(|d| &d.hostname),
                            "username": d.map(|d| &d.username),
                            "error": k.description.as_ref().err(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "keys": rows }));
            } else {
                println!("  {:<10} {:<20} {:<24} user", "id", "created (UTC)", "host");
                for k in keys {
                    let mark = if k.in_use { '*' } else { ' ' };
                    match k.description {
                        Ok(d) => println!(
                            "{mark} {:<10} {:<20} {:<24} {}",
                            k.id.short(),
                            crate::clock::format_utc(d.created),
                            d.hostname,
                            d.username
                        ),
                        Err(e) => println!("{mark} {:<10} unreadable: {e}", k.id.short()),
                    }
                }
            }
        }
    }
    Ok(())
}
