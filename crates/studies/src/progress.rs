//! Progress: a bar on stderr when it is a terminal; off a terminal (a log, a pipe, a batch
//! job) one line per stage instead — "started" when it begins and "done in T" when it ends —
//! so a user who pipes `dlt reproduce` to a file sees where it is. `quiet` (under `--json`)
//! silences both.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// Whether stage lines are printed: not quiet and stderr is not a terminal.
fn lines(quiet: bool) -> bool {
    !quiet && !std::io::stderr().is_terminal()
}

/// "12.3 s" or "4 min 05 s".
pub fn fmt_duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let s = seconds.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

/// A named stage of long work; off a terminal it prints a line when it starts and when it ends.
pub struct Stage {
    name: String,
    t0: Instant,
    lines: bool,
}

impl Stage {
    /// Begin a stage ("[dlt] NAME: started").
    pub fn start(name: &str, quiet: bool) -> Self {
        let s = Stage {
            name: name.into(),
            t0: Instant::now(),
            lines: lines(quiet),
        };
        if s.lines {
            eprintln!("[dlt] {name}: started");
        }
        s
    }

    /// One line about a stage that does no work (e.g. a reused result), off a terminal.
    pub fn note(name: &str, what: &str, quiet: bool) {
        if lines(quiet) {
            eprintln!("[dlt] {name}: {what}");
        }
    }

    /// End the stage ("[dlt] NAME: done in T (outcome)").
    pub fn finish(self, outcome: &str) {
        if self.lines {
            eprintln!(
                "[dlt] {}: done in {} ({outcome})",
                self.name,
                fmt_duration(self.t0.elapsed().as_secs_f64())
            );
        }
    }
}

/// A progress bar of `len` steps: drawn on a terminal, a [`Stage`] (two lines) off one.
/// Derefs to indicatif's bar; the closing line is printed when it is dropped.
pub struct Bar {
    pb: ProgressBar,
    stage: Option<Stage>,
}

impl std::ops::Deref for Bar {
    type Target = ProgressBar;
    fn deref(&self) -> &ProgressBar {
        &self.pb
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(s) = self.stage.take() {
            let done = self.pb.position();
            s.finish(&format!("{done}/{} steps", self.pb.length().unwrap_or(0)));
        }
    }
}

/// A bar of `len` steps labelled `msg`; `quiet` hides it.
pub fn bar(len: u64, msg: &str, quiet: bool) -> Bar {
    let pb = ProgressBar::with_draw_target(
        Some(len),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    pb.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    let stage = lines(quiet).then(|| Stage::start(msg, false));
    Bar { pb, stage }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds_then_minutes() {
        assert_eq!(fmt_duration(3.21), "3.2 s");
        assert_eq!(fmt_duration(65.2), "1 min 05 s");
        assert_eq!(fmt_duration(3600.0), "60 min 00 s");
    }
}
