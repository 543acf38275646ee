//! futu-authd's protocol for the harness, and the echo server that answers it without
//! deciding anything (the floor for this protocol on this machine).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futu_auth_proto::codec::{encode_frame, encode_message};
use futu_auth_proto::{
    Check, CodecError, Decision, FrameCodec, Hello, Iface, KeyId, Market, Order, Request, Response, Scope,
    Token, TrdEnv, TrdSide, PROTOCOL_VERSION,
};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::harness::{HarnessError, Verdict, Wire};

/// The order every order-write check carries: a simulated sell of 100 HK.00700 at 388.2
/// (value 38 820), inside every limit of the benchmark's key.
pub fn bench_order() -> Order {
    Order {
        env: TrdEnv::Simulate,
        market: Market::HK,
        symbol: "HK.00700".into(),
        side: TrdSide::SELL,
        qty: 100.0,
        price: Some(388.2),
    }
}

/// Which check the harness sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// `Trd_PlaceOrder` with [`bench_order`]: every limit is checked and consumed.
    Order,
    /// `Qot_GetBasicQot`, no order.
    Read,
}

impl CheckKind {
    /// The Check request of this kind (`dry_run`: decided without consuming anything).
    pub fn check(self, token: &Token, request_id: u64, dry_run: bool) -> Check {
        let (endpoint, order) = match self {
            CheckKind::Order => ("Trd_PlaceOrder", Some(bench_order())),
            CheckKind::Read => ("Qot_GetBasicQot", None),
        };
        Check {
            request_id,
            token: token.clone(),
            iface: Iface::Rest,
            endpoint: endpoint.into(),
            order,
            dry_run,
            acc_id: None,
            ref_price: None,
        }
    }
}

/// A Check frame with the request id patched in: the body after the variant index and the
/// id is the same for every request, so it is encoded once. [`FutuWire::new`] checks the
/// result against the codec byte for byte.
pub struct FutuWire {
    /// The body after `01` (Check) and the request id.
    tail: Vec<u8>,
}

impl FutuWire {
    /// Checks of `kind` with `token`.
    pub fn new(kind: CheckKind, token: &Token) -> FutuWire {
        FutuWire::with(kind, token, false)
    }

    /// Dry-run checks of `kind`: decided in full, nothing consumed (no ledger write).
    pub fn dry_run(kind: CheckKind, token: &Token) -> FutuWire {
        FutuWire::with(kind, token, true)
    }

    fn with(kind: CheckKind, token: &Token, dry_run: bool) -> FutuWire {
        let check = |id| Request::Check(kind.check(token, id, dry_run));
        let body = encode_message(&check(0)).expect("a check encodes");
        assert_eq!(&body[..2], &[1, 0], "Check variant 1, request id 0");
        let wire = FutuWire {
            tail: body[2..].to_vec(),
        };
        for id in [
            1,
            250,
            251,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
        ] {
            let mut out = BytesMut::new();
            wire.put(id, &mut out);
            let expected = encode_frame(&check(id)).expect("a check encodes");
            assert_eq!(&out[..], &expected[..], "patched frame for request id {id}");
        }
        wire
    }

    fn put(&self, id: u64, out: &mut BytesMut) {
        let mut id_bytes = [0u8; 9];
        let id_len = varint(id, &mut id_bytes);
        let body_len = 1 + id_len + self.tail.len();
        out.reserve(4 + body_len);
        out.put_u32(body_len as u32);
        out.put_u8(1);
        out.put_slice(&id_bytes[..id_len]);
        out.put_slice(&self.tail);
    }
}

/// bincode 2's unsigned varint (docs/PROTOCOL.md §4); returns the bytes used.
fn varint(v: u64, out: &mut [u8; 9]) -> usize {
    if v < 251 {
        out[0] = v as u8;
        1
    } else if v < 1 << 16 {
        out[0] = 251;
        out[1..3].copy_from_slice(&(v as u16).to_le_bytes());
        3
    } else if v < 1 << 32 {
        out[0] = 252;
        out[1..5].copy_from_slice(&(v as u32).to_le_bytes());
        5
    } else {
        out[0] = 253;
        out[1..9].copy_from_slice(&v.to_le_bytes());
        9
    }
}

/// The Hello frame the harness opens every connection with.
pub fn hello_frame(client_name: &str) -> Vec<u8> {
    encode_frame(&Request::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: client_name.into(),
    }))
    .expect("hello encodes")
}

impl Wire for FutuWire {
    type Decoder = FrameCodec<Response, Request>;
    type Resp = Response;
    type DecodeError = CodecError;

    fn decoder(&self) -> Self::Decoder {
        FrameCodec::new()
    }

    fn hello(&self) -> Option<Vec<u8>> {
        Some(hello_frame("load-bench"))
    }

    fn accept_hello(&self, resp: &Response) -> Result<(), HarnessError> {
        match resp {
            Response::HelloOk { .. } => Ok(()),
            other => Err(HarnessError::HelloRefused(format!("{other:?}"))),
        }
    }

    fn encode(&self, _conn: usize, seq: u64, out: &mut BytesMut) {
        self.put(seq, out);
    }

    fn judge(&self, seq: u64, resp: &Response) -> Verdict {
        match resp {
            Response::Decision { request_id, .. } if *request_id != seq => {
                Verdict::Error(format!("answer to request {request_id} where {seq} was due"))
            }
            Response::Decision {
                decision: Decision::Allow { .. },
                ..
            } => Verdict::Allow,
            Response::Decision {
                decision: Decision::Deny { reason, .. },
                ..
            } => Verdict::Deny(Cow::Borrowed(reason.as_str())),
            Response::Error { kind, message, .. } => Verdict::Error(format!("error {kind}: {message}")),
            other => Verdict::Error(format!("unexpected answer {other:?}")),
        }
    }
}

/// The echo server's main: listens on `path` with a multi-thread runtime like the
/// daemon's, answers Hello with HelloOk and every other request with a fixed Allow that
/// carries its request id. Exits when its standard input closes (the benchmark is gone).
pub fn echo_server_main(path: &Path) -> std::process::ExitCode {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let _ = std::fs::remove_file(path);
        let listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("echo server: bind {}: {e}", path.display());
                std::process::exit(1);
            }
        };
        let key_id: KeyId = "bench".parse().expect("valid key id");
        let key_id = Arc::new(key_id);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(echo_connection(stream, Arc::clone(&key_id)));
                }
                Err(e) => {
                    eprintln!("echo server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Answers one connection; like the daemon, every answer already due goes out in one write.
async fn echo_connection(stream: UnixStream, key_id: Arc<KeyId>) {
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, FrameCodec::<Request, Response>::new());
    let mut writer = FramedWrite::new(write, FrameCodec::<Request, Response>::new());
    let answer = |req: Request| match req {
        Request::Hello(_) => Response::HelloOk {
            protocol_version: PROTOCOL_VERSION,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        other => Response::Decision {
            request_id: other.request_id(),
            decision: Decision::Allow {
                key_id: KeyId::clone(&key_id),
                scope: Some(Scope::TradeSimulate),
                ticket: None,
            },
        },
    };
    while let Some(Ok(req)) = reader.next().await {
        if writer.feed(answer(req)).await.is_err() {
            return;
        }
        while let Some(Some(Ok(req))) = reader.next().now_or_never() {
            if writer.feed(answer(req)).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}
