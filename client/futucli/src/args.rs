//! futucli's command line: its commands, flags and their spelling, as README.md's
//! Quickstart uses them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use futu_auth_client::{Fingerprint, HaltTarget, Iface, KeyId, Market, Scope, TrdEnv, TrdSide};
use futu_auth_keys::store::{HaltReason, MAX_OVERLAP};
use futu_auth_proto::key::{Cap, InvalidValue};
use futu_auth_proto::{AccIds, DeviationPct, DuplicateWindow, HoursWindow, Symbol};

/// futucli: make, list, bind, rotate and revoke futu-authd API keys, halt and resume
/// trading, and ask the daemon for decisions.
///
/// Mutations go through the daemon when its socket answers (effective at once); when it
/// does not, gen-key, list-keys, rotate-key, revoke-key, bind-key, halt and resume edit the
/// keys file directly, with the same lock and atomic write.
#[derive(Debug, Parser)]
#[command(name = "futucli", version, propagate_version = true)]
pub struct Cli {
    /// futu-authd's socket.
    #[arg(
        long,
        global = true,
        env = "FUTU_AUTH_SOCKET",
        default_value = "/run/futu/auth.sock"
    )]
    pub socket: PathBuf,

    /// keys.json to edit when the daemon does not answer [default: ~/.config/futu/keys.json,
    /// or /etc/futu/keys.json for root].
    #[arg(long, global = true, env = "FUTU_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,

    /// File holding this host's machine id (for --this-machine and machine-id).
    #[arg(
        long,
        global = true,
        env = "FUTU_AUTHD_MACHINE_ID_FILE",
        default_value = "/etc/machine-id"
    )]
    pub machine_id_file: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a key; its plaintext is printed once and stored nowhere.
    GenKey(Box<GenKey>),
    /// List the keys (never their hashes), with when each was last used.
    ListKeys {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Only keys not used for this long (30d, 12h, 90m): last used before then, or never
        /// used and made before then. Needs the daemon.
        #[arg(long, value_name = "DURATION", value_parser = parse_window, allow_hyphen_values = true)]
        unused_for: Option<Window>,
        /// Only keys whose expires_at is within this long from now (7d, 12h, 30m), soonest
        /// first, each with the time it has left; keys already expired are listed too,
        /// marked expired. Through the daemon or on the keys file.
        #[arg(long, value_name = "DURATION", value_parser = parse_window, allow_hyphen_values = true)]
        expiring_within: Option<Window>,
    },
    /// Remove a key.
    RevokeKey {
        /// The key's id.
        id: KeyId,
    },
    /// Give a key a new plaintext, printed once; its id, scopes, limits, binding and
    /// counters stay. The old plaintext keeps working for the overlap, then is refused.
    RotateKey {
        /// The key's id.
        id: KeyId,
        /// How long the old plaintext keeps working: 24h, 90m, 7d, 3600s, or 0 (refused at
        /// once); at most 90d, and never past the key's expiry.
        #[arg(long, default_value = "24h", value_parser = parse_overlap)]
        overlap: Duration,
    },
    /// Change a key's machine binding in place (the plaintext does not change).
    BindKey(BindKey),
    /// Print this host's machine fingerprint, to paste into --machines.
    MachineId,
    /// A key's consumption today: value used of its daily cap, orders in the last 60 s; and
    /// when it was last used.
    Usage {
        /// The key's id.
        id: KeyId,
    },
    /// Ask the daemon to re-read keys.json (like kill -HUP).
    Reload,
    /// Halt trading (the kill switch): orders and trade unlock are refused `halted`, with
    /// the reason, who halted and when, until `resume`; quotes and account reads go on.
    /// Kept in keys.json: a restart or reload keeps it.
    Halt {
        /// What to halt.
        #[command(flatten)]
        which: Which,
        /// Why, in a few words (one line, at most 200 characters): every refused caller is
        /// shown it.
        #[arg(long, value_parser = parse_reason)]
        reason: HaltReason,
    },
    /// Lift a halt made by `halt`.
    Resume {
        /// What to resume.
        #[command(flatten)]
        which: Which,
    },
    /// Load the keys of a keys.json into the daemon's key store (keys.json, or the
    /// database of --keys-url). A file --check-config would refuse is refused whole; an id
    /// the store holds already refuses the import unless --replace. Needs the daemon.
    ImportKeys {
        /// The keys.json to load.
        file: PathBuf,
        /// Replace the store's key of an id the file holds too (its record and rotation).
        #[arg(long)]
        replace: bool,
    },
    /// Write the daemon's key store as a keys.json that --check-config accepts: to --out
    /// (mode 0600, replaced atomically) or to stdout. Needs the daemon.
    ExportKeys {
        /// The file to write (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Ask the daemon for a real decision. Exit 0 allow, 1 reject, 2 usage or transport
    /// error.
    Check(CheckArgs),
    /// Decide the checks of an audit file again against candidate keys, offline, and show
    /// the decisions that would change. Exit 0 whether or not any would; 1 on an error.
    Replay(ReplayArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: Shell,
    },
}

/// `gen-key`.
#[derive(Debug, Args)]
pub struct GenKey {
    /// Unique name, shown as key_id in audit and metrics.
    #[arg(long)]
    pub id: KeyId,
    /// Comma-separated scopes: qot:read, acc:read, trade:simulate, trade:real, trade:unlock.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<Scope>,
    /// Market whitelist, e.g. HK,US.
    #[arg(long, value_delimiter = ',')]
    pub allowed_markets: Option<Vec<Market>>,
    /// Symbol whitelist, e.g. HK.00700,US.AAPL.
    #[arg(long, value_delimiter = ',')]
    pub allowed_symbols: Option<Vec<Symbol>>,
    /// Trade-side whitelist: BUY, SELL, SELL_SHORT, BUY_BACK.
    #[arg(long, value_delimiter = ',')]
    pub allowed_trd_sides: Option<Vec<TrdSide>>,
    /// Per-order cap on qty × price: at most 8 decimal places, at most 1e20.
    #[arg(long, value_parser = parse_cap, allow_negative_numbers = true)]
    pub max_order_value: Option<Cap>,
    /// Daily cap on the value of allowed orders (resets at UTC midnight): at most 8 decimal
    /// places, at most 1e20.
    #[arg(long, value_parser = parse_cap, allow_negative_numbers = true)]
    pub max_daily_value: Option<Cap>,
    /// Orders per 60-second sliding window.
    #[arg(long)]
    pub max_orders_per_minute: Option<u32>,
    /// Local time window, HH:MM-HH:MM (22:00-04:00 crosses midnight).
    #[arg(long)]
    pub hours_window: Option<HoursWindow>,
    /// Account whitelist, e.g. 281756,281757: an order or an account read must name one.
    #[arg(long, value_parser = parse_acc_ids)]
    pub allowed_acc_ids: Option<AccIds>,
    /// Price collar: a limit order's price may be at most this many percent from the
    /// gateway's reference price (its last quote), e.g. 5.
    #[arg(long, value_parser = parse_deviation)]
    pub max_price_deviation_pct: Option<DeviationPct>,
    /// Orders allowed and not yet filled, cancelled or rejected.
    #[arg(long)]
    pub max_open_orders: Option<u32>,
    /// Per symbol, the value of filled buys less filled sells plus the open orders that
    /// would add to it: at most 8 decimal places, at most 1e20.
    #[arg(long, value_parser = parse_cap, allow_negative_numbers = true)]
    pub max_position_value: Option<Cap>,
    /// The same order (account, symbol, side, qty, price) again within this window is
    /// refused: 500ms, 2s, 1m (at most 1h).
    #[arg(long = "duplicate-window", value_parser = parse_duplicate_window)]
    pub duplicate_window: Option<DuplicateWindow>,
    /// Expiry: a duration from now (30d, 12h, 90m, 2w) or an RFC 3339 time.
    #[arg(long)]
    pub expires: Option<String>,
    /// Free-form note.
    #[arg(long)]
    pub note: Option<String>,
    /// Bind the key to this host.
    #[arg(long, conflicts_with = "bind_machines")]
    pub bind_this_machine: bool,
    /// Bind the key to these fingerprints.
    #[arg(long, value_delimiter = ',')]
    pub bind_machines: Option<Vec<Fingerprint>>,
}

/// What `halt` and `resume` are about: one key, or every key.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// One key, by id.
    #[arg(long, value_name = "ID")]
    pub key: Option<KeyId>,
    /// Every key, present and future.
    #[arg(long)]
    pub all: bool,
}

impl Which {
    /// As the protocol names it.
    pub fn target(&self) -> HaltTarget {
        match &self.key {
            Some(id) => HaltTarget::Key(id.clone()),
            None => HaltTarget::All,
        }
    }
}

/// `bind-key`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["this_machine", "machines", "freeze", "clear"])
))]
pub struct BindKey {
    /// The key's id.
    pub id: KeyId,
    /// Add this host's fingerprint.
    #[arg(long)]
    pub this_machine: bool,
    /// Add these fingerprints (with --replace: make the list exactly these).
    #[arg(long, value_delimiter = ',')]
    pub machines: Option<Vec<Fingerprint>>,
    /// With --machines or --this-machine: replace the list instead of adding to it.
    #[arg(long)]
    pub replace: bool,
    /// Freeze the key (allowed_machines: []): refused everywhere until bound again.
    #[arg(long, conflicts_with_all = ["this_machine", "machines", "replace", "clear"])]
    pub freeze: bool,
    /// Remove the binding (allowed_machines: null).
    #[arg(long, conflicts_with_all = ["this_machine", "machines", "replace"])]
    pub clear: bool,
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The key's plaintext.
    #[arg(long, env = "FUTU_AUTH_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Futu OpenAPI protocol name or id, e.g. Qot_GetBasicQot or 2202.
    #[arg(long)]
    pub endpoint: String,
    /// The front-end to check as.
    #[arg(long, default_value = "cli")]
    pub iface: Iface,
    /// Trading environment of the order.
    #[arg(long, default_value = "simulate", value_parser = parse_env)]
    pub env: TrdEnv,
    /// Order market, e.g. HK.
    #[arg(long, requires_all = ["symbol", "side", "qty"])]
    pub market: Option<Market>,
    /// Order symbol, e.g. HK.00700.
    #[arg(long, requires_all = ["market", "side", "qty"])]
    pub symbol: Option<String>,
    /// Order side: BUY, SELL, SELL_SHORT or BUY_BACK.
    #[arg(long, requires_all = ["market", "symbol", "qty"])]
    pub side: Option<TrdSide>,
    /// Order quantity. A negative one is sent as it is, for the daemon to refuse.
    #[arg(long, requires_all = ["market", "symbol", "side"], allow_negative_numbers = true)]
    pub qty: Option<f64>,
    /// Order limit price. A negative one is sent as it is, for the daemon to refuse.
    #[arg(long, requires = "qty", allow_negative_numbers = true)]
    pub price: Option<f64>,
    /// The broker account the request names (an order's, or an account read's).
    #[arg(long)]
    pub acc_id: Option<u64>,
    /// The reference price of the order's symbol (the gateway's last quote), for a key
    /// with a price collar.
    #[arg(long, allow_negative_numbers = true)]
    pub ref_price: Option<f64>,
    /// Decide without consuming a rate slot or daily value.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The daemon's audit file (JSON lines).
    #[arg(long)]
    pub audit: PathBuf,
    /// The candidate keys.json to decide them by.
    #[arg(long)]
    pub keys: PathBuf,
    /// Compare only records from this time: RFC 3339 (2026-11-23T09:30:00Z) or a date
    /// (2026-11-23: local midnight). Earlier records still fill the rate windows and daily
    /// totals.
    #[arg(long)]
    pub since: Option<String>,
    /// Replay only records before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Judge allowed_machines for the host with this fingerprint (`futucli machine-id` on
    /// it prints it) instead of this host.
    #[arg(long)]
    pub machine: Option<Fingerprint>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A flag's value that is not one the flag takes. clap names the flag in front of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A cap that is not a number.
    #[error("{0:?} is not a number")]
    NotANumber(String),
    /// A number that is not a cap.
    #[error(transparent)]
    NotACap(#[from] InvalidValue),
    /// A duration futucli does not read.
    #[error(
        "{0:?} is not a duration: expected a whole number and a unit, such as 24h, 90m, 7d, 3600s, or 0"
    )]
    NotADuration(String),
    /// An overlap past [`MAX_OVERLAP`].
    #[error(
        "{0} is longer than the longest overlap, 90d (the old plaintext of a rotated key must not stay valid for months)"
    )]
    OverlapTooLong(String),
    /// A cut-off of `--unused-for` or `--expiring-within` that is not one.
    #[error("{0:?} is not a cut-off: expected a whole number above 0 and a unit, such as 30d, 12h or 90m")]
    NotACutOff(String),
    /// A trading environment that is not one.
    #[error("{0:?} is not simulate or real")]
    NotAnEnv(String),
    /// A halt's reason that is not one.
    #[error("{0}")]
    NotAReason(InvalidValue),
    /// A list of account ids that is not one.
    #[error("{0:?} is not a list of account ids: expected whole numbers separated by commas, such as 281756,281757")]
    NotAccIds(String),
    /// A window that is not one.
    #[error("{0:?} is not a window: expected a whole number and a unit, such as 500ms, 2s or 1m")]
    NotAWindow(String),
}

/// `--allowed-acc-ids`: account ids separated by commas, by the same rule as keys.json
/// (at least one, each once).
fn parse_acc_ids(s: &str) -> Result<AccIds, ArgError> {
    let ids = s
        .split(',')
        .map(|id| id.trim().parse::<u64>())
        .collect::<Result<Vec<u64>, _>>()
        .map_err(|_| ArgError::NotAccIds(s.to_owned()))?;
    Ok(AccIds::try_from(ids)?)
}

/// `--max-price-deviation-pct`: a percentage, by the same rule as keys.json.
fn parse_deviation(s: &str) -> Result<DeviationPct, ArgError> {
    let v: f64 = s.parse().map_err(|_| ArgError::NotANumber(s.to_owned()))?;
    Ok(DeviationPct::try_from(v)?)
}

/// `--duplicate-window`: milliseconds (`500ms`) or [a duration](parse_secs) (`2s`, `1m`),
/// by the same rule as keys.json's `duplicate_window_ms`.
fn parse_duplicate_window(s: &str) -> Result<DuplicateWindow, ArgError> {
    let ms = match s.strip_suffix("ms") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            n.parse::<u64>().unwrap_or(u64::MAX)
        }
        Some(_) => return Err(ArgError::NotAWindow(s.to_owned())),
        None => parse_secs(s)
            .map_err(|_| ArgError::NotAWindow(s.to_owned()))?
            .saturating_mul(1000),
    };
    Ok(DuplicateWindow::try_from(ms)?)
}

/// A cap flag's value, by the same rule as keys.json and the daemon ([`Cap::try_from`]):
/// `-0` is 0; more than 8 decimal places, a negative number or one above 1e20 is refused.
/// clap names the flag in front of the reason.
fn parse_cap(s: &str) -> Result<Cap, ArgError> {
    let v: f64 = s.parse().map_err(|_| ArgError::NotANumber(s.to_owned()))?;
    Ok(Cap::try_from(v)?)
}

/// A duration as futucli's flags take it: a whole number and a unit, `s`, `m`, `h` or `d`
/// (`3600s`, `90m`, `24h`, `7d`), or `0`; in seconds (saturating). The error says what was
/// expected.
fn parse_secs(s: &str) -> Result<u64, ArgError> {
    let bad = || ArgError::NotADuration(s.to_owned());
    if s == "0" {
        return Ok(0);
    }
    let split = s.len().saturating_sub(1);
    let (n, unit) = (s.get(..split).ok_or_else(bad)?, s.get(split..).ok_or_else(bad)?);
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Only digits: a number too large for u64 is simply too long.
    let n: u64 = n.parse().unwrap_or(u64::MAX);
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(n.saturating_mul(unit_secs))
}

/// `--overlap`: [a duration](parse_secs) of at most [`MAX_OVERLAP`]. clap names the flag
/// in front of the reason.
pub fn parse_overlap(s: &str) -> Result<Duration, ArgError> {
    let secs = parse_secs(s)?;
    if secs > MAX_OVERLAP.as_secs() {
        return Err(ArgError::OverlapTooLong(s.to_owned()));
    }
    Ok(Duration::from_secs(secs))
}

/// `list-keys --unused-for` and `--expiring-within`: a duration as typed and in seconds.
#[derive(Debug, Clone)]
pub struct Window {
    /// As typed, e.g. `30d`.
    pub text: String,
    /// In seconds.
    pub secs: i64,
}

/// `--unused-for` and `--expiring-within`: [a duration](parse_secs) above 0 and at most 100 years (past that a
/// cut-off means nothing).
fn parse_window(s: &str) -> Result<Window, ArgError> {
    let bad = || ArgError::NotACutOff(s.to_owned());
    let secs = parse_secs(s).map_err(|_| bad())?;
    if secs == 0 || secs > 100 * 366 * 86_400 {
        return Err(bad());
    }
    Ok(Window {
        text: s.to_owned(),
        secs: secs as i64,
    })
}

/// `--reason`: by the daemon's rule ([`HaltReason`]). clap names the flag in front of it.
fn parse_reason(s: &str) -> Result<HaltReason, ArgError> {
    s.parse().map_err(ArgError::NotAReason)
}

fn parse_env(s: &str) -> Result<TrdEnv, ArgError> {
    match s {
        "simulate" => Ok(TrdEnv::Simulate),
        "real" => Ok(TrdEnv::Real),
        _ => Err(ArgError::NotAnEnv(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_window;

    #[test]
    fn a_window_takes_days_hours_minutes_or_seconds() {
        assert_eq!(parse_window("30d").unwrap().secs, 30 * 86_400);
        assert_eq!(parse_window("12h").unwrap().secs, 12 * 3_600);
        assert_eq!(parse_window("90m").unwrap().secs, 90 * 60);
        assert_eq!(parse_window("45s").unwrap().secs, 45);
        for bad in [
            "30",
            "d",
            "0d",
            "-1d",
            "2w",
            "0",
            "1.5d",
            "tomorrow",
            "",
            "99999999999d",
        ] {
            let e = parse_window(bad).unwrap_err().to_string();
            assert!(e.contains("30d, 12h or 90m"), "{bad}: {e}");
        }
    }
}
