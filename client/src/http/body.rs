//! A request's JSON body read in the layer's terms: a body too large, not JSON, or not
//! what the route takes is a [`Refusal`] of the documented shape (`bad_request`, with
//! 413, 415 or 400), never a framework's plain-text error.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::HeaderMap;
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::credentials::is_grpc;
use super::refusal::{BadRequest, Refusal};

/// The largest JSON body [`read_json`] takes by default: far above any order, far below
/// what would let one client make the gateway buffer megabytes.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// How much of a decoder's message a refusal repeats: enough to say what and where.
const DETAIL_CHARS: usize = 200;

/// Reads `body` (at most `limit` bytes) and decodes it as the JSON of a `T`, the request
/// having `headers`: not `application/json` is 415, more than `limit` bytes 413, and a
/// body that does not decode — not JSON, a field missing, twice or of the wrong type, a
/// number out of range — 400 with the decoder's line and column. Numbers are read
/// correctly rounded: each is the `f64` nearest the decimal it is written as. The refusal
/// has the request's shape, as the layer's own: trailers-only for a gRPC request (content
/// type `application/grpc…`, which is never JSON: 415).
pub async fn read_json<T, B>(headers: &HeaderMap, body: B, limit: usize) -> Result<T, Refusal>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    read(headers, body, limit)
        .await
        .map_err(|refusal| refusal.with_grpc(is_grpc(headers)))
}

/// [`read_json`], its refusals plain HTTP.
async fn read<T, B>(headers: &HeaderMap, body: B, limit: usize) -> Result<T, Refusal>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if !is_json(headers) {
        return Err(Refusal::bad_request(
            BadRequest::MediaType,
            "the body must be JSON: send Content-Type: application/json",
        ));
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Refusal::bad_request(
                BadRequest::TooLarge,
                format!("the body is larger than {limit} bytes"),
            ))
        }
        Err(e) => {
            return Err(Refusal::bad_request(
                BadRequest::Malformed,
                format!("the body could not be read: {}", shown(&e.to_string())),
            ))
        }
    };
    decode_json(&bytes)
}

/// Decodes `bytes` as the JSON of a `T`: 400 with the decoder's line and column when they
/// are not one.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(bytes).map_err(|e| {
        Refusal::bad_request(
            BadRequest::Malformed,
            format!("the body is not a valid request: {}", shown(&e.to_string())),
        )
    })
}

/// Whether the request says its body is JSON (`application/json`, with any parameters,
/// in any case).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
        })
}

/// A decoder's message as a refusal may repeat it: without anything shaped like a key,
/// and short (a message can quote a string of the body).
fn shown(message: &str) -> String {
    let redacted = futu_auth_proto::key::redact(message);
    let mut out: String = redacted.chars().take(DETAIL_CHARS).collect();
    if out.len() < redacted.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use futu_auth_proto::Order;
    use http_body_util::Full;

    use crate::http::{Cause, Class};

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        h
    }

    async fn read(headers: &HeaderMap, body: &str) -> Result<Order, Refusal> {
        read_json(headers, Full::new(Bytes::from(body.to_owned())), 1024).await
    }

    const ORDER: &str =
        r#"{"env":"simulate","market":"HK","symbol":"HK.00700","side":"BUY","qty":100,"price":388.2}"#;

    #[tokio::test]
    async fn a_json_order_is_read() {
        let order = read(&json_headers(), ORDER).await.unwrap();
        assert_eq!(order.qty, 100.0);
    }

    #[tokio::test]
    async fn each_body_that_cannot_be_read_is_refused_with_its_status_and_where() {
        let cases = [
            (
                json_headers(),
                ORDER.replace("\"qty\":100", "\"qty\":100,\"qty\":1"),
                Class::InvalidArgument,
                "duplicate field",
            ),
            (
                json_headers(),
                ORDER.replace("\"qty\":100", "\"qty\":\"1\""),
                Class::InvalidArgument,
                "invalid type",
            ),
            (
                json_headers(),
                ORDER.replace("\"qty\":100", "\"qty\":1e400"),
                Class::InvalidArgument,
                "out of range",
            ),
            (json_headers(), "{".to_owned(), Class::InvalidArgument, "EOF"),
            (
                json_headers(),
                " ".repeat(2000),
                Class::TooLarge,
                "larger than 1024",
            ),
            (
                HeaderMap::new(),
                ORDER.to_owned(),
                Class::UnsupportedMediaType,
                "Content-Type",
            ),
        ];
        for (headers, body, class, says) in cases {
            let refusal = read(&headers, &body).await.unwrap_err();
            assert!(matches!(refusal.cause(), Cause::BadRequest(_)), "{body}");
            assert_eq!(refusal.cause().as_str(), "bad_request");
            assert_eq!(refusal.class(), class, "{body}: {}", refusal.detail());
            assert!(refusal.detail().contains(says), "{body}: {}", refusal.detail());
        }
        let refusal = read(&json_headers(), "{\n\"qty\": [}").await.unwrap_err();
        assert!(refusal.detail().contains("line 2"), "{}", refusal.detail());
    }

    /// A decimal text as a client might write a number: up to 25 significant digits, a
    /// decimal point anywhere, an exponent or not.
    fn decimal() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (
            proptest::string::string_regex("[1-9][0-9]{0,24}").unwrap(),
            any::<proptest::sample::Index>(),
            proptest::option::of(-340i32..340),
        )
            .prop_map(|(digits, point, exponent)| {
                let at = point.index(digits.len() + 1);
                let mut text = match at {
                    0 => format!("0.{digits}"),
                    at if at == digits.len() => digits,
                    at => format!("{}.{}", &digits[..at], &digits[at..]),
                };
                if let Some(e) = exponent {
                    text = format!("{text}e{e}");
                }
                text
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(100_000))]

        /// Every number of a body is the f64 nearest the decimal it is written as: what
        /// the layer decodes equals Rust's own correctly rounded parser (`str::parse`, an
        /// implementation independent of serde_json's), and a number too large for an
        /// f64 is refused.
        #[test]
        fn numbers_are_read_correctly_rounded(text in decimal()) {
            let exact: f64 = text.parse().unwrap();
            let order = ORDER.replace("388.2", &text);
            let decoded = decode_json::<Order>(order.as_bytes());
            if exact.is_finite() {
                let price = decoded.expect("a finite number decodes").price;
                proptest::prop_assert_eq!(price.map(f64::to_bits), Some(exact.to_bits()), "{}", text);
            } else {
                proptest::prop_assert!(decoded.is_err(), "{} is out of range", text);
            }
        }
    }

    #[test]
    fn numbers_that_drifted_before_are_read_exactly() {
        for text in [
            "987.4559437006833",
            "1e-305",
            "1e308",
            "0.30000000000000004",
            "9007199254740993",
        ] {
            let order = ORDER.replace("388.2", text);
            let price = decode_json::<Order>(order.as_bytes()).unwrap().price.unwrap();
            assert_eq!(price.to_bits(), text.parse::<f64>().unwrap().to_bits(), "{text}");
        }
    }

    #[tokio::test]
    async fn a_grpc_request_is_refused_in_trailers_like_every_other_refusal() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
        let refusal = read(&headers, ORDER).await.unwrap_err();
        assert_eq!(refusal.class(), Class::UnsupportedMediaType);
        assert!(refusal.is_grpc(), "a gRPC request's refusal is gRPC's");
        let res = refusal.into_response();
        assert_eq!(res.status(), http::StatusCode::OK, "trailers-only");
        assert_eq!(res.headers()["grpc-status"], "3");
        assert_eq!(res.headers()["futu-reason"], "bad_request");
        assert!(!read(&json_headers(), "{").await.unwrap_err().is_grpc());
    }

    #[tokio::test]
    async fn a_refusal_never_repeats_a_key_or_a_long_string_of_the_body() {
        let t = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";
        let body = ORDER.replace("\"qty\":100", &format!("\"qty\":\"{t}\""));
        let refusal = read(&json_headers(), &body).await.unwrap_err();
        assert!(!refusal.detail().contains("8a3f"), "{}", refusal.detail());
        let body = ORDER.replace("\"qty\":100", &format!("\"qty\":\"{}\"", "x".repeat(900)));
        let refusal = read(&json_headers(), &body).await.unwrap_err();
        assert!(refusal.detail().chars().count() < 260, "{}", refusal.detail());
    }
}
