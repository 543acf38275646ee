//! What a peer of protocol version 4 or older is sent: every message as version 5 writes
//! it, except a Deny whose reason that version does not have. Version 5 added one reason,
//! `halted` (index 16), which an older client cannot read (an index it does not know makes
//! the frame malformed, and it would close its connection): such a peer is told `scope`
//! instead, with the same detail. `scope` is what an older client already does the right
//! thing with — a 403, a push held back, a session kept open — and the detail still says
//! that trading is halted, by whom and why.

use std::borrow::Cow;

use super::CodecError;
use crate::message::{Decision, Reason, Response};

/// The first protocol version that has [`Reason::Halted`].
const HALTED_SINCE: u16 = 5;

/// The reason a peer of protocol `version` is told for `reason`: the reason itself, or,
/// when its version does not have it, the nearest one it has (`halted` → `scope`). What a
/// session of that peer remembers is this reason, not the daemon's.
pub fn reason_told_in(reason: Reason, version: u16) -> Reason {
    match reason {
        Reason::Halted if version < HALTED_SINCE => Reason::Scope,
        other => other,
    }
}

/// `resp` as a peer of `version` may receive it: as it is, or (a Deny with a reason that
/// version does not have) with the reason it is told instead.
pub(super) fn told_in(resp: &Response, version: u16) -> Cow<'_, Response> {
    match resp {
        Response::Decision {
            request_id,
            decision:
                Decision::Deny {
                    reason,
                    key_id,
                    detail,
                    retry_after_ms,
                    limit,
                },
        } if reason_told_in(*reason, version) != *reason => Cow::Owned(Response::Decision {
            request_id: *request_id,
            decision: Decision::Deny {
                reason: reason_told_in(*reason, version),
                key_id: key_id.clone(),
                detail: detail.clone(),
                retry_after_ms: *retry_after_ms,
                limit: limit.clone(),
            },
        }),
        other => Cow::Borrowed(other),
    }
}

/// `resp`, read from a peer of `version`, unless it holds a reason that version does not
/// have: a peer of version 4 never writes `halted`, so such a body is malformed.
pub(super) fn read_in(resp: Response, version: u16) -> Result<Response, CodecError> {
    if let Response::Decision {
        decision: Decision::Deny { reason, .. },
        ..
    } = &resp
    {
        if reason_told_in(*reason, version) != *reason {
            return Err(CodecError::Malformed(format!(
                "reason {reason} in a message of protocol version {version}, which does not have it"
            )));
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_halted_is_told_otherwise_and_only_before_version_5() {
        for reason in Reason::ALL {
            for version in 1..=5 {
                let told = reason_told_in(reason, version);
                if reason == Reason::Halted && version < 5 {
                    assert_eq!(told, Reason::Scope);
                } else {
                    assert_eq!(told, reason, "{reason} in version {version}");
                }
            }
        }
    }
}
