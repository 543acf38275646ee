//! The entry format of releases before the binary one: one JSON object a line (the serde
//! form of [`Entry`]). A state directory written by them is still read — its journals
//! and base are replayed, and the base written at start is binary — so nothing is lost
//! in an upgrade; nothing is written in this format any more.

use super::entry::Entry;

/// Reads one line (without its end of line) as an entry.
pub(super) fn parse_line(line: &[u8]) -> serde_json::Result<Entry> {
    serde_json::from_slice(line)
}

/// Appends `e` to `out` as one line, as releases before the binary format wrote it: the
/// tests make the files of such a release with it.
#[cfg(test)]
pub(super) fn push_line(out: &mut Vec<u8>, e: &Entry) {
    serde_json::to_writer(&mut *out, e).expect("ledger entries always serialize");
    out.push(b'\n');
}
