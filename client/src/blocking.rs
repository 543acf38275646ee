//! [`BlockingAuthClient`]: the same client for callers without an async runtime.

use std::path::Path;
use std::time::Duration;

use futu_auth_proto::{Decision, Iface, Order, Scope, Token};

use crate::client::{AuthClient, DEFAULT_DEADLINE};
use crate::error::ClientError;

/// An [`AuthClient`] driven by a runtime of its own; each call blocks the calling thread
/// for at most the deadline. Every `Err` must be treated as a deny.
#[derive(Debug)]
pub struct BlockingAuthClient {
    client: AuthClient,
    runtime: tokio::runtime::Runtime,
}

impl BlockingAuthClient {
    /// Connects to the daemon at `socket_path` with the default 50 ms deadline.
    pub fn connect(socket_path: impl AsRef<Path>) -> Result<BlockingAuthClient, ClientError> {
        BlockingAuthClient::connect_with_deadline(socket_path, DEFAULT_DEADLINE)
    }

    /// Connects with a deadline of your choosing for every call.
    pub fn connect_with_deadline(
        socket_path: impl AsRef<Path>,
        deadline: Duration,
    ) -> Result<BlockingAuthClient, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot start a runtime: {e}")))?;
        let client = runtime.block_on(
            AuthClient::builder(socket_path)
                .client_name("futu-auth-client (blocking)")
                .deadline(deadline)
                .connect(),
        )?;
        Ok(BlockingAuthClient { client, runtime })
    }

    /// See [`AuthClient::check`].
    pub fn check(
        &self,
        token: &Token,
        iface: Iface,
        endpoint: &str,
        order: Option<Order>,
    ) -> Result<Decision, ClientError> {
        self.runtime
            .block_on(self.client.check(token, iface, endpoint, order))
    }

    /// See [`AuthClient::check_dry_run`].
    pub fn check_dry_run(
        &self,
        token: &Token,
        iface: Iface,
        endpoint: &str,
        order: Option<Order>,
    ) -> Result<Decision, ClientError> {
        self.runtime
            .block_on(self.client.check_dry_run(token, iface, endpoint, order))
    }

    /// See [`AuthClient::check_scope`].
    pub fn check_scope(&self, token: &Token, iface: Iface, scope: Scope) -> Result<Decision, ClientError> {
        self.runtime
            .block_on(self.client.check_scope(token, iface, scope))
    }

    /// See [`AuthClient::release`].
    pub fn release(&self, ticket: u64) -> Result<f64, ClientError> {
        self.runtime.block_on(self.client.release(ticket))
    }

    /// The async client underneath, for the admin calls.
    pub fn inner(&self) -> &AuthClient {
        &self.client
    }

    /// Runs any future of the async client on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}
