//! Where futucli's output goes: every line it prints to stdout or stderr is written here,
//! so that a reader that went away never makes it panic.
//!
//! A Rust program ignores SIGPIPE, so a write to a pipe whose reader has gone fails with
//! `BrokenPipe`, and `println!` turns that into a panic (exit status 101, "failed printing
//! to stdout"). Instead:
//!
//! * A closed stdout (`futucli list-keys | head -1`) ends futucli at once and quietly, with
//!   status 141 — 128 + SIGPIPE, what a shell reports for a program that SIGPIPE killed
//!   (coreutils left to SIGPIPE's default; git exits so on purpose). Not 0: the output did
//!   not all reach its reader, which a script under `set -o pipefail` should see — gen-key's
//!   plaintext, for one, is then lost — and a decision of `check` that nobody read is not
//!   an allow.
//! * A closed stderr loses only the message: the command goes on and exits with its own
//!   status.
//! * Any other failure to write stdout (a full disk behind `>`) is said on stderr and
//!   exits 1.

use std::fmt;
use std::io::{self, Write};
use std::process;

/// The exit status when stdout's reader has gone: 128 + SIGPIPE (13).
pub const CLOSED_PIPE: i32 = 141;

/// Writes `args` to stdout, as `print!` does.
pub fn stdout(args: fmt::Arguments<'_>) {
    to_stdout(|out| out.write_fmt(args));
}

/// Writes `bytes` to stdout.
pub fn stdout_bytes(bytes: &[u8]) {
    to_stdout(|out| out.write_all(bytes));
}

/// Writes `args` to stderr, as `eprint!` does; a failure loses the message only.
pub fn stderr(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.flush());
}

/// Ends futucli quietly with [`CLOSED_PIPE`] when `e` says stdout's reader has gone.
pub fn exit_if_closed(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        process::exit(CLOSED_PIPE);
    }
}

fn to_stdout(write: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>) {
    let written = {
        let mut out = io::stdout().lock();
        write(&mut out).and_then(|()| out.flush())
    };
    if let Err(e) = written {
        exit_if_closed(&e);
        stderr(format_args!("futucli: cannot write to standard output: {e}\n"));
        process::exit(1);
    }
}

/// `print!` through [`stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))
    };
}

/// `println!` through [`stdout`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` through [`stderr`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};
