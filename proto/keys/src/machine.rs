//! This host's machine fingerprint, for `allowed_machines`.
//!
//! The fingerprint is `fp_` followed by the first 16 hex digits of
//! `SHA-256("futu-authd machine fingerprint v1\n" + machine-id)`, where machine-id is the
//! first line of the machine-id file (`/etc/machine-id` unless told otherwise), trimmed. It
//! is stable for the life of the installation, and the raw machine-id (which other software
//! treats as confidential) cannot be read back from it.

use std::io;
use std::path::Path;

use futu_auth_proto::Fingerprint;
use sha2::{Digest, Sha256};

/// The fingerprint of a machine id.
pub fn fingerprint_of(machine_id: &str) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(b"futu-authd machine fingerprint v1\n");
    h.update(machine_id.trim().as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("fp_{hex}")
        .parse()
        .expect("fp_ + hex is a valid fingerprint")
}

/// The fingerprint of the machine id in `path`.
pub fn fingerprint_from_file(path: &Path) -> io::Result<Fingerprint> {
    let text = std::fs::read_to_string(path)?;
    let id = text.lines().next().unwrap_or("").trim();
    if id.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(fingerprint_of(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_hides_the_machine_id() {
        let id = "0123456789abcdef0123456789abcdef";
        let fp = fingerprint_of(id);
        assert_eq!(fp, fingerprint_of(&format!("{id}\n")));
        assert!(fp.as_str().starts_with("fp_"));
        assert_eq!(fp.as_str().len(), 19);
        assert!(!fp.as_str().contains("0123456789"));
        assert_ne!(fp, fingerprint_of("fedcba9876543210fedcba9876543210"));
    }

    #[test]
    fn an_empty_machine_id_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("machine-id");
        std::fs::write(&p, "\n").unwrap();
        assert!(fingerprint_from_file(&p).is_err());
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(fingerprint_from_file(&p).unwrap(), fingerprint_of("abc"));
    }
}
