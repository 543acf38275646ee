//! `futucli`: the key-management command line of futu-authd.
// Everything printed goes through `output`, which a closed pipe does not make panic.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod output;
mod progress;
mod replay;
mod show;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use futu_auth_client::{
    AuthClient, BindOp, CheckContext, ClientError, Decision, Halt, HaltedBy, KeyActivity, KeyId, KeyRecord,
    KeySpec, Limits, Order, Token,
};
use futu_auth_keys::machine::fingerprint_from_file;
use futu_auth_keys::store::{self, HaltReason, KeysFile, StoreError};
use futu_auth_proto::MAX_ACTIVITY_IDS;
use jiff::{SignedDuration, Span, Timestamp};

use args::{BindKey, CheckArgs, Cli, Command, GenKey, Which, Window};
use output::{errln, out, outln};

/// Admin requests write keys.json with fsync; give them time.
const ADMIN_DEADLINE: Duration = Duration::from_secs(10);

/// A failed command: the line to print and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::new(e.to_string())
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::new(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version or a usage error: clap's own text (coloured on a terminal),
        // and a closed stdout treated as everywhere else.
        Err(e) => {
            if let Err(written) = e.print() {
                if !e.use_stderr() {
                    output::exit_if_closed(&written);
                }
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("futucli: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            errln!("futucli: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let keys_file = cli.keys_file.clone().unwrap_or_else(default_keys_file);
    let ctx = Ctx {
        socket: cli.socket.clone(),
        keys_file,
        machine_id_file: cli.machine_id_file.clone(),
    };
    match cli.command {
        Command::GenKey(g) => gen_key(&ctx, *g).await,
        Command::ListKeys {
            json,
            unused_for,
            expiring_within,
        } => list_keys(&ctx, json, unused_for.as_ref(), expiring_within.as_ref()).await,
        Command::RevokeKey { id } => revoke_key(&ctx, id).await,
        Command::RotateKey { id, overlap } => rotate_key(&ctx, id, overlap).await,
        Command::BindKey(b) => bind_key(&ctx, b).await,
        Command::MachineId => {
            let fp = fingerprint_from_file(&ctx.machine_id_file)
                .map_err(|e| Failure::new(format!("{}: {e}", ctx.machine_id_file.display())))?;
            outln!("{fp}");
            Ok(0)
        }
        Command::Usage { id } => {
            let daemon = ctx.daemon().await?;
            let u = daemon.usage(&id).await?;
            outln!("{}", show::usage(&u));
            let last_used = match daemon.key_activity(std::slice::from_ref(&id)).await {
                Ok(a) => show::last_used(a.first().map(|a| a.last_used)),
                Err(e @ ClientError::TooOld { .. }) => {
                    errln!("futucli: {e}");
                    show::last_used(None)
                }
                Err(e) => return Err(e.into()),
            };
            outln!("last used: {last_used}");
            // Only for a key with an expiry: the lines of the others stay as they were.
            let record = daemon.list_keys().await?.into_iter().find(|r| r.id == id);
            if let Some(t) = record.and_then(|r| r.expires_at) {
                outln!("{}", show::expires(t, Timestamp::now()));
            }
            match daemon.halts().await {
                Ok(halts) => outln!("{}", show::halts_of_key(&id, &halts)),
                Err(e @ ClientError::TooOld { .. }) => errln!("futucli: {e}; halts are not shown"),
                Err(e) => return Err(e.into()),
            }
            Ok(0)
        }
        Command::Reload => {
            let n = ctx.daemon().await?.reload().await?;
            outln!("✅ Reloaded: {n} keys in service");
            Ok(0)
        }
        Command::Halt { which, reason } => halt(&ctx, which, reason).await,
        Command::Resume { which } => resume(&ctx, which).await,
        Command::ImportKeys { file, replace } => import_keys(&ctx, &file, replace).await,
        Command::ExportKeys { out } => export_keys(&ctx, out.as_deref()).await,
        Command::Check(c) => check(&ctx, c).await,
        Command::Replay(r) => replay::run(r, &ctx.machine_id_file),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "futucli", &mut script);
            output::stdout_bytes(&script);
            Ok(0)
        }
    }
}

/// ~/.config/futu/keys.json for a user ($XDG_CONFIG_HOME honoured), /etc/futu/keys.json
/// for root.
fn default_keys_file() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/etc/futu/keys.json");
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    match config {
        Some(dir) => dir.join("futu").join("keys.json"),
        None => PathBuf::from("/etc/futu/keys.json"),
    }
}

struct Ctx {
    socket: PathBuf,
    keys_file: PathBuf,
    machine_id_file: PathBuf,
}

/// Where a mutation goes.
enum Target {
    Daemon(AuthClient),
    File(PathBuf),
}

impl Ctx {
    async fn connect(&self) -> Result<AuthClient, ClientError> {
        AuthClient::builder(&self.socket)
            .client_name("futucli")
            .deadline(ADMIN_DEADLINE)
            .connect()
            .await
    }

    /// The daemon, which must answer (for usage, reload, check).
    async fn daemon(&self) -> Result<AuthClient, Failure> {
        self.connect().await.map_err(|e| {
            let hint = if e.is_not_running() {
                " (is futu-authd running?)"
            } else {
                ""
            };
            Failure::new(format!("{e}{hint}"))
        })
    }

    /// The daemon when it answers; the keys file when it is not running.
    async fn target(&self) -> Result<Target, Failure> {
        self.target_or("editing", "send SIGHUP to a running daemon to load it")
            .await
    }

    /// [`Ctx::target`], saying on the one line for the file that futucli is `doing`
    /// (editing, reading) it directly, and `note`.
    async fn target_or(&self, doing: &str, note: &str) -> Result<Target, Failure> {
        match self.connect().await {
            Ok(c) => Ok(Target::Daemon(c)),
            Err(e) if e.is_not_running() => {
                errln!(
                    "futucli: futu-authd not reached at {}; {doing} {} directly ({note})",
                    self.socket.display(),
                    self.keys_file.display()
                );
                Ok(Target::File(self.keys_file.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn this_machine(&self) -> Result<futu_auth_client::Fingerprint, Failure> {
        fingerprint_from_file(&self.machine_id_file).map_err(|e| {
            Failure::new(format!(
                "this host's machine id: {}: {e}",
                self.machine_id_file.display()
            ))
        })
    }
}

fn parse_expiry(text: &str, now: Timestamp) -> Result<Timestamp, Failure> {
    let bad = || {
        Failure::new(format!(
            "--expires {text:?}: expected a duration such as 30d, 12h, 90m, 2w or an RFC 3339 time such as 2026-05-15T10:00:00Z"
        ))
    };
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    let hours = match unit {
        "m" => return now.checked_add(Span::new().minutes(n)).map_err(|_| bad()),
        "h" => n,
        "d" => n.checked_mul(24).ok_or_else(bad)?,
        "w" => n.checked_mul(24 * 7).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    now.checked_add(Span::new().hours(hours)).map_err(|_| bad())
}

async fn gen_key(ctx: &Ctx, g: GenKey) -> Result<u8, Failure> {
    // keys.json keeps whole seconds, like every time in README.md's examples of it.
    let now =
        Timestamp::from_second(Timestamp::now().as_second()).map_err(|e| Failure::new(e.to_string()))?;
    let expires_at = g.expires.as_deref().map(|e| parse_expiry(e, now)).transpose()?;
    if expires_at.is_some_and(|t| t <= now) {
        return Err(Failure::new("--expires is in the past"));
    }
    let allowed_machines = if g.bind_this_machine {
        Some(vec![ctx.this_machine()?])
    } else {
        g.bind_machines
    };
    let spec = KeySpec {
        id: g.id,
        scopes: g.scopes,
        limits: Limits {
            allowed_markets: g.allowed_markets,
            allowed_symbols: g.allowed_symbols,
            allowed_trd_sides: g.allowed_trd_sides,
            max_order_value: g.max_order_value,
            max_daily_value: g.max_daily_value,
            max_orders_per_minute: g.max_orders_per_minute,
            hours_window: g.hours_window,
            allowed_acc_ids: g.allowed_acc_ids,
            max_price_deviation_pct: g.max_price_deviation_pct,
            max_open_orders: g.max_open_orders,
            max_position_value: g.max_position_value,
            duplicate_window_ms: g.duplicate_window,
        },
        allowed_machines,
        expires_at,
        note: g.note,
    };
    let (token, record, stored_in): (Token, KeyRecord, String) = match ctx.target().await? {
        Target::Daemon(c) => c.gen_key(spec).await?,
        Target::File(path) => {
            ensure_dir(&path)?;
            let (token, record) = store::update(&path, |f| f.gen_key(spec, now))?.value;
            (token, record, path.display().to_string())
        }
    };
    out!("{}", show::generated(&record, &token, &stored_in));
    Ok(0)
}

fn ensure_dir(path: &Path) -> Result<(), Failure> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Failure::new(format!("{}: {e}", dir.display())))?;
        }
    }
    Ok(())
}

/// `list-keys`: every key, or with `unused_for` those not used for that long (the daemon
/// alone knows), with `expiring_within` those expiring within that long from now or
/// expired already (soonest first, with the time each has left).
async fn list_keys(
    ctx: &Ctx,
    json: bool,
    unused_for: Option<&Window>,
    expiring_within: Option<&Window>,
) -> Result<u8, Failure> {
    let (mut keys, activity, halts) = match unused_for {
        Some(u) => {
            let (keys, activity, halts) = unused_keys(ctx, u).await?;
            (keys, Some(activity), halts)
        }
        None => all_keys(ctx).await?,
    };
    let mut only = Vec::new();
    if let Some(u) = unused_for {
        only.push(format!("unused for {}", u.text));
    }
    let now = Timestamp::now();
    if let Some(w) = expiring_within {
        let horizon = now.as_second().saturating_add(w.secs);
        keys.retain(|r| r.expires_at.is_some_and(|t| t.as_second() <= horizon));
        keys.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.id.cmp(&b.id)));
        only.push(format!("expiring within {}", w.text));
    }
    let empty = if only.is_empty() {
        "no keys".to_owned()
    } else {
        format!("no keys {}", only.join(" and "))
    };
    let view = show::View {
        activity: activity.as_ref(),
        halts: &halts,
        time_left_at: expiring_within.map(|_| now),
    };
    print_keys(&keys, &view, json, &empty);
    Ok(0)
}

/// Every key, through the daemon (with what it knows of their last uses) or in the keys
/// file when it is not running.
async fn all_keys(ctx: &Ctx) -> Result<(Vec<KeyRecord>, Option<show::Activity>, Vec<Halt>), Failure> {
    let target = ctx
        .target_or("reading", "LAST USED is known only to the daemon: shown as -")
        .await?;
    Ok(match target {
        // A page at a time: any number of keys.
        Target::Daemon(c) => {
            let keys = c.list_keys().await?;
            let activity = match last_used_of(&c, &keys).await {
                Ok(a) => Some(a),
                Err(e @ ClientError::TooOld { .. }) => {
                    errln!("futucli: {e}; LAST USED is shown as -");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            (keys, activity, halts_of(&c).await?)
        }
        Target::File(path) => match KeysFile::load(&path) {
            Ok(f) => (f.keys, None, f.halts),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                (Vec::new(), None, Vec::new())
            }
            Err(e) => return Err(e.into()),
        },
    })
}

/// The halts in force, as the daemon has them; none (said on stderr) from a daemon too old
/// to have any.
async fn halts_of(c: &AuthClient) -> Result<Vec<Halt>, ClientError> {
    match c.halts().await {
        Ok(h) => Ok(h),
        Err(e @ ClientError::TooOld { .. }) => {
            errln!("futucli: {e}; it has no halts of trading");
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// The keys of `list-keys --unused-for`: only the daemon knows when keys were last used.
async fn unused_keys(
    ctx: &Ctx,
    unused_for: &Window,
) -> Result<(Vec<KeyRecord>, show::Activity, Vec<Halt>), Failure> {
    let c = ctx.connect().await.map_err(|e| {
        Failure::new(format!(
            "list-keys --unused-for needs futu-authd, which alone knows when keys were last used: {e}"
        ))
    })?;
    let keys = c.list_keys().await?;
    let activity = last_used_of(&c, &keys).await?;
    let halts = halts_of(&c).await?;
    let cutoff = Timestamp::now().as_second() - unused_for.secs;
    let unused: Vec<KeyRecord> = keys
        .into_iter()
        .filter(|r| match activity.get(&r.id) {
            Some(KeyActivity {
                last_used: Some(t), ..
            }) => t.as_second() < cutoff,
            Some(KeyActivity { last_used: None, .. }) => r.created_at.as_second() < cutoff,
            // Not in service (keys.json edited and not reloaded): nothing is known.
            None => false,
        })
        .collect();
    Ok((unused, activity, halts))
}

/// What the daemon says of each of `keys` it has in service (last use, rotation overlap):
/// asked [`MAX_ACTIVITY_IDS`] at a time.
async fn last_used_of(c: &AuthClient, keys: &[KeyRecord]) -> Result<show::Activity, ClientError> {
    let mut found = HashMap::with_capacity(keys.len());
    for page in keys.chunks(MAX_ACTIVITY_IDS) {
        let ids: Vec<KeyId> = page.iter().map(|r| r.id.clone()).collect();
        for a in c.key_activity(&ids).await? {
            found.insert(a.id.clone(), a);
        }
    }
    Ok(found)
}

fn print_keys(keys: &[KeyRecord], view: &show::View<'_>, json: bool, empty: &str) {
    if json {
        outln!("{}", show::keys_json(keys, view));
    } else if keys.is_empty() {
        outln!("{empty}");
    } else {
        out!("{}", show::keys_table(keys, view));
    }
}

async fn revoke_key(ctx: &Ctx, id: KeyId) -> Result<u8, Failure> {
    match ctx.target().await? {
        Target::Daemon(c) => c.revoke_key(&id).await?,
        Target::File(path) => {
            store::update(&path, |f| f.revoke(&id))?;
        }
    }
    outln!("✅ Revoked key \"{id}\"");
    Ok(0)
}

async fn rotate_key(ctx: &Ctx, id: KeyId, overlap: Duration) -> Result<u8, Failure> {
    let now = Timestamp::now();
    let (token, until, stored_in) = match ctx.target().await? {
        Target::Daemon(c) => match c.rotate_key(&id, overlap).await {
            Ok(r) => (r.plaintext, r.previous_valid_until, r.stored_in),
            Err(ClientError::TooOld { speaks, needs, .. }) => {
                return Err(Failure::new(format!(
                    "futu-authd at {} is too old for rotate-key (it speaks protocol version {speaks}; rotate-key needs {needs}): upgrade it, then rotate again. {} was not changed: edited under this daemon, it would be refused at the daemon's next reload (it does not know keys.json's `rotations`)",
                    ctx.socket.display(),
                    ctx.keys_file.display()
                )))
            }
            Err(e) => return Err(e.into()),
        },
        Target::File(path) => {
            let (token, until) = store::update(&path, |f| f.rotate(&id, overlap, now))?.value;
            (token, until, path.display().to_string())
        }
    };
    // Shorter than asked (by more than the whole second keys.json rounds to): the expiry.
    let asked = now
        .checked_add(SignedDuration::from_secs(overlap.as_secs() as i64))
        .ok();
    let clamped = matches!((until, asked), (Some(u), Some(a)) if u < a - SignedDuration::from_secs(2));
    out!("{}", show::rotated(&id, &token, until, clamped, &stored_in));
    Ok(0)
}

async fn bind_key(ctx: &Ctx, b: BindKey) -> Result<u8, Failure> {
    let mut machines = b.machines.unwrap_or_default();
    if b.this_machine {
        machines.insert(0, ctx.this_machine()?);
    }
    let op = if b.freeze {
        BindOp::Freeze
    } else if b.clear {
        BindOp::Clear
    } else if b.replace {
        BindOp::Replace(machines)
    } else {
        BindOp::Add(machines)
    };
    let record = match ctx.target().await? {
        Target::Daemon(c) => c.bind_key(&b.id, op).await?,
        Target::File(path) => store::update(&path, |f| f.bind(&b.id, op))?.value,
    };
    outln!("✅ Key \"{}\" {}", record.id, show::binding_sentence(&record));
    Ok(0)
}

/// `halt`: through the daemon (in force at once), or in the keys file when it is not
/// running (in force when a daemon loads it).
async fn halt(ctx: &Ctx, which: Which, reason: HaltReason) -> Result<u8, Failure> {
    let target = which.target();
    let halts = match ctx.target().await? {
        Target::Daemon(c) => c
            .halt(&target, reason.as_str())
            .await
            .map_err(|e| too_old_for(ctx, "halt", e))?,
        Target::File(path) => {
            let by = halted_by_me();
            store::update(&path, |f| {
                f.halt(target.clone(), reason, by, Timestamp::now())?;
                Ok(f.halts.clone())
            })?
            .value
        }
    };
    out!("{}", show::halted(&target, &halts));
    Ok(0)
}

/// `resume`: as [`halt`].
async fn resume(ctx: &Ctx, which: Which) -> Result<u8, Failure> {
    let target = which.target();
    let halts = match ctx.target().await? {
        Target::Daemon(c) => c
            .resume(&target)
            .await
            .map_err(|e| too_old_for(ctx, "resume", e))?,
        Target::File(path) => {
            store::update(&path, |f| {
                f.resume(&target)?;
                Ok(f.halts.clone())
            })?
            .value
        }
    };
    out!("{}", show::resumed(&target, &halts));
    Ok(0)
}

/// `e`, or for a daemon too old for `command`, what to do about it (the keys file is not
/// edited under it: it would refuse keys.json's `halts` at its next reload).
fn too_old_for(ctx: &Ctx, command: &str, e: ClientError) -> Failure {
    match e {
        ClientError::TooOld { speaks, needs, .. } => Failure::new(format!(
            "futu-authd at {} is too old for {command} (it speaks protocol version {speaks}; {command} needs {needs}): upgrade it, then {command} again. {} was not changed: edited under this daemon, it would be refused at the daemon's next reload (it does not know keys.json's `halts`)",
            ctx.socket.display(),
            ctx.keys_file.display()
        )),
        e => e.into(),
    }
}

/// Who runs futucli, for a halt written to the keys file directly: the real uid and its
/// user name (the daemon takes the same from the socket's peer credentials).
fn halted_by_me() -> HaltedBy {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name);
    HaltedBy::new(uid.as_raw(), user)
}

async fn import_keys(ctx: &Ctx, file: &Path, replace: bool) -> Result<u8, Failure> {
    // Checked here first, as --check-config checks it, so a bad file names its own path;
    // the daemon checks it again before it changes anything.
    let text = store::read_text(file)?;
    KeysFile::parse(&text, file)?;
    let daemon = ctx.daemon().await?;
    let done = daemon.import_keys(&text, replace).await.map_err(|e| match e {
        ClientError::TooOld { speaks, needs, .. } => Failure::new(format!(
            "futu-authd at {} is too old for import-keys (it speaks protocol version {speaks}; import-keys needs {needs}): upgrade it",
            ctx.socket.display()
        )),
        e => e.into(),
    })?;
    out!("{}", show::imported(file, &done));
    Ok(0)
}

async fn export_keys(ctx: &Ctx, out: Option<&Path>) -> Result<u8, Failure> {
    let daemon = ctx.daemon().await?;
    let text = daemon.export_keys().await.map_err(|e| match e {
        ClientError::TooOld { speaks, needs, .. } => Failure::new(format!(
            "futu-authd at {} is too old for export-keys (it speaks protocol version {speaks}; export-keys needs {needs}): upgrade it",
            ctx.socket.display()
        )),
        e => e.into(),
    })?;
    match out {
        None => out!("{text}"),
        Some(path) => {
            // Read back as --check-config reads it, and written as keys.json is: mode 0600,
            // atomically.
            let file = KeysFile::parse(&text, path)?;
            file.save(path)?;
            outln!("✅ Exported {} keys to {}", file.keys.len(), path.display());
        }
    }
    Ok(0)
}

async fn check(ctx: &Ctx, c: CheckArgs) -> Result<u8, Failure> {
    let transport = |e: ClientError| Failure {
        message: format!("{e} (treat as a reject)"),
        code: 2,
    };
    let client = AuthClient::builder(&ctx.socket)
        .client_name("futucli")
        .deadline(Duration::from_secs(2))
        .connect()
        .await
        .map_err(transport)?;
    let order = match (c.market, c.symbol, c.side, c.qty) {
        (Some(market), Some(symbol), Some(side), Some(qty)) => Some(Order {
            env: c.env,
            market,
            symbol,
            side,
            qty,
            price: c.price,
        }),
        _ => None,
    };
    let token = Token::new(c.token);
    let context = CheckContext {
        acc_id: c.acc_id,
        ref_price: c.ref_price,
    };
    let decision = if c.dry_run {
        client
            .check_dry_run_in(&token, c.iface, &c.endpoint, order, context)
            .await
    } else {
        client
            .check_in(&token, c.iface, &c.endpoint, order, context)
            .await
    }
    .map_err(transport)?;
    outln!(
        "{}",
        if c.json {
            show::decision_json(&decision)
        } else {
            show::decision(&decision)
        }
    );
    Ok(match decision {
        Decision::Allow { .. } => 0,
        Decision::Deny { .. } => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_accepts_durations_and_rfc3339() {
        let now: Timestamp = "2026-04-15T10:00:00Z".parse().unwrap();
        assert_eq!(
            parse_expiry("30d", now).ok().unwrap().to_string(),
            "2026-05-15T10:00:00Z"
        );
        assert_eq!(
            parse_expiry("12h", now).ok().unwrap().to_string(),
            "2026-04-15T22:00:00Z"
        );
        assert_eq!(
            parse_expiry("90m", now).ok().unwrap().to_string(),
            "2026-04-15T11:30:00Z"
        );
        assert_eq!(
            parse_expiry("2w", now).ok().unwrap().to_string(),
            "2026-04-29T10:00:00Z"
        );
        assert_eq!(
            parse_expiry("2026-05-15T10:00:00Z", now)
                .ok()
                .unwrap()
                .to_string(),
            "2026-05-15T10:00:00Z"
        );
        for bad in ["30", "d", "-1d", "0d", "30y", "tomorrow", ""] {
            assert!(parse_expiry(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap_accepts_seconds_minutes_hours_days_and_zero_up_to_90_days() {
        let secs = |s: &str| args::parse_overlap(s).map(|d| d.as_secs());
        assert_eq!(secs("24h"), Ok(86_400));
        assert_eq!(secs("90m"), Ok(5_400));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("3600s"), Ok(3_600));
        assert_eq!(secs("0"), Ok(0));
        assert_eq!(secs("0h"), Ok(0));
        assert_eq!(secs("90d"), Ok(7_776_000));
        for bad in [
            "", "24", "h", "-1h", "+1h", "1.5h", "1w", "24 h", "1e3s", "tomorrow", "١h",
        ] {
            let e = args::parse_overlap(bad).unwrap_err().to_string();
            assert!(e.contains("such as 24h, 90m, 7d, 3600s, or 0"), "{bad}: {e}");
        }
        for long in ["91d", "7776001s", "99999999999999999999d"] {
            let e = args::parse_overlap(long).unwrap_err().to_string();
            assert!(e.contains("longer than the longest overlap, 90d"), "{long}: {e}");
        }
    }
}
