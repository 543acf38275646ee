//! The audit trail: exactly one record per decision and per admin operation.
//!
//! The audit file (JSONL, one object a line, O_APPEND, mode 0600) is written in the
//! request's group commit ([`crate::commit`]): a record reaches the file with `write(2)`,
//! after the ledger entries of its commit and before its answer is sent, so after any
//! `kill -9` every allow a client saw has its record. The file is fsynced every second, on
//! rotation and at shutdown (a power loss can cost the last second; a crash of the daemon
//! costs nothing). [`AuditFile`] is that file; [`settle`] squares it with the ledger at
//! start. A record never holds a token or a digest.
//!
//! journald gets the same records as an extra copy, through a bounded queue and a writer
//! thread (tracing-journald, structured fields such as KEY_ID, OUTCOME, REASON): handlers
//! wait when the queue is full, so no record is dropped.
//!
//! The record itself is the rules' ([`futu_auth_rules::audit`]), so that `futucli replay`
//! reads it with the code that writes it; `file.rs` is the audit file and `journald.rs` the
//! journald copy.

mod file;
mod journald;

pub use file::{settle, tidy_tail, AuditFile};
pub use futu_auth_rules::audit::{AuditEvent, AuditKey, AuditOrder, AuditRecord, Kind, Outcome};
pub use journald::{Audit, TryRecord, Writer, TARGET};
