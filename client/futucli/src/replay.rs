//! `futucli replay`: the audit file's checks decided again against a candidate keys.json,
//! by the daemon's own rules ([`futu_auth_rules::replay`]), with the orders followed through
//! the order events the file records; this module reads the files and prints the report
//! (and, on a terminal, the reading's progress: [`crate::progress`]).

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use futu_auth_keys::machine::fingerprint_from_file;
use futu_auth_keys::store::KeysFile;
use futu_auth_rules::audit::Kind;
use futu_auth_rules::replay::{self, ChangeGroup, Example, Options, Report};
use futu_auth_rules::Snapshot;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::args::ReplayArgs;
use crate::output::{errln, out, outln};
use crate::progress::Progress;
use crate::Failure;

/// Runs the replay and prints its report; 0 whether or not any decision would change.
pub fn run(args: ReplayArgs, machine_id_file: &Path) -> Result<u8, Failure> {
    let time_zone = TimeZone::system();
    let since = args
        .since
        .as_deref()
        .map(|t| parse_time("--since", t, &time_zone))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time("--until", t, &time_zone))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(Failure::new(format!("--since {s} is not before --until {u}")));
        }
    }
    let keys = KeysFile::load(&args.keys)?;
    let machine = match args.machine {
        Some(fp) => Some(fp),
        None => match fingerprint_from_file(machine_id_file) {
            Ok(fp) => Some(fp),
            Err(e) => {
                errln!(
                    "futucli: this host's machine id: {}: {e}; keys bound to machines are judged for no host (--machine fp_… judges them for one)",
                    machine_id_file.display()
                );
                None
            }
        },
    };
    let snapshot = Snapshot::compile(&keys.keys, &keys.rotations, &keys.halts, machine);
    let audit =
        File::open(&args.audit).map_err(|e| Failure::new(format!("{}: {e}", args.audit.display())))?;
    let options = Options {
        since,
        until,
        time_zone,
    };
    let size = audit.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    let mut reader = Progress::new(BufReader::new(audit), size);
    let report = replay::replay(&mut reader, &snapshot, options);
    reader.finish();
    let report = report.map_err(|e| {
        Failure::new(match e {
            replay::ReplayError::Read { line, source } => {
                format!("{}:{line}: cannot read: {source}", args.audit.display())
            }
            replay::ReplayError::Line { line, source } => {
                format!("{}:{line}: {source}", args.audit.display())
            }
        })
    })?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report always serializes")
        );
    } else {
        out!("{}", human(&report, &args.audit, &args.keys));
    }
    Ok(0)
}

/// `--since`/`--until`: an RFC 3339 time, or a date meaning its midnight in `tz`.
fn parse_time(flag: &str, text: &str, tz: &TimeZone) -> Result<Timestamp, Failure> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = text.parse::<jiff::civil::Date>() {
        if let Ok(z) = d.to_zoned(tz.clone()) {
            return Ok(z.timestamp());
        }
    }
    Err(Failure::new(format!(
        "{flag} {text:?}: expected an RFC 3339 time such as 2026-11-23T09:30:00Z or a date such as 2026-11-23 (local midnight)"
    )))
}

/// The report for a person.
fn human(r: &Report, audit: &Path, keys: &Path) -> String {
    let t = &r.records;
    let mut out = String::new();
    let _ = writeln!(out, "Replayed {} against {}", audit.display(), keys.display());
    let _ = writeln!(
        out,
        "  records: {} read, {} replayed ({} unchanged, {} changed)",
        t.read, t.replayed, t.unchanged, t.changed
    );
    if r.since.is_some() || r.until.is_some() {
        let shown = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
        let _ = writeln!(
            out,
            "  compared: from {} until {} (earlier records count toward the limits only)",
            shown(r.since),
            shown(r.until)
        );
    }
    let s = &t.skipped;
    let skipped: Vec<String> = [
        (s.no_key_id, "without a key id"),
        (s.internal, "refused internal"),
        (s.before_since, "before --since"),
        (s.after_until, "from --until on"),
        (s.admin, "admin"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "  skipped: {}", skipped.join(", "));
    }
    if t.releases.read > 0 {
        let _ = writeln!(
            out,
            "  releases: {} read, {} refunded an order the candidate allowed",
            t.releases.read, t.releases.refunded
        );
    }
    if t.order_events.read > 0 {
        let _ = writeln!(
            out,
            "  order events: {} read, {} applied to an order the candidate allowed",
            t.order_events.read, t.order_events.applied
        );
    }
    let _ = writeln!(
        out,
        "  hours_window in {}; allowed_machines for {}",
        r.time_zone,
        r.machine.as_deref().unwrap_or("no host (machine id unknown)")
    );
    if r.changes.is_empty() {
        let _ = writeln!(out, "✅ No decision would change");
        return out;
    }
    let _ = writeln!(
        out,
        "⚠️  {} decision{} would change",
        t.changed,
        if t.changed == 1 { "" } else { "s" }
    );
    let mut key: Option<&str> = None;
    for g in &r.changes {
        if key != Some(g.key_id.as_str()) {
            key = Some(&g.key_id);
            let n: u64 = r
                .changes
                .iter()
                .filter(|o| o.key_id == g.key_id)
                .map(|o| o.count)
                .sum();
            let _ = writeln!(out, "\n{}: {n}", g.key_id);
        }
        group(&mut out, g);
    }
    out
}

fn group(out: &mut String, g: &ChangeGroup) {
    let _ = writeln!(out, "  {} → {}: {}", g.from.label(), g.to.label(), g.count);
    for e in &g.examples {
        example(out, e);
    }
    let more = g.count - g.examples.len() as u64;
    if more > 0 {
        let _ = writeln!(out, "    … and {more} more");
    }
}

fn example(out: &mut String, e: &Example) {
    let mut what = if e.kind == Kind::CheckScope {
        format!("scope check {}", e.endpoint)
    } else {
        e.endpoint.clone()
    };
    if let Some(o) = &e.order {
        let num = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        let _ = write!(what, " {} {} {}", o.symbol, o.side, num(o.qty));
        if o.price.is_some() {
            let _ = write!(what, " × {}", num(o.price));
        }
        if o.dry_run {
            what.push_str(" (dry run)");
        }
    }
    let _ = writeln!(
        out,
        "    {}  line {}  request {}  {what}",
        e.ts, e.line, e.request_id
    );
    match (&e.from.detail, &e.to.detail) {
        (Some(was), Some(now)) => {
            let _ = writeln!(out, "      was: {was}\n      now: {now}");
        }
        (Some(was), None) => {
            let _ = writeln!(out, "      was: {was}");
        }
        (None, Some(now)) => {
            let _ = writeln!(out, "      now: {now}");
        }
        (None, None) => {}
    }
}
