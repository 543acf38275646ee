//! `futucli replay`'s progress over a large audit file: on a terminal, one line on stderr
//! rewritten in place (lines read, bytes and the share of the file) at most four times a
//! second; nothing at all when stderr is not a terminal, so that a piped or redirected run
//! prints exactly its report.
//!
//! The count is taken as the replay reads: [`Progress`] is the audit file's reader, and
//! every line the replay consumes passes through it.

use std::fmt::Write as _;
use std::io::{self, BufRead, IsTerminal, Read};
use std::time::{Duration, Instant};

use crate::output::stderr;

/// The least time between two drawings, and before the first: a file replayed in less
/// never shows one.
const EVERY: Duration = Duration::from_millis(250);

/// Bytes read between two looks at the clock.
const LOOK_EVERY_BYTES: u64 = 64 * 1024;

/// Erases the terminal's current line and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// A reader that counts what the replay reads from it and, when `shown`, draws the count.
pub struct Progress<R> {
    /// The audit file, buffered.
    inner: R,
    /// Whether to draw at all: stderr is a terminal.
    shown: bool,
    /// Line ends consumed so far: the lines the replay has read.
    lines: u64,
    /// Bytes consumed so far.
    bytes: u64,
    /// The file's size when it is known (a regular file), for the percentage.
    total: Option<u64>,
    /// `bytes` when the clock was last looked at.
    looked_at: u64,
    /// When the line may be drawn next.
    next_draw: Instant,
    /// Whether a line is on the terminal, to be erased at the end.
    drawn: bool,
}

impl<R: BufRead> Progress<R> {
    /// Counts what is read from `inner`, a file of `total` bytes if known; draws only when
    /// stderr is a terminal.
    pub fn new(inner: R, total: Option<u64>) -> Progress<R> {
        Progress {
            inner,
            shown: io::stderr().is_terminal(),
            lines: 0,
            bytes: 0,
            total,
            looked_at: 0,
            next_draw: Instant::now() + EVERY,
            drawn: false,
        }
    }

    /// Erases the progress line, if one was drawn, before the report or an error is
    /// printed.
    pub fn finish(&mut self) {
        if self.drawn {
            stderr(format_args!("{CLEAR_LINE}"));
            self.drawn = false;
        }
    }

    /// Adds `bytes` read holding `lines` line ends, and draws the line when it is time.
    fn counted(&mut self, bytes: usize, lines: usize) {
        self.lines += lines as u64;
        self.bytes += bytes as u64;
        if !self.shown || self.bytes - self.looked_at < LOOK_EVERY_BYTES {
            return;
        }
        self.looked_at = self.bytes;
        let now = Instant::now();
        if now >= self.next_draw {
            self.next_draw = now + EVERY;
            self.drawn = true;
            stderr(format_args!(
                "{CLEAR_LINE}{}",
                line(self.lines, self.bytes, self.total)
            ));
        }
    }
}

impl<R: BufRead> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counted(n, line_ends(&buf[..n]));
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Progress<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // The bytes consumed are the front of the buffer fill_buf handed out; asking for it
        // again reads nothing.
        let (bytes, lines) = match self.inner.fill_buf() {
            Ok(buf) => {
                let consumed = &buf[..amt.min(buf.len())];
                (consumed.len(), line_ends(consumed))
            }
            Err(_) => (0, 0),
        };
        self.inner.consume(amt);
        self.counted(bytes, lines);
    }
}

/// How many line ends `bytes` holds.
fn line_ends(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// The progress line: `replay: 120000 lines read, 40.0 MiB of 160.0 MiB (25%)`, without
/// the size and share when the file's size is unknown.
pub fn line(lines: u64, bytes: u64, total: Option<u64>) -> String {
    let mut out = format!("replay: {lines} lines read, {}", mib(bytes));
    if let Some(total) = total.filter(|&t| t > 0) {
        let percent = (u128::from(bytes) * 100 / u128::from(total)).min(100);
        let _ = write!(out, " of {} ({percent}%)", mib(total));
    }
    out
}

/// `bytes` in MiB with one decimal.
fn mib(bytes: u64) -> String {
    let tenths = (u128::from(bytes) * 10 + 524_288) / 1_048_576;
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_gives_lines_bytes_and_the_share_of_the_file() {
        assert_eq!(
            line(120_000, 40 * 1_048_576, Some(160 * 1_048_576)),
            "replay: 120000 lines read, 40.0 MiB of 160.0 MiB (25%)"
        );
        assert_eq!(
            line(3, 1_572_864, Some(3_145_728)),
            "replay: 3 lines read, 1.5 MiB of 3.0 MiB (50%)"
        );
    }

    #[test]
    fn the_share_never_passes_100_and_an_unknown_size_has_none() {
        // A file that grew while it was read.
        assert_eq!(
            line(10, 2 * 1_048_576, Some(1_048_576)),
            "replay: 10 lines read, 2.0 MiB of 1.0 MiB (100%)"
        );
        assert_eq!(line(0, 0, None), "replay: 0 lines read, 0.0 MiB");
        assert_eq!(line(0, 0, Some(0)), "replay: 0 lines read, 0.0 MiB");
    }

    #[test]
    fn every_line_and_byte_read_through_it_is_counted() {
        let text = "one\ntwo\n\nfour\nfive";
        let mut p = Progress::new(io::BufReader::with_capacity(3, text.as_bytes()), None);
        let mut lines = Vec::new();
        let mut s = String::new();
        while p.read_line(&mut s).unwrap() > 0 {
            lines.push(std::mem::take(&mut s));
        }
        assert_eq!(lines.len(), 5);
        assert_eq!((p.lines, p.bytes), (4, text.len() as u64));
    }
}
