//! Background workers (archive-get's prefetch, archive-push --async): started detached, so
//! they neither delay the command the server waits for nor die with it.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::GlobalOptions;
use crate::error::{Error, Result};

/// Starts `pgcairn <global options> <args>` and returns at once. The worker gets no terminal and
/// no pipe of ours (its output goes to `log`) and its own process group, so signals the server
/// sends to its command's group do not reach it.
pub fn spawn_detached(global: &GlobalOptions, log: &Path, args: &[OsString]) -> Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::local(format!("finding pgcairn's own executable: {e}")))?;
    let out = File::create(log).map_err(Error::io_at("creating", log))?;
    let err = out.try_clone().map_err(Error::io_at("opening", log))?;
    // Not waited for: it outlives this process, which is what it is for.
    Command::new(&exe)
        .args(global.to_args())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::local(format!("starting {}: {e}", exe.display())))?;
    Ok(())
}
