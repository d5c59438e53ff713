//! `pgcairn key add|list|remove|passwd`: manage the passwords that unlock the repository.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{GlobalOptions, password};
use crate::error::Result;

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
Example:
  pgcairn key list --repo /backup/pgcairn --password-file ~/.pgcairn-pass

The key this command was opened with is marked with '*'.")]
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
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RemoveArgs {
    /// Key id, or a unique prefix of it.
    pub id: String,
}

pub fn run(global: &GlobalOptions, command: &KeyCommand) -> Result<()> {
    let mut repo = global.open_repository()?;
    match command {
        KeyCommand::Add(args) => {
            let new = password::new(args.new_password_file.as_deref(), "new password")?;
            let id = repo.add_key(&new, password::kdf_for_new_key()?)?;
            if !global.quiet {
                println!("added key {}", id.short());
            }
        }
        KeyCommand::Passwd(args) => {
            let new = password::new(args.new_password_file.as_deref(), "new password")?;
            let old = repo.key_in_use();
            let id = repo.change_password(&new, password::kdf_for_new_key()?)?;
            if !global.quiet {
                println!("replaced key {} by key {}", old.short(), id.short());
            }
        }
        KeyCommand::Remove(args) => {
            let id = repo.find_key(&args.id)?;
            repo.remove_key(&id)?;
            if !global.quiet {
                println!("removed key {}", id.short());
            }
        }
        KeyCommand::List(args) => {
            let keys = repo.list_keys()?;
            if args.json {
                let rows: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|k| {
                        let mut row =
                            serde_json::json!({ "id": k.id.to_hex(), "in_use": k.in_use });
                        match &k.description {
                            Ok(d) => {
                                row["created"] = d.created.into();
                                row["hostname"] = d.hostname.clone().into();
                                row["username"] = d.username.clone().into();
                            }
                            Err(e) => row["error"] = e.clone().into(),
                        }
                        row
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
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
