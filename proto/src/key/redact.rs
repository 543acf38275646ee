//! The token-shaped text rule: anything that looks like a key's plaintext is hidden
//! before caller-supplied text is echoed anywhere.

use std::borrow::Cow;

/// `text` with anything shaped like a plaintext (`fc_` and 32 hex digits) replaced by
/// `fc_<redacted>`: for caller-supplied strings (an endpoint name, say) that are echoed in
/// details, audit records and logs, in case a caller put a token where it does not belong.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let is_token_at = |i: usize| {
        bytes[i..].starts_with(b"fc_")
            && bytes.len() >= i + 35
            && bytes[i + 3..i + 35].iter().all(u8::is_ascii_hexdigit)
    };
    if !(0..bytes.len()).any(is_token_at) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if is_token_at(i) {
            out.push_str("fc_<redacted>");
            i += 35;
        } else {
            let c = text[i..].chars().next().expect("i is on a char boundary");
            out.push(c);
            i += c.len_utf8();
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_token_shaped_text_only() {
        let t = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";
        assert_eq!(redact(t), "fc_<redacted>");
        assert_eq!(redact(&format!("x{t}y é")), "xfc_<redacted>y é");
        assert_eq!(redact("Trd_PlaceOrder"), "Trd_PlaceOrder");
        assert_eq!(redact("fc_short"), "fc_short");
    }
}
