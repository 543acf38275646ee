//! Key rotation: a new plaintext for a key, the old one accepted for an overlap.

use futu_auth_proto::{ErrorKind, KeyId, Response};

use super::Authd;

impl Authd {
    /// [`futu_auth_proto::Request::RotateKey`].
    pub(super) async fn rotate_key(&self, request_id: u64, id: KeyId, overlap_secs: u64) -> Response {
        let _ = (id, overlap_secs);
        Response::Error {
            request_id,
            kind: ErrorKind::Internal,
            message: "RotateKey is not served by this build".into(),
        }
    }
}
