//! keys.json in parts, for a store that keeps the keys elsewhere than in one file (a
//! database, a row a key): each key record as keys.json writes it, and every other
//! top-level field (`version`, `rotations`, and whatever keys.json gains later) together as
//! one JSON object. Both ways go through keys.json's own code — its serializer, and its
//! strict reading with positioned errors — so a new top-level field of keys.json needs no
//! change to such a store.

use std::path::Path;

use futu_auth_proto::KeyId;

use super::{KeysFile, StoreError};

/// One key record as keys.json writes it, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordText {
    /// The key's id.
    pub id: KeyId,
    /// The record's JSON.
    pub text: String,
}

/// keys.json in parts ([`KeysFile::to_parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// The key records, in keys.json's order.
    pub records: Vec<RecordText>,
    /// Every other top-level field, as one JSON object, e.g. `{"version":1}`.
    pub rest: String,
}

impl KeysFile {
    /// The file in parts: its records, and the rest.
    pub fn to_parts(&self) -> Parts {
        let records = self
            .keys
            .iter()
            .map(|k| RecordText {
                id: k.id.clone(),
                text: serde_json::to_string(k).expect("a key record always serializes"),
            })
            .collect();
        let mut whole = match serde_json::to_value(self).expect("keys.json always serializes") {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("keys.json is an object"),
        };
        whole.remove("keys");
        let rest = serde_json::to_string(&whole).expect("a JSON object always serializes");
        Parts { records, rest }
    }

    /// The file whose records are `records` (in order) and whose other top-level fields are
    /// the JSON object `rest`, read as strictly as keys.json ([`KeysFile::parse`]); `origin`
    /// names where the parts came from in an error.
    pub fn from_parts<'a>(
        records: impl IntoIterator<Item = &'a str>,
        rest: &str,
        origin: &Path,
    ) -> Result<KeysFile, StoreError> {
        let mut text = String::from("{\"keys\": [\n");
        for (i, record) in records.into_iter().enumerate() {
            if i > 0 {
                text.push_str(",\n");
            }
            text.push_str(record);
        }
        text.push_str("\n]");
        let rest = rest.trim();
        match rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(inner) if inner.trim().is_empty() => text.push('}'),
            Some(inner) => {
                text.push_str(",\n");
                text.push_str(inner.trim());
                text.push_str("\n}");
            }
            // Not an object: read as it is after the keys, so that the strict reading says
            // what is wrong with it and where.
            None => {
                text.push_str(",\n");
                text.push_str(rest);
                text.push_str("\n}");
            }
        }
        KeysFile::parse(&text, origin)
    }
}
