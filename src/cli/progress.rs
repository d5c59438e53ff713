//! Progress on a terminal: one line on stderr, redrawn at most a few times a second, and
//! nothing at all when stderr is not a terminal or `--quiet` was given.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    last_draw: Option<Instant>,
    drew: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            last_draw: None,
            drew: false,
        }
    }

    /// Shows `line` unless one was shown less than 200 ms ago.
    pub fn update(&mut self, line: impl FnOnce() -> String) {
        if !self.enabled
            || self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        self.drew = true;
        let _ = write!(std::io::stderr(), "\r\x1b[K{}", line());
    }

    /// Clears the line so the final report starts clean.
    pub fn finish(&mut self) {
        if self.drew {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drew = false;
        }
    }
}
