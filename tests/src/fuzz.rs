//! The bodies of the cargo-fuzz targets in `fuzz/`, one function per target, so that the
//! fuzzer (`fuzz/fuzz_targets/*.rs`, run by `make fuzz`) and the regression test
//! (`tests/fuzz_regressions.rs`, run by `make test`) execute the very same code.
//!
//! Each function takes arbitrary bytes and panics only when it finds a bug: a panic in the
//! code under test, or a broken property that the target checks (stated on each function).
//! Errors returned for bad input are the expected outcome, not a finding.
//!
//! * [`frame_decoder`]: the wire codec (`futu_auth_proto::codec`), one-shot and streaming.
//! * [`keys_json`]: `KeysFile::parse` of keys.json text and its round trip through `to_json`.
//! * [`ledger_replay`]: `LedgerLog::open` replaying a ledger journal and base from disk.
//! * [`layer_request`]: an HTTP request through futu-auth-client's layers (REST, gRPC,
//!   WebSocket, MCP) to a fake futu-authd (`gateway`).

use std::collections::HashSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use futu_auth_keys::store::KeysFile;
use futu_auth_proto::codec::decode_message_v;
use futu_auth_proto::{
    CodecError, FrameCodec, KeyId, Reason, Request, Response, Token, PROTOCOL_VERSION, PROTOCOL_VERSIONS,
};
use futu_auth_rules::clock::utc_day;
use futu_auth_rules::ledger::{Consumption, Ledger, LedgerDump, RATE_WINDOW_NS, RELEASE_WINDOW_NS};
use futu_auth_rules::money::Money;
use futu_authd::journal::{AuditMark, Audited, Entries, LedgerLog, Moment, Replay, BASE_NAME, FILE_NAME};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

mod gateway;

use gateway::{is_grpc, Answer, Gateway, HttpInput, Route};

/// A fuzz target's body: must not panic on any input.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as in `fuzz/Cargo.toml` and the `fuzz/corpus/` and
/// `fuzz/regressions/` directories.
pub const TARGETS: [(&str, Target); 4] = [
    ("frame_decoder", frame_decoder),
    ("keys_json", keys_json),
    ("ledger_replay", ledger_replay),
    ("layer_request", layer_request),
];

/// The target called `name` (one of [`TARGETS`]).
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Target `frame_decoder`: the first byte picks a split point, the rest is bytes as they
/// arrive on the socket.
///
/// * The rest, and the rest after a 4-byte length prefix (so that a whole-frame input
///   reaches the body decoders too), are decoded with
///   `codec::decode_message_v::<Request>`, and `::<Response>` in every protocol version
///   (requests read the same in all of them).
/// * The rest is fed to `FrameCodec` (both directions: the daemon's, which reads
///   `Request`s, and a client's, which reads `Response`s, in every protocol version)
///   as `Framed` does: `decode` until it wants more, the second part after the split, then
///   `decode_eof` at the end of the stream; the first error ends the stream.
///
/// Property: nothing panics, the decoder always makes progress, and where the stream is
/// split changes nothing: the messages and the error are the same as when all the bytes
/// arrive at once.
pub fn frame_decoder(data: &[u8]) {
    let (split, stream) = match data.split_first() {
        Some((&split, rest)) => (split, rest),
        None => (0, data),
    };
    // Requests read the same in every version; responses do not (a Deny).
    for body in [stream, stream.get(4..).unwrap_or_default()] {
        let _ = decode_message_v::<Request>(body, PROTOCOL_VERSION);
        for version in PROTOCOL_VERSIONS {
            let _ = decode_message_v::<Response>(body, version);
        }
    }
    let at = usize::from(split) % (stream.len() + 1);
    same_stream::<Request>(stream, at, PROTOCOL_VERSION);
    for version in PROTOCOL_VERSIONS {
        same_stream::<Response>(stream, at, version);
    }
}

/// Checks that `stream` decodes to the same messages of protocol `version` whether it
/// arrives whole or split at `at`.
fn same_stream<In: Debug>(stream: &[u8], at: usize, version: u16)
where
    FrameCodec<In, ()>: Decoder<Item = In, Error = CodecError>,
{
    let whole = decode_stream::<In>(&[stream], version);
    let (first, second) = stream.split_at(at);
    let split = decode_stream::<In>(&[first, second], version);
    assert_eq!(
        whole,
        split,
        "FrameCodec<{}> of version {version} decodes {} bytes differently when they arrive split at byte {at}",
        std::any::type_name::<In>(),
        stream.len()
    );
}

/// What a `FrameCodec` of protocol `version` reading `In` makes of `chunks` arriving one
/// after the other and then the end of the stream: each message's `Debug` text, then
/// `error: …` or `end`.
fn decode_stream<In: Debug>(chunks: &[&[u8]], version: u16) -> Vec<String>
where
    FrameCodec<In, ()>: Decoder<Item = In, Error = CodecError>,
{
    let mut codec = FrameCodec::<In, ()>::with_version(version);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    // Every message takes at least its 4-byte prefix out of the buffer: more rounds than
    // this means a decoder that returns messages without consuming input.
    let mut rounds_left = total / 4 + chunks.len() + 2;
    let mut next = |codec: &mut FrameCodec<In, ()>, buf: &mut BytesMut, eof: bool| {
        rounds_left = rounds_left
            .checked_sub(1)
            .expect("FrameCodec returned more messages than the input holds (no progress)");
        let before = buf.len();
        let got = if eof {
            codec.decode_eof(buf)
        } else {
            codec.decode(buf)
        };
        if let Ok(Some(_)) = &got {
            assert!(
                buf.len() < before,
                "FrameCodec returned a message without consuming input"
            );
        }
        got
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match next(&mut codec, &mut buf, false) {
                Ok(Some(msg)) => out.push(format!("{msg:?}")),
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("error: {e}"));
                    return out;
                }
            }
        }
    }
    loop {
        match next(&mut codec, &mut buf, true) {
            Ok(Some(msg)) => out.push(format!("{msg:?}")),
            Ok(None) => {
                out.push("end".to_owned());
                return out;
            }
            Err(e) => {
                out.push(format!("error: {e}"));
                return out;
            }
        }
    }
}

/// Target `keys_json`: the bytes as keys.json text (non-UTF-8 input is skipped: the
/// daemon reads the file as UTF-8 and refuses it before parsing).
///
/// Property: `KeysFile::parse` never panics, and a file it accepts survives a round trip:
/// `to_json()` (what `futucli` and the daemon save) parses again to an equal `KeysFile`.
pub fn keys_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("keys.json");
    let Ok(file) = KeysFile::parse(text, path) else {
        return;
    };
    let saved = file.to_json();
    let again = KeysFile::parse(&saved, path)
        .unwrap_or_else(|e| panic!("keys.json as saved does not load again: {e}\n{saved}"));
    assert_eq!(again, file, "keys.json changed in a save and load:\n{saved}");
}

/// The moment [`ledger_replay`] opens the log at: 01:00 UTC on day 100 of the Unix epoch
/// (1970-04-11), the ledger's monotonic clock at 5000 s. The seeds use day 100.
pub const REPLAY_MOMENT: Moment = Moment {
    unix_ns: 100 * 86_400 * 1_000_000_000 + 3_600 * 1_000_000_000,
    mono_ns: 5_000 * 1_000_000_000,
};

/// Target `ledger_replay`: the first byte picks a split point `n` of the rest; the first
/// `n` bytes become `ledger.base` (none when `n` is 0) and the others `ledger.log`, in a
/// fresh state directory, which `LedgerLog::open` then replays at [`REPLAY_MOMENT`]. The
/// newest commit's audit records count as written, missing or unknown depending on its
/// audit mark (`(at ^ records) % 3`).
///
/// Property: opening never panics (an `Err` is fine); when it succeeds, the base and
/// journal it wrote open again without a corrupt tail, to the same ledger (as far as a
/// base keeps it: see `kept`); and an order appended to the journal after that second
/// start is counted after a third (nothing written after a restart is lost).
pub fn ledger_replay(data: &[u8]) {
    let dir = state_dir_of(data);
    let ledger = Ledger::new();
    let Ok((log, _replay)) = LedgerLog::open(dir.path(), &ledger, REPLAY_MOMENT, &audited) else {
        return;
    };
    drop(log);
    let written = std::fs::read_to_string(dir.path().join(BASE_NAME)).unwrap_or_default();
    let again = Ledger::new();
    let (log, replay) = LedgerLog::open(dir.path(), &again, REPLAY_MOMENT, &audited)
        .unwrap_or_else(|e| panic!("the ledger.base just written does not open again: {e}\n{written}"));
    assert_eq!(
        replay.corrupt_tail, None,
        "the ledger.base just written has a corrupt tail:\n{written}"
    );
    assert_eq!(
        kept(again.dump()),
        kept(ledger.dump()),
        "the ledger.base just written replays to another ledger:\n{written}"
    );

    // An order of a key of its own, logged as the daemon logs one, survives a restart.
    let probe: KeyId = "fuzz-probe".parse().expect("a valid key id");
    let now = REPLAY_MOMENT;
    let today = utc_day(now.unix_ns.div_euclid(1_000_000_000));
    let number = again.dump().next_ticket;
    let order = Consumption {
        key_id: probe.clone(),
        number,
        ticket: again.public_ticket(number),
        mono_ns: now.mono_ns,
        unix_ns: i128::from(now.unix_ns),
        day: today,
        value: Money(PROBE_VALUE),
    };
    let mut entries = Entries::new();
    entries.consume(&order);
    if log.append(&entries, None).is_err() {
        return; // A full disk, say: the daemon refuses the order; nothing to check.
    }
    drop(log);
    let third = Ledger::new();
    let (log, _) = LedgerLog::open(dir.path(), &third, now, &audited)
        .unwrap_or_else(|e| panic!("the log does not open after an order was appended: {e}"));
    drop(log);
    assert_eq!(
        third.usage(&probe, now.mono_ns, today),
        (1, Money(PROBE_VALUE)),
        "an order appended after a restart is lost at the next restart; ledger.log was:\n{}",
        String::from_utf8_lossy(&std::fs::read(dir.path().join(FILE_NAME)).unwrap_or_default())
    );
}

/// The value of the order [`ledger_replay`] appends (1.5 in the ledger's units of 10⁻⁸).
const PROBE_VALUE: u128 = 150_000_000;

/// What opening the state of a [`ledger_replay`] input once reports.
fn ledger_replay_report(data: &[u8]) -> std::io::Result<Replay> {
    let dir = state_dir_of(data);
    LedgerLog::open(dir.path(), &Ledger::new(), REPLAY_MOMENT, &audited).map(|(_, replay)| replay)
}

/// Target `layer_request`: the bytes as one HTTP request to a gateway whose front-ends
/// are futu-auth-client's layers, in front of handlers of a few lines as in
/// `client/gw-demo`, asking a fake futu-authd on a Unix socket (`tests/src/fuzz/gateway.rs`).
/// The input:
///
/// * The first line: its first byte picks the route, `byte % 8` (so the ASCII digits
///   `0`–`7`, in this order); the rest of it is not read (the seeds name the route there).
///   The routes: `GET /api/quote`, `GET /api/funds`, `POST /api/order` (REST, `AuthLayer`;
///   the order handler reads the body with `read_json` and places the order with its
///   `OrderHandle`, giving it back when its qty is over 1 000 000, as the demo broker
///   rejects it), `POST /futu.gateway.Gateway/Request` (gRPC: the handler skips gRPC's
///   5-byte message prefix and reads `{"endpoint", "order"}` as JSON, then checks the
///   endpoint or places the order with its `OrderHandle`), `GET /ws` (the WebSocket
///   upgrade, a session route where `?token=` is a key too; the handler checks a quote with
///   the session), `POST /mcp` and `DELETE /mcp` (`McpAuthLayer` in front of a fake MCP
///   server, after the gateway's own key `fc_000…0` opened the MCP session
///   `fuzz-session`), and `GET /api/nothing` (REST, a path no route maps).
/// * Then lines, each ending in `\n` (a `\r` before it is dropped), up to the first empty
///   line (without one, there is no body): one starting with `?` is query text (several
///   are joined with `&`; a query that makes no valid URI is left out); any other is a
///   header `name: value` (the value trimmed; a line without `:`, or whose name or value
///   HTTP does not allow, is left out; repeated names are kept, in order).
/// * The rest, after the empty line, is the body.
///
/// The fake futu-authd decides by the token, `fc_` and 32 hex digits: its key id is `k`
/// and the first two digits; by its last two, `n`, it is allowed (below `80`), allowed but
/// for `trade:simulate` (`80`–`8f`, a key that only trades real money), or denied with
/// `Reason::ALL[(n - 0x90) % 16]` (`90`–`ff`). The client lets a key hold one session at a
/// time. The daemon and the one client live as long as the process, the layers one input.
///
/// Properties:
/// * nothing panics (nor does any task of the client's or the daemon's);
/// * every answer is the handler's own, the 204 of an MCP session's `DELETE`, or a refusal
///   of the documented shape: for plain HTTP a status that goes with its reason and the
///   JSON body `{"reason", "detail", "retry_after_ms"}` (`WWW-Authenticate` on a 401,
///   `Retry-After` in whole seconds on a 429 that says when), the reason one of
///   `Reason::ALL` or the layer's own (`no_token`, `unavailable`, `bad_request`,
///   `sessions`, `unknown_session`); for a gRPC request (content type
///   `application/grpc…`, except to MCP, which answers JSON) a trailers-only answer: 200,
///   no body, a `grpc-status` that goes with its `futu-reason`;
/// * no answer shows a key the request presented (the Bearer credential of any
///   `Authorization` header, or the `token` query parameter, as written or decoded): not
///   a well-formed one, and no 35 bytes of another unless the gateway shows them without
///   that key too (the request carries them elsewhere, in a body a decoder's message
///   quotes, say; or the answer to the request with the key's bytes changed still shows
///   them: the answer's own text written into a key);
/// * a handler never sees a key: no `Authorization` header with a Bearer credential, no
///   `?token=` where that is a key; and it finds the extension its route promises;
/// * every frame the fake futu-authd receives decodes (so is at most
///   `futu_auth_proto::MAX_FRAME_LEN` bytes) and is a request a front-end asks, and every
///   token in one is well formed (the layer refuses what cannot be a key without asking);
/// * the client still has its one connection (the daemon has accepted exactly one, ever),
///   no session outlives its request, and an allowed quote sent next is answered by its
///   handler: one hostile request never harms the connection the others use.
pub fn layer_request(data: &[u8]) {
    let input = HttpInput::decode(data);
    let gateway = Gateway::lock();
    // What an earlier input that panicked (under `make test`) left is not this one's.
    let _ = gateway.daemon.log.take();
    let grpc = is_grpc(input.request().headers()) && !input.route.is_mcp();
    let answer = gateway.serve(&input);
    check_answer(&input, grpc, &answer);
    check_no_key_shown(&gateway, &input, &answer);

    let probe = gateway.probe();
    let (frames, faults) = gateway.daemon.log.take();
    assert!(
        faults.is_empty(),
        "the fake futu-authd received what the layer must not send ({} frames): {faults:?}",
        frames.len()
    );
    assert_eq!(
        gateway.daemon.log.connections.load(Ordering::SeqCst),
        1,
        "the client opened another connection to futu-authd: the request broke the one every request uses"
    );
    assert_eq!(
        probe.handled_by(),
        Some("/api/quote"),
        "an allowed quote sent after the request is not served: {probe:?}"
    );
    assert_eq!(
        gateway.client.sessions_open(),
        0,
        "a session outlived its request (its key's place is still taken)"
    );
}

/// The reasons the layer gives of its own, besides futu-authd's (`Reason::ALL`).
const LAYER_REASONS: [&str; 5] = [
    "no_token",
    "unavailable",
    "bad_request",
    "sessions",
    "unknown_session",
];

/// The HTTP statuses and gRPC codes a refusal for `reason` may have, as the layer's
/// documentation lists them (client/src/http/mod.rs); `None` for a reason it does not
/// list.
fn refusal_codes(reason: &str) -> Option<(&'static [u16], &'static [u16])> {
    Some(match reason {
        "no_token" | "unknown_key" | "expired" => (&[401], &[16]),
        "scope" | "machine" | "frozen" | "market" | "symbol" | "side" | "hours" | "order_value"
        | "forbidden" => (&[403], &[7]),
        "bad_order" | "unknown_endpoint" => (&[400], &[3]),
        "rate" | "daily_value" | "sessions" => (&[429], &[8]),
        "unavailable" | "internal" => (&[503], &[14]),
        // Malformed, too large, not JSON.
        "bad_request" => (&[400, 413, 415], &[3, 8]),
        "unknown_session" => (&[404], &[5]),
        _ => return None,
    })
}

/// Checks that `answer` is a handler's, or a refusal of the documented shape (see
/// [`layer_request`]).
fn check_answer(input: &HttpInput, grpc: bool, answer: &Answer) {
    let route = input.route;
    if let Some(by) = answer.handled_by() {
        assert_eq!(
            by,
            route.path(),
            "{route:?} was answered by another route's handler"
        );
        return;
    }
    if route == Route::McpDelete && answer.status == http::StatusCode::NO_CONTENT {
        assert!(
            answer.body.is_empty(),
            "the 204 of an MCP DELETE has a body: {answer:?}"
        );
        return;
    }
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
    };
    let known = |reason: &str| {
        let documented = Reason::ALL.iter().any(|r| r.as_str() == reason) || LAYER_REASONS.contains(&reason);
        let codes = refusal_codes(reason);
        assert!(
            documented && codes.is_some(),
            "a refusal gives the reason {reason:?}, which is not documented: {answer:?}"
        );
        codes.unwrap_or_default()
    };
    if grpc {
        assert_eq!(
            answer.status, 200,
            "a gRPC refusal is not trailers-only: {answer:?}"
        );
        assert!(answer.body.is_empty(), "a gRPC refusal has a body: {answer:?}");
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/grpc"),
            "a gRPC refusal's content type: {answer:?}"
        );
        let reason =
            header("futu-reason").unwrap_or_else(|| panic!("a gRPC refusal without futu-reason: {answer:?}"));
        let (_, codes) = known(&reason);
        let status = header("grpc-status").and_then(|s| s.parse::<u16>().ok());
        assert!(
            status.is_some_and(|s| codes.contains(&s)),
            "a gRPC refusal for {reason} has grpc-status {status:?}, not one of {codes:?}: {answer:?}"
        );
        assert!(
            header("grpc-message").is_some(),
            "a gRPC refusal without grpc-message: {answer:?}"
        );
        if let Some(ms) = header("retry-after-ms") {
            assert!(
                ms.parse::<u64>().is_ok(),
                "retry-after-ms is not a number: {answer:?}"
            );
        }
        return;
    }
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json"),
        "a refusal that is not JSON: {answer:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("a refusal's body is not JSON ({e}): {answer:?}"));
    let fields = json.as_object().map(|o| {
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    });
    assert_eq!(
        fields,
        Some(vec!["detail", "reason", "retry_after_ms"]),
        "a refusal's body is not {{\"reason\", \"detail\", \"retry_after_ms\"}}: {answer:?}"
    );
    let reason = json["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("a refusal's reason is not a string: {answer:?}"));
    assert!(
        json["detail"].is_string(),
        "a refusal's detail is not a string: {answer:?}"
    );
    let retry_after_ms = &json["retry_after_ms"];
    assert!(
        retry_after_ms.is_null() || retry_after_ms.is_u64(),
        "a refusal's retry_after_ms is neither null nor a number of milliseconds: {answer:?}"
    );
    let (statuses, _) = known(reason);
    let status = answer.status.as_u16();
    assert!(
        statuses.contains(&status),
        "a refusal for {reason} has status {status}, not one of {statuses:?}: {answer:?}"
    );
    if status == 401 {
        assert!(
            header("www-authenticate").is_some(),
            "a 401 without WWW-Authenticate: {answer:?}"
        );
    }
    if let (429, Some(ms)) = (status, retry_after_ms.as_u64()) {
        assert_eq!(
            header("retry-after").as_deref(),
            Some(ms.div_ceil(1000).to_string().as_str()),
            "a 429's Retry-After is not its retry_after_ms in whole seconds, rounded up: {answer:?}"
        );
    }
}

/// Checks that `answer` shows no key `input` presented (see [`layer_request`]). A run of
/// 35 bytes of a key that is not well formed may show only when the gateway shows it
/// without the key too: when the request carries it elsewhere, or when the answer to the
/// same request with every such key's bytes changed still shows it (text of the answer's
/// own that the input wrote into its key).
///
/// Runs are compared by their hashes, not their bytes: libFuzzer learns the operands of
/// byte comparisons and would soon copy the answer's own text into a key.
fn check_no_key_shown(gateway: &Gateway, input: &HttpInput, answer: &Answer) {
    let shown = answer.shown();
    let shown_runs: HashSet<RunHash> = runs(&shown).collect();
    if shown_runs.is_empty() {
        return;
    }
    let request = input.request();
    let keys = presented_keys(&request);
    let well_formed = |key: &[u8]| std::str::from_utf8(key).is_ok_and(|k| Token::new(k).is_well_formed());
    let mut elsewhere = None;
    let mut without = None;
    for key in &keys {
        let Some(at) = runs(key).position(|h| shown_runs.contains(&h)) else {
            continue;
        };
        let run = &key[at..at + Token::LEN];
        if !well_formed(key) {
            let elsewhere = elsewhere
                .get_or_insert_with(|| runs(&carried_elsewhere(input, &request)).collect::<HashSet<_>>());
            if elsewhere.contains(&run_hash(run)) {
                continue;
            }
            let without = without.get_or_insert_with(|| {
                let others: Vec<&[u8]> = keys
                    .iter()
                    .map(Vec::as_slice)
                    .filter(|k| !well_formed(k))
                    .collect();
                let shown = gateway.serve(&input.with_keys_changed(&others)).shown();
                runs(&shown).collect::<HashSet<_>>()
            });
            if without.contains(&run_hash(run)) {
                continue;
            }
        }
        assert!(
            !shown.windows(Token::LEN).any(|w| w == run),
            "the answer shows {:?}, of a key the request presented ({} bytes{}): {answer:?}",
            String::from_utf8_lossy(run),
            key.len(),
            if well_formed(key) { ", well formed" } else { "" }
        );
    }
}

/// The hash of a run of [`Token::LEN`] bytes: two polynomial hashes modulo 2⁶⁴.
type RunHash = (u64, u64);

/// The bases of [`RunHash`]'s two polynomials (odd, so that each is invertible).
const RUN_BASES: (u64, u64) = (0x100_0000_01b3, 0x9e37_79b9_7f4a_7c15);

fn run_hash(run: &[u8]) -> RunHash {
    run.iter().fold((0u64, 0u64), |(a, b), &byte| {
        (
            a.wrapping_mul(RUN_BASES.0).wrapping_add(u64::from(byte)),
            b.wrapping_mul(RUN_BASES.1).wrapping_add(u64::from(byte)),
        )
    })
}

/// The hashes of every run of [`Token::LEN`] bytes of `text`, in order (a rolling hash).
fn runs(text: &[u8]) -> impl Iterator<Item = RunHash> + '_ {
    let n = Token::LEN;
    // The weight of a run's first byte: base^(n-1).
    let top = (1..n).fold((1u64, 1u64), |(a, b), _| {
        (a.wrapping_mul(RUN_BASES.0), b.wrapping_mul(RUN_BASES.1))
    });
    let first = text.get(..n).map(run_hash);
    (0..text.len().saturating_sub(n - 1)).scan(first, move |hash, i| {
        let current = (*hash)?;
        if let Some(&next) = text.get(i + n) {
            let (out, next) = (u64::from(text[i]), u64::from(next));
            *hash = Some((
                current
                    .0
                    .wrapping_sub(out.wrapping_mul(top.0))
                    .wrapping_mul(RUN_BASES.0)
                    .wrapping_add(next),
                current
                    .1
                    .wrapping_sub(out.wrapping_mul(top.1))
                    .wrapping_mul(RUN_BASES.1)
                    .wrapping_add(next),
            ));
        }
        Some(current)
    })
}

/// The keys a request presents: the Bearer credential of every `Authorization` header
/// ([`gateway::bearer_credential`]), and the `token` query parameter, as written and
/// percent-decoded.
fn presented_keys<B>(req: &http::Request<B>) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for value in req.headers().get_all(http::header::AUTHORIZATION) {
        if let Some(at) = gateway::bearer_credential(value.as_bytes()) {
            keys.push(value.as_bytes()[at].to_vec());
        }
    }
    if let Some(query) = req.uri().query() {
        if let Some(t) = futu_auth_client::token::from_query(query) {
            keys.push(t.expose().as_bytes().to_vec());
        }
        for pair in query.split('&') {
            if let Some(("token", value)) = pair.split_once('=') {
                if !value.is_empty() {
                    keys.push(value.as_bytes().to_vec());
                }
            }
        }
    }
    keys
}

/// What a request carries besides its keys: its body, its other headers and its other
/// query parameters, one per line.
fn carried_elsewhere<B>(input: &HttpInput, req: &http::Request<B>) -> Vec<u8> {
    let mut out = input.body.clone();
    for (name, value) in req.headers() {
        if name != http::header::AUTHORIZATION {
            out.push(b'\n');
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
        }
    }
    for pair in req.uri().query().unwrap_or_default().split('&') {
        if !pair.starts_with("token=") {
            out.push(b'\n');
            out.extend_from_slice(pair.as_bytes());
        }
    }
    out
}

/// Checks that `data`, a seed of target `name` meant to be valid, still is in the
/// current format, so that a format change cannot leave the corpus exercising nothing but
/// the error paths: for `frame_decoder` the bytes after the split byte are whole frames
/// of requests or of responses, in some protocol version; for `keys_json` the text loads; for `ledger_replay` the
/// log opens and reports no damaged tail; for `layer_request` the request is answered by
/// its handler (or, an MCP session's `DELETE`, with 204), not refused. `Err` says what is
/// wrong.
pub fn check_valid_seed(name: &str, data: &[u8]) -> Result<(), String> {
    match name {
        "frame_decoder" => {
            let stream = data.get(1..).unwrap_or_default();
            let whole = |out: &[String]| out.len() > 1 && out.last().is_some_and(|l| l == "end");
            let mut seen = Vec::new();
            for version in PROTOCOL_VERSIONS {
                let requests = decode_stream::<Request>(&[stream], version);
                let responses = decode_stream::<Response>(&[stream], version);
                if whole(&requests) || whole(&responses) {
                    return Ok(());
                }
                seen.push(format!(
                    "in version {version}, as requests {requests:?}, as responses {responses:?}"
                ));
            }
            Err(format!("not whole frames: {}", seen.join("; ")))
        }
        "keys_json" => {
            let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
            KeysFile::parse(text, Path::new("keys.json"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "ledger_replay" => match ledger_replay_report(data) {
            Ok(Replay {
                corrupt_tail: None, ..
            }) => Ok(()),
            Ok(Replay {
                corrupt_tail: Some(why),
                ..
            }) => Err(format!("the replay reports a damaged tail: {why}")),
            Err(e) => Err(format!("the log does not open: {e}")),
        },
        "layer_request" => {
            let input = HttpInput::decode(data);
            let gateway = Gateway::lock();
            let answer = gateway.serve(&input);
            let _ = gateway.daemon.log.take();
            let deleted = input.route == Route::McpDelete && answer.status == http::StatusCode::NO_CONTENT;
            if answer.handled_by().is_some() || deleted {
                Ok(())
            } else {
                Err(format!(
                    "{:?} is refused: {} {}",
                    input.route,
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ))
            }
        }
        _ => Err(format!("no fuzz target {name}")),
    }
}

/// A fresh state directory holding the `ledger.base` and `ledger.log` of an input.
fn state_dir_of(data: &[u8]) -> tempfile::TempDir {
    let (split, rest) = match data.split_first() {
        Some((&split, rest)) => (split, rest),
        None => (0, data),
    };
    let (base, journal) = rest.split_at(usize::from(split) % (rest.len() + 1));
    let dir = scratch_dir();
    if !base.is_empty() {
        std::fs::write(dir.path().join(BASE_NAME), base).expect("write ledger.base");
    }
    std::fs::write(dir.path().join(FILE_NAME), journal).expect("write ledger.log");
    dir
}

/// Whether the audit records of the commit with this mark reached the audit file, as
/// [`ledger_replay`] pretends: chosen by the mark, so the input decides.
fn audited(mark: &AuditMark) -> Audited {
    match (mark.at ^ mark.records) % 3 {
        0 => Audited::Yes,
        1 => Audited::No,
        _ => Audited::Unknown,
    }
}

/// What of a ledger a base must keep: today's non-zero totals, the tickets still in the
/// release or rate window (number, key, day, value, released, monotonic time), the next
/// number and the ticket key; sorted, as the key map has no order.
#[allow(clippy::type_complexity)]
fn kept(
    dump: LedgerDump,
) -> (
    Vec<(String, u128)>,
    Vec<(u64, String, i64, u128, bool, u64)>,
    u64,
    [u8; 16],
) {
    let now = REPLAY_MOMENT;
    let today = utc_day(now.unix_ns.div_euclid(1_000_000_000));
    let mut totals: Vec<(String, u128)> = dump
        .totals
        .into_iter()
        .filter(|(_, day, used)| *day == today && used.0 > 0)
        .map(|(key, _, used)| (key.as_str().to_owned(), used.0))
        .collect();
    totals.sort();
    let keep = RELEASE_WINDOW_NS.max(RATE_WINDOW_NS);
    let mut recent: Vec<_> = dump
        .recent
        .into_iter()
        .filter(|(c, _)| now.mono_ns.saturating_sub(c.mono_ns) < keep)
        .map(|(c, released)| {
            (
                c.number,
                c.key_id.as_str().to_owned(),
                c.day,
                c.value.0,
                released,
                c.mono_ns,
            )
        })
        .collect();
    recent.sort();
    (totals, recent, dump.next_ticket, dump.ticket_key)
}

/// A fresh state directory, in memory (`/dev/shm`) where there is one: the target writes
/// and fsyncs several files per input.
fn scratch_dir() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    let parent = if shm.is_dir() { shm } else { std::env::temp_dir() };
    tempfile::Builder::new()
        .prefix("futu-fuzz-ledger-")
        .tempdir_in(parent)
        .or_else(|_| tempfile::tempdir())
        .expect("make a temporary state directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rolling_hash_of_each_run_is_the_hash_of_its_bytes() {
        let text: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
        let rolled: Vec<RunHash> = runs(&text).collect();
        let direct: Vec<RunHash> = text.windows(Token::LEN).map(run_hash).collect();
        assert_eq!(rolled, direct);
        assert_eq!(runs(&text[..Token::LEN - 1]).count(), 0);
        assert_eq!(runs(&text[..Token::LEN]).count(), 1);
    }

    #[test]
    fn an_answer_that_shows_a_presented_key_fails_the_target_and_its_own_text_does_not() {
        let gateway = Gateway::lock();
        let key = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c00";
        let long = "k".repeat(70);
        let input = HttpInput::decode(
            format!("0 GET /api/quote\nAuthorization: Bearer {key}\nAuthorization: Bearer {long}\n\n")
                .as_bytes(),
        );
        let answer = |body: String| Answer {
            status: http::StatusCode::UNAUTHORIZED,
            headers: http::HeaderMap::new(),
            body: body.into(),
        };
        check_no_key_shown(&gateway, &input, &answer("a refusal".into()));
        // The answer's own text written into a key is not the key shown.
        let echo = HttpInput::decode(
            b"0 GET /api/quote\nAuthorization: Bearer the credential is not an API key (a key is fc_ followed by 32 hex digits)\n\n",
        );
        check_no_key_shown(&gateway, &echo, &gateway.serve(&echo));
        for shown in [format!("the key {key}"), format!("the key {}!", &long[..40])] {
            let caught =
                std::panic::catch_unwind(|| check_no_key_shown(&gateway, &input, &answer(shown.clone())));
            assert!(caught.is_err(), "{shown} shows a key and was not caught");
        }
    }
}
