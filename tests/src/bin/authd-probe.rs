//! `authd-probe SOCKET REQUEST_JSON…`: connects to futu-authd, sends Hello and then each
//! request (given as the JSON form of `futu_auth_proto::Request`, e.g.
//! `{"ListKeys":{"request_id":1}}`), and prints each response as one JSON line.
//!
//! The end-to-end tests run it as another user (through `setpriv`) to see what the daemon
//! lets a non-administrator do; it is deliberately synchronous and tiny.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use futu_auth_proto::codec::{decode_message, encode_frame};
use futu_auth_proto::{Hello, Request, Response, PROTOCOL_VERSION};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authd-probe: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let socket = args.next().ok_or("usage: authd-probe SOCKET REQUEST_JSON…")?;
    let mut stream = UnixStream::connect(&socket).map_err(|e| format!("connect {socket}: {e}"))?;
    let hello = Request::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: "authd-probe".into(),
    });
    exchange(&mut stream, &hello)?;
    for arg in args {
        let req: Request = serde_json::from_str(&arg).map_err(|e| format!("request {arg:?}: {e}"))?;
        let resp = exchange(&mut stream, &req)?;
        println!("{}", serde_json::to_string(&resp).map_err(|e| e.to_string())?);
    }
    Ok(())
}

fn exchange(stream: &mut UnixStream, req: &Request) -> Result<Response, String> {
    let frame = encode_frame(req).map_err(|e| e.to_string())?;
    stream.write_all(&frame).map_err(|e| format!("send: {e}"))?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| format!("read length: {e}"))?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    decode_message(&body).map_err(|e| e.to_string())
}
