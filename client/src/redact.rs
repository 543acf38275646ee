//! [`Redacting`]: a log writer that hides anything shaped like a key. A gateway's own code
//! never logs a key (the layer takes it out of the request), but a library's debug or
//! trace output may print request bodies or tool arguments verbatim; behind this writer,
//! a key passed where it does not belong still never reaches the log.

use std::io::{self, Write};

/// `text` with anything shaped like a key (`fc_` and 32 hex digits) replaced by
/// `fc_<redacted>`: for a caller's text that an answer or a log line repeats.
pub use futu_auth_proto::key::redact;

/// Writes to `inner` what it is given, with every `fc_` followed by 32 hex digits
/// replaced by `fc_<redacted>`. Text is held until a line ends (or the writer is flushed
/// or dropped), so a key split across two writes is still found.
///
/// With tracing-subscriber: `fmt().with_writer(|| Redacting::new(std::io::stderr()))`.
#[derive(Debug)]
pub struct Redacting<W: Write> {
    inner: W,
    /// Text not yet written: the part after the last line end.
    held: Vec<u8>,
}

impl<W: Write> Redacting<W> {
    /// A writer to `inner`.
    pub fn new(inner: W) -> Redacting<W> {
        Redacting {
            inner,
            held: Vec::new(),
        }
    }

    /// Writes the held text up to `end` (exclusive), redacted.
    fn emit(&mut self, end: usize) -> io::Result<()> {
        let text: Vec<u8> = self.held.drain(..end).collect();
        let text = String::from_utf8_lossy(&text);
        self.inner.write_all(redact(&text).as_bytes())
    }
}

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.held.extend_from_slice(buf);
        if let Some(last) = self.held.iter().rposition(|&b| b == b'\n') {
            self.emit(last + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let end = self.held.len();
        self.emit(end)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for Redacting<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";

    #[test]
    fn a_key_is_hidden_even_when_written_in_pieces() {
        let mut out = Vec::new();
        {
            let mut w = Redacting::new(&mut out);
            write!(w, "tool args {{\"token\":\"{}", &T[..10]).unwrap();
            write!(w, "{}\"}}\nnext {T} line\n", &T[10..]).unwrap();
            write!(w, "no end of line {T}").unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("8a3f"), "{text}");
        assert_eq!(text.matches("fc_<redacted>").count(), 3, "{text}");
        assert!(
            text.starts_with("tool args {\"token\":\"fc_<redacted>\"}\nnext"),
            "{text}"
        );
    }
}
