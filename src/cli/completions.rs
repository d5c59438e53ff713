//! `pgcairn completions SHELL`: a completion script for the shell, generated from the same
//! clap definitions that parse the command line, so it cannot fall behind them.

use std::io::Write;

use clap::{Args, Command};
use clap_complete::Shell;

use crate::error::{Error, Result};

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  # bash, for every user (or ~/.local/share/bash-completion/completions/pgcairn for yourself):
  pgcairn completions bash > /usr/share/bash-completion/completions/pgcairn
  # zsh: a directory on $fpath, then `autoload -U compinit && compinit` in ~/.zshrc
  pgcairn completions zsh > /usr/local/share/zsh/site-functions/_pgcairn
  # fish
  pgcairn completions fish > ~/.config/fish/completions/pgcairn.fish
  # elvish, PowerShell: add the output to rc.elv or $PROFILE
  pgcairn completions powershell >> $PROFILE

The script completes subcommands and options (`pgcairn backup --pg<TAB>` gives --pgdata);
regenerate it after upgrading pgcairn.")]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script for `command` (the whole `pgcairn` command tree) to stdout.
pub fn run(command: Command, args: &CompletionsArgs) -> Result<()> {
    let mut command = without_hidden(&command);
    let name = command.get_name().to_owned();
    // Generated in memory: clap_complete panics on a failed write, and a closed pipe
    // (`pgcairn completions bash | head`) is an error to report, not a crash.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Error::local_io(e, "writing the completion script to stdout"))
}

/// `command` without its hidden subcommands: clap_complete offers every subcommand, and the
/// internal ones (the archive-push worker, archive-get's queue filler) are not for typing.
/// clap cannot remove a subcommand, so a command that has hidden ones is rebuilt from what
/// completion uses (arguments, groups, about, version); others are kept whole. Takes the
/// command before clap has built it, so that the rebuilt one adds --help and --version once.
fn without_hidden(command: &Command) -> Command {
    if !command.get_subcommands().any(Command::is_hide_set) {
        return command.clone();
    }
    let mut visible = Command::new(command.get_name().to_owned())
        .args(command.get_arguments().cloned())
        .groups(command.get_groups().cloned())
        .subcommands(
            command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .map(without_hidden),
        );
    if let Some(about) = command.get_about() {
        visible = visible.about(about.clone());
    }
    if let Some(version) = command.get_version() {
        visible = visible.version(version.to_owned());
    }
    visible
}
