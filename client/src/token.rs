//! Finding the API key in what each front-end receives.

use futu_auth_proto::Token;

/// The token of an `Authorization` header value (REST) or `authorization` metadata
/// (gRPC): `Bearer fc_…`, the scheme in any case. `None` when it is not a bearer token.
pub fn from_bearer(header_value: &str) -> Option<Token> {
    let (scheme, rest) = header_value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then(|| Token::new(token))
}

/// The `token` parameter of a URL query string (WebSocket: `/ws?token=fc_…`), with
/// percent-escapes decoded. `None` when absent, empty or badly escaped.
pub fn from_query(query: &str) -> Option<Token> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)?;
    let decoded = percent_decode(value)?;
    (!decoded.is_empty()).then(|| Token::new(decoded))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";

    #[test]
    fn bearer_headers_yield_the_token_and_other_schemes_do_not() {
        assert_eq!(from_bearer(&format!("Bearer {T}")), Some(Token::new(T)));
        assert_eq!(from_bearer(&format!("bearer  {T} ")), Some(Token::new(T)));
        assert_eq!(from_bearer(&format!("Basic {T}")), None);
        assert_eq!(from_bearer("Bearer "), None);
        assert_eq!(from_bearer(T), None);
    }

    #[test]
    fn the_query_token_is_found_and_decoded() {
        assert_eq!(from_query(&format!("?token={T}")), Some(Token::new(T)));
        assert_eq!(from_query(&format!("a=1&token={T}&b=2")), Some(Token::new(T)));
        assert_eq!(from_query("token=fc%5Fabc"), Some(Token::new("fc_abc")));
        assert_eq!(from_query("tokens=x"), None);
        assert_eq!(from_query("token="), None);
        assert_eq!(from_query("token=%zz"), None);
    }
}
