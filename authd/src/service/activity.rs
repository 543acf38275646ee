//! Key activity: when each key was last used.

use futu_auth_proto::{ErrorKind, KeyId, Response};

use super::Authd;

impl Authd {
    /// [`futu_auth_proto::Request::KeyActivity`].
    pub(super) async fn key_activity(&self, request_id: u64, ids: Vec<KeyId>) -> Response {
        let _ = ids;
        Response::Error {
            request_id,
            kind: ErrorKind::Internal,
            message: "KeyActivity is not served by this build".into(),
        }
    }
}
