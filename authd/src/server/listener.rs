//! The listening socket: the one systemd handed over (socket activation), or `--socket`
//! bound by this process with `--socket-mode`.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::StartError;
use crate::config::Config;

/// Where the listening socket came from.
pub enum Listener {
    /// Bound by this process at this path (removed again at exit).
    Bound(UnixListener, PathBuf),
    /// Handed over by systemd (socket activation); systemd owns the file.
    Activated(UnixListener),
}

impl Listener {
    /// The socket connections are accepted on.
    pub(super) fn inner(&self) -> &UnixListener {
        match self {
            Listener::Bound(l, _) | Listener::Activated(l) => l,
        }
    }
}

/// Binds `path` with `mode`. A socket file nobody answers on (left by a crash) is
/// replaced; one where another daemon answers is an error, as is a file that is not a
/// socket. The socket is bound under a temporary name, given its mode, then renamed into
/// place, so it is never reachable with looser permissions.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(at(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket; remove it or choose another --socket",
            )))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(at(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another futu-authd is answering on this socket",
                )))
            }
            Err(_) => {
                tracing::warn!("removing stale socket {} (nothing answers on it)", path.display());
                std::fs::remove_file(path).map_err(at)?;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(at)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(at)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(at(e));
    }
    Ok(listener)
}

/// The socket systemd handed over (LISTEN_FDS/LISTEN_PID), if any.
fn activated() -> io::Result<Option<UnixListener>> {
    let mut fds = sd_notify::listen_fds()?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if fds.len() > 0 {
        tracing::warn!("systemd passed {} sockets; using the first", fds.len() + 1);
    }
    let std_listener = crate::activation::take_unix_listener(fd)?;
    std_listener.set_nonblocking(true)?;
    UnixListener::from_std(std_listener).map(Some)
}

/// The listener the config asks for: the socket systemd handed over, or `--socket` bound
/// with `--socket-mode`.
pub fn listen(config: &Config) -> Result<Listener, StartError> {
    match activated().map_err(StartError::Activation)? {
        Some(l) => {
            tracing::info!("listening on the socket passed by systemd");
            Ok(Listener::Activated(l))
        }
        None => {
            let l = bind(&config.socket, config.socket_mode).map_err(StartError::Bind)?;
            tracing::info!(
                "listening on {} (mode {:04o})",
                config.socket.display(),
                config.socket_mode
            );
            Ok(Listener::Bound(l, config.socket.clone()))
        }
    }
}
