//! Where passwords come from: a file, the environment, or a prompt on the terminal, never the
//! command line (where other users could read it in the process list).

use std::io::IsTerminal;
use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::{KdfParams, kdf::TEST_KDF_ENV};
use crate::error::{Error, ErrorKind, Result};

pub type Password = Zeroizing<Vec<u8>>;

/// Reads the first line of a password file.
pub fn from_file(path: &Path) -> Result<Password> {
    let contents = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::Password,
            format!("password file {}: {e}", path.display()),
        )
    })?);
    let line = contents.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    non_empty(
        Zeroizing::new(line.to_vec()),
        &format!("password file {}", path.display()),
    )
}

fn non_empty(password: Password, source: &str) -> Result<Password> {
    if password.is_empty() {
        return Err(Error::new(
            ErrorKind::Password,
            format!("{source}: the password is empty"),
        ));
    }
    Ok(password)
}

fn prompt(question: &str) -> Result<Password> {
    rpassword::prompt_password(question)
        .map(|p| Zeroizing::new(p.into_bytes()))
        .map_err(|e| Error::new(ErrorKind::Password, format!("reading the password: {e}")))
}

/// Where one repository's password is looked for, in order: a file option, an environment
/// variable, then a prompt on the terminal.
pub struct Source<'a> {
    /// `--password-file` and its environment variable, as resolved by clap.
    pub file: Option<&'a Path>,
    /// The environment variable that holds the password itself.
    pub env: &'static str,
    /// What the prompt asks for.
    pub prompt: &'static str,
    /// The options to name when no source gave a password.
    pub options: &'static str,
}

impl Source<'_> {
    /// The password: from the file, else the environment variable, else a prompt if there is
    /// a terminal.
    pub fn read(&self) -> Result<Password> {
        if let Some(path) = self.file {
            return from_file(path);
        }
        if let Some(value) = std::env::var_os(self.env) {
            return non_empty(Zeroizing::new(value.into_encoded_bytes()), self.env);
        }
        if std::io::stdin().is_terminal() {
            return non_empty(prompt(&format!("{}: ", self.prompt))?, "prompt");
        }
        Err(Error::new(
            ErrorKind::Password,
            format!(
                "no {}: use {} (no terminal to prompt on)",
                self.prompt, self.options
            ),
        ))
    }
}

/// The password that opens the repository: `--password-file`/`PGCAIRN_PASSWORD_FILE`, then
/// `PGCAIRN_PASSWORD`, then a prompt if there is a terminal.
pub fn current(password_file: Option<&Path>) -> Result<Password> {
    Source {
        file: password_file,
        env: "PGCAIRN_PASSWORD",
        prompt: "repository password",
        options: "--password-file, PGCAIRN_PASSWORD_FILE or PGCAIRN_PASSWORD",
    }
    .read()
}

/// A new password: from `file` if given, else asked twice on the terminal.
pub fn new(file: Option<&Path>, what: &str) -> Result<Password> {
    if let Some(path) = file {
        return from_file(path);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::new(
            ErrorKind::Password,
            format!("no {what}: use --new-password-file (no terminal to prompt on)"),
        ));
    }
    let first = non_empty(prompt(&format!("{what}: "))?, "prompt")?;
    let second = prompt(&format!("{what} again: "))?;
    if first != second {
        return Err(Error::new(
            ErrorKind::Password,
            "the passwords do not match",
        ));
    }
    Ok(first)
}

/// Argon2id parameters for a new key, saying so when the test-only setting is in force.
pub fn kdf_for_new_key() -> Result<KdfParams> {
    let params = KdfParams::for_new_key()?;
    if params == KdfParams::INSECURE_FOR_TESTS {
        eprintln!("warning: {TEST_KDF_ENV}=1: the new key uses test-only Argon2id parameters");
    }
    Ok(params)
}

/// The password for a new repository: from the usual sources, or asked twice on the terminal.
pub fn for_init(password_file: Option<&Path>) -> Result<Password> {
    if password_file.is_some() || std::env::var_os("PGCAIRN_PASSWORD").is_some() {
        return current(password_file);
    }
    new(None, "new repository password")
}
