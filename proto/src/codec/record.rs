//! Key records in a frame. keys.json leaves out what a record does not set, which its field
//! names make safe; a frame has no field names (bincode reads a struct's fields by
//! position), so there every field of a [`Limits`], [`KeyRecord`] and [`KeySpec`] travels,
//! unset ones as `None`, in declaration order. [`Wire`] writes them so, and the message
//! types name the `#[serde(with = …)]` adapters below for their record fields.
//!
//! Reading needs nothing of its own: a record's derived `Deserialize` asks for its fields
//! in declaration order, which is how bincode hands them over (a field keys.json leaves
//! out takes its default there).
//!
//! A message in a human-readable format (authd-probe prints responses as JSON) shows its
//! records as keys.json does: there the field names say what is missing.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::key::{KeyRecord, KeySpec, Limits};

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
        // Taken apart field by field so that a field added to the struct cannot be left
        // off the wire: this stops compiling until it is written here too.
        let Limits {
            allowed_markets,
            allowed_symbols,
            allowed_trd_sides,
            max_order_value,
            max_daily_value,
            max_orders_per_minute,
            hours_window,
        } = self.0;
        let mut st = s.serialize_struct("Limits", 7)?;
        st.serialize_field("allowed_markets", allowed_markets)?;
        st.serialize_field("allowed_symbols", allowed_symbols)?;
        st.serialize_field("allowed_trd_sides", allowed_trd_sides)?;
        st.serialize_field("max_order_value", max_order_value)?;
        st.serialize_field("max_daily_value", max_daily_value)?;
        st.serialize_field("max_orders_per_minute", max_orders_per_minute)?;
        st.serialize_field("hours_window", hours_window)?;
        st.end()
    }
}

impl Serialize for Wire<'_, KeyRecord> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.0.serialize(s);
        }
        let KeyRecord {
            id,
            hash,
            scopes,
            limits,
            allowed_machines,
            created_at,
            expires_at,
            note,
        } = self.0;
        let mut st = s.serialize_struct("KeyRecord", 8)?;
        st.serialize_field("id", id)?;
        st.serialize_field("hash", hash)?;
        st.serialize_field("scopes", scopes)?;
        st.serialize_field("limits", &Wire(limits))?;
        st.serialize_field("allowed_machines", allowed_machines)?;
        st.serialize_field("created_at", created_at)?;
        st.serialize_field("expires_at", expires_at)?;
        st.serialize_field("note", note)?;
        st.end()
    }
}

impl Serialize for Wire<'_, KeySpec> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.0.serialize(s);
        }
        let KeySpec {
            id,
            scopes,
            limits,
            allowed_machines,
            expires_at,
            note,
        } = self.0;
        let mut st = s.serialize_struct("KeySpec", 6)?;
        st.serialize_field("id", id)?;
        st.serialize_field("scopes", scopes)?;
        st.serialize_field("limits", &Wire(limits))?;
        st.serialize_field("allowed_machines", allowed_machines)?;
        st.serialize_field("expires_at", expires_at)?;
        st.serialize_field("note", note)?;
        st.end()
    }
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
        // limits (seven `None`s), allowed_machines, created_at, expires_at, note.
        let created_at = b"\x142026-04-15T10:00:00Z";
        let tail = [&[0u8; 8][..], created_at, &[0, 0]].concat();
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
}
