//! Reading an archive_command as the server runs it: `%p`, `%f` and `%%` are replaced, then
//! the result goes to `sh -c`. This follows enough of the shell to find which programs run and
//! with which arguments; a command that needs more (variables, substitutions, subshells) is
//! opaque, and [`simple_commands`] says so instead of guessing.

/// One simple command: `NAME=value` assignments, then the words it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimpleCommand {
    pub assignments: Vec<(String, String)>,
    pub words: Vec<String>,
}

/// A program as a command runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The program word, as written (`/usr/local/bin/pgcairn`).
    pub program: String,
    /// Environment the command sets for it (`NAME=value` before it, or through `env`).
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Invocation {
    /// The value of `NAME` in the command's own environment for the program.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The simple commands of `command` (separated by `;`, `&`, `&&`, `||`, `|` or newlines),
/// with quotes removed and `%%` read as `%` (`%p` and `%f` stay as they are). None when the
/// command uses what this reader does not follow: `$` expansions, backquotes, a leading `~`,
/// parentheses, unbalanced quotes.
pub fn simple_commands(command: &str) -> Option<Vec<SimpleCommand>> {
    let text = command.replace("%%", "%");
    let mut lexer = Lexer::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => lexer.end_word(),
            '\n' | ';' | '&' | '|' => {
                // `&&` and `||` separate like `;` here; `>&` is handled with redirections.
                if matches!(c, '&' | '|') && chars.peek() == Some(&c) {
                    chars.next();
                }
                lexer.end_command();
            }
            '<' | '>' => {
                // A redirection: an fd number just before it is no word, nor is its target.
                if lexer.word.text.bytes().all(|b| b.is_ascii_digit()) {
                    lexer.word = Word::default();
                }
                lexer.end_word();
                while chars.next_if(|n| matches!(n, '<' | '>' | '&')).is_some() {}
                lexer.skip_next_word = true;
            }
            '(' | ')' | '$' | '`' => return None,
            '~' if lexer.word.is_empty() => return None,
            '#' if lexer.word.is_empty() => while chars.next_if(|n| *n != '\n').is_some() {},
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(escaped) => lexer.word.push_quoted(escaped),
                None => return None,
            },
            '\'' => {
                lexer.word.started = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        quoted => lexer.word.push_quoted(quoted),
                    }
                }
            }
            '"' => {
                lexer.word.started = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' => return None,
                        '\\' => match chars.next()? {
                            '\n' => {}
                            special @ ('$' | '`' | '"' | '\\') => lexer.word.push_quoted(special),
                            other => {
                                lexer.word.push_quoted('\\');
                                lexer.word.push_quoted(other);
                            }
                        },
                        quoted => lexer.word.push_quoted(quoted),
                    }
                }
            }
            plain => lexer.word.push_plain(plain),
        }
    }
    lexer.end_command();
    Some(lexer.commands)
}

/// The first simple command among `commands` that runs a program whose file name is `name`
/// (directly, or after `exec`, `command`, `nohup` or `env NAME=value ...`).
pub fn invocation_of(commands: &[SimpleCommand], name: &str) -> Option<Invocation> {
    commands.iter().find_map(|command| {
        let mut env = command.assignments.clone();
        let mut words = command.words.iter().peekable();
        while words
            .next_if(|w| matches!(w.as_str(), "exec" | "command" | "nohup"))
            .is_some()
        {}
        if words.next_if(|w| *w == "env").is_some() {
            while let Some(word) = words.next_if(|w| w.starts_with('-') || assignment(w).is_some())
            {
                if let Some((n, v)) = assignment(word) {
                    env.push((n.to_string(), v.to_string()));
                }
            }
        }
        let program = words.next()?;
        // The text after the last `/`, as the shell takes it: `Path::file_name` would also
        // accept `pgcairn/`, which names a directory, not the program.
        (program.rsplit('/').next() == Some(name)).then(|| Invocation {
            program: program.clone(),
            env,
            args: words.cloned().collect(),
        })
    })
}

/// `NAME=value` split, when `word` has that shape.
fn assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let mut bytes = name.bytes();
    let first = bytes.next()?;
    let valid = (first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some((name, value))
}

/// A word being read, and whether it may be an assignment: only when the `NAME=` before its
/// first `=` was written without quotes.
#[derive(Default)]
struct Word {
    text: String,
    /// Something was read, if only an empty pair of quotes.
    started: bool,
    quoted_before_equals: bool,
}

impl Word {
    fn is_empty(&self) -> bool {
        !self.started && self.text.is_empty()
    }

    fn push_plain(&mut self, c: char) {
        self.started = true;
        self.text.push(c);
    }

    fn push_quoted(&mut self, c: char) {
        self.started = true;
        if !self.text.contains('=') {
            self.quoted_before_equals = true;
        }
        self.text.push(c);
    }
}

#[derive(Default)]
struct Lexer {
    commands: Vec<SimpleCommand>,
    current: SimpleCommand,
    word: Word,
    /// The next word is a redirection's target.
    skip_next_word: bool,
}

impl Lexer {
    fn end_word(&mut self) {
        let word = std::mem::take(&mut self.word);
        if word.is_empty() {
            return;
        }
        if std::mem::take(&mut self.skip_next_word) {
            return;
        }
        let assigns = self.current.words.is_empty() && !word.quoted_before_equals;
        match assignment(&word.text).filter(|_| assigns) {
            Some((name, value)) => self
                .current
                .assignments
                .push((name.to_string(), value.to_string())),
            None => self.current.words.push(word.text),
        }
    }

    fn end_command(&mut self) {
        self.end_word();
        let command = std::mem::take(&mut self.current);
        if !command.words.is_empty() || !command.assignments.is_empty() {
            self.commands.push(command);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(command: &str) -> Vec<Vec<String>> {
        simple_commands(command)
            .unwrap_or_else(|| panic!("{command} is opaque"))
            .into_iter()
            .map(|c| c.words)
            .collect()
    }

    #[test]
    fn quotes_escapes_and_percent_signs() {
        assert_eq!(
            words(
                r#"/usr/bin/pgcairn --repo "/srv/my backups" --password-file '/etc/it''s' archive-push %p"#
            ),
            [[
                "/usr/bin/pgcairn",
                "--repo",
                "/srv/my backups",
                "--password-file",
                "/etc/its",
                "archive-push",
                "%p"
            ]]
        );
        assert_eq!(
            words(r#"pgcairn --repo=/data/100%%\ full "a\"b" "c\d" ''"#),
            [["pgcairn", "--repo=/data/100% full", "a\"b", "c\\d", ""]]
        );
    }

    #[test]
    fn commands_are_split_at_operators_and_redirections_dropped() {
        assert_eq!(
            words("test ! -f /a/%f && cp %p /a/%f; echo done 2>&1 >>/tmp/log || true"),
            vec![
                vec!["test", "!", "-f", "/a/%f"],
                vec!["cp", "%p", "/a/%f"],
                vec!["echo", "done"],
                vec!["true"],
            ]
        );
        assert_eq!(words("a # b c\nd"), vec![vec!["a"], vec!["d"]]);
    }

    #[test]
    fn assignments_only_lead_a_command_and_only_unquoted() {
        let commands =
            simple_commands("PGCAIRN_REPO=/r X='y z' pgcairn A=b archive-push %p").unwrap();
        assert_eq!(
            commands[0].assignments,
            [
                ("PGCAIRN_REPO".to_string(), "/r".to_string()),
                ("X".to_string(), "y z".to_string())
            ]
        );
        assert_eq!(commands[0].words, ["pgcairn", "A=b", "archive-push", "%p"]);
        let commands = simple_commands("'A=b' run").unwrap();
        assert_eq!(commands[0].words, ["A=b", "run"]);
    }

    #[test]
    fn what_is_not_followed_is_opaque() {
        for command in [
            "pgcairn --repo $REPO archive-push %p",
            "pgcairn --repo \"${REPO}\" archive-push %p",
            "pgcairn --repo `cat /etc/repo` archive-push %p",
            "(cd /x && pgcairn archive-push %p)",
            "pgcairn --repo ~/repo archive-push %p",
            "pgcairn --repo '/unterminated archive-push %p",
        ] {
            assert_eq!(simple_commands(command), None, "{command}");
        }
        // Quoted, they are plain characters.
        assert_eq!(words("echo '$HOME' a~b"), [["echo", "$HOME", "a~b"]]);
    }

    #[test]
    fn the_program_is_found_behind_wrappers() {
        let commands = simple_commands(
            "test -d /x && exec env -i PGCAIRN_CONFIG=/etc/p.toml /opt/bin/pgcairn archive-push %p",
        )
        .unwrap();
        let found = invocation_of(&commands, "pgcairn").unwrap();
        assert_eq!(found.program, "/opt/bin/pgcairn");
        assert_eq!(found.env_var("PGCAIRN_CONFIG"), Some("/etc/p.toml"));
        assert_eq!(found.args, ["archive-push", "%p"]);

        let commands = simple_commands("R=1 pgcairn-wrapper %p; cp %p /x").unwrap();
        assert_eq!(invocation_of(&commands, "pgcairn"), None);
        // A trailing slash names a directory, which the shell cannot run (found by fuzzing).
        let commands = simple_commands("'pgcairn'/ archive-push %p").unwrap();
        assert_eq!(invocation_of(&commands, "pgcairn"), None);
    }
}
