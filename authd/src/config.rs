//! The daemon's command line. Every flag can also come from a `FUTU_AUTHD_…` environment
//! variable, which is how the systemd unit's `Environment=` lines set them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::ledger::pg::LedgerUrl;

/// futu-authd: the authorization sidecar of a Futu OpenD style gateway.
///
/// Holds keys.json and the one limit ledger; gateway front-ends (REST, gRPC, WebSocket,
/// MCP) ask it over a Unix socket whether each request may go through.
#[derive(Debug, Clone, Parser)]
#[command(name = "futu-authd", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    /// Unix socket to listen on (ignored when systemd hands over a socket).
    #[arg(long, env = "FUTU_AUTHD_SOCKET", default_value = "/run/futu/auth.sock")]
    pub socket: PathBuf,

    /// keys.json to serve (not read with --keys-url).
    #[arg(long, env = "FUTU_AUTHD_KEYS_FILE", default_value = "/etc/futu/keys.json")]
    pub keys_file: PathBuf,

    /// The keys in PostgreSQL, one key store shared by the futu-authd of several gateway
    /// hosts (it may be --ledger-url's database), e.g. `postgres://futu@db.example/futu`
    /// (default: --keys-file, this host's alone).
    #[arg(long, env = "FUTU_AUTHD_KEYS_URL")]
    pub keys_url: Option<LedgerUrl>,

    /// With --keys-url: how long the keys in service may go without being confirmed
    /// current before orders, unlocks and scope checks of trade:* scopes are refused
    /// `internal` (a revocation made on another host may have been missed); other checks
    /// go on.
    #[arg(long, env = "FUTU_AUTHD_KEYS_MAX_STALENESS", default_value = "10s", value_parser = parse_duration)]
    pub keys_max_staleness: Duration,

    /// Directory for the ledger log (daily totals and rate windows that survive restarts;
    /// not used with --ledger-url) and last-used.json (when each key was last used).
    #[arg(long, env = "FUTU_AUTHD_STATE_DIR", default_value = "/var/lib/futu-authd")]
    pub state_dir: PathBuf,

    /// The limit ledger on PostgreSQL, shared by the futu-authd of several gateway hosts,
    /// e.g. `postgres://futu@db.example/futu` or `postgres:///futu?host=/run/postgresql`;
    /// several hosts (`postgres://futu@db1,db2/futu`) are tried in turn for the one that
    /// takes writes (default: the journal in --state-dir, this host's alone).
    #[arg(long, env = "FUTU_AUTHD_LEDGER_URL")]
    pub ledger_url: Option<LedgerUrl>,

    /// How long an order check waits for the PostgreSQL ledger before the order is refused
    /// `internal` (keep it below the clients' deadline, 50 ms by default).
    #[arg(long, env = "FUTU_AUTHD_LEDGER_TIMEOUT", default_value = "30ms", value_parser = parse_duration)]
    pub ledger_timeout: Duration,

    /// Append audit records, one JSON object a line, to this file.
    #[arg(long, env = "FUTU_AUTHD_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// Send audit records to journald (default: on when started by systemd, i.e. when
    /// JOURNAL_STREAM is set).
    #[arg(long, env = "FUTU_AUTHD_AUDIT_JOURNALD", num_args = 0..=1, default_missing_value = "true")]
    pub audit_journald: Option<bool>,

    /// Address for GET /metrics and /healthz, or `off`.
    #[arg(long, env = "FUTU_AUTHD_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: MetricsListen,

    /// Group whose members may send admin requests (besides root and the daemon's own user).
    #[arg(long, env = "FUTU_AUTHD_ADMIN_GROUP")]
    pub admin_group: Option<String>,

    /// Permissions of the socket file, in octal.
    #[arg(long, env = "FUTU_AUTHD_SOCKET_MODE", default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,

    /// File holding this host's machine id, for the machine fingerprint.
    #[arg(long, env = "FUTU_AUTHD_MACHINE_ID_FILE", default_value = "/etc/machine-id")]
    pub machine_id_file: PathBuf,

    /// Most connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "FUTU_AUTHD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Most connections one uid may hold at once (default: half of --max-connections), so
    /// that no single user can take every connection from the gateways; more from that uid
    /// are closed at once.
    #[arg(long, env = "FUTU_AUTHD_MAX_CONNECTIONS_PER_UID")]
    pub max_connections_per_uid: Option<usize>,

    /// Most requests of one connection being answered at once; a client that pipelines
    /// more is read from only as answers go out.
    #[arg(long, env = "FUTU_AUTHD_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,

    /// A connection that sends no Hello this long after it was accepted is closed
    /// (e.g. `5s`, `500ms`).
    #[arg(long, env = "FUTU_AUTHD_HELLO_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub hello_timeout: Duration,

    /// A connection that begins a frame and does not finish it this long after is closed.
    /// A connection that waits between frames is never closed for it.
    #[arg(long, env = "FUTU_AUTHD_FRAME_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub frame_timeout: Duration,

    /// Validate --keys-file and exit: 0 when it loads, 1 with the loader's error.
    #[arg(long)]
    pub check_config: bool,
}

impl Config {
    /// The most connections one uid may hold.
    pub fn uid_share(&self) -> usize {
        self.max_connections_per_uid
            .unwrap_or(self.max_connections.div_ceil(2))
            .max(1)
    }

    /// Whether audit records go to journald.
    pub fn journald_enabled(&self) -> bool {
        self.audit_journald
            .unwrap_or_else(|| std::env::var_os("JOURNAL_STREAM").is_some())
    }
}

/// Where the metrics endpoint listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    /// Not served.
    Off,
    /// Served on this address.
    At(SocketAddr),
}

/// A flag's value that is not one the flag takes (clap names the flag in front of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// `--metrics-listen`.
    #[error("{0:?} is not an address such as 127.0.0.1:9464, nor `off`")]
    NotAnAddress(String),
    /// `--hello-timeout`, `--frame-timeout`, `--ledger-timeout`, `--keys-max-staleness`.
    #[error("{0:?} is not a duration such as 500ms, 5s or 2m")]
    NotADuration(String),
    /// `--socket-mode`.
    #[error("{0:?} is not an octal mode such as 0660")]
    NotAMode(String),
}

impl std::str::FromStr for MetricsListen {
    type Err = FlagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(MetricsListen::Off);
        }
        s.parse()
            .map(MetricsListen::At)
            .map_err(|_| FlagError::NotAnAddress(s.to_owned()))
    }
}

/// `500ms`, `5s`, `2m`: a positive whole number and a unit.
fn parse_duration(s: &str) -> Result<Duration, FlagError> {
    let bad = || FlagError::NotADuration(s.to_owned());
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: u64 = s[..split].parse().map_err(|_| bad())?;
    let d = match &s[split..] {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

fn parse_mode(s: &str) -> Result<u32, FlagError> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| FlagError::NotAMode(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::try_parse_from(["futu-authd"]).unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/futu/auth.sock"));
        assert_eq!(c.keys_file, PathBuf::from("/etc/futu/keys.json"));
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/futu-authd"));
        assert_eq!(
            c.metrics_listen,
            MetricsListen::At("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.audit_log, None);
        assert!(c.ledger_url.is_none());
        assert_eq!(c.ledger_timeout, Duration::from_millis(30));
        assert!(c.keys_url.is_none());
        assert_eq!(c.keys_max_staleness, Duration::from_secs(10));
    }

    #[test]
    fn the_keys_url_is_checked_and_never_shown_with_its_password() {
        let c = Config::try_parse_from([
            "futu-authd",
            "--keys-url",
            "postgres://futu:pw@db.example/futu",
            "--keys-max-staleness",
            "2s",
        ])
        .unwrap();
        assert_eq!(
            c.keys_url.as_ref().map(ToString::to_string).as_deref(),
            Some("postgres://futu@db.example/futu")
        );
        assert!(!format!("{c:?}").contains("pw@"));
        assert_eq!(c.keys_max_staleness, Duration::from_secs(2));
        assert!(Config::try_parse_from(["futu-authd", "--keys-url", "redis://x"]).is_err());
    }

    #[test]
    fn the_ledger_url_is_checked_and_never_shown_with_its_password() {
        let c = Config::try_parse_from([
            "futu-authd",
            "--ledger-url",
            "postgres://futu:pw@db.example/futu",
            "--ledger-timeout",
            "20ms",
        ])
        .unwrap();
        assert_eq!(
            c.ledger_url.as_ref().map(ToString::to_string).as_deref(),
            Some("postgres://futu@db.example/futu")
        );
        assert!(!format!("{c:?}").contains("pw@"));
        assert_eq!(c.ledger_timeout, Duration::from_millis(20));
        assert!(Config::try_parse_from(["futu-authd", "--ledger-url", "redis://x"]).is_err());
    }

    #[test]
    fn metrics_can_be_turned_off_and_modes_are_octal() {
        let c = Config::try_parse_from(["futu-authd", "--metrics-listen", "off", "--socket-mode", "0600"])
            .unwrap();
        assert_eq!(c.metrics_listen, MetricsListen::Off);
        assert_eq!(c.socket_mode, 0o600);
        assert!(Config::try_parse_from(["futu-authd", "--socket-mode", "999"]).is_err());
        assert!(Config::try_parse_from(["futu-authd", "--metrics-listen", "nowhere"]).is_err());
    }

    #[test]
    fn timeouts_and_the_uid_share_have_defaults_and_read_units() {
        let c = Config::try_parse_from(["futu-authd"]).unwrap();
        assert_eq!(c.hello_timeout, Duration::from_secs(5));
        assert_eq!(c.frame_timeout, Duration::from_secs(5));
        assert_eq!(c.uid_share(), 512);
        let c = Config::try_parse_from([
            "futu-authd",
            "--hello-timeout",
            "250ms",
            "--frame-timeout",
            "2m",
            "--max-connections-per-uid",
            "3",
        ])
        .unwrap();
        assert_eq!(c.hello_timeout, Duration::from_millis(250));
        assert_eq!(c.frame_timeout, Duration::from_secs(120));
        assert_eq!(c.uid_share(), 3);
        for bad in ["0s", "5", "s", "5h", "-1s"] {
            assert!(
                Config::try_parse_from(["futu-authd", "--hello-timeout", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_flag_given_twice_takes_the_last_value() {
        let c = Config::try_parse_from(["futu-authd", "--audit-journald=false", "--audit-journald"]).unwrap();
        assert_eq!(c.audit_journald, Some(true));
    }

    #[test]
    fn audit_journald_is_a_switch_with_an_optional_value() {
        let c = Config::try_parse_from(["futu-authd", "--audit-journald"]).unwrap();
        assert_eq!(c.audit_journald, Some(true));
        let c = Config::try_parse_from(["futu-authd", "--audit-journald=false"]).unwrap();
        assert_eq!(c.audit_journald, Some(false));
    }
}
