//! `futu-authd`: the authorization daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use futu_authd::KeysFile;

/// Authorization sidecar for a Futu OpenD style gateway.
#[derive(Debug, Parser)]
#[command(name = "futu-authd", version)]
struct Cli {
    /// keys.json to serve.
    #[arg(long, env = "FUTU_AUTHD_KEYS_FILE", default_value = "/etc/futu/keys.json")]
    keys_file: PathBuf,
    /// Validate the keys file and exit: 0 when it loads, 1 with the loader's error.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match KeysFile::load(&cli.keys_file) {
        Ok(file) => {
            println!("{}: ok, {} keys", cli.keys_file.display(), file.keys.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("futu-authd: {e}");
            ExitCode::FAILURE
        }
    }
}
