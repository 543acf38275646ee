//! Protocol version 1's bytes. Every message is laid out as in version 2 except a
//! `Decision::Deny`, which in version 1 ends after `detail`: no `retry_after_ms`, no
//! `limit`. So only a `Response::Decision` takes another path here; a version-1 peer is
//! served exactly the bytes it was served before version 2 existed.

use serde::ser::SerializeStructVariant;
use serde::{Deserialize, Serialize, Serializer};

use super::{decode_message, encode_message, CodecError, CONFIG};
use crate::key::{KeyId, Scope};
use crate::message::{Decision, Reason, Response};

/// The variant index of `Response::Decision` (pinned by the golden vectors).
const RESPONSE_DECISION: u32 = 1;

/// The variant index of `Decision::Deny` (pinned by the golden vectors).
const DECISION_DENY: u32 = 1;

/// The body a version-1 peer reads.
pub(super) fn encode_response(resp: &Response) -> Result<Vec<u8>, CodecError> {
    match resp {
        Response::Decision {
            request_id,
            // Taken apart field by field so that a field added to Deny does not compile
            // until it is decided here whether version 1 carries it.
            decision:
                Decision::Deny {
                    reason,
                    key_id,
                    detail,
                    retry_after_ms: _,
                    limit: _,
                },
        } => encode_message(&DenyResponse {
            request_id: *request_id,
            reason,
            key_id,
            detail,
        }),
        other => encode_message(other),
    }
}

/// The message in a body a version-1 peer wrote; a Deny's version-2 fields are None.
pub(super) fn decode_response(body: &[u8]) -> Result<Response, CodecError> {
    // The variant index comes first; anything but a Decision is read as in version 2 (a
    // body that is no message at all gets its error there too).
    let variant = bincode::serde::decode_from_slice::<u32, _>(body, CONFIG).map(|(v, _)| v);
    if variant.ok() != Some(RESPONSE_DECISION) {
        return decode_message(body);
    }
    match decode_message::<ResponseV1>(body)? {
        ResponseV1::Decision { request_id, decision } => Ok(Response::Decision {
            request_id,
            decision: decision.into(),
        }),
        ResponseV1::HelloOk { .. } => Err(CodecError::Malformed(
            "a Decision read as another response".into(),
        )),
    }
}

/// A `Response::Decision` carrying a Deny, as version 1 writes it: the Deny ends after
/// `detail`.
struct DenyResponse<'a> {
    request_id: u64,
    reason: &'a Reason,
    key_id: &'a Option<KeyId>,
    detail: &'a str,
}

impl Serialize for DenyResponse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = s.serialize_struct_variant("Response", RESPONSE_DECISION, "Decision", 2)?;
        v.serialize_field("request_id", &self.request_id)?;
        v.serialize_field("decision", &DenyV1(self))?;
        v.end()
    }
}

/// The `decision` field of a [`DenyResponse`].
struct DenyV1<'a>(&'a DenyResponse<'a>);

impl Serialize for DenyV1<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = s.serialize_struct_variant("Decision", DECISION_DENY, "Deny", 3)?;
        v.serialize_field("reason", self.0.reason)?;
        v.serialize_field("key_id", self.0.key_id)?;
        v.serialize_field("detail", self.0.detail)?;
        v.end()
    }
}

/// `Response` as version 1 reads it, as far as `Decision` (variants are known by index).
#[derive(Deserialize)]
enum ResponseV1 {
    /// Here to give `Decision` its index; never read (the index was looked at first).
    #[allow(dead_code)]
    HelloOk {
        protocol_version: u16,
        server_version: String,
    },
    Decision {
        request_id: u64,
        decision: DecisionV1,
    },
}

/// `Decision` as version 1 reads it.
#[derive(Deserialize)]
enum DecisionV1 {
    Allow {
        key_id: KeyId,
        scope: Option<Scope>,
        ticket: Option<u64>,
    },
    Deny {
        reason: Reason,
        key_id: Option<KeyId>,
        detail: String,
    },
}

impl From<DecisionV1> for Decision {
    fn from(d: DecisionV1) -> Decision {
        match d {
            DecisionV1::Allow {
                key_id,
                scope,
                ticket,
            } => Decision::Allow {
                key_id,
                scope,
                ticket,
            },
            DecisionV1::Deny {
                reason,
                key_id,
                detail,
            } => Decision::Deny {
                reason,
                key_id,
                detail,
                retry_after_ms: None,
                limit: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::LimitFigures;

    fn deny() -> Decision {
        Decision::Deny {
            reason: Reason::Rate,
            key_id: Some("sim-bot".parse().unwrap()),
            detail: "5 orders in the last 60 s".into(),
            retry_after_ms: Some(12_345),
            limit: Some(LimitFigures::Rate {
                orders_in_window: 5,
                max_orders_per_minute: 5,
            }),
        }
    }

    #[test]
    fn the_pinned_variant_indices_are_the_types_own() {
        let resp = Response::Decision {
            request_id: 7,
            decision: deny(),
        };
        let v2 = encode_message(&resp).unwrap();
        let v1 = encode_response(&resp).unwrap();
        // Response::Decision, request_id 7, Decision::Deny: the same three bytes in both.
        assert_eq!(v2[..3], [RESPONSE_DECISION as u8, 7, DECISION_DENY as u8]);
        assert_eq!(v1[..3], v2[..3]);
        // Version 1 stops where version 2's new fields begin.
        assert!(v2.starts_with(&v1) && v2.len() > v1.len());
    }

    #[test]
    fn a_version_1_deny_reads_back_without_the_new_fields() {
        let resp = Response::Decision {
            request_id: 7,
            decision: deny(),
        };
        let Response::Decision { decision, .. } = decode_response(&encode_response(&resp).unwrap()).unwrap()
        else {
            panic!("a decision")
        };
        assert_eq!(decision.retry_after(), None);
        assert_eq!(decision.limit(), None);
        assert_eq!(decision.reason(), Some(Reason::Rate));
    }
}
