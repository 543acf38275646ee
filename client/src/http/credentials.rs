//! Where the layer finds a request's key, and how it takes it out of the request.

use futu_auth_proto::Token;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Uri};

use crate::token;

/// The query parameter a key may come in, where the gateway allows it.
const QUERY_PARAMETER: &str = "token";

/// Takes the key out of `req`: the `Authorization: Bearer` header (gRPC: the
/// `authorization` metadata), the scheme in any case; else, when `query` is on, the
/// `token` query parameter, percent-decoded. What could be a key is removed from the
/// request — every `Authorization` header when any of them is a Bearer credential, and
/// with `query` on every `token` parameter — so nothing after the layer (a handler, a
/// trace layer, a proxy) can log it, whichever was used.
pub(crate) fn take_token<B>(req: &mut Request<B>, query: bool) -> Option<Token> {
    let from_header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token::from_bearer);
    // Not only the first: a Bearer key in a second header, or after a value that is not
    // one (the key then comes from the query, or there is none), must not go on either.
    if req.headers().get_all(AUTHORIZATION).iter().any(is_bearer) {
        req.headers_mut().remove(AUTHORIZATION);
    }
    if !query {
        return from_header;
    }
    let from_query = req.uri().query().and_then(token::from_query);
    if let Some(uri) = without_query_token(req.uri()) {
        *req.uri_mut() = uri;
    }
    from_header.or(from_query)
}

/// Whether an `Authorization` value is a Bearer credential (`Bearer ` and something,
/// the scheme in any case), read as bytes: one that is not UTF-8 is not taken as a key,
/// but may hold one.
fn is_bearer(value: &HeaderValue) -> bool {
    let v = value.as_bytes().trim_ascii();
    v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")
}

/// Whether the request is gRPC, which answers refusals in trailers.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// `uri` without its `token` parameters; `None` when it has none.
fn without_query_token(uri: &Uri) -> Option<Uri> {
    let query = uri.query()?;
    let is_token = |pair: &&str| pair.split('=').next() == Some(QUERY_PARAMETER);
    if !query.split('&').any(|p| is_token(&p)) {
        return None;
    }
    let rest: Vec<&str> = query.split('&').filter(|p| !is_token(p)).collect();
    let path_and_query = if rest.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";

    fn request(uri: &str, authorization: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(a) = authorization {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_header_is_removed() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let mut req = request("/api/quote", Some(&format!("{scheme} {T}")));
            assert_eq!(take_token(&mut req, false), Some(Token::new(T)), "{scheme}");
            assert!(req.headers().get(AUTHORIZATION).is_none());
        }
    }

    #[test]
    fn other_schemes_and_empty_headers_are_no_token() {
        for value in [
            format!("Basic {T}"),
            T.to_owned(),
            "Bearer ".to_owned(),
            "Bearer".to_owned(),
        ] {
            let mut req = request("/api/quote", Some(&value));
            assert_eq!(take_token(&mut req, true), None, "{value}");
        }
        let mut req = request("/api/quote", None);
        assert_eq!(take_token(&mut req, true), None);
    }

    #[test]
    fn the_query_token_counts_only_where_enabled() {
        let mut req = request(&format!("/ws?token={T}"), None);
        assert_eq!(take_token(&mut req, false), None);
        assert_eq!(
            req.uri().query(),
            Some(format!("token={T}").as_str()),
            "left alone"
        );

        let mut req = request(&format!("/ws?a=1&token={T}&b=2"), None);
        assert_eq!(take_token(&mut req, true), Some(Token::new(T)));
        assert_eq!(req.uri().path(), "/ws");
        assert_eq!(
            req.uri().query(),
            Some("a=1&b=2"),
            "the token is taken out of the URI"
        );

        let mut req = request(&format!("/ws?token={T}"), None);
        assert_eq!(take_token(&mut req, true), Some(Token::new(T)));
        assert_eq!(req.uri().to_string(), "/ws");
    }

    #[test]
    fn the_query_token_is_percent_decoded() {
        let mut req = request("/ws?token=fc%5F8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f", None);
        assert_eq!(take_token(&mut req, true), Some(Token::new(T)));
        let mut req = request("/ws?token=%zz", None);
        assert_eq!(take_token(&mut req, true), None, "badly escaped");
    }

    #[test]
    fn the_header_wins_over_the_query_and_both_are_removed() {
        let other = "fc_00000000000000000000000000000000";
        let mut req = request(&format!("/ws?token={other}"), Some(&format!("Bearer {T}")));
        assert_eq!(take_token(&mut req, true), Some(Token::new(T)));
        assert!(req.headers().get(AUTHORIZATION).is_none());
        assert_eq!(req.uri().query(), None);
    }

    #[test]
    fn a_bearer_key_in_any_authorization_header_is_removed_whichever_key_is_used() {
        let other = "fc_00000000000000000000000000000000";
        let firsts: [&[u8]; 3] = [b"Basic dXNlcjpwYXNz", b"Bearer fc_\xff", b"Bearer"];
        for first in firsts {
            let mut req = request(&format!("/ws?token={T}"), None);
            let h = req.headers_mut();
            h.append(AUTHORIZATION, HeaderValue::from_bytes(first).unwrap());
            h.append(AUTHORIZATION, format!("Bearer {other}").parse().unwrap());
            assert_eq!(
                take_token(&mut req, true),
                Some(Token::new(T)),
                "the first header is no Bearer key: the query's"
            );
            assert!(
                req.headers().get(AUTHORIZATION).is_none(),
                "after {:?}, a Bearer key was left in the request",
                String::from_utf8_lossy(first)
            );
        }
        let mut req = request("/api/quote", Some("Basic dXNlcjpwYXNz"));
        assert_eq!(take_token(&mut req, false), None);
        assert!(
            req.headers().get(AUTHORIZATION).is_some(),
            "a request without a Bearer credential keeps its Authorization"
        );
    }

    #[test]
    fn grpc_is_told_by_its_content_type() {
        let grpc = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, ct.parse().unwrap());
            is_grpc(&h)
        };
        assert!(grpc("application/grpc"));
        assert!(grpc("application/grpc+proto"));
        assert!(!grpc("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
