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

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use futu_auth_keys::store::KeysFile;
use futu_auth_proto::codec::decode_message_v;
use futu_auth_proto::{
    CodecError, FrameCodec, KeyId, Request, Response, PROTOCOL_VERSION, PROTOCOL_VERSIONS,
};
use futu_authd::ledger::{utc_day, Consumption, LedgerDump, RATE_WINDOW_NS, RELEASE_WINDOW_NS};
use futu_authd::ledger_log::{AuditMark, Audited, Entries, LedgerLog, Moment, Replay, BASE_NAME, FILE_NAME};
use futu_authd::money::Money;
use futu_authd::Ledger;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// A fuzz target's body: must not panic on any input.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as in `fuzz/Cargo.toml` and the `fuzz/corpus/` and
/// `fuzz/regressions/` directories.
pub const TARGETS: [(&str, Target); 3] = [
    ("frame_decoder", frame_decoder),
    ("keys_json", keys_json),
    ("ledger_replay", ledger_replay),
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

/// Checks that `data`, a seed of target `name` meant to be valid, still is in the
/// current format, so that a format change cannot leave the corpus exercising nothing but
/// the error paths: for `frame_decoder` the bytes after the split byte are whole frames
/// of requests or of responses, in some protocol version; for `keys_json` the text loads; for `ledger_replay` the
/// log opens and reports no damaged tail. `Err` says what is wrong.
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
