//! Key records in a frame. keys.json leaves out what a record does not set, which its field
//! names make safe; a frame has no field names (bincode reads a struct's fields by
//! position), so there every field of a [`Limits`], [`KeyRecord`] and [`KeySpec`] travels,
//! unset ones as `None`, in declaration order. [`Wire`] writes them so, and the message
//! types name the `#[serde(with = …)]` adapters below for their record fields. A [`Halt`]
//! is laid out otherwise in keys.json (`"key_id"` or `"all": true`) than in a frame (a
//! [`HaltTarget`] first): [`halts`] reads and writes the frame's.
//!
//! Reading needs nothing of its own: a record's derived `Deserialize` asks for its fields
//! in declaration order, which is how bincode hands them over (a field keys.json leaves
//! out takes its default there).
//!
//! A message in a human-readable format (authd-probe prints responses as JSON) shows its
//! records as keys.json does: there the field names say what is missing.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::key::{check_user_name, Halt, HaltReason, HaltTarget, HaltedBy, KeyRecord, KeySpec, Limits};

/// A key record, key spec or limits as a frame carries it: every field, set or not, in
/// declaration order. What a record takes in a frame is the length of `Wire(&record)`
/// encoded with [`super::encode_message`]; the record's own `Serialize` is keys.json's.
#[derive(Debug, Clone, Copy)]
pub struct Wire<'a, T>(pub &'a T);

impl Serialize for Wire<'_, Limits> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.0.serialize(s);
        }
        serialize_limits(self.0, s, Layout::Newest)
    }
}

impl Serialize for Wire<'_, KeyRecord> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.0.serialize(s);
        }
        serialize_record(self.0, s, Layout::Newest)
    }
}

impl Serialize for Wire<'_, KeySpec> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.0.serialize(s);
        }
        serialize_spec(self.0, s, Layout::Newest)
    }
}

/// Which protocol version's layout a record is written in: a [`Limits`] has seven fields
/// before version 6 and twelve from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// Versions 1 to 5: the seven limits of version 1. The caller has made sure nothing
    /// set is left out ([`Limits::since_v6`] is empty, no scope is `admin`).
    V5,
    /// Version 6: every field.
    Newest,
}

/// A record, spec or limits written in a [`Layout`] ([`super::v5`] writes the older one).
#[derive(Debug, Clone, Copy)]
pub(super) struct WireIn<'a, T>(pub &'a T, pub Layout);

impl Serialize for WireIn<'_, Limits> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_limits(self.0, s, self.1)
    }
}

impl Serialize for WireIn<'_, KeyRecord> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_record(self.0, s, self.1)
    }
}

impl Serialize for WireIn<'_, KeySpec> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_spec(self.0, s, self.1)
    }
}

fn serialize_limits<S: Serializer>(limits: &Limits, s: S, layout: Layout) -> Result<S::Ok, S::Error> {
    // Taken apart field by field so that a field added to the struct cannot be left off
    // the wire: this stops compiling until it is written here too.
    let Limits {
        allowed_markets,
        allowed_symbols,
        allowed_trd_sides,
        max_order_value,
        max_daily_value,
        max_orders_per_minute,
        hours_window,
        allowed_acc_ids,
        max_price_deviation_pct,
        max_open_orders,
        max_position_value,
        duplicate_window_ms,
    } = limits;
    let len = if layout == Layout::Newest { 12 } else { 7 };
    let mut st = s.serialize_struct("Limits", len)?;
    st.serialize_field("allowed_markets", allowed_markets)?;
    st.serialize_field("allowed_symbols", allowed_symbols)?;
    st.serialize_field("allowed_trd_sides", allowed_trd_sides)?;
    st.serialize_field("max_order_value", max_order_value)?;
    st.serialize_field("max_daily_value", max_daily_value)?;
    st.serialize_field("max_orders_per_minute", max_orders_per_minute)?;
    st.serialize_field("hours_window", hours_window)?;
    if layout == Layout::Newest {
        st.serialize_field("allowed_acc_ids", allowed_acc_ids)?;
        st.serialize_field("max_price_deviation_pct", max_price_deviation_pct)?;
        st.serialize_field("max_open_orders", max_open_orders)?;
        st.serialize_field("max_position_value", max_position_value)?;
        st.serialize_field("duplicate_window_ms", duplicate_window_ms)?;
    }
    st.end()
}

fn serialize_record<S: Serializer>(record: &KeyRecord, s: S, layout: Layout) -> Result<S::Ok, S::Error> {
    let KeyRecord {
        id,
        hash,
        scopes,
        limits,
        allowed_machines,
        created_at,
        expires_at,
        note,
    } = record;
    let mut st = s.serialize_struct("KeyRecord", 8)?;
    st.serialize_field("id", id)?;
    st.serialize_field("hash", hash)?;
    st.serialize_field("scopes", scopes)?;
    st.serialize_field("limits", &WireIn(limits, layout))?;
    st.serialize_field("allowed_machines", allowed_machines)?;
    st.serialize_field("created_at", created_at)?;
    st.serialize_field("expires_at", expires_at)?;
    st.serialize_field("note", note)?;
    st.end()
}

fn serialize_spec<S: Serializer>(spec: &KeySpec, s: S, layout: Layout) -> Result<S::Ok, S::Error> {
    let KeySpec {
        id,
        scopes,
        limits,
        allowed_machines,
        expires_at,
        note,
    } = spec;
    let mut st = s.serialize_struct("KeySpec", 6)?;
    st.serialize_field("id", id)?;
    st.serialize_field("scopes", scopes)?;
    st.serialize_field("limits", &WireIn(limits, layout))?;
    st.serialize_field("allowed_machines", allowed_machines)?;
    st.serialize_field("expires_at", expires_at)?;
    st.serialize_field("note", note)?;
    st.end()
}

/// `#[serde(with = "crate::codec::record::key_spec")]`, for a message's [`KeySpec`].
pub(crate) mod key_spec {
    use super::*;

    /// Writes the spec as a frame carries it.
    pub fn serialize<S: Serializer>(spec: &KeySpec, s: S) -> Result<S::Ok, S::Error> {
        Wire(spec).serialize(s)
    }

    /// Reads it (see the module documentation: declaration order is the wire's).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeySpec, D::Error> {
        KeySpec::deserialize(d)
    }
}

/// `#[serde(with = "crate::codec::record::key_record")]`, for a message's [`KeyRecord`].
pub(crate) mod key_record {
    use super::*;

    /// Writes the record as a frame carries it.
    pub fn serialize<S: Serializer>(record: &KeyRecord, s: S) -> Result<S::Ok, S::Error> {
        Wire(record).serialize(s)
    }

    /// Reads it (see the module documentation: declaration order is the wire's).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyRecord, D::Error> {
        KeyRecord::deserialize(d)
    }
}

/// `#[serde(with = "crate::codec::record::key_records")]`, for a message's list of
/// [`KeyRecord`]s.
pub(crate) mod key_records {
    use super::*;

    /// Writes the records as a frame carries them, as a sequence like a `Vec`'s.
    pub fn serialize<S: Serializer>(records: &[KeyRecord], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(records.iter().map(Wire))
    }

    /// Reads them (see the module documentation: declaration order is the wire's).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyRecord>, D::Error> {
        Vec::<KeyRecord>::deserialize(d)
    }
}

impl Serialize for Wire<'_, Halt> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.0.serialize(s);
        }
        let Halt {
            target,
            reason,
            halted_by: HaltedBy { uid, user },
            halted_at,
        } = self.0;
        let mut st = s.serialize_struct("Halt", 5)?;
        st.serialize_field("target", target)?;
        st.serialize_field("reason", reason)?;
        st.serialize_field("uid", uid)?;
        st.serialize_field("user", user)?;
        st.serialize_field("halted_at", halted_at)?;
        st.end()
    }
}

/// A [`Halt`] as a frame carries it: its target, then every field in order (a name that
/// is not one is a malformed frame, as in keys.json).
#[derive(Deserialize)]
struct HaltOnWire {
    target: HaltTarget,
    reason: HaltReason,
    uid: u32,
    user: Option<String>,
    halted_at: jiff::Timestamp,
}

impl TryFrom<HaltOnWire> for Halt {
    type Error = crate::key::InvalidValue;
    fn try_from(h: HaltOnWire) -> Result<Halt, Self::Error> {
        if let Some(user) = &h.user {
            check_user_name(user)?;
        }
        Ok(Halt {
            target: h.target,
            reason: h.reason,
            halted_by: HaltedBy {
                uid: h.uid,
                user: h.user,
            },
            halted_at: h.halted_at,
        })
    }
}

/// `#[serde(with = "crate::codec::record::halts")]`, for a message's list of [`Halt`]s;
/// in a human-readable format (JSON) each is written and read as keys.json has it.
pub(crate) mod halts {
    use super::*;

    /// Writes the halts as a frame carries them, as a sequence like a `Vec`'s.
    pub fn serialize<S: Serializer>(halts: &[Halt], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(halts.iter().map(Wire))
    }

    /// Reads them.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Halt>, D::Error> {
        if d.is_human_readable() {
            return Vec::<Halt>::deserialize(d);
        }
        Vec::<HaltOnWire>::deserialize(d)?
            .into_iter()
            .map(|h| Halt::try_from(h).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_message, encode_message};
    use crate::message::Response;

    fn minimal() -> KeyRecord {
        let json =
            r#"{"id":"research","hash":"__H__","scopes":["qot:read"],"created_at":"2026-04-15T10:00:00Z"}"#
                .replace("__H__", &"a1".repeat(32));
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn a_frame_carries_the_fields_keys_json_leaves_out_and_reads_them_back() {
        let record = minimal();
        let body = encode_message(&Wire(&record)).unwrap();
        // limits (twelve `None`s), allowed_machines, created_at, expires_at, note.
        let created_at = b"\x142026-04-15T10:00:00Z";
        let tail = [&[0u8; 13][..], created_at, &[0, 0]].concat();
        assert!(body.ends_with(&tail), "{body:?}");
        assert_eq!(decode_message::<KeyRecord>(&body).unwrap(), record);
    }

    #[test]
    fn a_message_in_json_shows_its_records_as_keys_json_does() {
        let record = minimal();
        let message = Response::KeyBound {
            request_id: 1,
            record: record.clone(),
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["KeyBound"]["record"], serde_json::to_value(&record).unwrap());
        assert_eq!(serde_json::from_value::<Response>(json).unwrap(), message);
    }

    #[test]
    fn a_message_in_json_shows_its_halts_as_keys_json_does() {
        let halt: Halt = serde_json::from_str(
            r#"{"all":true,"reason":"turmoil","halted_by":{"uid":0},"halted_at":"2026-12-06T10:00:00Z"}"#,
        )
        .unwrap();
        let message = Response::Halts {
            request_id: 1,
            halts: vec![halt.clone()],
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["Halts"]["halts"][0], serde_json::to_value(&halt).unwrap());
        assert_eq!(json["Halts"]["halts"][0]["all"], true);
        assert_eq!(serde_json::from_value::<Response>(json).unwrap(), message);
        let body = encode_message(&message).unwrap();
        assert_eq!(decode_message::<Response>(&body).unwrap(), message);
    }
}
