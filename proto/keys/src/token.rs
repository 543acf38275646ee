//! Key plaintexts and their digests: a plaintext is `fc_` and 32 lower-case hex digits from
//! the operating system's random source; keys.json keeps only its SHA-256.

use futu_auth_proto::{KeyHash, Token};

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

/// The SHA-256 of a plaintext, as stored in keys.json's `hash` ([`Token::digest`]).
pub fn digest(token: &Token) -> KeyHash {
    token.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

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
