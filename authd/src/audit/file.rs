//! The audit file: appended by the group commit, squared with the ledger at start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::ledger::{AuditMark, Audited};

/// The audit file, written by the group commit: appends are whole `write(2)` calls, and
/// one that fails is cut back so the file never holds half a record.
#[derive(Debug)]
pub struct AuditFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file: where a failed append is cut back to.
    len: u64,
    dev: u64,
    ino: u64,
    /// A failed append could not be cut back: that must happen before the next one.
    dirty: bool,
}

impl AuditFile {
    /// Opens (creating, mode 0600) `path` for appending.
    pub fn open(path: &Path) -> io::Result<AuditFile> {
        let at = |e: io::Error| io::Error::new(e.kind(), format!("audit log {}: {e}", path.display()));
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(at)?;
        let meta = file.metadata().map_err(at)?;
        Ok(AuditFile {
            path: path.to_owned(),
            file,
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
            dirty: false,
        })
    }

    /// Where `records` records appended next will lie.
    pub fn mark(&self, records: usize) -> AuditMark {
        AuditMark {
            dev: self.dev,
            ino: self.ino,
            at: self.len,
            records: records as u64,
        }
    }

    /// Appends `records` (whole lines) in one write. On `Err` nothing of them stays.
    pub fn append(&mut self, records: &[u8]) -> io::Result<()> {
        if self.dirty {
            self.file.set_len(self.len)?;
            self.dirty = false;
        }
        if let Err(e) = self.file.write_all(records) {
            if self.file.set_len(self.len).is_err() {
                self.dirty = true;
            }
            return Err(e);
        }
        self.len += records.len() as u64;
        Ok(())
    }

    /// Opens the file at its path again (after logrotate moved it); the old one is
    /// synced first.
    pub fn reopen(&mut self) -> io::Result<()> {
        let _ = self.file.sync_data();
        *self = AuditFile::open(&self.path)?;
        Ok(())
    }

    /// A handle on the open file, for syncing it off the commit lock.
    pub fn handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }
}

/// At start, before the ledger is replayed: whether the audit records of the ledger's
/// newest commit, at `mark`, reached the audit file (looked up by inode at `path` or among
/// the files beside it, where logrotate moves it). When they did not (the daemon stopped
/// between the ledger write and the audit write), any part of them that was written is cut
/// off, so the file holds no record of an answer that was never sent.
pub fn settle(path: &Path, mark: &AuditMark) -> Audited {
    let same = |p: &Path| {
        fs::metadata(p)
            .ok()
            .filter(|m| m.dev() == mark.dev && m.ino() == mark.ino)
            .map(|m| (p.to_owned(), m.len()))
    };
    let found = same(path).or_else(|| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
        fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| same(&e.path()))
    });
    let Some((file, size)) = found else {
        return Audited::Unknown;
    };
    // Whole records (lines) after the commit's start: all of them, or the commit's answers
    // were never sent.
    let whole = File::open(&file)
        .and_then(|mut f| {
            use std::io::{Read, Seek, SeekFrom};
            f.seek(SeekFrom::Start(mark.at))?;
            let mut rest = Vec::new();
            f.read_to_end(&mut rest)?;
            Ok(rest.iter().filter(|b| **b == b'\n').count() as u64)
        })
        .unwrap_or(0);
    if size > mark.at && whole >= mark.records {
        return Audited::Yes;
    }
    if size > mark.at {
        if let Err(e) = OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(mark.at))
        {
            tracing::error!("cutting unanswered records off {}: {e}", file.display());
        }
    }
    Audited::No
}

/// At start: cuts a record left half-written by a crash off the end of the audit file, so
/// every line of it is whole JSON again. Returns how many bytes were cut.
pub fn tidy_tail(path: &Path) -> io::Result<u64> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let cut = (text.len() - keep) as u64;
    if cut > 0 {
        OpenOptions::new().write(true).open(path)?.set_len(keep as u64)?;
    }
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use futu_auth_proto::Iface;

    use super::*;
    use crate::audit::{AuditRecord, Kind, Outcome};
    use crate::peer::Peer;

    fn peer() -> Peer {
        Peer {
            uid: 1000,
            gid: 1000,
            pid: 4242,
        }
    }

    fn line(endpoint: &str, request_id: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r =
            AuditRecord::new(Kind::Check, endpoint, Outcome::Allow, request_id, peer()).iface(Iface::Rest);
        r.key_id = Some("sim-bot".parse().unwrap());
        r.write_json(&mut out);
        out
    }

    #[test]
    fn appended_records_are_in_the_file_at_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = AuditFile::open(&path).unwrap();
        for i in 0..100 {
            f.append(&line("Trd_PlaceOrder", i)).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines.len(),
            100,
            "written before append returned, no flush needed"
        );
        assert_eq!(lines[99]["request_id"], 99);
        assert_eq!(lines[0]["outcome"], "allow");
        assert_eq!(lines[0]["key_id"], "sim-bot");
        assert_eq!(lines[0]["iface"], "rest");
        assert_eq!(lines[0]["peer_pid"], 4242);
        assert!(lines[0]["reason"].is_null());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = AuditFile::open(&path).unwrap();
        f.append(&line("A", 1)).unwrap();
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        f.append(&line("B", 2)).unwrap();
        f.reopen().unwrap();
        f.append(&line("C", 3)).unwrap();
        let old = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("\"endpoint\":\"A\"") && old.contains("\"endpoint\":\"B\""));
        assert!(new.contains("\"endpoint\":\"C\"") && !new.contains("\"endpoint\":\"A\""));
    }

    #[test]
    fn settle_finds_the_records_of_the_last_commit_or_cuts_their_remains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = AuditFile::open(&path).unwrap();
        f.append(&line("A", 1)).unwrap();
        let rec = line("B", 2);
        let mark = f.mark(1);
        // Written whole: counted, even after logrotate moved the file.
        f.append(&rec).unwrap();
        assert_eq!(settle(&path, &mark), Audited::Yes);
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        assert_eq!(settle(&path, &mark), Audited::Yes);
        // Half written: not counted, and the half is cut off.
        let whole = std::fs::metadata(&rotated).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&rotated)
            .unwrap()
            .set_len(whole - 5)
            .unwrap();
        assert_eq!(settle(&path, &mark), Audited::No);
        assert_eq!(std::fs::metadata(&rotated).unwrap().len(), mark.at);
        // Gone: unknown, so the commit counts (the safe side).
        std::fs::remove_file(&rotated).unwrap();
        assert_eq!(settle(&path, &mark), Audited::Unknown);
    }

    #[test]
    fn a_half_written_last_line_is_cut_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut text = line("A", 1);
        text.extend_from_slice(b"{\"ts\":\"2026");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(tidy_tail(&path).unwrap(), 11);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
        assert_eq!(tidy_tail(&path).unwrap(), 0);
        assert_eq!(tidy_tail(&dir.path().join("absent")).unwrap(), 0);
    }
}
