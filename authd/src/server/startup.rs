//! Start-up, step by step: this host's machine fingerprint, the key store (keys.json — a
//! bad file refuses the start — or the database shared by several hosts), the ledger store
//! (replayed), the audit file (its torn tail cut). Each step's failure is a [`StartError`]
//! that says what failed and where.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futu_auth_keys::machine::fingerprint_from_file;
use futu_auth_keys::store::{self, KeysFile, StoreError};
use futu_auth_proto::Fingerprint;
use futu_auth_rules::Ledger;

use crate::audit::{self, AuditFile};
use crate::clock::Clock;
use crate::config::Config;
use crate::key_store::pg::PgKeysOpenError;
use crate::key_store::{FileStore, Freshness, FreshnessReport, KeyStore, Loaded, PgKeyStore, Stamp};
use crate::ledger::local::journal::{LedgerLog, Moment};
use crate::ledger::local::LocalLedger;
use crate::ledger::pg::{PgLedger, PgOpenError};
use crate::ledger::{AuditMark, Audited, HealthReport, LedgerStore};
use crate::metrics::Metrics;
use crate::peer::AdminGroupError;

/// Why the daemon could not start. Each says what failed and where, in one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// keys.json could not be read or is not valid: the daemon refuses to start.
    #[error(transparent)]
    Keys(#[from] StoreError),
    /// `--admin-group` cannot be used.
    #[error(transparent)]
    AdminGroup(#[from] AdminGroupError),
    /// The PostgreSQL ledger (`--ledger-url`) cannot be used.
    #[error(transparent)]
    PgLedger(#[from] PgOpenError),
    /// The key store in PostgreSQL (`--keys-url`) cannot be used.
    #[error(transparent)]
    PgKeys(#[from] PgKeysOpenError),
    /// The ledger journal in `--state-dir` could not be opened or replayed (the error
    /// names the file).
    #[error(transparent)]
    Journal(io::Error),
    /// journald's writer thread could not start.
    #[error(transparent)]
    Journald(io::Error),
    /// A half-written last record could not be cut off the audit file.
    #[error("audit log {}: {source}", path.display())]
    AuditTail {
        /// The audit file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The audit file could not be opened (the error names it).
    #[error(transparent)]
    AuditFile(io::Error),
    /// The metrics address could not be bound (the error names it).
    #[error(transparent)]
    Metrics(io::Error),
    /// The socket systemd handed over could not be taken.
    #[error("socket activation: {0}")]
    Activation(#[source] io::Error),
    /// `--socket` could not be bound (the error names it).
    #[error(transparent)]
    Bind(io::Error),
}

/// The key store: keys.json, or with `--keys-url` the database shared by several hosts;
/// what it holds (none: a database that did not answer in time, the daemon starts without
/// keys and loads them once it answers), and with a shared store whether that is known to
/// be current. keys.json that does not load is an error.
pub(super) async fn open_key_store(
    config: &Config,
    host: Option<&Fingerprint>,
    metrics: &Arc<Metrics>,
) -> Result<(KeyStore, Option<Loaded>, Option<Arc<Freshness>>), StartError> {
    let Some(url) = &config.keys_url else {
        let (file, digest) = load_keys(config)?;
        let loaded = Loaded {
            file,
            stamp: Stamp::Text(digest),
        };
        return Ok((
            KeyStore::File(FileStore::new(config.keys_file.clone())),
            Some(loaded),
            None,
        ));
    };
    let host = host.map_or_else(
        || "a host without a machine fingerprint".to_owned(),
        ToString::to_string,
    );
    let (pg, loaded) = PgKeyStore::open(url, &host).await?;
    let report: FreshnessReport = {
        let metrics = Arc::clone(metrics);
        Arc::new(move |event| metrics.keys_freshness(event))
    };
    let freshness = Arc::new(Freshness::new(url.to_string(), config.keys_max_staleness, report));
    let loaded = match loaded {
        Ok(loaded) => {
            freshness.confirmed(std::time::Instant::now());
            tracing::info!(
                "keys_loaded={} keys from {} (version {}), confirmed current every {:?}; trading is refused past {:?} without a confirmation",
                loaded.file.keys.len(),
                pg.stored_in(),
                match loaded.stamp {
                    Stamp::Version(v) => v,
                    Stamp::Text(_) => 0,
                },
                crate::key_store::pg::CHECK_EVERY,
                config.keys_max_staleness
            );
            Some(loaded)
        }
        Err(e) => {
            tracing::error!(
                "keys: {e}; starting without keys: every check is refused until the keys store answers"
            );
            freshness.failed(&e);
            None
        }
    };
    Ok((KeyStore::Pg(Box::new(pg)), loaded, Some(freshness)))
}

/// keys.json as loaded at start, and the digest of its text (a reload of the same text
/// keeps the keys in service). A file that does not load is an error.
fn load_keys(config: &Config) -> Result<(KeysFile, store::TextDigest), StartError> {
    let text = store::read_text(&config.keys_file)?;
    let file = KeysFile::parse(&text, &config.keys_file)?;
    let digest = store::text_digest(&text);
    drop(text);
    if let Some(w) = store::mode_warning(&config.keys_file) {
        tracing::warn!("{w}");
    }
    tracing::info!(
        "keys_loaded={} keys file loaded (Bearer auth enabled)",
        file.keys.len()
    );
    tracing::info!("keys file: {}", config.keys_file.display());
    Ok((file, digest))
}

/// This host's machine fingerprint; without one, keys bound to machines are refused.
pub(super) fn machine_fingerprint(config: &Config) -> Option<Fingerprint> {
    match fingerprint_from_file(&config.machine_id_file) {
        Ok(fp) => {
            tracing::info!("machine fingerprint {fp}");
            Some(fp)
        }
        Err(e) => {
            tracing::warn!(
                "no machine fingerprint ({}: {e}); keys bound to machines will be refused",
                config.machine_id_file.display()
            );
            None
        }
    }
}

/// The audit file of `--audit-log`, with a record a crash left half-written cut off its
/// end; none without the flag.
pub(super) fn open_audit_file(config: &Config) -> Result<Option<AuditFile>, StartError> {
    let Some(p) = &config.audit_log else {
        return Ok(None);
    };
    match audit::tidy_tail(p) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            "audit log {}: cut a half-written last record ({n} bytes)",
            p.display()
        ),
        Err(source) => {
            return Err(StartError::AuditTail {
                path: p.clone(),
                source,
            })
        }
    }
    let file = AuditFile::open(p).map_err(StartError::AuditFile)?;
    tracing::info!(
        "audit JSONL logger enabled (target=futu_audit → file {})",
        p.display()
    );
    Ok(Some(file))
}

/// The ledger on PostgreSQL with `--ledger-url` (nothing is kept in `--state-dir` then);
/// otherwise the journal in `--state-dir`, replayed: its newest commit counts only if its
/// audit records reached the audit file.
pub(super) async fn open_ledger(
    config: &Config,
    clock: &Clock,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn LedgerStore>, StartError> {
    if let Some(url) = &config.ledger_url {
        let metrics = Arc::clone(metrics);
        let report: HealthReport = Arc::new(move |event| metrics.ledger_health(event));
        let pg = PgLedger::open(url, config.ledger_timeout, report).await?;
        return Ok(Arc::new(pg));
    }
    let ledger = Ledger::new();
    let moment = Moment {
        unix_ns: jiff::Timestamp::now().as_nanosecond() as i64,
        mono_ns: clock.mono_ns(),
    };
    let audit_path = config.audit_log.clone();
    let audited = |mark: &AuditMark| match &audit_path {
        Some(path) => audit::settle(path, mark),
        None => Audited::Unknown,
    };
    let (log, replay) =
        LedgerLog::open(&config.state_dir, &ledger, moment, &audited).map_err(StartError::Journal)?;
    if replay.unaudited > 0 {
        tracing::warn!(
            "ledger: the last commit ({} entries) was not counted: the daemon stopped before its audit records were written, so nobody was answered",
            replay.unaudited
        );
    }
    if let Some(why) = &replay.corrupt_tail {
        tracing::error!(
            "ledger log {}: {why}; the {} entries before it were used",
            log.path().display(),
            replay.entries
        );
    }
    tracing::info!(
        "ledger: {} entries replayed from {}",
        replay.entries,
        log.path().display()
    );
    let clock = clock.clone();
    Ok(Arc::new(LocalLedger::new(ledger, log, move || Moment {
        unix_ns: jiff::Timestamp::now().as_nanosecond() as i64,
        mono_ns: clock.mono_ns(),
    })))
}
