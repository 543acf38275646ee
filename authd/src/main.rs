//! `futu-authd`: the authorization daemon. A thin shell over the library: command line,
//! logging, the runtime, and the exit code.

use std::io;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use futu_auth_keys::store::KeysFile;
use futu_authd::config::Config;
use futu_authd::notify;
use futu_authd::server::{self, Daemon, StartError};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    let config = Config::parse();
    if config.check_config {
        return check_config(&config);
    }
    init_logging(config.journald_enabled());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("futu-authd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the process could not run.
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// A signal handler could not be installed.
    #[error("signal handler: {0}")]
    Signal(#[source] io::Error),
    /// The daemon could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Starts the daemon, tells systemd READY=1 once it listens with its keys loaded, and
/// serves until SIGTERM or SIGINT; SIGHUP reloads keys.json and reopens the audit file.
async fn run(config: Config) -> Result<(), RunError> {
    let sig = |kind: SignalKind| signal(kind).map_err(RunError::Signal);
    // A write past RLIMIT_FSIZE must fail — and the check be refused `internal` — rather
    // than kill the daemon with SIGXFSZ's default action.
    let mut xfsz = sig(SignalKind::from_raw(nix::libc::SIGXFSZ))?;
    tokio::spawn(async move {
        while xfsz.recv().await.is_some() {
            tracing::error!("a file reached the process's size limit (RLIMIT_FSIZE); its writes fail");
        }
    });
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    );
    let daemon = Daemon::start(&config).await?;
    let listener = server::listen(&config)?;
    let authd = Arc::clone(daemon.authd());
    let stop = CancellationToken::new();
    tokio::spawn(notify::watchdog(stop.clone()));
    tokio::spawn(async move {
        // Off the accept loop: a reload of many keys must not hold up new connections.
        while hup.recv().await.is_some() {
            let authd = Arc::clone(&authd);
            tokio::spawn(async move { server::hangup(&authd).await });
        }
    });
    notify::ready(daemon.authd().keys_loaded());
    let stopped = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        notify::stopping();
    };
    daemon.serve(listener, stopped).await;
    stop.cancel();
    Ok(())
}

/// `--check-config`: like `nginx -t`.
fn check_config(config: &Config) -> ExitCode {
    match KeysFile::load(&config.keys_file) {
        Ok(file) => {
            println!("{}: ok, {} keys", config.keys_file.display(), file.keys.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("futu-authd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (the journal adds its own timestamps under systemd); audit records
/// go to journald only, through their own layer, when `journald` is on.
fn init_logging(journald: bool) {
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let filter = EnvFilter::try_from_env("FUTU_AUTHD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let not_audit = filter_fn(|meta| meta.target() != futu_authd::AUDIT_TARGET);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let stderr = if under_journal {
        stderr.without_time().with_filter(not_audit).boxed()
    } else {
        stderr.with_filter(not_audit).boxed()
    };
    let (journal, journal_error) = if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("futu-authd".to_owned())
                    .with_filter(filter_fn(|meta| meta.target() == futu_authd::AUDIT_TARGET));
                (Some(layer), None)
            }
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(journal)
        .init();
    if let Some(e) = journal_error {
        tracing::warn!("journald socket not available ({e}); audit records go to the audit file only");
    } else if journald {
        tracing::info!("audit journald logger enabled (target=futu_audit → journald)");
    }
}
