//! No inherited file descriptors: everything above stderr is closed at startup, so a
//! descriptor leaked by the parent can never reach the guest-facing threads.

use std::io;

use super::ConfineError;

/// Closes every descriptor above 2.
pub fn close_inherited_fds() -> Result<(), ConfineError> {
    // SAFETY: close_range(2) only closes descriptors; none above 2 is owned by Rust
    // objects yet, because this runs first thing in `main`.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return Ok(());
    }
    close_by_listing()
}

fn close_by_listing() -> Result<(), ConfineError> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(ConfineError::CloseFds)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above; closing the directory's own (already dropped) fd fails
        // harmlessly with EBADF.
        if unsafe { libc::close(fd) } != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EBADF) {
            return Err(ConfineError::CloseFds(io::Error::last_os_error()));
        }
    }
    Ok(())
}
