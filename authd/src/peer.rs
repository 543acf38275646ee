//! Who is on the other end of a connection (SO_PEERCRED, read at accept), and whether they
//! may send admin requests.

use std::fs;

use nix::unistd::{Gid, Group, Uid, User};

/// The credentials of a connected process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Process id (0 when the kernel did not say).
    pub pid: u32,
}

impl From<Peer> for futu_auth_rules::audit::Caller {
    /// The uid and pid an audit record shows.
    fn from(peer: Peer) -> Self {
        futu_auth_rules::audit::Caller {
            uid: peer.uid,
            pid: peer.pid,
        }
    }
}

/// Who may send admin requests: root, the daemon's own user, and members of the admin
/// group (as primary group, as a listed member in the group database, or as a
/// supplementary group of the connecting process).
#[derive(Debug, Clone)]
pub struct AdminPolicy {
    own_uid: u32,
    group: Option<(String, u32)>,
}

/// Why `--admin-group` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminGroupError {
    /// The group database has no such group.
    #[error("--admin-group {0:?}: no such group")]
    NoSuchGroup(String),
    /// The group database could not be read.
    #[error("--admin-group {name:?}: {source}")]
    Lookup {
        /// The group asked for.
        name: String,
        /// What failed.
        source: nix::Error,
    },
}

impl AdminPolicy {
    /// The policy for this process and `--admin-group`; an unknown group name is an error.
    pub fn new(admin_group: Option<&str>) -> Result<AdminPolicy, AdminGroupError> {
        let group = match admin_group {
            None => None,
            Some(name) => match Group::from_name(name) {
                Ok(Some(g)) => Some((name.to_owned(), g.gid.as_raw())),
                Ok(None) => return Err(AdminGroupError::NoSuchGroup(name.to_owned())),
                Err(source) => {
                    return Err(AdminGroupError::Lookup {
                        name: name.to_owned(),
                        source,
                    })
                }
            },
        };
        Ok(AdminPolicy {
            own_uid: Uid::effective().as_raw(),
            group,
        })
    }

    /// Whether `peer` is an administrator.
    pub fn is_admin(&self, peer: &Peer) -> bool {
        if peer.uid == 0 || peer.uid == self.own_uid {
            return true;
        }
        let Some((name, gid)) = &self.group else {
            return false;
        };
        if peer.gid == *gid {
            return true;
        }
        if let Ok(Some(user)) = User::from_uid(Uid::from_raw(peer.uid)) {
            if let Ok(Some(g)) = Group::from_gid(Gid::from_raw(*gid)) {
                if g.name == *name && g.mem.contains(&user.name) {
                    return true;
                }
            }
        }
        peer.pid != 0 && process_groups(peer.pid).is_some_and(|gs| gs.contains(gid))
    }
}

/// The supplementary groups of a running process, from /proc/PID/status.
fn process_groups(pid: u32) -> Option<Vec<u32>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Groups:"))?;
    Some(
        line["Groups:".len()..]
            .split_whitespace()
            .filter_map(|g| g.parse().ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_daemon_user_are_admins_and_others_are_not() {
        let p = AdminPolicy::new(None).unwrap();
        let me = Uid::effective().as_raw();
        assert!(p.is_admin(&Peer {
            uid: 0,
            gid: 0,
            pid: 0
        }));
        assert!(p.is_admin(&Peer {
            uid: me,
            gid: 0,
            pid: 0
        }));
        let stranger = if me == 0 { 65534 } else { 0xfff0 };
        assert!(!p.is_admin(&Peer {
            uid: stranger,
            gid: 65534,
            pid: 0
        }));
    }

    #[test]
    fn the_admin_group_as_primary_group_counts() {
        // Group 0 exists everywhere ("root").
        let name = Group::from_gid(Gid::from_raw(0)).unwrap().unwrap().name;
        let p = AdminPolicy::new(Some(&name)).unwrap();
        assert!(p.is_admin(&Peer {
            uid: 0xfff0,
            gid: 0,
            pid: 0
        }));
        assert!(!p.is_admin(&Peer {
            uid: 0xfff0,
            gid: 0xfff0,
            pid: 0
        }));
    }

    #[test]
    fn supplementary_groups_are_read_from_proc() {
        let mine: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect();
        let mut read = process_groups(std::process::id()).unwrap();
        read.sort_unstable();
        let mut want = mine.clone();
        want.sort_unstable();
        want.dedup();
        read.dedup();
        assert_eq!(read, want);
        assert_eq!(process_groups(u32::MAX), None, "no such process");
    }

    #[test]
    fn an_unknown_admin_group_is_an_error() {
        assert!(AdminPolicy::new(Some("no-such-group-futu")).is_err());
    }
}
