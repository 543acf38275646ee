//! Taking over the listening socket systemd passes (socket activation).

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;

use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, UnixAddr};

/// Turns descriptor `fd`, passed by systemd, into a listener after checking that it is a
/// Unix stream socket.
pub fn take_unix_listener(fd: RawFd) -> io::Result<UnixListener> {
    let family = getsockname::<UnixAddr>(fd).ok().and_then(|a| a.family());
    let kind = getsockopt(&borrowed(fd), sockopt::SockType).map_err(io::Error::from)?;
    if family != Some(AddressFamily::Unix) || kind != SockType::Stream {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} passed by systemd is not a Unix stream socket"),
        ));
    }
    // SAFETY: `sd_notify::listen_fds` returned `fd` only after checking LISTEN_PID is this
    // process; systemd passed it for us alone, nothing else in this process owns it, and
    // it is taken exactly once (the first call of `listen_fds` at start-up).
    #[allow(unsafe_code)]
    Ok(unsafe { UnixListener::from_raw_fd(fd) })
}

fn borrowed(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: `fd` is open for the whole process (see above); the borrow is used only for
    // the getsockopt call before the descriptor is taken over.
    #[allow(unsafe_code)]
    unsafe {
        std::os::fd::BorrowedFd::borrow_raw(fd)
    }
}
