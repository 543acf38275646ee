//! The one error every value type returns, and the one way its message is made.

use super::redact::redact;

/// Why a value from keys.json or a request was refused; the text says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Every validation message goes through [`redact`]: the messages quote what was read,
/// and what was read may be a key's plaintext put in the wrong place.
pub(super) fn invalid(msg: impl Into<String>) -> InvalidValue {
    let msg = msg.into();
    InvalidValue(redact(&msg).into_owned())
}

#[cfg(test)]
mod tests {
    use crate::key::{KeyId, Symbol};

    #[test]
    fn a_key_id_shaped_like_a_token_is_refused_without_quoting_it() {
        let t = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";
        let e = t.parse::<KeyId>().unwrap_err();
        assert!(!e.to_string().contains("8a3f"), "{e}");
        let e = format!("US.{t}").parse::<Symbol>().unwrap_err();
        assert!(!e.to_string().contains("8a3f"), "{e}");
    }
}
