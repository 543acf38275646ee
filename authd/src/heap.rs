//! Giving freed heap memory back to the system.

/// Returns the heap pages freed after a large keys.json was parsed and compiled (or an
/// old snapshot dropped) to the system. glibc keeps them in its free lists otherwise, so
/// the daemon's RSS would stay at the peak of the last reload instead of the size of the
/// keys in service.
pub fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own, internally locked heap state; it has no
    // preconditions and may run on any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
