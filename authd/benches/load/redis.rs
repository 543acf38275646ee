//! What a user would deploy instead of futu-authd: redis-server on a Unix socket with the
//! same decision as one Lua script (EVALSHA per check), spoken to in RESP written by hand.
//!
//! A key is a hash `key:<sha256 hex of the token>` loaded at start (scopes, markets,
//! symbols, sides, caps, rate, hours, expiry); the script checks expiry, scope, the hours
//! window, the market/symbol/side whitelists and the per-order cap, then a 60 s sliding
//! window in a sorted set (ZREMRANGEBYSCORE + ZCARD + ZADD with a unique member) and a
//! daily total (GET + INCRBYFLOAT on a per-day key with EXPIRE), and answers `allow` or
//! `deny:<reason>`. The gateway (here: the harness) hashes the token itself.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::net::UnixStream;
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::futu::{bench_order, CheckKind};
use crate::harness::{HarnessError, Verdict, Wire};
use crate::procs::{self, ChildGuard};

/// The decision, in Lua. KEYS[1] = `key:<digest>`; ARGV = scope, market, symbol, side,
/// order value, unique member (market empty: no order).
pub const SCRIPT: &str = r#"
local k = redis.call('HMGET', KEYS[1], 'id', 'scopes', 'markets', 'symbols', 'sides',
  'max_order_value', 'max_daily_value', 'rate', 'hours_start', 'hours_end', 'expires')
if not k[1] then return 'deny:unknown_key' end
local t = redis.call('TIME')
local now_s = tonumber(t[1])
if k[11] and now_s >= tonumber(k[11]) then return 'deny:expired' end
if not string.find(k[2], ',' .. ARGV[1] .. ',', 1, true) then return 'deny:scope' end
if k[9] then
  local m = math.floor((now_s % 86400) / 60)
  local s, e = tonumber(k[9]), tonumber(k[10])
  local inside
  if s < e then inside = (m >= s and m < e) else inside = (m >= s or m < e) end
  if not inside then return 'deny:hours' end
end
if ARGV[2] == '' then return 'allow' end
if k[3] and not string.find(k[3], ',' .. ARGV[2] .. ',', 1, true) then return 'deny:market' end
if k[4] and not string.find(k[4], ',' .. ARGV[3] .. ',', 1, true) then return 'deny:symbol' end
if k[5] and not string.find(k[5], ',' .. ARGV[4] .. ',', 1, true) then return 'deny:side' end
local value = tonumber(ARGV[5])
if k[6] and value > tonumber(k[6]) then return 'deny:order_value' end
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local wkey = 'rate:' .. k[1]
redis.call('ZREMRANGEBYSCORE', wkey, '-inf', now_ms - 60000)
if k[8] and redis.call('ZCARD', wkey) >= tonumber(k[8]) then return 'deny:rate' end
local dkey = 'daily:' .. k[1] .. ':' .. math.floor(now_s / 86400)
local used = tonumber(redis.call('GET', dkey) or '0')
if k[7] and used + value > tonumber(k[7]) then return 'deny:daily_value' end
redis.call('ZADD', wkey, now_ms, ARGV[6])
redis.call('EXPIRE', wkey, 120)
redis.call('INCRBYFLOAT', dkey, value)
redis.call('EXPIRE', dkey, 172800)
return 'allow'
"#;

/// A RESP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`.
    Simple(String),
    /// `-ERR …`.
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$n …` (None: `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n …` (None: `*-1`).
    Array(Option<Vec<Resp>>),
}

/// RESP: arrays of bulk strings out, any reply in.
#[derive(Debug, Default)]
pub struct RespCodec;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses one reply from the start of `buf`: `Ok(None)` when it is not all there yet.
fn parse(buf: &[u8]) -> io::Result<Option<(Resp, usize)>> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..eol]).map_err(|_| bad("non-UTF-8 reply line"))?;
    let after = eol + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| bad(format!("bad number {line:?}")))
    };
    match tag {
        b'+' => Ok(Some((Resp::Simple(line.to_owned()), after))),
        b'-' => Ok(Some((Resp::Error(line.to_owned()), after))),
        b':' => Ok(Some((Resp::Int(number()?), after))),
        b'$' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Resp::Bulk(None), after)));
            }
            let n = n as usize;
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            Ok(Some((
                Resp::Bulk(Some(buf[after..after + n].to_vec())),
                after + n + 2,
            )))
        }
        b'*' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Resp::Array(None), after)));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut at = after;
            for _ in 0..n {
                match parse(&buf[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(Some(items)), at)))
        }
        other => Err(bad(format!("unknown reply type {:?}", other as char))),
    }
}

impl Decoder for RespCodec {
    type Item = Resp;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Resp>> {
        match parse(src)? {
            Some((resp, used)) => {
                src.advance(used);
                Ok(Some(resp))
            }
            None => Ok(None),
        }
    }
}

/// Appends a command (an array of bulk strings).
pub fn put_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    put_header(b'*', args.len(), out);
    for a in args {
        put_bulk(a.as_ref(), out);
    }
}

fn put_header(tag: u8, n: usize, out: &mut BytesMut) {
    out.put_u8(tag);
    let _ = write!(out, "{n}");
    out.put_slice(b"\r\n");
}

fn put_bulk(arg: &[u8], out: &mut BytesMut) {
    put_header(b'$', arg.len(), out);
    out.put_slice(arg);
    out.put_slice(b"\r\n");
}

impl<A: AsRef<[u8]>> Encoder<Vec<A>> for RespCodec {
    type Error = io::Error;

    fn encode(&mut self, args: Vec<A>, dst: &mut BytesMut) -> io::Result<()> {
        put_command(&args, dst);
        Ok(())
    }
}

/// Lower-case hex of the token's SHA-256, as the gateway would compute it per request.
fn digest_hex(token: &str, out: &mut [u8; 64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(token.as_bytes());
    for (i, b) in d.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

/// The harness's view of the redis decision.
pub struct RedisWire {
    script_sha: String,
    token: String,
    kind: CheckKind,
    /// Distinguishes this run's rate-window members from an earlier run's.
    run: u64,
}

impl RedisWire {
    /// EVALSHA of `script_sha` for checks of `kind` with `token`.
    pub fn new(script_sha: String, token: String, kind: CheckKind, run: u64) -> RedisWire {
        RedisWire {
            script_sha,
            token,
            kind,
            run,
        }
    }
}

impl Wire for RedisWire {
    type Decoder = RespCodec;
    type Resp = Resp;
    type DecodeError = io::Error;

    fn decoder(&self) -> RespCodec {
        RespCodec
    }

    fn hello(&self) -> Option<Vec<u8>> {
        None
    }

    fn accept_hello(&self, _resp: &Resp) -> Result<(), HarnessError> {
        Ok(())
    }

    fn encode(&self, conn: usize, seq: u64, out: &mut BytesMut) {
        let mut hex = [0u8; 64];
        digest_hex(&self.token, &mut hex);
        let mut key = [0u8; 68];
        key[..4].copy_from_slice(b"key:");
        key[4..].copy_from_slice(&hex);
        put_header(b'*', 10, out);
        put_bulk(b"EVALSHA", out);
        put_bulk(self.script_sha.as_bytes(), out);
        put_bulk(b"1", out);
        put_bulk(&key, out);
        match self.kind {
            CheckKind::Order => {
                let o = bench_order();
                let value = o.qty * o.price.unwrap_or(0.0);
                put_bulk(b"trade:simulate", out);
                put_bulk(o.market.as_str().as_bytes(), out);
                put_bulk(o.symbol.as_bytes(), out);
                put_bulk(o.side.as_str().as_bytes(), out);
                put_bulk(format!("{value}").as_bytes(), out);
            }
            CheckKind::Read => {
                put_bulk(b"qot:read", out);
                for _ in 0..4 {
                    put_bulk(b"", out);
                }
            }
        }
        put_bulk(format!("{}:{conn}:{seq}", self.run).as_bytes(), out);
    }

    fn judge(&self, _seq: u64, resp: &Resp) -> Verdict {
        match resp {
            Resp::Bulk(Some(b)) if b == b"allow" => Verdict::Allow,
            Resp::Bulk(Some(b)) if b.starts_with(b"deny:") => {
                Verdict::Deny(Cow::Owned(String::from_utf8_lossy(&b[5..]).into_owned()))
            }
            Resp::Error(e) => Verdict::Error(format!("redis error: {e}")),
            other => Verdict::Error(format!("unexpected redis reply {other:?}")),
        }
    }
}

/// Sends one command and reads its reply; an error reply is an `Err`.
async fn call(conn: &mut Framed<UnixStream, RespCodec>, args: Vec<&[u8]>) -> Result<Resp, String> {
    conn.send(args).await.map_err(|e| format!("redis write: {e}"))?;
    match conn.next().await {
        Some(Ok(Resp::Error(e))) => Err(format!("redis: {e}")),
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(format!("redis read: {e}")),
        None => Err("redis closed the connection".into()),
    }
}

/// A redis-server started for the benchmark.
pub struct RedisServer {
    /// Its Unix socket.
    pub socket: PathBuf,
    /// The loaded script's SHA-1.
    pub script_sha: String,
    guard: ChildGuard,
    log: PathBuf,
}

/// The redis-server binary, if installed.
pub fn find_binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    })
}

impl RedisServer {
    /// Starts `binary` on a socket in `dir` and loads the script and the benchmark's key.
    pub async fn start(binary: &Path, dir: &Path, token: &str) -> Result<RedisServer, String> {
        let socket = dir.join("redis.sock");
        let log = dir.join("redis.log");
        let child = Command::new(binary)
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--logfile"])
            .arg(&log)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut guard = ChildGuard::new("redis-server", child);
        let deadline = Instant::now() + Duration::from_secs(10);
        procs::wait_connectable(&socket, deadline, || match guard.exited() {
            Some(s) => Err(format!(
                "redis-server exited ({s}) before listening: {}",
                procs::tail(&log, 2000)
            )),
            None => Ok(()),
        })?;
        let mut server = RedisServer {
            socket,
            script_sha: String::new(),
            guard,
            log,
        };
        server.load(token).await?;
        Ok(server)
    }

    async fn load(&mut self, token: &str) -> Result<(), String> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| format!("connect {}: {e}", self.socket.display()))?;
        let mut conn = Framed::new(stream, RespCodec);
        self.script_sha = match call(&mut conn, vec![b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]).await? {
            Resp::Bulk(Some(sha)) => String::from_utf8_lossy(&sha).into_owned(),
            other => return Err(format!("SCRIPT LOAD answered {other:?}")),
        };
        let mut hex = [0u8; 64];
        digest_hex(token, &mut hex);
        let key = [&b"key:"[..], &hex[..]].concat();
        // The same limits as the daemon's key (see authd::bench_key).
        let fields: [(&str, &str); 11] = [
            ("id", "bench"),
            ("scopes", ",qot:read,acc:read,trade:simulate,"),
            ("markets", ",HK,US,"),
            ("symbols", ",HK.00700,HK.09988,"),
            ("sides", ",SELL,"),
            ("max_order_value", "1000000000"),
            ("max_daily_value", "1000000000000000"),
            ("rate", "4000000000"),
            ("hours_start", "0"),
            ("hours_end", "1439"),
            ("expires", "4070908800"),
        ];
        let mut args: Vec<&[u8]> = vec![b"HSET", &key];
        for (f, v) in &fields {
            args.push(f.as_bytes());
            args.push(v.as_bytes());
        }
        call(&mut conn, args).await?;
        Ok(())
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Stops it (SIGTERM, then SIGKILL).
    pub fn stop(self) -> Result<(), String> {
        let log = self.log.clone();
        match self.guard.terminate(Duration::from_secs(5)) {
            Ok((_, true)) => Ok(()),
            Ok((_, false)) => Err(format!("redis-server needed SIGKILL: {}", procs::tail(&log, 500))),
            Err(e) => Err(format!("stopping redis-server: {e}")),
        }
    }
}
