//! Where a commit's audit records go, and whether they got there: what a ledger store and
//! the audit file tell each other, so that the ledger never counts an order whose answer
//! was never sent ([`crate::commit`] writes the ledger, then the audit records).

use serde::{Deserialize, Serialize};

/// Where a commit's audit records go: the audit file (by device and inode, which a
/// rotation by rename keeps) and the byte range they take in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditMark {
    /// `st_dev` of the audit file.
    pub dev: u64,
    /// `st_ino` of the audit file.
    pub ino: u64,
    /// Its size before the records were appended.
    pub at: u64,
    /// How many records (lines) the commit writes there.
    pub records: u64,
}

/// Whether the newest commit's audit records reached the audit file, as found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audited {
    /// They are all there: the commit counts.
    Yes,
    /// They are not (the daemon stopped between the ledger write and the audit write):
    /// nobody was answered, so the commit does not count.
    No,
    /// The audit file cannot be found any more: the commit counts (the safe side).
    Unknown,
}
