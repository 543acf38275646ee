//! The MCP front-end (rmcp): five tools over the demo broker, each mapped to an endpoint
//! and decided through the session of its key — the layer's, over streamable HTTP
//! (`--mcp-listen`, path `/mcp`), or FUTU_MCP_API_KEY's, over stdio (`--mcp-stdio`). A
//! refusal is a tool error naming its reason, detail and retry time.

use std::sync::Arc;

use futu_auth_client::http::{CheckContext, Refusal};
use futu_auth_client::mcp::{self, KeySource};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::broker::{Broker, OrderRequest};

/// The tools, for one MCP session.
#[derive(Clone)]
pub struct Tools {
    broker: Arc<Broker>,
    /// Where a call's key is.
    keys: KeySource,
    tool_router: ToolRouter<Tools>,
}

/// `get_quote`'s arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct QuoteArgs {
    /// The security, e.g. HK.00700.
    symbol: String,
}

/// `place_order`'s arguments: the fields of `POST /api/order`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderArgs {
    /// `simulate` or `real`.
    env: String,
    /// E.g. HK, US.
    market: String,
    /// E.g. HK.00700.
    symbol: String,
    /// BUY or SELL.
    side: String,
    /// Quantity.
    qty: f64,
    /// Limit price; none for a market order.
    price: Option<f64>,
    /// The broker account (Futu's accID).
    acc_id: Option<u64>,
}

/// `get_funds`'s arguments.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct FundsArgs {
    /// The broker account (Futu's accID).
    #[serde(default)]
    acc_id: Option<u64>,
}

/// `cancel_order`'s arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CancelArgs {
    /// The order to cancel, as place_order answered it.
    order_id: u64,
}

impl Tools {
    /// The tools over `broker`, finding each call's key in `keys`.
    pub fn new(broker: Arc<Broker>, keys: KeySource) -> Tools {
        Tools {
            broker,
            keys,
            tool_router: Tools::tool_router(),
        }
    }
}

#[tool_router]
impl Tools {
    /// Qot_GetBasicQot.
    #[tool(
        description = "The quote of a security (Qot_GetBasicQot; needs qot:read), e.g. {\"symbol\": \"HK.00700\"}"
    )]
    async fn get_quote(
        &self,
        Parameters(QuoteArgs { symbol }): Parameters<QuoteArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Err(refusal) = self.keys.session(&ctx)?.check("Qot_GetBasicQot").await {
            return Ok(refused(&refusal));
        }
        Ok(match self.broker.quote(&symbol) {
            Some(quote) => ok(&quote),
            None => failed("no_quote", &format!("no quote for {symbol}")),
        })
    }

    /// Trd_GetFunds.
    #[tool(description = "The account's funds (Trd_GetFunds; needs acc:read): acc_id")]
    async fn get_funds(
        &self,
        Parameters(FundsArgs { acc_id }): Parameters<FundsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let session = self.keys.session(&ctx)?;
        Ok(
            match session
                .check_with("Trd_GetFunds", CheckContext::account(acc_id))
                .await
            {
                Ok(allowed) => ok(&self.broker.funds(allowed.key_id.as_str(), acc_id)),
                Err(refusal) => refused(&refusal),
            },
        )
    }

    /// Trd_ModifyOrder: a cancel of the key's own open order.
    #[tool(
        description = "Cancels an open order (Trd_ModifyOrder; needs trade:simulate or trade:real): order_id"
    )]
    async fn cancel_order(
        &self,
        Parameters(CancelArgs { order_id }): Parameters<CancelArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let allowed = match self.keys.session(&ctx)?.may_trade("Trd_ModifyOrder", None).await {
            Ok(allowed) => allowed,
            Err(refusal) => return Ok(refused(&refusal)),
        };
        Ok(
            match self.broker.cancel(allowed.key_id.as_str(), order_id).await {
                Ok(ack) => ok(&ack),
                Err(no) => failed("no_order", &no.detail),
            },
        )
    }

    /// Trd_PlaceOrder: the order's check takes its rate slot and daily value once.
    #[tool(
        description = "Places an order (Trd_PlaceOrder; needs trade:simulate or trade:real): env, market, symbol, side, qty, price, acc_id"
    )]
    async fn place_order(
        &self,
        Parameters(args): Parameters<OrderArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let session = self.keys.session(&ctx)?;
        let req: OrderRequest = match serde_json::to_value(&args).and_then(serde_json::from_value) {
            Ok(req) => req,
            Err(e) => return Ok(failed("bad_order", &format!("not an order: {e}"))),
        };
        let order = req.order();
        let placed = match session
            .place_as_with("Trd_PlaceOrder", order.clone(), self.broker.context(&req))
            .await
        {
            Ok(placed) => placed,
            Err(refusal) => return Ok(refused(&refusal)),
        };
        Ok(match self.broker.place(&order, placed).await {
            Ok(ack) => ok(&ack),
            Err(rejection) => failed("broker_rejected", &rejection.detail),
        })
    }

    /// Trd_UnlockTrade.
    #[tool(description = "Unlocks trading (Trd_UnlockTrade; needs trade:unlock)")]
    async fn unlock_trade(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        Ok(match self.keys.session(&ctx)?.check("Trd_UnlockTrade").await {
            Ok(allowed) => ok(&self.broker.unlock(allowed.key_id.as_str())),
            Err(refusal) => refused(&refusal),
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn ok<T: Serialize>(value: &T) -> CallToolResult {
    let text = serde_json::to_string(value).unwrap_or_default();
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn refused(refusal: &Refusal) -> CallToolResult {
    tracing::debug!("MCP tool call refused: {refusal}");
    mcp::tool_error(refusal)
}

/// The broker's own failure, shaped as a refusal's text.
fn failed(reason: &str, detail: &str) -> CallToolResult {
    let text = json!({"reason": reason, "detail": detail, "retry_after_ms": null}).to_string();
    CallToolResult::error(vec![ContentBlock::text(text)])
}
