//! The kill switch: halting trading for a key or for every key, resuming it, and listing
//! the halts in force.
//!
//! A halt is made in keys.json (its `halts` array) under the store's lock and installed at
//! once, like every admin change, so it survives restarts and reloads; the rules then
//! refuse the key's orders and unlocks `halted` ([`futu_auth_rules::decide`]). Who halted
//! is the peer's uid as the kernel gave it (SO_PEERCRED) and that uid's user name, never
//! anything the client wrote.

use futu_auth_keys::store::{HaltReason, HaltTarget, HaltedBy};
use futu_auth_proto::{ErrorKind, Halt, Response};
use jiff::Timestamp;
use nix::unistd::{Uid, User};

use super::admin::{error, keyring_error};
use super::Authd;
use crate::peer::Peer;

impl Authd {
    /// [`futu_auth_proto::Request::Halt`]: answered with the halts in force after it, and
    /// the halt made, for the audit record.
    pub(super) async fn halt(
        &self,
        request_id: u64,
        target: HaltTarget,
        reason: String,
        peer: Peer,
    ) -> (Response, Option<Halt>) {
        let reason: HaltReason = match reason.parse() {
            Ok(r) => r,
            Err(e) => return (error(request_id, ErrorKind::InvalidSpec, e.to_string()), None),
        };
        let now = Timestamp::now();
        let made = self
            .keys
            .update(move |f| {
                let halted_by = halted_by(peer.uid);
                let halt = f.halt(target, reason, halted_by, now)?;
                Ok((halt, f.halts.clone()))
            })
            .await;
        match made {
            Ok((halt, halts)) => {
                tracing::warn!("{halt}");
                (Response::Halts { request_id, halts }, Some(halt))
            }
            Err(e) => (keyring_error(request_id, e), None),
        }
    }

    /// [`futu_auth_proto::Request::Resume`]: answered with the halts still in force, and
    /// the halt lifted, for the audit record.
    pub(super) async fn resume(
        &self,
        request_id: u64,
        target: HaltTarget,
        peer: Peer,
    ) -> (Response, Option<Halt>) {
        let lifted = self
            .keys
            .update(move |f| {
                let halt = f.resume(&target)?;
                Ok((halt, f.halts.clone()))
            })
            .await;
        match lifted {
            Ok((halt, halts)) => {
                tracing::warn!(
                    "trading resumed for {} by {} (it was halted by {} at {}: {})",
                    halt.target,
                    halted_by(peer.uid),
                    halt.halted_by,
                    halt.halted_at,
                    halt.reason
                );
                (Response::Halts { request_id, halts }, Some(halt))
            }
            Err(e) => (keyring_error(request_id, e), None),
        }
    }

    /// [`futu_auth_proto::Request::ListHalts`]: the halts in force, as the keys in service
    /// hold them.
    pub(super) fn list_halts(&self, request_id: u64) -> Response {
        Response::Halts {
            request_id,
            halts: self.keys.snapshot().halts().to_vec(),
        }
    }
}

/// Who a halt or resume is by: `uid`, with its user name when the system has one.
fn halted_by(uid: u32) -> HaltedBy {
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
    HaltedBy::new(uid, user)
}
