//! The gRPC front-end (tonic): `Gateway/Request`, one generic call whose protocol id is in
//! the body, behind the auth layer. The layer requires a key; the handler names the
//! endpoint once it has decoded the id.

use std::sync::Arc;

use futu_auth_client::http::{decode_json, CheckContext, Endpoint, OrderHandle, Refusal, Routes};
use serde::Deserialize;
use tonic::{Request, Response, Status};

use crate::broker::{
    AccountRequest, Broker, OrderRequest, QOT_GET_BASIC_QOT, TRD_GET_FUNDS, TRD_MODIFY_ORDER, TRD_PLACE_ORDER,
};

/// The code tonic generates from `proto/gateway.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("futu.gateway");
}

use pb::gateway_server::{Gateway, GatewayServer};
use pb::{ProtoReply, ProtoRequest};

/// The gRPC method path, for the auth layer: its endpoint is in the body.
pub fn routes() -> Routes {
    Routes::new().grpc("/futu.gateway.Gateway/Request", Endpoint::in_body())
}

/// The service, ready for `Server::builder().layer(auth).add_service(…)`.
pub fn service(broker: Arc<Broker>) -> GatewayServer<GatewayService> {
    GatewayServer::new(GatewayService { broker }).max_decoding_message_size(MAX_MESSAGE)
}

/// The largest request message the gateway reads: a call is some 200 bytes. A larger one
/// is refused (tonic's OUT_OF_RANGE) before it is decoded.
const MAX_MESSAGE: usize = 64 * 1024;

/// `Gateway` over the demo broker.
#[derive(Debug)]
pub struct GatewayService {
    broker: Arc<Broker>,
}

#[derive(Deserialize)]
struct QuoteBody {
    symbol: String,
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn request(&self, req: Request<ProtoRequest>) -> Result<Response<ProtoReply>, Status> {
        let auth = req
            .extensions()
            .get::<OrderHandle>()
            .cloned()
            .ok_or_else(|| Status::internal("no auth layer in front of this service"))?;
        let ProtoRequest { proto_id, body_json } = req.into_inner();
        let endpoint = proto_id.to_string();
        let body_json = if proto_id == TRD_PLACE_ORDER {
            self.order(&auth, &endpoint, body(&body_json)?).await?
        } else if proto_id == TRD_MODIFY_ORDER {
            self.cancel(&auth, &endpoint, body(&body_json)?).await?
        } else if proto_id == TRD_GET_FUNDS {
            let AccountRequest { acc_id, .. } = if body_json.trim().is_empty() {
                AccountRequest::default()
            } else {
                body(&body_json)?
            };
            let allowed = auth
                .check_with(&endpoint, CheckContext::account(acc_id))
                .await
                .map_err(status)?;
            json(&self.broker.funds(allowed.key_id.as_str(), acc_id))?
        } else {
            auth.check(&endpoint).await.map_err(status)?;
            match proto_id {
                QOT_GET_BASIC_QOT => self.quote(body(&body_json)?)?,
                other => {
                    return Err(Status::unimplemented(format!(
                        "the demo broker does not serve {other}"
                    )))
                }
            }
        };
        Ok(Response::new(ProtoReply { body_json }))
    }
}

impl GatewayService {
    /// 2202 Trd_PlaceOrder: the order's check is `place_as_with`, here, where the body is
    /// decoded, with its account and the demo's quote as the reference price.
    async fn order(&self, auth: &OrderHandle, endpoint: &str, req: OrderRequest) -> Result<String, Status> {
        let order = req.order();
        let placed = auth
            .place_as_with(endpoint, order.clone(), self.broker.context(&req))
            .await
            .map_err(status)?;
        match self.broker.place(&order, placed).await {
            Ok(ack) => json(&ack),
            Err(rejection) => Err(Status::failed_precondition(json(&rejection)?)),
        }
    }

    /// 2205 Trd_ModifyOrder, a cancel of `{"order_id"}`: may the key trade, then the
    /// broker cancels the key's own order.
    async fn cancel(
        &self,
        auth: &OrderHandle,
        endpoint: &str,
        req: AccountRequest,
    ) -> Result<String, Status> {
        let Some(order_id) = req.order_id else {
            return Err(Status::invalid_argument("a cancel needs its order_id"));
        };
        let allowed = auth.may_trade(endpoint, None).await.map_err(status)?;
        match self.broker.cancel(allowed.key_id.as_str(), order_id).await {
            Ok(ack) => json(&ack),
            Err(no) => Err(Status::not_found(no.detail)),
        }
    }

    /// 3004 Qot_GetBasicQot.
    fn quote(&self, QuoteBody { symbol }: QuoteBody) -> Result<String, Status> {
        let quote = self.broker.quote(&symbol);
        json(&quote.ok_or_else(|| Status::not_found(format!("no quote for {symbol}")))?)
    }
}

/// The refusal as tonic's `Status`: the same trailers as the layer's own refusals.
fn status(refusal: Refusal) -> Status {
    Status::from_header_map(refusal.into_response().headers())
        .unwrap_or_else(|| Status::internal("a refusal without grpc-status"))
}

/// A reply body.
fn json<T: serde::Serialize>(value: &T) -> Result<String, Status> {
    serde_json::to_string(value).map_err(|e| Status::internal(e.to_string()))
}

/// A request body, or the layer's `bad_request` refusal (INVALID_ARGUMENT, with
/// `futu-reason: bad_request`) saying what and where.
fn body<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Status> {
    decode_json(json.as_bytes()).map_err(|refusal| status(refusal.with_grpc(true)))
}
