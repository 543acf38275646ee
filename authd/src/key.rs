//! Key plaintexts and their digests: a plaintext is `fc_` and 32 lower-case hex digits from
//! the operating system's random source; keys.json keeps only its SHA-256.

use std::borrow::Cow;

use futu_auth_proto::{KeyHash, Token};
use sha2::{Digest, Sha256};

/// Makes a new plaintext from the OS random source (128 bits).
pub fn generate_token() -> Result<Token, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    let mut text = String::with_capacity(35);
    text.push_str("fc_");
    for b in bytes {
        text.push_str(&format!("{b:02x}"));
    }
    Ok(Token::new(text))
}

/// The SHA-256 of a plaintext, as stored in keys.json's `hash`.
pub fn digest(token: &Token) -> KeyHash {
    KeyHash(Sha256::digest(token.expose().as_bytes()).into())
}

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

    #[test]
    fn generated_tokens_have_the_documented_shape_and_differ() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        let text = a.expose();
        assert_eq!(text.len(), 35);
        assert!(text.starts_with("fc_"));
        assert!(text[3..].bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
    }

    #[test]
    fn digest_is_sha256_of_the_plaintext() {
        // sha256("abc")
        assert_eq!(
            digest(&Token::new("abc")).to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
